//! The official-vehicle ledger (`docs/methodology.md` §8): vehicles, trips with
//! odometer readings, fuel fills, maintenance, insurance, tolls, disposal.
//! Derived per vehicle and year: km, litres, L/100 km, running cost by
//! category, maintenance due, odometer anomalies; per agency the fuel litres
//! that join its comprehensive energy (kgce through the site's densities and
//! factors, in the KPI service).
//!
//! Rules (documented in `docs/ledgers.md`):
//! - a trip's distance is `end_km − start_km`; a trip whose end is below its
//!   start is refused at entry (one recorded before that rule is an anomaly
//!   and adds no km); a trip starting below the highest
//!   odometer reading before it (the odometer went back) is an anomaly, its
//!   own distance still counts;
//! - L/100 km = litres filled in the year / km driven in the year × 100;
//! - the odometer of a vehicle is the highest reading it has (registration,
//!   trip ends, fills, maintenance); maintenance of a kind is due when the
//!   odometer is at least the last one's reading (or registration) plus the
//!   fleet's interval;
//! - no entry may name a disposed vehicle after its disposal.

use std::collections::BTreeMap;

use meterflow_model::Site;
use meterflow_store::LedgerEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rules::{Reject, agency, norm, number, of_kind, text, typed};

/// Fuel types.
pub const FUELS: [&str; 3] = ["gasoline", "diesel", "electric"];
/// Purposes: 执法执勤, 领导保障, 调研接待, 一般公务.
pub const PURPOSES: [&str; 4] = ["enforcement", "leadership", "reception", "general"];
/// Maintenance work.
pub const WORKS: [&str; 4] = ["routine", "service", "tyres", "repair"];

/// A vehicle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vehicle {
    /// Plate.
    pub plate: String,
    /// Agency.
    pub agency: String,
    /// Fuel.
    pub fuel: String,
    /// Purpose category.
    pub purpose: String,
    /// Type (sedan, MPV, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicle_type: Option<String>,
    /// Odometer at registration, km.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odometer_km: Option<f64>,
}

/// A trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trip {
    /// Plate.
    pub plate: String,
    /// Odometer at departure, km.
    pub start_km: f64,
    /// Odometer on return, km.
    pub end_km: f64,
    /// Driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Dispatch order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// Purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

/// A fuel fill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuelFill {
    /// Plate.
    pub plate: String,
    /// Litres.
    pub litres: f64,
    /// Amount, CNY.
    pub amount_cny: f64,
    /// Fuel card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<String>,
    /// Odometer, km.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odometer_km: Option<f64>,
}

/// Maintenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// Plate.
    pub plate: String,
    /// Work.
    pub work: String,
    /// Amount, CNY.
    pub amount_cny: f64,
    /// Odometer, km.
    pub odometer_km: f64,
    /// Garage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garage: Option<String>,
}

/// Insurance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Insurance {
    /// Plate.
    pub plate: String,
    /// Amount, CNY.
    pub amount_cny: f64,
    /// Policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Valid until.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// A toll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toll {
    /// Plate.
    pub plate: String,
    /// Amount, CNY.
    pub amount_cny: f64,
}

/// A disposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disposal {
    /// Plate.
    pub plate: String,
    /// Reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The vehicle of `plate` registered at or before `ts`, unless disposed by then.
fn live_vehicle(state: &[LedgerEvent], plate: &str, ts: i64) -> Result<Vehicle, Reject> {
    let reg = of_kind::<Vehicle>(state, "vehicle")
        .filter(|(_, v)| v.plate == plate)
        .last();
    let Some((e, v)) = reg else {
        return Err(("plate".into(), format!("no vehicle `{plate}` registered")));
    };
    if e.ts_ms > ts {
        return Err((
            "time".into(),
            format!("before vehicle `{plate}` was registered"),
        ));
    }
    if of_kind::<Disposal>(state, "disposal").any(|(d, x)| x.plate == plate && d.ts_ms <= ts) {
        return Err(("plate".into(), format!("vehicle `{plate}` was disposed of")));
    }
    Ok(v)
}

