//! `meterflow generate`: simulated readings of a site as CSV.

use std::io::BufWriter;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use meterflow_sim::site::write_csv;

/// `meterflow generate` entry point.
pub(crate) fn run(
    config: &Path,
    from: &str,
    days: u32,
    step_min: u32,
    faults: bool,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let site = match super::load_site(config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let from_ms = match meterflow_core::timeparse::parse_time_arg(from, site.tz) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --from: {e}");
            return Ok(ExitCode::from(crate::EXIT_CONFIG));
        }
    };
    if step_min == 0 || days == 0 {
        eprintln!("error: --days and --step-min must be at least 1");
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    }
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let rows = write_csv(
        &site,
        from_ms,
        days,
        step_min,
        faults,
        &mut BufWriter::new(file),
    )?;
    eprintln!("wrote {rows} rows to {}", out.display());
    Ok(ExitCode::SUCCESS)
}
