//! A scope's stored consumption over a period, kept per local day so that a
//! figure can be taken over any set of days (the window of a year-on-year
//! comparison), with the quality counts that make its coverage.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use meterflow_core::aggregate::{Aggregator, Grain, Level};
use meterflow_core::buckets::BUCKET_MS;
use meterflow_core::denominators::Period;
use meterflow_core::kpi::Carriers;
use meterflow_core::time::{day_start, local_date};
use meterflow_model::{EnergyClass, Site};
use meterflow_store::Reader;

use crate::types::{CLASSES, Scope};

/// One local day of a scope.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Day {
    /// Exact consumption per class, in [`CLASSES`] order.
    pub raw: [i64; 9],
    /// Which classes have a row that day.
    pub has: [bool; 9],
    /// Measured meter-buckets (all classes).
    pub measured: i64,
    /// Estimated meter-buckets (all classes).
    pub estimated: i64,
    /// Of those, buckets of gaps longer than `[site] covered_gap_max_h`:
    /// counted in the totals, not as covered.
    pub long_gap: i64,
    /// Negative remainders given back (carrier units, [`CLASSES`] order).
    pub clip: [f64; 9],
    /// Electricity of sub-item D (special functions), exact.
    pub special: i64,
}

/// A scope's consumption over a period, per local day.
pub(crate) struct Sums {
    pub days: BTreeMap<NaiveDate, Day>,
    /// Vehicle fuel fills: (local day, gasoline L, diesel L).
    pub fuel: Vec<(NaiveDate, f64, f64)>,
    /// End of the last 15-minute bucket with data, ms.
    pub last_ms: Option<i64>,
    /// Negative remainders clipped, per parent meter (its carrier unit).
    pub clipped: Vec<(String, f64)>,
}

/// Load `scope`'s day rollups (and its vehicles' fuel) over `period`.
pub(crate) fn load(
    site: &Site,
    agg: &Aggregator,
    reader: &Reader,
    scope: &Scope,
    period: Period,
) -> anyhow::Result<Sums> {
    let (level, id) = scope.level_id();
    let (from, to) = (
        day_start(period.from, site.tz),
        day_start(period.to, site.tz),
    );
    let mut days: BTreeMap<NaiveDate, Day> = BTreeMap::new();
    for (i, class) in CLASSES.into_iter().enumerate() {
        for r in reader.agg(level, id, class, "", Grain::Day, from, to)? {
            let d = days.entry(local_date(r.start_ms, site.tz)).or_default();
            d.raw[i] += r.raw;
            d.has[i] = true;
            d.measured += r.measured;
            d.estimated += r.estimated;
        }
    }
    // Special-function electricity (sub-item D) for the quota standard's
    // non-heating intensity.
    for r in reader.agg(
        level,
        id,
        EnergyClass::Electricity,
        "D",
        Grain::Day,
        from,
        to,
    )? {
        days.entry(local_date(r.start_ms, site.tz))
            .or_default()
            .special += r.raw;
    }
    long_gaps(site, agg, reader, scope, period, &mut days)?;
    // Vehicle fuel from the vehicle ledger (an agency's vehicles; the site's all).
    let fleet = match scope {
        Scope::Agency(a) => Some(Some(a.as_str())),
        Scope::Site => Some(None),
        Scope::Building(_) => None,
    };
    let mut fuel = Vec::new();
    if let Some(who) = fleet {
        let events = reader.ledger_until("vehicles", to)?;
        fuel = meterflow_ledgers::vehicles::fuel_fills(&events, who, from, to)
            .into_iter()
            .map(|(ts, g, d)| (local_date(ts, site.tz), g, d))
            .collect();
    }
    // How far into its last day the data reaches (a day in progress counts in part).
    let mut last_ms = None;
    if let Some(&day) = days.keys().last() {
        let start = day_start(day, site.tz);
        for class in CLASSES {
            let rows = reader.agg(
                level,
                id,
                class,
                "",
                Grain::Quarter,
                start,
                start + 86_400_000 + 3_600_000,
            )?;
            if let Some(r) = rows.last() {
                let end = r.start_ms + BUCKET_MS;
                last_ms = Some(last_ms.map_or(end, |l: i64| l.max(end)));
            }
        }
    }
    let clip = crate::clip::clip(site, reader, scope, period)?;
    for (d, add) in clip.by_day {
        if let Some(day) = days.get_mut(&d) {
            for (c, a) in day.clip.iter_mut().zip(add) {
                *c += a;
            }
        }
    }
    Ok(Sums {
        days,
        fuel,
        last_ms,
        clipped: clip.by_parent,
    })
}

impl Sums {
    /// Carrier quantities over the days `keep` accepts.
    pub(crate) fn carriers(&self, keep: &dyn Fn(NaiveDate) -> bool) -> Carriers {
        let mut raw = [0i64; 9];
        let mut clip = [0f64; 9];
        for (d, day) in &self.days {
            if keep(*d) {
                for (r, v) in raw.iter_mut().zip(day.raw) {
                    *r += v;
                }
                for (c, v) in clip.iter_mut().zip(day.clip) {
                    *c += v;
                }
            }
        }
        let v = |i: usize| meterflow_core::aggregate::to_carrier(CLASSES[i], raw[i]) + clip[i];
        let (mut gasoline_l, mut diesel_l) = (0.0, 0.0);
        for (d, g, di) in &self.fuel {
            if keep(*d) {
                gasoline_l += g;
                diesel_l += di;
            }
        }
        Carriers {
            electricity_kwh: v(0),
            water_m3: v(1),
            gas_m3: v(2),
            heat_gj: v(3),
            cooling_gj: v(4),
            lpg_kg: v(5),
            coal_kg: v(6),
            steam_kg: v(7),
            fuel_oil_kg: v(8),
            gasoline_l,
            diesel_l,
        }
    }

