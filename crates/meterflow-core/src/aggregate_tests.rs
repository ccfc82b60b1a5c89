//! The streaming aggregator on a fixture of 2 buildings and 4 agencies.
//!
//! B1 (1 000 m²): zones Z1 (400 m²) and Z2 (600 m²). B2 (800 m²): zone Z3.
//! A: 300 m² in Z1. C: 100 m² in Z1 until 2025-06-30, then 200 m² in Z2.
//! D: 500 m² in B2. E: 300 m² in B2 from 2025-07-01.
//!
//! MAIN1 (B1, kWh) is the parent of L1 (Z1, A1 lighting) and L2 (Z2, B2 terminals).
//! MAINW (B2, water, m³); SH (kWh, fixed 30 % A / 70 % D); E2 (Z3, MWh);
//! H1 (B1 heat, kWh of heat).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use meterflow_model::{EnergyClass, Site};
use proptest::prelude::*;

use crate::aggregate::{Aggregator, Grain, Level, RollupDelta, ScopeKey, split, to_carrier};
use crate::buckets::BUCKET_MS;
use crate::denominators::{Period, agency_consumption};
use crate::memlog::BucketTotals;
use crate::time::{day_start, local_date};

const SITE: &str = r#"
[site]
name = "aggregation fixture"

[[building]]
id = "B1"
total_area_m2 = 1000

[[building]]
id = "B2"
total_area_m2 = 800

[[zone]]
id = "Z1"
building = "B1"
area_m2 = 400

[[zone]]
id = "Z2"
building = "B1"
area_m2 = 600

[[zone]]
id = "Z3"
building = "B2"
area_m2 = 800

[[agency]]
id = "A"
name = "A"

[[agency]]
id = "C"
name = "C"

[[agency]]
id = "D"
name = "D"

[[agency]]
id = "E"
name = "E"

[[space]]
agency = "A"
zone = "Z1"
from = 2025-01-01
area_m2 = 300

[[space]]
agency = "C"
zone = "Z1"
from = 2025-01-01
to = 2025-06-30
area_m2 = 100

[[space]]
agency = "C"
zone = "Z2"
from = 2025-07-01
area_m2 = 200

[[space]]
agency = "D"
building = "B2"
from = 2025-01-01
area_m2 = 500

[[space]]
agency = "E"
building = "B2"
from = 2025-07-01
area_m2 = 300

[[meter]]
id = "MAIN1"
kind = "electricity"
unit = "kWh"
serves = { building = "B1" }

[[meter]]
id = "L1"
kind = "electricity"
unit = "kWh"
parent = "MAIN1"
subitem = "A1"
serves = { zone = "Z1" }

[[meter]]
id = "L2"
kind = "electricity"
unit = "kWh"
parent = "MAIN1"
subitem = "B2"
serves = { zone = "Z2" }

[[meter]]
id = "MAINW"
kind = "water"
unit = "m3"
serves = { building = "B2" }

[[meter]]
id = "SH"
kind = "electricity"
unit = "kWh"
allocation = "fixed"
shares = { A = 0.3, D = 0.7 }
serves = { agencies = ["A", "D"] }

[[meter]]
id = "E2"
kind = "electricity"
unit = "MWh"
serves = { zone = "Z3" }

[[meter]]
id = "H1"
kind = "heat"
unit = "kWh"
serves = { building = "B1" }
"#;

