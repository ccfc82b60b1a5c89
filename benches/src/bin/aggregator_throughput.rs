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

use std::fmt::Write as _;
use std::time::Instant;

use meterflow_core::aggregate::Aggregator;
use meterflow_core::buckets::BUCKET_MS;
use meterflow_core::memlog::BucketTotals;
use meterflow_model::{Reading, Site, TimeSource};

const METERS: usize = 5_000;
const AGENCIES: usize = 200;
const BUILDINGS: usize = 20;
const ZONES: usize = 100;

/// The site: 20 buildings × 5 zones; each agency has a space in a zone (two
/// agencies per zone); from 2025-07-01 every tenth agency moves to the next
/// zone (share timelines with two steps). Meters: 100 building mains, 1 900
/// zone meters (area-shared, parent = building main, sub-items A1/B2/C1),
/// 2 000 direct agency meters, 1 000 water meters on zones.
fn site_toml(dir: &std::path::Path) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "[site]\nname = \"bench\"\n\n[store]\npath = \"{}\"\n",
        dir.join("store.db").display()
    );
    for b in 0..BUILDINGS {
        let _ = writeln!(s, "[[building]]\nid = \"b{b}\"\ntotal_area_m2 = 10000\n");
    }
    for z in 0..ZONES {
        let _ = writeln!(
            s,
            "[[zone]]\nid = \"z{z}\"\nbuilding = \"b{}\"\narea_m2 = 2000\n",
            z % BUILDINGS
        );
    }
    for a in 0..AGENCIES {
        let z = a % ZONES;
        let _ = writeln!(s, "[[agency]]\nid = \"a{a}\"\nname = \"agency {a}\"\n");
        let _ = writeln!(
            s,
            "[[headcount]]\nagency = \"a{a}\"\nfrom = 2025-01-01\npersons = {}\n",
            20 + a % 50
        );
        if a % 10 == 0 {
            let _ = writeln!(
                s,
                "[[space]]\nagency = \"a{a}\"\nzone = \"z{z}\"\nfrom = 2025-01-01\nto = 2025-06-30\narea_m2 = {}\n",
                300 + a
            );
            let _ = writeln!(
                s,
                "[[space]]\nagency = \"a{a}\"\nzone = \"z{}\"\nfrom = 2025-07-01\narea_m2 = {}\n",
                (z + 1) % ZONES,
                300 + a
            );
        } else {
            let _ = writeln!(
                s,
                "[[space]]\nagency = \"a{a}\"\nzone = \"z{z}\"\nfrom = 2025-01-01\narea_m2 = {}\n",
                300 + a
            );
        }
    }
    for m in 0..METERS {
        let _ = write!(s, "[[meter]]\nid = \"m{m}\"\ninterval_s = 900\n");
        match m {
            0..100 => {
                let _ = writeln!(
                    s,
                    "kind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b{}\" }}\n",
                    m % BUILDINGS
                );
            }
            100..2000 => {
                let z = m % ZONES;
                let sub = ["A1", "B2", "C1"][m % 3];
                let _ = writeln!(
                    s,
                    "kind = \"electricity\"\nunit = \"kWh\"\nsubitem = \"{sub}\"\nparent = \"m{}\"\nserves = {{ zone = \"z{z}\" }}\n",
                    z % BUILDINGS
                );
            }
            2000..4000 => {
                let _ = writeln!(
                    s,
                    "kind = \"electricity\"\nunit = \"kWh\"\nserves = {{ agency = \"a{}\" }}\n",
                    m % AGENCIES
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "kind = \"water\"\nunit = \"m3\"\nserves = {{ zone = \"z{}\" }}\n",
                    m % ZONES
                );
            }
        }
    }
    s
}

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
    let month =
        meterflow::kpis::period_of(2025, Some(7)).ok_or_else(|| anyhow::anyhow!("period"))?;
    let before = meterflow::kpis::agency_kpis(&site, &reader, "a7", month)?;
    let mut lat = Vec::new();
    for q in 96..106i64 {
        let batch: Vec<Reading> = (0..METERS)
            .map(|m| reading(m, day0 + q * BUCKET_MS, q as f64 * 2.0))
            .collect();
        let t = Instant::now();
        w.write_batch(&batch, "bench")?;
        let commit = t.elapsed();
        let k = meterflow::kpis::agency_kpis(&site, &reader, "a7", month)?;
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
