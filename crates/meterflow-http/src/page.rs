//! The overview page at `/`: server-rendered HTML with an inline SVG chart,
//! no script and nothing from a CDN, so it works on the embedded default
//! (and on a locked-down network) without Grafana.

use std::fmt::Write as _;

use chrono::{Datelike, TimeZone};
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

pub use crate::ui::Lang;

/// A table's header row.
fn header(cells: &[&str]) -> String {
    let cells: String = cells.iter().map(|c| format!("<th>{c}</th>")).collect();
    format!("<tr>{cells}</tr>")
}

/// The carriers shown, with their labels and units.
const CARRIERS: [(EnergyClass, &str, &str, &str); 4] = [
    (EnergyClass::Electricity, "电", "Electricity", "kWh"),
    (EnergyClass::Water, "水", "Water", "m³"),
    (EnergyClass::Gas, "燃气", "Gas", "m³"),
    (EnergyClass::Heat, "热", "Heat", "GJ"),
];

/// Percent-decoding of a form value (`+` is a space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(v)) => {
                out.push(v);
                i += 2;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fields of an `application/x-www-form-urlencoded` body.
pub fn form_fields(body: &[u8]) -> std::collections::HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// The page's address with its language.
pub fn back_to(lang: Option<&String>) -> String {
    let mut q = Vec::new();
    if let Some(l) = lang {
        q.push(format!("lang={}", meterflow_runtime::notify::url_encode(l)));
    }
    if q.is_empty() {
        "/".into()
    } else {
        format!("/?{}", q.join("&"))
    }
}

/// What the signed-in browser of a page may do there.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// The session's CSRF token (signed in), for its forms.
    pub csrf: Option<String>,
    /// A manager or admin: each firing alert gets an acknowledge button.
    pub acknowledges: bool,
    /// Who it is, as the menu shows it.
    pub who: String,
}

/// A quota gauge: the share used so far on a 0–150 % scale, the 100 % mark
/// drawn across it, red beyond it.
fn gauge(ratio: Option<f64>) -> String {
    let Some(r) = ratio.filter(|r| r.is_finite()) else {
        return String::new();
    };
    let w = 90.0;
    let filled = (r.clamp(0.0, 1.5) / 1.5) * w;
    let mark = w / 1.5;
    format!(
        "<svg class=\"gauge\" data-ratio=\"{r:.4}\" width=\"{w}\" height=\"10\" viewBox=\"0 0 {w} 10\" role=\"img\" aria-label=\"{p:.0} %\">\
<rect width=\"{w}\" height=\"10\" fill=\"#e8ecf0\"/><rect width=\"{filled:.1}\" height=\"10\" fill=\"{fill}\"/>\
<line x1=\"{mark:.1}\" y1=\"0\" x2=\"{mark:.1}\" y2=\"10\" stroke=\"#000\" stroke-width=\"1.5\"/></svg>",
        p = r * 100.0,
        fill = if r > 1.0 { "#c0392b" } else { "#2e8b57" },
    )
}

/// The menu: the ledgers and sign-out for a session, sign-in otherwise.
fn menu(l: Lang, viewer: &Viewer) -> String {
    match &viewer.csrf {
        Some(csrf) => format!(
            "<span>{}</span><a href=\"/assessment\">{}</a><a href=\"/ledgers\">{}</a><form method=\"post\" action=\"/logout\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">{}</button></form>",
            esc(&viewer.who),
            l.t("年度考核", "Assessment"),
            l.t("台账", "Ledgers"),
            esc(csrf),
            l.t("退出", "Sign out")
        ),
        None => format!("<a href=\"/login\">{}</a>", l.t("登录", "Sign in")),
    }
}

