//! DL/T 645 and CJ/T 188 meters as the field has them, behind a serial
//! gateway emulated by tests/peers/cngateway.py: a peer written from the
//! standards with its own codec (tests/peers/cnframes.py), not meterflow's
//! simulator. It corrupts checksums on request, refuses identifiers, goes
//! silent, speaks the CJ/T 188 model variants and collides on broadcasts.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cnmeters::readings;
use crate::support::{Proc, bin, free_port, repo, wait_port};

/// The gateway, its port and its control folder.
struct Gateway {
    _proc: Proc,
    port: u16,
}

fn gateway(dir: &Path, meters: serde_json::Value) -> Gateway {
    let config = dir.join("gateway.json");
    std::fs::write(
        &config,
        serde_json::json!({"control_dir": dir, "meters": meters}).to_string(),
    )
    .expect("gateway config");
    let mut child = Command::new("python3")
        .arg(repo().join("tests/peers/cngateway.py"))
        .arg(&config)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port line");
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("gateway said {line:?}"));
    Gateway {
        _proc: Proc(child),
        port,
    }
}

fn probe(port: u16, args: &[&str]) -> (bool, String) {
    let endpoint = format!("rtu-over-tcp://127.0.0.1:{port}");
    let mut all = vec![
        "probe",
        "--endpoint",
        endpoint.as_str(),
        "--timeout-ms",
        "500",
    ];
    all.extend_from_slice(args);
    let o = crate::support::run(&all);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// `probe` names what it meets: a collision on the broadcast read-address
/// of a two-meter line, a bad checksum (and goes on with the other
/// identifiers), a CJ/T 188 meter that wants `1F 90` and keeps its bits the
/// collector's way, and the nameplate form of the address.
#[test]
fn probe_names_collisions_bad_checksums_and_cjt188_variants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(
        dir.path(),
        serde_json::json!([
            {"proto": "dlt645", "address": "000000001234", "start": 100.0, "rate_per_s": 0.0,
             "bad_checksum_on": [2]},
            {"proto": "dlt645", "address": "000000001235", "start": 200.0, "rate_per_s": 0.0},
            {"proto": "cjt188", "type": 16, "address": "78563412000000", "di": "1F90",
             "status": "battery5_valve67", "error": "ser_status", "start": 5.0, "rate_per_s": 0.0,
             "battery_low": true, "valve": "closed"}
        ]),
    );
    let (ok, out) = probe(gw.port, &["--dlt645", "discover"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("several meters answered at once (collision)"),
        "{out}"
    );
    assert!(!out.contains("no answer"), "{out}");
    // Request 1 is 00000000 (refused: the meter has no combined total),
    // request 2 is 00010000 and comes back with a corrupted checksum.
    let (ok, out) = probe(gw.port, &["--dlt645", "000000001234"]);
    assert!(!ok, "{out}");
    let line = |id: &str| {
        out.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("00010000").contains("bad checksum"), "{out}");
    assert!(line("00010000").contains("parity"), "{out}");
    assert!(
        line("00000000").contains("no requested data (0x02)"),
        "{out}"
    );
    assert!(
        line("02010100").ends_with("229.8 V"),
        "the probe went on: {out}"
    );
    // The CJ/T 188 meter: the standard DI order gets an error reply, the
    // other order answers; read with the collector layout, ST0 0x60 is
    // battery low (bit 5) and valve closed (bits 6-7 = 01).
    let (ok, out) = probe(
        gw.port,
        &["--cjt188", "78563412000000", "--layout", "collector"],
    );
    assert!(!ok, "a low battery needs a look: {out}");
    assert!(
        out.contains("address     78563412000000 on the wire (nameplate 00000012345678)"),
        "{out}"
    );
    assert!(out.contains("DI 901F: meter error"), "{out}");
    assert!(out.contains("set `di = \"1F90\"`"), "{out}");
    assert!(out.contains("cumulative  5 m3"), "{out}");
    assert!(
        out.contains("valve       Closed") && out.contains("battery     LOW"),
        "{out}"
    );
    // Told the order, it asks once, right away.
    let (_, out) = probe(
        gw.port,
        &[
            "--cjt188",
            "78563412000000",
            "--di-order",
            "1F90",
            "--layout",
            "collector",
        ],
    );
    assert!(!out.contains("DI 901F"), "{out}");
    // With the standard layout the same bits read as an open valve and a good
    // battery, and the probe shows both readings of them.
    let (_, out) = probe(
        gw.port,
        &["--cjt188", "78563412000000", "--di-order", "1F90"],
    );
    assert!(out.contains("valve       Open"), "{out}");
    assert!(
        out.contains("read with the `collector` layout: 0x0060 (valve closed, battery low)"),
        "{out}"
    );
}

fn site(dir: &Path, gw_port: u16, api_port: u16) -> std::path::PathBuf {
    let mut tokens = String::from("# role sha256:hash\n");
    tokens.push_str(&format!(
        "manager sha256:{}\n",
        meterflow_http::hash_token(crate::api::MANAGER)
    ));
    std::fs::write(dir.join("tokens"), tokens).expect("tokens");
    let mut s = format!(
        "[site]\nname = \"field\"\n[store]\npath = \"store.db\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1000\n\n\
         [[bus]]\nid = \"gw\"\ntransport = \"rtu_over_tcp\"\naddress = \"127.0.0.1:{gw_port}\"\ntimeout_ms = 500\nretries = 1\n\n\
         [api]\nlisten = \"127.0.0.1:{api_port}\"\ntokens_file = \"tokens\"\n\n\
         [[cjt188_layout]]\nname = \"model-b\"\ndi = \"1F90\"\nstatus = \"battery5_valve67\"\nerror = \"ser_status\"\n"
    );
    for (id, addr, items) in [
        ("e1", "000000001234", "\"00010000\", \"02010100\""),
        ("e2", "000000001235", "\"00010000\", \"02030000\""),
    ] {
        // No interval_s: the poll period is the expected interval.
        s.push_str(&format!(
            "\n[[meter]]\nid = \"{id}\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\nmax_rate = 500\nrollover = 1000000\ndlt645 = {{ bus = \"gw\", address = \"{addr}\", items = [{items}], poll_s = 2 }}\n"
        ));
    }
    for (id, addr, layout) in [
        ("w1", "78563412000000", "layout = \"model-b\""),
        ("w2", "13000000000000", "layout = \"standard\""),
        ("w3", "14000000000000", "layout = \"collector\""),
    ] {
        s.push_str(&format!(
            "\n[[meter]]\nid = \"{id}\"\nkind = \"water\"\nunit = \"m3\"\nserves = {{ building = \"b\" }}\nmax_rate = 50\ncjt188 = {{ bus = \"gw\", address = \"{addr}\", {layout}, poll_s = 2 }}\n"
        ));
    }
    let path = dir.join("site.toml");
    std::fs::write(&path, s).expect("site");
    path
}

/// `meterflow run` against the gateway for 36 s, with every meter silent
/// from 10 s to 20 s:
/// - the silence is estimated and alerted from `dlt645.poll_s` alone (2 s:
///   a gap over 4 s is estimated, over 6 s is `meter_silent`);
/// - one bad checksum (e1's 3rd request) is retried and costs nothing: no
///   parking, e1 read every 2 s before the silence, both items stored;
/// - an identifier e2 does not have is counted per poll and logged once;
/// - three CJ/T 188 layouts decode (a site `[[cjt188_layout]]` with DI
///   `1F 90`, the standard one, the collector's error reply), and their
///   counters are in `/metrics` and `GET /api/v1/buses`.
#[test]
fn serial_meters_in_the_field_retry_count_and_decode_their_variants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(
        dir.path(),
        serde_json::json!([
            {"proto": "dlt645", "address": "000000001234", "start": 100.0, "rate_per_s": 0.01,
             "bad_checksum_on": [3]},
            {"proto": "dlt645", "address": "000000001235", "start": 200.0, "rate_per_s": 0.01,
             "unsupported": ["02030000"]},
            {"proto": "cjt188", "type": 16, "address": "78563412000000", "di": "1F90",
             "status": "battery5_valve67", "error": "ser_status", "start": 5.0,
             "rate_per_s": 0.001, "battery_low": true, "valve": "closed"},
            {"proto": "cjt188", "type": 16, "address": "13000000000000", "di": "901F",
             "status": "valve01_battery2", "error": "di_ser_status", "start": 7.0,
             "rate_per_s": 0.001},
            {"proto": "cjt188", "type": 16, "address": "14000000000000", "di": "901F",
             "status": "battery5_valve67", "error": "ser_status", "start": 1.0,
             "rate_per_s": 0.0, "always_error": 0x60}
        ]),
    );
    let api = free_port();
    let path = site(dir.path(), gw.port, api);
    let p = path.to_str().expect("path");
    let o = crate::support::run(&["check", "--config", p]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("interval_s"), "nothing contradicts: {out}");
    let log = std::fs::File::create(dir.path().join("run.log")).expect("log");
    let mut run = bin()
        .args(["run", "--config", p, "--seconds", "36"])
        .env("METERFLOW_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("run");
    wait_port(api);
    let t0 = Instant::now();
    let at = |s: u64| {
        let d = Duration::from_secs(s).saturating_sub(t0.elapsed());
        std::thread::sleep(d);
    };
    at(10);
    std::fs::write(dir.path().join("silent"), "").expect("silence");
    let silence_start = meterflow_model::clock::now_ms();
    at(17);
    // Seven seconds without a reading, expected every 2 s: silent.
    let o = crate::support::run(&["alerts", "--config", p]);
    let alerts = String::from_utf8_lossy(&o.stdout).into_owned();
    at(20);
    std::fs::remove_file(dir.path().join("silent")).expect("voice");
    at(32);
    let (status, buses) = crate::api::get(api, "/api/v1/buses", Some(crate::api::MANAGER));
    assert_eq!(status, 200, "{buses}");
    let (status, metrics) = crate::api::request(api, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    // The operator's view names the identifiers that fail.
    let o = crate::support::run(&["status", "--config", p]);
    let status_text = String::from_utf8_lossy(&o.stdout).into_owned();
    let rc = run.wait().expect("run ends");
    let log = std::fs::read_to_string(dir.path().join("run.log")).expect("log");
    assert!(rc.success(), "{log}");
    let db = dir.path().join("store.db");

    // Silence: alerted while it lasted, and estimated and flagged once over.
    assert!(
        alerts
            .lines()
            .any(|l| l.contains("meter-silent") && l.contains("e1")),
        "{alerts}"
    );
    let c = rusqlite::Connection::open(&db).expect("store");
    let silent: i64 = c
        .query_row(
            "SELECT count(*) FROM anomalies a JOIN series s ON s.id = a.series WHERE s.meter = 'e1' AND a.kind = 'meter_silent'",
            [],
            |r| r.get(0),
        )
        .expect("anomalies");
    assert!(silent >= 1, "meter_silent recorded for e1");
    let estimated: i64 = c
        .query_row(
            "SELECT coalesce(sum(i.estimated_ms), 0) FROM intervals i JOIN series s ON s.id = i.series WHERE s.meter = 'e1' AND s.quantity = 'energy_import'",
            [],
            |r| r.get(0),
        )
        .expect("intervals");
    assert!(
        estimated >= 6_000,
        "at least 6 s of the 10 s silence estimated: {estimated} ms"
    );

    // e1: one bad checksum, retried at once. Before the silence it was read
    // every 2 s with no gap over 3 s, and each poll stored both items.
    let energy = readings(&db, "e1", "energy_import");
    let voltage = readings(&db, "e1", "voltage_l1");
    // (Polls a period or more before the silence: the one under way when
    // it began may have had its first item answered and not its second.)
    let before: Vec<i64> = energy
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t < silence_start - 2_000)
        .collect();
    assert!(before.len() >= 3, "{before:?}");
    for w in before.windows(2) {
        assert!(
            w[1] - w[0] <= 3_000,
            "no parking after one bad checksum: {before:?}"
        );
    }
    // Paired by poll, not by a time line: under load the second item of the
    // last poll before the line may be read just after it.
    for t in &before {
        assert!(
            voltage.iter().any(|(v, _)| (*t..*t + 1_000).contains(v)),
            "both items in every poll: no voltage within 1 s after the energy read at {t} ({voltage:?})"
        );
    }
    assert!(voltage.iter().all(|(_, v)| *v == 229.8));
    let bus = &buses["buses"][0];
    let e1 = bus["meters"]
        .as_array()
        .expect("meters")
        .iter()
        .find(|m| m["meter"] == "e1")
        .expect("e1");
    assert_eq!(e1["items"]["00010000"]["bad_checksums"], 1, "{e1}");
    assert!(
        metrics.contains(
            "meterflow_meter_item_bad_checksums_total{bus=\"gw\",meter=\"e1\",item=\"00010000\"} 1"
        ),
        "{metrics}"
    );
    assert_eq!(
        log.matches("Meter e1 answers, but with a bad checksum")
            .count(),
        1,
        "{log}"
    );
    // Silence logged once per meter (at most hourly), not every poll.
    assert_eq!(log.matches("Meter e1 is not answering").count(), 1, "{log}");

    // e2 does not have 02030000: refused every poll, counted, logged once.
    let e2 = bus["meters"]
        .as_array()
        .expect("meters")
        .iter()
        .find(|m| m["meter"] == "e2")
        .expect("e2");
    let refused = e2["items"]["02030000"]["error_replies"]["no requested data (0x02)"]
        .as_u64()
        .unwrap_or(0);
    assert!(refused >= 5, "{e2}");
    assert_eq!(
        log.matches("Meter e2 does not supply identifier 02030000")
            .count(),
        1,
        "{log}"
    );
    assert!(readings(&db, "e2", "energy_import").len() >= 5);
    assert!(
        status_text.lines().any(|l| l.contains("e2")
            && l.contains("02030000")
            && l.contains("error replies \"no requested data (0x02)\"")),
        "{status_text}"
    );
    assert!(metrics.contains("meterflow_meter_item_error_replies_total{bus=\"gw\",meter=\"e2\",item=\"02030000\",error=\"no requested data (0x02)\"}"), "{metrics}");
    // Error replies count as bus errors.
    let bus_errors: f64 = metrics
        .lines()
        .find(|l| l.starts_with("meterflow_bus_error_replies_total{bus=\"gw\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(bus_errors >= refused as f64, "{metrics}");

    // CJ/T 188 layouts: w1 (site layout, DI 1F 90, bits 5/6-7), w2 standard.
    let w1 = readings(&db, "w1", "volume");
    assert!(w1.len() >= 5, "{w1:?}");
    assert!(w1.iter().all(|(_, v)| (5.0..5.1).contains(v)), "{w1:?}");
    assert!(
        readings(&db, "w1", "battery_low")
            .iter()
            .all(|(_, v)| *v == 1.0)
    );
    assert!(readings(&db, "w1", "valve").iter().all(|(_, v)| *v == 1.0));
    let w2 = readings(&db, "w2", "volume");
    assert!(w2.len() >= 5 && w2.iter().all(|(_, v)| (7.0..7.1).contains(v)));
    assert!(
        readings(&db, "w2", "battery_low")
            .iter()
            .all(|(_, v)| *v == 0.0)
    );
    assert!(readings(&db, "w2", "valve").iter().all(|(_, v)| *v == 0.0));
    // w3 answers every read with an error (collector layout: SER ST0 ST1,
    // ST0 0x60): no value, the status named.
    assert!(readings(&db, "w3", "volume").is_empty());
    assert!(
        metrics.contains("meter=\"w3\",item=\"901F\",error=\"error reply, status 0x0060 (valve closed, battery low)\"}"),
        "{metrics}"
    );
}

/// `check` warns when `interval_s` contradicts the protocol's poll period.
#[test]
fn check_warns_when_interval_contradicts_the_poll_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = site(dir.path(), 1, free_port());
    let mut text = std::fs::read_to_string(&path).expect("site");
    text = text.replacen("id = \"e1\"\n", "id = \"e1\"\ninterval_s = 900\n", 1);
    std::fs::write(&path, text).expect("site");
    let o = crate::support::run(&["check", "--config", path.to_str().expect("path")]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("meter `e1`: interval_s = 900 but it is polled every 2 s"),
        "{out}"
    );
}

/// The `tou_mismatch` cross-check through the DL/T 645 path: two meters
/// behind the gateway report 费率 1–4 (00010100..00010400) filed by their
/// own TOU tables. The site's tariff makes the three hours around now 峰
/// and the rest 平; meter `ok` has the same table, meter `shifted` has it
/// with its clock 3 h ahead, so it files what it counts now under 平.
/// After 16 s of 2-s polls at 0.3 kWh/s (≈ 4.8 kWh):
/// - `ok`: registers and our split agree (all 峰): value 0;
/// - `shifted`: all its energy is under 平 where we split it to 峰: half
///   the sum of the differences (|Δ峰| + |Δ平|) / 2 = the whole energy,
///   value 1.0, above the 5 % threshold.
#[test]
fn tariff_registers_read_over_dlt645_from_a_shifted_meter_raise_the_mismatch() {
    use chrono::Timelike;
    let dir = tempfile::tempdir().expect("tempdir");
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let h = now.hour() as usize;
    // Hours h-1, h, h+1 are 峰 in both the site's tariff and the meters' table.
    let hours: Vec<&str> = (0..24)
        .map(|x| {
            if (x + 24 - h) % 24 <= 1 || (h + 24 - x) % 24 == 1 {
                "peak"
            } else {
                "flat"
            }
        })
        .collect();
    let table = serde_json::json!({"hours": hours, "shift_h": 0});
    let shifted = serde_json::json!({"hours": hours, "shift_h": 3});
    let gw = gateway(
        dir.path(),
        serde_json::json!([
            {"proto": "dlt645", "address": "000000000001", "start": 100.0, "rate_per_s": 0.3, "tou": table},
            {"proto": "dlt645", "address": "000000000002", "start": 100.0, "rate_per_s": 0.3, "tou": shifted}
        ]),
    );
    let (from, to) = ((h + 23) % 24, (h + 2) % 24);
    let mut s = format!(
        "[site]\nname = \"tou\"\ntimezone = \"Asia/Shanghai\"\n[store]\npath = \"store.db\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1000\n\n\
         [[bus]]\nid = \"gw\"\ntransport = \"rtu_over_tcp\"\naddress = \"127.0.0.1:{}\"\ntimeout_ms = 500\nretries = 1\n\n\
         [[tariff]]\nid = \"tou\"\ncarrier = \"electricity\"\nfrom = 2020-01-01\nsource = \"test\"\n\
         periods = {{ peak = [\"{from:02}:00-{to:02}:00\"], flat = [\"{to:02}:00-{from:02}:00\"] }}\nprices = {{ peak = 1.0, flat = 0.7 }}\n\n\
         [[alert]]\nid = \"tou\"\nkind = \"tou_mismatch\"\n",
        gw.port
    );
    for (id, addr) in [("ok", "000000000001"), ("shifted", "000000000002")] {
        s.push_str(&format!(
            "\n[[meter]]\nid = \"{id}\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\nmax_rate = 5000\n\
             dlt645 = {{ bus = \"gw\", address = \"{addr}\", items = [\"00010000\", \"00010100\", \"00010200\", \"00010300\", \"00010400\"], poll_s = 2 }}\n"
        ));
    }
    let path = dir.path().join("site.toml");
    std::fs::write(&path, s).expect("site");
    let p = path.to_str().expect("path");
    let o = crate::support::run(&["run", "--config", p, "--seconds", "16"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let site = meterflow_model::Site::load(&path).expect("site");
    let db = dir.path().join("store.db");
    // The registers came over the wire: the shifted meter filed under 平 (t3).
    let t2 = readings(&db, "shifted", "energy_import_t2");
    let t3 = readings(&db, "shifted", "energy_import_t3");
    assert!(t3.len() >= 4, "{t3:?}");
    let grew = |r: &[(i64, f64)]| r.last().map_or(0.0, |x| x.1) - r.first().map_or(0.0, |x| x.1);
    assert!(grew(&t3) > 2.0 && grew(&t2) == 0.0, "t2 {t2:?} t3 {t3:?}");
    let ok_t2 = readings(&db, "ok", "energy_import_t2");
    assert!(grew(&ok_t2) > 2.0, "{ok_t2:?}");

    // The rule on the day of the readings, as the day after's alerting sees it.
    let first = t3.first().map(|x| x.0).expect("a reading");
    let day = meterflow_core::time::local_date(first, site.tz);
    let next = meterflow_core::time::day_start(day.succ_opt().expect("day"), site.tz);
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let rule = site
        .alert_rules
        .iter()
        .find(|r| r.id == "tou")
        .expect("rule");
    let obs = meterflow_runtime::alerting::observe(
        &site,
        &reader,
        rule,
        next + 3_600_000,
        &meterflow_runtime::alerting::LiveMetrics::default(),
    )
    .expect("observe");
    let of = |m: &str| {
        obs.iter()
            .find(|o| o.target == m)
            .unwrap_or_else(|| panic!("no observation of {m}: {obs:?}"))
    };
    assert!(of("ok").value < 0.05, "{}", of("ok").detail);
    assert!(of("shifted").value > 0.95, "{}", of("shifted").detail);
}
