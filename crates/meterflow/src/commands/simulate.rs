//! `meterflow simulate`: serve a bus of the site's meters from the simulator.

use std::collections::HashMap;

use anyhow::Context;
use meterflow_model::Site;
use meterflow_sim::server::{Bank, serve};
use meterflow_sim::site::bank_with_leaks;

/// Options of `meterflow simulate`.
#[derive(Debug, Clone, Default)]
pub(crate) struct SimulateOptions {
    /// TCP address to listen on (default 127.0.0.1:5020) unless `rtu` is given.
    pub(crate) listen: Option<String>,
    /// Serve Modbus RTU on this serial device or pty instead.
    pub(crate) rtu: Option<std::path::PathBuf>,
    /// Line speed for `rtu`, Bd.
    pub(crate) baud: u32,
    /// Emulate the line speed (a byte costs 11 bits of time).
    pub(crate) emulate_line: bool,
    /// Bus whose meters to serve (default: the first).
    pub(crate) bus: Option<String>,
    /// Faults: `UNIT=KIND[@SECONDS]`, KIND = silent | late:MS | exception:CODE | sentinel | reset | rollover.
    pub(crate) faults: Vec<String>,
    /// Night-time leaks: `METER=M3_PER_H`.
    pub(crate) leaks: Vec<String>,
}

/// A parsed fault: unit, what, when (s after start).
type FaultPlan = (u8, String, u64);

