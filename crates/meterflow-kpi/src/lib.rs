//! Per-agency KPIs for a period, from the store's daily rollups: consumption
//! by carrier (shared meters allocated per day), comprehensive energy, CO₂,
//! time-weighted persons and area, per-capita and per-area figures,
//! completeness, quota grades and year-on-year change. The one KPI service
//! that the API, the page, the alerting rules, the InfluxDB points and the
//! annual export call, through a [`KpiContext`] each of them owns.

pub mod ownership;

use std::sync::{Arc, Mutex, OnceLock};

use chrono::{Datelike, NaiveDate};
use meterflow_core::aggregate::{Aggregator, Grain, Level};
use meterflow_core::buckets::BUCKET_MS;
use meterflow_core::denominators::{
    Period, area_on, building_persons_on, persons_on, site_area, site_persons_on, time_weighted,
};
use meterflow_core::kpi::{Carriers, comprehensive_energy, per, water_l_per_person_day, yoy_pct};
use meterflow_core::time::day_start;
use meterflow_model::{EnergyClass, Site};
use meterflow_store::Reader;

/// KPIs of one agency over one period.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeKpis {
    /// Agency id.
    pub agency: String,
    /// Period.
    pub period: Period,
    /// Quantities by carrier (allocated shares of every meter serving the agency).
    pub carriers: Carriers,
    /// Comprehensive energy, kgce (water excluded).
    pub energy_kgce: f64,
    /// CO₂ of electricity and gas, t.
    pub co2_t: f64,
    /// Time-weighted 用能人数.
    pub persons: f64,
    /// Time-weighted occupied office area, m².
    pub area_m2: f64,
    /// kgce per person over the period.
    pub per_capita_energy: Option<f64>,
    /// kgce per m² over the period.
    pub per_area_energy: Option<f64>,
    /// m³ per person over the period.
    pub water_per_capita: Option<f64>,
    /// L per person per calendar day.
    pub water_l_per_person_day: Option<f64>,
    /// Measured buckets of the agency's meters / expected, %.
    pub completeness_pct: f64,
    /// Year-on-year change of per-capita energy (same calendar window), %.
    pub yoy_per_capita_energy_pct: Option<f64>,
    /// Quota grades (full calendar years only): (indicator, value, grade).
    pub grades: Vec<(String, f64, &'static str)>,
    /// Factors used with grade C (unverified).
    pub unverified: Vec<String>,
    /// Last local day with data in the period.
    pub last_day: Option<NaiveDate>,
    /// Days of the period that have data.
    pub days_with_data: usize,
    /// Per-capita energy against the quota's constraint while the year runs.
    pub tracking: Option<meterflow_core::quota::Tracking>,
    /// kgCO₂ per m² over the period.
    pub per_area_co2: Option<f64>,
    /// Cumulative reduction against each active plan's base year (full years only).
    pub reductions: Vec<Reduction>,
}

/// Cumulative reduction of one indicator against a plan's base year (`docs/methodology.md` §5).
#[derive(Debug, Clone, PartialEq)]
pub struct Reduction {
    /// Plan, e.g. `cn-2021-2025`.
    pub plan: String,
    /// Indicator: `per_capita_energy`, `per_area_energy`, `per_capita_water`, `per_area_co2`.
    pub indicator: String,
    /// Base year.
    pub base_year: i32,
    /// The indicator in the base year (from the store).
    pub base: f64,
    /// The indicator this year.
    pub value: f64,
    /// 累计下降率, %.
    pub reduction_pct: f64,
    /// The plan's required reduction by its target year, %.
    pub required_pct: f64,
    /// Reached the required reduction.
    pub met: bool,
}

/// A calendar month or year.
pub fn period_of(year: i32, month: Option<u32>) -> Option<Period> {
    let from = NaiveDate::from_ymd_opt(year, month.unwrap_or(1), 1)?;
    let to = match month {
        Some(12) | None => NaiveDate::from_ymd_opt(year + 1, 1, 1)?,
        Some(m) => NaiveDate::from_ymd_opt(year, m + 1, 1)?,
    };
    Some(Period { from, to })
}

