//! Points the running pipeline adds to the InfluxDB outbox besides what the
//! writer emits with each batch: KPIs of the running month and year per
//! agency, building and site; alert events; bus and pipeline health.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{Datelike, TimeZone};
use meterflow_core::aggregate::Aggregator;
use meterflow_core::lineproto::{self, Encoder, Value};
use meterflow_core::time::day_start;
use meterflow_modbus::BusHealth;
use meterflow_model::Site;
use meterflow_store::{AlertEvent, OutboxStats, Reader};

use crate::kpis::{AgencyKpis, Scope, period_of, scope_kpis_with};

/// Every scope of a site: agencies, buildings, then the site.
pub fn scopes(site: &Site) -> Vec<Scope> {
    site.agencies
        .iter()
        .map(|a| Scope::Agency(a.id.clone()))
        .chain(site.buildings.iter().map(|b| Scope::Building(b.id.clone())))
        .chain(std::iter::once(Scope::Site))
        .collect()
}

/// Encode one scope's KPIs for a period starting at `start_ms`.
pub fn kpi_point(enc: &mut Encoder, scope: &Scope, period: &str, k: &AgencyKpis, start_ms: i64) {
    let kind = match scope {
        Scope::Agency(_) => "agency",
        Scope::Building(_) => "building",
        Scope::Site => "site",
    };
    let c = &k.carriers;
    let opt = |x: Option<f64>| Value::F(x.unwrap_or(f64::NAN));
    let mut fields = vec![
        ("electricity_kwh", Value::F(c.electricity_kwh)),
        ("water_m3", Value::F(c.water_m3)),
        ("gas_m3", Value::F(c.gas_m3)),
        ("heat_gj", Value::F(c.heat_gj)),
        ("energy_kgce", Value::F(k.energy_kgce)),
        ("co2_t", Value::F(k.co2_t)),
        ("persons", Value::F(k.persons)),
        ("area_m2", Value::F(k.area_m2)),
        ("per_capita_kgce", opt(k.per_capita_energy)),
        ("per_area_kgce", opt(k.per_area_energy)),
        ("per_capita_water_m3", opt(k.water_per_capita)),
        ("water_l_per_person_day", opt(k.water_l_per_person_day)),
        ("per_area_co2_kg", opt(k.per_area_co2)),
        ("completeness_pct", Value::F(k.completeness_pct)),
        ("yoy_per_capita_pct", opt(k.yoy_per_capita_energy_pct)),
    ];
    if let Some(t) = &k.tracking {
        fields.push(("quota_ratio_to_date", Value::F(t.ratio_to_date)));
        fields.push(("projected_ratio", Value::F(t.projected_ratio)));
        fields.push((
            "projection",
            Value::S(match t.method {
                meterflow_core::quota::Projection::RunRate => "run_rate",
                meterflow_core::quota::Projection::SamePeriodLastYear => "last_year",
            }),
        ));
    }
    let _ = enc.point(
        &lineproto::KPI,
        &[("scope", kind), ("id", scope.label()), ("period", period)],
        &fields,
        start_ms,
    );
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
    let agg = Aggregator::new(site);
    for (label, month) in [("month", Some(today.month())), ("year", None)] {
        let Some(period) = period_of(today.year(), month) else {
            continue;
        };
        let start = day_start(period.from, site.tz);
        for scope in scopes(site) {
            let k = scope_kpis_with(site, reader, &agg, &scope, period)?;
            kpi_point(enc, &scope, label, &k, start);
        }
    }
    Ok(())
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