const KM: f64 = 10_000_000.0;
const CNY: f64 = 10_000_000.0;

/// Check an entry; its agency and normalised fields.
pub fn check(
    site: &Site,
    kind: &str,
    state: &[LedgerEvent],
    ts: i64,
    body: Value,
) -> Result<(Option<String>, Value), Reject> {
    match kind {
        "vehicle" => {
            let v: Vehicle = typed(&body)?;
            text("plate", &v.plate)?;
            agency(site, "agency", &v.agency)?;
            if !FUELS.contains(&v.fuel.as_str()) {
                return Err((
                    "fuel".into(),
                    format!("`{}`: one of {}", v.fuel, FUELS.join(", ")),
                ));
            }
            if !PURPOSES.contains(&v.purpose.as_str()) {
                return Err((
                    "purpose".into(),
                    format!("`{}`: one of {}", v.purpose, PURPOSES.join(", ")),
                ));
            }
            if let Some(o) = v.odometer_km {
                number("odometer_km", o, 0.0, KM)?;
            }
            if of_kind::<Vehicle>(state, "vehicle").any(|(_, x)| x.plate == v.plate) {
                return Err((
                    "plate".into(),
                    format!(
                        "vehicle `{}` is already registered; correct its entry instead",
                        v.plate
                    ),
                ));
            }
            Ok((Some(v.agency.clone()), norm(&v)))
        }
        "trip" => {
            let t: Trip = typed(&body)?;
            let v = live_vehicle(state, &t.plate, ts)?;
            number("start_km", t.start_km, 0.0, KM)?;
            number("end_km", t.end_km, 0.0, KM)?;
            // Refused at entry: a typo, not a trip (history from before this
            // rule still counts as an anomaly with no km).
            if t.end_km < t.start_km {
                return Err((
                    "end_km".into(),
                    format!(
                        "end_km {} is below start_km {}: one of the odometer readings is wrong",
                        t.end_km, t.start_km
                    ),
                ));
            }
            Ok((Some(v.agency), norm(&t)))
        }
        "fuel" => {
            let f: FuelFill = typed(&body)?;
            let v = live_vehicle(state, &f.plate, ts)?;
            if v.fuel == "electric" {
                return Err((
                    "plate".into(),
                    format!(
                        "vehicle `{}` is electric: its energy is metered, not filled",
                        f.plate
                    ),
                ));
            }
            number("litres", f.litres, 0.01, 2_000.0)?;
            number("amount_cny", f.amount_cny, 0.0, CNY)?;
            if let Some(o) = f.odometer_km {
                number("odometer_km", o, 0.0, KM)?;
            }
            Ok((Some(v.agency), norm(&f)))
        }
        "maintenance" => {
            let m: Maintenance = typed(&body)?;
            let v = live_vehicle(state, &m.plate, ts)?;
            if !WORKS.contains(&m.work.as_str()) {
                return Err((
                    "work".into(),
                    format!("`{}`: one of {}", m.work, WORKS.join(", ")),
                ));
            }
            number("amount_cny", m.amount_cny, 0.0, CNY)?;
            number("odometer_km", m.odometer_km, 0.0, KM)?;
            Ok((Some(v.agency), norm(&m)))
        }
        "insurance" => {
            let i: Insurance = typed(&body)?;
            let v = live_vehicle(state, &i.plate, ts)?;
            number("amount_cny", i.amount_cny, 0.0, CNY)?;
            Ok((Some(v.agency), norm(&i)))
        }
        "toll" => {
            let t: Toll = typed(&body)?;
            let v = live_vehicle(state, &t.plate, ts)?;
            number("amount_cny", t.amount_cny, 0.0, CNY)?;
            Ok((Some(v.agency), norm(&t)))
        }
        "disposal" => {
            let d: Disposal = typed(&body)?;
            let v = live_vehicle(state, &d.plate, ts)?;
            Ok((Some(v.agency), norm(&d)))
        }
        other => Err(("kind".into(), format!("no vehicle entry `{other}`"))),
    }
}

