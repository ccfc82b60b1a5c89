//! `meterflow generate`: simulated readings of a site as CSV.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::TimeZone;
use meterflow_model::Site;
use meterflow_sim::{SimMeter, align_to_replacements, generate};

/// `meterflow generate` entry point.
pub fn run(
    config: &Path,
    from: &str,
    days: u32,
    step_min: u32,
    faults: bool,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let site = match crate::cli::load_site(config) {
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

/// Write the CSV; returns the number of data rows.
pub fn write_csv(
    site: &Site,
    from_ms: i64,
    days: u32,
    step_min: u32,
    faults: bool,
    w: &mut impl Write,
) -> anyhow::Result<u64> {
    let mut meters: Vec<SimMeter> = site.meters.iter().map(SimMeter::from_meter).collect();
    align_to_replacements(&mut meters, site, from_ms);
    let step = i64::from(step_min) * 60_000;
    let to_ms = from_ms + i64::from(days) * 86_400_000;
    writeln!(w, "meter_id,timestamp,value")?;
    let mut rows = 0u64;
    // Fault positions: the 30th/50th/70th step of the first electricity and water meters.
    let elec = site
        .meters
        .iter()
        .find(|m| m.kind == meterflow_model::EnergyClass::Electricity)
        .map(|m| m.id.clone());
    let water = site
        .meters
        .iter()
        .find(|m| m.kind == meterflow_model::EnergyClass::Water)
        .map(|m| m.id.clone());
    let mut reset_offset: f64 = 0.0;
    for r in generate(&meters, &site.replacements, site.tz, from_ms, to_ms, step) {
        let k = (r.ts_ms - from_ms) / step;
        let mut value = r.value;
        if faults && Some(&r.meter) == elec.as_ref() {
            if k == 30 {
                value += 100_000.0; // spike: quarantined
            }
            if k == 50 {
                value = 65535.0; // sentinel: rejected
            }
        }
        if faults && Some(&r.meter) == water.as_ref() && k >= 70 {
            if k == 70 {
                reset_offset = r.value; // the water meter restarts from 0
            }
            value = ((r.value - reset_offset) * 100.0).round() / 100.0;
        }
        let ts = site
            .tz
            .timestamp_millis_opt(r.ts_ms)
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        writeln!(w, "{},{},{}", r.meter, ts, value)?;
        rows += 1;
        if faults && k == 10 && Some(&r.meter) == elec.as_ref() {
            writeln!(w, "no-such-meter,{ts},12.5")?;
            writeln!(w, "{},2025-02-30 08:00,12.5", r.meter)?;
            writeln!(w, "{},{ts},twelve", r.meter)?;
            rows += 3;
        }
    }
    w.flush()?;
    Ok(rows)
}
