//! A site's meters as simulated devices: the bundled demo site, the
//! simulator bank serving a site's Modbus bus, and simulated readings of a
//! site written as an import CSV (with optional deliberate faults).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use chrono::TimeZone;
use meterflow_model::Site;

use crate::server::{Bank, Device};
use crate::{SimMeter, align_to_replacements, generate};

/// The bundled demo site.
pub const DEMO_SITE: &str = include_str!("../../../examples/demo/site.toml");

/// A simulator bank for every meter of `site` with a Modbus source on `bus`.
pub fn bank_for(site: &Site, bus: &str) -> Bank {
    bank_with_leaks(site, bus, &HashMap::new())
}

/// As [`bank_for`], with night-time leaks (m³/h) on the named water meters.
pub fn bank_with_leaks(site: &Site, bus: &str, leaks: &HashMap<String, f64>) -> Bank {
    bank_of(site, bus, leaks, &HashMap::new())
}

/// As [`bank_for`], each meter carrying on from its last stored reading
/// `(ts_ms, value)` (a demo started again against its kept store).
pub fn bank_resuming(site: &Site, bus: &str, last: &HashMap<String, (i64, f64)>) -> Bank {
    bank_of(site, bus, &HashMap::new(), last)
}

/// Move a simulated counter on from its last stored value to `now_ms`, as if
/// the meter had kept counting while nothing read it.
pub fn resume(m: &mut SimMeter, last: Option<&(i64, f64)>, tz: chrono_tz::Tz, now_ms: i64) {
    if let Some(&(ts, value)) = last {
        m.start_register = value + crate::sum_quarters(m, tz, ts, now_ms.max(ts)) / m.multiplier;
    }
}

fn bank_of(
    site: &Site,
    bus: &str,
    leaks: &HashMap<String, f64>,
    last: &HashMap<String, (i64, f64)>,
) -> Bank {
    let now = meterflow_model::clock::now_ms();
    let mut meters: Vec<SimMeter> = site.meters.iter().map(SimMeter::from_meter).collect();
    for m in &mut meters {
        if let Some(l) = leaks.get(&m.id) {
            m.leak_per_h = *l;
        }
    }
    align_to_replacements(&mut meters, site, now);
    for m in &mut meters {
        resume(m, last.get(&m.id), site.tz, now);
    }
    let mut devices = HashMap::new();
    for (m, sim) in site.meters.iter().zip(meters) {
        let Some(src) = m.modbus.as_ref().filter(|s| s.bus == bus) else {
            continue;
        };
        let Some(profile) = site.profile(&src.profile) else {
            continue;
        };
        devices.insert(
            src.unit,
            Arc::new(Device::new(sim, Arc::new(profile.clone()), now)),
        );
    }
    Bank {
        devices: Arc::new(devices),
        tz: site.tz,
    }
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
                value = -1.0; // a negative counter: rejected (invalid_value)
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