fn parse_fault(s: &str) -> Result<FaultPlan, String> {
    let (unit, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected UNIT=KIND[@SECONDS]"))?;
    let unit: u8 = unit
        .parse()
        .map_err(|_| format!("`{unit}` is not a unit id"))?;
    let (kind, at) = match rest.split_once('@') {
        Some((k, t)) => (
            k,
            t.trim_end_matches('s')
                .parse::<u64>()
                .map_err(|_| format!("`{t}` is not a number of seconds"))?,
        ),
        None => (rest, 0),
    };
    let ok = matches!(kind, "silent" | "sentinel" | "reset" | "rollover" | "none")
        || kind.starts_with("late:")
        || kind.starts_with("exception:");
    if !ok {
        return Err(format!(
            "unknown fault `{kind}`: silent, late:MS, exception:CODE, sentinel, reset, rollover, none"
        ));
    }
    Ok((unit, kind.to_string(), at))
}

fn apply_fault(bank: &Bank, site: &Site, bus: &str, (unit, kind, _): &FaultPlan) {
    use meterflow_sim::server::Fault;
    let Some(dev) = bank.devices.get(unit) else {
        tracing::warn!(unit, "No simulated device with this unit id.");
        return;
    };
    match kind.as_str() {
        "silent" => dev.set_fault(Fault::Silent),
        "sentinel" => dev.set_fault(Fault::Sentinel),
        "none" => dev.set_fault(Fault::None),
        "reset" => dev.set_counter(0.0),
        "rollover" => {
            // Just below the meter's rollover value, so it wraps within minutes.
            let rollover = site
                .meters
                .iter()
                .find(|m| {
                    m.modbus
                        .as_ref()
                        .is_some_and(|s| s.bus == bus && s.unit == *unit)
                })
                .and_then(|m| m.rollover);
            dev.set_counter(rollover.map_or(99_999_999.0, |r| r - 1.0));
        }
        k if k.starts_with("late:") => dev.set_fault(Fault::Late(
            std::time::Duration::from_millis(k[5..].parse().unwrap_or(1000)),
        )),
        k if k.starts_with("exception:") => {
            dev.set_fault(Fault::Exception(k[10..].parse().unwrap_or(4)))
        }
        _ => {}
    }
    eprintln!("fault applied: unit {unit} {kind}");
}

/// `meterflow simulate`: serve a bus's meters until Ctrl-C.
pub(crate) async fn simulate(
    config: &std::path::Path,
    opts: SimulateOptions,
) -> anyhow::Result<std::process::ExitCode> {
    let site = match super::load_site(config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let bus = match opts
        .bus
        .clone()
        .or_else(|| site.buses.first().map(|b| b.id.clone()))
    {
        Some(b) => b,
        None => {
            eprintln!("error: {} has no [[bus]] to simulate", config.display());
            return Ok(std::process::ExitCode::from(crate::EXIT_CONFIG));
        }
    };
    let cn = meterflow_sim::cn::CnBank::of(&site, &bus);
    if !cn.devices.is_empty() {
        return simulate_cn(cn, &bus, opts).await;
    }
    let mut faults = Vec::new();
    for f in &opts.faults {
        match parse_fault(f) {
            Ok(p) => faults.push(p),
            Err(e) => {
                eprintln!("error: --fault {e}");
                return Ok(std::process::ExitCode::from(crate::EXIT_CONFIG));
            }
        }
    }
    let mut leaks = HashMap::new();
    for l in &opts.leaks {
        match l
            .split_once('=')
            .and_then(|(m, v)| v.parse::<f64>().ok().map(|v| (m.to_string(), v)))
        {
            Some((m, v)) if v >= 0.0 => {
                leaks.insert(m, v);
            }
            _ => {
                eprintln!("error: --leak `{l}`: expected METER=M3_PER_H");
                return Ok(std::process::ExitCode::from(crate::EXIT_CONFIG));
            }
        }
    }
    let bank = bank_with_leaks(&site, &bus, &leaks);
    for f in faults.iter().filter(|f| f.2 == 0) {
        apply_fault(&bank, &site, &bus, f);
    }
    let later: Vec<FaultPlan> = faults.into_iter().filter(|f| f.2 > 0).collect();
    {
        let (bank, site, bus) = (bank.clone(), site.clone(), bus.clone());
        tokio::spawn(async move {
            let mut later = later;
            later.sort_by_key(|f| f.2);
            let start = tokio::time::Instant::now();
            for f in later {
                tokio::time::sleep_until(start + std::time::Duration::from_secs(f.2)).await;
                apply_fault(&bank, &site, &bus, &f);
            }
        });
    }
    if let Some(path) = opts.rtu.clone() {
        eprintln!(
            "simulating {} meters of bus {bus} on Modbus RTU {} ({} Bd{})",
            bank.devices.len(),
            path.display(),
            opts.baud,
            if opts.emulate_line {
                ", line speed emulated"
            } else {
                ""
            }
        );
        let (baud, emulate) = (opts.baud, opts.emulate_line);
        let served = tokio::task::spawn_blocking(move || {
            meterflow_sim::rtu::serve_rtu(&path, baud, emulate, &bank)
        });
        tokio::select! {
            r = served => r.context("RTU simulator")?.context("RTU simulator")?,
            _ = tokio::signal::ctrl_c() => {}
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let listen = opts
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:5020".to_string());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!(
        "simulating {} meters of bus {bus} on Modbus TCP {}",
        bank.devices.len(),
        listener.local_addr()?
    );
    tokio::select! {
        r = serve(listener, bank) => r.context("simulator")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `simulate` for a bus of DL/T 645 and CJ/T 188 meters: faults are
/// `METER=KIND[@SECONDS]`, KIND = none | silent | bad_checksum | error | garbage |
/// battery_low | valve_fault.
async fn simulate_cn(
    bank: meterflow_sim::cn::CnBank,
    bus: &str,
    opts: SimulateOptions,
) -> anyhow::Result<std::process::ExitCode> {
    use meterflow_sim::cn::CnFault;
    let mut plans = Vec::new();
    for f in &opts.faults {
        let parsed = f.split_once('=').and_then(|(m, rest)| {
            let (kind, at) = match rest.split_once('@') {
                Some((k, s)) => (k, s.parse::<u64>().ok()?),
                None => (rest, 0),
            };
            Some((m.to_string(), CnFault::parse(kind)?, at))
        });
        match parsed {
            Some((m, k, at)) if bank.device(&m).is_some() => plans.push((m, k, at)),
            _ => {
                eprintln!(
                    "error: --fault `{f}`: expected METER=none|silent|bad_checksum|error|garbage|battery_low|valve_fault[@SECONDS] with a meter of bus {bus}"
                );
                return Ok(std::process::ExitCode::from(crate::EXIT_CONFIG));
            }
        }
    }
    for (m, k, _) in plans.iter().filter(|p| p.2 == 0) {
        if let Some(d) = bank.device(m) {
            d.set_fault(*k);
        }
    }
    {
        let bank = bank.clone();
        let mut later: Vec<_> = plans.into_iter().filter(|p| p.2 > 0).collect();
        later.sort_by_key(|p| p.2);
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for (m, k, at) in later {
                tokio::time::sleep_until(start + std::time::Duration::from_secs(at)).await;
                if let Some(d) = bank.device(&m) {
                    d.set_fault(k);
                }
            }
        });
    }
    let (baud, emulate) = (opts.baud, opts.emulate_line);
    if let Some(path) = opts.rtu.clone() {
        eprintln!(
            "simulating {} DL/T 645 / CJ/T 188 meters of bus {bus} on {} ({baud} Bd{})",
            bank.devices.len(),
            path.display(),
            if emulate { ", line speed emulated" } else { "" }
        );
        let served = tokio::task::spawn_blocking(move || {
            let port = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)?;
            meterflow_sim::cn::serve_cn(port, baud, emulate, &bank)
        });
        tokio::select! {
            r = served => r.context("serial meter simulator")?.context("serial meter simulator")?,
            _ = tokio::signal::ctrl_c() => {}
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let listen = opts
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:5020".to_string());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!(
        "simulating {} DL/T 645 / CJ/T 188 meters of bus {bus} behind a serial gateway on {}",
        bank.devices.len(),
        listener.local_addr()?
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted.context("accepting")?;
                let bank = bank.clone();
                let stream = stream.into_std()?;
                stream.set_nonblocking(false)?;
                tokio::task::spawn_blocking(move || meterflow_sim::cn::serve_cn(stream, baud, emulate, &bank));
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
