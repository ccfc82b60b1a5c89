//! Streaming aggregator load: a site of 5 000 meters and 200 agencies.
//!
//! 1. Throughput of the pure aggregator on one thread: interval changes per
//!    second through `Aggregator::apply` + `drain` (all five grains).
//! 2. Memory of the per-meter state (hierarchy and share timelines).
//! 3. Latency from a reading's arrival to its agency's updated KPI: one
//!    batch of 5 000 readings (one per meter) committed to the store, then
//!    the agency's month KPIs read back.
//!
//! `cargo run --release -p meterflow-benches --bin aggregator-throughput [-- DAYS]`

use std::time::Instant;

use meterflow_core::aggregate::Aggregator;
use meterflow_core::buckets::BUCKET_MS;
use meterflow_core::memlog::BucketTotals;
use meterflow_model::{Reading, Site, TimeSource};

use meterflow_benches::assessment_site::{METERS, site_toml};

fn main() -> anyhow::Result<()> {
    let days: i64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("site.toml");
    std::fs::write(&path, site_toml(dir.path()))?;
    let site = Site::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;

    // 1. Throughput: every meter's buckets over `days` days around the 1 July move.
    let t0 = Instant::now();
    let mut agg = Aggregator::new(&site);
    let build = t0.elapsed();
    // 2025-06-29 00:00 +08:00.
    let start = 1_751_126_400_000i64;
    let buckets = days * 96;
    let mut n = 0u64;
    let mut rows = 0usize;
    let empty = BucketTotals::default();
    let t = Instant::now();
    let mut in_drain = std::time::Duration::ZERO;
    for b in 0..buckets {
        let bucket = start + b * BUCKET_MS;
        for m in 0..METERS as u32 {
            let new = BucketTotals {
                micro: 1_000 + i64::from(m % 977) * 13 + b,
                measured_ms: BUCKET_MS,
                estimated_ms: 0,
            };
            agg.apply(m, bucket, &empty, &new);
            n += 1;
        }
        // Drain once per bucket of all meters (as the writer does per commit).
        let d = Instant::now();
        rows += agg.drain().len();
        in_drain += d.elapsed();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "aggregator: {n} interval changes in {secs:.3} s = {:.2} M intervals/s on one thread ({:.0} % of it expanding to grains in drain; {rows} rollup rows; hierarchy built in {:.1} ms)",
        n as f64 / secs / 1e6,
        in_drain.as_secs_f64() / secs * 100.0,
        build.as_secs_f64() * 1e3
    );
    // Late data: the same changes again as corrections (old → new).
    let t = Instant::now();
    let mut late = 0u64;
    for b in (0..buckets).step_by(7) {
        let bucket = start + b * BUCKET_MS;
        for m in 0..METERS as u32 {
            let old = BucketTotals {
                micro: 1_000 + i64::from(m % 977) * 13 + b,
                measured_ms: BUCKET_MS,
                estimated_ms: 0,
            };
            let new = BucketTotals {
                micro: old.micro + 5,
                ..old
            };
            agg.apply(m, bucket, &old, &new);
            late += 1;
        }
    }
    let _ = agg.drain();
    let lsecs = t.elapsed().as_secs_f64();
    println!(
        "late corrections: {late} in {lsecs:.3} s = {:.2} M/s",
        late as f64 / lsecs / 1e6
    );
    println!(
        "state: {} scopes; {:.0} bytes per meter of hierarchy and share timelines",
        agg.scopes().len(),
        agg.state_bytes() as f64 / METERS as f64
    );

    // 3. Latency reading → agency KPI, through the store. Seed a day of readings, then
    // time one more batch (every meter's next reading) plus the agency's month KPIs.
    let mut w = meterflow_store::Writer::open(&site)?;
    let day0 = 1_751_299_200_000i64; // 2025-07-01 00:00 +08:00
    let reading = |m: usize, ts: i64, v: f64| Reading {
        meter: format!("m{m}"),
        quantity: if m >= 4000 {
            "volume".into()
        } else {
            "energy_import".into()
        },
        ts_ms: ts,
        value: v,
        recv_ms: ts,
        time_source: TimeSource::Device,
    };
    let t = Instant::now();
    for q in 0..96i64 {
        let batch: Vec<Reading> = (0..METERS)
            .map(|m| reading(m, day0 + q * BUCKET_MS, q as f64 * 2.0))
            .collect();
        w.write_batch(&batch, "bench")?;
    }
    println!(
        "seeded 96 × {METERS} readings in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let reader = meterflow_store::Reader::open(&site.store_path())?;
    let month = meterflow_kpi::period_of(2025, Some(7)).ok_or_else(|| anyhow::anyhow!("period"))?;
    let before = meterflow_kpi::agency_kpis(&site, &reader, "a7", month)?;
    let mut lat = Vec::new();
    for q in 96..106i64 {
        let batch: Vec<Reading> = (0..METERS)
            .map(|m| reading(m, day0 + q * BUCKET_MS, q as f64 * 2.0))
            .collect();
        let t = Instant::now();
        w.write_batch(&batch, "bench")?;
        let commit = t.elapsed();
        let k = meterflow_kpi::agency_kpis(&site, &reader, "a7", month)?;
        lat.push((commit.as_secs_f64() * 1e3, t.elapsed().as_secs_f64() * 1e3));
        anyhow::ensure!(
            k.carriers.electricity_kwh > before.carriers.electricity_kwh,
            "KPI did not move"
        );
    }
    lat.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mid = lat[lat.len() / 2];
    println!(
        "reading → agency KPI: median {:.1} ms ({:.1} ms commit of {METERS} readings with rollups + {:.1} ms KPI read), worst {:.1} ms",
        mid.1,
        mid.0,
        mid.1 - mid.0,
        lat.last().map_or(0.0, |l| l.1)
    );
    Ok(())
}
