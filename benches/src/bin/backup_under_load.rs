//! Backup under load: the time and size of an online backup of the
//! 3.5 M-reading store of `import-throughput` (100 meters × 1 year of
//! 15-minute readings with every derived table), and the store's commit
//! rate — what an MQTT or push drain runs at, the writer being its
//! bottleneck — with and without backups running beside it, in one run.
//!
//! `cargo run --release -p meterflow-benches --bin backup-under-load -- [METERS] [DAYS] [READINGS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use meterflow_model::{Reading, Site, TimeSource};

/// Commit `n` readings (every meter, 15-minute steps after the history) in
/// batches of 5 000, as the drain's group commits do; readings per second.
/// Each meter continues from its last stored reading, 0.1 a step.
type Last = (String, String, i64, f64);

fn commit_rate(site: &Site, meters: &[Last], step: i64, n: usize) -> anyhow::Result<f64> {
    let mut w = meterflow_store::Writer::open(site)?;
    let t = Instant::now();
    let mut batch = Vec::with_capacity(5_000);
    let mut k = 0usize;
    while k < n {
        let (meter, quantity, last_ms, last) = &meters[k % meters.len()];
        let i = step + (k / meters.len()) as i64 + 1;
        batch.push(Reading {
            meter: meter.clone(),
            quantity: quantity.clone(),
            ts_ms: last_ms + i * 900_000,
            value: last + i as f64 * 0.1,
            recv_ms: meterflow_model::clock::now_ms(),
            time_source: TimeSource::Device,
        });
        k += 1;
        if batch.len() == 5_000 || k == n {
            w.write_batch(&batch, "bench")?;
            batch.clear();
        }
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let meters_n: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(100);
    let days: u32 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(365);
    let n: usize = args
        .get(3)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(500_000);
    let dir = tempfile::tempdir()?;
    let config = meterflow_benches::synthetic_site(dir.path(), meters_n, 50_000)?;
    let site = Site::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let csv = dir.path().join("year.csv");
    let t = Instant::now();
    let rows = meterflow_benches::year_csv(&site, &csv, days)?;
    meterflow_benches::import_csv(&site, &csv)?;
    std::fs::remove_file(&csv)?;
    let store = site.store_path();
    let size = std::fs::metadata(&store)?.len();
    println!(
        "fixture: {rows} readings of {meters_n} meters, store {:.0} MiB, built in {:.1} s",
        size as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );

    // The backup alone.
    let out = dir.path().join("alone.db.gz");
    let t = Instant::now();
    let m = meterflow_store::backup::backup(
        &store,
        &out,
        &site.site.name,
        meterflow_model::clock::now_ms(),
    )?;
    let alone = t.elapsed().as_secs_f64();
    println!(
        "backup: {alone:.1} s for {:.0} MiB of database, {:.0} MiB compressed ({:.1} % of the store)",
        m.db_bytes as f64 / 1048576.0,
        m.file_bytes as f64 / 1048576.0,
        m.file_bytes as f64 / m.db_bytes as f64 * 100.0
    );

    // Commit rate without, then with backups running the whole time.
    let reader = meterflow_store::Reader::open(&store)?;
    let mut meters: Vec<Last> = Vec::new();
    for m in &site.meters {
        let q = m.counter_quantity();
        if let Some(series) = reader.series_id(&m.id, q)?
            && let Some((ts, v)) = reader.last_value(series)?
        {
            meters.push((m.id.clone(), q.to_string(), ts, v));
        }
    }
    drop(reader);
    anyhow::ensure!(!meters.is_empty(), "no meter in the fixture");
    let base = commit_rate(&site, &meters, 0, n)?;
    let stop = Arc::new(AtomicBool::new(false));
    let backups = {
        let (stop, store, dir, name) = (
            Arc::clone(&stop),
            store.clone(),
            dir.path().to_path_buf(),
            site.site.name.clone(),
        );
        std::thread::spawn(move || {
            let mut taken = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let out = dir.join(format!("during-{taken}.db.gz"));
                if meterflow_store::backup::backup(
                    &store,
                    &out,
                    &name,
                    meterflow_model::clock::now_ms(),
                )
                .is_ok()
                {
                    taken += 1;
                }
                let _ = std::fs::remove_file(&out);
            }
            taken
        })
    };
    let step = (n / meters.len()) as i64 + 1;
    let during = commit_rate(&site, &meters, step, n)?;
    stop.store(true, Ordering::Relaxed);
    let taken = backups
        .join()
        .map_err(|_| anyhow::anyhow!("backup thread"))?;
    println!(
        "commit rate: {base:.0} readings/s alone, {during:.0} readings/s with backups running ({taken} taken meanwhile): ratio {:.2} (target ≥ 0.8)",
        during / base
    );
    Ok(())
}
