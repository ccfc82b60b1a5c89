//! Bar charts drawn on the server as SVG (ADR 0021): axes, dates, a scale,
//! and each bar coloured by the quality of its data (measured, partly
//! estimated, estimated; a missing period is marked at the baseline). Every
//! bar carries its period and value as data attributes, so what the page
//! shows can be checked against the store.

use std::fmt::Write as _;

use chrono::{Datelike, Duration, NaiveDate};
use chrono_tz::Tz;
use meterflow_core::aggregate::{Grain, Level};
use meterflow_core::time::day_start;
use meterflow_model::EnergyClass;

use crate::ui::Lang;

/// The period a page shows, chosen with `?period=` and `?date=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// The 30 days up to today (the default).
    Days30,
    /// One day, by hour.
    Day,
    /// The Monday-to-Sunday week of the date, by day.
    Week,
    /// The calendar month of the date, by day.
    Month,
    /// The calendar year of the date, by month.
    Year,
}

impl Span {
    /// `period` as given in the address.
    pub fn parse(s: Option<&str>) -> Span {
        match s {
            Some("day") => Span::Day,
            Some("week") => Span::Week,
            Some("month") => Span::Month,
            Some("year") => Span::Year,
            _ => Span::Days30,
        }
    }

    /// The name in the address.
    pub fn key(self) -> &'static str {
        match self {
            Span::Days30 => "30d",
            Span::Day => "day",
            Span::Week => "week",
            Span::Month => "month",
            Span::Year => "year",
        }
    }

    fn label(self, l: Lang) -> &'static str {
        match self {
            Span::Days30 => l.t("近30天", "Last 30 days"),
            Span::Day => l.t("日", "Day"),
            Span::Week => l.t("周", "Week"),
            Span::Month => l.t("月", "Month"),
            Span::Year => l.t("年", "Year"),
        }
    }
}

/// A chosen period: its local days `[from, to)` and the grain of its bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    /// What was chosen.
    pub span: Span,
    /// The date it was chosen around.
    pub date: NaiveDate,
    /// First day.
    pub from: NaiveDate,
    /// Day after the last.
    pub to: NaiveDate,
    /// One bar per hour, day or month.
    pub grain: Grain,
}

/// The period of `span` around `date` (today when none or unreadable, and
/// never a year outside 2000–2100).
pub fn choose(span: Span, date: Option<&str>, today: NaiveDate) -> Chosen {
    let date = date
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .filter(|d| (2000..=2100).contains(&d.year()))
        .unwrap_or(today);
    let first_of = |y: i32, m: u32| NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(date);
    let (from, to, grain) = match span {
        Span::Days30 => (
            today - Duration::days(29),
            today + Duration::days(1),
            Grain::Day,
        ),
        Span::Day => (date, date + Duration::days(1), Grain::Hour),
        Span::Week => {
            let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
            (monday, monday + Duration::days(7), Grain::Day)
        }
        Span::Month => {
            let next = if date.month() == 12 {
                first_of(date.year() + 1, 1)
            } else {
                first_of(date.year(), date.month() + 1)
            };
            (first_of(date.year(), date.month()), next, Grain::Day)
        }
        Span::Year => (
            first_of(date.year(), 1),
            first_of(date.year() + 1, 1),
            Grain::Month,
        ),
    };
    Chosen {
        span: if span == Span::Days30 {
            Span::Days30
        } else {
            span
        },
        date,
        from,
        to,
        grain,
    }
}

impl Chosen {
    /// The bars' periods: (UTC ms of the local start, axis label, key).
    pub fn slots(&self, tz: Tz) -> Vec<(i64, String, String)> {
        let mut out = Vec::new();
        match self.grain {
            Grain::Hour => {
                let (a, b) = (day_start(self.from, tz), day_start(self.to, tz));
                let mut t = a;
                while t < b {
                    let local = chrono::DateTime::from_timestamp_millis(t)
                        .map(|x| x.with_timezone(&tz).format("%H").to_string())
                        .unwrap_or_default();
                    let key = chrono::DateTime::from_timestamp_millis(t)
                        .map(|x| x.with_timezone(&tz).format("%Y-%m-%d %H:00").to_string())
                        .unwrap_or_default();
                    out.push((t, local, key));
                    t += 3_600_000;
                }
            }
            Grain::Month => {
                let mut d = self.from;
                while d < self.to {
                    out.push((
                        day_start(d, tz),
                        format!("{}", d.month()),
                        d.format("%Y-%m").to_string(),
                    ));
                    d = if d.month() == 12 {
                        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
                    } else {
                        NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
                    }
                    .unwrap_or(self.to);
                }
            }
            _ => {
                let mut d = self.from;
                while d < self.to {
                    out.push((
                        day_start(d, tz),
                        d.format("%m-%d").to_string(),
                        d.to_string(),
                    ));
                    d += Duration::days(1);
                }
            }
        }
        out
    }

