//! The manager's drill-down: site → building → agency → meter, each with
//! its chart for a chosen period (bars coloured by data quality), its
//! figures with the reasons when one is withheld, and the way down; and
//! the assessment page (year and profile, a preview of the main table,
//! the downloads). An agency opens its own agency and meters only.

use super::*;
use crate::chart::{self, Bar, Chosen, Quality, Span};
use crate::ui::Lang;
use crate::web::Session;
use maud::{Markup, PreEscaped, html};
use meterflow_core::aggregate::{Grain, Level};

fn tr(l: Lang, zh: &'static str, en: &'static str) -> &'static str {
    l.t(zh, en)
}

fn n(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "–".into(),
    }
}

/// The viewer of a page: a session, else a bearer token (API clients and
/// scripts), else the way to sign in.
fn viewer(
    app: &App,
    h: &HeaderMap,
    peer: SocketAddr,
    back: &str,
) -> Result<(Role, Option<Session>), Box<Response>> {
    if let Some(s) = web::signed_in(app, h) {
        return Ok((s.role.clone(), Some(s)));
    }
    if h.contains_key(header::AUTHORIZATION) {
        return app
            .auth(h, peer)
            .map(|r| (r, None))
            .map_err(|e| Box::new(e.into_response()));
    }
    let next = meterflow_runtime::notify::url_encode(back);
    Err(Box::new(
        (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/login?next={next}"))],
        )
            .into_response(),
    ))
}

fn today(site: &Site) -> chrono::NaiveDate {
    chrono::Utc::now().with_timezone(&site.tz).date_naive()
}

/// A meter's bars over the chosen period, in its own unit: 4 buckets an
/// hour and 96 a day are expected, so a partly missing period shows.
fn meter_bars(reader: &Reader, site: &Site, series: i64, c: &Chosen) -> anyhow::Result<Vec<Bar>> {
    let (from, to) = c.ms(site.tz);
    let now = meterflow_model::clock::now_ms();
    let slots = c.slots(site.tz);
    let mut got: HashMap<String, (i64, i64, i64)> = HashMap::new();
    match c.grain {
        Grain::Hour => {
            for r in reader.hours(series, from, to)? {
                let key = chrono::DateTime::from_timestamp_millis(r.hour_ms)
                    .map(|t| {
                        t.with_timezone(&site.tz)
                            .format("%Y-%m-%d %H:00")
                            .to_string()
                    })
                    .unwrap_or_default();
                got.insert(key, (r.micro, r.measured, r.estimated));
            }
        }
        _ => {
            for r in reader.days(series, &c.from.to_string(), &c.to.to_string())? {
                let key = if c.grain == Grain::Month {
                    r.day.chars().take(7).collect()
                } else {
                    r.day.clone()
                };
                let e = got.entry(key).or_default();
                e.0 += r.micro;
                e.1 += r.measured;
                e.2 += r.estimated;
            }
        }
    }
    let mut out = Vec::new();
    for (i, (start, label, key)) in slots.iter().enumerate() {
        let end = slots.get(i + 1).map_or(to, |s| s.0);
        let expected = (end - start) / meterflow_core::buckets::BUCKET_MS;
        let bar = match got.get(key) {
            Some((micro, m, e)) => Bar {
                label: label.clone(),
                key: key.clone(),
                value: meterflow_core::from_micro(*micro),
                quality: Quality::of(*m, *e, expected),
            },
            None => Bar {
                label: label.clone(),
                key: key.clone(),
                value: 0.0,
                quality: if *start > now {
                    Quality::Future
                } else {
                    Quality::Missing
                },
            },
        };
        out.push(bar);
    }
    Ok(out)
}

/// The period a page was asked for (`?period=`, `?date=`), around today.
fn chosen(app: &App, q: &HashMap<String, String>) -> Chosen {
    chart::choose(
        Span::parse(q.get("period").map(String::as_str)),
        q.get("date").map(String::as_str),
        today(&app.site),
    )
}

