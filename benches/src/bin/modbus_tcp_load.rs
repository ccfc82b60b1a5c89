//! 2 000 simulated Modbus TCP meters (20 gateways × 100 units, SDM630 map)
//! polled every 10 s by one meterflow pipeline (with its store); the
//! simulators run in a child process so the CPU time measured is meterflow's.
//!
//! `cargo run --release -p meterflow-benches --bin modbus-tcp-load -- [SECONDS]`

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use meterflow_model::Site;

const GATEWAYS: usize = 20;
const UNITS: usize = 100;
const POLL_S: u32 = 10;

fn site_text(ports: &[u16]) -> String {
    let mut s = String::from(
        "[site]\nname = \"load\"\n\n[store]\npath = \"store.db\"\n\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n\n",
    );
    for (g, port) in ports.iter().enumerate() {
        let _ = writeln!(
            s,
            "[[bus]]\nid = \"gw{g}\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\"\ntimeout_ms = 2000\n"
        );
    }
    for g in 0..ports.len() {
        for u in 1..=UNITS {
            let _ = writeln!(
                s,
                "[[meter]]\nid = \"g{g}u{u}\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\nmax_rate = 200\nmodbus = {{ bus = \"gw{g}\", unit = {u}, profile = \"sdm630\", poll_s = {POLL_S} }}\n"
            );
        }
    }
    s
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        return serve(&args[2]);
    }
    let seconds: u64 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(60);
    let dir = tempfile::tempdir()?;
    let ports: Vec<u16> = (0..GATEWAYS)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
        })
        .collect::<Result<_, _>>()?;
    let config = dir.path().join("site.toml");
    std::fs::write(&config, site_text(&ports))?;
    let mut sim = std::process::Command::new(std::env::current_exe()?)
        .args(["--serve", config.to_str().unwrap_or_default()])
        .spawn()?;
    std::thread::sleep(Duration::from_secs(2));
    let site = Site::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cpu0 = meterflow_benches::cpu_seconds().unwrap_or(0.0);
    let summary = rt.block_on(meterflow_runtime::pipeline::run(
        site,
        meterflow_runtime::pipeline::RunOptions {
            live: false,
            duration: Some(Duration::from_secs(seconds)),
            stop: None,
            committed: None,
            api: None,
            status_every: None,
        },
    ))?;
    let cpu = meterflow_benches::cpu_seconds().unwrap_or(0.0) - cpu0;
    let _ = sim.kill();
    let _ = sim.wait();

    let (mut polls, mut requests, mut timeouts, mut latency_us) = (0u64, 0u64, 0u64, 0u64);
    for h in summary.buses.values() {
        polls += h.polls.load(Relaxed);
        requests += h.requests.load(Relaxed);
        timeouts += h.timeouts.load(Relaxed);
        latency_us += h.latency_us.load(Relaxed);
    }
    let meters = GATEWAYS * UNITS;
    let target = meters as f64 / f64::from(POLL_S);
    let achieved = polls as f64 / seconds as f64;
    println!(
        "{meters} Modbus TCP meters ({GATEWAYS} gateways x {UNITS} units, SDM630 energy group = 2 reads), poll every {POLL_S} s, {seconds} s run"
    );
    println!(
        "polls: {polls} = {achieved:.1} polls/s; target {target:.1} polls/s; ratio {:.3}",
        achieved / target
    );
    println!(
        "requests {requests}, timeouts {timeouts}, mean request latency {:.2} ms",
        latency_us as f64 / requests.max(1) as f64 / 1000.0
    );
    println!(
        "readings stored {} (refused {})",
        summary.stored, summary.refused
    );
    println!(
        "CPU time of meterflow (pollers + writer + store): {cpu:.2} s = {:.1} us per poll, {:.1} % of one core",
        cpu * 1e6 / polls.max(1) as f64,
        cpu * 100.0 / seconds as f64
    );
    Ok(())
}

fn serve(config: &str) -> anyhow::Result<()> {
    let site = Site::load(std::path::Path::new(config)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for bus in &site.buses {
            let listener =
                tokio::net::TcpListener::bind(bus.address.clone().unwrap_or_default()).await?;
            let bank = meterflow_sim::site::bank_for(&site, &bus.id);
            tasks.push(tokio::spawn(meterflow_sim::server::serve(listener, bank)));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}
