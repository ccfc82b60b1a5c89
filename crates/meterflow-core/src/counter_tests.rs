//! Every row of the `docs/methodology.md` §1 table, with hand-computed figures.
//!
//! Common spec: multiplier 80 (CT 400/5), rollover 100 000 000, max rate
//! 2 000 kW, interval 900 s, silent after 3 intervals. 15 minutes at 2 000 kW
//! allow 500 kWh.

use meterflow_model::AnomalyKind;

use crate::buckets::BUCKET_MS;
use crate::counter::{CounterSpec, Item, Status};
use crate::memlog::MemSeries;

const T0: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z, a bucket boundary
const Q: i64 = BUCKET_MS; // 15 minutes

fn spec() -> CounterSpec {
    CounterSpec {
        multiplier: 80.0,
        scale: 1.0,
        rollover: Some(100_000_000.0),
        max_rate_per_h: Some(2000.0),
        interval_ms: 900_000,
        sentinels: meterflow_model::config::REGISTER_SENTINELS.to_vec(),
        silent_after: 3,
        resolution: 0.0,
        tz: chrono_tz::UTC,
    }
}

fn run(spec: &CounterSpec, items: &[Item]) -> MemSeries {
    let mut s = MemSeries::default();
    for it in items {
        s.ingest(spec, *it);
    }
    s
}

fn r(ts_ms: i64, value: f64) -> Item {
    Item::Reading { ts_ms, value }
}

fn kinds(s: &MemSeries) -> Vec<AnomalyKind> {
    s.anomalies.values().flatten().map(|a| a.kind).collect()
}

fn bucket_micro(s: &MemSeries, bucket: i64) -> i64 {
    s.buckets.get(&bucket).map(|b| b.micro).unwrap_or(0)
}

#[test]
fn normal_delta_is_counted_with_multiplier() {
    // 1000.00 → 1002.50 over 15 min: 2.5 × 80 = 200 kWh ≤ 500 kWh.
    let s = run(&spec(), &[r(T0, 1000.0), r(T0 + Q, 1002.5)]);
    assert_eq!(bucket_micro(&s, T0), 200_000_000);
    assert_eq!(s.items[&(T0 + Q)].1, Status::Good);
    assert!(kinds(&s).is_empty());
}

#[test]
fn rollover_counts_the_wrap() {
    // p = 99 999 998, v = 1: (100 000 000 − 99 999 998) + 1 = 3 → 240 kWh.
    let s = run(&spec(), &[r(T0, 99_999_998.0), r(T0 + Q, 1.0)]);
    assert_eq!(s.total_micro(), 240_000_000);
    assert_eq!(s.items[&(T0 + Q)].1, Status::Rollover);
    assert_eq!(kinds(&s), vec![AnomalyKind::Rollover]);
}

#[test]
fn replacement_closes_old_series_and_starts_new_one() {
    // Old meter: 15 000 at 13:45, final 15 001.5 at 14:00 → 1.5 × 80 = 120 kWh.
    // New meter: 0 at 14:00, 0.5 at 14:15 → 40 kWh. Never 0.5 − 15 001.5.
    let t = T0 + 55 * Q;
    let items = [
        r(t, 15_000.0),
        Item::Replacement {
            ts_ms: t + Q,
            old_final: 15_001.5,
            new_initial: 0.0,
        },
        r(t + 2 * Q, 0.5),
    ];
    let s = run(&spec(), &items);
    assert_eq!(bucket_micro(&s, t), 120_000_000);
    assert_eq!(bucket_micro(&s, t + Q), 40_000_000);
    assert_eq!(s.total_micro(), 160_000_000);
    assert_eq!(kinds(&s), vec![AnomalyKind::Replacement]);
}

#[test]
fn device_reset_counts_nothing_and_resumes() {
    // 5 000 → 3 is no rollover (5 000 is far from 100 000 000): nothing counted.
    // 3 → 4 afterwards: 1 × 80 = 80 kWh.
    let s = run(
        &spec(),
        &[r(T0, 5_000.0), r(T0 + Q, 3.0), r(T0 + 2 * Q, 4.0)],
    );
    assert_eq!(bucket_micro(&s, T0), 0);
    assert_eq!(bucket_micro(&s, T0 + Q), 80_000_000);
    assert_eq!(s.items[&(T0 + Q)].1, Status::Reset);
    assert_eq!(kinds(&s), vec![AnomalyKind::CounterReset]);
    // The reset's own span is not covered: consumption unknown → missing.
    assert!(!s.buckets.contains_key(&T0));
}