/// What a KPI row is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// An agency (its allocated shares of every meter serving it).
    Agency(String),
    /// A building (its meters; persons of the agencies in it, by area share).
    Building(String),
    /// The whole site (the root meters; all agencies; the buildings' office area).
    Site,
}

impl Scope {
    fn level_id(&self) -> (Level, &str) {
        match self {
            Scope::Agency(a) => (Level::Agency, a.as_str()),
            Scope::Building(b) => (Level::Building, b.as_str()),
            Scope::Site => (Level::Site, "site"),
        }
    }

    /// Label in tables (`site` for the site).
    pub fn label(&self) -> &str {
        self.level_id().1
    }
}

/// Every energy class, in table order.
const CLASSES: [EnergyClass; 5] = [
    EnergyClass::Electricity,
    EnergyClass::Water,
    EnergyClass::Gas,
    EnergyClass::Heat,
    EnergyClass::Cooling,
];

/// Consumption of a scope over a period, from the stored rollups.
struct Sums {
    carriers: Carriers,
    measured: i64,
    /// Local days with any rollup row.
    days: std::collections::BTreeSet<i64>,
    /// End of the last 15-minute bucket with data, ms.
    last_ms: Option<i64>,
}

fn load_sums(site: &Site, reader: &Reader, scope: &Scope, period: Period) -> anyhow::Result<Sums> {
    let (level, id) = scope.level_id();
    let (from, to) = (
        day_start(period.from, site.tz),
        day_start(period.to, site.tz),
    );
    let mut carriers = Carriers::default();
    let mut measured = 0;
    let mut days = std::collections::BTreeSet::new();
    for class in CLASSES {
        let rows = reader.agg(level, id, class, "", Grain::Day, from, to)?;
        let raw: i64 = rows.iter().map(|r| r.raw).sum();
        let v = meterflow_core::aggregate::to_carrier(class, raw);
        measured += rows.iter().map(|r| r.measured).sum::<i64>();
        days.extend(rows.iter().map(|r| r.start_ms));
        match class {
            EnergyClass::Electricity => carriers.electricity_kwh = v,
            EnergyClass::Water => carriers.water_m3 = v,
            EnergyClass::Gas => carriers.gas_m3 = v,
            EnergyClass::Heat => carriers.heat_gj = v,
            EnergyClass::Cooling => {}
        }
    }
    // Vehicle fuel from the vehicle ledger (an agency's vehicles; the site's all).
    let fleet = match scope {
        Scope::Agency(a) => Some(Some(a.as_str())),
        Scope::Site => Some(None),
        Scope::Building(_) => None,
    };
    if let Some(who) = fleet {
        let events = reader.ledger_until("vehicles", to)?;
        let (g, d) = meterflow_ledgers::vehicles::fuel_litres(&events, who, from, to);
        carriers.gasoline_l += g;
        carriers.diesel_l += d;
    }
    // How far into its last day the data reaches (a day in progress counts in part).
    let mut last_ms = None;
    if let Some(&day) = days.last() {
        for class in CLASSES {
            let rows = reader.agg(
                level,
                id,
                class,
                "",
                Grain::Quarter,
                day,
                day + 86_400_000 + 3_600_000,
            )?;
            if let Some(r) = rows.last() {
                let end = r.start_ms + BUCKET_MS;
                last_ms = Some(last_ms.map_or(end, |l: i64| l.max(end)));
            }
        }
    }
    Ok(Sums {
        carriers,
        measured,
        days,
        last_ms,
    })
}

/// What the KPI computations of one site share, owned by whoever computes
/// (the API's state, one alerting round, one export, one round of points):
/// the site, its hierarchy walk (built on first use: it walks every meter's
/// share timeline), and the site merged with the office-space ledger, kept
/// while the ledger does not change (a merge clones the whole site: with
/// 1 000 meters it dominated a KPI request). Nothing is global: two sites, or
/// two versions of one site, never share a cache.
pub struct KpiContext {
    site: Arc<Site>,
    agg: OnceLock<Arc<Aggregator>>,
    merged: Mutex<Option<(LedgerState, Arc<Site>)>>,
}

