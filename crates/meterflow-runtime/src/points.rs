//! Points the running pipeline adds to the InfluxDB outbox besides what the
//! writer emits with each batch: KPIs of the running month and year per
//! agency, building and site; alert events; bus and pipeline health.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{Datelike, TimeZone};
use meterflow_core::lineproto::{self, Encoder, Value};
use meterflow_core::time::day_start;
use meterflow_modbus::BusHealth;
use meterflow_model::Site;
use meterflow_store::{AlertEvent, OutboxStats, Reader};

use meterflow_kpi::{KpiContext, Scope, ScopeKpis, period_of, scopes};

/// Encode one scope's KPIs for a period starting at `start_ms`.
pub fn kpi_point(
    enc: &mut Encoder,
    scope: &Scope,
    name: &str,
    period: &str,
    k: &ScopeKpis,
    start_ms: i64,
) {
    let kind = match scope {
        Scope::Agency(_) => "agency",
        Scope::Building(_) => "building",
        Scope::Site => "site",
    };
    let c = &k.carriers;
    let opt = |x: Option<f64>| Value::F(x.unwrap_or(f64::NAN));
    let mut fields = vec![
        ("name", Value::S(name)),
        ("electricity_kwh", Value::F(c.electricity_kwh)),
        ("water_m3", Value::F(c.water_m3)),
        ("gas_m3", Value::F(c.gas_m3)),
        ("heat_gj", Value::F(c.heat_gj)),
        ("cooling_gj", Value::F(c.cooling_gj)),
        ("lpg_kg", Value::F(c.lpg_kg)),
        ("coal_kg", Value::F(c.coal_kg)),
        ("steam_kg", Value::F(c.steam_kg)),
        ("fuel_oil_kg", Value::F(c.fuel_oil_kg)),
        ("energy_kgce", Value::F(k.energy_kgce)),
        ("co2_t", opt(k.co2_t)),
        ("persons", Value::F(k.persons)),
        ("area_m2", Value::F(k.area_m2)),
        ("per_capita_kgce", opt(k.per_capita_energy)),
        ("per_area_kgce", opt(k.per_area_energy)),
        ("per_capita_water_m3", opt(k.water_per_capita)),
        ("water_l_per_person_day", opt(k.water_l_per_person_day)),
        ("per_area_co2_kg", opt(k.per_area_co2)),
        ("completeness_pct", Value::F(k.completeness_pct)),
        ("coverage_pct", Value::F(k.coverage_pct)),
        ("yoy_per_capita_pct", opt(k.yoy_per_capita_energy_pct)),
        (
            "grid_factor_year",
            opt(k.carbon.grid_factor_year.map(f64::from)),
        ),
    ];
    let yoy = |ind: &str| opt(k.yoy.iter().find(|y| y.indicator == ind).map(|y| y.pct));
    fields.push(("yoy_per_area_pct", yoy("per_area_energy")));
    fields.push(("yoy_per_capita_water_pct", yoy("per_capita_water")));
    if let Some(t) = &k.tracking {
        fields.push(("quota_ratio_to_date", Value::F(t.ratio_to_date)));
        fields.push(("projected_ratio", opt(t.projected_ratio)));
        if let Some(m) = t.method {
            fields.push((
                "projection",
                Value::S(match m {
                    meterflow_core::quota::Projection::RunRate => "run_rate",
                    meterflow_core::quota::Projection::SamePeriodLastYear => "last_year",
                }),
            ));
        }
    }
    let _ = enc.point(
        &lineproto::KPI,
        &[("scope", kind), ("id", scope.label()), ("period", period)],
        &fields,
        start_ms,
    );
}

