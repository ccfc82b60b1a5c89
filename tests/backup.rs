//! `meterflow backup` / `restore` and upgrades: an online backup taken while
//! the writer commits is consistent and restores to a store that continues
//! exactly; a damaged or newer backup and a non-empty target are refused; an
//! older store is kept as it was before it is migrated.

use std::path::{Path, PathBuf};

use meterflow_model::{Reading, Site, TimeSource};

use crate::support::{count, dump, run, text};

const SITE: &str = r#"
[site]
name = "backup test"

[store]
path = "store.db"

[[building]]
id = "B"
total_area_m2 = 100

[[meter]]
id = "m"
kind = "electricity"
unit = "kWh"
serves = { building = "B" }
multiplier = 10
"#;

/// 2025-01-01T00:00:00Z.
const T0: i64 = 1_735_689_600_000;

/// Day `d`'s 96 readings (every 15 min), the counter rising 1 kWh each.
fn day(d: i64) -> Vec<Reading> {
    (0..96)
        .map(|i| {
            let k = d * 96 + i;
            Reading {
                meter: "m".into(),
                quantity: "energy_import".into(),
                ts_ms: T0 + k * 900_000,
                value: 1_000.0 + k as f64,
                recv_ms: T0 + k * 900_000,
                time_source: TimeSource::Import,
            }
        })
        .collect()
}

