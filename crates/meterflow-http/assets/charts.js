// meterflow: an interactive view of the bar charts the server draws as SVG
// (ADR 0021). The SVG stays the chart of record (it works without script
// and prints); where uPlot has loaded, each chart gets a "details" element
// that, when opened, draws the same bars from the SVG's data attributes
// (data-key, data-value) with zoom and values on hover.
(function () {
  "use strict";
  if (typeof uPlot === "undefined") { return; }
  var charts = document.querySelectorAll("svg.bars");
  Array.prototype.forEach.call(charts, function (svg) {
    var bars = Array.prototype.filter.call(
      svg.querySelectorAll("rect[data-key]"),
      function (b) { return b.getAttribute("data-quality") !== "future"; }
    );
    if (!bars.length) { return; }
    var details = document.createElement("details");
    details.className = "interactive";
    var summary = document.createElement("summary");
    summary.textContent = svg.getAttribute("data-interactive") || "Interactive chart";
    details.appendChild(summary);
    var host = document.createElement("div");
    host.className = "uplot-host";
    details.appendChild(host);
    svg.parentNode.insertBefore(details, svg.nextSibling);
    details.addEventListener("toggle", function () {
      if (!details.open || host.firstChild) { return; }
      var keys = bars.map(function (b) { return b.getAttribute("data-key"); });
      var xs = bars.map(function (b, i) { return i; });
      var ys = bars.map(function (b) {
        var v = b.getAttribute("data-value");
        return v === null ? null : Number(v);
      });
      var unit = svg.getAttribute("data-unit") || "";
      new uPlot({
        width: Math.min(host.clientWidth || 700, 760),
        height: 260,
        // Bars start at zero, as on the server's chart.
        scales: {
          x: { time: false },
          y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.05 : 1]; } }
        },
        axes: [
          { values: function (u, vals) { return vals.map(function (i) { return keys[i] || ""; }); } },
          { label: unit }
        ],
        series: [
          {
            label: svg.getAttribute("data-x") || "",
            value: function (u, i) { return i == null ? "" : (keys[i] || ""); }
          },
          {
            label: svg.getAttribute("aria-label") || unit,
            stroke: "#1769aa",
            fill: "rgba(23,105,170,0.35)",
            paths: uPlot.paths.bars({ size: [0.8] }),
            value: function (u, v) { return v == null ? "–" : v.toFixed(2) + " " + unit; }
          }
        ]
      }, [xs, ys], host);
    });
  });
})();