/// An odometer anomaly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OdometerAnomaly {
    /// Ledger entry.
    pub entry: i64,
    /// Plate.
    pub plate: String,
    /// When, UTC ms.
    pub ts_ms: i64,
    /// `end_below_start` or `went_back`.
    pub kind: &'static str,
    /// Readings involved.
    pub detail: String,
}

/// Maintenance status of one kind of work.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Due {
    /// Work: routine, service, tyres.
    pub work: &'static str,
    /// Odometer at the last one (or registration), km.
    pub last_km: f64,
    /// Due at, km.
    pub next_km: f64,
    /// km left (negative: overdue).
    pub km_left: f64,
    /// Due now.
    pub due: bool,
}

/// One vehicle's year.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VehicleYear {
    /// Plate.
    pub plate: String,
    /// Agency.
    pub agency: String,
    /// Purpose category.
    pub purpose: String,
    /// Fuel.
    pub fuel: String,
    /// Disposed of (by the end of the year).
    pub disposed: bool,
    /// Trips in the year.
    pub trips: usize,
    /// km driven.
    pub km: f64,
    /// Litres filled.
    pub litres: f64,
    /// L/100 km.
    pub l_per_100km: Option<f64>,
    /// Running cost by category (fuel, maintenance, insurance, toll), CNY.
    pub cost_cny: BTreeMap<String, f64>,
    /// Total running cost, CNY.
    pub total_cny: f64,
    /// Odometer at the end of the year, km.
    pub odometer_km: f64,
    /// Maintenance status at the end of the year.
    pub maintenance: Vec<Due>,
    /// Odometer anomalies in the year.
    pub anomalies: Vec<OdometerAnomaly>,
}

/// The fleet's year.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetYear {
    /// Per vehicle.
    pub vehicles: Vec<VehicleYear>,
    /// Running cost by purpose category, CNY.
    pub cost_by_purpose: BTreeMap<String, f64>,
    /// Litres by agency and fuel.
    pub litres_by_agency: BTreeMap<String, BTreeMap<String, f64>>,
}

