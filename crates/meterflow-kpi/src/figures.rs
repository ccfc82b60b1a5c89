//! One scope's figures over a period, in the order `docs/methodology.md`
//! §5 gives them: carriers (energy in kgce, CO₂ of every carrier),
//! denominators (time-weighted persons; area split with the energy's key),
//! indicators, coverage, then what compares across years — 同比 on the same
//! calendar days with data, grades and reductions for complete years,
//! tracking with a projection while a year runs — each withheld with its
//! reason when it cannot be given.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate};
use meterflow_core::aggregate::Aggregator;
use meterflow_core::denominators::{
    Period, agency_area_on, building_area_on, building_persons_on, change_dates, persons_on,
    site_area_on, site_persons_on, special_area_on, time_weighted_steps,
};
use meterflow_core::kpi::{Carbon, Carriers, Energy, carbon, comprehensive_energy, per};
use meterflow_model::Site;
use meterflow_store::Reader;

use crate::sums::{self, Sums, all_days, same_day};
use crate::types::{
    GradeRow, Reduction, Scope, ScopeKpis, TargetStatus, Yoy, YoyWindow, period_of,
};

/// Indicators compared across years.
pub const INDICATORS: [&str; 4] = [
    "per_capita_energy",
    "per_area_energy",
    "per_capita_water",
    "per_area_co2",
];

/// The figures of a scope over a set of days.
#[derive(Debug, Clone)]
pub(crate) struct Figures {
    pub carriers: Carriers,
    pub energy: Energy,
    pub carbon: Carbon,
    pub persons: f64,
    pub area: f64,
    pub water_days: usize,
    /// Of those, the days worked at the site.
    pub water_working_days: usize,
    /// Special-function electricity (sub-item D), kWh.
    pub special_kwh: f64,
    /// Special-function floor area, m² (time-weighted).
    pub special_area: f64,
}

impl Figures {
    /// An indicator by name.
    pub(crate) fn indicator(&self, name: &str) -> Option<f64> {
        match name {
            "per_capita_energy" => per(self.energy.total, self.persons),
            "per_area_energy" => per(self.energy.total, self.area),
            "per_capita_water" => per(self.carriers.water_m3, self.persons),
            "per_area_co2" => self.carbon.total_kg.and_then(|c| per(c, self.area)),
            "per_area_electricity" => per(self.carriers.electricity_kwh, self.area),
            "water_per_person_day" => per(
                self.carriers.water_m3 * 1000.0,
                self.persons * self.water_days as f64,
            ),
            "water_per_person_working_day" => per(
                self.carriers.water_m3 * 1000.0,
                self.persons * self.water_working_days as f64,
            ),
            _ => None,
        }
    }
}

/// Figures of `scope` over the days of `sums` that `keep` accepts, in data
/// year `year`; denominators time-weighted over `days`.
fn figures(
    site: &Site,
    sums: &Sums,
    scope: &Scope,
    days: &BTreeSet<NaiveDate>,
    year: i32,
) -> anyhow::Result<Figures> {
    let keep = |d: NaiveDate| days.contains(&d);
    let carriers = sums.carriers(&keep);
    let set = &site.site.factor_set;
    let energy = comprehensive_energy(&carriers, &site.factors, set, year)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let grid = format!("co2.grid.{}", site.site.grid_region);
    let carbon = carbon(
        &carriers,
        &site.factors,
        set,
        &grid,
        year,
        site.site.carbon_factor_year,
    );
    let changes = change_dates(site);
    let (persons, area) = denominators(site, scope, days, &changes);
    let special_area = time_weighted_steps(days, &changes, &|d| match scope {
        Scope::Agency(a) => special_area_on(site, Some(a), None, d),
        Scope::Building(b) => special_area_on(site, None, Some(b), d),
        Scope::Site => special_area_on(site, None, None, d),
    })
    .unwrap_or(0.0);
    Ok(Figures {
        carriers,
        energy,
        carbon,
        persons,
        area,
        water_days: sums.water_days(&keep),
        water_working_days: sums.water_days(&|d| keep(d) && site.worked(d)),
        special_kwh: sums.special_kwh(&keep),
        special_area,
    })
}

/// Time-weighted persons and area of `scope` over a set of days.
fn denominators(
    site: &Site,
    scope: &Scope,
    days: &BTreeSet<NaiveDate>,
    changes: &[NaiveDate],
) -> (f64, f64) {
    let tw = |f: &dyn Fn(NaiveDate) -> f64| time_weighted_steps(days, changes, f).unwrap_or(0.0);
    match scope {
        Scope::Agency(a) => (
            tw(&|d| persons_on(site, a, d)),
            tw(&|d| agency_area_on(site, a, d)),
        ),
        Scope::Building(b) => (
            tw(&|d| building_persons_on(site, b, d)),
            tw(&|d| building_area_on(site, b, d)),
        ),
        Scope::Site => (
            tw(&|d| site_persons_on(site, d)),
            tw(&|d| site_area_on(site, d)),
        ),
    }
}

