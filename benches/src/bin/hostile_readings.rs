//! Hostile readings against clean ones (issue 24): 10 000 readings of one
//! meter through the store writer, in batches of 500, either one a minute
//! in order (clean) or at random times across the whole i64 range
//! (hostile). Each mode runs in a child process of its own so that its peak
//! RSS is its own. Prints time per reading and peak RSS for both, and the
//! ratios. A third mode (`early`) stores the clean readings, then one reading
//! on 2000-01-02 (inside the default plausible window, 25 years before the
//! others): its time alone, its peak RSS and the store's size, against the
//! clean run (the gap is kept as one span, not 880 000 buckets).
//!
//! `cargo run --release -p meterflow-benches --bin hostile-readings`

use std::process::Command;
use std::time::Instant;

use anyhow::Context as _;

const N: u32 = 10_000;

fn run(mode: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let src = format!(
        "[site]\nname = \"h\"\n[store]\npath = \"{}/h.db\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n[[meter]]\nid = \"m1\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\nmax_rate = 100000\n",
        dir.path().display()
    );
    let site = meterflow_model::Site::parse(&src, std::path::Path::new("h.toml"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut w = meterflow_store::Writer::open(&site)?;
    // 2025-03-01T00:00Z; the clean series starts a week before.
    let now = 1_740_787_200_000_i64;
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut readings = Vec::with_capacity(N as usize);
    for i in 0..N {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ts = match mode {
            "clean" | "early" => now - 7 * 86_400_000 + i64::from(i) * 60_000,
            _ => x as i64,
        };
        readings.push(meterflow_model::Reading {
            meter: "m1".into(),
            quantity: "energy_import".into(),
            ts_ms: ts,
            value: 1000.0 + f64::from(i),
            recv_ms: now,
            time_source: meterflow_model::TimeSource::Device,
        });
    }
    if mode == "early" {
        for chunk in readings.chunks(500) {
            w.write_batch(chunk, "bench")?;
        }
        // 2000-01-02T00:00Z, value 0: 25 years before the next reading.
        let early = meterflow_model::Reading {
            ts_ms: 946_771_200_000,
            value: 0.0,
            ..readings[0].clone()
        };
        let t = Instant::now();
        let (v, _) = w.write_batch(&[early], "bench")?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        anyhow::ensure!(matches!(v[0], meterflow_store::Verdict::Stored(_)), "{v:?}");
        drop(w);
        let bytes = std::fs::metadata(dir.path().join("h.db"))?.len()
            + std::fs::metadata(dir.path().join("h.db-wal")).map_or(0, |m| m.len());
        let rss = meterflow_benches::peak_rss_kib().unwrap_or(0);
        println!("early {us:.0} {rss} {bytes}");
        return Ok(());
    }
    let t = Instant::now();
    let mut refused = 0;
    for chunk in readings.chunks(500) {
        let (v, _) = w.write_batch(chunk, "bench")?;
        refused += v
            .iter()
            .filter(|v| !matches!(v, meterflow_store::Verdict::Stored(_)))
            .count();
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    let rss = meterflow_benches::peak_rss_kib().unwrap_or(0);
    println!("{mode} {per:.2} {rss} {refused}");
    Ok(())
}

fn child(mode: &str) -> anyhow::Result<(f64, u64, u64)> {
    let exe = std::env::current_exe()?;
    let o = Command::new(exe).arg(mode).output()?;
    anyhow::ensure!(
        o.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let f: Vec<&str> = out.split_whitespace().collect();
    Ok((
        f.get(1).context("time")?.parse()?,
        f.get(2).context("rss")?.parse()?,
        f.get(3).context("refused")?.parse()?,
    ))
}

fn main() -> anyhow::Result<()> {
    if let Some(mode) = std::env::args().nth(1) {
        return run(&mode);
    }
    let (ct, cr, cx) = child("clean")?;
    let (ht, hr, hx) = child("hostile")?;
    println!("{N} readings, batches of 500, one meter");
    println!(
        "clean:   {ct:8.2} µs/reading  peak RSS {:6.1} MiB  refused {cx}",
        cr as f64 / 1024.0
    );
    println!(
        "hostile: {ht:8.2} µs/reading  peak RSS {:6.1} MiB  refused {hx}",
        hr as f64 / 1024.0
    );
    println!(
        "hostile / clean: time {:.2}x, RSS {:+.1} MiB",
        ht / ct.max(1e-9),
        (hr as f64 - cr as f64) / 1024.0
    );
    let (et, er, bytes) = child("early")?;
    println!(
        "early:   one reading 25 years before the others: {:.1} ms, peak RSS {:6.1} MiB ({:+.1} MiB against clean), store {:.1} MiB; against one clean reading {:.0}x",
        et / 1000.0,
        er as f64 / 1024.0,
        (er as f64 - cr as f64) / 1024.0,
        bytes as f64 / 1048576.0,
        et / ct.max(1e-9)
    );
    Ok(())
}