/// The state of an append-only ledger: its length and the greatest and the
/// sum of its event ids (an appended event changes all three).
type LedgerState = (usize, i64, i64);

impl KpiContext {
    /// A context for `site` (cloned once into an `Arc`).
    pub fn new(site: &Site) -> KpiContext {
        KpiContext::from_arc(Arc::new(site.clone()))
    }

    /// A context for a site already shared.
    pub fn from_arc(site: Arc<Site>) -> KpiContext {
        KpiContext {
            site,
            agg: OnceLock::new(),
            merged: Mutex::new(None),
        }
    }

    /// The site as configured (without the ledger's rooms and headcounts).
    pub fn site(&self) -> &Arc<Site> {
        &self.site
    }

    /// The site's hierarchy walk, built on first use.
    pub fn aggregator(&self) -> Arc<Aggregator> {
        Arc::clone(
            self.agg
                .get_or_init(|| Arc::new(Aggregator::new(&self.site))),
        )
    }

    /// The site merged with the office-space ledger `space`: from this
    /// context's cache while the ledger is unchanged.
    pub fn merged_site(&self, space: &[meterflow_store::LedgerEvent]) -> Arc<Site> {
        if space.is_empty() {
            return Arc::clone(&self.site);
        }
        let key: LedgerState = (
            space.len(),
            space.iter().map(|e| e.id).max().unwrap_or(0),
            space.iter().map(|e| e.id).sum(),
        );
        if let Ok(c) = self.merged.lock()
            && let Some((k, merged)) = c.as_ref()
            && *k == key
        {
            return Arc::clone(merged);
        }
        let merged = Arc::new(meterflow_ledgers::space::merged_site(&self.site, space));
        if let Ok(mut c) = self.merged.lock() {
            *c = Some((key, Arc::clone(&merged)));
        }
        merged
    }

    /// KPIs of any scope over `period`, from the stored scope rollups, with
    /// the office-space ledger's headcounts and rooms joining the site's
    /// denominators.
    pub fn scope_kpis(
        &self,
        reader: &Reader,
        scope: &Scope,
        period: Period,
    ) -> anyhow::Result<ScopeKpis> {
        let sums = load_sums(&self.site, reader, scope, period)?;
        let space = reader.ledger_until("space", i64::MAX)?;
        let merged = self.merged_site(&space);
        compute(
            &merged,
            &self.aggregator(),
            &sums,
            scope,
            period,
            Some(reader),
        )
    }
}

/// KPIs of the whole site over `period`: the root meters' consumption (nothing
/// counted twice, unallocated consumption included), all agencies' persons,
/// the buildings' office area. A one-off context; callers computing many
/// scopes keep a [`KpiContext`].
pub fn site_kpis(site: &Site, reader: &Reader, period: Period) -> anyhow::Result<ScopeKpis> {
    KpiContext::new(site).scope_kpis(reader, &Scope::Site, period)
}

/// KPIs of `agency` over `period` (a one-off context).
pub fn agency_kpis(
    site: &Site,
    reader: &Reader,
    agency: &str,
    period: Period,
) -> anyhow::Result<ScopeKpis> {
    KpiContext::new(site).scope_kpis(reader, &Scope::Agency(agency.to_string()), period)
}

/// KPIs of `building` over `period` (a one-off context).
pub fn building_kpis(
    site: &Site,
    reader: &Reader,
    building: &str,
    period: Period,
) -> anyhow::Result<ScopeKpis> {
    KpiContext::new(site).scope_kpis(reader, &Scope::Building(building.to_string()), period)
}

/// Every scope of a site: agencies, buildings, then the site.
pub fn scopes(site: &Site) -> Vec<Scope> {
    site.agencies
        .iter()
        .map(|a| Scope::Agency(a.id.clone()))
        .chain(site.buildings.iter().map(|b| Scope::Building(b.id.clone())))
        .chain(std::iter::once(Scope::Site))
        .collect()
}

