//! The overview page at `/`: server-rendered HTML with an inline SVG chart,
//! no script and nothing from a CDN, so it works on the embedded default
//! (and on a locked-down network) without Grafana.

use std::fmt::Write as _;

use chrono::{Datelike, Duration, TimeZone};
use meterflow_core::aggregate::{Grain, Level};
use meterflow_core::time::day_start;
use meterflow_model::{EnergyClass, Site};
use meterflow_store::Reader;

use meterflow_kpi::{KpiContext, Scope, period_of};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "–".into(),
    }
}

/// The page for the site of `kpi` now.
pub fn overview(kpi: &KpiContext) -> anyhow::Result<String> {
    let site: &Site = kpi.site();
    let reader = Reader::open(&site.store_path())?;
    let now = chrono::Utc::now().with_timezone(&site.tz);
    let today = now.date_naive();
    let elec = |grain: Grain, from: i64| -> anyhow::Result<f64> {
        Ok(reader
            .agg(
                Level::Site,
                "site",
                EnergyClass::Electricity,
                "",
                grain,
                from,
                i64::MAX,
            )?
            .last()
            .map_or(0.0, |r| r.value))
    };
    let month_start = today.with_day(1).unwrap_or(today);
    let year_start = today.with_ordinal(1).unwrap_or(today);
    let today_kwh = elec(Grain::Day, day_start(today, site.tz))?;
    let month_kwh = elec(Grain::Month, day_start(month_start, site.tz))?;
    let year_kwh = elec(Grain::Year, day_start(year_start, site.tz))?;
    let year = period_of(today.year(), None).ok_or_else(|| anyhow::anyhow!("period"))?;
    let site_k = kpi.scope_kpis(&reader, &Scope::Site, year)?;

    // Daily site electricity, last 30 days.
    let from = day_start(today - Duration::days(29), site.tz);
    let days = reader.agg(
        Level::Site,
        "site",
        EnergyClass::Electricity,
        "",
        Grain::Day,
        from,
        i64::MAX,
    )?;
    let (w, h, pad) = (720.0, 220.0, 36.0);
    let max = days
        .iter()
        .map(|d| d.value)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let mut points = String::new();
    for d in &days {
        let day = site
            .tz
            .timestamp_millis_opt(d.start_ms)
            .single()
            .map_or(0, |t| {
                (t.date_naive() - (today - Duration::days(29))).num_days()
            });
        let x = pad + (w - 2.0 * pad) * day as f64 / 29.0;
        let y = h - pad - (h - 2.0 * pad) * d.value / max;
        let _ = write!(points, "{x:.1},{y:.1} ");
    }

    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{name} · meterflow</title><style>\
body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:.3rem .8rem;text-align:right}}\
th:first-child,td:first-child{{text-align:left}}.cards{{display:flex;gap:1rem}}.card{{border:1px solid #ccc;border-radius:6px;padding:.8rem 1.2rem}}.big{{font-size:1.6rem}}\
.alert{{color:#a00}}</style></head><body><h1>{name}</h1><p>{date} · {tz}</p>",
        name = esc(&site.site.name),
        date = today,
        tz = site.tz.name()
    );
    let _ = write!(
        html,
        "<div class=\"cards\"><div class=\"card\" id=\"today\">Today<div class=\"big\">{today_kwh:.1} kWh</div></div>\
<div class=\"card\" id=\"month\">This month<div class=\"big\">{month_kwh:.1} kWh</div></div>\
<div class=\"card\" id=\"year\">This year<div class=\"big\">{year_kwh:.1} kWh</div>{kgce:.1} kgce</div>\
<div class=\"card\" id=\"quota\">Against quota (per capita, year to date)<div class=\"big\">{quota}</div>{proj}</div>\
<div class=\"card\" id=\"completeness\">Data completeness<div class=\"big\">{comp:.1} %</div></div></div>",
        kgce = site_k.energy_kgce,
        quota = site_k.tracking.as_ref().map_or("–".into(), |t| format!(
            "{:.0} %",
            t.ratio_to_date * 100.0
        )),
        proj = site_k.tracking.as_ref().map_or(String::new(), |t| {
            match (t.projected_ratio, t.method) {
                (Some(r), Some(m)) => format!("projected {:.0} % ({})", r * 100.0, m.as_str()),
                _ => format!(
                    "projection: insufficient data ({:.0} days)",
                    t.days_with_data
                ),
            }
        }),
        comp = site_k.completeness_pct,
    );
    let _ = write!(
        html,
        "<h2>Daily electricity, last 30 days</h2><svg id=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"daily site electricity\">\
<line x1=\"{pad}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#999\"/><text x=\"4\" y=\"{pad}\" font-size=\"11\">{max:.0} kWh</text>\
<polyline fill=\"none\" stroke=\"#1769aa\" stroke-width=\"2\" points=\"{points}\"/></svg>",
        y0 = h - pad,
        x1 = w - pad,
    );
    html.push_str("<h2>Agencies, this year</h2><table id=\"agencies\"><tr><th>Agency</th><th>Persons</th><th>kgce / person</th><th>kgce / m²</th><th>Water m³ / person</th><th>Quota, year to date</th><th>Completeness</th></tr>");
    for a in &site.agencies {
        let k = kpi.scope_kpis(&reader, &Scope::Agency(a.id.clone()), year)?;
        let _ = write!(
            html,
            "<tr><td>{name} <small>({id})</small></td><td>{p:.0}</td><td>{pc}</td><td>{pa}</td><td>{pw}</td><td>{q}</td><td>{c:.1} %</td></tr>",
            name = esc(&a.name),
            id = esc(&a.id),
            p = k.persons,
            pc = num(k.per_capita_energy, 2),
            pa = num(k.per_area_energy, 3),
            pw = num(k.water_per_capita, 2),
            q = k.tracking.as_ref().map_or("–".into(), |t| format!(
                "{:.0} %",
                t.ratio_to_date * 100.0
            )),
            c = k.completeness_pct,
        );
    }
    html.push_str("</table><h2>Active alerts</h2><ul id=\"alerts\">");
    let db = meterflow_store::AlertDb::open(&site.store_path())?;
    let firing = db.firing()?;
    if firing.is_empty() {
        html.push_str("<li>none</li>");
    }
    for (rule, target, since, ack, _) in firing {
        let since = site
            .tz
            .timestamp_millis_opt(since)
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        let _ = write!(
            html,
            "<li class=\"alert\">{} · {} since {since}{}</li>",
            esc(&rule),
            esc(&target),
            if ack { " (acknowledged)" } else { "" }
        );
    }
    html.push_str("</ul><p><small>meterflow · figures from the embedded store; month figure from the monthly rollup.</small></p></body></html>");
    let _ = period_of(today.year(), Some(today.month()));
    Ok(html)
}