fn site() -> Site {
    match Site::parse(SITE, Path::new("aggregate.toml")) {
        Ok(s) => s,
        Err(e) => panic!("fixture: {e}"),
    }
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

fn totals(micro: i64) -> BucketTotals {
    BucketTotals {
        micro,
        measured_ms: if micro >= 0 { BUCKET_MS } else { 0 },
        estimated_ms: 0,
    }
}

/// Rollup rows as a map, summing deltas.
fn fold(rows: impl IntoIterator<Item = RollupDelta>) -> BTreeMap<(u32, Grain, i64), [i64; 3]> {
    let mut out: BTreeMap<(u32, Grain, i64), [i64; 3]> = BTreeMap::new();
    for r in rows {
        let e = out.entry((r.scope, r.grain, r.start_ms)).or_default();
        e[0] += r.value;
        e[1] += r.measured;
        e[2] += r.estimated;
    }
    out.retain(|_, v| *v != [0; 3]);
    out
}

fn scope_id(agg: &Aggregator, level: Level, id: &str, class: EnergyClass, sub: &str) -> u32 {
    let key = ScopeKey {
        level,
        id: id.into(),
        class,
        subitem: sub.into(),
    };
    match agg.scopes().iter().position(|k| *k == key) {
        Some(i) => i as u32,
        None => panic!("no scope {key:?}"),
    }
}

fn value(
    rows: &BTreeMap<(u32, Grain, i64), [i64; 3]>,
    scope: u32,
    grain: Grain,
    start: i64,
) -> i64 {
    rows.get(&(scope, grain, start)).map_or(0, |v| v[0])
}

#[test]
fn one_hour_rolls_up_by_hand() {
    // 2025-03-10 09:00-10:00 Shanghai, four buckets each:
    //   MAIN1 10 kWh, L1 4 kWh, L2 3 kWh, SH 1 kWh, E2 0.002 MWh (= 2 kWh),
    //   MAINW 1 m³, H1 100 kWh of heat (= 0.36 GJ).
    let site = site();
    let mut agg = Aggregator::new(&site);
    let t0 = day_start(date(2025, 3, 10), site.tz) + 9 * 3_600_000;
    let per_bucket: [(&str, i64); 7] = [
        ("MAIN1", 10_000_000),
        ("L1", 4_000_000),
        ("L2", 3_000_000),
        ("SH", 1_000_000),
        ("E2", 2_000),
        ("MAINW", 1_000_000),
        ("H1", 100_000_000),
    ];
    for k in 0..4 {
        for (m, micro) in per_bucket {
            let i = agg.meter_index(m).unwrap_or(u32::MAX);
            agg.apply(
                i,
                t0 + k * BUCKET_MS,
                &BucketTotals::default(),
                &totals(micro),
            );
        }
    }
    let rows = fold(agg.drain());
    let el = EnergyClass::Electricity;
    let e9 = 1_000_000_000i64; // rollup units per kWh / m³
    let s = |l, id, c, sub| scope_id(&agg, l, id, c, sub);
    // Building B1 = MAIN1 (children inside it): 4 × 10 = 40 kWh.
    assert_eq!(
        value(&rows, s(Level::Building, "B1", el, ""), Grain::Hour, t0),
        40 * e9
    );
    // Z1 = L1: 16 kWh; Z2 = L2: 12 kWh.
    assert_eq!(
        value(&rows, s(Level::Zone, "Z1", el, ""), Grain::Hour, t0),
        16 * e9
    );
    assert_eq!(
        value(&rows, s(Level::Zone, "Z2", el, ""), Grain::Hour, t0),
        12 * e9
    );
    // Sub-items: A1 = L1 = 16 kWh and its letter A too; B2 = 12 kWh.
    assert_eq!(
        value(&rows, s(Level::Building, "B1", el, "A1"), Grain::Hour, t0),
        16 * e9
    );
    assert_eq!(
        value(&rows, s(Level::Building, "B1", el, "A"), Grain::Hour, t0),
        16 * e9
    );
    assert_eq!(
        value(&rows, s(Level::Site, "site", el, "B2"), Grain::Hour, t0),
        12 * e9
    );
    // Site electricity = MAIN1 + SH + E2 = 40 + 4 + 8 = 52 kWh.
    assert_eq!(
        value(&rows, s(Level::Site, "site", el, ""), Grain::Hour, t0),
        52 * e9
    );
    // Agencies (March: Z1 is A 300 m² + C 100 m²; B1's area: A 300, C 100):
    //   MAIN1 remainder 40 − 16 − 12 = 12 kWh by B1 area: A 9, C 3;
    //   L1 16 by Z1 area: A 12, C 4; L2 12 in Z2: nobody there in March → unallocated;
    //   SH 4: A 1.2, D 2.8; E2 8 in Z3: nobody has a space in Z3 → unallocated.
    //   A = 9 + 12 + 1.2 = 22.2 kWh; C = 3 + 4 = 7; D = 2.8.
    assert_eq!(
        value(&rows, s(Level::Agency, "A", el, ""), Grain::Hour, t0),
        22_200_000_000
    );
    assert_eq!(
        value(&rows, s(Level::Agency, "C", el, ""), Grain::Hour, t0),
        7 * e9
    );
    assert_eq!(
        value(&rows, s(Level::Agency, "D", el, ""), Grain::Hour, t0),
        2_800_000_000
    );
    // A's lighting (A1) is its share of L1 only: 12 kWh.
    assert_eq!(
        value(&rows, s(Level::Agency, "A", el, "A1"), Grain::Hour, t0),
        12 * e9
    );
    // Water of B2: 4 m³, all to D (the only occupant in March).
    let w = EnergyClass::Water;
    assert_eq!(
        value(
            &rows,
            s(Level::Agency, "D", w, ""),
            Grain::Day,
            t0 - 9 * 3_600_000
        ),
        4 * e9
    );
    // Heat: 400 kWh = 1.44 GJ = 1.44e12 pico-GJ.
    let h = s(Level::Building, "B1", EnergyClass::Heat, "");
    assert_eq!(value(&rows, h, Grain::Hour, t0), 1_440_000_000_000);
    assert!(
        (to_carrier(
            EnergyClass::Heat,
            value(&rows, h, Grain::Year, day_start(date(2025, 1, 1), site.tz))
        ) - 1.44)
            .abs()
            < 1e-12
    );
    // Completeness counts: B1 electricity saw MAIN1, L1, L2 measured in 4 buckets = 12.
    let b1 = rows
        .get(&(s(Level::Building, "B1", el, ""), Grain::Hour, t0))
        .copied()
        .unwrap_or_default();
    assert_eq!(b1[1], 12);
    assert_eq!(agg.members(s(Level::Building, "B1", el, "")), 3);
}

#[test]
fn area_move_changes_shares_on_its_day() {
    // L2 (Z2) has nobody until C moves in on 2025-07-01, then all of it is C's.
    // E joins B2 on 2025-07-01: B2 water then splits D 500 : E 300.
    let site = site();
    let mut agg = Aggregator::new(&site);
    let june30 = day_start(date(2025, 6, 30), site.tz) + 12 * 3_600_000;
    let july1 = day_start(date(2025, 7, 1), site.tz) + 12 * 3_600_000;
    // MAIN1 reads what L2 does, so its remainder (split by B1 area) is 0.
    let main = agg.meter_index("MAIN1").unwrap_or(u32::MAX);
    let l2 = agg.meter_index("L2").unwrap_or(u32::MAX);
    let w = agg.meter_index("MAINW").unwrap_or(u32::MAX);
    for t in [june30, july1] {
        agg.apply(main, t, &BucketTotals::default(), &totals(5_000_000));
        agg.apply(l2, t, &BucketTotals::default(), &totals(5_000_000));
        agg.apply(w, t, &BucketTotals::default(), &totals(8_000_000));
    }
    let rows = fold(agg.drain());
    let el = EnergyClass::Electricity;
    let c = scope_id(&agg, Level::Agency, "C", el, "");
    assert_eq!(value(&rows, c, Grain::Quarter, june30), 0);
    assert_eq!(value(&rows, c, Grain::Quarter, july1), 5_000_000_000);
    let wat = EnergyClass::Water;
    let d = scope_id(&agg, Level::Agency, "D", wat, "");
    let e = scope_id(&agg, Level::Agency, "E", wat, "");
    // June 30: all 8 m³ to D. July 1: D 8 × 5/8 = 5, E 3.
    assert_eq!(value(&rows, d, Grain::Quarter, june30), 8_000_000_000);
    assert_eq!(value(&rows, d, Grain::Quarter, july1), 5_000_000_000);
    assert_eq!(value(&rows, e, Grain::Quarter, july1), 3_000_000_000);
    // Month rows: June has D's 8 m³, July D 5 + E 3.
    let month = |y, m| day_start(date(y, m, 1), site.tz);
    assert_eq!(value(&rows, d, Grain::Month, month(2025, 6)), 8_000_000_000);
    assert_eq!(value(&rows, d, Grain::Month, month(2025, 7)), 5_000_000_000);
    assert_eq!(value(&rows, d, Grain::Year, month(2025, 1)), 13_000_000_000);
}

#[test]
fn split_is_exact_and_symmetric() {
    // 10 units by thirds: floors 3, 3, 3; the one left goes to the first (ties).
    let mut out = [0i64; 3];
    split(10, &[1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0], &mut out);
    assert_eq!(out, [4, 3, 3]);
    split(-10, &[1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0], &mut out);
    assert_eq!(out, [-4, -3, -3]);
    // 7 by 0.3/0.7: 2.1 → 2, 4.9 → 4, one left to the larger fraction (0.9).
    let mut two = [0i64; 2];
    split(7, &[0.3, 0.7], &mut two);
    assert_eq!(two, [2, 5]);
}

/// All (meter, bucket) final values, with 0–2 intermediate values each.
fn arb_changes() -> impl Strategy<Value = Vec<(usize, i64, Vec<i64>)>> {
    // 7 meters × buckets over 3 days around the 1 July move, in micro-units.
    prop::collection::vec(
        (
            0usize..7,
            0i64..(3 * 96),
            prop::collection::vec(prop_oneof![Just(0i64), 0i64..5_000_000], 1..4),
        ),
        1..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any arrival order of the same changes, with late corrections and drains
    /// at arbitrary points, gives bit-identical rollups.
    #[test]
    fn any_arrival_order_gives_the_same_rollups(changes in arb_changes(), seed in any::<u64>(), drains in prop::collection::vec(0usize..400, 0..4)) {
        let site = site();
        let base = day_start(date(2025, 6, 30), site.tz);
        // Per (meter, bucket): a chain 0 → v1 → … → vk (the last write wins).
        let mut chains: BTreeMap<(usize, i64), Vec<i64>> = BTreeMap::new();
        for (m, b, vals) in &changes {
            chains.entry((*m, *b)).or_default().extend(vals.iter().copied());
        }
        // In order: each bucket straight to its final value.
        let mut a = Aggregator::new(&site);
        for ((m, b), vals) in &chains {
            let last = *vals.last().unwrap_or(&0);
            a.apply(*m as u32, base + b * BUCKET_MS, &BucketTotals::default(), &totals(last));
        }
        let want = fold(a.drain());
        // Shuffled steps of every chain, drained at random points.
        // (meter, bucket, old, new); the first step of a chain starts from an empty bucket.
        let mut steps: Vec<(usize, i64, Option<i64>, i64)> = Vec::new();
        for ((m, b), vals) in &chains {
            let mut prev = None;
            for v in vals {
                steps.push((*m, *b, prev, *v));
                prev = Some(*v);
            }
        }
        let mut x = seed | 1;
        for i in (1..steps.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            steps.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut b = Aggregator::new(&site);
        let mut got_rows = Vec::new();
        for (i, (m, bucket, old, new)) in steps.iter().enumerate() {
            let old_t = old.map_or_else(BucketTotals::default, totals);
            b.apply(*m as u32, base + bucket * BUCKET_MS, &old_t, &totals(*new));
            if drains.contains(&i) {
                got_rows.extend(b.drain());
            }
        }
        got_rows.extend(b.drain());
        prop_assert_eq!(fold(got_rows), want);
    }

    /// Agency day totals equal the day-wise allocation of `denominators`
    /// (an independent implementation in floats) to within rounding.
    #[test]
    fn agency_days_match_the_daily_allocation(changes in arb_changes()) {
        let site = site();
        let base = day_start(date(2025, 6, 30), site.tz);
        let mut finals: BTreeMap<(usize, i64), i64> = BTreeMap::new();
        for (m, b, vals) in &changes {
            finals.insert((*m, *b), *vals.last().unwrap_or(&0));
        }
        let mut agg = Aggregator::new(&site);
        // Daily totals per meter, in the carrier unit (E2 is in MWh: × 1000).
        let mut daily: BTreeMap<(String, NaiveDate), f64> = BTreeMap::new();
        for ((m, b), v) in &finals {
            let ts = base + b * BUCKET_MS;
            agg.apply(*m as u32, ts, &BucketTotals::default(), &totals(*v));
            let meter = &site.meters[*m];
            let k = if meter.unit == "MWh" { 1000.0 } else { 1.0 };
            *daily.entry((meter.id.clone(), local_date(ts, site.tz))).or_default() += *v as f64 / 1e6 * k;
        }
        let rows = fold(agg.drain());
        for day in [date(2025, 6, 30), date(2025, 7, 1), date(2025, 7, 2)] {
            let period = Period { from: day, to: day.succ_opt().unwrap_or(day) };
            for agency in ["A", "C", "D", "E"] {
                let el = site.meters.iter().filter(|m| m.kind == EnergyClass::Electricity);
                let want = agency_consumption(&site, agency, period, el, |m, d| daily.get(&(m.to_string(), d)).copied().unwrap_or(0.0));
                let got = agg
                    .scopes()
                    .iter()
                    .position(|k| k.level == Level::Agency && k.id == agency && k.class == EnergyClass::Electricity && k.subitem.is_empty())
                    .map_or(0, |s| value(&rows, s as u32, Grain::Day, day_start(day, site.tz)));
                let got = to_carrier(EnergyClass::Electricity, got);
                prop_assert!((got - want).abs() < 1e-6, "{agency} {day}: {got} vs {want}");
            }
        }
    }
}