/// One scope's KPIs over `period`, in four steps: carriers (energy in kgce
/// and CO₂), denominators (time-weighted persons and area), indicators
/// (per-capita, per-area, per-day, completeness), and grades (quota grades or
/// tracking, reductions against the plans' base years, year-on-year).
fn compute(
    site: &Site,
    agg: &Aggregator,
    sums: &Sums,
    scope: &Scope,
    period: Period,
    reader: Option<&Reader>,
) -> anyhow::Result<ScopeKpis> {
    let carriers = sums.carriers;
    let (energy, co2_kg) = energy_and_carbon(site, &carriers, period.from.year())?;
    let (persons, area) = denominators(site, scope, period);
    let days = period.days() as f64;
    let completeness_pct = completeness(agg, sums, scope, period);
    let last_day = sums
        .days
        .last()
        .map(|ms| meterflow_core::time::local_date(*ms, site.tz));
    let per_capita_energy = per(energy.total, persons);
    let water_per_capita = per(carriers.water_m3, persons);
    let per_area_co2 = per(co2_kg, area);
    let (grades, tracking) =
        grades_or_tracking(site, sums, period, per_capita_energy, water_per_capita);
    let this = |name: &str| match name {
        "per_capita_energy" => per_capita_energy,
        "per_area_energy" => per(energy.total, area),
        "per_capita_water" => water_per_capita,
        "per_area_co2" => per_area_co2,
        _ => None,
    };
    let reductions = match reader {
        Some(r) if is_full_year(period) => reductions(site, agg, r, scope, period, &this)?,
        _ => Vec::new(),
    };
    let yoy_per_capita_energy_pct = match reader {
        Some(r) => yoy_per_capita_energy(site, agg, r, scope, period, per_capita_energy)?,
        None => None,
    };
    Ok(ScopeKpis {
        agency: scope.label().to_string(),
        period,
        carriers,
        energy_kgce: energy.total,
        co2_t: co2_kg / 1000.0,
        persons,
        area_m2: area,
        per_capita_energy,
        per_area_energy: per(energy.total, area),
        water_per_capita,
        water_l_per_person_day: water_l_per_person_day(carriers.water_m3, persons, days),
        completeness_pct,
        yoy_per_capita_energy_pct,
        grades,
        unverified: energy
            .unverified()
            .into_iter()
            .map(str::to_string)
            .collect(),
        last_day,
        days_with_data: sums.days.len(),
        tracking,
        per_area_co2,
        reductions,
    })
}

/// Step 1, carriers: comprehensive energy (kgce) with the factor set in
/// force in `year`, and CO₂ (kg) of grid electricity and natural gas.
fn energy_and_carbon(
    site: &Site,
    carriers: &Carriers,
    year: i32,
) -> anyhow::Result<(meterflow_core::kpi::Energy, f64)> {
    let set = &site.site.factor_set;
    let energy = comprehensive_energy(carriers, &site.factors, set, year)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let grid = format!("co2.grid.{}", site.site.grid_region);
    let ef = |ind: &str| {
        site.factors
            .factor_for_year(set, ind, year)
            .map(|f| f.value)
    };
    let co2_kg = carriers.electricity_kwh * ef(&grid).unwrap_or(0.0)
        + carriers.gas_m3 * ef("co2.natural_gas").unwrap_or(0.0);
    Ok((energy, co2_kg))
}

/// Step 2, denominators: time-weighted persons and area of the scope.
fn denominators(site: &Site, scope: &Scope, period: Period) -> (f64, f64) {
    let persons = time_weighted(period, |d| match scope {
        Scope::Agency(a) => persons_on(site, a, d),
        Scope::Building(b) => building_persons_on(site, b, d),
        Scope::Site => site_persons_on(site, d),
    })
    .unwrap_or(0.0);
    let area = match scope {
        Scope::Agency(a) => time_weighted(period, |d| area_on(site, a, d, None)).unwrap_or(0.0),
        Scope::Building(b) => site
            .buildings
            .iter()
            .find(|x| &x.id == b)
            .map_or(0.0, |x| x.office_area_m2.unwrap_or(x.total_area_m2)),
        Scope::Site => site_area(site),
    };
    (persons, area)
}