#[test]
fn spike_is_quarantined_and_next_reading_pairs_with_the_last_good_one() {
    // 1000 → 1100 in 15 min = 8 000 kWh > 500: quarantined.
    // 1001 at 30 min pairs with 1000: 80 kWh spread 40 / 40 over two buckets.
    let s = run(
        &spec(),
        &[r(T0, 1000.0), r(T0 + Q, 1100.0), r(T0 + 2 * Q, 1001.0)],
    );
    assert_eq!(s.items[&(T0 + Q)].1, Status::Spike);
    assert_eq!(bucket_micro(&s, T0), 40_000_000);
    assert_eq!(bucket_micro(&s, T0 + Q), 40_000_000);
    assert_eq!(kinds(&s), vec![AnomalyKind::ImplausibleDelta]);
}

#[test]
fn a_level_that_persists_is_rebased_without_counting_the_jump() {
    // 1000 → 1100 quarantined; 1100.5 agrees with 1100 (0.5 × 80 = 40 kWh ≤ 500):
    // re-based on the new level; only the 40 kWh after it count.
    let s = run(
        &spec(),
        &[r(T0, 1000.0), r(T0 + Q, 1100.0), r(T0 + 2 * Q, 1100.5)],
    );
    assert_eq!(s.items[&(T0 + 2 * Q)].1, Status::Jump);
    assert_eq!(s.total_micro(), 40_000_000);
    assert_eq!(bucket_micro(&s, T0 + Q), 40_000_000);
    assert_eq!(
        kinds(&s),
        vec![AnomalyKind::ImplausibleDelta, AnomalyKind::CounterJump]
    );
}

#[test]
fn sentinels_and_non_finite_values_are_rejected_never_zero() {
    // Each invalid value is rejected; 1000 → 1001 still counts 80 kWh.
    for bad in [
        65535.0,
        32767.0,
        2_147_483_648.0,
        4_294_967_295.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1.0,
    ] {
        let s = run(
            &spec(),
            &[r(T0, 1000.0), r(T0 + Q, bad), r(T0 + 2 * Q, 1001.0)],
        );
        assert_eq!(s.items[&(T0 + Q)].1, Status::Invalid, "{bad}");
        assert_eq!(s.total_micro(), 80_000_000, "{bad}");
        assert_eq!(kinds(&s), vec![AnomalyKind::InvalidValue], "{bad}");
    }
    // A sentinel as the very first value does not become a zero baseline.
    // (This spec declares the register patterns, as a site may for a
    // collector that forwards them as numbers.)
    let s = run(
        &spec(),
        &[r(T0, 65535.0), r(T0 + Q, 1000.0), r(T0 + 2 * Q, 1001.0)],
    );
    assert_eq!(s.total_micro(), 80_000_000);
}

#[test]
fn long_gap_is_estimated_and_flags_a_silent_meter() {
    // 1 hour gap (> 2 intervals → estimated; > 3 intervals → meter_silent).
    // 4 × 80 = 320 kWh ≤ 2000 kW × 1 h; 80 kWh per bucket.
    let s = run(&spec(), &[r(T0, 1000.0), r(T0 + 4 * Q, 1004.0)]);
    for k in 0..4 {
        let b = s.buckets[&(T0 + k * Q)];
        assert_eq!(
            (b.micro, b.quality()),
            (80_000_000, meterflow_model::Quality::Estimated)
        );
    }
    assert_eq!(kinds(&s), vec![AnomalyKind::MeterSilent]);
    // 30 minutes (= 2 intervals) is still measured.
    let s = run(&spec(), &[r(T0, 1000.0), r(T0 + 2 * Q, 1002.0)]);
    assert!(
        s.buckets
            .values()
            .all(|b| b.quality() == meterflow_model::Quality::Measured)
    );
}

#[test]
fn fractional_multiplier_and_scale() {
    // Raw counts × 0.01 = register; CT ratio 2.5: 250 counts = 2.5 units × 2.5 = 6.25.
    let spec = CounterSpec {
        multiplier: 2.5,
        scale: 0.01,
        ..spec()
    };
    let s = run(&spec, &[r(T0, 100_000.0), r(T0 + Q, 100_250.0)]);
    assert_eq!(s.total_micro(), 6_250_000);
}

