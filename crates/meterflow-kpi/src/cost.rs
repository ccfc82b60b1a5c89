//! Energy cost (`docs/methodology.md` §14): consumption × the price in
//! force for each bucket. Computed from the scope rollups, so a scope's cost
//! is allocated with the same keys as its consumption, and a late reading
//! re-prices exactly the buckets it re-derives. Electricity by time of use
//! from the 15-minute rows; gas and heat from the daily rows; water by
//! calendar month, with the progressive surcharge on the part above the
//! agency's monthly quota.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Timelike};
use meterflow_core::aggregate::{Grain, Level, ScopeKey, to_carrier};
use meterflow_core::denominators::{Period, agency_area_in, building_area_on};
use meterflow_core::time::day_start;
use meterflow_model::config::{Assigned, BilledAs, TOU_PERIODS, Tariff, tariff_for, tariff_on};
use meterflow_model::{EnergyClass, Site};
use meterflow_store::Reader;
use serde::Serialize;

use crate::{KpiContext, Scope};

/// Cost and quantity of one time-of-use period (or of one price).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodCost {
    /// `critical`, `peak`, `flat`, `valley`; `""` for one price.
    pub period: String,
    /// Quantity in the carrier's unit.
    pub quantity: f64,
    /// CNY.
    pub cny: f64,
}

/// One month of an agency's water against its quota.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaterMonth {
    /// `YYYY-MM`.
    pub month: String,
    /// The agency's allocated water in the whole month, m³.
    pub m3: f64,
    /// Its monthly quota: the per-capita quota × persons × the month's share
    /// of the year, m³.
    pub quota_m3: f64,
    /// Above the quota, % (0 when within it).
    pub over_pct: f64,
    /// Surcharge of the whole month, CNY.
    pub surcharge_cny: f64,
    /// The month is still running: compared with the full month's quota.
    pub provisional: bool,
}

/// One carrier's cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarrierCost {
    /// `electricity`, `water`, `gas`, `heat`.
    pub carrier: String,
    /// Quantity priced, in the carrier's unit.
    pub quantity: f64,
    /// Consumption × price, CNY (without the water surcharge).
    pub base_cny: f64,
    /// The water surcharge in the period, CNY.
    pub surcharge_cny: f64,
    /// By time-of-use period (electricity), most expensive first.
    pub periods: Vec<PeriodCost>,
    /// Water: the months against the quota.
    pub months: Vec<WaterMonth>,
    /// CNY by calendar month (`YYYY-MM`), the surcharge and the fixed
    /// charges included.
    pub by_month: std::collections::BTreeMap<String, f64>,
    /// Monthly demand and capacity charges (electricity) and heat billed by
    /// area, this scope's part, CNY.
    pub fixed_cny: f64,
    /// Those charges one by one.
    pub fixed: Vec<FixedCharge>,
}

impl CarrierCost {
    /// The carrier's cost: consumption, surcharge and fixed charges, CNY.
    pub fn cny(&self) -> f64 {
        self.base_cny + self.surcharge_cny + self.fixed_cny
    }
}

/// A charge that does not follow each unit: a month's demand (按需量) or
/// capacity (按容量) charge of a tariff's meters, or a heating season's
/// charge by area (按面积), and the part of it that falls on the scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FixedCharge {
    /// `YYYY-MM`.
    pub month: String,
    /// Tariff id.
    pub tariff: String,
    /// `demand`, `capacity` or `area`.
    pub kind: String,
    /// kW of the month's greatest 15-minute demand, kVA, or the m² billed.
    pub basis: f64,
    /// The whole charge of the tariff's meters (or buildings) in the month, CNY.
    pub account_cny: f64,
    /// The scope's part: its kWh under the tariff over the tariff's kWh
    /// (demand, capacity); its share of the buildings' area (area).
    pub share: f64,
    /// `account_cny × share`.
    pub cny: f64,
}