/// Encode one scope's cost for a period starting at `start_ms`.
pub fn cost_point(
    enc: &mut Encoder,
    scope: &Scope,
    name: &str,
    period: &str,
    c: &meterflow_kpi::cost::Cost,
    budget: Option<&meterflow_kpi::cost::BudgetStatus>,
    start_ms: i64,
) {
    let kind = match scope {
        Scope::Agency(_) => "agency",
        Scope::Building(_) => "building",
        Scope::Site => "site",
    };
    let carrier = |n: &str| c.carriers.iter().find(|x| x.carrier == n);
    // A carrier's cost without the water surcharge (its own field), with
    // the demand, capacity and area charges.
    let base = |n: &str| Value::F(carrier(n).map_or(f64::NAN, |x| x.base_cny + x.fixed_cny));
    let elec = carrier("electricity");
    let kwh = |p: &str| {
        Value::F(elec.map_or(f64::NAN, |e| {
            e.periods
                .iter()
                .filter(|x| x.period == p)
                .map(|x| x.quantity)
                .sum()
        }))
    };
    let peak_share = elec.filter(|e| e.quantity > 0.0).map(|e| {
        e.periods
            .iter()
            .filter(|x| x.period == "peak" || x.period == "critical")
            .map(|x| x.quantity)
            .sum::<f64>()
            / e.quantity
            * 100.0
    });
    let mut fields = vec![
        ("name", Value::S(name)),
        ("total_cny", Value::F(c.total_cny)),
        ("electricity_cny", base("electricity")),
        ("water_cny", base("water")),
        (
            "water_surcharge_cny",
            Value::F(carrier("water").map_or(f64::NAN, |w| w.surcharge_cny)),
        ),
        ("gas_cny", base("gas")),
        ("heat_cny", base("heat")),
        ("critical_kwh", kwh("critical")),
        ("peak_kwh", kwh("peak")),
        ("flat_kwh", kwh("flat")),
        ("valley_kwh", kwh("valley")),
        ("peak_share_pct", Value::F(peak_share.unwrap_or(f64::NAN))),
        ("unpriced", Value::I(c.unpriced.len() as i64)),
    ];
    if let Some(b) = budget {
        fields.push(("budget_cny", Value::F(b.budget_cny)));
        fields.push(("budget_ratio_to_date", Value::F(b.ratio_to_date)));
        fields.push((
            "budget_projected_ratio",
            Value::F(b.projected_ratio.unwrap_or(f64::NAN)),
        ));
    }
    let _ = enc.point(
        &lineproto::COST,
        &[("scope", kind), ("id", scope.label()), ("period", period)],
        &fields,
        start_ms,
    );
}

/// The display name of a scope: the agency's or building's `name` (its id
/// when it has none), the site's name.
fn scope_name(site: &Site, scope: &Scope) -> String {
    match scope {
        Scope::Agency(a) => site
            .agencies
            .iter()
            .find(|x| &x.id == a)
            .map_or_else(|| a.clone(), |x| x.name.clone()),
        Scope::Building(b) => site
            .buildings
            .iter()
            .find(|x| &x.id == b)
            .and_then(|x| x.name.clone())
            .unwrap_or_else(|| b.clone()),
        Scope::Site => site.site.name.clone(),
    }
}

/// KPIs of every scope for the month and the year containing `now_ms`.
pub fn kpi_points(
    site: &Site,
    reader: &Reader,
    now_ms: i64,
    enc: &mut Encoder,
) -> anyhow::Result<()> {
    let today = site
        .tz
        .timestamp_millis_opt(now_ms)
        .single()
        .map(|t| t.date_naive())
        .ok_or_else(|| anyhow::anyhow!("time {now_ms} out of range"))?;
    if site.shard.is_sharded() && !reader.has_attached_rollups() {
        // A shard's rollups hold only its own meters: its per-capita and
        // per-area figures would be partial, so it writes none (ADR 0013);
        // shard 0 writes them from the merged rollups (`shardkpi`). The
        // ledgers live with shard 0.
        if site.shard.index == 0 {
            ledger_day_points(site, reader, today, enc)?;
        }
        return Ok(());
    }
    let kpi = KpiContext::new(site);
    for (label, month) in [("month", Some(today.month())), ("year", None)] {
        let Some(period) = period_of(today.year(), month) else {
            continue;
        };
        let start = day_start(period.from, site.tz);
        for scope in scopes(site) {
            let k = kpi.scope_kpis(reader, &scope, period)?;
            kpi_point(enc, &scope, &scope_name(site, &scope), label, &k, start);
            if !site.tariffs.is_empty() {
                let c = kpi.cost(reader, &scope, period)?;
                let budget = match (&scope, month) {
                    (Scope::Agency(a), None) => kpi.budget(reader, a, today.year())?,
                    _ => None,
                };
                cost_point(
                    enc,
                    &scope,
                    &scope_name(site, &scope),
                    label,
                    &c,
                    budget.as_ref(),
                    start,
                );
            }
        }
    }
    ledger_day_points(site, reader, today, enc)?;
    Ok(())
}