/// The cost table of `scope` over the chosen period (nothing without
/// `[[tariff]]`).
fn cost_section(
    app: &App,
    reader: &Reader,
    l: Lang,
    scope: &Scope,
    c: &Chosen,
) -> anyhow::Result<Markup> {
    if app.site.tariffs.is_empty() {
        return Ok(html! {});
    }
    Ok(cost_table(
        l,
        &app.kpi.cost(reader, scope, period_of_chosen(c))?,
    ))
}

/// The cost of a scope over the chosen period, by carrier and time-of-use
/// period, with the water months against the quota.
fn cost_table(l: Lang, c: &meterflow_kpi::cost::Cost) -> Markup {
    let period_label = |p: &str| match p {
        "critical" => tr(l, "尖峰", "critical peak"),
        "peak" => tr(l, "峰", "peak"),
        "flat" => tr(l, "平", "flat"),
        "valley" => tr(l, "谷", "valley"),
        _ => tr(l, "单一价格", "one price"),
    };
    let carrier_label = |c: &str| match c {
        "electricity" => tr(l, "电", "electricity"),
        "water" => tr(l, "水", "water"),
        "gas" => tr(l, "天然气", "gas"),
        "heat" => tr(l, "热力", "heat"),
        _ => tr(l, "其他", "other"),
    };
    html! {
        h2 { (tr(l, "能源费用（所选期间）", "Energy cost (the chosen period)")) }
        div.scroll { table id="cost" {
            tr { th { (tr(l, "能源", "Carrier")) } th { (tr(l, "时段", "Period")) } th { (tr(l, "用量", "Quantity")) } th { (tr(l, "费用(元)", "CNY")) } th { (tr(l, "占比", "Share")) } }
            @for car in &c.carriers {
                @for p in &car.periods {
                    tr data-carrier=(car.carrier) data-period=(p.period) {
                        td { (carrier_label(&car.carrier)) }
                        td { (period_label(&p.period)) }
                        td { (n(Some(p.quantity), 1)) }
                        td { (n(Some(p.cny), 2)) }
                        td { (if car.quantity > 0.0 { format!("{:.1} %", p.quantity / car.quantity * 100.0) } else { "–".into() }) }
                    }
                }
                @if car.surcharge_cny > 0.0 {
                    tr { td { (carrier_label(&car.carrier)) } td { (tr(l, "超定额加价", "surcharge above the quota")) } td {} td.over { (n(Some(car.surcharge_cny), 2)) } td {} }
                }
                @for f in &car.fixed {
                    tr data-carrier=(car.carrier) data-fixed=(f.kind) {
                        td { (carrier_label(&car.carrier)) }
                        td { (f.month) " " (match f.kind.as_str() {
                            "demand" => tr(l, "基本电费（按需量）", "demand charge"),
                            "capacity" => tr(l, "基本电费（按容量）", "capacity charge"),
                            _ => tr(l, "采暖费（按面积）", "heating by area"),
                        }) }
                        td { (n(Some(f.basis), 1)) (match f.kind.as_str() { "demand" => " kW", "capacity" => " kVA", _ => " m²" }) }
                        td { (n(Some(f.cny), 2)) }
                        td { (format!("{:.1} %", f.share * 100.0)) }
                    }
                }
            }
            tr { th { (tr(l, "合计", "Total")) } th {} th {} th id="cost-total" { (n(Some(c.total_cny), 2)) } th {} }
        } }
        @for car in c.carriers.iter().filter(|x| !x.months.is_empty()) {
            div.scroll { table id="water-quota" {
                tr { th { (tr(l, "月份", "Month")) } th { (tr(l, "用水(m³)", "Water m³")) } th { (tr(l, "月定额(m³)", "Monthly quota m³")) } th { (tr(l, "超定额", "Over")) } th { (tr(l, "加价(元)", "Surcharge CNY")) } }
                @for m in &car.months {
                    tr {
                        td { (m.month) @if m.provisional { (tr(l, "（未结束）", " (running)")) } }
                        td { (n(Some(m.m3), 1)) } td { (n(Some(m.quota_m3), 1)) }
                        td class=(if m.over_pct > 0.0 { "over" } else { "" }) { (format!("{:.1} %", m.over_pct)) }
                        td { (n(Some(m.surcharge_cny), 2)) }
                    }
                }
            } }
        }
        @if !c.unpriced.is_empty() {
            ul.muted { @for u in &c.unpriced { li { (tr(l, "未计价：", "Not priced: ")) (u) } } }
        }
    }
}