/// The year `[from_ms, to_ms)` of every vehicle registered before its end.
pub fn summarize(site: &Site, events: &[LedgerEvent], from_ms: i64, to_ms: i64) -> FleetYear {
    let mut vehicles = Vec::new();
    let mut cost_by_purpose: BTreeMap<String, f64> = BTreeMap::new();
    let mut litres_by_agency: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    // Every entry before the end of the year, parsed once and grouped by plate.
    let mut by_plate: BTreeMap<String, Vec<(&LedgerEvent, Value)>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.ts_ms < to_ms) {
        if let Ok(body) = serde_json::from_str::<Value>(&e.body)
            && let Some(plate) = body.get("plate").and_then(Value::as_str)
        {
            by_plate
                .entry(plate.to_string())
                .or_default()
                .push((e, body));
        }
    }
    for (_, v) in of_kind::<Vehicle>(events, "vehicle").filter(|(e, _)| e.ts_ms < to_ms) {
        let mine = by_plate.get(&v.plate).map_or(&[][..], Vec::as_slice);
        let in_year = |e: &LedgerEvent| e.ts_ms >= from_ms && e.ts_ms < to_ms;
        let mut odo = v.odometer_km.unwrap_or(0.0);
        let mut km = 0.0;
        let mut trips = 0;
        let mut anomalies = Vec::new();
        let mut litres = 0.0;
        let mut cost: BTreeMap<String, f64> = ["fuel", "maintenance", "insurance", "toll"]
            .iter()
            .map(|c| (c.to_string(), 0.0))
            .collect();
        let mut last_work: BTreeMap<&str, f64> = BTreeMap::new();
        let mut disposed = false;
        for (e, body) in mine {
            let n = |k: &str| body.get(k).and_then(Value::as_f64);
            let y = in_year(e);
            match e.kind.as_str() {
                "trip" => {
                    let (s, t) = (n("start_km").unwrap_or(0.0), n("end_km").unwrap_or(0.0));
                    if y {
                        trips += 1;
                    }
                    if t < s {
                        if y {
                            anomalies.push(OdometerAnomaly {
                                entry: e.id,
                                plate: v.plate.clone(),
                                ts_ms: e.ts_ms,
                                kind: "end_below_start",
                                detail: format!("start {s} km, end {t} km"),
                            });
                        }
                        odo = odo.max(s);
                        continue;
                    }
                    if s + 1e-9 < odo && y {
                        anomalies.push(OdometerAnomaly {
                            entry: e.id,
                            plate: v.plate.clone(),
                            ts_ms: e.ts_ms,
                            kind: "went_back",
                            detail: format!("start {s} km below the {odo} km read before"),
                        });
                    }
                    if y {
                        km += t - s;
                    }
                    odo = odo.max(t);
                }
                "fuel" => {
                    if let Some(o) = n("odometer_km") {
                        odo = odo.max(o);
                    }
                    if y {
                        let l = n("litres").unwrap_or(0.0);
                        litres += l;
                        *cost.entry("fuel".into()).or_default() += n("amount_cny").unwrap_or(0.0);
                        *litres_by_agency
                            .entry(v.agency.clone())
                            .or_default()
                            .entry(v.fuel.clone())
                            .or_default() += l;
                    }
                }
                "maintenance" => {
                    let o = n("odometer_km").unwrap_or(0.0);
                    odo = odo.max(o);
                    if let Some(w) = body.get("work").and_then(Value::as_str) {
                        for k in ["routine", "service", "tyres"] {
                            if w == k {
                                last_work.insert(k, o);
                            }
                        }
                        // A regular service includes the routine check.
                        if w == "service" {
                            last_work.insert("routine", o);
                        }
                    }
                    if y {
                        *cost.entry("maintenance".into()).or_default() +=
                            n("amount_cny").unwrap_or(0.0);
                    }
                }
                "insurance" | "toll" if y => {
                    *cost.entry(e.kind.clone()).or_default() += n("amount_cny").unwrap_or(0.0);
                }
                "disposal" => disposed = true,
                _ => {}
            }
        }
        let start = v.odometer_km.unwrap_or(0.0);
        let f = &site.fleet;
        let maintenance = [
            ("routine", f.routine_km),
            ("service", f.service_km),
            ("tyres", f.tyres_km),
        ]
        .into_iter()
        .map(|(w, every)| {
            let last = last_work.get(w).copied().unwrap_or(start);
            let next = last + every;
            Due {
                work: w,
                last_km: last,
                next_km: next,
                km_left: next - odo,
                due: odo >= next,
            }
        })
        .collect();
        let total: f64 = cost.values().sum();
        *cost_by_purpose.entry(v.purpose.clone()).or_default() += total;
        vehicles.push(VehicleYear {
            plate: v.plate.clone(),
            agency: v.agency.clone(),
            purpose: v.purpose.clone(),
            fuel: v.fuel.clone(),
            disposed,
            trips,
            km,
            litres,
            l_per_100km: (km > 0.0).then(|| litres / km * 100.0),
            cost_cny: cost,
            total_cny: total,
            odometer_km: odo,
            maintenance,
            anomalies,
        });
    }
    FleetYear {
        vehicles,
        cost_by_purpose,
        litres_by_agency,
    }
}