    /// UTC ms bounds.
    pub fn ms(&self, tz: Tz) -> (i64, i64) {
        (day_start(self.from, tz), day_start(self.to, tz))
    }
}

/// The quality of one bar's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// Every bucket measured.
    Measured,
    /// Some buckets estimated (or some missing).
    Mixed,
    /// Only estimates.
    Estimated,
    /// Nothing for a period that has passed.
    Missing,
    /// A period still to come.
    Future,
}

impl Quality {
    fn key(self) -> &'static str {
        match self {
            Quality::Measured => "measured",
            Quality::Mixed => "mixed",
            Quality::Estimated => "estimated",
            Quality::Missing => "missing",
            Quality::Future => "future",
        }
    }

    /// From bucket counts: `expected` is 0 when unknown (a scope's rows
    /// count meter-buckets of many meters).
    pub fn of(measured: i64, estimated: i64, expected: i64) -> Quality {
        match (measured, estimated) {
            (0, 0) => Quality::Missing,
            (_, 0) if expected == 0 || measured >= expected => Quality::Measured,
            (0, _) => Quality::Estimated,
            _ => Quality::Mixed,
        }
    }
}

/// One bar.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Axis label (`12-01`, `08`, `3`).
    pub label: String,
    /// Its period (`2026-12-01`).
    pub key: String,
    /// Value in the chart's unit.
    pub value: f64,
    /// The data's quality.
    pub quality: Quality,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A bar chart: `id` for the page, its title and unit.
pub fn bars(l: Lang, id: &str, title: &str, unit: &str, bars: &[Bar]) -> String {
    bars_svg(l, id, title, unit, bars)
}

