//! Property tests of the normaliser (issue: foundation).

use proptest::prelude::*;

use crate::buckets::BUCKET_MS;
use crate::counter::{CounterSpec, Item};
use crate::memlog::MemSeries;

const T0: i64 = 1_735_689_600_000;

fn spec(max_rate: Option<f64>) -> CounterSpec {
    CounterSpec {
        multiplier: 3.0,
        scale: 1.0,
        rollover: Some(1_000_000.0),
        max_rate_per_h: max_rate,
        interval_ms: 900_000,
        sentinels: meterflow_model::config::REGISTER_SENTINELS.to_vec(),
        silent_after: 3,
        resolution: 0.0,
        tz: chrono_tz::UTC,
    }
}

/// Increasing times (gaps 1 s .. 3 h) and non-decreasing values in 0.01 steps.
fn clean_series(max_len: usize) -> impl Strategy<Value = Vec<(i64, f64)>> {
    prop::collection::vec((1_000i64..10_800_000, 0u32..50_000), 2..max_len).prop_map(|steps| {
        let mut t = T0;
        let mut v: u64 = 100_000; // 1000.00 in hundredths
        steps
            .into_iter()
            .map(|(dt, inc)| {
                t += dt;
                v += u64::from(inc);
                (t, v as f64 / 100.0)
            })
            .collect()
    })
}

fn ingest_all(spec: &CounterSpec, items: &[Item]) -> MemSeries {
    let mut s = MemSeries::default();
    for it in items {
        s.ingest(spec, *it);
    }
    s
}

fn readings(series: &[(i64, f64)]) -> Vec<Item> {
    series
        .iter()
        .map(|&(ts_ms, value)| Item::Reading { ts_ms, value })
        .collect()
}

/// A messy series: normal steps, long gaps, spikes, resets, rollovers,
/// sentinels, a replacement.
fn messy_series() -> impl Strategy<Value = Vec<Item>> {
    prop::collection::vec((60_000i64..7_200_000, 0u8..20, 0u32..300), 2..40).prop_map(|steps| {
        let mut t = T0;
        let mut v: f64 = 999_990.0; // near the 1 000 000 rollover
        let mut out = Vec::new();
        for (dt, kind, inc) in steps {
            t += dt;
            if kind == 4 {
                // A gap of up to 3.3 days: long ones are kept as spans.
                t += dt * 40;
            }
            let value = match kind {
                0 => v + 500_000.0, // spike (then back)
                1 => 65535.0,       // sentinel
                2 => {
                    v = f64::from(inc); // device reset
                    v
                }
                3 => {
                    out.push(Item::Replacement {
                        ts_ms: t,
                        old_final: v + 1.0,
                        new_initial: 10.0,
                    });
                    t += 1_000;
                    v = 10.0 + f64::from(inc) / 100.0;
                    v
                }
                _ => {
                    v += f64::from(inc) / 100.0;
                    if v >= 1_000_000.0 {
                        v -= 1_000_000.0; // rollover
                    }
                    v
                }
            };
            out.push(Item::Reading { ts_ms: t, value });
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Without anomalies, the buckets sum to (last − first) × multiplier.
    #[test]
    fn bucket_sum_equals_last_minus_first(series in clean_series(60)) {
        let spec = spec(None);
        let s = ingest_all(&spec, &readings(&series));
        let first = (series[0].1 * 1e6).round() as i64;
        let last = (series[series.len() - 1].1 * 1e6).round() as i64;
        prop_assert_eq!(s.total_micro(), (last - first) * 3);
    }

    /// Any arrival order of the same items yields identical buckets, statuses and anomalies.
    #[test]
    fn arrival_order_does_not_matter(
        (items, shuffled) in messy_series().prop_flat_map(|items| {
            let s = Just(items.clone()).prop_shuffle();
            (Just(items), s)
        }),
        rate in prop_oneof![Just(None), Just(Some(50_000.0))],
    ) {
        let spec = spec(rate);
        let a = ingest_all(&spec, &items);
        let b = ingest_all(&spec, &shuffled);
        prop_assert_eq!(&a.buckets, &b.buckets);
        prop_assert_eq!(&a.items, &b.items);
        prop_assert_eq!(&a.anomalies, &b.anomalies);
        prop_assert_eq!(a.state, b.state);
    }

    /// Splitting a gap with an intermediate reading never creates or loses consumption.
    #[test]
    fn splitting_a_gap_conserves_consumption(
        gap in 1_000i64..(5 * 86_400_000),
        inc in 0u32..1_000_000,
        at in 0.0f64..1.0,
        part in 0.0f64..1.0,
    ) {
        let spec = spec(None);
        let v0 = 1000.0;
        let v1 = v0 + f64::from(inc) / 100.0;
        let tm = T0 + ((gap as f64 * at) as i64).clamp(1, gap - 1).max(1);
        prop_assume!(tm < T0 + gap);
        let vm = ((v0 + (v1 - v0) * part) * 100.0).round() / 100.0;
        let whole = ingest_all(&spec, &readings(&[(T0, v0), (T0 + gap, v1)]));
        let split = ingest_all(&spec, &readings(&[(T0, v0), (tm, vm), (T0 + gap, v1)]));
        prop_assert_eq!(whole.total_micro(), split.total_micro());
        // Splitting can only refine where consumption lands, never the span it covers.
        prop_assert_eq!(whole.buckets.keys().min(), split.buckets.keys().min());
        prop_assert_eq!(whole.buckets.keys().max(), split.buckets.keys().max());
    }

    /// Injecting a spike or a reset never adds consumption.
    #[test]
    fn reset_or_spike_never_adds_consumption(series in clean_series(40), pick in any::<prop::sample::Index>(), reset in any::<bool>()) {
        // Clean steps consume at most 500 units × 3 over at least 1 s: 5.4 M/h,
        // so a 10 M/h limit passes every clean step. A spike of +100 M units is
        // 300 M over at most 3 h = 100 M/h: always above the limit.
        let spec = spec(Some(1.0e7));
        let clean = ingest_all(&spec, &readings(&series)).total_micro();
        let k = 1 + pick.index(series.len() - 1);
        let mut dirty = series.clone();
        if reset {
            // The meter restarts from 0 at k; later values keep their increments.
            let base = series[k].1;
            for item in dirty.iter_mut().skip(k) {
                item.1 = ((item.1 - base) * 100.0).round() / 100.0;
            }
        } else {
            dirty[k].1 += 100_000_000.0;
        }
        let total = ingest_all(&spec, &readings(&dirty)).total_micro();
        prop_assert!(total <= clean, "dirty {} > clean {}", total, clean);
        if !reset && k < series.len() - 1 {
            // An interior spike is simply skipped: the total is unchanged.
            prop_assert_eq!(total, clean);
        }
    }
}

#[test]
fn buckets_are_quarter_hours() {
    assert_eq!(BUCKET_MS, 900_000);
}
