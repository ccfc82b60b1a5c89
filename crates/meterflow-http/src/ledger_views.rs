//! Each ledger's own view on its page: office space floor by floor with
//! occupants, area per person against the standard, 超标 and 闲置; the
//! vehicles' maintenance due; the last inventory of each agency's assets;
//! the waste year. An agency sees its own rows only.

use super::*;
use crate::ui::Lang;
use maud::{Markup, html};

fn tr(l: Lang, zh: &'static str, en: &'static str) -> &'static str {
    match l {
        Lang::Zh => zh,
        Lang::En => en,
    }
}

fn name(site: &Site, id: &str) -> String {
    site.agencies
        .iter()
        .find(|a| a.id == id)
        .map_or_else(|| id.to_string(), |a| a.name.clone())
}

fn n1(x: f64) -> String {
    format!("{x:.1}")
}

/// The view of `ledger` for `role` now.
pub(crate) fn view(app: &App, l: Lang, role: &Role, ledger: &str) -> anyhow::Result<Markup> {
    let site = &app.site;
    let db = meterflow_store::LedgerDb::open(&site.store_path())?;
    let events = db.ledger_until(ledger, i64::MAX)?;
    let mine = role.agency();
    let today = chrono::Utc::now().with_timezone(&site.tz).date_naive();
    Ok(match ledger {
        "space" => space(site, l, mine, &events, today),
        "vehicles" => vehicles(site, l, mine, &events, today),
        "assets" => assets(site, l, mine, &events),
        "waste" => waste(site, l, mine, &events, today),
        _ => html! {},
    })
}