fn site_in(dir: &Path) -> (PathBuf, Site) {
    std::fs::create_dir_all(dir).expect("dir");
    let path = dir.join("site.toml");
    std::fs::write(&path, SITE).expect("site");
    let site = Site::load(&path).expect("valid");
    (path, site)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Σ of the meter's 15-minute intervals and its readings' span, micro-kWh.
fn totals(db: &Path) -> (i64, i64) {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open");
    let intervals: i64 = c
        .query_row("SELECT coalesce(sum(micro), 0) FROM intervals", [], |r| {
            r.get(0)
        })
        .expect("intervals");
    let span: f64 = c
        .query_row(
            "SELECT coalesce(max(value) - min(value), 0) FROM readings",
            [],
            |r| r.get(0),
        )
        .expect("readings");
    // × multiplier 10, in micro-kWh.
    (intervals, (span * 10.0 * 1e6).round() as i64)
}

#[test]
fn a_backup_taken_while_writing_restores_a_consistent_store_that_continues_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, site) = site_in(&dir.path().join("a"));
    let days = 60i64;
    // The writer commits a day per transaction while the backup runs.
    let writer_site = site.clone();
    let writing = std::thread::spawn(move || {
        let mut w = meterflow_store::Writer::open(&writer_site).expect("writer");
        for d in 0..days {
            w.write_batch(&day(d), "test").expect("write");
            std::thread::sleep(std::time::Duration::from_millis(40));
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).expect("dir");
    let out = run(&["backup", "--config", s(&config), "--out", s(&backups)]);
    assert!(out.status.success(), "{:?}", text(&out));
    writing.join().expect("writer thread");
    let files: Vec<PathBuf> = std::fs::read_dir(&backups)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".db.gz"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    assert!(PathBuf::from(format!("{}.manifest.json", file.display())).exists());

    // Restore into a new site (an empty store).
    let (config_b, site_b) = site_in(&dir.path().join("b"));
    let out = run(&["restore", "--config", s(&config_b), s(file)]);
    assert!(out.status.success(), "{:?}", text(&out));
    let db_b = site_b.store_path();
    // A consistent point: whole transactions only (a multiple of 96 readings,
    // the backup started after the first few), and the intervals derived from
    // exactly the readings present (a torn copy would differ).
    let n = count(&db_b, "readings");
    assert!(n > 0 && n % 96 == 0 && n < days * 96, "{n} readings");
    let (intervals, span) = totals(&db_b);
    assert_eq!(
        intervals, span,
        "intervals and readings of the restored store agree"
    );

    // The pipeline continues on the restored store: every batch sent again
    // (the ones it holds are duplicates), and it ends equal to the original.
    let mut w = meterflow_store::Writer::open(&site_b).expect("writer");
    let mut duplicates = 0;
    for d in 0..days {
        duplicates += w.write_batch(&day(d), "test").expect("write").1.duplicates;
    }
    drop(w);
    assert_eq!(
        duplicates as i64, n,
        "what the backup held is not stored twice"
    );
    let (a, b) = (dump(&site.store_path()), dump(&db_b));
    assert_eq!(a.readings, b.readings);
    assert_eq!(a.intervals, b.intervals);
    assert_eq!(a.days, b.days);
}

#[test]
fn restore_refuses_damage_a_newer_schema_and_a_store_with_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, site) = site_in(&dir.path().join("a"));
    let mut w = meterflow_store::Writer::open(&site).expect("writer");
    w.write_batch(&day(0), "test").expect("write");
    drop(w);
    let file = dir.path().join("b.db.gz");
    let out = run(&["backup", "--config", s(&config), "--out", s(&file)]);
    assert!(out.status.success(), "{:?}", text(&out));

    // A store with data is not overwritten (exit 2) ...
    let out = run(&["restore", "--config", s(&config), s(&file)]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("not empty (96 readings"),
        "{:?}",
        text(&out)
    );
    // ... unless forced, and then it is moved aside, not deleted.
    let out = run(&["restore", "--config", s(&config), "--force", s(&file)]);
    assert!(out.status.success(), "{:?}", text(&out));
    let aside: Vec<_> = std::fs::read_dir(dir.path().join("a"))
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("before-restore"))
        .collect();
    assert!(!aside.is_empty());
    assert_eq!(count(&site.store_path(), "readings"), 96);

    // One flipped byte: the checksum refuses it, and the target is untouched.
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let bad = dir.path().join("bad.db.gz");
    std::fs::write(&bad, &bytes).expect("write");
    std::fs::copy(
        dir.path().join("b.db.gz.manifest.json"),
        dir.path().join("bad.db.gz.manifest.json"),
    )
    .expect("copy manifest");
    let (config_c, site_c) = site_in(&dir.path().join("c"));
    let out = run(&["restore", "--config", s(&config_c), s(&bad)]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("checksum mismatch"),
        "{:?}",
        text(&out)
    );
    assert!(!site_c.store_path().exists());

    // A backup of a newer schema than this build knows.
    let newer = dir.path().join("newer.db");
    std::fs::copy(site.store_path(), &newer).expect("copy");
    let c = rusqlite::Connection::open(&newer).expect("open");
    c.pragma_update(None, "user_version", 99).expect("version");
    drop(c);
    let newer_gz = dir.path().join("newer.db.gz");
    meterflow_store::backup::backup(&newer, &newer_gz, "t", 0).expect("backup");
    let out = run(&["restore", "--config", s(&config_c), s(&newer_gz)]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("schema version 99"),
        "{:?}",
        text(&out)
    );
    assert!(!site_c.store_path().exists());
}