/// Coverage of `scope` over `days`, % (measured or estimated meter-buckets
/// of the expected); `None` when nothing was expected (not in service).
fn coverage(
    agg: &Aggregator,
    sums: &Sums,
    scope: &Scope,
    days: &BTreeSet<NaiveDate>,
) -> Option<f64> {
    let expected = sums::expected(agg, scope, days);
    let (m, e) = sums.quality(&|d| days.contains(&d));
    (expected > 0).then(|| ((m + e) as f64 * 100.0 / expected as f64).min(100.0))
}

/// Whether `period` is a whole calendar year.
pub fn is_full_year(period: Period) -> bool {
    let year = period.from.year();
    period.from.ordinal() == 1
        && NaiveDate::from_ymd_opt(year + 1, 1, 1).is_some_and(|next| period.to == next)
}

/// Shift a period by whole years.
fn shift_year(p: Period, by: i32) -> Option<Period> {
    Some(Period {
        from: p.from.with_year(p.from.year() + by)?,
        to: p.to.with_year(p.to.year() + by)?,
    })
}

/// All the KPIs of one scope over `period`, as of `today`.
pub(crate) fn compute(
    site: &Site,
    agg: &Aggregator,
    reader: &Reader,
    scope: &Scope,
    period: Period,
    today: NaiveDate,
) -> anyhow::Result<ScopeKpis> {
    let year = period.from.year();
    let threshold = site.site.completeness_threshold_pct;
    let sums = sums::load(site, agg, reader, scope, period)?;
    let every = all_days(period);
    let f = figures(site, &sums, scope, &every, year)?;
    let mut withheld: Vec<(String, String)> = Vec::new();

    // Coverage over the whole period.
    let expected = sums::expected(agg, scope, &every);
    let (measured, estimated) = sums.quality(&|_| true);
    let pct = |n: i64| {
        if expected > 0 {
            (n as f64 * 100.0 / expected as f64).min(100.0)
        } else {
            0.0
        }
    };
    let completeness_pct = pct(measured);
    let coverage_pct = pct(measured + estimated);
    let running = period.to > today;
    let full_year = is_full_year(period);
    let complete = full_year && !running && coverage_pct >= threshold;

    for c in &f.energy.unconverted {
        withheld.push((
            format!("energy.{c}"),
            format!(
                "{c} is left out of comprehensive energy: the factor set has no kgce.{c} (GB/T 2589 gives none; add a [[factor]] row to count it)"
            ),
        ));
    }
    let co2_t = f.carbon.total_kg.map(|kg| kg / 1000.0);
    if co2_t.is_none() {
        withheld.push((
            "co2".into(),
            format!("no factor for {}", f.carbon.missing.join(", ")),
        ));
    }

    // 同比 on the days with data this period and the same calendar days a year earlier.
    let data_days = sums.data_days();
    let window: BTreeSet<NaiveDate> = data_days
        .iter()
        .copied()
        .filter(|d| same_day(*d, -1).is_some())
        .collect();
    let mut yoy = Vec::new();
    let mut yoy_window = None;
    let mut prev_window: Option<(Figures, f64)> = None;
    // This period's figures over the window, kept for the reductions.
    let mut now_window: Option<Figures> = None;
    let mut prev_sums = None;
    match shift_year(period, -1) {
        _ if window.is_empty() => withheld.push(("yoy".into(), "no data in the period".into())),
        None => withheld.push(("yoy".into(), "no previous year".into())),
        Some(prev) => {
            let before = sums::load(site, agg, reader, scope, prev)?;
            let back: BTreeSet<NaiveDate> =
                window.iter().filter_map(|d| same_day(*d, -1)).collect();
            let now_cov = coverage(agg, &sums, scope, &window);
            let before_cov = coverage(agg, &before, scope, &back);
            let (from, to) = (
                window.first().copied().unwrap_or(period.from),
                window.last().copied().unwrap_or(period.from),
            );
            yoy_window = Some(YoyWindow {
                from,
                to,
                days: window.len(),
                coverage_now_pct: now_cov.unwrap_or(0.0),
                coverage_before_pct: before_cov.unwrap_or(0.0),
            });
            match (now_cov, before_cov) {
                (_, None) => withheld.push((
                    "yoy".into(),
                    format!("not in service on the same days of {}", year - 1),
                )),
                (Some(n), Some(b)) if n >= threshold && b >= threshold => {
                    let now = figures(site, &sums, scope, &window, year)?;
                    let was = figures(site, &before, scope, &back, year - 1)?;
                    for ind in INDICATORS {
                        if let (Some(x), Some(y)) = (now.indicator(ind), was.indicator(ind))
                            && let Some(p) = meterflow_core::kpi::yoy_pct(x, y)
                        {
                            yoy.push(Yoy {
                                indicator: ind.into(),
                                now: x,
                                before: y,
                                pct: p,
                            });
                        }
                    }
                    prev_window = Some((was, b));
                    now_window = Some(now);
                }
                (n, Some(b)) => withheld.push((
                    "yoy".into(),
                    format!(
                        "coverage {:.1} % this year and {b:.1} % on the same days of {} ({from} – {to}); both must reach {threshold} %",
                        n.unwrap_or(0.0),
                        year - 1
                    ),
                )),
            }
            prev_sums = Some((before, prev));
        }
    }

    // Grades for complete years; tracking with a projection while the year runs.
    let mut grades = Vec::new();
    let mut tracking = None;
    if full_year {
        if complete {
            grades = grade_all(site, &f, &mut withheld);
        } else if running {
            tracking = track(
                site,
                agg,
                &sums,
                scope,
                period,
                &f,
                prev_window.as_ref(),
                prev_sums.as_ref(),
                &mut withheld,
            )?;
        } else if site.site.quota_set.is_some() {
            withheld.push((
                "grades".into(),
                format!("coverage {coverage_pct:.1} % of {year} is below {threshold} %"),
            ));
        }
    }

    let reductions = if full_year {
        if running && !window.is_empty() && now_window.is_none() {
            now_window = Some(figures(site, &sums, scope, &window, year)?);
        }
        reductions(
            site,
            agg,
            reader,
            scope,
            period,
            &f,
            complete,
            running,
            &window,
            now_window.as_ref(),
            &mut withheld,
        )?
    } else {
        Vec::new()
    };

    let per_area_co2 = f.indicator("per_area_co2");
    // Persons belong to agencies: a building has per-area figures only.
    let per_person = |v: Option<f64>| match scope {
        Scope::Building(_) => None,
        _ => v,
    };
    if matches!(scope, Scope::Building(_)) {
        withheld.push((
            "per_capita".into(),
            "persons belong to agencies: a building has per-area figures only".into(),
        ));
    }
    Ok(ScopeKpis {
        agency: scope.label().to_string(),
        period,
        carriers: f.carriers,
        energy_kgce: f.energy.total,
        co2_t,
        persons: f.persons,
        area_m2: f.area,
        per_capita_energy: per_person(f.indicator("per_capita_energy")),
        per_area_energy: f.indicator("per_area_energy"),
        water_per_capita: per_person(f.indicator("per_capita_water")),
        water_l_per_person_day: per_person(f.indicator("water_per_person_day")),
        water_days: f.water_days,
        water_l_per_person_working_day: per_person(f.indicator("water_per_person_working_day")),
        water_working_days: f.water_working_days,
        completeness_pct,
        coverage_pct,
        complete,
        yoy_per_capita_energy_pct: yoy
            .iter()
            .find(|y| y.indicator == "per_capita_energy")
            .map(|y| y.pct)
            .filter(|_| !matches!(scope, Scope::Building(_))),
        yoy: yoy
            .into_iter()
            .filter(|y| !(matches!(scope, Scope::Building(_)) && y.indicator.contains("capita")))
            .collect(),
        yoy_window,
        grades,
        unverified: f
            .energy
            .unverified()
            .into_iter()
            .map(str::to_string)
            .chain(
                f.carbon
                    .factors
                    .iter()
                    .filter(|r| r.confidence == meterflow_model::factors::Grade::C)
                    .map(|r| r.indicator.clone()),
            )
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        last_day: sums.last_day(),
        days_with_data: data_days.len(),
        tracking,
        per_area_co2,
        reductions,
        carbon: f.carbon,
        withheld,
        imbalance_clipped: sums.clipped.clone(),
    })
}