/// The figures of a scope over the chosen period.
fn figures(l: Lang, k: &ScopeKpis) -> Markup {
    let c = &k.carriers;
    html! {
        div.scroll { table id="figures" {
            tr { th { (tr(l, "用电(kWh)", "Electricity kWh")) } td { (n(Some(c.electricity_kwh), 1)) } }
            tr { th { (tr(l, "用水(m³)", "Water m³")) } td { (n(Some(c.water_m3), 1)) } }
            tr { th { (tr(l, "天然气(m³)", "Gas m³")) } td { (n(Some(c.gas_m3), 1)) } }
            tr { th { (tr(l, "热力(GJ)", "Heat GJ")) } td { (n(Some(c.heat_gj), 2)) } }
            tr { th { (tr(l, "综合能耗(kgce)", "Energy kgce")) } td { (n(Some(k.energy_kgce), 1)) } }
            tr { th { (tr(l, "碳排放(t CO₂)", "CO₂ t")) } td { (n(k.co2_t, 2)) } }
            tr { th { (tr(l, "用能人数", "Persons")) } td { (n(Some(k.persons), 1)) } }
            tr { th { (tr(l, "面积(m²)", "Area m²")) } td { (n(Some(k.area_m2), 1)) } }
            tr { th { (tr(l, "人均综合能耗(kgce/人)", "kgce per person")) } td { (n(k.per_capita_energy, 2)) } }
            tr { th { (tr(l, "单位面积能耗(kgce/m²)", "kgce per m²")) } td { (n(k.per_area_energy, 3)) } }
            tr { th { (tr(l, "人均用水(L/人·天)", "Water L per person-day")) } td { (n(k.water_l_per_person_day, 1)) } }
            tr { th { (tr(l, "数据覆盖率", "Coverage")) } td { (n(Some(k.coverage_pct), 1)) " % (" (tr(l, "实测 ", "measured ")) (n(Some(k.completeness_pct), 1)) " %)" } }
            @if let Some(t) = &k.tracking {
                tr { th { (tr(l, "定额进度(年初至今)", "Quota, year to date")) } td class=(if t.ratio_to_date > 1.0 { "over" } else { "" }) { (format!("{:.0} %", t.ratio_to_date * 100.0)) } }
            }
            @if let Some(w) = &k.yoy_window {
                tr { th { (tr(l, "同比窗口", "Year-on-year window")) } td { (w.from) " – " (w.to) " (" (w.days) (tr(l, " 天)", " days)")) } }
            }
        } }
        @if !k.withheld.is_empty() {
            h2 { (tr(l, "未给出的指标及原因", "Figures withheld, and why")) }
            ul id="withheld" { @for (f, why) in &k.withheld { li { strong { (f) } "：" (why) } } }
        }
    }
}

fn period_of_chosen(c: &Chosen) -> meterflow_core::denominators::Period {
    meterflow_core::denominators::Period {
        from: c.from,
        to: c.to,
    }
}

fn meters_table(l: Lang, reader: &Reader, meters: &[&Meter]) -> Markup {
    html! {
        div.scroll { table id="meters" {
            tr { th { (tr(l, "表计", "Meter")) } th { (tr(l, "能源", "Carrier")) } th { (tr(l, "单位", "Unit")) } th { (tr(l, "最近读数", "Last reading")) } }
            @for m in meters {
                @let last = reader.series_id(&m.id, m.counter_quantity()).ok().flatten().and_then(|s| reader.last_value(s).ok().flatten());
                tr {
                    td { a href={ "/meters/" (m.id) } { (m.id) } }
                    td { (m.kind.as_str()) }
                    td { (m.unit) }
                    td { @if let Some((ts, v)) = last { (n(Some(v), 2)) " @ " (chrono::DateTime::from_timestamp_millis(ts).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()) } @else { "–" } }
                }
            }
        } }
    }
}