/// The page for the site of `kpi` now, in `lang`, for `viewer`.
pub fn overview(
    kpi: &KpiContext,
    lang: Lang,
    viewer: &Viewer,
    chosen: &crate::chart::Chosen,
) -> anyhow::Result<String> {
    let l = lang;
    let site: &Site = kpi.site();
    let reader = Reader::open(&site.store_path())?;
    let now = chrono::Utc::now().with_timezone(&site.tz);
    let today = now.date_naive();
    let total = |class: EnergyClass, grain: Grain, from: i64| -> anyhow::Result<Option<f64>> {
        Ok(reader
            .agg(Level::Site, "site", class, "", grain, from, i64::MAX)?
            .last()
            .map(|r| r.value))
    };
    let month_start = today.with_day(1).unwrap_or(today);
    let year_start = today.with_ordinal(1).unwrap_or(today);
    let year = period_of(today.year(), None).ok_or_else(|| anyhow::anyhow!("period"))?;
    let site_k = kpi.scope_kpis(&reader, &Scope::Site, year)?;
    // Coverage means something only over the days that have passed.
    let so_far = meterflow_core::denominators::Period {
        from: month_start,
        to: today.succ_opt().unwrap_or(today),
    };
    let month_k = kpi.scope_kpis(&reader, &Scope::Site, so_far)?;

    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta http-equiv=\"refresh\" content=\"60\">\
<title>{name} · meterflow</title>{assets}<style>\
body{{font-family:{fonts};margin:1rem;color:#222}}.scroll{{overflow-x:auto}}nav form{{display:inline}}nav a,nav button{{margin-left:1em}}table{{border-collapse:collapse}}\
td,th{{border-bottom:1px solid #ddd;padding:.3rem .8rem;text-align:right}}th:first-child,td:first-child{{text-align:left}}\
.cards{{display:flex;gap:1rem;flex-wrap:wrap}}.card{{border:1px solid #ccc;border-radius:6px;padding:.8rem 1.2rem}}.big{{font-size:1.6rem}}\
.alert{{color:#a00}}.over{{color:#a00;font-weight:bold}}figure.chart{{margin:1em 0;max-width:760px}}.legend{{font-size:.85em;color:#555}}nav{{float:right}}</style></head><body>\
<nav>{menu}<a href=\"?lang={other}\">{other_label}</a></nav><h1>{name}</h1><p>{date} · {tz} · {refresh}</p>",
        lang = l.t("zh-CN", "en"),
        fonts = crate::ui::FONTS,
        assets = crate::assets::HEAD,
        menu = menu(l, viewer),
        other = l.t("en", "zh"),
        other_label = l.t("English", "中文"),
        name = esc(&site.site.name),
        date = today,
        tz = site.tz.name(),
        refresh = l.t("每分钟自动刷新", "refreshes every minute"),
    );
    // Today / month / year per carrier.
    let _ = write!(
        html,
        "<table id=\"carriers\">{}",
        header(&[
            l.t("能源品种", "Carrier"),
            l.t("今日", "Today"),
            l.t("本月", "This month"),
            l.t("本年", "This year"),
        ])
    );
    for (class, zh, en, unit) in CARRIERS {
        let d = total(class, Grain::Day, day_start(today, site.tz))?;
        let m = total(class, Grain::Month, day_start(month_start, site.tz))?;
        let y = total(class, Grain::Year, day_start(year_start, site.tz))?;
        if d.is_none() && m.is_none() && y.is_none() {
            continue;
        }
        let _ = write!(
            html,
            "<tr><td>{} ({unit})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            l.t(zh, en),
            num(d, 1),
            num(m, 1),
            num(y, 1)
        );
    }
    html.push_str("</table>");
    let quota_ratio = site_k.tracking.as_ref().map(|t| t.ratio_to_date);
    let _ = write!(
        html,
        "<div class=\"cards\">\
<div class=\"card\" id=\"energy\">{energy_l}<div class=\"big\">{kgce:.1} kgce</div></div>\
<div class=\"card\" id=\"co2\">{co2_l}<div class=\"big\">{co2}</div></div>\
<div class=\"card\" id=\"quota\">{quota_l}<div class=\"big{over}\">{quota}</div>{proj}</div>\
<div class=\"card\" id=\"completeness\">{cov_l}<div class=\"big\">{cov:.1} %</div>{measured_l} {comp:.1} %</div></div>",
        energy_l = l.t("本年综合能耗", "Comprehensive energy this year"),
        kgce = site_k.energy_kgce,
        co2_l = l.t("本年碳排放", "CO₂ this year"),
        co2 = site_k.co2_t.map_or_else(
            || l.t("缺少排放因子", "factor missing").to_string(),
            |t| format!("{t:.2} t")
        ),
        quota_l = l.t(
            "人均能耗定额进度（年初至今）",
            "Against quota (per capita, year to date)"
        ),
        over = if quota_ratio.is_some_and(|r| r > 1.0) {
            " over"
        } else {
            ""
        },
        quota = quota_ratio.map_or("–".into(), |r| format!("{:.0} %", r * 100.0)),
        proj = site_k.tracking.as_ref().map_or(String::new(), |t| {
            match (t.projected_ratio, t.method) {
                (Some(r), Some(_)) => {
                    format!("{} {:.0} %", l.t("预计全年", "projected"), r * 100.0)
                }
                _ => format!(
                    "{} ({:.0} {})",
                    l.t("数据不足，暂不预测", "projection: not enough data"),
                    t.days_with_data,
                    l.t("天", "days")
                ),
            }
        }),
        cov_l = l.t("本月至今数据覆盖率", "Data coverage this month so far"),
        cov = month_k.coverage_pct,
        measured_l = l.t("其中实测", "measured"),
        comp = month_k.completeness_pct,
    );

    // Bars for the chosen period, one chart per carrier with data.
    html.push_str(&crate::chart::picker(l, "/", chosen));
    html.push_str(&crate::chart::charts(
        l,
        &reader,
        site,
        Level::Site,
        "site",
        chosen,
    )?);
    if !site.buildings.is_empty() {
        let _ = write!(
            html,
            "<h2>{}</h2><ul id=\"buildings\">",
            l.t("楼栋", "Buildings")
        );
        for b in &site.buildings {
            let _ = write!(
                html,
                "<li><a href=\"/buildings/{id}\">{name}</a></li>",
                id = esc(&b.id),
                name = esc(b.name.as_deref().unwrap_or(&b.id)),
            );
        }
        html.push_str("</ul>");
    }

    let _ = write!(
        html,
        "<h2>{}</h2><div class=\"scroll\"><table id=\"agencies\">{}",
        l.t("各单位（本年）", "Agencies, this year"),
        header(&[
            l.t("单位", "Agency"),
            l.t("用能人数", "Persons"),
            l.t("人均综合能耗 kgce/人", "kgce / person"),
            l.t("单位面积能耗 kgce/m²", "kgce / m²"),
            l.t("人均用水 m³/人", "Water m³ / person"),
            l.t("碳排放 t", "CO₂ t"),
            l.t("定额进度", "Quota, year to date"),
            l.t("本月至今覆盖率", "Coverage this month so far"),
        ])
    );
    for a in &site.agencies {
        let k = kpi.scope_kpis(&reader, &Scope::Agency(a.id.clone()), year)?;
        let cover = kpi
            .scope_kpis(&reader, &Scope::Agency(a.id.clone()), so_far)?
            .coverage_pct;
        let ratio = k.tracking.as_ref().map(|t| t.ratio_to_date);
        let _ = write!(
            html,
            "<tr><td><a href=\"/agencies/{id}\">{name}</a></td><td>{p:.0}</td><td>{pc}</td><td>{pa}</td><td>{pw}</td><td>{co2}</td><td{over}>{gauge} {q}</td><td>{c:.1} %</td></tr>",
            gauge = gauge(ratio),
            name = esc(&a.name),
            id = esc(&a.id),
            p = k.persons,
            pc = num(k.per_capita_energy, 2),
            pa = num(k.per_area_energy, 3),
            pw = num(k.water_per_capita, 2),
            co2 = num(k.co2_t, 2),
            over = if ratio.is_some_and(|r| r > 1.0) {
                " class=\"over\""
            } else {
                ""
            },
            q = ratio.map_or("–".into(), |r| format!("{:.0} %", r * 100.0)),
            c = cover,
        );
    }
    let _ = write!(
        html,
        "</table></div><h2>{}</h2><ul id=\"alerts\">",
        l.t("当前告警", "Active alerts")
    );
    let db = meterflow_store::AlertDb::open(&site.store_path())?;
    let firing = db.firing()?;
    if firing.is_empty() {
        let _ = write!(html, "<li>{}</li>", l.t("无", "none"));
    }
    for (rule, target, since, ack, _) in firing {
        let since = site
            .tz
            .timestamp_millis_opt(since)
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        let button = match viewer.csrf.as_deref().filter(|_| viewer.acknowledges) {
            Some(token) if !ack => format!(
                "<form method=\"post\" action=\"/ack\" style=\"display:inline\">\
<input type=\"hidden\" name=\"rule\" value=\"{}\"><input type=\"hidden\" name=\"target\" value=\"{}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"lang\" value=\"{}\">\
<button type=\"submit\" class=\"ack\">{}</button></form>",
                esc(&rule),
                esc(&target),
                esc(token),
                l.t("zh", "en"),
                l.t("确认", "Acknowledge")
            ),
            _ => String::new(),
        };
        let _ = write!(
            html,
            "<li class=\"alert\">{} · {} {} {since}{} {button}</li>",
            esc(&rule),
            esc(&target),
            l.t("始于", "since"),
            if ack {
                l.t("（已确认）", " (acknowledged)")
            } else {
                ""
            }
        );
    }
    let _ = write!(
        html,
        "</ul><p><small>{}</small></p></body></html>",
        l.t(
            "meterflow · 数据来自内置数据库；本月数值取自月汇总。",
            "meterflow · figures from the embedded store; month figure from the monthly rollup."
        )
    );
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_decode_and_the_way_back_encodes() {
        let f =
            form_fields(b"rule=meter-silent&target=w%2B1&token=a%2Fb+c&lang=zh&bad=%ZZ%e4%b8%ad");
        assert_eq!(f["rule"], "meter-silent");
        assert_eq!(f["target"], "w+1");
        assert_eq!(f["token"], "a/b c");
        assert_eq!(f["bad"], "%ZZ中");
        assert_eq!(back_to(f.get("lang")), "/?lang=zh");
        assert_eq!(back_to(None), "/");
    }
}