#[test]
fn an_older_store_is_kept_as_it_was_before_it_is_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_config, site) = site_in(&dir.path().join("a"));
    let db = site.store_path();
    let mut w = meterflow_store::Writer::open(&site).expect("writer");
    w.write_batch(&day(0), "test").expect("write");
    drop(w);
    let raw = |db: &Path| {
        meterflow_store::Reader::open(db)
            .expect("reader")
            .raw_page((0, 0), 1000)
            .expect("raw")
    };
    let before = raw(&db);
    assert_eq!(before.len(), 96);
    // The previous release's store: schema 4, before the ledgers' table,
    // the long gaps' tables, the compacted months' table, and with the time source and source as text
    // on every reading.
    let c = rusqlite::Connection::open(&db).expect("open");
    c.execute_batch(
        "DROP INDEX ledger_events_by_time; DROP INDEX ledger_events_by_corrects;
         DROP TABLE ledger_events; DROP TABLE spans; DROP TABLE agg_span; DROP TABLE cold;
         CREATE TABLE readings_v4 (series INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
             kind INTEGER NOT NULL DEFAULT 0, value REAL, aux REAL, raw TEXT,
             recv_ms INTEGER NOT NULL, time_source TEXT NOT NULL, source TEXT NOT NULL,
             status INTEGER, PRIMARY KEY (series, ts_ms)) WITHOUT ROWID;
         INSERT INTO readings_v4 SELECT r.series, r.ts_ms, r.kind, r.value, r.aux, r.raw, r.recv_ms,
             CASE r.time_source WHEN 0 THEN 'device' WHEN 1 THEN 'poll' WHEN 2 THEN 'receive'
                  WHEN 3 THEN 'import' ELSE 'operator' END,
             (SELECT text FROM sources s WHERE s.id = r.source), r.status FROM readings r;
         DROP TABLE readings; ALTER TABLE readings_v4 RENAME TO readings; DROP TABLE sources;
         PRAGMA user_version = 4;",
    )
    .expect("downgrade");
    drop(c);
    // Opening it migrates, after keeping a copy of it as it was.
    drop(meterflow_store::Writer::open(&site).expect("migrates"));
    let copies: Vec<PathBuf> = std::fs::read_dir(dir.path().join("a"))
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains(".pre-v4-"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let version = |p: &Path| -> i64 {
        rusqlite::Connection::open(p)
            .expect("open")
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version")
    };
    assert_eq!(version(&copies[0]), 4);
    assert_eq!(version(&db), 8);
    assert_eq!(count(&db, "cold"), 0);
    assert_eq!(count(&copies[0], "readings"), 96);
    assert_eq!(count(&db, "ledger_events"), 0);
    assert_eq!(count(&db, "spans"), 0);
    // The readings came through the re-coding unchanged.
    assert_eq!(raw(&db), before);
    assert!(before.iter().all(|r| r.source == "test"), "{:?}", before[0]);
    // A store newer than this build: refused with what to do.
    let c = rusqlite::Connection::open(&db).expect("open");
    c.pragma_update(None, "user_version", 99).expect("version");
    drop(c);
    let err = meterflow_store::Writer::open(&site)
        .err()
        .map(|e| e.to_string())
        .expect("refused");
    assert!(
        err.contains("schema version 99") && err.contains("upgrade meterflow"),
        "{err}"
    );
}

#[test]
fn scheduled_backups_keep_the_newest_and_a_stale_one_is_alerted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("a");
    std::fs::create_dir_all(&root).expect("dir");
    let config = root.join("site.toml");
    std::fs::write(
        &config,
        format!("{SITE}\n[backup]\ndir = \"backups\"\nevery_h = 6\nkeep = 2\n"),
    )
    .expect("site");
    let site = Site::load(&config).expect("valid");
    let mut w = meterflow_store::Writer::open(&site).expect("writer");
    w.write_batch(&day(0), "test").expect("write");
    drop(w);
    let backups = root.join("backups");

    // The schedule's thread takes one at once (there is none), then waits.
    let (tx, rx) = tokio::sync::watch::channel(false);
    let s2 = site.clone();
    let t = std::thread::spawn(move || meterflow_runtime::backup::run_schedule(&s2, &rx));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while meterflow_runtime::backup::list(&backups).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no backup was taken");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    tx.send(true).expect("stop");
    t.join().expect("schedule thread");
    assert_eq!(meterflow_runtime::backup::list(&backups).len(), 1);

    // Three more, 6 h apart: only the newest two are kept (keep = 2).
    let base = meterflow_model::clock::now_ms();
    for k in 1..=3 {
        meterflow_runtime::backup::take(&site, base + k * 6 * 3_600_000).expect("backup");
    }
    let kept = meterflow_runtime::backup::list(&backups);
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[1].1.created_ms, base + 18 * 3_600_000);
    // Every kept file has its manifest; the deleted ones left none behind.
    let files = std::fs::read_dir(&backups).expect("list").count();
    assert_eq!(files, 4, "two backups and their two manifests");

    // backup_stale: the newest is 18 h ahead of `base`; seen from 24 h after
    // it the age is 24 / 6 = 4 periods (fires above 1.5); from 3 h after, 0.5.
    let rule = site
        .alert_rules
        .iter()
        .find(|r| r.id == "backup-stale")
        .expect("a default rule");
    let reader = meterflow_store::Reader::open(&site.store_path()).expect("reader");
    let live = meterflow_runtime::alerting::LiveMetrics::default();
    let at = |h: i64| {
        meterflow_runtime::alerting::observe(&site, &reader, rule, base + h * 3_600_000, &live)
            .expect("observe")
    };
    let late = at(18 + 24);
    assert_eq!(late.len(), 1);
    assert!((late[0].value - 4.0).abs() < 1e-9, "{late:?}");
    assert!(late[0].detail.contains("24.0 h old"), "{late:?}");
    assert!((at(18 + 3)[0].value - 0.5).abs() < 1e-9);
    assert!(meterflow_runtime::alerting::threshold(rule) == 1.5);
}