/// What is priced: a KPI scope, a zone, or one meter.
#[derive(Clone, Copy)]
enum Target<'a> {
    Scope(&'a Scope),
    Zone(&'a str),
    Meter(&'a str),
}

impl Target<'_> {
    /// The scope rollups of the target (none for a single meter).
    fn rollup_scope(&self) -> Option<(Level, &str)> {
        match *self {
            Target::Scope(s) => Some(s.level_id()),
            Target::Zone(z) => Some((Level::Zone, z)),
            Target::Meter(_) => None,
        }
    }
}

/// Priced quantities, row by row.
struct Acc {
    c: CarrierCost,
    unpriced_days: Vec<NaiveDate>,
    unpriced: f64,
    /// Quantity by (tariff id, `YYYY-MM`): what the monthly demand and
    /// capacity charges are shared by.
    by_tariff_month: BTreeMap<(String, String), f64>,
}

impl Acc {
    fn new(class: EnergyClass) -> Acc {
        Acc {
            c: CarrierCost {
                carrier: class.as_str().to_string(),
                quantity: 0.0,
                base_cny: 0.0,
                surcharge_cny: 0.0,
                periods: Vec::new(),
                months: Vec::new(),
                by_month: BTreeMap::new(),
                fixed_cny: 0.0,
                fixed: Vec::new(),
            },
            unpriced_days: Vec::new(),
            unpriced: 0.0,
            by_tariff_month: BTreeMap::new(),
        }
    }

    /// Price `value` of the period starting at `start_ms` with `tariff`.
    fn add(&mut self, site: &Site, tariff: Option<&Tariff>, start_ms: i64, value: f64) {
        let Some(t) = local(site, start_ms) else {
            return;
        };
        let day = t.date_naive();
        let Some(tf) = tariff else {
            self.miss(day, value);
            return;
        };
        if tf.per_m2_season.is_some() {
            // Heat billed by area: the GJ are counted, the area pays.
            self.c.quantity += value;
            return;
        }
        let Some((name, price)) = tf.price_at(t.month(), t.hour() * 60 + t.minute()) else {
            self.miss(day, value);
            return;
        };
        let c = &mut self.c;
        let month = t.format("%Y-%m").to_string();
        c.quantity += value;
        c.base_cny += value * price;
        *c.by_month.entry(month.clone()).or_default() += value * price;
        *self
            .by_tariff_month
            .entry((tf.id.clone(), month))
            .or_default() += value;
        match c.periods.iter_mut().find(|p| p.period == name) {
            Some(p) => {
                p.quantity += value;
                p.cny += value * price;
            }
            None => c.periods.push(PeriodCost {
                period: name.to_string(),
                quantity: value,
                cny: value * price,
            }),
        }
    }

    fn miss(&mut self, day: NaiveDate, value: f64) {
        self.unpriced += value;
        if self.unpriced_days.last() != Some(&day) {
            self.unpriced_days.push(day);
        }
    }
}

/// The one agency a meter serves, if it serves one alone.
fn sole_agency(m: &meterflow_model::config::Meter) -> Option<&str> {
    match (&m.serves.agency, &m.serves.agencies) {
        (Some(a), None) => Some(a.as_str()),
        (None, Some(v)) if v.len() == 1 => Some(v[0].as_str()),
        _ => None,
    }
}

/// The first day of the month of `d`, and of the next month.
fn month_bounds(d: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap_or(d);
    let next = if d.month() == 12 {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
    }
    .unwrap_or(d);
    (first, next)
}

/// A scope's cost over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Cost {
    /// By carrier (those with a tariff).
    pub carriers: Vec<CarrierCost>,
    /// All carriers, CNY.
    pub total_cny: f64,
    /// What could not be priced, and why.
    pub unpriced: Vec<String>,
}

const CARRIERS: [EnergyClass; 4] = [
    EnergyClass::Electricity,
    EnergyClass::Water,
    EnergyClass::Gas,
    EnergyClass::Heat,
];

fn local(site: &Site, ms: i64) -> Option<chrono::DateTime<chrono_tz::Tz>> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.with_timezone(&site.tz))
}

/// The surcharge on `m3` against a monthly quota of `quota` m³ at `price`:
/// each band's volume (from `quota × (1 + above_pct / 100)` up to the next
/// band's start) × its factor × the price.
pub fn surcharge(tariff: &Tariff, price: f64, m3: f64, quota: f64) -> f64 {
    if quota <= 0.0 {
        return 0.0;
    }
    let bands = &tariff.surcharge;
    bands
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let lo = quota * (1.0 + b.above_pct / 100.0);
            let hi = bands
                .get(i + 1)
                .map_or(f64::INFINITY, |n| quota * (1.0 + n.above_pct / 100.0));
            (m3.min(hi) - lo).max(0.0) * b.factor * price
        })
        .sum()
}

