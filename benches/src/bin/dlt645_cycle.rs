//! DL/T 645 bus efficiency: 30 meters on one 2 400 Bd line (8E1), forward
//! active energy read from each. The peer is meterflow's serial-meter
//! simulator on a socat pty emulating the line speed (a byte costs 11 bits;
//! the simulated meter answers 5 ms after the request has arrived). The
//! measured poll cycle is compared with the theoretical minimum: per meter,
//! the request (4 wake-up bytes + 16) and the reply (4 + 20 bytes) at line
//! speed, nothing else.
//!
//! `cargo run --release -p meterflow-benches --bin dlt645-cycle -- [METERS] [BAUD] [CYCLES]`

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meterflow_modbus::BusHealth;
use meterflow_modbus::cnbus::{RawLink, cn_polls, poll};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let meters: u32 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(30);
    let baud: u32 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(2400);
    let cycles: usize = args.get(3).map(|a| a.parse()).transpose()?.unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let (a, b) = (dir.path().join("ttyA"), dir.path().join("ttyB"));
    let mut socat = std::process::Command::new("socat")
        .args([
            format!("pty,raw,echo=0,link={}", a.display()),
            format!("pty,raw,echo=0,link={}", b.display()),
        ])
        .spawn()?;
    while !(a.exists() && b.exists()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut text =
        String::from("[site]\nname = \"dlt\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n");
    let _ = write!(
        text,
        "[[bus]]\nid = \"line\"\ntransport = \"rtu\"\ndevice = \"{}\"\nbaud = {baud}\nparity = \"even\"\ntimeout_ms = 1000\n",
        a.display()
    );
    for i in 1..=meters {
        let _ = write!(
            text,
            "[[meter]]\nid = \"m{i}\"\nkind = \"electricity\"\nunit = \"kWh\"\nmax_rate = 100\nserves = {{ building = \"b\" }}\ndlt645 = {{ bus = \"line\", address = \"{:012}\" }}\n",
            100_000 + i
        );
    }
    let site = meterflow_model::Site::parse(&text, std::path::Path::new("dlt.toml"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bank = meterflow_sim::cn::CnBank::of(&site, "line");
    std::thread::spawn(move || {
        let port = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&b)?;
        meterflow_sim::cn::serve_cn(port, baud, true, &bank)
    });
    let bus = site
        .bus("line")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("bus"))?;
    let polls = cn_polls(&site, "line");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut times = Vec::new();
    rt.block_on(async {
        let mut link = RawLink::new(&bus, Arc::new(BusHealth::default()));
        for cycle in 0..=cycles {
            let t = Instant::now();
            for p in &polls {
                let got = poll(&mut link, &bus, p).await;
                assert!(
                    got.readings.len() == 1 && got.errors.is_empty(),
                    "{}: {:?}",
                    p.meter,
                    got.errors
                );
            }
            if cycle > 0 {
                times.push(t.elapsed().as_secs_f64()); // the first cycle opens the port
            }
        }
    });
    let _ = socat.kill();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let char_s = 11.0 / f64::from(baud);
    let per_request = (20.0 + 24.0) * char_s;
    let theory = per_request * f64::from(meters);
    println!(
        "{meters} DL/T 645 meters, forward active energy each, {baud} Bd 8E1 (11 bits/byte), {cycles} cycles"
    );
    println!(
        "theoretical minimum cycle: {:.1} ms ({:.2} ms per request and reply)",
        theory * 1000.0,
        per_request * 1000.0
    );
    println!(
        "measured cycle: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        median * 1000.0,
        times[0] * 1000.0,
        times[times.len() - 1] * 1000.0
    );
    println!(
        "efficiency ratio (measured / theoretical): {:.3} (target <= 1.2)",
        median / theory
    );
    Ok(())
}