const LEDGER_SITE: &str = r#"
[site]
name = "ledger move"

[store]
path = "store.db"

[[building]]
id = "B"
total_area_m2 = 100

[[agency]]
id = "fin"
name = "市财政局"

[[agency]]
id = "tax"
name = "市税务局"
"#;

/// The waste summaries of a store's ledger, as the API computes them.
fn waste_summary(site: &Site) -> Vec<meterflow_ledgers::waste::WasteSummary> {
    let db = meterflow_store::LedgerDb::open(&site.store_path()).expect("ledgers");
    let events = db.ledger_until("waste", i64::MAX).expect("events");
    let weigh_ins: Vec<meterflow_ledgers::waste::WeighIn> =
        meterflow_ledgers::of_kind::<meterflow_ledgers::waste::WeighIn>(&events, "weigh_in")
            .map(|(_, w)| w)
            .collect();
    meterflow_ledgers::waste::summarize(site, &weigh_ins)
}

#[test]
fn ledger_events_move_to_another_site_once_and_conflicts_refuse_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site_in = |name: &str| -> (PathBuf, Site) {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).expect("dir");
        let p = d.join("site.toml");
        std::fs::write(&p, LEDGER_SITE).expect("site");
        let s = Site::load(&p).expect("valid");
        (p, s)
    };
    let (config_a, site_a) = site_in("a");
    let (config_b, site_b) = site_in("b");
    // Site A: three weigh-ins, one corrected (12 → 15 kg) and one voided.
    let mut db = meterflow_store::LedgerDb::open(&site_a.store_path()).expect("ledgers");
    let weigh = |agency: &str, kg: f64, category: &str, destination: &str| {
        format!(
            r#"{{"agency":"{agency}","point":"P1","category":"{category}","kg":{kg},"destination":"{destination}"}}"#
        )
    };
    let t = 1_740_787_200_000; // 2025-03-01T00:00Z
    let bodies = [
        ("fin", weigh("fin", 12.0, "recyclable", "recycling")),
        ("fin", weigh("fin", 30.0, "residual", "landfill")),
        ("tax", weigh("tax", 8.0, "kitchen", "composting")),
    ];
    let mut ids = Vec::new();
    for (i, (agency, body)) in bodies.iter().enumerate() {
        let e = meterflow_store::NewLedgerEvent {
            ledger: "waste",
            kind: "weigh_in",
            agency: Some(agency),
            ts_ms: t + i as i64 * 3_600_000,
            body,
            corrects: None,
            void: false,
            author: "clerk:waste",
        };
        ids.push(db.append(&e, t).expect("append").expect("id"));
    }
    let fixed = weigh("fin", 15.0, "recyclable", "recycling");
    let correction = meterflow_store::NewLedgerEvent {
        ledger: "waste",
        kind: "weigh_in",
        agency: Some("fin"),
        ts_ms: t,
        body: &fixed,
        corrects: Some(ids[0]),
        void: false,
        author: "clerk:waste",
    };
    db.append(&correction, t + 10)
        .expect("append")
        .expect("correction");
    let void = meterflow_store::NewLedgerEvent {
        corrects: Some(ids[2]),
        void: true,
        ..correction.clone()
    };
    let void = meterflow_store::NewLedgerEvent {
        agency: Some("tax"),
        kind: "weigh_in",
        body: &bodies[2].1,
        ..void
    };
    db.append(&void, t + 20).expect("append").expect("void");
    drop(db);

    let file = dir.path().join("waste.jsonl");
    let out = run(&[
        "ledger",
        "export",
        "--config",
        s(&config_a),
        "--out",
        s(&file),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&file)
            .expect("read")
            .lines()
            .count(),
        5
    );

    // Into the empty site B: all five, then none the second time.
    let out = run(&["ledger", "import", "--config", s(&config_b), s(&file)]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out)
            .0
            .contains("5 ledger events added, 0 already here"),
        "{:?}",
        text(&out)
    );
    let out = run(&["ledger", "import", "--config", s(&config_b), s(&file)]);
    assert!(
        text(&out)
            .0
            .contains("0 ledger events added, 5 already here"),
        "{:?}",
        text(&out)
    );
    let all = |site: &Site| {
        meterflow_store::LedgerDb::open(&site.store_path())
            .expect("ledgers")
            .all(None)
            .expect("events")
    };
    assert_eq!(all(&site_a), all(&site_b));
    // The same summaries: fin 15 kg recyclable (the correction) + 30 residual;
    // tax none (its weigh-in was voided).
    let (sa, sb) = (waste_summary(&site_a), waste_summary(&site_b));
    assert_eq!(sa, sb);
    let fin = sb.iter().find(|w| w.agency == "fin").expect("fin");
    assert!((fin.total_kg - 45.0).abs() < 1e-9, "{fin:?}");

    // A file whose event 2 differs from B's event 2: refused, nothing added.
    let changed = std::fs::read_to_string(&file)
        .expect("read")
        .replace("\"kg\\\":30.0", "\"kg\\\":31.0")
        .replace("\"kg\\\":30", "\"kg\\\":31");
    assert_ne!(
        changed,
        std::fs::read_to_string(&file).expect("read"),
        "the edit applied"
    );
    let bad = dir.path().join("changed.jsonl");
    std::fs::write(&bad, changed).expect("write");
    let before = all(&site_b).len();
    let out = run(&["ledger", "import", "--config", s(&config_b), s(&bad)]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out)
            .1
            .contains("event 2 is already here as another event"),
        "{:?}",
        text(&out)
    );
    assert_eq!(all(&site_b).len(), before);

    // A malformed line and an unknown agency: named by line, nothing imported.
    let (config_c, site_c) = site_in("c");
    let first = std::fs::read_to_string(&file)
        .expect("read")
        .lines()
        .next()
        .expect("a line")
        .replace("\"tax\"", "\"nobody\"")
        .replace("\"fin\"", "\"nobody\"");
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, format!("{first}\n{{not json\n")).expect("write");
    let out = run(&["ledger", "import", "--config", s(&config_c), s(&broken)]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(err.contains("broken.jsonl:1: agency `nobody`"), "{err}");
    assert!(err.contains("broken.jsonl:2: not a ledger event"), "{err}");
    assert!(all(&site_c).is_empty());
}

