//! Export time: the annual assessment (`meterflow export assessment`) of a
//! stored year, in each format, with the process's peak memory.
//!
//! `cargo run --release -p meterflow-benches --bin export-time -- SITE.toml YEAR`
//!
//! The fixture is any site with a year in its store, e.g. the api-latency
//! benchmark's (1 000 meters, 20 agencies, 100 buildings):
//! `cargo run --release -p meterflow-benches --bin api-latency -- 1000 365 1 ~/.cache/api-bench-year`,
//! then `… --bin export-time -- ~/.cache/api-bench-year/site.toml 2025`.

use std::time::Instant;

use meterflow_export::{Format, Profile};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let config = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: export-time SITE.toml YEAR"))?;
    let year: i32 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(2025);
    let site = meterflow_model::Site::load(std::path::Path::new(config))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "site: {} meters, {} agencies, {} buildings; year {year}",
        site.meters.len(),
        site.agencies.len(),
        site.buildings.len()
    );
    let dir = tempfile::tempdir()?;
    for (name, format) in [
        ("csv", Format::Csv),
        ("parquet", Format::Parquet),
        ("xlsx", Format::Xlsx),
    ] {
        let out = dir.path().join(format!("out-{name}"));
        let out = if format == Format::Xlsx {
            out.with_extension("xlsx")
        } else {
            out
        };
        let t = Instant::now();
        let files = meterflow::export::export(
            &site,
            &meterflow::export::Request {
                year,
                agency: None,
                profile: Profile::National,
            },
            format,
            &out,
            &|_| {},
        )?;
        let bytes: u64 = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        println!(
            "{name}: {:.2} s, {} file(s), {:.0} KiB",
            t.elapsed().as_secs_f64(),
            files.len(),
            bytes as f64 / 1024.0
        );
    }
    if let Some(kib) = meterflow_benches::peak_rss_kib() {
        println!("peak RSS: {:.0} MiB", kib as f64 / 1024.0);
    }
    Ok(())
}
