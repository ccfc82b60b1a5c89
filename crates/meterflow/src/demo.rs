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
    let now = meterflow_modbus::bus::now_ms();
    let mut meters: Vec<SimMeter> = site.meters.iter().map(SimMeter::from_meter).collect();
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
    let bank = bank_for(&site, "sim");
    println!(
        "meterflow demo: {} simulated meters on Modbus TCP {addr}; store {}",
        bank.devices.len(),
        site.store_path().display()
    );
    println!(
        "polling every few seconds; Ctrl-C to stop{}",
        seconds
            .map(|s| format!(" (stopping after {s} s)"))
            .unwrap_or_default()
    );
    let sim = tokio::spawn(serve(listener, bank));
    let summary = crate::pipeline::run(
        site.clone(),
        crate::pipeline::RunOptions {
            live: true,
            duration: seconds.map(Duration::from_secs),
        },
    )
    .await?;
    sim.abort();
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

/// `meterflow simulate`: serve the site's Modbus meters until Ctrl-C.
pub async fn simulate(
    config: &std::path::Path,
    listen: &str,
    bus: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    let site = match crate::cli::load_site(config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let bus = match bus
        .map(str::to_string)
        .or_else(|| site.buses.first().map(|b| b.id.clone()))
    {
        Some(b) => b,
        None => {
            eprintln!("error: {} has no [[bus]] to simulate", config.display());
            return Ok(std::process::ExitCode::from(crate::EXIT_CONFIG));
        }
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let bank = bank_for(&site, &bus);
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
