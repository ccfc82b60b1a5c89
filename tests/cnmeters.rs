//! DL/T 645-2007 and CJ/T 188 meters: a mixed RS-485 bus over a socat pty
//! pair against the simulator, and a cross-check of our codecs against a
//! second implementation written from the standard (tests/peers/cnframes.py).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use meterflow_cnproto::{bcd, cjt188, dlt645};

use crate::modbus::pty_pair;
use crate::support::repo;

fn site_text(device: &Path) -> String {
    let mut s = format!(
        "[site]\nname = \"cn\"\n[store]\npath = \"store.db\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1000\n\n[[bus]]\nid = \"rs485\"\ntransport = \"rtu\"\ndevice = \"{}\"\nbaud = 2400\nparity = \"even\"\ntimeout_ms = 600\nretries = 0\n",
        device.display()
    );
    for (id, addr) in [
        ("e1", "000000001234"),
        ("e2", "000000001235"),
        ("e3", "000000001236"),
    ] {
        s.push_str(&format!(
            "\n[[meter]]\nid = \"{id}\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\nmax_rate = 500\nrollover = 1000000\ndlt645 = {{ bus = \"rs485\", address = \"{addr}\", items = [\"00010000\", \"02010100\", \"02030000\"], poll_s = 2 }}\n"
        ));
    }
    for (id, addr) in [("w1", "12000000000000"), ("w2", "13000000000000")] {
        s.push_str(&format!(
            "\n[[meter]]\nid = \"{id}\"\nkind = \"water\"\nunit = \"m3\"\nserves = {{ building = \"b\" }}\nmax_rate = 50\ncjt188 = {{ bus = \"rs485\", address = \"{addr}\", poll_s = 2 }}\n"
        ));
    }
    s
}

/// (ts, value) of a meter quantity's readings with a value.
pub(crate) fn readings(db: &Path, meter: &str, quantity: &str) -> Vec<(i64, f64)> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("store");
    let mut s = c
        .prepare("SELECT r.ts_ms, r.value FROM readings r JOIN series s ON s.id = r.series WHERE s.meter = ?1 AND s.quantity = ?2 AND r.value IS NOT NULL ORDER BY r.ts_ms")
        .expect("prepare");
    s.query_map([meter, quantity], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

/// Three DL/T 645 meters and two CJ/T 188 water meters polled together on one
/// pty line: every reading equals the simulator's counter at that time (to the
/// protocols' 0.01 resolution) even for a meter that sends garbage before
/// its replies, the gauges decode, and a meter whose replies have bad
/// checksums is reported and costs the others nothing.
#[test]
fn a_mixed_rs485_bus_reads_every_meter_and_isolates_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_socat, ours, theirs) = pty_pair(dir.path());
    let path = dir.path().join("site.toml");
    std::fs::write(&path, site_text(&ours)).expect("site");
    let site = meterflow_model::Site::load(&path).expect("valid site");
    let t0 = meterflow_model::clock::now_ms();
    let bank = meterflow_sim::cn::CnBank::of(&site, "rs485");
    assert_eq!(bank.devices.len(), 5);
    bank.device("e3")
        .expect("e3")
        .set_fault(meterflow_sim::cn::CnFault::BadChecksum);
    bank.device("w2")
        .expect("w2")
        .set_fault(meterflow_sim::cn::CnFault::BatteryLow);
    // e2 sends garbage before every reply: it must still read correctly.
    bank.device("e2")
        .expect("e2")
        .set_fault(meterflow_sim::cn::CnFault::Garbage);
    let starts: BTreeMap<String, meterflow_sim::SimMeter> = bank
        .devices
        .iter()
        .map(|d| (d.meter.id.clone(), d.meter.clone()))
        .collect();
    {
        let bank = bank.clone();
        let port = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&theirs)
            .expect("pty");
        std::thread::spawn(move || meterflow_sim::cn::serve_cn(port, 2400, false, &bank));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let summary = rt
        .block_on(meterflow_runtime::pipeline::run(
            site.clone(),
            meterflow_runtime::pipeline::RunOptions {
                live: false,
                duration: Some(Duration::from_secs(9)),
                stop: None,
                committed: None,
                api: None,
                status_every: None,
            },
        ))
        .expect("run");
    let db = dir.path().join("store.db");
    for (id, quantity) in [
        ("e1", "energy_import"),
        ("e2", "energy_import"),
        ("w1", "volume"),
        ("w2", "volume"),
    ] {
        let rows = readings(&db, id, quantity);
        assert!(rows.len() >= 3, "{id}: {rows:?}");
        let m = &starts[id];
        for (ts, v) in &rows {
            // The simulator's counter at the reply: start + load since t0.
            let want =
                m.start_register + meterflow_sim::sum_quarters(m, site.tz, t0, *ts) / m.multiplier;
            // 0.01 BCD resolution plus 50 ms of consumption between the reply and its timestamp.
            assert!(
                (v - want).abs() <= 0.011 + m.peak_per_h / 3600.0 * 0.05,
                "{id} at {ts}: stored {v}, simulator {want}"
            );
        }
    }
    // Gauges: phase-A voltage 229.8 V, total power 3.5 kW; the water meters' status.
    assert!(
        readings(&db, "e1", "voltage_l1")
            .iter()
            .all(|(_, v)| *v == 229.8)
    );
    assert!(readings(&db, "e2", "power").iter().all(|(_, v)| *v == 3.5));
    let battery = readings(&db, "w1", "battery_low");
    assert!(!battery.is_empty() && battery.iter().all(|(_, v)| *v == 0.0));
    let battery = readings(&db, "w2", "battery_low");
    assert!(
        !battery.is_empty() && battery.iter().all(|(_, v)| *v == 1.0),
        "w2 reports a low battery"
    );
    assert!(readings(&db, "w2", "valve").iter().all(|(_, v)| *v == 0.0));
    // The shipped battery-low rule fires for w2 only; no valve fault anywhere.
    let o = crate::support::run(&["alerts", "--config", path.to_str().expect("path")]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let firing: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("battery-low") || l.contains("valve-fault"))
        .collect();
    assert!(
        firing
            .iter()
            .any(|l| l.contains("battery-low") && l.contains("w2")),
        "{out}"
    );
    assert!(
        !firing
            .iter()
            .any(|l| l.contains("w1") || l.contains("valve-fault")),
        "{out}"
    );
    // e3's replies never pass the checksum: no value, counted as bad
    // checksums (not as silence), parked.
    assert!(readings(&db, "e3", "energy_import").is_empty());
    let health = &summary.buses["rs485"];
    assert!(
        health
            .transport_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "bad frames counted"
    );
    let meters = health.meters.lock().expect("lock");
    let e3 = &meters["e3"];
    assert!(
        e3.items["00010000"].bad_checksums >= 1
            && e3.items["00010000"].timeouts == 0
            && e3.good_polls == 0
            && e3.failed_polls >= 1,
        "{e3:?}"
    );
    // The others were polled on schedule: every 2 s for 9 s.
    for id in ["e1", "e2", "w1", "w2"] {
        let h = &meters[id];
        assert!(h.good_polls >= 3 && h.failed_polls == 0, "{id}: {h:?}");
    }
}

