//! Modbus ingest against an independent peer: pymodbus (PyPI) serving a
//! register image built with Python's `struct`, over TCP and over a socat pty
//! pair (RTU). The peer logs every frame, so bus behaviour is checked from the
//! other side of the wire.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Proc, bin, free_port, repo, run_for};

pub(crate) fn wait_for(path: &Path, what: &str) {
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

enum Wire<'a> {
    Tcp(u16),
    Serial(&'a Path),
}

/// Start the pymodbus peer; returns it and its frame log.
fn peer(dir: &Path, image: &str, wire: Wire<'_>, late: Option<&str>) -> (Proc, PathBuf) {
    peer_with(dir, image, wire, late, &[])
}

fn peer_with(
    dir: &Path,
    image: &str,
    wire: Wire<'_>,
    late: Option<&str>,
    extra: &[&str],
) -> (Proc, PathBuf) {
    let image_path = dir.join("image.json");
    std::fs::write(&image_path, image).expect("image");
    let log = dir.join("peer.log");
    let ready = dir.join("peer.ready");
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/peers/modbus_server.py")).args([
        "--image",
        image_path.to_str().expect("path"),
        "--log",
        log.to_str().expect("path"),
        "--ready",
        ready.to_str().expect("path"),
    ]);
    match wire {
        Wire::Tcp(port) => cmd.args(["--tcp", &port.to_string()]),
        Wire::Serial(dev) => cmd.args(["--serial", dev.to_str().expect("path")]),
    };
    if let Some(l) = late {
        cmd.args(["--late", l]);
    }
    cmd.args(extra);
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with pymodbus (see .ci/run)");
    let p = Proc(child);
    wait_for(&ready, "the pymodbus peer");
    (p, log)
}