fn respond(
    app: &App,
    l: Lang,
    s: Option<&Session>,
    title: &str,
    body: anyhow::Result<Markup>,
    q: &HashMap<String, String>,
) -> Response {
    match body {
        Ok(b) => web::page_for(StatusCode::OK, l, app, s, title, b, q),
        Err(e) => internal(e).into_response(),
    }
}

/// `GET /agencies/{id}`.
pub(super) async fn agency_page(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Q,
) -> Response {
    let l = web::lang_of(&h, &q);
    let (role, s) = match viewer(&app, &h, peer, &format!("/agencies/{id}")) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(agency) = app.site.agencies.iter().find(|a| a.id == id) else {
        return web::refusal(l, &app, s.as_ref(), StatusCode::NOT_FOUND, &id);
    };
    if role.agency().is_some_and(|a| a != id) {
        return web::refusal(
            l,
            &app,
            s.as_ref(),
            StatusCode::FORBIDDEN,
            tr(l, "这是其他单位的页面。", "This is another agency's page."),
        );
    }
    let c = chosen(&app, &q);
    let app2 = Arc::clone(&app);
    let id2 = id.clone();
    let body = tokio::task::spawn_blocking(move || -> anyhow::Result<Markup> {
        let site = &app2.site;
        let reader = Reader::open(&site.store_path())?;
        let k = app2
            .kpi
            .scope_kpis(&reader, &Scope::Agency(id2.clone()), period_of_chosen(&c))?;
        let cost = cost_section(&app2, &reader, l, &Scope::Agency(id2.clone()), &c)?;
        let budget = app2
            .kpi
            .budget(&reader, &id2, chrono::Datelike::year(&c.date))?;
        // The peak-shifting view on the year's page.
        let peaks = if c.span == Span::Year && !site.tariffs.is_empty() {
            app2.kpi.peak_shares(&reader, &Scope::Agency(id2.clone()), chrono::Datelike::year(&c.date))?
        } else {
            Vec::new()
        };
        let meters: Vec<&Meter> = site
            .meters
            .iter()
            .filter(|m| meter_of_agency(site, m, &id2))
            .collect();
        let charts =
            html! { (PreEscaped(chart::charts(l, &reader, site, Level::Agency, &id2, &c)?)) };
        Ok(html! {
            (PreEscaped(chart::picker(l, &format!("/agencies/{id2}"), &c)))
            (charts)
            h2 { (tr(l, "指标（所选期间）", "Figures (the chosen period)")) }
            (figures(l, &k))
            (cost)
            @if !peaks.is_empty() {
                h2 { (tr(l, "峰段用电占比（峰＋尖峰，按月）", "Electricity in peak hours (峰 + 尖峰), by month")) }
                div.scroll { table id="peak-shares" {
                    tr { th { (tr(l, "月份", "Month")) } th { (tr(l, "用电(kWh)", "kWh")) } th { (tr(l, "峰＋尖峰(kWh)", "Peak kWh")) } th { (tr(l, "占比", "Share")) } th { (tr(l, "去年同期", "Last year, same days")) } th { (tr(l, "变化(百分点)", "Change (pp)")) } }
                    @for p in &peaks {
                        tr data-month=(p.month) {
                            td { (p.month) } td { (n(Some(p.kwh), 1)) } td { (n(Some(p.peak_kwh), 1)) }
                            td { (p.peak_share_pct.map(|x| format!("{x:.1} %")).unwrap_or_else(|| "–".into())) }
                            td { (p.last_year_share_pct.map(|x| format!("{x:.1} %")).unwrap_or_else(|| "–".into())) }
                            td { (p.change_pp.map(|x| format!("{x:+.1}")).unwrap_or_else(|| "–".into())) }
                        }
                    }
                } }
            }
            @if let Some(b) = &budget {
                h2 { (b.year) (tr(l, " 年能耗经费预算", " energy budget")) }
                div.scroll { table id="budget" {
                    tr { th { (tr(l, "预算(元)", "Budget CNY")) } td { (n(Some(b.budget_cny), 0)) } }
                    tr { th { (tr(l, "已用(元)", "Spent CNY")) } td { (n(Some(b.to_date_cny), 2)) } }
                    tr { th { (tr(l, "进度（按有数据天数折算）", "Against the budget to date")) } td class=(if b.ratio_to_date > 1.0 { "over" } else { "" }) { (format!("{:.0} %", b.ratio_to_date * 100.0)) } }
                    tr { th { (tr(l, "预计全年(元)", "Projected year CNY")) } td class=(if b.projected_ratio.is_some_and(|r| r > 1.0) { "over" } else { "" }) {
                        @match (b.projected_cny, b.projected_ratio) {
                            (Some(p), Some(r)) => { (n(Some(p), 0)) " (" (format!("{:.0} %", r * 100.0)) ")" }
                            _ => { (tr(l, "数据不足，暂不预测", "not enough data to project")) }
                        }
                    } }
                } }
            }
            h2 { (tr(l, "表计", "Meters")) }
            (meters_table(l, &reader, &meters))
        })
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r);
    respond(&app, l, s.as_ref(), &agency.name, body, &q)
}

/// `GET /buildings/{id}`.
pub(super) async fn building_page(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Q,
) -> Response {
    let l = web::lang_of(&h, &q);
    let (role, s) = match viewer(&app, &h, peer, &format!("/buildings/{id}")) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(building) = app.site.buildings.iter().find(|b| b.id == id) else {
        return web::refusal(l, &app, s.as_ref(), StatusCode::NOT_FOUND, &id);
    };
    if role.agency().is_some() {
        return web::refusal(
            l,
            &app,
            s.as_ref(),
            StatusCode::FORBIDDEN,
            tr(
                l,
                "楼栋页面包含其他单位的数据。",
                "A building's page shows other agencies' data.",
            ),
        );
    }
    let c = chosen(&app, &q);
    let app2 = Arc::clone(&app);
    let id2 = id.clone();
    let body = tokio::task::spawn_blocking(move || -> anyhow::Result<Markup> {
        let site = &app2.site;
        let reader = Reader::open(&site.store_path())?;
        let k = app2.kpi.scope_kpis(&reader, &Scope::Building(id2.clone()), period_of_chosen(&c))?;
        let cost = cost_section(&app2, &reader, l, &Scope::Building(id2.clone()), &c)?;
        let meters: Vec<&Meter> = site.meters.iter().filter(|m| building_of(site, m).as_deref() == Some(id2.as_str())).collect();
        let agencies: Vec<&meterflow_model::config::Agency> = site
            .agencies
            .iter()
            .filter(|a| meters.iter().any(|m| meter_of_agency(site, m, &a.id)))
            .collect();
        let charts = html! { (PreEscaped(chart::charts(l, &reader, site, Level::Building, &id2, &c)?)) };
        Ok(html! {
            (PreEscaped(chart::picker(l, &format!("/buildings/{id2}"), &c)))
            (charts)
            h2 { (tr(l, "单位", "Agencies")) }
            ul id="agencies" { @for a in &agencies { li { a href={ "/agencies/" (a.id) } { (a.name) } } } }
            h2 { (tr(l, "指标（所选期间）", "Figures (the chosen period)")) }
            (figures(l, &k))
            (cost)
            h2 { (tr(l, "表计", "Meters")) }
            (meters_table(l, &reader, &meters))
        })
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r);
    let title = building.name.clone().unwrap_or_else(|| building.id.clone());
    respond(&app, l, s.as_ref(), &title, body, &q)
}

/// `GET /meters/{id}`.
pub(super) async fn meter_page(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Q,
) -> Response {
    let l = web::lang_of(&h, &q);
    let (role, s) = match viewer(&app, &h, peer, &format!("/meters/{id}")) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(m) = app.site.meter(&id) else {
        return web::refusal(l, &app, s.as_ref(), StatusCode::NOT_FOUND, &id);
    };
    if !can_see_meter(&app.site, &role, m) {
        return web::refusal(
            l,
            &app,
            s.as_ref(),
            StatusCode::FORBIDDEN,
            tr(
                l,
                "此表计不属于您的单位。",
                "This meter is not your agency's.",
            ),
        );
    }
    let c = chosen(&app, &q);
    let app2 = Arc::clone(&app);
    let id2 = id.clone();
    let body = tokio::task::spawn_blocking(move || -> anyhow::Result<Markup> {
        let site = &app2.site;
        let Some(m) = site.meter(&id2) else {
            anyhow::bail!("no meter {id2}");
        };
        let reader = Reader::open(&site.store_path())?;
        let series = reader.series_id(&id2, m.counter_quantity())?;
        let bars = match series {
            Some(sid) => meter_bars(&reader, site, sid, &c)?,
            None => Vec::new(),
        };
        let (from, to) = c.ms(site.tz);
        let anomalies = reader.anomalies(Some(&id2), from, to)?;
        let chart = chart::bars(l, "chart-meter", l.t("用量", "Consumption"), &m.unit, &bars);
        let building = building_of(site, m);
        // The meter's own cost with its tariff (nothing without [[tariff]]).
        let cost = if site.tariffs.is_empty() {
            html! {}
        } else {
            cost_table(l, &app2.kpi.meter_cost(&reader, &id2, period_of_chosen(&c))?)
        };
        Ok(html! {
            p {
                @if let Some(b) = &building { a href={ "/buildings/" (b) } { (b) } " · " }
                (m.kind.as_str()) " · " (m.unit)
            }
            (PreEscaped(chart::picker(l, &format!("/meters/{id2}"), &c)))
            (PreEscaped(chart))
            (cost)
            h2 { (tr(l, "异常（所选期间）", "Anomalies (the chosen period)")) }
            @if anomalies.is_empty() { p.muted { (tr(l, "无", "none")) } }
            @else {
                div.scroll { table id="anomalies" {
                    tr { th { (tr(l, "时间", "Time")) } th { (tr(l, "类型", "Kind")) } th { (tr(l, "说明", "Detail")) } }
                    @for a in &anomalies {
                        tr {
                            td { (chrono::DateTime::from_timestamp_millis(a.ts_ms).map(|t| t.with_timezone(&site.tz).format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()) }
                            td { (a.kind) }
                            td { (a.detail) }
                        }
                    }
                } }
            }
        })
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r);
    respond(
        &app,
        l,
        s.as_ref(),
        &format!("{} {id}", tr(l, "表计", "Meter")),
        body,
        &q,
    )
}

/// `GET /assessment?year=&profile=`: the main table of the annual
/// assessment for a year and profile, and its downloads.
pub(super) async fn assessment_page(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> Response {
    let l = web::lang_of(&h, &q);
    let (role, s) = match viewer(&app, &h, peer, "/assessment") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let this_year = chrono::Datelike::year(&today(&app.site));
    let year = q
        .get("year")
        .and_then(|y| y.parse::<i32>().ok())
        .filter(|y| (2000..=this_year).contains(y))
        .unwrap_or(this_year);
    let profile = match q.get("profile").map(String::as_str) {
        Some("quota-standard") => "quota-standard",
        _ => "national",
    };
    let agency = role.agency().map(str::to_string);
    let app2 = Arc::clone(&app);
    let preview = preview(l, app2, year, profile, agency).await;
    let years: Vec<i32> = (this_year.saturating_sub(5)..=this_year).rev().collect();
    let body = html! {
        form.picker method="get" action="/assessment" {
            label { (tr(l, "年度 ", "Year ")) select name="year" { @for y in &years { option value=(y) selected[*y == year] { (y) } } } }
            " "
            label { (tr(l, "口径 ", "Profile ")) select name="profile" {
                option value="national" selected[profile == "national"] { (tr(l, "国家口径", "national")) }
                option value="quota-standard" selected[profile == "quota-standard"] { (tr(l, "定额标准口径", "quota standard")) }
            } }
            " "
            button type="submit" { (tr(l, "预览", "Preview")) }
        }
        p id="downloads" {
            (tr(l, "下载：", "Download: "))
            @for f in ["xlsx", "csv", "parquet"] {
                a href={ "/assessment/download?year=" (year) "&profile=" (profile) "&format=" (f) } { (f) } " "
            }
        }
        (preview)
    };
    web::page_for(
        StatusCode::OK,
        l,
        &app,
        s.as_ref(),
        tr(l, "年度能耗考核", "Annual assessment"),
        body,
        &q,
    )
}

#[cfg(feature = "export")]
async fn preview(
    l: Lang,
    app: Arc<App>,
    year: i32,
    profile: &'static str,
    agency: Option<String>,
) -> Markup {
    let r =
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<meterflow_export::ScopeRow>> {
            let reader = Reader::open(&app.site.store_path())?;
            let req = meterflow_export::gather::Request {
                year,
                agency,
                profile: if profile == "quota-standard" {
                    meterflow_export::Profile::QuotaStandard
                } else {
                    meterflow_export::Profile::National
                },
            };
            Ok(meterflow_export::gather::gather(&app.site, &reader, &req, &|_| {})?.scopes)
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
    match r {
        Err(e) => html! { p.err { (e.to_string()) } },
        Ok(rows) => html! {
            div.scroll { table id="assessment" {
                tr {
                    th { (tr(l, "范围", "Scope")) } th { (tr(l, "用电(kWh)", "Electricity kWh")) } th { (tr(l, "用水(m³)", "Water m³")) }
                    th { (tr(l, "天然气(m³)", "Gas m³")) } th { (tr(l, "热力(GJ)", "Heat GJ")) }
                    th { (tr(l, "综合能耗(kgce)", "Energy kgce")) } th { (tr(l, "碳排放(t)", "CO₂ t")) } th { (tr(l, "用能人数", "Persons")) }
                    th { (tr(l, "面积(m²)", "Area m²")) } th { (tr(l, "人均(kgce/人)", "kgce per person")) }
                    th { (tr(l, "单位面积(kgce/m²)", "kgce per m²")) } th { (tr(l, "实测完整率(%)", "Measured %")) } th { (tr(l, "等级", "Grades")) }
                }
                @for r in &rows {
                    tr data-scope=(format!("{}:{}", r.level, r.id)) {
                        td { @if r.level == "agency" { a href={ "/agencies/" (r.id) } { (r.name) } } @else if r.level == "building" { a href={ "/buildings/" (r.id) } { (r.name) } } @else { (r.name) } }
                        td { (n(Some(r.electricity_kwh), 1)) } td { (n(Some(r.water_m3), 1)) } td { (n(Some(r.gas_m3), 1)) } td { (n(Some(r.heat_gj), 2)) }
                        td { (n(Some(r.energy_kgce), 1)) } td { (n(r.co2_t, 2)) } td { (n(Some(r.persons), 1)) } td { (n(Some(r.area_m2), 1)) }
                        td { (n((r.persons > 0.0).then(|| r.energy_kgce / r.persons), 2)) }
                        td { (n((r.area_m2 > 0.0).then(|| r.energy_kgce / r.area_m2), 3)) }
                        td { (n(Some(r.completeness_pct), 1)) }
                        td { (r.grades.iter().map(|(i, g)| format!("{i}: {g}")).collect::<Vec<_>>().join("; ")) }
                    }
                }
            } }
        },
    }
}

#[cfg(not(feature = "export"))]
async fn preview(_: Lang, _: Arc<App>, _: i32, _: &'static str, _: Option<String>) -> Markup {
    html! { p.err { "this build has no export (built without the `export` feature)" } }
}

/// `GET /assessment/download?year=&profile=&format=`: the export for the
/// signed-in role (an agency gets its own).
pub(super) async fn assessment_download(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): Peer,
    h: HeaderMap,
    Query(q): Q,
) -> Response {
    let (role, _) = match viewer(&app, &h, peer, "/assessment") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    export_as(app, role, q).await
}

#[cfg(feature = "export")]
async fn export_as(app: Arc<App>, role: Role, q: HashMap<String, String>) -> Response {
    match ledger_routes::export_for(app, role, q).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

#[cfg(not(feature = "export"))]
async fn export_as(_: Arc<App>, _: Role, _: HashMap<String, String>) -> Response {
    not_found("this build has no export (built without the `export` feature)").into_response()
}