/// The value of a quota indicator with the quota's electricity factor, and
/// the statistics one when they differ.
fn quota_value(
    f: &Figures,
    q: &meterflow_model::factors::QuotaRow,
) -> Option<(f64, Option<f64>, f64)> {
    let stat = f
        .energy
        .factors
        .iter()
        .find(|r| r.indicator == "kgce.electricity")
        .map_or(0.1229, |r| r.value);
    let k = q.electricity_factor.unwrap_or(stat);
    let energy = |kk: f64| f.energy.total - f.energy.electricity + f.carriers.electricity_kwh * kk;
    let with = |kk: f64| -> Option<f64> {
        let e = energy(kk);
        match q.indicator.as_str() {
            "per_capita_energy" => per(e, f.persons),
            "per_area_energy" => per(e, f.area),
            // Quota-standard non-heating intensity: heating, transport and
            // special-function loads (sub-item D with its declared floor
            // area) removed.
            "per_area_nonheating_energy" => per(
                e - f.energy.heat - f.energy.vehicle_fuel() - f.special_kwh * kk,
                f.area - f.special_area,
            ),
            // A per-day water quota on the working-day basis (250 days a
            // year) divides by the worked days with data.
            "water_per_person_day" if q.day_basis.as_deref() == Some("working") => {
                f.indicator("water_per_person_working_day")
            }
            other => f.indicator(other),
        }
    };
    let value = with(k)?;
    let statistics = (k != stat)
        .then(|| with(stat))
        .flatten()
        .filter(|s| (s - value).abs() > f64::EPSILON);
    Some((value, statistics, k))
}