/// A socat pty pair; returns (process, our end, the peer's end).
pub(crate) fn pty_pair(dir: &Path) -> (Proc, PathBuf, PathBuf) {
    let (a, b) = (dir.join("ttyA"), dir.join("ttyB"));
    let child = Command::new("socat")
        .args([
            format!("pty,raw,echo=0,link={}", a.display()),
            format!("pty,raw,echo=0,link={}", b.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat (see .ci/run)");
    let p = Proc(child);
    wait_for(&a, "socat");
    wait_for(&b, "socat");
    (p, a, b)
}

/// (value or NaN, status) of every stored reading of a meter's quantity, in time order.
fn stored(db: &Path, meter: &str, quantity: &str) -> Vec<(f64, Option<i64>, i64)> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("store");
    let mut s = c
        .prepare("SELECT r.value, r.status, r.ts_ms FROM readings r JOIN series s ON s.id = r.series WHERE s.meter = ?1 AND s.quantity = ?2 ORDER BY r.ts_ms")
        .expect("prepare");
    s.query_map([meter, quantity], |r| {
        Ok((
            r.get::<_, Option<f64>>(0)?.unwrap_or(f64::NAN),
            r.get(1)?,
            r.get(2)?,
        ))
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

fn site_file(dir: &Path, bus: &str, profile: &str, meters: &[(&str, u8, &str)]) -> PathBuf {
    let mut s = format!(
        "[site]\nname = \"modbus test\"\n\n[store]\npath = \"store.db\"\n\n[[building]]\nid = \"b\"\ntotal_area_m2 = 100\n\n{bus}\n{profile}\n"
    );
    for (id, unit, extra) in meters {
        s.push_str(&format!(
            "[[meter]]\nid = \"{id}\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\nmodbus = {{ bus = \"bus1\", unit = {unit}, profile = \"p\", poll_s = 1{extra} }}\n\n"
        ));
    }
    let path = dir.join("site.toml");
    std::fs::write(&path, s).expect("site");
    path
}

/// (quantity, address, type, order, value) of the type/order matrix.
const MATRIX: &[(&str, u16, &str, &str, f64)] = &[
    ("a_u16", 0, "u16", "ABCD", 65000.0),
    ("a_i16", 1, "i16", "ABCD", -1234.0),
    ("b_u32_abcd", 2, "u32", "ABCD", 3_000_000_000.0),
    ("b_u32_cdab", 4, "u32", "CDAB", 123_456_789.0),
    ("b_i32_badc", 6, "i32", "BADC", -2_000_000.0),
    ("b_i32_dcba", 8, "i32", "DCBA", 7_654_321.0),
    ("c_f32_abcd", 10, "f32", "ABCD", 1234.5),
    ("c_f32_cdab", 12, "f32", "CDAB", -0.25),
    ("c_f32_badc", 14, "f32", "BADC", 50.0),
    ("c_f32_dcba", 16, "f32", "DCBA", 230.5),
    ("d_f64_abcd", 18, "f64", "ABCD", 12345.678),
    ("d_f64_cdab", 22, "f64", "CDAB", -9.75),
    ("d_u64_dcba", 26, "u64", "DCBA", 10_000_000_000.0),
    ("d_i64_badc", 30, "i64", "BADC", -5.0),
];

fn matrix_image(units: &[u8], with_gap: bool) -> String {
    let mut entries: Vec<String> = MATRIX
        .iter()
        .map(|(_, a, t, o, v)| format!("{{\"space\": \"holding\", \"address\": {a}, \"type\": \"{t}\", \"order\": \"{o}\", \"value\": {v}}}"))
        .collect();
    entries.push(
        "{\"space\": \"input\", \"address\": 72, \"type\": \"f32\", \"value\": 100.25}".to_string(),
    );
    if with_gap {
        // 100 and 101 exist; 103 does not: a read of 100..104 is illegal (exception 2).
        entries.push("{\"space\": \"holding\", \"address\": 100, \"raw\": [7, 8]}".to_string());
    }
    let units: Vec<String> = units
        .iter()
        .map(|u| format!("\"{u}\": [{}]", entries.join(", ")))
        .collect();
    format!("{{\"units\": {{{}}}}}", units.join(", "))
}

fn matrix_profile(with_gap: bool) -> String {
    let mut s = String::from(
        "[[profile]]\nname = \"p\"\nversion = 1\ndescription = \"type/order matrix\"\n\n",
    );
    for (q, a, t, o, _) in MATRIX {
        s.push_str(&format!("[[profile.field]]\nquantity = \"{q}\"\nspace = \"holding\"\naddress = {a}\ntype = \"{t}\"\norder = \"{o}\"\nunit = \"1\"\n\n"));
    }
    s.push_str("[[profile.field]]\nquantity = \"energy_import\"\nspace = \"input\"\naddress = 72\ntype = \"f32\"\nunit = \"kWh\"\ncounter = true\n\n");
    if with_gap {
        for a in [100, 101, 103] {
            s.push_str(&format!("[[profile.field]]\nquantity = \"e_{a}\"\nspace = \"holding\"\naddress = {a}\ntype = \"u16\"\nunit = \"1\"\n\n"));
        }
    }
    s
}

#[test]
fn tcp_every_type_and_order_decodes_and_a_bad_address_costs_only_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (_peer, log) = peer(dir.path(), &matrix_image(&[1], true), Wire::Tcp(port), None);
    let bus = format!(
        "[[bus]]\nid = \"bus1\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\"\ntimeout_ms = 1000\nmax_gap = 70\n"
    );
    let site = site_file(dir.path(), &bus, &matrix_profile(true), &[("m1", 1, "")]);
    run_for(&site, 3);
    let db = dir.path().join("store.db");
    for (q, _, _, _, v) in MATRIX {
        let got = stored(&db, "m1", q);
        assert!(!got.is_empty(), "no reading of {q}");
        assert!(
            got.iter().all(|(x, _, _)| x == v),
            "{q}: expected {v}, got {got:?}"
        );
    }
    let energy = stored(&db, "m1", "energy_import");
    assert!(
        energy.len() >= 2 && energy.iter().all(|(x, _, _)| *x == 100.25),
        "{energy:?}"
    );
    // The coalesced read 100..104 was refused; the split parts still delivered 100 and 101.
    assert!(
        stored(&db, "m1", "e_100").iter().all(|(x, _, _)| *x == 7.0)
            && !stored(&db, "m1", "e_100").is_empty()
    );
    assert!(
        stored(&db, "m1", "e_101").iter().all(|(x, _, _)| *x == 8.0)
            && !stored(&db, "m1", "e_101").is_empty()
    );
    assert!(stored(&db, "m1", "e_103").is_empty());
    // From the peer's side: exception answers (function 0x83) were sent.
    let log = std::fs::read_to_string(log).expect("log");
    assert!(
        log.lines()
            .any(|l| l.contains("\"tx\"") && l.contains("0183")),
        "no exception 0x83 in the peer log"
    );
}

/// Frames the peer received between two of its answers must be exactly one
/// request: two requests in one gap would mean overlapping requests on the line.
fn assert_one_request_at_a_time(log: &Path) {
    let text = std::fs::read_to_string(log).expect("log");
    let mut pending_bytes = 0usize;
    let mut requests = 0;
    for line in text.lines() {
        let hex = line
            .split("\"hex\": \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("");
        if line.contains("\"rx\"") {
            pending_bytes += hex.len() / 2;
        } else if line.contains("\"tx\"") {
            // A read request is 8 bytes (unit, function, address, count, CRC).
            assert_eq!(
                pending_bytes, 8,
                "between two answers the peer received {pending_bytes} bytes:\n{text}"
            );
            pending_bytes = 0;
            requests += 1;
        }
    }
    assert!(requests >= 4, "too few requests seen ({requests})");
}

#[test]
fn rtu_over_a_pty_two_meters_decode_and_never_overlap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_socat, ours, theirs) = pty_pair(dir.path());
    let (_peer, log) = peer(
        dir.path(),
        &matrix_image(&[1, 2], false),
        Wire::Serial(&theirs),
        None,
    );
    let bus = format!(
        "[[bus]]\nid = \"bus1\"\ntransport = \"rtu\"\ndevice = \"{}\"\nbaud = 9600\ntimeout_ms = 1000\nmax_gap = 70\n",
        ours.display()
    );
    let site = site_file(
        dir.path(),
        &bus,
        &matrix_profile(false),
        &[("m1", 1, ""), ("m2", 2, "")],
    );
    run_for(&site, 4);
    let db = dir.path().join("store.db");
    for meter in ["m1", "m2"] {
        for (q, _, _, _, v) in MATRIX {
            let got = stored(&db, meter, q);
            assert!(
                !got.is_empty() && got.iter().all(|(x, _, _)| x == v),
                "{meter} {q}: expected {v}, got {got:?}"
            );
        }
    }
    assert_one_request_at_a_time(&log);
}

#[test]
fn a_silent_meter_costs_its_neighbours_at_most_one_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // Units 1 and 3 exist; unit 2 does not, and the peer ignores it (no answer at all).
    let (_peer, _log) = peer(
        dir.path(),
        &matrix_image(&[1, 3], false),
        Wire::Tcp(port),
        None,
    );
    let bus = format!(
        "[[bus]]\nid = \"bus1\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\"\ntimeout_ms = 400\nmax_gap = 70\n"
    );
    let site = site_file(
        dir.path(),
        &bus,
        &matrix_profile(false),
        &[("m1", 1, ""), ("m2", 2, ""), ("m3", 3, "")],
    );
    run_for(&site, 6);
    let db = dir.path().join("store.db");
    assert!(stored(&db, "m2", "energy_import").is_empty());
    for meter in ["m1", "m3"] {
        let got = stored(&db, meter, "energy_import");
        // 6 s of 1 s polls: at least 4 complete polls each.
        assert!(got.len() >= 4, "{meter}: {} readings", got.len());
        // Consecutive polls are 1 s apart; the dead neighbour may add one 400 ms timeout.
        let worst = got.windows(2).map(|w| w[1].2 - w[0].2).max().unwrap_or(0);
        assert!(
            worst <= 1000 + 400 + 350,
            "{meter}: gap of {worst} ms between polls"
        );
    }
}

#[test]
fn a_sentinel_counter_is_rejected_never_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let image =
        "{\"units\": {\"1\": [{\"space\": \"holding\", \"address\": 0, \"raw\": [65535, 65535]}]}}";
    let (_peer, _log) = peer(dir.path(), image, Wire::Tcp(port), None);
    let bus = format!(
        "[[bus]]\nid = \"bus1\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\"\ntimeout_ms = 1000\n"
    );
    let profile = "[[profile]]\nname = \"p\"\nversion = 1\ndescription = \"u32 counter\"\n\n[[profile.field]]\nquantity = \"energy_import\"\nspace = \"holding\"\naddress = 0\ntype = \"u32\"\nscale = 0.01\nunit = \"kWh\"\ncounter = true\n";
    let site = site_file(dir.path(), &bus, profile, &[("m1", 1, "")]);
    run_for(&site, 3);
    let db = dir.path().join("store.db");
    let got = stored(&db, "m1", "energy_import");
    // Status 6 = rejected (invalid value); the value is kept as not-a-number, never 0.
    assert!(
        !got.is_empty() && got.iter().all(|(v, s, _)| v.is_nan() && *s == Some(6)),
        "{got:?}"
    );
    let c = rusqlite::Connection::open(&db).expect("store");
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM anomalies WHERE kind = 'invalid_value'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n as usize, got.len());
    let intervals: i64 = c
        .query_row("SELECT count(*) FROM intervals", [], |r| r.get(0))
        .expect("count");
    assert_eq!(intervals, 0);
}