/// Where an agency stands against its energy budget for a year.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetStatus {
    /// Agency.
    pub agency: String,
    /// Year.
    pub year: i32,
    /// The budget, CNY.
    pub budget_cny: f64,
    /// Cost so far, CNY.
    pub to_date_cny: f64,
    /// The budget pro-rated to the days with data, CNY.
    pub budget_to_date_cny: f64,
    /// `to_date / budget_to_date`.
    pub ratio_to_date: f64,
    /// Projected year-end cost, CNY; `None` below the minimum window.
    pub projected_cny: Option<f64>,
    /// `projected / budget`.
    pub projected_ratio: Option<f64>,
    /// `run-rate` or `same period last year`.
    pub method: Option<String>,
    /// Days with data.
    pub days_with_data: f64,
}

/// One month's electricity by time of use, against last year's same days.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeakMonth {
    /// `YYYY-MM`.
    pub month: String,
    /// Priced electricity of the month (to date for the running month), kWh.
    pub kwh: f64,
    /// Of it in 峰 and 尖峰, kWh.
    pub peak_kwh: f64,
    /// `peak_kwh / kwh`, %.
    pub peak_share_pct: Option<f64>,
    /// The same days of last year, %.
    pub last_year_share_pct: Option<f64>,
    /// Change in percentage points.
    pub change_pp: Option<f64>,
}