/// `office_space` and `asset_register` of every agency on `day` (timestamp:
/// its local midnight; rewriting the same day overwrites the same points).
pub fn ledger_day_points(
    site: &Site,
    reader: &Reader,
    day: chrono::NaiveDate,
    enc: &mut Encoder,
) -> anyhow::Result<()> {
    let ts = day_start(day, site.tz);
    let space = reader.ledger_until("space", i64::MAX)?;
    if !space.is_empty() {
        for a in meterflow_ledgers::space::summarize(site, &space, day).agencies {
            let _ = enc.point(
                &lineproto::OFFICE_SPACE,
                &[("agency", &a.agency)],
                &[
                    ("persons", Value::F(a.persons)),
                    ("rooms", Value::I(a.rooms as i64)),
                    ("usable_m2", Value::F(a.usable_m2)),
                    ("office_m2", Value::F(a.office_m2)),
                    ("occupants", Value::I(a.occupants as i64)),
                    (
                        "m2_per_person",
                        Value::F(a.m2_per_person.unwrap_or(f64::NAN)),
                    ),
                    ("standard_m2", Value::F(a.standard_m2)),
                    ("over_standard", Value::B(a.over_standard)),
                    (
                        "over_standard_rooms",
                        Value::I(a.over_standard_rooms.len() as i64),
                    ),
                    ("idle_rooms", Value::I(a.idle_rooms.len() as i64)),
                    ("idle_m2", Value::F(a.idle_m2)),
                    (
                        "idle_rate_pct",
                        Value::F(a.idle_rate_pct.unwrap_or(f64::NAN)),
                    ),
                ],
                ts,
            );
        }
    }
    let assets = reader.ledger_until("assets", i64::MAX)?;
    if !assets.is_empty() {
        for a in meterflow_ledgers::assets::by_agency(site, &assets, day, 180) {
            let _ = enc.point(
                &lineproto::ASSET_REGISTER,
                &[("agency", &a.agency)],
                &[
                    ("assets", Value::I(a.count as i64)),
                    ("value_cny", Value::F(a.value_cny)),
                    ("net_book_value_cny", Value::F(a.net_book_value_cny)),
                    ("idle", Value::I(a.idle as i64)),
                ],
                ts,
            );
        }
    }
    Ok(())
}

/// `vehicle_year` of every vehicle for `year` (timestamp: 1 January, local).
pub fn vehicle_year_points(
    site: &Site,
    events: &[meterflow_store::LedgerEvent],
    year: i32,
    enc: &mut Encoder,
) {
    let Some(p) = period_of(year, None) else {
        return;
    };
    let (from, to) = (day_start(p.from, site.tz), day_start(p.to, site.tz));
    for v in meterflow_ledgers::vehicles::summarize(site, events, from, to).vehicles {
        let c = |k: &str| v.cost_cny.get(k).copied().unwrap_or(0.0);
        let _ = enc.point(
            &lineproto::VEHICLE_YEAR,
            &[
                ("agency", &v.agency),
                ("plate", &v.plate),
                ("purpose", &v.purpose),
                ("fuel", &v.fuel),
            ],
            &[
                ("km", Value::F(v.km)),
                ("trips", Value::I(v.trips as i64)),
                ("litres", Value::F(v.litres)),
                ("l_per_100km", Value::F(v.l_per_100km.unwrap_or(f64::NAN))),
                ("fuel_cny", Value::F(c("fuel"))),
                ("maintenance_cny", Value::F(c("maintenance"))),
                ("insurance_cny", Value::F(c("insurance"))),
                ("toll_cny", Value::F(c("toll"))),
                ("total_cny", Value::F(v.total_cny)),
                ("odometer_km", Value::F(v.odometer_km)),
                (
                    "maintenance_due",
                    Value::I(v.maintenance.iter().filter(|d| d.due).count() as i64),
                ),
                ("anomalies", Value::I(v.anomalies.len() as i64)),
                ("disposed", Value::B(v.disposed)),
            ],
            from,
        );
    }
}