/// Every value recorded belongs to the register it claims, although the peer
/// answered one request after our timeout.
fn stale_reply_case(dir: &Path, bus: String, wire: Wire<'_>) {
    // Unit U: register 0 holds U×1000 (counter), register 10 holds U×1000+10 (fast gauge):
    // same function, same count, different registers, so a stale answer would show.
    let entries = |u: u32| {
        format!(
            "[{{\"space\": \"holding\", \"address\": 0, \"raw\": [{}]}}, {{\"space\": \"holding\", \"address\": 10, \"raw\": [{}]}}]",
            u * 1000,
            u * 1000 + 10
        )
    };
    let image = format!(
        "{{\"units\": {{\"1\": {}, \"2\": {}}}}}",
        entries(1),
        entries(2)
    );
    let (_peer, log) = peer(dir, &image, wire, Some("1:700:1"));
    let profile = "[[profile]]\nname = \"p\"\nversion = 1\ndescription = \"stale-reply check\"\n\n\
        [[profile.field]]\nquantity = \"energy_import\"\nspace = \"holding\"\naddress = 0\ntype = \"u16\"\nunit = \"kWh\"\ncounter = true\n\n\
        [[profile.field]]\nquantity = \"power\"\nspace = \"holding\"\naddress = 10\ntype = \"u16\"\nunit = \"kW\"\ngroup = \"fast\"\n";
    let site = site_file(
        dir,
        &bus,
        profile,
        &[
            ("m1", 1, ", fast_poll_s = 1"),
            ("m2", 2, ", fast_poll_s = 1"),
        ],
    );
    run_for(&site, 8);
    let db = dir.join("store.db");
    for (meter, u) in [("m1", 1.0), ("m2", 2.0)] {
        let e = stored(&db, meter, "energy_import");
        let p = stored(&db, meter, "power");
        assert!(
            !e.is_empty() && !p.is_empty(),
            "{meter}: energy {e:?} power {p:?}"
        );
        assert!(
            e.iter().all(|(v, _, _)| *v == u * 1000.0),
            "{meter} energy: {e:?}"
        );
        assert!(
            p.iter().all(|(v, _, _)| *v == u * 1000.0 + 10.0),
            "{meter} power: {p:?}"
        );
    }
    // The peer really answered late at least once (700 ms after the request, timeout 300 ms).
    let text = std::fs::read_to_string(log).expect("log");
    let mut last_rx = 0.0f64;
    let mut late = 0;
    for line in text.lines() {
        let t: f64 = line
            .split("\"t\": ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        if line.contains("\"rx\"") {
            last_rx = t;
        } else if t - last_rx > 0.6 {
            late += 1;
        }
    }
    assert!(late >= 1, "the peer never answered late:\n{text}");
}