fn bars_svg(l: Lang, id: &str, title: &str, unit: &str, bars: &[Bar]) -> String {
    let (w, h, left, bottom, top) = (760.0, 240.0, 64.0, 28.0, 12.0);
    let n = bars.len().max(1) as f64;
    let max = bars
        .iter()
        .map(|b| b.value)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let scale = if max > 0.0 { max } else { 1.0 };
    let slot = (w - left - 8.0) / n;
    let plot_h = h - bottom - top;
    let base = h - bottom;
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure class=\"chart\"><figcaption>{t} ({u})</figcaption>\
<svg id=\"{id}\" class=\"bars\" data-unit=\"{u}\" data-interactive=\"{inter}\" data-x=\"{xl}\" width=\"100%\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{t}\">\
<line x1=\"{left}\" y1=\"{base}\" x2=\"{r}\" y2=\"{base}\" stroke=\"#999\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{base}\" stroke=\"#999\"/>\
<text x=\"{lx}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{max}</text><text x=\"{lx}\" y=\"{base}\" font-size=\"11\" text-anchor=\"end\">0</text>\
<text x=\"4\" y=\"{mid}\" font-size=\"11\">{u}</text>",
        t = esc(title),
        u = esc(unit),
        id = esc(id),
        inter = l.t(
            "交互图表（缩放、数值提示）",
            "Interactive chart (zoom, values)"
        ),
        xl = l.t("时段", "Period"),
        r = w - 8.0,
        lx = left - 4.0,
        ty = top + 4.0,
        max = round_label(max),
        mid = top + plot_h / 2.0,
    );
    let every = (bars.len() / 12).max(1);
    for (i, b) in bars.iter().enumerate() {
        let x = left + i as f64 * slot + 1.0;
        let bw = (slot - 2.0).max(1.0);
        match b.quality {
            Quality::Missing | Quality::Future => {
                if b.quality == Quality::Future {
                    let _ = write!(
                        s,
                        "<rect class=\"future\" data-key=\"{k}\" data-quality=\"future\" x=\"{x:.1}\" y=\"{base}\" width=\"{bw:.1}\" height=\"0\"/>",
                        k = esc(&b.key),
                    );
                } else {
                    let _ = write!(
                        s,
                        "<rect class=\"gap\" data-key=\"{k}\" data-quality=\"missing\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"3\" fill=\"#bbb\"><title>{k}: {m}</title></rect>",
                        k = esc(&b.key),
                        y = base - 3.0,
                        m = l.t("缺数", "no data"),
                    );
                }
            }
            q => {
                let bh = if b.value.is_finite() && b.value > 0.0 {
                    plot_h * b.value / scale
                } else {
                    0.0
                };
                let fill = match q {
                    Quality::Measured => "#1769aa",
                    Quality::Mixed => "#5c9bd1",
                    _ => "#e0a040",
                };
                let _ = write!(
                    s,
                    "<rect class=\"bar\" data-key=\"{k}\" data-value=\"{v}\" data-quality=\"{qk}\" x=\"{x:.1}\" y=\"{y:.3}\" width=\"{bw:.1}\" height=\"{bh:.3}\" fill=\"{fill}\"><title>{k}: {vl} {u} ({ql})</title></rect>",
                    k = esc(&b.key),
                    v = b.value,
                    qk = q.key(),
                    y = base - bh,
                    vl = round_label(b.value),
                    u = esc(unit),
                    ql = quality_label(l, q),
                );
            }
        }
        if i % every == 0 {
            let _ = write!(
                s,
                "<text x=\"{x:.1}\" y=\"{y}\" font-size=\"10\">{lab}</text>",
                y = h - 8.0,
                lab = esc(&b.label),
            );
        }
    }
    let _ = write!(
        s,
        "</svg><div class=\"legend\"><span style=\"color:#1769aa\">■</span> {} <span style=\"color:#5c9bd1\">■</span> {} <span style=\"color:#e0a040\">■</span> {} <span style=\"color:#bbb\">▁</span> {}</div></figure>",
        quality_label(l, Quality::Measured),
        quality_label(l, Quality::Mixed),
        quality_label(l, Quality::Estimated),
        quality_label(l, Quality::Missing),
    );
    s
}

/// A scope's bars for `class` over the chosen period.
pub fn scope_bars(
    reader: &meterflow_store::Reader,
    site: &meterflow_model::Site,
    level: Level,
    id: &str,
    class: EnergyClass,
    c: &Chosen,
) -> anyhow::Result<Vec<Bar>> {
    let (from, to) = c.ms(site.tz);
    let rows = reader.agg(level, id, class, "", c.grain, from, to)?;
    let by_start: std::collections::HashMap<i64, &meterflow_store::AggRow> =
        rows.iter().map(|r| (r.start_ms, r)).collect();
    let now = meterflow_model::clock::now_ms();
    Ok(c.slots(site.tz)
        .into_iter()
        .map(|(start, label, key)| match by_start.get(&start) {
            Some(r) => Bar {
                label,
                key,
                value: r.value,
                quality: Quality::of(r.measured, r.estimated, 0),
            },
            None => Bar {
                label,
                key,
                value: 0.0,
                quality: if start > now {
                    Quality::Future
                } else {
                    Quality::Missing
                },
            },
        })
        .collect())
}

/// The carriers charted, with their titles and units.
const CLASSES: [(EnergyClass, &str, &str, &str); 4] = [
    (EnergyClass::Electricity, "用电", "Electricity", "kWh"),
    (EnergyClass::Water, "用水", "Water", "m³"),
    (EnergyClass::Gas, "用气", "Gas", "m³"),
    (EnergyClass::Heat, "供热", "Heat", "GJ"),
];