/// After a ledger entry: its ledger's points into the outbox (vehicles: the
/// years touched; office space and assets: today).
pub fn emit_ledger(site: &Site, ledger: &str, years: &[i32]) {
    let run = || -> anyhow::Result<()> {
        let path = site.store_path();
        let reader = Reader::open(&path)?;
        let mut enc = Encoder::new();
        match ledger {
            "vehicles" => {
                let events = reader.ledger_until("vehicles", i64::MAX)?;
                for y in years {
                    vehicle_year_points(site, &events, *y, &mut enc);
                }
            }
            "space" | "assets" => {
                let today = chrono::Utc::now().with_timezone(&site.tz).date_naive();
                ledger_day_points(site, &reader, today, &mut enc)?;
            }
            _ => {}
        }
        meterflow_store::Outbox::open(&path)?.append(&mut enc, meterflow_model::clock::now_ms())?;
        Ok(())
    };
    if let Err(e) = run() {
        tracing::warn!("{ledger} ledger points: {e:#}");
    }
}

/// One point per alert event.
pub fn alert_points(events: &[AlertEvent], enc: &mut Encoder) {
    for e in events {
        let firing = match e.event.as_str() {
            "fired" => Some(1),
            "resolved" => Some(0),
            _ => None,
        };
        let mut fields = vec![
            ("event", Value::S(&e.event)),
            ("value", Value::F(e.value.unwrap_or(f64::NAN))),
            ("threshold", Value::F(e.threshold.unwrap_or(f64::NAN))),
            ("message", Value::S(&e.message)),
        ];
        if let Some(f) = firing {
            fields.push(("firing", Value::I(f)));
        }
        let _ = enc.point(
            &lineproto::ALERT,
            &[
                ("rule", &e.rule),
                ("kind", &e.kind),
                ("severity", &e.severity),
                ("target", &e.target),
            ],
            &fields,
            e.ts_ms,
        );
    }
}

/// What the health points report.
pub struct Health<'a> {
    /// `instance` tag.
    pub instance: &'a str,
    /// Readings committed and refused since start.
    pub stored: u64,
    /// Readings refused since start.
    pub refused: u64,
    /// Modbus buses.
    pub buses: &'a BTreeMap<String, Arc<BusHealth>>,
    /// Outbox totals.
    pub outbox: OutboxStats,
    /// Sink counters.
    pub sink: &'a crate::sink::SinkStats,
}

/// Bus and pipeline health at `now_ms`; `last` keeps each bus's counters for the next rate.
pub fn health_points(
    h: &Health<'_>,
    now_ms: i64,
    last: &mut BTreeMap<String, (u64, u64)>,
    enc: &mut Encoder,
) {
    for (id, b) in h.buses {
        let req = b.requests.load(Ordering::Relaxed);
        let ok = b.ok.load(Ordering::Relaxed);
        let (r0, o0) = last.insert(id.clone(), (req, ok)).unwrap_or((0, 0));
        let rate = if req > r0 {
            1.0 - (ok.saturating_sub(o0)) as f64 / (req - r0) as f64
        } else {
            f64::NAN
        };
        let _ = enc.point(
            &lineproto::BUS_HEALTH,
            &[("bus", id)],
            &[
                ("requests", Value::I(req as i64)),
                ("ok", Value::I(ok as i64)),
                ("errors", Value::I(req.saturating_sub(ok) as i64)),
                ("error_rate", Value::F(rate)),
            ],
            now_ms,
        );
    }
    let age = h
        .outbox
        .oldest_ms
        .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
    let _ = enc.point(
        &lineproto::PIPELINE,
        &[("instance", h.instance)],
        &[
            ("stored", Value::I(h.stored as i64)),
            ("refused", Value::I(h.refused as i64)),
            ("outbox_points", Value::I(h.outbox.points)),
            ("outbox_bytes", Value::I(h.outbox.bytes)),
            ("outbox_age_s", Value::F(age)),
            (
                "sink_delivered",
                Value::I(h.sink.delivered.load(Ordering::Relaxed) as i64),
            ),
            (
                "sink_dead",
                Value::I(h.sink.dead.load(Ordering::Relaxed) as i64),
            ),
        ],
        now_ms,
    );
}