#[test]
fn stale_reply_over_tcp_is_never_taken_for_the_next_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let bus = format!(
        "[[bus]]\nid = \"bus1\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\"\ntimeout_ms = 300\nretries = 0\n"
    );
    stale_reply_case(dir.path(), bus, Wire::Tcp(port));
}

#[test]
fn stale_reply_over_a_pty_is_never_taken_for_the_next_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_socat, ours, theirs) = pty_pair(dir.path());
    let bus = format!(
        "[[bus]]\nid = \"bus1\"\ntransport = \"rtu\"\ndevice = \"{}\"\nbaud = 9600\ntimeout_ms = 300\nretries = 0\n",
        ours.display()
    );
    stale_reply_case(dir.path(), bus, Wire::Serial(&theirs));
}

/// `meterflow demo` for 30 s: the store then holds intervals for every
/// simulated meter. Started a second time on the same folder, every meter
/// carries on from its last reading: no reset, no implausible delta, and each
/// meter's consumption over both runs equals its last reading minus its first.
/// Neither start nor stop logs a warning or an error.
#[test]
fn demo_runs_twice_and_fills_intervals_for_every_meter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = bin()
        .current_dir(dir.path())
        .args(["demo", "--seconds", "30"])
        .output()
        .expect("demo");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !err.contains("WARN") && !err.contains("ERROR"),
        "a normal start and stop are quiet: {err}"
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // 8 meters over Modbus TCP, 3 pushing over MQTT through the embedded broker.
    assert!(
        out.contains("8 simulated meters on Modbus TCP 127.0.0.1:")
            && out.contains(", 3 on MQTT (embedded broker 127.0.0.1:"),
        "{out}"
    );
    let mqtt = out
        .lines()
        .find(|l| l.starts_with("mqtt embedded: "))
        .expect("mqtt summary");
    let nums: Vec<u64> = mqtt
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // 30 s of 5 s publishes for 3 meters: about 18 messages, each acknowledged after its commit.
    assert!(
        nums.len() == 2 && nums[0] >= 12 && nums[0] == nums[1],
        "{mqtt}"
    );
    let db = dir.path().join("data/demo/demo.db");
    let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("demo store");
    let mut s = c.prepare("SELECT s.meter, count(*) FROM intervals i JOIN series s ON s.id = i.series GROUP BY s.meter").expect("prepare");
    let rows: Vec<(String, i64)> = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    let site = meterflow_model::Site::parse(meterflow_sim::site::DEMO_SITE, Path::new("demo.toml"))
        .expect("demo site");
    for m in &site.meters {
        assert!(
            rows.iter().any(|(id, n)| id == &m.id && *n >= 1),
            "no intervals for {}: {rows:?}",
            m.id
        );
    }
    // Every poll answered: no timeouts or exceptions on the loopback simulator.
    assert!(out.contains(" 0 timeouts, 0 exceptions"), "{out}");
    // One sign-in token per role, owner-only, named on the way in; their
    // hashes (not the tokens) in the tokens file.
    assert!(
        out.contains("/login with a token from data/demo/demo-tokens.txt"),
        "{out}"
    );
    let tokens = dir.path().join("data/demo/demo-tokens.txt");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&tokens)
            .expect("demo tokens")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "owner-only: {mode:o}");
    }
    let plain = std::fs::read_to_string(&tokens).expect("demo tokens");
    let manager = plain
        .lines()
        .find_map(|l| l.strip_prefix("manager "))
        .expect("a manager token");
    let hashes = std::fs::read_to_string(dir.path().join("data/demo/api-tokens")).expect("hashes");
    assert!(
        hashes.contains(&meterflow_http::hash_token(manager)) && !hashes.contains(manager),
        "{hashes}"
    );
    drop(s);
    drop(c);

    let o = bin()
        .current_dir(dir.path())
        .args(["demo", "--seconds", "15"])
        .output()
        .expect("demo again");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("carrying on from the kept store: 11 meters"),
        "{out}"
    );
    assert!(!err.contains("WARN") && !err.contains("ERROR"), "{err}");
    let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("demo store");
    let bad: i64 = c
        .query_row(
            "SELECT count(*) FROM anomalies WHERE kind IN ('counter_reset', 'implausible_delta', 'counter_jump')",
            [],
            |r| r.get(0),
        )
        .expect("anomalies");
    assert_eq!(
        bad, 0,
        "no reset, jump or implausible delta across the restart"
    );
    for m in &site.meters {
        let (first, last, micro): (f64, f64, i64) = c
            .query_row(
                "SELECT (SELECT value FROM readings r WHERE r.series = s.id AND value IS NOT NULL ORDER BY ts_ms LIMIT 1), \
                        (SELECT value FROM readings r WHERE r.series = s.id AND value IS NOT NULL ORDER BY ts_ms DESC LIMIT 1), \
                        (SELECT coalesce(sum(micro), 0) FROM intervals i WHERE i.series = s.id) \
                 FROM series s WHERE s.meter = ?1 AND s.quantity = ?2",
                [m.id.as_str(), m.counter_quantity()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("series");
        // Consumption = (last − first) × multiplier, to the register's
        // micro-unit rounding at both ends (× multiplier).
        let want = (last - first) * m.multiplier;
        assert!(
            (micro as f64 / 1e6 - want).abs() <= 1.01e-6 * m.multiplier + 1e-9,
            "{}: intervals {} vs readings {want}",
            m.id,
            micro as f64 / 1e6
        );
        assert!(last > first, "{} counted on: {first} → {last}", m.id);
    }
    let o = crate::support::run(&[
        "alerts",
        "--config",
        dir.path()
            .join("data/demo/site.toml")
            .to_str()
            .expect("path"),
    ]);
    let alerts = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!alerts.contains("counter-reset"), "{alerts}");
}