/// Fuel fills of `agency`'s vehicles (all vehicles with `None`) in
/// `[from_ms, to_ms)`: (time, gasoline L, diesel L) each, in time order.
pub fn fuel_fills(
    events: &[LedgerEvent],
    agency: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> Vec<(i64, f64, f64)> {
    let fuels: BTreeMap<String, String> = of_kind::<Vehicle>(events, "vehicle")
        .map(|(_, v)| (v.plate, v.fuel))
        .collect();
    let mut out: Vec<(i64, f64, f64)> = of_kind::<FuelFill>(events, "fuel")
        .filter(|(e, _)| e.ts_ms >= from_ms && e.ts_ms < to_ms)
        .filter(|(e, _)| agency.is_none_or(|a| e.agency.as_deref() == Some(a)))
        .filter_map(|(e, f)| match fuels.get(&f.plate).map(String::as_str) {
            Some("gasoline") => Some((e.ts_ms, f.litres, 0.0)),
            Some("diesel") => Some((e.ts_ms, 0.0, f.litres)),
            _ => None,
        })
        .collect();
    out.sort_by_key(|x| x.0);
    out
}

/// Gasoline and diesel litres filled by the vehicles of `agency` (all
/// agencies with `None`) in `[from_ms, to_ms)`: the vehicle fuel of its
/// comprehensive energy.
pub fn fuel_litres(
    events: &[LedgerEvent],
    agency: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> (f64, f64) {
    let fuels: BTreeMap<String, String> = of_kind::<Vehicle>(events, "vehicle")
        .map(|(_, v)| (v.plate, v.fuel))
        .collect();
    let (mut gasoline, mut diesel) = (0.0, 0.0);
    for (e, f) in of_kind::<FuelFill>(events, "fuel") {
        if e.ts_ms < from_ms || e.ts_ms >= to_ms {
            continue;
        }
        if agency.is_some_and(|a| e.agency.as_deref() != Some(a)) {
            continue;
        }
        match fuels.get(&f.plate).map(String::as_str) {
            Some("gasoline") => gasoline += f.litres,
            Some("diesel") => diesel += f.litres,
            _ => {}
        }
    }
    (gasoline, diesel)
}

/// What a checked trip, fuel fill or maintenance entry would raise as an
/// anomaly later (an odometer below one read before it: `went_back`), for
/// a form to ask the clerk to confirm before it is recorded: `(field,
/// message)`. Nothing for other kinds.
pub fn warnings(kind: &str, state: &[LedgerEvent], ts: i64, body: &Value) -> Vec<(String, String)> {
    let plate = body
        .get("plate")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (field, km) = match kind {
        "trip" => ("start_km", body.get("start_km").and_then(Value::as_f64)),
        "fuel" | "maintenance" => (
            "odometer_km",
            body.get("odometer_km").and_then(Value::as_f64),
        ),
        _ => return Vec::new(),
    };
    let Some(km) = km else {
        return Vec::new();
    };
    // The highest odometer read for the vehicle before this entry.
    let mut before: Option<f64> = None;
    let mut see = |x: Option<f64>| {
        if let Some(x) = x.filter(|x| x.is_finite()) {
            before = Some(before.map_or(x, |b: f64| b.max(x)));
        }
    };
    for (e, v) in of_kind::<Vehicle>(state, "vehicle") {
        if v.plate == plate && e.ts_ms <= ts {
            see(v.odometer_km);
        }
    }
    for (e, t) in of_kind::<Trip>(state, "trip") {
        if t.plate == plate && e.ts_ms < ts {
            see(Some(t.end_km));
        }
    }
    for (e, f) in of_kind::<FuelFill>(state, "fuel") {
        if f.plate == plate && e.ts_ms < ts {
            see(f.odometer_km);
        }
    }
    for (e, m) in of_kind::<Maintenance>(state, "maintenance") {
        if m.plate == plate && e.ts_ms < ts {
            see(Some(m.odometer_km));
        }
    }
    match before {
        Some(b) if km + 1e-9 < b => vec![(
            field.to_string(),
            format!("{field} {km} is below the {b} km read before: the odometer went back"),
        )],
        _ => Vec::new(),
    }
}