/// The backup test with the real ingest path: a Mosquitto queue of 60 000
/// QoS 1 messages drained by `meterflow run` while `meterflow backup` runs
/// again and again; one taken mid-drain is restored.
/// The restored store is a consistent point (intervals agree with the
/// readings it holds); a run on it that gets every message again ends equal
/// to the original store: nothing lost, nothing doubled.
#[test]
fn a_backup_taken_during_an_mqtt_drain_restores_and_the_drain_finishes_exactly() {
    use crate::mqtt::{mosquitto, publish_lines, stop};
    use crate::support::{Proc, bin, free_port};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    const N: i64 = 60_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = mosquitto(dir.path(), port);
    let site_at = |sub: &str, client: &str| {
        let d = dir.path().join(sub);
        std::fs::create_dir_all(&d).expect("dir");
        // Commits of at most 2 000 readings: the drain passes through many
        // stored states, so a backup lands strictly inside it even when the
        // machine is busy (with 50 000-row batches it could finish between
        // two backups).
        let site = SITE.replace(
            "path = \"store.db\"",
            "path = \"store.db\"\nbatch_rows = 2000",
        );
        let text = format!(
            "{site}\n[[mqtt]]\nid = \"local\"\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"{client}\"\n\n\
             [[mqtt.topic]]\npattern = \"json/{{meter_id}}\"\nformat = \"json\"\nvalue = \"v\"\ntimestamp = \"ts\"\n"
        );
        let path = d.join("site.toml");
        std::fs::write(&path, text).expect("site");
        (path.clone(), Site::load(&path).expect("valid"))
    };
    let start = |config: &Path| {
        Proc(
            bin()
                .args(["run", "--config", s(config)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run"),
        )
    };
    let wait_for = |db: &Path, n: i64| {
        let t = Instant::now();
        while !db.exists() || count(db, "readings") < n {
            assert!(t.elapsed() < Duration::from_secs(120), "{n} readings");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // One message a minute from 2025-01-01, the counter rising 1 kWh each.
    let lines: String = (0..N)
        .map(|k| format!("{{\"v\": {}, \"ts\": {}}}\n", 1_000 + k, T0 + k * 60_000))
        .collect();

    // A persistent session, then the queue while meterflow is away.
    let (config_a, site_a) = site_at("a", "mf-a");
    let run_a = start(&config_a);
    std::thread::sleep(Duration::from_secs(2));
    stop(run_a);
    publish_lines(port, "json/m", &lines);
    // The drain, and backups while it commits. The drain may take less
    // time than one backup (a fast machine drains 60 000 messages in well
    // under a second), so it goes in slices: each backup starts while the
    // process runs, and 10 ms later the process is paused (SIGSTOP) until
    // that backup is done. A backup then lies strictly inside the drain
    // however fast either side is, and one that overlaps a paused
    // transaction must still see only what was committed.
    let run_a = start(&config_a);
    let pid = run_a.0.id().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, pid.as_str()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).expect("dir");
    let db_a = site_a.store_path();
    let t = Instant::now();
    loop {
        let backup = bin()
            .args(["backup", "--config", s(&config_a), "--out", s(&backups)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("backup");
        std::thread::sleep(Duration::from_millis(10));
        signal("-STOP");
        let out = backup.wait_with_output().expect("backup ends");
        assert!(out.status.success() || !db_a.exists(), "{:?}", text(&out));
        let held = if db_a.exists() {
            count(&db_a, "readings")
        } else {
            0
        };
        signal("-CONT");
        if held >= N {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "the drain ends: {held} of {N}"
        );
    }
    stop(run_a);
    // The backup that holds the most readings short of all of them.
    let mut taken: Vec<(i64, PathBuf)> = std::fs::read_dir(&backups)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".db.gz"))
        .map(|p| {
            let m: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(format!("{}.manifest.json", p.display()))
                    .expect("manifest"),
            )
            .expect("json");
            (m["tables"]["readings"].as_i64().unwrap_or(0), p)
        })
        .filter(|(n, _)| *n > 0 && *n < N)
        .collect();
    taken.sort();
    let (held_by_manifest, file) = taken.pop().expect("a backup taken mid-drain");

    // Restored: a consistent point of the drain.
    let (config_b, site_b) = site_at("b", "mf-b");
    let out = run(&["restore", "--config", s(&config_b), s(&file)]);
    assert!(out.status.success(), "{:?}", text(&out));
    let held = count(&site_b.store_path(), "readings");
    assert_eq!(
        held, held_by_manifest,
        "the manifest counts what the file holds"
    );
    assert!(held > 0 && held < N, "{held}");
    let (intervals, span) = totals(&site_b.store_path());
    assert_eq!(
        intervals, span,
        "intervals agree with the {held} readings held"
    );

    // The run continues on the restored store and gets every message again.
    let run_b = start(&config_b);
    std::thread::sleep(Duration::from_secs(2));
    publish_lines(port, "json/m", &lines);
    wait_for(&site_b.store_path(), N);
    stop(run_b);
    let (a, b) = (dump(&site_a.store_path()), dump(&site_b.store_path()));
    assert_eq!(a.readings.len() as i64, N);
    assert_eq!(a.readings, b.readings, "nothing lost, nothing doubled");
    assert_eq!(a.intervals, b.intervals);
    assert_eq!(a.days, b.days);
    eprintln!(
        "backup held {held} of {N} readings ({} mid-drain backups)",
        taken.len() + 1
    );
}