#[test]
fn f64_register_keeps_resolution_past_f32_limit() {
    // 50 000 000.01 → 50 000 000.02 is 0.01 (f32 would see no change past 16.7 M).
    let spec = CounterSpec {
        multiplier: 1.0,
        ..spec()
    };
    let s = run(&spec, &[r(T0, 50_000_000.01), r(T0 + Q, 50_000_000.02)]);
    assert_eq!(s.total_micro(), 10_000);
}

/// A decimal value is never a sentinel by default: a water meter standing at
/// 32 767.00 m³ is read, and so is 65 535.
#[test]
fn without_declared_sentinels_a_decimal_value_is_a_reading() {
    let plain = CounterSpec {
        sentinels: meterflow_model::config::default_sentinels(),
        max_rate_per_h: None,
        ..spec()
    };
    // 32 766.50 → 32 767.00 → 32 768.25 m³ (no multiplier from the spec
    // above: its multiplier applies alike): every step counts.
    let s = run(
        &plain,
        &[
            r(T0, 32_766.5),
            r(T0 + Q, 32_767.0),
            r(T0 + 2 * Q, 32_768.25),
        ],
    );
    assert!(kinds(&s).is_empty(), "{:?}", kinds(&s));
    let with = run(
        &CounterSpec {
            sentinels: meterflow_model::config::REGISTER_SENTINELS.to_vec(),
            max_rate_per_h: None,
            ..spec()
        },
        &[
            r(T0, 32_766.5),
            r(T0 + Q, 32_767.0),
            r(T0 + 2 * Q, 32_768.25),
        ],
    );
    assert_eq!(kinds(&with), vec![AnomalyKind::InvalidValue]);
    // Without the sentinel the total is (32 768.25 − 32 766.5) × multiplier;
    // with it, the same (the rejected middle reading leaves the pair intact).
    assert_eq!(s.total_micro(), with.total_micro());
    assert!(s.total_micro() > 0);
}

/// A register's last digit is not a rate: a 0.01 GJ heat register read every
/// 5 s with a 5 GJ/h limit. 5 s at 5 GJ/h allow 0.006 94 GJ; one step of
/// 0.01 GJ is allowed on top (limit 0.016 94), two steps (0.02) are not.
#[test]
fn one_register_step_is_within_the_rate_limit() {
    let heat = CounterSpec {
        multiplier: 1.0,
        max_rate_per_h: Some(5.0),
        interval_ms: 5_000,
        resolution: 0.01,
        ..spec()
    };
    let s = run(&heat, &[r(T0, 7051.00), r(T0 + 5_000, 7051.01)]);
    assert_eq!(s.items[&(T0 + 5_000)].1, Status::Good);
    assert_eq!(s.total_micro(), 10_000);
    let s = run(&heat, &[r(T0, 7051.00), r(T0 + 5_000, 7051.02)]);
    assert_ne!(s.items[&(T0 + 5_000)].1, Status::Good, "two steps in 5 s");
    // Without the resolution the single step is implausible.
    let blind = CounterSpec {
        resolution: 0.0,
        ..heat
    };
    let s = run(&blind, &[r(T0, 7051.00), r(T0 + 5_000, 7051.01)]);
    assert_ne!(s.items[&(T0 + 5_000)].1, Status::Good);
}

/// A silence is told in the site's zone: 4 h without a reading after
/// 2025-01-01T00:00Z, which is 08:00 in Shanghai.
#[test]
fn a_silence_is_told_in_the_sites_zone() {
    let spec = CounterSpec {
        tz: chrono_tz::Asia::Shanghai,
        ..spec()
    };
    let s = run(&spec, &[r(T0, 1000.0), r(T0 + 16 * Q, 1001.0)]);
    let detail = s
        .anomalies
        .values()
        .flatten()
        .find(|a| a.kind == AnomalyKind::MeterSilent)
        .map(|a| a.detail.clone())
        .unwrap_or_default();
    assert_eq!(
        detail,
        "no reading for 4 h after 2025-01-01 08:00:00 +08:00 (more than 3 intervals)"
    );
}