/// A device reset seen over Modbus adds no consumption (our simulator is the
/// device here because the fault is injected mid-run; the pipeline runs in-process).
#[test]
fn a_counter_reset_on_the_wire_adds_no_consumption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let bus = format!("[[bus]]\nid = \"bus1\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\"\ntimeout_ms = 1000\n");
        let path = site_file(dir.path(), &bus, "", &[("m1", 1, "")]);
        let src = std::fs::read_to_string(&path).expect("site").replace("profile = \"p\"", "profile = \"sdm630\"").replace("unit = \"kWh\"", "unit = \"kWh\"\nrollover = 100000000\nmax_rate = 100000");
        std::fs::write(&path, src).expect("site");
        let site = meterflow_model::Site::load(&path).expect("valid site");
        let bank = meterflow_sim::site::bank_for(&site, "bus1");
        let device = bank.devices.get(&1).cloned().expect("unit 1");
        let sim = tokio::spawn(meterflow_sim::server::serve(listener, bank));
        let resetter = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3500)).await;
            device.set_counter(5.0); // the meter restarts from 5 kWh
        });
        let opts = meterflow_runtime::pipeline::RunOptions { live: false, duration: Some(Duration::from_secs(8)), stop: None, committed: None, api: None, status_every: None };
        meterflow_runtime::pipeline::run(site, opts).await.expect("run");
        let _ = resetter.await;
        sim.abort();
    });
    let db = dir.path().join("store.db");
    let r = stored(&db, "m1", "energy_import");
    // Status 3 = reset: exactly one, after which values restart near 5.
    let k = r
        .iter()
        .position(|(_, s, _)| *s == Some(3))
        .expect("a reset was recorded");
    assert_eq!(r.iter().filter(|(_, s, _)| *s == Some(3)).count(), 1);
    // At this meter's simulated load (about 5.7 kWh/s) the first value after the
    // reset to 5 is a few seconds' consumption above 5, far below the old level.
    assert!(
        r[k].0 >= 5.0 && r[k].0 < 100.0 && r[k - 1].0 > 1000.0,
        "{r:?}"
    );
    // Consumption counted = what the counter did before and after, nothing across.
    let before = r[k - 1].0 - r[0].0;
    let after = r[r.len() - 1].0 - r[k].0;
    let c = rusqlite::Connection::open(&db).expect("store");
    let micro: i64 = c
        .query_row("SELECT coalesce(sum(micro), 0) FROM intervals", [], |row| {
            row.get(0)
        })
        .expect("sum");
    let total = micro as f64 / 1e6;
    assert!(
        (total - (before + after)).abs() < 1e-3,
        "total {total} vs before {before} + after {after}: {r:?}"
    );
    let resets: i64 = c
        .query_row(
            "SELECT count(*) FROM anomalies WHERE kind = 'counter_reset'",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(resets, 1);
}

