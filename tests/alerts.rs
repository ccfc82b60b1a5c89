//! Alerts driven by simulated data with known events, evaluated hour by hour
//! as the data arrives, delivered to a real HTTP webhook receiver that is down
//! for the first days.
//!
//! Two weeks, Monday 2025-03-03 to Sunday 2025-03-16 (Asia/Shanghai):
//! - EL (building B1, agency A): 40 kW in working hours (weekdays 08-18),
//!   5 kW otherwise; lights left on over the weekend: 30 kW from Saturday
//!   00:00 to Monday 00:00.
//! - W (B1 water): 0.5 m³/h 07-19, nothing at night; a leak of 0.1 m³/h from
//!   Tuesday 2025-03-11 00:00 until it is fixed on Thursday 2025-03-13 00:00.
//! - Q_EL (agency Q, 10 persons): a constant 13.3546 kW, 20 % over the
//!   per-capita 约束值 1 197.8 kgce/person·a: 1.2 × 1 197.8 × 10 / 0.1229 kWh
//!   a year = 116 953.6 kWh / 8 760 h = 13.3509 kW (13.3546 with 365 d).
//! - Control: EL2 and W2 in building B2 (agency Z) with the same clean pattern.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use meterflow_model::{Reading, Site, TimeSource};
use meterflow_runtime::alerting::{Evaluator, LiveMetrics};

const SITE: &str = r#"
[site]
name = "alert scenario"
quota_set = "shandong-db37"
# Project from the first hour (the default waits for 30 days with data):
# the scenario is a few days long.
projection_min_days = 0

[store]
path = "store.db"

[alerting]
retry_initial_s = 60
retry_max_s = 3600
max_attempts = 1000

[[building]]
id = "B1"
total_area_m2 = 1000

[[building]]
id = "B2"
total_area_m2 = 1000

[[agency]]
id = "A"
name = "A"

[[agency]]
id = "Z"
name = "Z (control)"

[[agency]]
id = "Q"
name = "Q (over quota)"

[[headcount]]
agency = "A"
from = 2025-01-01
persons = 100

[[headcount]]
agency = "Z"
from = 2025-01-01
persons = 100

[[headcount]]
agency = "Q"
from = 2025-01-01
persons = 10

[[space]]
agency = "A"
building = "B1"
from = 2025-01-01
area_m2 = 1000

[[space]]
agency = "Z"
building = "B2"
from = 2025-01-01
area_m2 = 1000

[[meter]]
id = "EL"
kind = "electricity"
unit = "kWh"
serves = { building = "B1" }

[[meter]]
id = "W"
kind = "water"
unit = "m3"
serves = { building = "B1" }

[[meter]]
id = "EL2"
kind = "electricity"
unit = "kWh"
serves = { building = "B2" }

[[meter]]
id = "W2"
kind = "water"
unit = "m3"
serves = { building = "B2" }

[[meter]]
id = "Q_EL"
kind = "electricity"
unit = "kWh"
serves = { agency = "Q" }

[[alert]]
id = "off-hours"
kind = "off_hours_baseload"
level = "building"
threshold = 0.5
for_s = 7200
work_hours = "08:00-18:00"

[[alert]]
id = "leak"
kind = "night_flow"
severity = "critical"
threshold = 0.02
nights = 2
night = "01:00-05:00"

[[alert]]
id = "quota"
kind = "quota_projection"
threshold = 1.0

[[notifier]]
id = "hook"
kind = "webhook"
url = "http://127.0.0.1:PORT/alerts"
secret_file = "hook.secret"
"#;

const HOUR: i64 = 3_600_000;
/// 2025-03-03 00:00 Asia/Shanghai = 2025-03-02T16:00Z.
const START: i64 = 1_740_931_200_000;

