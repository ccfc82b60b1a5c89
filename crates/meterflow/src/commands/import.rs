//! `meterflow import`: stream files into the store and print what happened
//! to every line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use meterflow_import::{Format, Precision};
use meterflow_model::Site;
use meterflow_runtime::import::{FileSummary, Options, import_files};

/// `meterflow import` entry point.
pub(crate) fn run(
    config: &Path,
    data: &[PathBuf],
    format: Option<Format>,
    precision: &str,
) -> anyhow::Result<ExitCode> {
    let site = match super::load_site(config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let Some(precision) = Precision::parse(precision) else {
        eprintln!("error: --precision must be one of s, ms, us, ns (got `{precision}`)");
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    };
    let summaries = import_files(
        &site,
        data,
        Options {
            format,
            precision,
            progress: true,
        },
    )?;
    for s in &summaries {
        print_summary(s, &site);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &FileSummary, site: &Site) {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    println!(
        "{}: {} values in {:.1} s ({:.0} values/s)",
        s.path.display(),
        s.values,
        secs,
        s.values as f64 / secs
    );
    println!(
        "  accepted  {:>10}  (new {}, already stored {})",
        s.stored + s.duplicates,
        s.stored,
        s.duplicates
    );
    println!("  rejected  {:>10}", s.rejected_total());
    for (reason, n) in &s.rejected {
        let lines: Vec<String> = s
            .rejected_lines
            .iter()
            .filter(|e| e.reason == *reason)
            .take(10)
            .map(|e| e.line.to_string())
            .collect();
        let more = if (*n as usize) > lines.len() {
            ", …"
        } else {
            ""
        };
        println!(
            "    {:<22} {:>8}  line {}{more}",
            reason.as_str(),
            n,
            lines.join(", ")
        );
    }
    if !s.anomalies.is_empty() {
        println!("  anomalies");
        for (kind, n) in &s.anomalies {
            println!("    {:<22} {:>8}", kind.as_str(), n);
        }
    }
    for e in s.rejected_lines.iter().take(20) {
        println!("  {e}");
    }
    if s.rejected_total() > 0 {
        println!(
            "  (every rejected line is kept in the dead_letters table of {})",
            site.store_path().display()
        );
    }
}
