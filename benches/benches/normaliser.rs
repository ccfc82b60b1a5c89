//! Normaliser throughput (pure core, in memory): readings/s in order, and the
//! cost of a late reading that re-derives its neighbourhood.
//!
//! `cargo bench -p meterflow-benches --bench normaliser`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meterflow_core::counter::{CounterSpec, Item};
use meterflow_core::memlog::MemSeries;

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

fn readings(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| Item::Reading {
            ts_ms: 1_735_689_600_000 + i as i64 * 900_000,
            value: 1000.0 + i as f64 * 0.37,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let spec = spec();
    let items = readings(35_040); // one year of 15-minute readings
    let mut g = c.benchmark_group("normaliser");
    g.throughput(Throughput::Elements(items.len() as u64));
    g.bench_function(BenchmarkId::new("in_order_year", items.len()), |b| {
        b.iter(|| {
            let mut s = MemSeries::default();
            for it in &items {
                s.ingest(&spec, *it);
            }
            s.total_micro()
        })
    });
    // Every 10th reading arrives after the next 9 (a gateway flushing late).
    let mut late = items.clone();
    for chunk in late.chunks_mut(10) {
        chunk.rotate_left(1);
    }
    g.bench_function(BenchmarkId::new("one_in_ten_late_year", items.len()), |b| {
        b.iter(|| {
            let mut s = MemSeries::default();
            for it in &late {
                s.ingest(&spec, *it);
            }
            s.total_micro()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