/// Grade every quota of the site's set.
fn grade_all(site: &Site, f: &Figures, withheld: &mut Vec<(String, String)>) -> Vec<GradeRow> {
    let Some(qs) = site.site.quota_set.as_deref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for q in site.factors.quotas_of(qs) {
        match quota_value(f, q) {
            Some((value, statistics_value, k)) => out.push(GradeRow {
                indicator: q.indicator.clone(),
                value,
                grade: meterflow_core::grade::grade(value, q),
                statistics_value,
                electricity_factor: k,
                unit: q.unit.clone(),
            }),
            None => withheld.push((
                format!("grade.{}", q.indicator),
                if f.persons <= 0.0 && q.indicator.contains("person") {
                    "no persons".to_string()
                } else if f.area <= 0.0 {
                    "no area".to_string()
                } else {
                    "indicator not computed".to_string()
                },
            )),
        }
    }
    out
}

/// Tracking of per-capita energy against the quota's constraint while the
/// year runs: pro-rated to the days with data; projected by last year's
/// shape when last year covers both the same days and its whole year, by
/// run-rate otherwise, and not at all below the minimum window.
#[allow(clippy::too_many_arguments)]
fn track(
    site: &Site,
    agg: &Aggregator,
    sums: &Sums,
    scope: &Scope,
    period: Period,
    f: &Figures,
    prev_window: Option<&(Figures, f64)>,
    prev: Option<&(Sums, Period)>,
    withheld: &mut Vec<(String, String)>,
) -> anyhow::Result<Option<meterflow_core::quota::Tracking>> {
    let Some(qs) = site.site.quota_set.as_deref() else {
        return Ok(None);
    };
    let Some(q) = site
        .factors
        .quotas_of(qs)
        .find(|q| q.indicator == "per_capita_energy")
    else {
        return Ok(None);
    };
    let Some((pc, _, k)) = quota_value(f, q) else {
        withheld.push(("tracking".into(), "no persons".into()));
        return Ok(None);
    };
    if sums.days.is_empty() {
        return Ok(None);
    }
    // Days with data, the last one counted up to where its data ends.
    let part = match (sums.last_day(), sums.last_ms) {
        (Some(d), Some(end)) => {
            let start = meterflow_core::time::day_start(d, site.tz);
            ((end - start) as f64 / 86_400_000.0).clamp(0.0, 1.0)
        }
        _ => 1.0,
    };
    let elapsed = (sums.days.len() as f64 - 1.0 + part).max(1.0 / 96.0);
    // Last year's shape: energy over its same days, and over its whole year,
    // both covered; converted with the quota's factor like this year's.
    let conv = |x: &Figures| x.energy.total - x.energy.electricity + x.carriers.electricity_kwh * k;
    let mut shape = None;
    if let (Some((window, _)), Some((before, prev_period))) = (prev_window, prev) {
        let whole = all_days(*prev_period);
        let cov = coverage(agg, before, scope, &whole).unwrap_or(0.0);
        if cov >= site.site.completeness_threshold_pct {
            let year_before = figures(site, before, scope, &whole, prev_period.from.year())?;
            shape = Some((conv(window), conv(&year_before)));
        }
    }
    let t = meterflow_core::quota::track(pc, elapsed, period.days() as f64, q.constraint, shape);
    let min = f64::from(site.site.projection_min_days);
    Ok(t.map(|t| {
        if elapsed < min {
            withheld.push((
                "projection".into(),
                format!(
                    "insufficient data: {} days with data, {} needed",
                    sums.days.len(),
                    site.site.projection_min_days
                ),
            ));
            t.without_projection()
        } else {
            t
        }
    }))
}