/// Local time of `ms` as "MM-DD HH:MM".
fn local(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms + 8 * HOUR)
        .map(|t| t.format("%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// Rates at the local time `ms` (kW or m³/h).
fn rate(meter: &str, ms: i64) -> f64 {
    let h = (ms - START).rem_euclid(24 * HOUR) / HOUR;
    let day = (ms - START).div_euclid(24 * HOUR); // 0 = Monday 03-03
    let weekday = day % 7 < 5;
    let work = weekday && (8..18).contains(&h);
    match meter {
        "EL" if (5..7).contains(&day) => 30.0, // Saturday 03-08 and Sunday 03-09
        "EL" | "EL2" => {
            if work {
                40.0
            } else {
                5.0
            }
        }
        "W" | "W2" => {
            let base = if (7..19).contains(&h) { 0.5 } else { 0.0 };
            // Leak: 03-11 00:00 (day 8) until 03-13 00:00 (day 10).
            if meter == "W" && (8..10).contains(&day) {
                base + 0.1
            } else {
                base
            }
        }
        "Q_EL" => 1.2 * 1197.8 * 10.0 / 0.1229 / 365.0 / 24.0,
        _ => 0.0,
    }
}

struct Received {
    body: serde_json::Value,
    signature: String,
    raw: Vec<u8>,
}

/// A webhook receiver: answers 503 while `down`, else records and answers 200.
fn receiver(
    down: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Received>>>,
    refused: Arc<Mutex<usize>>,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut len = 0usize;
            let mut signature = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("x-meterflow-signature:") {
                    signature = line["x-meterflow-signature:".len()..].trim().to_string();
                }
            }
            let mut raw = vec![0u8; len];
            let _ = reader.read_exact(&mut raw);
            let status = if down.load(Ordering::SeqCst) {
                *refused.lock().expect("lock") += 1;
                "503 Service Unavailable"
            } else {
                let body = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
                got.lock().expect("lock").push(Received {
                    body,
                    signature,
                    raw,
                });
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    port
}

#[test]
fn alerts_fire_resolve_and_reach_a_webhook_that_was_down() {
    let secret = "s3cret-for-the-test";
    let down = Arc::new(AtomicBool::new(true));
    let got = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0usize));
    let port = receiver(Arc::clone(&down), Arc::clone(&got), Arc::clone(&refused));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    std::fs::write(&path, SITE.replace("PORT", &port.to_string())).expect("site");
    std::fs::write(dir.path().join("hook.secret"), format!("{secret}\n")).expect("secret");
    let site = Site::load(&path).expect("valid site");
    let mut writer = meterflow_store::Writer::open(&site).expect("store");
    let mut evaluator = Evaluator::open(&site).expect("alerts");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut worker =
        meterflow_runtime::notify::Worker::new(Arc::new(site.clone())).expect("worker");
    let meters = ["EL", "W", "EL2", "W2", "Q_EL"];
    let mut counters = [0.0f64; 5];
    let mut events = Vec::new();
    // Readings every 15 minutes, written an hour at a time; evaluate at each hour's end.
    let mut t = START;
    let end = START + 14 * 24 * HOUR;
    while t < end {
        let mut batch = Vec::new();
        for q in 0..4 {
            let ts = t + q * 900_000;
            for (i, m) in meters.iter().enumerate() {
                let quantity = site
                    .meter(m)
                    .map(|x| x.counter_quantity().to_string())
                    .unwrap_or_default();
                batch.push(Reading {
                    meter: (*m).into(),
                    quantity,
                    ts_ms: ts,
                    value: counters[i],
                    recv_ms: ts,
                    time_source: TimeSource::Device,
                });
                counters[i] += rate(m, ts) * 0.25;
            }
        }
        writer.write_batch(&batch, "test").expect("write");
        t += HOUR;
        // The receiver comes back on Sunday 03-09 00:00.
        if t >= START + 6 * 24 * HOUR {
            down.store(false, Ordering::SeqCst);
        }
        // A restart on Saturday noon: the alert state is reopened from the store.
        if t == START + (5 * 24 + 12) * HOUR {
            evaluator = Evaluator::open(&site).expect("reopen");
        }
        let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
        for e in evaluator
            .evaluate(&site, &reader, t, &LiveMetrics::default())
            .expect("evaluate")
        {
            events.push((
                e.event.clone(),
                e.rule.clone(),
                e.target.clone(),
                local(e.ts_ms),
            ));
        }
        // An operator acknowledges the weekend alert on Sunday 10:00: no notification.
        if t == START + (6 * 24 + 10) * HOUR {
            assert!(evaluator.acknowledge("off-hours", "B1", t).expect("ack"));
        }
        rt.block_on(worker.deliver_due(evaluator.db(), t))
            .expect("deliver");
    }
    let ev = |e: &str, r: &str, tg: &str, at: &str| {
        (e.to_string(), r.to_string(), tg.to_string(), at.to_string())
    };
    // Expected, by hand:
    // - quota: Q's run-rate projection is 1.2 × the 约束值 from the first hour → fired 03-03 01:00.
    // - off-hours: Saturday 00:00-01:00 is 30 kWh against Friday's working mean 40 kWh/h
    //   = 0.75 > 0.5 → pending at 01:00, fires after for_s = 2 h at 03:00; Monday 00:00-01:00
    //   is 5 kWh = 0.125 ≤ 0.5 × (1 − 0.05) → resolved 03-10 01:00.
    // - leak: nights of 03-11 and 03-12 (01:00-05:00) both have 0.1 m³/h > 0.02 → the second
    //   night ends 03-12 05:00: fired; the night of 03-13 is dry → resolved 03-13 05:00.
    // - nothing on B2, W2, A or Z (the control data).
    assert_eq!(
        events,
        vec![
            ev("fired", "quota", "Q", "03-03 01:00"),
            ev("fired", "off-hours", "B1", "03-08 03:00"),
            ev("resolved", "off-hours", "B1", "03-10 01:00"),
            ev("fired", "leak", "W", "03-12 05:00"),
            ev("resolved", "leak", "W", "03-13 05:00"),
        ]
    );
    // The receiver refused deliveries while down, then got each notification exactly once,
    // in order, signed with HMAC-SHA256 over the body.
    assert!(*refused.lock().expect("lock") > 0);
    let got = got.lock().expect("lock");
    let seen: Vec<(String, String, String)> = got
        .iter()
        .map(|r| {
            (
                r.body["event"].as_str().unwrap_or("").to_string(),
                r.body["rule"].as_str().unwrap_or("").to_string(),
                r.body["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = events
        .iter()
        .map(|(e, r, t, _)| (e.clone(), r.clone(), t.clone()))
        .collect();
    assert_eq!(seen, want);
    for r in got.iter() {
        let mac = meterflow_runtime::notify::hmac_sha256(secret.as_bytes(), &r.raw);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(r.signature, format!("sha256={hex}"));
    }
    // History keeps the acknowledgement; nothing is waiting in the outbox.
    let history = evaluator.db().events(100).expect("history");
    assert!(
        history
            .iter()
            .any(|e| e.event == "acknowledged" && e.target == "B1")
    );
    assert_eq!(
        evaluator.db().outbox_counts(1000).expect("outbox"),
        (5, 0, 0)
    );
    // Only the quota alert is still firing.
    let firing = evaluator.db().firing().expect("firing");
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!((firing[0].0.as_str(), firing[0].1.as_str()), ("quota", "Q"));
}

/// `alerts --at` is a dry run: it shows what would fire at that time and
/// leaves the alert state and history as they were; `--record` keeps it.
#[test]
fn alerts_at_another_time_is_a_dry_run_unless_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        "[site]\nname = \"dry\"\n[store]\npath = \"store.db\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 100\n\
         [[meter]]\nid = \"m\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = { building = \"b\" }\ninterval_s = 900\n",
    )
    .expect("site");
    // Readings every 15 minutes from 00:00 to 02:00 on 2025-03-03 (local).
    let mut csv = String::new();
    for q in 0..=8 {
        csv.push_str(&format!(
            "m,2025-03-03 {:02}:{:02}:00,{}\n",
            q / 4,
            q % 4 * 15,
            100 + q
        ));
    }
    std::fs::write(dir.path().join("r.csv"), csv).expect("csv");
    let s = site.to_str().expect("path");
    let csv = dir.path().join("r.csv");
    let o = crate::support::run(&["import", "--config", s, csv.to_str().expect("path")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let events = || {
        let c = rusqlite::Connection::open(dir.path().join("store.db")).expect("store");
        let n = |t: &str| -> i64 {
            c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .expect("count")
        };
        (n("alert_events"), n("alert_state"))
    };
    // A day later the meter has been silent for 22 h: meter-silent would fire.
    let o = crate::support::run(&["alerts", "--config", s, "--at", "2025-03-04 00:00"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("dry run as of 2025-03-04 00:00:00 +08:00: nothing is recorded"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("meter-silent on m") && l.contains("since")),
        "what would fire is shown: {out}"
    );
    assert!(out.contains("no reading for 22 h"), "{out}");
    assert_eq!(events(), (0, 0), "nothing recorded");
    let o = crate::support::run(&[
        "alerts",
        "--config",
        s,
        "--at",
        "2025-03-04 00:00",
        "--record",
    ]);
    assert!(o.status.success());
    let (events_n, states) = events();
    assert!(
        events_n >= 1 && states >= 1,
        "{events_n} events, {states} states"
    );
}

/// The off-hours rule reads the national working calendar: Sunday
/// 2026-09-20 is a make-up working day (国庆调休上班) and Monday 2026-10-05
/// is inside the National Day holiday (10-01..10-07). Building B: 40 kW in
/// working hours of worked days, 5 kW otherwise, except on the holiday
/// Monday, when the lights stay on (40 kW 08-18).
/// - Sunday 09-20, 12:00-13:00: a working hour → "working hours", value 0
///   (with weekends alone it would be 40 / 40 = 100 % of the reference and
///   fire at the 50 % threshold);
/// - Monday 10-05, 12:00-13:00: off-hours; the last worked day before is
///   Wednesday 09-30 with a working-hours mean of 40 kWh/h → 40 / 40 = 1.0;
/// - Monday 10-12, 12:00-13:00 (a normal Monday): working hours again;
/// - Tuesday 10-13 is a site closure (`[site] closures`): the lights that
///   stay on 08-18 as on any Tuesday are off-hours load, 40 / 40 = 1.0
///   against Monday 10-12's working-hours mean.
#[test]
fn the_off_hours_rule_knows_make_up_sundays_and_holiday_mondays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    std::fs::write(
        &path,
        "[site]\nname = \"calendar\"\ntimezone = \"Asia/Shanghai\"\nclosures = [2026-10-13]\n\n[store]\npath = \"s.db\"\n\n\
[[building]]\nid = \"B\"\ntotal_area_m2 = 2000\noffice_area_m2 = 1500\n\n[[agency]]\nid = \"A\"\nname = \"A\"\n\n\
[[space]]\nagency = \"A\"\nbuilding = \"B\"\nfrom = 2026-01-01\narea_m2 = 1000\n\n\
[[meter]]\nid = \"EL\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = { building = \"B\" }\n\n\
[[alert]]\nid = \"off-hours\"\nkind = \"off_hours_baseload\"\nlevel = \"building\"\nthreshold = 0.5\nwork_hours = \"08:00-18:00\"\n",
    )
    .expect("site");
    let site = Site::load(&path).expect("valid site");
    let day = |s: &str| {
        meterflow_core::time::day_start(
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date"),
            site.tz,
        )
    };
    let worked = |ms: i64| {
        let d = chrono::DateTime::from_timestamp_millis(ms)
            .expect("t")
            .with_timezone(&site.tz)
            .date_naive();
        // The scenario's own list, not the calendar under test.
        let wd = chrono::Datelike::weekday(&d).number_from_monday();
        let s = d.to_string();
        // 中秋节 09-25..09-27 and 国庆节 10-01..10-07.
        let holiday = ("2026-09-25".."2026-09-28").contains(&s.as_str())
            || ("2026-10-01".."2026-10-08").contains(&s.as_str());
        (wd <= 5 && !holiday) || s == "2026-09-20" || s == "2026-10-10"
    };
    let start = day("2026-09-14");
    let end = day("2026-10-14");
    let mut writer = meterflow_store::Writer::open(&site).expect("store");
    let mut counter = 0.0f64;
    let mut t = start;
    let mut batch = Vec::new();
    while t <= end {
        batch.push(Reading {
            meter: "EL".into(),
            quantity: "energy_import".into(),
            ts_ms: t,
            value: counter,
            recv_ms: t,
            time_source: TimeSource::Device,
        });
        let h = (t - day("2026-09-14")).rem_euclid(24 * HOUR) / HOUR;
        let work_hour = (8..18).contains(&h);
        let lights_on = t >= day("2026-10-05") && t < day("2026-10-06");
        let kw = if work_hour && (worked(t) || lights_on) {
            40.0
        } else {
            5.0
        };
        counter += kw * 0.25;
        t += 900_000;
    }
    writer.write_batch(&batch, "test").expect("write");
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let rule = site
        .alert_rules
        .iter()
        .find(|r| r.id == "off-hours")
        .expect("rule");
    let at = |s: &str| {
        let obs = meterflow_runtime::alerting::observe(
            &site,
            &reader,
            rule,
            day(s) + 13 * HOUR,
            &LiveMetrics::default(),
        )
        .expect("observe");
        obs.into_iter().next().expect("an observation for B")
    };
    let sunday = at("2026-09-20");
    assert_eq!(sunday.value, 0.0, "{}", sunday.detail);
    assert_eq!(sunday.detail, "working hours");
    let holiday = at("2026-10-05");
    assert!((holiday.value - 1.0).abs() < 1e-9, "{}", holiday.detail);
    assert!(
        holiday.detail.contains("2026-10-05 12:00"),
        "{}",
        holiday.detail
    );
    assert_eq!(at("2026-10-12").detail, "working hours");
    let closed = at("2026-10-13");
    assert!((closed.value - 1.0).abs() < 1e-9, "{}", closed.detail);
    assert!(
        closed.detail.contains("2026-10-13 12:00"),
        "{}",
        closed.detail
    );
}