fn space(
    site: &Site,
    l: Lang,
    mine: Option<&str>,
    events: &[meterflow_store::LedgerEvent],
    today: chrono::NaiveDate,
) -> Markup {
    let mut s = meterflow_ledgers::space::summarize(site, events, today);
    if let Some(a) = mine {
        s.rooms.retain(|r| r.agency.as_deref() == Some(a));
        s.agencies.retain(|x| x.agency == a);
    }
    // Building, then floor, then room.
    s.rooms
        .sort_by(|a, b| (&a.building, &a.floor, &a.room).cmp(&(&b.building, &b.floor, &b.room)));
    let mut floors: Vec<((String, String), Vec<&meterflow_ledgers::space::RoomStatus>)> =
        Vec::new();
    for r in &s.rooms {
        let key = (r.building.clone(), r.floor.clone().unwrap_or_default());
        match floors.last_mut() {
            Some((k, v)) if *k == key => v.push(r),
            _ => floors.push((key, vec![r])),
        }
    }
    html! {
        section {
            h2 { (tr(l, "各单位办公用房（", "Office space per agency (")) (s.date) (tr(l, "）", ")")) }
            div.scroll { table id="space-agencies" {
                tr {
                    th { (tr(l, "单位", "Agency")) } th { (tr(l, "用能人数", "Persons")) }
                    th { (tr(l, "房间数", "Rooms")) } th { (tr(l, "办公室面积(m²)", "Office m²")) }
                    th { (tr(l, "在岗人数", "Occupants")) } th { (tr(l, "人均(m²)", "m² per person")) }
                    th { (tr(l, "标准(m²)", "Standard m²")) } th { (tr(l, "超标", "Over standard")) }
                    th { (tr(l, "闲置率", "Idle rate")) }
                }
                @for a in &s.agencies {
                    tr {
                        td { (name(site, &a.agency)) }
                        td { (n1(a.persons)) }
                        td { (a.rooms) }
                        td { (n1(a.office_m2)) }
                        td { (a.occupants) }
                        td { (a.m2_per_person.map(n1).unwrap_or_else(|| "–".into())) }
                        td { (n1(a.standard_m2)) }
                        td { @if a.over_standard { span.over { (tr(l, "超标", "over")) } } @else { (tr(l, "否", "no")) } }
                        td { (a.idle_rate_pct.map(|p| format!("{p:.1} %")).unwrap_or_else(|| "–".into())) }
                    }
                }
            } }
        }
        @for ((building, floor), rooms) in &floors {
            section.floor {
                h2 { (building) " · " @if floor.is_empty() { (tr(l, "未注明楼层", "floor not given")) } @else { (floor) (tr(l, " 层", "")) } }
                div.scroll { table {
                    tr {
                        th { (tr(l, "房间号", "Room")) } th { (tr(l, "用房类型", "Use")) }
                        th { (tr(l, "使用面积(m²)", "Usable m²")) } th { (tr(l, "单位", "Agency")) }
                        th { (tr(l, "人员", "Occupants")) } th { (tr(l, "人均(m²)", "m² per person")) }
                        th { (tr(l, "标准(m²)", "Standard m²")) } th { (tr(l, "状态", "State")) }
                    }
                    @for r in rooms {
                        tr class=(if r.over_standard { "over-row" } else if r.idle { "idle-row" } else { "" }) data-room=(r.room) {
                            td { (r.room) }
                            td { (match l { Lang::Zh => meterflow_ledgers::value_zh("use_type", &r.use_type).unwrap_or(&r.use_type).to_string(), Lang::En => r.use_type.clone() }) }
                            td { (n1(r.usable_m2)) }
                            td { (r.agency.as_deref().map(|a| name(site, a)).unwrap_or_default()) }
                            td { (r.occupants.join("、")) }
                            td { @if r.occupants.is_empty() { "–" } @else { (n1(r.usable_m2 / r.occupants.len() as f64)) } }
                            td { (n1(r.standard_m2)) }
                            td {
                                @if r.over_standard { span.over { (tr(l, "超标", "over standard")) } }
                                @else if r.idle { span.idle { (tr(l, "闲置", "idle")) @if let Some(d) = r.idle_since { (tr(l, "（自 ", " (since ")) (d) (tr(l, "）", ")")) } } }
                                @else { (tr(l, "正常", "ok")) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn vehicles(
    site: &Site,
    l: Lang,
    mine: Option<&str>,
    events: &[meterflow_store::LedgerEvent],
    today: chrono::NaiveDate,
) -> Markup {
    let year = chrono::Datelike::year(&today);
    let from = chrono::NaiveDate::from_ymd_opt(year, 1, 1)
        .map_or(i64::MIN, |d| meterflow_core::time::day_start(d, site.tz));
    let mut f = meterflow_ledgers::vehicles::summarize(site, events, from, i64::MAX);
    if let Some(a) = mine {
        f.vehicles.retain(|v| v.agency == a);
    }
    let work = |w: &str| match l {
        Lang::Zh => meterflow_ledgers::value_zh("work", w)
            .unwrap_or(w)
            .to_string(),
        Lang::En => w.to_string(),
    };
    html! {
        section {
            h2 { (tr(l, "保养到期（本年）", "Maintenance due (this year)")) }
            div.scroll { table id="maintenance" {
                tr {
                    th { (tr(l, "车牌号", "Plate")) } th { (tr(l, "单位", "Agency")) }
                    th { (tr(l, "里程表(km)", "Odometer km")) } th { (tr(l, "本年里程(km)", "km this year")) }
                    th { (tr(l, "百公里油耗(L)", "L/100 km")) } th { (tr(l, "保养", "Maintenance")) }
                }
                @for v in f.vehicles.iter().filter(|v| !v.disposed) {
                    tr data-plate=(v.plate) {
                        td { (v.plate) }
                        td { (name(site, &v.agency)) }
                        td { (n1(v.odometer_km)) }
                        td { (n1(v.km)) }
                        td { (v.l_per_100km.map(n1).unwrap_or_else(|| "–".into())) }
                        td {
                            @for d in &v.maintenance {
                                @if d.due {
                                    span.over { (work(d.work)) (tr(l, " 已到期", " due")) " (" (n1(-d.km_left)) " km)" } " "
                                } @else {
                                    span { (work(d.work)) (tr(l, " 剩余 ", " in ")) (n1(d.km_left)) " km" } " "
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}

fn assets(
    site: &Site,
    l: Lang,
    mine: Option<&str>,
    events: &[meterflow_store::LedgerEvent],
) -> Markup {
    // The last inventory round of each agency: the day of its latest scan.
    let mut rows = Vec::new();
    for a in site
        .agencies
        .iter()
        .filter(|a| mine.is_none_or(|m| m == a.id))
    {
        let scope = meterflow_ledgers::assets::Scope::Agency(a.id.clone());
        let last_scan = events
            .iter()
            .filter(|e| e.kind == "scan")
            .filter(|e| e.agency.as_deref().is_none_or(|x| x == a.id))
            .map(|e| e.ts_ms)
            .max();
        let Some(last) = last_scan else {
            rows.push((a.name.clone(), None));
            continue;
        };
        let day = chrono::DateTime::from_timestamp_millis(last)
            .map(|t| t.with_timezone(&site.tz).date_naive());
        let Some(day) = day else { continue };
        let from = meterflow_core::time::day_start(day, site.tz);
        let to = meterflow_core::time::day_start(day + chrono::Duration::days(1), site.tz);
        let r = meterflow_ledgers::assets::reconcile(site, events, &scope, from, to);
        rows.push((a.name.clone(), Some((day, r))));
    }
    html! {
        section {
            h2 { (tr(l, "最近一次盘点", "Last inventory")) }
            div.scroll { table id="reconciliation" {
                tr {
                    th { (tr(l, "单位", "Agency")) } th { (tr(l, "盘点日期", "Date")) }
                    th { (tr(l, "应有", "Expected")) } th { (tr(l, "实有", "Found")) }
                    th { (tr(l, "盘亏", "Missing")) } th { (tr(l, "错位", "Misplaced")) } th { (tr(l, "盘盈", "Unexpected")) }
                }
                @for (agency, r) in &rows {
                    tr {
                        td { (agency) }
                        @if let Some((day, r)) = r {
                            td { (day) } td { (r.expected) } td { (r.found) }
                            td class=(if r.missing.is_empty() { "" } else { "over" }) { (r.missing.len()) }
                            td { (r.misplaced.len()) } td { (r.unexpected.len()) }
                        } @else {
                            td colspan="6" { (tr(l, "尚无盘点记录", "no inventory yet")) }
                        }
                    }
                }
            } }
        }
    }
}

fn waste(
    site: &Site,
    l: Lang,
    mine: Option<&str>,
    events: &[meterflow_store::LedgerEvent],
    today: chrono::NaiveDate,
) -> Markup {
    let year = chrono::Datelike::year(&today);
    let weigh_ins: Vec<meterflow_ledgers::waste::WeighIn> = events
        .iter()
        .filter(|e| e.kind == "weigh_in")
        .filter(|e| {
            chrono::DateTime::from_timestamp_millis(e.ts_ms)
                .is_some_and(|t| chrono::Datelike::year(&t.with_timezone(&site.tz)) == year)
        })
        .filter_map(|e| serde_json::from_str(&e.body).ok())
        .collect();
    let mut s = meterflow_ledgers::waste::summarize(site, &weigh_ins);
    if let Some(a) = mine {
        s.retain(|x| x.agency == a);
    }
    html! {
        section {
            h2 { (year) (tr(l, " 年垃圾分类", " waste sorting")) }
            div.scroll { table id="waste" {
                tr {
                    th { (tr(l, "单位", "Agency")) } th { (tr(l, "称重次数", "Weigh-ins")) }
                    th { (tr(l, "总量(kg)", "Total kg")) } th { (tr(l, "资源化(kg)", "Recovered kg")) }
                    th { (tr(l, "回收利用率", "Recovery rate")) } th { (tr(l, "达标", "Meets target")) }
                }
                @for x in &s {
                    tr {
                        td { (name(site, &x.agency)) }
                        td { (x.records) }
                        td { (n1(x.total_kg)) }
                        td { (n1(x.recovered_kg)) }
                        td { (x.recovery_rate_pct.map(|p| format!("{p:.1} %")).unwrap_or_else(|| "–".into())) }
                        td { @match x.meets_target { Some(true) => (tr(l, "是", "yes")), Some(false) => span.over { (tr(l, "否", "no")) }, None => "–" } }
                    }
                }
            } }
        }
    }
}