/// `meterflow probe` shows plausible SDM630 values, and a word-swapped device is flagged.
#[test]
fn probe_shows_plausible_values_and_flags_a_wrong_word_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let sdm = |order: &str| {
        let f = |a: u16, v: f64| {
            format!(
                "{{\"space\": \"input\", \"address\": {a}, \"type\": \"f32\", \"order\": \"{order}\", \"value\": {v}}}"
            )
        };
        [
            f(0, 230.1),
            f(2, 229.8),
            f(4, 231.0),
            f(6, 5.0),
            f(8, 5.1),
            f(10, 4.9),
            f(0x34, 3450.0),
            f(0x3E, 0.98),
            f(0x46, 50.02),
            f(0x48, 1234.5),
            f(0x4A, 0.0),
            f(0x156, 1234.5),
        ]
        .join(", ")
    };
    // Unit 1 speaks ABCD like a real SDM630; unit 2 sends the same values word-swapped.
    let image = format!(
        "{{\"units\": {{\"1\": [{}], \"2\": [{}]}}}}",
        sdm("ABCD"),
        sdm("CDAB")
    );
    let (_peer, _log) = peer(dir.path(), &image, Wire::Tcp(port), None);
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let o = bin()
        .args([
            "probe",
            "--endpoint",
            &endpoint,
            "--unit",
            "1",
            "--profile",
            "sdm630",
        ])
        .output()
        .expect("probe");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}");
    assert!(out.contains("all fields plausible"), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .map(str::to_string)
            .unwrap_or_default()
    };
    // 230.1 as f32 rounds to 0x4366_199A (struct.pack(">f", 230.1)).
    assert!(
        line("voltage_l1").contains("4366 199A") && line("voltage_l1").contains("230.1000"),
        "{out}"
    );
    assert!(
        line("energy_import").contains("1234.5000") && line("energy_import").ends_with("ok"),
        "{out}"
    );

    let o = bin()
        .args([
            "probe",
            "--endpoint",
            &endpoint,
            "--unit",
            "2",
            "--profile",
            "sdm630",
        ])
        .output()
        .expect("probe");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        line_of(&out, "voltage_l1").contains("CHECK")
            && line_of(&out, "frequency").contains("CHECK"),
        "{out}"
    );
}

