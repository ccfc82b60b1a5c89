//! `meterflow demo` and `meterflow simulate`: the simulator and the pipeline on loopback.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meterflow_model::Site;
use meterflow_sim::server::{Bank, Device, serve};
use meterflow_sim::{SimMeter, align_to_replacements};

/// The bundled demo site.
pub const DEMO_SITE: &str = include_str!("../../../examples/demo/site.toml");

/// A simulator bank for every meter of `site` with a Modbus source on `bus`.
pub fn bank_for(site: &Site, bus: &str) -> Bank {
    bank_with_leaks(site, bus, &HashMap::new())
}

/// As [`bank_for`], with night-time leaks (m³/h) on the named water meters.
pub fn bank_with_leaks(site: &Site, bus: &str, leaks: &HashMap<String, f64>) -> Bank {
    let now = meterflow_model::clock::now_ms();
    let mut meters: Vec<SimMeter> = site.meters.iter().map(SimMeter::from_meter).collect();
    for m in &mut meters {
        if let Some(l) = leaks.get(&m.id) {
            m.leak_per_h = *l;
        }
    }
    align_to_replacements(&mut meters, site, now);
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

/// `meterflow demo`: simulator + pipeline on loopback, store in `data/demo/`.
pub async fn demo(seconds: Option<u64>) -> anyhow::Result<std::process::ExitCode> {
    let dir = std::path::Path::new("data/demo");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("site.toml");
    std::fs::write(&config, DEMO_SITE).with_context(|| format!("writing {}", config.display()))?;
    let mut site = match crate::cli::load_site(&config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the simulator")?;
    let addr = listener.local_addr()?;
    for bus in &mut site.buses {
        bus.address = Some(addr.to_string());
    }
    // The embedded broker on a free port, and the subscription pointed at it.
    let mqtt_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port();
    if let Some(b) = site.broker.as_mut() {
        b.listen = format!("127.0.0.1:{mqtt_port}");
    }
    for m in &mut site.mqtt {
        m.port = mqtt_port;
    }
    // The overview page on 127.0.0.1:8080 when free, else on any free port.
    let api_port = std::net::TcpListener::bind("127.0.0.1:8080")
        .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .and_then(|l| l.local_addr())
        .context("finding a port for the overview page")?
        .port();
    if let Some(a) = site.api.as_mut() {
        a.listen = format!("127.0.0.1:{api_port}");
        if let Some(f) = &a.tokens_file {
            let path = site.path.parent().map_or_else(|| f.clone(), |d| d.join(f));
            if !path.exists() {
                std::fs::write(
                    &path,
                    "# ROLE sha256:HEX, one per line (meterflow token --role ROLE)\n",
                )
                .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    let bank = bank_for(&site, "sim");
    let pushed = pushed_meters(&site);
    println!(
        "meterflow demo: {} simulated meters on Modbus TCP {addr}, {} on MQTT (embedded broker 127.0.0.1:{mqtt_port}); store {}",
        bank.devices.len(),
        pushed.len(),
        site.store_path().display()
    );
    let publisher = tokio::spawn(meterflow_sim::mqtt::publish_loop(
        "127.0.0.1",
        mqtt_port,
        "meterflow-demo-sim",
        pushed,
        Duration::from_secs(5),
        site.tz,
    ));
    if site.api.is_some() {
        println!("overview page: http://127.0.0.1:{api_port}/");
    }
    println!(
        "polling every few seconds; Ctrl-C to stop{}",
        seconds
            .map(|s| format!(" (stopping after {s} s)"))
            .unwrap_or_default()
    );
    let sim = tokio::spawn(serve(listener, bank));
    let summary = meterflow_runtime::pipeline::run(
        site.clone(),
        meterflow_runtime::pipeline::RunOptions {
            live: true,
            duration: seconds.map(Duration::from_secs),
            stop: None,
            committed: None,
            api: Some(meterflow_http::starter()),
        },
    )
    .await?;
    sim.abort();
    publisher.abort();
    for (id, m) in &summary.mqtt {
        use std::sync::atomic::Ordering::Relaxed;
        println!(
            "mqtt {id}: {} messages received, {} acknowledged after commit",
            m.received.load(Relaxed),
            m.acked.load(Relaxed)
        );
    }
    println!(
        "stored {} readings ({} refused)",
        summary.stored, summary.refused
    );
    for (bus, h) in &summary.buses {
        use std::sync::atomic::Ordering::Relaxed;
        println!(
            "bus {bus}: {} requests, {} ok, {} timeouts, {} exceptions, {} transport errors",
            h.requests.load(Relaxed),
            h.ok.load(Relaxed),
            h.timeouts.load(Relaxed),
            h.exceptions.load(Relaxed),
            h.transport_errors.load(Relaxed)
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Options of `meterflow simulate`.
#[derive(Debug, Clone, Default)]
pub struct SimulateOptions {
    /// TCP address to listen on (default 127.0.0.1:5020) unless `rtu` is given.
    pub listen: Option<String>,
    /// Serve Modbus RTU on this serial device or pty instead.
    pub rtu: Option<std::path::PathBuf>,
    /// Line speed for `rtu`, Bd.
    pub baud: u32,
    /// Emulate the line speed (a byte costs 11 bits of time).
    pub emulate_line: bool,
    /// Bus whose meters to serve (default: the first).
    pub bus: Option<String>,
    /// Faults: `UNIT=KIND[@SECONDS]`, KIND = silent | late:MS | exception:CODE | sentinel | reset | rollover.
    pub faults: Vec<String>,
    /// Night-time leaks: `METER=M3_PER_H`.
    pub leaks: Vec<String>,
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
pub async fn simulate(
    config: &std::path::Path,
    opts: SimulateOptions,
) -> anyhow::Result<std::process::ExitCode> {
    let site = match crate::cli::load_site(config) {
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

/// Meters of the demo that push over MQTT: those without a Modbus source.
fn pushed_meters(site: &Site) -> Vec<meterflow_sim::mqtt::Pushed> {
    site.meters
        .iter()
        .filter(|m| m.modbus.is_none())
        .map(|m| {
            let building = m
                .serves
                .building
                .clone()
                .or_else(|| {
                    m.serves
                        .zone
                        .as_ref()
                        .and_then(|z| site.zones.iter().find(|x| &x.id == z))
                        .map(|z| z.building.clone())
                })
                .unwrap_or_else(|| "site".to_string());
            meterflow_sim::mqtt::Pushed {
                topic: format!("meters/{building}/{}/reading", m.id),
                meter: SimMeter::from_meter(m),
            }
        })
        .collect()
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
