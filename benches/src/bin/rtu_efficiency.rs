//! RTU bus efficiency: 30 meters on one serial line at 9 600 Bd. The peer is
//! the meterflow simulator's RTU slave on a socat pty, emulating the line: a
//! byte costs 11 bits of time, so it answers after the request's frame time,
//! 3.5 characters of silence and the response's frame time. The measured poll
//! cycle is compared with the theoretical minimum: per request, request +
//! response frame times plus two 3.5-character gaps.
//!
//! `cargo run --release -p meterflow-benches --bin rtu-efficiency -- [METERS] [BAUD] [CYCLES]`

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meterflow_modbus::bus::{Link, poll_meter};
use meterflow_modbus::{BusHealth, MeterPoll, plan};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let meters: u8 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(30);
    let baud: u32 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(9600);
    let cycles: usize = args.get(3).map(|a| a.parse()).transpose()?.unwrap_or(10);
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

    // A site with `meters` meters on one RTU line, each a u32 counter at register 0.
    let mut text =
        String::from("[site]\nname = \"rtu\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n");
    let _ = write!(
        text,
        "[[bus]]\nid = \"line\"\ntransport = \"rtu\"\ndevice = \"{}\"\nbaud = {baud}\n",
        a.display()
    );
    text.push_str("[[profile]]\nname = \"bench\"\nversion = 1\ndescription = \"u32 counter\"\n[[profile.field]]\nquantity = \"energy_import\"\nspace = \"holding\"\naddress = 0\ntype = \"u32\"\nscale = 0.01\nunit = \"kWh\"\ncounter = true\n");
    for u in 1..=meters {
        let _ = write!(
            text,
            "[[meter]]\nid = \"m{u}\"\nkind = \"electricity\"\nunit = \"kWh\"\nmax_rate = 100\nserves = {{ building = \"b\" }}\nmodbus = {{ bus = \"line\", unit = {u}, profile = \"bench\" }}\n"
        );
    }
    let site = meterflow_model::Site::parse(&text, std::path::Path::new("rtu.toml"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bank = meterflow_sim::site::bank_for(&site, "line");
    std::thread::spawn(move || meterflow_sim::rtu::serve_rtu(&b, baud, true, &bank));
    let bus = site
        .bus("line")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("bus"))?;
    let profile = Arc::new(
        site.profile("bench")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("profile"))?,
    );
    let polls: Vec<MeterPoll> = (1..=meters)
        .map(|u| MeterPoll {
            meter: format!("m{u}"),
            unit: u,
            profile: Arc::clone(&profile),
            poll_ms: 60_000,
            fast_poll_ms: None,
        })
        .collect();
    let reads = plan(&profile.field, &[0], 125, 10);
    let health = Arc::new(BusHealth::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut times = Vec::new();
    rt.block_on(async {
        let mut link = Link::new(&bus, Arc::clone(&health));
        for cycle in 0..=cycles {
            let t = Instant::now();
            for p in &polls {
                let got = poll_meter(&mut link, &bus, p, &reads, &health).await;
                assert!(
                    got.readings.len() == 1 && got.readings[0].value.is_finite(),
                    "unit {}: {:?}",
                    p.unit,
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
    // Request 8 bytes, response 3 + 4 + 2 = 9 bytes, two 3.5-character gaps.
    let per_request = (8.0 + 9.0 + 3.5 + 3.5) * char_s;
    let theory = per_request * f64::from(meters);
    println!(
        "{meters} meters, one 2-register read each, {baud} Bd (11 bits/byte), {cycles} cycles"
    );
    println!(
        "theoretical minimum cycle: {:.1} ms ({:.2} ms per request)",
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
        "efficiency ratio (measured / theoretical): {:.3}",
        median / theory
    );
    Ok(())
}