/// A sparse register image (voltage_l2 missing inside the coalesced
/// voltage-current block): probe splits the refused block like the poller
/// and reads every present field; with PT and CT read from the meter it
/// shows the primary side; an absent unit gets one line.
#[test]
fn probe_splits_refused_blocks_shows_the_primary_side_and_names_an_absent_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let f = |a: u16, t: &str, v: i64| {
        format!("{{\"space\": \"holding\", \"address\": {a}, \"type\": \"{t}\", \"value\": {v}}}")
    };
    // Acrel ADL400 map (secondary side, scaled integers); no register 0x62.
    let fields = [
        f(0x00, "u32", 123_456), // energy_total 1 234.56 kWh
        f(0x0A, "u32", 100_000), // energy_import 1 000.00 kWh
        f(0x14, "u32", 0),
        f(0x61, "u16", 2301), // voltage_l1 230.1 V
        f(0x63, "u16", 2299), // voltage_l3 229.9 V
        f(0x64, "u16", 150),  // current_l1 1.50 A
        f(0x65, "u16", 150),
        f(0x66, "u16", 150),
        f(0x77, "u16", 5000),  // 50.00 Hz
        f(0x8D, "u16", 10),    // PT 10
        f(0x8E, "u16", 40),    // CT 40
        f(0x16A, "i32", 1500), // power 1.500 kW
    ];
    let image = format!("{{\"units\": {{\"1\": [{}]}}}}", fields.join(", "));
    let (_peer, _log) = peer(dir.path(), &image, Wire::Tcp(port), None);
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let probe = |unit: &str| {
        let o = bin()
            .args([
                "probe",
                "--endpoint",
                &endpoint,
                "--unit",
                unit,
                "--profile",
                "acrel-adl400",
            ])
            .output()
            .expect("probe");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (code, out) = probe("1");
    assert_eq!(code, Some(1), "voltage_l2 needs a look: {out}");
    for (q, value) in [
        ("voltage_l1", "230.1000"),
        ("voltage_l3", "229.9000"),
        ("current_l1", "1.5000"),
        ("current_l3", "1.5000"),
        ("energy_import", "1000.0000"),
    ] {
        assert!(line_of(&out, q).contains(value), "{q}: {out}");
        assert!(line_of(&out, q).ends_with("ok"), "{q}: {out}");
    }
    assert!(line_of(&out, "voltage_l2").contains("exception 2"), "{out}");
    // Primary side: energy and power × PT × CT = × 400, voltage × 10, current × 40.
    assert!(
        line_of(&out, "energy_import").contains("400000.0000"),
        "{out}"
    );
    assert!(line_of(&out, "power ").contains("600.0000"), "{out}");
    assert!(line_of(&out, "voltage_l1").contains("2301.0000"), "{out}");
    assert!(line_of(&out, "current_l1").contains("60.0000"), "{out}");
    assert!(out.contains("give it `multiplier = 400`"), "{out}");
    // No device at unit 9: one line, not one per field.
    let (code, out) = probe("9");
    assert_eq!(code, Some(1));
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    assert!(out.starts_with("no device answers at unit 9"), "{out}");
}

fn line_of(out: &str, name: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(name))
        .map(str::to_string)
        .unwrap_or_default()
}

/// RTU frames through a serial-to-TCP gateway (pymodbus TCP server with the RTU framer).
#[test]
fn rtu_over_tcp_gateway_decodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (_peer, _log) = peer_with(
        dir.path(),
        &matrix_image(&[4], false),
        Wire::Tcp(port),
        None,
        &["--framer", "rtu"],
    );
    let bus = format!(
        "[[bus]]\nid = \"bus1\"\ntransport = \"rtu_over_tcp\"\naddress = \"127.0.0.1:{port}\"\ntimeout_ms = 1000\nmax_gap = 70\n"
    );
    let site = site_file(dir.path(), &bus, &matrix_profile(false), &[("m4", 4, "")]);
    run_for(&site, 3);
    let db = dir.path().join("store.db");
    for (q, _, _, _, v) in MATRIX {
        let got = stored(&db, "m4", q);
        assert!(
            !got.is_empty() && got.iter().all(|(x, _, _)| x == v),
            "{q}: expected {v}, got {got:?}"
        );
    }
}