    /// Local days with any rollup row.
    pub(crate) fn data_days(&self) -> BTreeSet<NaiveDate> {
        self.days.keys().copied().collect()
    }

    /// Days with a water row.
    pub(crate) fn water_days(&self, keep: &dyn Fn(NaiveDate) -> bool) -> usize {
        self.days
            .iter()
            .filter(|(d, day)| day.has[1] && keep(**d))
            .count()
    }

    /// Measured and covered estimated meter-buckets (gaps up to `[site]
    /// covered_gap_max_h`) over the days `keep` accepts.
    pub(crate) fn quality(&self, keep: &dyn Fn(NaiveDate) -> bool) -> (i64, i64) {
        self.days
            .iter()
            .filter(|(d, _)| keep(**d))
            .fold((0, 0), |(m, e), (_, day)| {
                (m + day.measured, e + (day.estimated - day.long_gap).max(0))
            })
    }

    /// Special-function electricity (sub-item D), kWh, over the days `keep` accepts.
    pub(crate) fn special_kwh(&self, keep: &dyn Fn(NaiveDate) -> bool) -> f64 {
        let raw: i64 = self
            .days
            .iter()
            .filter(|(d, _)| keep(**d))
            .map(|(_, day)| day.special)
            .sum();
        meterflow_core::aggregate::to_carrier(EnergyClass::Electricity, raw)
    }

    /// Last local day with data.
    pub(crate) fn last_day(&self) -> Option<NaiveDate> {
        self.days.keys().last().copied()
    }
}

/// Meter-buckets expected in `scope` over a set of days (contiguous runs
/// asked of the hierarchy one at a time).
pub(crate) fn expected(agg: &Aggregator, scope: &Scope, days: &BTreeSet<NaiveDate>) -> i64 {
    let (level, id) = scope.level_id();
    let ids = scope_ids(agg, level, id);
    let mut total = 0;
    let mut run: Option<(NaiveDate, NaiveDate)> = None;
    for &d in days {
        run = match run {
            Some((a, b)) if b == d => Some((a, d.succ_opt().unwrap_or(d))),
            Some((a, b)) => {
                total += agg.expected_buckets(&ids, a, b);
                Some((d, d.succ_opt().unwrap_or(d)))
            }
            None => Some((d, d.succ_opt().unwrap_or(d))),
        };
    }
    if let Some((a, b)) = run {
        total += agg.expected_buckets(&ids, a, b);
    }
    total
}

/// Count, per local day, the estimated buckets of the scope's meters that
/// lie in gaps longer than `[site] covered_gap_max_h` (whole buckets inside
/// the gap, on the days the meter reaches the scope).
fn long_gaps(
    site: &Site,
    agg: &Aggregator,
    reader: &Reader,
    scope: &Scope,
    period: Period,
    days: &mut BTreeMap<NaiveDate, Day>,
) -> anyhow::Result<()> {
    // Nothing estimated, nothing to look up (the usual case: one check).
    if days.values().all(|d| d.estimated == 0) {
        return Ok(());
    }
    let cap_ms = (site.site.covered_gap_max_h.max(0.0) * 3_600_000.0) as i64;
    let (level, id) = scope.level_id();
    let ids = scope_ids(agg, level, id);
    for (i, a, b) in agg.reach(&ids, period.from, period.to) {
        let Some(m) = site.meters.get(i) else {
            continue;
        };
        let Some(series) = reader.series_id(&m.id, m.counter_quantity())? else {
            continue;
        };
        let (lo, hi) = (day_start(a, site.tz), day_start(b, site.tz));
        for (p, v) in reader.long_gaps(series, lo, hi, cap_ms)? {
            // Whole buckets between the two readings, inside the reach.
            let first = (p + BUCKET_MS - 1).div_euclid(BUCKET_MS) * BUCKET_MS;
            let mut q = first.max(lo.div_euclid(BUCKET_MS) * BUCKET_MS);
            let end = v.min(hi);
            while q + BUCKET_MS <= end {
                if let Some(d) = days.get_mut(&local_date(q, site.tz)) {
                    d.long_gap += 1;
                }
                q += BUCKET_MS;
            }
        }
    }
    Ok(())
}

/// Scope indices of the hierarchy for a level and id (all sub-items merged).
pub(crate) fn scope_ids(agg: &Aggregator, level: Level, id: &str) -> Vec<u32> {
    agg.scopes()
        .iter()
        .enumerate()
        .filter(|(_, k)| k.level == level && k.id == id && k.subitem.is_empty())
        .map(|(i, _)| i as u32)
        .collect()
}

/// Every day of a period.
pub(crate) fn all_days(p: Period) -> BTreeSet<NaiveDate> {
    p.iter().collect()
}

/// The same calendar day `by` years away; 29 February has no counterpart.
pub(crate) fn same_day(d: NaiveDate, by: i32) -> Option<NaiveDate> {
    if d.month() == 2 && d.day() == 29 {
        return None;
    }
    d.with_year(d.year() + by)
}