/// Step 3, completeness: measured meter-buckets / (meters reaching the
/// scope × buckets of the period), in %.
fn completeness(agg: &Aggregator, sums: &Sums, scope: &Scope, period: Period) -> f64 {
    let (level, id) = scope.level_id();
    let ids: Vec<u32> = agg
        .scopes()
        .iter()
        .enumerate()
        .filter(|(_, k)| k.level == level && k.id == id && k.subitem.is_empty())
        .map(|(i, _)| i as u32)
        .collect();
    let expected = agg.expected_buckets(&ids, period.from, period.to);
    if expected > 0 {
        sums.measured as f64 * 100.0 / expected as f64
    } else {
        0.0
    }
}

/// Whether `period` is a whole calendar year.
fn is_full_year(period: Period) -> bool {
    let year = period.from.year();
    period.from.ordinal() == 1
        && period.to == NaiveDate::from_ymd_opt(year + 1, 1, 1).unwrap_or(period.to)
}

/// Step 4a: quota grades of a full year, or, while the year runs (its data
/// ends before the year does), tracking of per-capita energy to date
/// against the constraint pro-rated, with a projected year end: a grade on
/// part of a year would mislead. The rate is taken over the days that have
/// data, so missing weeks neither dilute nor inflate it.
fn grades_or_tracking(
    site: &Site,
    sums: &Sums,
    period: Period,
    per_capita_energy: Option<f64>,
    water_per_capita: Option<f64>,
) -> (
    Vec<(String, f64, &'static str)>,
    Option<meterflow_core::quota::Tracking>,
) {
    let mut grades = Vec::new();
    let mut tracking = None;
    let full_year = is_full_year(period);
    let days = period.days() as f64;
    let Some(qs) = site.site.quota_set.as_deref() else {
        return (grades, tracking);
    };
    if full_year && !sums.days.is_empty() {
        // Days with data, the last one counted up to where its data ends.
        let part = match (sums.days.last(), sums.last_ms) {
            (Some(&d), Some(end)) => ((end - d) as f64 / 86_400_000.0).clamp(0.0, 1.0),
            _ => 1.0,
        };
        let elapsed = (sums.days.len() as f64 - 1.0 + part).max(1.0 / 96.0);
        let quota = site
            .factors
            .quotas_of(qs)
            .find(|q| q.indicator == "per_capita_energy");
        if let (true, Some(q), Some(pc)) = (elapsed < days, quota, per_capita_energy) {
            tracking = meterflow_core::quota::track(pc, elapsed, days, q.constraint, None);
        }
    }
    if full_year && tracking.is_none() {
        for q in site.factors.quotas_of(qs) {
            let value = match q.indicator.as_str() {
                "per_capita_energy" => per_capita_energy,
                "per_capita_water" => water_per_capita,
                _ => None,
            };
            if let Some(v) = value {
                grades.push((q.indicator.clone(), v, meterflow_core::grade::grade(v, q)));
            }
        }
    }
    (grades, tracking)
}

/// Step 4b: cumulative reduction against the base year of every plan
/// running in `period`'s year (a full year).
fn reductions(
    site: &Site,
    agg: &Aggregator,
    r: &Reader,
    scope: &Scope,
    period: Period,
    this: &dyn Fn(&str) -> Option<f64>,
) -> anyhow::Result<Vec<Reduction>> {
    let year = period.from.year();
    let indicator = |name: &str, k: &ScopeKpis| match name {
        "per_capita_energy" => k.per_capita_energy,
        "per_area_energy" => k.per_area_energy,
        "per_capita_water" => k.water_per_capita,
        "per_area_co2" => k.per_area_co2,
        _ => None,
    };
    let mut out = Vec::new();
    let mut base_cache: std::collections::BTreeMap<i32, Option<ScopeKpis>> =
        std::collections::BTreeMap::new();
    for t in site
        .factors
        .targets
        .iter()
        .filter(|t| t.base_year < year && year <= t.target_year)
    {
        if let std::collections::btree_map::Entry::Vacant(slot) = base_cache.entry(t.base_year) {
            let base = match period_of(t.base_year, None) {
                Some(p) => {
                    let sums = load_sums(site, r, scope, p)?;
                    if sums.days.is_empty() {
                        None
                    } else {
                        Some(compute(site, agg, &sums, scope, p, None)?)
                    }
                }
                None => None,
            };
            slot.insert(base);
        }
        let base = base_cache
            .get(&t.base_year)
            .and_then(|b| b.as_ref())
            .and_then(|b| indicator(&t.indicator, b));
        if let (Some(value), Some(base)) = (this(&t.indicator), base)
            && let Some(pct) = meterflow_core::kpi::cumulative_reduction_pct(base, value)
        {
            out.push(Reduction {
                plan: t.plan.clone(),
                indicator: t.indicator.clone(),
                base_year: t.base_year,
                base,
                value,
                reduction_pct: pct,
                required_pct: t.reduction_pct,
                met: pct >= t.reduction_pct,
            });
        }
    }
    Ok(out)
}

/// Step 4c: year-on-year change of per-capita energy: the same calendar
/// window one year earlier, if it has data.
fn yoy_per_capita_energy(
    site: &Site,
    agg: &Aggregator,
    r: &Reader,
    scope: &Scope,
    period: Period,
    per_capita_energy: Option<f64>,
) -> anyhow::Result<Option<f64>> {
    let Some(prev) = shift_year(period, -1) else {
        return Ok(None);
    };
    let before = load_sums(site, r, scope, prev)?;
    let last = if before.days.is_empty() {
        None
    } else {
        compute(site, agg, &before, scope, prev, None)?.per_capita_energy
    };
    Ok(match (per_capita_energy, last) {
        (Some(now), Some(before)) if before > 0.0 => yoy_pct(now, before),
        _ => None,
    })
}

fn shift_year(p: Period, by: i32) -> Option<Period> {
    Some(Period {
        from: p.from.with_year(p.from.year() + by)?,
        to: p.to.with_year(p.to.year() + by)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterflow_store::LedgerEvent;

    fn site() -> Site {
        let src = r#"
[site]
name = "t"

[[building]]
id = "B1"
total_area_m2 = 1000.0
office_area_m2 = 800.0

[[agency]]
id = "fin"
name = "财政局"
"#;
        match Site::parse(src, std::path::Path::new("site.toml")) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn headcount(id: i64, persons: f64) -> LedgerEvent {
        LedgerEvent {
            id,
            ledger: "space".into(),
            kind: "headcount".into(),
            agency: Some("fin".into()),
            // 2025-01-01T00:00+08:00.
            ts_ms: 1_735_660_800_000,
            body: format!(r#"{{"agency":"fin","persons":{persons}}}"#),
            corrects: None,
            void: false,
            author: "clerk:space".into(),
            created_ms: 1_735_660_800_000 + id,
        }
    }

    #[test]
    fn the_merged_site_is_kept_until_the_ledger_changes_and_never_shared() {
        let site = site();
        let ctx = KpiContext::new(&site);
        // No ledger: the configured site itself, no merge.
        assert!(Arc::ptr_eq(&ctx.merged_site(&[]), ctx.site()));

        let one = vec![headcount(1, 40.0)];
        let a = ctx.merged_site(&one);
        let b = ctx.merged_site(&one);
        assert!(Arc::ptr_eq(&a, &b), "same ledger: the cached merge");
        // The ledger's headcount joined the site's rows.
        assert_eq!(a.headcounts.len(), site.headcounts.len() + 1);
        assert_eq!(a.headcounts.last().map(|h| h.persons), Some(40.0));

        // An appended entry is a new ledger state: merged again.
        let two = vec![headcount(1, 40.0), headcount(2, 45.0)];
        let c = ctx.merged_site(&two);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.headcounts.len(), site.headcounts.len() + 2);

        // Another context (another site, or the same one reloaded) has its
        // own cache: the global cache keyed by a pointer is gone.
        let other = KpiContext::new(&site);
        assert!(!Arc::ptr_eq(&other.merged_site(&two), &c));
    }
}