/// Readings per meter after `seconds` of polling 6 simulated devices that each
/// answer 300 ms late, with `concurrency` requests in flight on a TCP bus.
fn polls_with_concurrency(concurrency: usize, seconds: u64) -> Vec<usize> {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let bus = format!("[[bus]]\nid = \"bus1\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\"\ntimeout_ms = 1000\nconcurrency = {concurrency}\n");
        let meters: Vec<(String, u8)> = (1..=6).map(|u| (format!("m{u}"), u)).collect();
        let spec: Vec<(&str, u8, &str)> = meters.iter().map(|(m, u)| (m.as_str(), *u, "")).collect();
        let path = site_file(dir.path(), &bus, "", &spec);
        let src = std::fs::read_to_string(&path).expect("site").replace("profile = \"p\"", "profile = \"sdm630\"");
        std::fs::write(&path, src).expect("site");
        let site = meterflow_model::Site::load(&path).expect("valid site");
        let bank = meterflow_sim::site::bank_for(&site, "bus1");
        for d in bank.devices.values() {
            d.set_fault(meterflow_sim::server::Fault::Late(Duration::from_millis(300)));
        }
        let sim = tokio::spawn(meterflow_sim::server::serve(listener, bank));
        let opts = meterflow_runtime::pipeline::RunOptions { live: false, duration: Some(Duration::from_secs(seconds)), stop: None, committed: None, api: None, status_every: None };
        meterflow_runtime::pipeline::run(site, opts).await.expect("run");
        sim.abort();
    });
    let db = dir.path().join("store.db");
    (1..=6)
        .map(|u| stored(&db, &format!("m{u}"), "energy_import").len())
        .collect()
}

/// True Modbus TCP devices may take several requests at once: with 3 in
/// flight, six 300 ms devices fit a 1 s poll period; one at a time cannot
/// (6 × 2 reads × 300 ms = 3.6 s per cycle).
#[test]
fn tcp_concurrency_keeps_slow_devices_on_schedule() {
    let parallel = polls_with_concurrency(3, 6);
    let serial = polls_with_concurrency(1, 6);
    // Concurrency 3: a cycle takes 2 × 2 × 300 ms = 1.2 s, about 5 polls in 6 s.
    assert!(
        parallel.iter().all(|&n| n >= 4),
        "concurrency 3: {parallel:?}"
    );
    // One at a time: 3.6 s per cycle, at most 2 polls per meter in 6 s.
    assert!(serial.iter().all(|&n| n <= 2), "concurrency 1: {serial:?}");
}

/// SIGTERM stops `meterflow demo` cleanly: the pollers stop, the writer drains,
/// and what was read is in the store.
#[test]
fn sigterm_drains_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = bin()
        .current_dir(dir.path())
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("demo");
    std::thread::sleep(Duration::from_secs(8));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let o = child.wait_with_output().expect("wait");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stored_line = out
        .lines()
        .find(|l| l.starts_with("stored "))
        .expect("summary line");
    let n: i64 = stored_line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("count");
    assert!(n > 0, "{out}");
    // Everything reported stored is in the store: nothing was lost on the way out.
    assert_eq!(
        crate::support::count(&dir.path().join("data/demo/demo.db"), "readings"),
        n
    );
}

/// `meterflow simulate --rtu` serves meters on a pty, with faults from the command line:
/// a silent unit yields nothing, a sentinel unit yields rejected readings, the healthy one values.
#[test]
fn simulator_serves_rtu_on_a_pty_with_injected_faults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_socat, ours, theirs) = pty_pair(dir.path());
    let bus = format!(
        "[[bus]]\nid = \"bus1\"\ntransport = \"rtu\"\ndevice = \"{}\"\nbaud = 19200\ntimeout_ms = 300\n",
        ours.display()
    );
    let site = site_file(
        dir.path(),
        &bus,
        "",
        &[("m1", 1, ""), ("m2", 2, ""), ("m3", 3, "")],
    );
    let src = std::fs::read_to_string(&site)
        .expect("site")
        .replace("profile = \"p\"", "profile = \"sdm630\"");
    std::fs::write(&site, src).expect("site");
    let sim = bin()
        .args([
            "simulate",
            "--config",
            site.to_str().expect("path"),
            "--rtu",
            theirs.to_str().expect("path"),
            "--fault",
            "2=silent",
            "--fault",
            "3=sentinel",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("simulate");
    let _sim = Proc(sim);
    std::thread::sleep(Duration::from_millis(1500));
    run_for(&site, 4);
    let db = dir.path().join("store.db");
    let m1 = stored(&db, "m1", "energy_import");
    assert!(
        m1.len() >= 2
            && m1
                .iter()
                .all(|(v, s, _)| v.is_finite() && *v > 1000.0 && *s != Some(6)),
        "{m1:?}"
    );
    assert!(stored(&db, "m2", "energy_import").is_empty());
    let m3 = stored(&db, "m3", "energy_import");
    assert!(
        !m3.is_empty() && m3.iter().all(|(v, s, _)| v.is_nan() && *s == Some(6)),
        "{m3:?}"
    );
}

/// A two-worker tokio runtime for the in-process pipeline tests.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
