//! RTU bus efficiency: 30 meters on one serial line at 9 600 Bd. The peer is a
//! Modbus RTU slave on a socat pty that emulates the line: a byte costs 11 bits
//! of time, so it answers after the request's frame time, 3.5 characters of
//! silence and the response's frame time. The measured poll cycle is compared
//! with the theoretical minimum: per request, request + response frame times
//! plus two 3.5-character gaps.
//!
//! `cargo run --release -p meterflow-benches --bin rtu-efficiency -- [METERS] [BAUD] [CYCLES]`

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meterflow_modbus::bus::{Link, poll_meter};
use meterflow_modbus::{BusHealth, MeterPoll, plan};
use meterflow_model::config::{Bus, Parity, Transport};

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// The emulated slave: answers reads of holding registers with `unit * 100 + address`.
fn slave(path: std::path::PathBuf, baud: u32, meters: u8) -> anyhow::Result<()> {
    let char_s = 11.0 / f64::from(baud);
    let mut port = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut req = [0u8; 8];
    loop {
        port.read_exact(&mut req)?;
        let arrived = Instant::now();
        if crc16(&req[..6]) != u16::from_le_bytes([req[6], req[7]])
            || req[0] == 0
            || req[0] > meters
            || req[1] != 3
        {
            continue;
        }
        let (addr, count) = (
            u16::from_be_bytes([req[2], req[3]]),
            u16::from_be_bytes([req[4], req[5]]),
        );
        let mut resp = vec![req[0], 3, (count * 2) as u8];
        for k in 0..count {
            resp.extend_from_slice(&(u16::from(req[0]) * 100 + addr + k).to_be_bytes());
        }
        let crc = crc16(&resp);
        resp.extend_from_slice(&crc.to_le_bytes());
        // The request was still arriving for its frame time; then 3.5 characters
        // of silence end it; then the answer takes its own frame time.
        let line = (8.0 + 3.5 + resp.len() as f64) * char_s;
        let wait = Duration::from_secs_f64(line).saturating_sub(arrived.elapsed());
        std::thread::sleep(wait);
        port.write_all(&resp)?;
    }
}

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
    std::thread::spawn(move || slave(b, baud, meters));

    let profile = meterflow_model::config::validate_profile_text(
        "name = \"bench\"\nversion = 1\ndescription = \"u32 counter\"\n[[field]]\nquantity = \"energy_import\"\nspace = \"holding\"\naddress = 0\ntype = \"u32\"\nunit = \"kWh\"\ncounter = true\n",
        "bench",
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let profile = Arc::new(profile);
    let bus = Bus {
        id: "line".into(),
        transport: Transport::Rtu,
        address: None,
        device: Some(a.to_string_lossy().into_owned()),
        baud,
        parity: Parity::None,
        stop_bits: 1,
        timeout_ms: 1000,
        retries: 0,
        concurrency: 1,
        inter_frame_ms: None,
        max_gap: 10,
        max_registers: 125,
    };
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
                // Unit u, register 0..1: (u*100, u*100+1) as a u32.
                let want =
                    f64::from((u32::from(p.unit) * 100) << 16 | (u32::from(p.unit) * 100 + 1));
                assert!(
                    got.readings.len() == 1 && got.readings[0].value == want,
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