/// Reductions against each plan running in the year: complete years
/// against a complete base year (status against the target and the linear
/// path); a running year on its days with data against the base year's
/// same days (tracking, never met).
#[allow(clippy::too_many_arguments)]
fn reductions(
    site: &Site,
    agg: &Aggregator,
    reader: &Reader,
    scope: &Scope,
    period: Period,
    f: &Figures,
    complete: bool,
    running: bool,
    window: &BTreeSet<NaiveDate>,
    now_window: Option<&Figures>,
    withheld: &mut Vec<(String, String)>,
) -> anyhow::Result<Vec<Reduction>> {
    let year = period.from.year();
    let threshold = site.site.completeness_threshold_pct;
    let mut out = Vec::new();
    let plans: Vec<_> = site
        .factors
        .targets
        .iter()
        .filter(|t| t.base_year < year && year <= t.target_year)
        .collect();
    if plans.is_empty() {
        return Ok(out);
    }
    if !complete && !running {
        withheld.push((
            "reductions".into(),
            format!("{year} is not complete (coverage below {threshold} %)"),
        ));
        return Ok(out);
    }
    let mut bases: std::collections::BTreeMap<i32, Result<(Figures, Option<Figures>), String>> =
        std::collections::BTreeMap::new();
    for t in plans {
        if let std::collections::btree_map::Entry::Vacant(slot) = bases.entry(t.base_year) {
            let by = t.base_year - year;
            let base = match period_of(t.base_year, None) {
                None => Err("no such base year".to_string()),
                Some(bp) => {
                    let bs = sums::load(site, agg, reader, scope, bp)?;
                    let whole = all_days(bp);
                    let cov = coverage(agg, &bs, scope, &whole).unwrap_or(0.0);
                    let full = figures(site, &bs, scope, &whole, t.base_year)?;
                    if running {
                        let same: BTreeSet<NaiveDate> =
                            window.iter().filter_map(|d| same_day(*d, by)).collect();
                        let wcov = coverage(agg, &bs, scope, &same).unwrap_or(0.0);
                        if wcov >= threshold {
                            let part = figures(site, &bs, scope, &same, t.base_year)?;
                            Ok((full, Some(part)))
                        } else {
                            Err(format!(
                                "base year {} coverage {wcov:.1} % on the same days (below {threshold} %)",
                                t.base_year
                            ))
                        }
                    } else if cov >= threshold {
                        Ok((full, None))
                    } else {
                        Err(format!(
                            "base year {} coverage {cov:.1} % (below {threshold} %)",
                            t.base_year
                        ))
                    }
                }
            };
            slot.insert(base);
        }
        let base = match bases.get(&t.base_year) {
            Some(Ok(b)) => b,
            Some(Err(reason)) => {
                withheld.push((format!("reduction.{}", t.indicator), reason.clone()));
                continue;
            }
            None => continue,
        };
        let (value, base_value) = if running {
            (
                now_window.and_then(|n| n.indicator(&t.indicator)),
                base.1.as_ref().and_then(|b| b.indicator(&t.indicator)),
            )
        } else {
            (f.indicator(&t.indicator), base.0.indicator(&t.indicator))
        };
        let (Some(value), Some(base_value)) = (value, base_value) else {
            withheld.push((
                format!("reduction.{}", t.indicator),
                "indicator missing this year or in the base year".into(),
            ));
            continue;
        };
        let Some(pct) = meterflow_core::kpi::cumulative_reduction_pct(base_value, value) else {
            continue;
        };
        let span = f64::from((t.target_year - t.base_year).max(1));
        let path_pct = t.reduction_pct * f64::from(year - t.base_year) / span;
        let status = if running {
            TargetStatus::Tracking
        } else if year == t.target_year {
            if pct >= t.reduction_pct {
                TargetStatus::Met
            } else {
                TargetStatus::NotMet
            }
        } else if pct >= t.reduction_pct {
            TargetStatus::Reached
        } else {
            TargetStatus::NotYet
        };
        out.push(Reduction {
            plan: t.plan.clone(),
            indicator: t.indicator.clone(),
            base_year: t.base_year,
            target_year: t.target_year,
            base: base_value,
            value,
            reduction_pct: pct,
            required_pct: t.reduction_pct,
            path_pct,
            on_path: pct >= path_pct,
            status,
        });
    }
    Ok(out)
}
