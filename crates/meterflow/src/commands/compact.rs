//! `meterflow compact`: closed months into compacted blocks on demand
//! (`Writer::compact`, ADR 0024); `run` does the same once a day.

use std::path::Path;
use std::process::ExitCode;

use meterflow_store::Writer;

fn mib(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `meterflow compact --config FILE [--after-days N] [--vacuum]`.
pub(crate) fn run(
    config: &Path,
    after_days: Option<u32>,
    vacuum: bool,
) -> anyhow::Result<ExitCode> {
    let (site, db) = match super::site_with_store(config, "nothing to compact") {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let days = after_days.unwrap_or(site.store.compact_after_days);
    if days == 0 {
        eprintln!("error: compaction is off (after 0 days): give --after-days N, at least 2");
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    }
    let started = std::time::Instant::now();
    let mut writer = Writer::open(&site)?;
    let (used_before, _) = writer.space()?;
    let report = writer.compact(days)?;
    let (used, free) = writer.space()?;
    println!(
        "compacted {} series-months and {} scope-months ({} rows) closed {days} days before their newest reading, in {:.1} s; store in use {} -> {}",
        report.series_months,
        report.scope_months,
        report.rows,
        started.elapsed().as_secs_f64(),
        mib(used_before),
        mib(used),
    );
    if vacuum {
        let t = std::time::Instant::now();
        writer.vacuum()?;
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        println!(
            "vacuumed in {:.1} s: {} is {} on disk",
            t.elapsed().as_secs_f64(),
            db.display(),
            mib(size as i64)
        );
    } else if free > 0 {
        println!(
            "{} free inside the file, reused by new data (--vacuum gives it back to the file system)",
            mib(free)
        );
    }
    Ok(ExitCode::SUCCESS)
}