impl KpiContext {
    /// The share of electricity in 峰 and 尖峰 month by month of `year`
    /// (to today), with the same days of the year before: the figure a
    /// manager asks load shifting with.
    pub fn peak_shares(
        &self,
        reader: &Reader,
        scope: &Scope,
        year: i32,
    ) -> anyhow::Result<Vec<PeakMonth>> {
        let site = self.site();
        let today = self.today.unwrap_or_else(|| {
            meterflow_core::time::local_date(meterflow_model::clock::now_ms(), site.tz)
        });
        let share = |period: Period| -> anyhow::Result<(f64, f64)> {
            let c = self.cost(reader, scope, period)?;
            let Some(e) = c.carriers.iter().find(|x| x.carrier == "electricity") else {
                return Ok((0.0, 0.0));
            };
            let peak = e
                .periods
                .iter()
                .filter(|p| p.period == "peak" || p.period == "critical")
                .map(|p| p.quantity)
                .sum();
            Ok((e.quantity, peak))
        };
        let mut out = Vec::new();
        for m in 1..=12u32 {
            let Some(from) = NaiveDate::from_ymd_opt(year, m, 1) else {
                continue;
            };
            if from > today {
                break;
            }
            let end = if m == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(year, m + 1, 1)
            }
            .unwrap_or(from);
            let to = end.min(today.succ_opt().unwrap_or(today));
            let (kwh, peak) = share(Period { from, to })?;
            let pct = (kwh > 0.0).then(|| peak / kwh * 100.0);
            // The same days a year before (29 February has none).
            let before = NaiveDate::from_ymd_opt(year - 1, m, 1).and_then(|f| {
                let days = (to - from).num_days();
                f.checked_add_days(chrono::Days::new(u64::try_from(days).ok()?))
                    .map(|t| Period { from: f, to: t })
            });
            let last = match before {
                Some(p) => {
                    let (k, pk) = share(p)?;
                    (k > 0.0).then(|| pk / k * 100.0)
                }
                None => None,
            };
            out.push(PeakMonth {
                month: from.format("%Y-%m").to_string(),
                kwh,
                peak_kwh: peak,
                peak_share_pct: pct,
                last_year_share_pct: last,
                change_pp: pct.zip(last).map(|(a, b)| a - b),
            });
        }
        Ok(out)
    }

    /// An agency's cost against its `[[budget]]` for `year`, tracked and
    /// projected with the rules of the quotas (pro-rated to the days with
    /// data; last year's shape when last year was priced, else the
    /// run-rate; no projection below the minimum window).
    pub fn budget(
        &self,
        reader: &Reader,
        agency: &str,
        year: i32,
    ) -> anyhow::Result<Option<BudgetStatus>> {
        let site = self.site();
        let Some(b) = site
            .budgets
            .iter()
            .find(|b| b.agency == agency && b.year == year)
        else {
            return Ok(None);
        };
        let Some(whole) = crate::period_of(year, None) else {
            return Ok(None);
        };
        let scope = Scope::Agency(agency.to_string());
        let k = self.scope_kpis(reader, &scope, whole)?;
        if k.days_with_data == 0 {
            return Ok(None);
        }
        let to_date = self.cost(reader, &scope, whole)?.total_cny;
        let elapsed = k.days_with_data as f64;
        // Last year's shape: its cost over the same days and over the year.
        let shape = match (k.last_day, crate::period_of(year - 1, None)) {
            (Some(last), Some(prev)) => {
                let same = Period {
                    from: prev.from,
                    to: NaiveDate::from_ymd_opt(year - 1, last.month(), last.day())
                        .or_else(|| NaiveDate::from_ymd_opt(year - 1, last.month(), 28))
                        .and_then(|d| d.succ_opt())
                        .unwrap_or(prev.to),
                };
                let window = self.cost(reader, &scope, same)?;
                let all = self.cost(reader, &scope, prev)?;
                (window.unpriced.is_empty() && window.total_cny > 0.0)
                    .then_some((window.total_cny, all.total_cny))
            }
            _ => None,
        };
        let Some(t) =
            meterflow_core::quota::track(to_date, elapsed, whole.days() as f64, b.cny, shape)
        else {
            return Ok(None);
        };
        let t = if elapsed < f64::from(site.site.projection_min_days) {
            t.without_projection()
        } else {
            t
        };
        Ok(Some(BudgetStatus {
            agency: agency.to_string(),
            year,
            budget_cny: b.cny,
            to_date_cny: to_date,
            budget_to_date_cny: t.quota_to_date,
            ratio_to_date: t.ratio_to_date,
            projected_cny: t.projected,
            projected_ratio: t.projected_ratio,
            method: t.method.map(|m| m.as_str().to_string()),
            days_with_data: elapsed,
        }))
    }

    /// The cost of `scope` over `period` with the site's tariffs.
    pub fn cost(&self, reader: &Reader, scope: &Scope, period: Period) -> anyhow::Result<Cost> {
        self.cost_of(reader, Target::Scope(scope), period)
    }

    /// The cost of one zone over `period` (its meters' consumption and its
    /// share of the monthly charges; the water surcharge is per agency and
    /// heat by area per building, so neither is in a zone's cost).
    pub fn zone_cost(&self, reader: &Reader, zone: &str, period: Period) -> anyhow::Result<Cost> {
        self.cost_of(reader, Target::Zone(zone), period)
    }

    /// The cost of one meter's own consumption over `period` with its
    /// tariff (its own, its agency's, its building's or the default) and its
    /// share of its tariff's monthly charges.
    pub fn meter_cost(&self, reader: &Reader, meter: &str, period: Period) -> anyhow::Result<Cost> {
        self.cost_of(reader, Target::Meter(meter), period)
    }

    fn cost_of(&self, reader: &Reader, target: Target<'_>, period: Period) -> anyhow::Result<Cost> {
        let site = self.site();
        let mut out = Cost::default();
        if site.tariffs.is_empty() {
            out.unpriced.push("no [[tariff]] in the site file".into());
            return Ok(out);
        }
        let own_kind = match target {
            Target::Meter(m) => Some(site.meter(m).map(|x| x.kind)),
            _ => None,
        };
        let (from, to) = (
            day_start(period.from, site.tz),
            day_start(period.to, site.tz),
        );
        for class in CARRIERS {
            if !site.tariffs.iter().any(|t| t.carrier == class) {
                continue;
            }
            if own_kind.is_some_and(|k| k != Some(class)) {
                continue;
            }
            let mut acc = Acc::new(class);
            let assigned = site
                .tariffs
                .iter()
                .any(|t| t.carrier == class && t.assigned() != Assigned::Default);
            let rollup = target.rollup_scope().filter(|_| !assigned);
            if let Some((level, id)) = rollup {
                // Electricity by the quarter hour (time of use); the others by day.
                let grain = if class == EnergyClass::Electricity {
                    Grain::Quarter
                } else {
                    Grain::Day
                };
                for r in reader.agg(level, id, class, "", grain, from, to)? {
                    let day = local(site, r.start_ms).map(|t| t.date_naive());
                    let tariff = day.and_then(|d| tariff_on(&site.tariffs, class, d));
                    acc.add(site, tariff, r.start_ms, r.value);
                }
            } else {
                // One meter, or some meters have their own tariff: price each
                // meter's buckets with its tariff, weighted as the rollups
                // weigh it.
                self.price_by_meter(reader, target, class, period, &mut acc)?;
            }
            let Acc {
                mut c,
                unpriced_days,
                unpriced,
                by_tariff_month,
            } = acc;
            c.periods.sort_by_key(|p| {
                TOU_PERIODS
                    .iter()
                    .position(|x| *x == p.period)
                    .unwrap_or(TOU_PERIODS.len())
            });
            if let (Some(a), Some(b)) = (unpriced_days.first(), unpriced_days.last()) {
                out.unpriced.push(format!(
                    "{}: {unpriced:.3} on {} day(s) from {a} to {b} had no tariff in force",
                    class.as_str(),
                    unpriced_days.len()
                ));
            }
            match (class, target) {
                (EnergyClass::Water, Target::Scope(scope)) => {
                    self.water_surcharge(reader, scope, period, &mut c, &mut out.unpriced)?;
                }
                (EnergyClass::Electricity, _) => {
                    self.monthly_charges(reader, period, &by_tariff_month, &mut c)?;
                }
                (EnergyClass::Heat, Target::Scope(scope)) => {
                    self.heat_by_area(reader, scope, period, &mut c)?;
                }
                _ => {}
            }
            c.fixed_cny = c.fixed.iter().map(|f| f.cny).sum();
            for f in &c.fixed {
                *c.by_month.entry(f.month.clone()).or_default() += f.cny;
            }
            out.total_cny += c.cny();
            out.carriers.push(c);
        }
        Ok(out)
    }

    /// Each meter reaching `scope` priced with its own tariff (its own,
    /// its agency's, its building's or the default), its buckets weighted
    /// as the rollups weigh them (see [`Aggregator::weights`]).
    fn price_by_meter(
        &self,
        reader: &Reader,
        target: Target<'_>,
        class: EnergyClass,
        period: Period,
        acc: &mut Acc,
    ) -> anyhow::Result<()> {
        let site = self.site();
        let agg = self.aggregator();
        let weights = match (target, target.rollup_scope()) {
            (Target::Meter(id), _) => agg
                .meter_index(id)
                .map(|m| vec![(m, vec![(NaiveDate::MIN, 1.0)])])
                .unwrap_or_default(),
            (_, None) => Vec::new(),
            (_, Some((level, id))) => {
                let key = ScopeKey {
                    level,
                    id: id.to_string(),
                    class,
                    subitem: String::new(),
                };
                let Some(si) = agg.scope_index(&key) else {
                    return Ok(());
                };
                agg.weights(si)
            }
        };
        let (from, to) = (
            day_start(period.from, site.tz),
            day_start(period.to, site.tz),
        );
        for (m, steps) in weights {
            let meter = &site.meters[m as usize];
            let Some(series) = reader.series_id(&meter.id, meter.counter_quantity())? else {
                continue;
            };
            let who = BilledAs {
                meter: Some(&meter.id),
                agency: sole_agency(meter),
                building: agg.building_of(m),
            };
            let factor = agg.factor(m);
            let weight = |d: NaiveDate| {
                let i = steps.partition_point(|(f, _)| *f <= d);
                i.checked_sub(1).map_or(0.0, |i| steps[i].1)
            };
            let mut add = |start_ms: i64, micro: i64| {
                let Some(d) = local(site, start_ms).map(|t| t.date_naive()) else {
                    return;
                };
                let w = weight(d);
                if w != 0.0 {
                    let v = to_carrier(class, micro.saturating_mul(factor)) * w;
                    acc.add(site, tariff_for(&site.tariffs, class, d, who), start_ms, v);
                }
            };
            if class == EnergyClass::Electricity {
                for r in reader.intervals(series, from, to)? {
                    add(r.bucket_ms, r.micro);
                }
            } else {
                let (a, b) = (period.from.to_string(), period.to.to_string());
                for r in reader.days(series, &a, &b)? {
                    if let Ok(d) = NaiveDate::parse_from_str(&r.day, "%Y-%m-%d") {
                        add(day_start(d, site.tz), r.micro);
                    }
                }
            }
        }
        Ok(())
    }

    /// The kWh of a tariff's meters by quarter hour over `[from, to)` (local
    /// dates): every electricity meter billed with it, less the part of a
    /// meter billed with it whose parent is billed with it too (counted in
    /// the parent), less a sub-meter billed otherwise under a parent billed
    /// with it (its own account).
    fn account_quarters(
        &self,
        reader: &Reader,
        tariff: &Tariff,
        from: NaiveDate,
        to: NaiveDate,
    ) -> anyhow::Result<BTreeMap<i64, f64>> {
        let site = self.site();
        let mut out: BTreeMap<i64, f64> = BTreeMap::new();
        let (a, b) = (day_start(from, site.tz), day_start(to, site.tz));
        let any_assigned = site
            .tariffs
            .iter()
            .any(|t| t.carrier == EnergyClass::Electricity && t.assigned() != Assigned::Default);
        if !any_assigned {
            // The default tariff prices everything: the site's own rollup.
            for r in reader.agg(
                Level::Site,
                "site",
                EnergyClass::Electricity,
                "",
                Grain::Quarter,
                a,
                b,
            )? {
                *out.entry(r.start_ms).or_default() += r.value;
            }
            return Ok(out);
        }
        let agg = self.aggregator();
        let index: std::collections::HashMap<&str, usize> = site
            .meters
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.as_str(), i))
            .collect();
        let billed = |i: usize, d: NaiveDate| -> bool {
            let m = &site.meters[i];
            let who = BilledAs {
                meter: Some(&m.id),
                agency: sole_agency(m),
                building: agg.building_of(i as u32),
            };
            tariff_for(&site.tariffs, EnergyClass::Electricity, d, who)
                .is_some_and(|t| t.id == tariff.id)
        };
        for (i, m) in site.meters.iter().enumerate() {
            if m.kind != EnergyClass::Electricity {
                continue;
            }
            let parent = m
                .parent
                .as_deref()
                .and_then(|p| index.get(p).copied())
                .filter(|&p| site.meters[p].kind == EnergyClass::Electricity);
            let Some(series) = reader.series_id(&m.id, m.counter_quantity())? else {
                continue;
            };
            let factor = agg.factor(i as u32);
            for r in reader.intervals(series, a, b)? {
                let Some(d) = local(site, r.bucket_ms).map(|t| t.date_naive()) else {
                    continue;
                };
                let mine = billed(i, d);
                let parents = parent.is_some_and(|p| billed(p, d));
                let sign = match (mine, parents) {
                    (true, false) => 1.0,
                    (false, true) => -1.0,
                    _ => continue,
                };
                let v = to_carrier(EnergyClass::Electricity, r.micro.saturating_mul(factor));
                *out.entry(r.bucket_ms).or_default() += sign * v;
            }
        }
        Ok(out)
    }

    /// The monthly demand and capacity charges of the months `period`
    /// touches, each tariff's charge shared by kWh: the scope's kWh under
    /// the tariff in the period's part of the month over the tariff's kWh
    /// in the whole month.
    fn monthly_charges(
        &self,
        reader: &Reader,
        period: Period,
        by_tariff_month: &BTreeMap<(String, String), f64>,
        c: &mut CarrierCost,
    ) -> anyhow::Result<()> {
        let site = self.site();
        let charged: Vec<&Tariff> = site
            .tariffs
            .iter()
            .filter(|t| {
                t.carrier == EnergyClass::Electricity
                    && (t.demand_cny_per_kw.is_some() || t.capacity_kva.is_some())
            })
            .collect();
        if charged.is_empty() || period.from >= period.to {
            return Ok(());
        }
        let mut month = month_bounds(period.from).0;
        while month < period.to {
            let (first, next) = month_bounds(month);
            let label = month.format("%Y-%m").to_string();
            let days_in_month = (next - first).num_days() as f64;
            for t in &charged {
                let mine = by_tariff_month
                    .get(&(t.id.clone(), label.clone()))
                    .copied()
                    .unwrap_or(0.0);
                if mine == 0.0 {
                    continue;
                }
                // The days of the month the tariff is in force.
                let mut in_force = 0usize;
                let mut d = first;
                let (mut lo, mut hi) = (None, None);
                while d < next {
                    if t.in_force(d) {
                        in_force += 1;
                        lo = lo.or(Some(d));
                        hi = d.succ_opt();
                    }
                    d = d.succ_opt().unwrap_or(next);
                }
                let (Some(lo), Some(hi)) = (lo, hi) else {
                    continue;
                };
                let part = in_force as f64 / days_in_month;
                let quarters = self.account_quarters(reader, t, lo, hi)?;
                let account_kwh: f64 = quarters.values().sum();
                if account_kwh <= 0.0 {
                    continue;
                }
                let (kind, basis, account_cny) = match (t.demand_cny_per_kw, t.capacity_kva) {
                    (Some(price), _) => {
                        // kWh in a quarter hour × 4 = its mean kW.
                        let kw = quarters.values().fold(0.0f64, |m, v| m.max(*v)) * 4.0;
                        ("demand", kw, kw * price * part)
                    }
                    (None, Some(kva)) => {
                        let price = t.capacity_cny_per_kva.unwrap_or(0.0);
                        ("capacity", kva, kva * price * part)
                    }
                    (None, None) => continue,
                };
                let share = mine / account_kwh;
                c.fixed.push(FixedCharge {
                    month: label.clone(),
                    tariff: t.id.clone(),
                    kind: kind.to_string(),
                    basis,
                    account_cny,
                    share,
                    cny: account_cny * share,
                });
            }
            month = next;
        }
        Ok(())
    }

    /// Heat billed by area: each building in service under a `per_m2_season`
    /// tariff costs its total area (建筑面积) × the price ÷ the season's days
    /// for each day of the season in the period; an agency takes the share
    /// of the building's area its area denominator gives it (so agencies
    /// add up to the building).
    fn heat_by_area(
        &self,
        reader: &Reader,
        scope: &Scope,
        period: Period,
        c: &mut CarrierCost,
    ) -> anyhow::Result<()> {
        let base = self.site();
        if !base
            .tariffs
            .iter()
            .any(|t| t.carrier == EnergyClass::Heat && t.per_m2_season.is_some())
        {
            return Ok(());
        }
        let space = reader.ledger_until("space", i64::MAX)?;
        let site = self.merged_site(&space);
        // (month, tariff, building) → (m², CNY of the building, CNY of the scope).
        let mut sums: BTreeMap<(String, String, String), (f64, f64, f64)> = BTreeMap::new();
        let mut d = period.from;
        while d < period.to {
            for b in &site.buildings {
                let who = BilledAs {
                    building: Some(&b.id),
                    ..BilledAs::default()
                };
                let Some(t) = tariff_for(&site.tariffs, EnergyClass::Heat, d, who) else {
                    continue;
                };
                let (Some(price), Some((s0, s1))) = (t.per_m2_season, t.season_of(d)) else {
                    continue;
                };
                let office = building_area_on(&site, &b.id, d);
                if office <= 0.0 {
                    continue; // not in service
                }
                let share = match scope {
                    Scope::Site => 1.0,
                    Scope::Building(x) => f64::from(u8::from(*x == b.id)),
                    Scope::Agency(a) => agency_area_in(&site, a, &b.id, d) / office,
                };
                let season_days = ((s1 - s0).num_days() + 1) as f64;
                let whole = b.total_area_m2 * price / season_days;
                let e = sums
                    .entry((d.format("%Y-%m").to_string(), t.id.clone(), b.id.clone()))
                    .or_default();
                e.0 = b.total_area_m2;
                e.1 += whole;
                e.2 += whole * share;
            }
            d = d.succ_opt().unwrap_or(period.to);
        }
        for ((month, tariff, _), (m2, whole, mine)) in sums {
            if mine <= 0.0 {
                continue;
            }
            c.fixed.push(FixedCharge {
                month,
                tariff,
                kind: "area".into(),
                basis: m2,
                account_cny: whole,
                share: mine / whole,
                cny: mine,
            });
        }
        Ok(())
    }

    /// The surcharge of each month the period touches: the whole month's
    /// water against the whole month's quota, taken in the share of that
    /// month's water that lies inside the period.
    fn water_surcharge(
        &self,
        reader: &Reader,
        scope: &Scope,
        period: Period,
        c: &mut CarrierCost,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let site = self.site();
        let agencies: Vec<String> = match scope {
            Scope::Agency(a) => vec![a.clone()],
            // The site's surcharge is the sum of its agencies'.
            Scope::Site => site.agencies.iter().map(|a| a.id.clone()).collect(),
            Scope::Building(_) => {
                if site.tariffs.iter().any(|t| !t.surcharge.is_empty()) {
                    notes.push("water surcharge: computed per agency, not per building".into());
                }
                return Ok(());
            }
        };
        let quota = site
            .site
            .quota_set
            .as_deref()
            .and_then(|set| {
                site.factors
                    .quotas_of(set)
                    .find(|q| q.indicator == "per_capita_water")
            })
            .map(|q| q.constraint);
        let today = self.today.unwrap_or_else(|| {
            meterflow_core::time::local_date(meterflow_model::clock::now_ms(), site.tz)
        });
        let mut month = NaiveDate::from_ymd_opt(period.from.year(), period.from.month(), 1)
            .unwrap_or(period.from);
        while month < period.to {
            let next = if month.month() == 12 {
                NaiveDate::from_ymd_opt(month.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(month.year(), month.month() + 1, 1)
            }
            .unwrap_or(period.to);
            let Some(tariff) = tariff_on(&site.tariffs, EnergyClass::Water, month)
                .filter(|t| !t.surcharge.is_empty())
            else {
                month = next;
                continue;
            };
            let Some(price) = tariff.price else {
                month = next;
                continue;
            };
            let Some(per_person_year) = quota else {
                notes.push(
                    "water surcharge: the site's quota set has no per_capita_water quota".into(),
                );
                return Ok(());
            };
            let days_in_year = if NaiveDate::from_ymd_opt(month.year(), 2, 29).is_some() {
                366.0
            } else {
                365.0
            };
            let days = (next - month).num_days() as f64;
            let whole = Period {
                from: month,
                to: next,
            };
            let inside = Period {
                from: month.max(period.from),
                to: next.min(period.to),
            };
            let (m_from, m_to) = (day_start(month, site.tz), day_start(next, site.tz));
            for a in &agencies {
                // No water in the month, no surcharge: the KPI computation
                // (persons for the quota) is needed only where there is water.
                let any_water = reader
                    .agg(
                        meterflow_core::aggregate::Level::Agency,
                        a,
                        EnergyClass::Water,
                        "",
                        Grain::Month,
                        m_from,
                        m_to,
                    )?
                    .iter()
                    .any(|r| r.value > 0.0);
                if !any_water {
                    continue;
                }
                let scope = Scope::Agency(a.clone());
                let k = self.scope_kpis(reader, &scope, whole)?;
                let m3 = k.carriers.water_m3;
                let quota_m3 = per_person_year * k.persons * days / days_in_year;
                let s = surcharge(tariff, price, m3, quota_m3);
                let share = if inside == whole || m3 <= 0.0 {
                    1.0
                } else {
                    self.scope_kpis(reader, &scope, inside)?.carriers.water_m3 / m3
                };
                c.surcharge_cny += s * share;
                *c.by_month
                    .entry(month.format("%Y-%m").to_string())
                    .or_default() += s * share;
                if matches!(scope, Scope::Agency(_)) && agencies.len() == 1 {
                    c.months.push(WaterMonth {
                        month: month.format("%Y-%m").to_string(),
                        m3,
                        quota_m3,
                        over_pct: if quota_m3 > 0.0 {
                            ((m3 / quota_m3 - 1.0) * 100.0).max(0.0)
                        } else {
                            0.0
                        },
                        surcharge_cny: s,
                        provisional: next > today,
                    });
                }
            }
            month = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterflow_model::config::Band;

    #[test]
    fn water_30_percent_over_the_quota_by_hand() {
        // Quota 100 m³, 130 m³ used at 5 CNY/m³; bands: 0-20 % over at +0.5×
        // the price, above 20 % at +1×. Band 1: 100..120 = 20 m³ × 0.5 × 5 =
        // 50 CNY; band 2: 120..130 = 10 m³ × 1 × 5 = 50 CNY; surcharge 100.
        let t = Tariff {
            id: "w".into(),
            carrier: EnergyClass::Water,
            from: "2026-01-01".parse().expect("date"),
            to: None,
            source: "test".into(),
            price: Some(5.0),
            periods: Default::default(),
            prices: Default::default(),
            critical: None,
            months: Vec::new(),
            per_m2_season: None,
            season: None,
            demand_cny_per_kw: None,
            capacity_kva: None,
            capacity_cny_per_kva: None,
            meters: Vec::new(),
            agencies: Vec::new(),
            buildings: Vec::new(),
            surcharge: vec![
                Band {
                    above_pct: 0.0,
                    factor: 0.5,
                },
                Band {
                    above_pct: 20.0,
                    factor: 1.0,
                },
            ],
        };
        assert!((surcharge(&t, 5.0, 130.0, 100.0) - 100.0).abs() < 1e-9);
        // Within the quota: nothing; 10 % over: 10 × 0.5 × 5 = 25.
        assert_eq!(surcharge(&t, 5.0, 90.0, 100.0), 0.0);
        assert!((surcharge(&t, 5.0, 110.0, 100.0) - 25.0).abs() < 1e-9);
    }
}