/// One chart per carrier with data in the period (electricity always) for
/// a scope.
pub fn charts(
    l: Lang,
    reader: &meterflow_store::Reader,
    site: &meterflow_model::Site,
    level: Level,
    id: &str,
    c: &Chosen,
) -> anyhow::Result<String> {
    let mut out = String::new();
    for (class, zh, en, unit) in CLASSES {
        let bars = scope_bars(reader, site, level, id, class, c)?;
        let any = bars
            .iter()
            .any(|b| !matches!(b.quality, Quality::Missing | Quality::Future));
        if !any && class != EnergyClass::Electricity {
            continue;
        }
        let chart_id = format!("chart-{}", class.as_str());
        out.push_str(&bars_svg(l, &chart_id, l.t(zh, en), unit, &bars));
    }
    Ok(out)
}

fn quality_label(l: Lang, q: Quality) -> &'static str {
    match q {
        Quality::Measured => l.t("实测", "measured"),
        Quality::Mixed => l.t("部分估算", "partly estimated"),
        Quality::Estimated => l.t("估算", "estimated"),
        Quality::Missing => l.t("缺数", "no data"),
        Quality::Future => "",
    }
}

/// A scale label: three significant digits at most.
fn round_label(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The period picker: the five spans and a date, as a GET form to `action`.
pub fn picker(l: Lang, action: &str, c: &Chosen) -> String {
    let mut s = format!(
        "<form class=\"picker\" method=\"get\" action=\"{}\">",
        esc(action)
    );
    for span in [Span::Days30, Span::Day, Span::Week, Span::Month, Span::Year] {
        let _ = write!(
            s,
            "<label><input type=\"radio\" name=\"period\" value=\"{k}\"{c}> {t}</label> ",
            k = span.key(),
            c = if span == c.span { " checked" } else { "" },
            t = span.label(l),
        );
    }
    let _ = write!(
        s,
        "<input type=\"date\" name=\"date\" value=\"{d}\" aria-label=\"{a}\"> <button type=\"submit\">{b}</button> <span class=\"range\">{f} – {t}</span></form>",
        d = c.date,
        a = l.t("日期", "date"),
        b = l.t("查看", "Show"),
        f = c.from,
        t = c.to - Duration::days(1),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_by_hand() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).expect("date");
        // Thursday 2026-12-03: its week runs Monday 11-30 to Sunday 12-06.
        let w = choose(Span::Week, None, today);
        assert_eq!(
            (w.from.to_string(), w.to.to_string()),
            ("2026-11-30".into(), "2026-12-07".into())
        );
        let m = choose(Span::Month, Some("2026-02-10"), today);
        assert_eq!(
            (m.from.to_string(), m.to.to_string()),
            ("2026-02-01".into(), "2026-03-01".into())
        );
        assert_eq!(m.slots(chrono_tz::Asia::Shanghai).len(), 28);
        let y = choose(Span::Year, Some("2025-06-01"), today);
        assert_eq!(y.slots(chrono_tz::Asia::Shanghai).len(), 12);
        let d = choose(Span::Day, Some("2026-12-01"), today);
        let hours = d.slots(chrono_tz::Asia::Shanghai);
        assert_eq!(hours.len(), 24);
        assert_eq!(hours[8].2, "2026-12-01 08:00");
        // A date outside the years the pages mean falls back to today.
        assert_eq!(choose(Span::Day, Some("+262142-12-31"), today).date, today);
        assert_eq!(choose(Span::Day, Some("1066-10-14"), today).date, today);
        assert_eq!(
            choose(Span::Days30, None, today).from.to_string(),
            "2026-11-04"
        );
    }

    #[test]
    fn bar_heights_are_proportional() {
        let b = |v: f64| Bar {
            label: String::new(),
            key: format!("{v}"),
            value: v,
            quality: Quality::Measured,
        };
        let svg = bars(Lang::Zh, "c", "t", "kWh", &[b(50.0), b(200.0)]);
        // Plot height 240 − 28 − 12 = 200: 200 kWh is 200 high, 50 kWh 50.
        assert!(svg.contains("height=\"50.000\""), "{svg}");
        assert!(svg.contains("height=\"200.000\""), "{svg}");
        assert_eq!(Quality::of(0, 0, 96), Quality::Missing);
        assert_eq!(Quality::of(96, 0, 96), Quality::Measured);
        assert_eq!(Quality::of(90, 0, 96), Quality::Mixed);
        assert_eq!(Quality::of(0, 96, 96), Quality::Estimated);
        assert_eq!(Quality::of(500, 0, 0), Quality::Measured);
    }
}