/// Our encoder's frames decode in the independent implementation, and its
/// frames decode in ours, for both protocols.
#[test]
fn frames_cross_check_with_an_independent_implementation() {
    let mut peer = Command::new("python3")
        .arg(repo().join("tests/peers/cnframes.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdin = peer.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(peer.stdout.take().expect("stdout"));
    let mut ask = |cmd: serde_json::Value| -> serde_json::Value {
        writeln!(stdin, "{cmd}").expect("write");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert!(v.get("error").is_none(), "{cmd}: {v}");
        v
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let unhex = |s: &str| {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect::<Vec<u8>>()
    };
    for (addr, di, value) in [
        ("000000001234", 0x0001_0000u32, 1234.56),
        ("201911220087", 0x0001_0200, 0.07),
        ("999999999999", 0x0000_0000, 999_999.99),
    ] {
        let a: [u8; 6] = bcd::address_lsb_first(addr, 6)
            .expect("address")
            .try_into()
            .expect("6 bytes");
        // Ours → theirs.
        let req = dlt645::read_request(&a, di, true);
        let v = ask(serde_json::json!({"op": "dlt_decode", "hex": hex(&req)}));
        assert_eq!(v["address"], addr);
        assert_eq!(v["control"], 0x11);
        assert_eq!(v["di"], format!("{di:08X}"));
        let theirs = ask(
            serde_json::json!({"op": "dlt_request", "address": addr, "di": format!("{di:08X}")}),
        );
        assert_eq!(theirs["hex"], hex(&req), "the same request bytes");
        // Theirs → ours.
        let reply = ask(
            serde_json::json!({"op": "dlt_reply", "address": addr, "di": format!("{di:08X}"), "value": value, "bytes": 4, "decimals": 2}),
        );
        let f = dlt645::parse(&unhex(reply["hex"].as_str().expect("hex"))).expect("our parser");
        let d = dlt645::data_reply(&f, &a, di).expect("data");
        let fmt = dlt645::Format {
            bytes: 4,
            decimals: 2,
            signed: false,
        };
        assert_eq!(dlt645::value(&d, fmt), Ok(value));
        // Our reply → theirs.
        let ours = dlt645::reply_data(
            &a,
            di,
            &bcd::encode_value(value, 4, 2, false).expect("fits"),
            false,
        );
        let v = ask(serde_json::json!({"op": "dlt_decode", "hex": hex(&ours)}));
        assert_eq!(v["control"], 0x91);
        assert_eq!(
            v["value_hex"],
            hex(&bcd::encode_value(value, 4, 2, false).expect("fits")).to_uppercase()
        );
    }
    for (addr, m3) in [
        ("12000000000000", 1234.56),
        ("00112233445566", 0.01),
        ("99999999999999", 999_999.99),
    ] {
        let a = cjt188::address(addr).expect("address");
        let req = cjt188::read_request(cjt188::COLD_WATER, &a, cjt188::DI_CURRENT, 0, false);
        let theirs = ask(serde_json::json!({"op": "cjt_request", "type": 16, "address": addr}));
        assert_eq!(theirs["hex"], hex(&req));
        let reply =
            ask(serde_json::json!({"op": "cjt_reply", "type": 16, "address": addr, "m3": m3}));
        let f = cjt188::parse(&unhex(reply["hex"].as_str().expect("hex"))).expect("our parser");
        let r = cjt188::data_reply(&f, cjt188::COLD_WATER, &a, cjt188::Layout::default())
            .expect("reading");
        assert_eq!(r.cumulative, m3);
        let ours = cjt188::reply_water(cjt188::COLD_WATER, &a, cjt188::DI_CURRENT, 0, m3, 0);
        let v = ask(serde_json::json!({"op": "cjt_decode", "hex": hex(&ours)}));
        assert_eq!(v["address"], addr);
        assert_eq!(v["m3"].as_f64(), Some(m3));
        assert_eq!(v["unit"], 0x2C);
    }
    drop(stdin);
    let _ = peer.wait();
}

/// `meterflow probe` on a serial gateway served by `meterflow simulate`:
/// address discovery with the broadcast read-address, every DL/T 645 item,
/// a CJ/T 188 meter's current data.
#[test]
fn probe_discovers_and_reads_serial_meters_behind_a_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = crate::support::free_port();
    let site = format!(
        "[site]\nname = \"p\"\n[store]\npath = \"store.db\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n[[bus]]\nid = \"gw\"\ntransport = \"rtu_over_tcp\"\naddress = \"127.0.0.1:{port}\"\n\n[[meter]]\nid = \"e1\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\ndlt645 = {{ bus = \"gw\", address = \"000000001234\" }}\n\n[[meter]]\nid = \"w1\"\nkind = \"water\"\nunit = \"m3\"\nserves = {{ building = \"b\" }}\ncjt188 = {{ bus = \"gw\", address = \"12000000000000\" }}\n"
    );
    let path = dir.path().join("site.toml");
    std::fs::write(&path, site).expect("site");
    let _sim = crate::support::Proc(
        crate::support::bin()
            .args([
                "simulate",
                "--config",
                path.to_str().expect("path"),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("simulate"),
    );
    crate::support::wait_port(port);
    let endpoint = format!("rtu-over-tcp://127.0.0.1:{port}");
    let probe = |args: &[&str]| {
        let mut all = vec!["probe", "--endpoint", endpoint.as_str()];
        all.extend_from_slice(args);
        let o = crate::support::run(&all);
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (ok, out) = probe(&["--dlt645", "discover"]);
    assert!(
        ok && out.contains("DL/T 645 meter at address 000000001234"),
        "{out}"
    );
    let (ok, out) = probe(&["--dlt645", "000000001234"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("02010100  voltage_l1         229.8 V"),
        "{out}"
    );
    assert!(out.contains("02800002  frequency          50 Hz"), "{out}");
    assert!(out.contains("all items plausible"), "{out}");
    let energy = out
        .lines()
        .find(|l| l.starts_with("00010000"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("energy line");
    assert!(
        energy >= 1000.0,
        "the simulator starts its counters at 1000 or more: {out}"
    );
    let (ok, out) = probe(&["--cjt188", "12000000000000"]);
    assert!(
        ok && out.contains("valve       Open") && out.contains("battery     ok"),
        "{out}"
    );
    // A wrong address gets no answer: reported, exit 1.
    let (ok, out) = probe(&["--dlt645", "000000009999"]);
    assert!(!ok && out.contains("no answer"), "{out}");
}
