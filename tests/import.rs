//! `meterflow import` and `meterflow report` on the example site.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{bin, count, dump, example_site, run, stored_readings, text};

fn import(site: &Path, files: &[&Path]) -> (String, String) {
    let mut args = vec![
        "import".to_string(),
        "--config".to_string(),
        site.to_string_lossy().into_owned(),
    ];
    args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&args);
    let t = text(&o);
    assert!(o.status.success(), "{}\n{}", t.0, t.1);
    t
}

fn generate(site: &Path, out: &Path, days: u32, faults: bool) {
    let days = days.to_string();
    let mut args = vec![
        "generate",
        "--config",
        site.to_str().expect("utf-8 path"),
        "--from",
        "2025-03-08",
        "--days",
        &days,
        "--out",
        out.to_str().expect("utf-8 path"),
    ];
    if faults {
        args.push("--faults");
    }
    let o = run(&args);
    assert!(o.status.success(), "{:?}", text(&o));
}

/// `meterflow import` of `data` into `site`'s store, running.
fn spawn_import(site: &Path, data: &Path, stderr: std::process::Stdio) -> std::process::Child {
    bin()
        .args([
            "import",
            "--config",
            site.to_str().expect("path"),
            data.to_str().expect("path"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn")
}

/// Two example sites in `a` and `b` with small batches (many commits to
/// land between), and 120 days of their readings from 2025-03-08 in
/// `dir/readings.csv`.
fn two_stores(
    dir: &Path,
    a: &Path,
    b: &Path,
    faults: bool,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(a).expect("mkdir");
    std::fs::create_dir_all(b).expect("mkdir");
    let (site_a, site_b) = (example_site(a, 500), example_site(b, 500));
    let data = dir.join("readings.csv");
    generate(&site_a, &data, 120, faults);
    (site_a, site_b, data)
}

#[test]
fn example_import_reports_rejections_and_a_second_import_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = example_site(dir.path(), 50_000);
    let data = dir.path().join("readings.csv");
    generate(&site, &data, 7, true);
    let (out, _) = import(&site, &[&data]);
    // 7 days × 96 readings × 11 meters = 7 392 values, plus 3 malformed lines.
    assert!(out.contains("7395 values"), "{out}");
    assert!(
        out.contains("accepted        7392  (new 7392, already stored 0)"),
        "{out}"
    );
    // The three injected bad lines follow the 11th reading time of the first meter.
    for reason in ["unknown_meter", "bad_timestamp", "non_numeric_value"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(reason) && l.contains(" 1  line ")),
            "{reason} in {out}"
        );
    }
    // The injected spike, sentinel and water reset each raise their anomaly.
    for kind in ["implausible_delta", "invalid_value", "counter_reset"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(kind)),
            "{kind} in {out}"
        );
    }
    let db = dir.path().join("store.db");
    assert_eq!(count(&db, "dead_letters"), 3);
    let first = dump(&db);
    assert!(!first.intervals.is_empty());

    let (out, _) = import(&site, &[&data]);
    assert!(out.contains("(new 0, already stored 7392)"), "{out}");
    assert_eq!(dump(&db), first, "a second import changed the store");
}

#[test]
fn report_shows_buckets_with_quality_and_totals_that_match_the_counters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = example_site(dir.path(), 50_000);
    let data = dir.path().join("readings.csv");
    generate(&site, &data, 2, false);
    import(&site, &[&data]);
    // The simulator's register of gas-annex at the first and last reading:
    // consumption over the report window is last − first (multiplier 1).
    let csv = std::fs::read_to_string(&data).expect("csv");
    let gas: Vec<f64> = csv
        .lines()
        .filter(|l| l.starts_with("gas-annex,"))
        .filter_map(|l| l.rsplit(',').next()?.parse().ok())
        .collect();
    let expected = gas[gas.len() - 1] - gas[0];
    let o = run(&[
        "report",
        "--config",
        site.to_str().expect("path"),
        "--meter",
        "gas-annex",
        "--from",
        "2025-03-08",
        "--to",
        "2025-03-10",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let total_line = out
        .lines()
        .find(|l| l.starts_with("total"))
        .expect("total line");
    let total: f64 = total_line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("total value");
    assert!(
        (total - expected).abs() < 0.0005,
        "report total {total} vs counters {expected}\n{out}"
    );
    // 2 days × 96 buckets; the last reading is at 23:45 of day 2, so its bucket
    // (23:45–24:00) has no reading after it: 191 measured, 1 missing.
    assert!(
        total_line.contains(" 191 ") && total_line.contains("completeness 99.5 % measured"),
        "{total_line}"
    );
    assert!(
        out.contains("2025-03-08") && out.contains("2025-03-09"),
        "{out}"
    );
    // An unknown meter is a clear error, exit 2.
    let o = run(&[
        "report",
        "--config",
        site.to_str().expect("path"),
        "--meter",
        "nope",
        "--from",
        "2025-03-08",
        "--to",
        "2025-03-10",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("no meter `nope`"));
}

/// A process killed with SIGKILL between two batches loses nothing and
/// double-counts nothing: re-running the import completes the store to exactly
/// what one uninterrupted import produces.
#[test]
fn killed_import_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (clean_dir, killed_dir) = (dir.path().join("clean"), dir.path().join("killed"));
    let (clean_site, killed_site, data) = two_stores(dir.path(), &clean_dir, &killed_dir, true);
    let total_rows = 120 * 96 * 11;

    let mut child = spawn_import(&killed_site, &data, std::process::Stdio::null());
    let db = killed_dir.join("store.db");
    let started = Instant::now();
    while stored_readings(&db) < 5_000 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "import made no progress"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let at_kill = stored_readings(&db);
    assert!(
        at_kill < total_rows,
        "the import finished before it was killed ({at_kill} rows): enlarge the fixture"
    );

    let (out, _) = import(&killed_site, &[&data]);
    assert!(out.contains("already stored"), "{out}");
    import(&clean_site, &[&data]);
    let killed = dump(&db);
    let clean = dump(&clean_dir.join("store.db"));
    crate::support::same_dump(
        &killed,
        &clean,
        "killed-and-resumed import against the uninterrupted one",
    );
}

/// A store that fails in the middle of an import (here a trigger refusing
/// the daily rollups from 2025-05-01 on, as a full disk or a broken file
/// would refuse a write): the import stops with the store's message and a
/// failure status instead of waiting on its parser thread, the batches
/// before the failure stay committed, and once the store is sound again a
/// rerun completes it to exactly what one uninterrupted import produces.
#[test]
fn a_store_error_mid_import_stops_it_and_a_rerun_completes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (clean_dir, failing_dir) = (dir.path().join("clean"), dir.path().join("failing"));
    let (clean_site, failing_site, data) = two_stores(dir.path(), &clean_dir, &failing_dir, false);
    // 2025-03-08 + 120 days: the data runs to 2025-07-05, past the failure.
    let header = dir.path().join("header.csv");
    let first = std::fs::read_to_string(&data)
        .expect("csv")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    std::fs::write(&header, format!("{first}\n")).expect("csv");
    import(&failing_site, &[&header]);
    let db = failing_dir.join("store.db");
    let store = rusqlite::Connection::open(&db).expect("store");
    store
        .execute_batch(
            "CREATE TRIGGER fail_in_may BEFORE INSERT ON rollup_day WHEN NEW.day >= '2025-05-01'
             BEGIN SELECT RAISE(ABORT, 'simulated store failure'); END;",
        )
        .expect("trigger");

    let mut child = spawn_import(&failing_site, &data, std::process::Stdio::piped());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the import hung after the store failed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(!status.success(), "{err}");
    assert!(err.contains("simulated store failure"), "{err}");
    // March and April (54 days of 11 series) are in, May on is not.
    let kept = stored_readings(&db);
    assert!(kept > 0 && kept < 120 * 96 * 11, "{kept}");

    store
        .execute_batch("DROP TRIGGER fail_in_may")
        .expect("drop trigger");
    drop(store);
    import(&failing_site, &[&data]);
    import(&clean_site, &[&data]);
    crate::support::same_dump(
        &dump(&db),
        &dump(&clean_dir.join("store.db")),
        "an import stopped by a store error and rerun against an uninterrupted one",
    );
}

/// The same readings as CSV and as line protocol give identical stores.
#[test]
fn line_protocol_file_gives_the_same_store_as_csv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&b).expect("mkdir");
    let site_a = example_site(&a, 50_000);
    let site_b = example_site(&b, 50_000);
    let csv = dir.path().join("readings.csv");
    generate(&site_a, &csv, 3, true);
    // Convert: local time (+08:00) → epoch ns; `value` takes the meter's counter quantity.
    let mut lp = String::from("# converted from readings.csv\n");
    for line in std::fs::read_to_string(&csv).expect("csv").lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let Ok(t) = chrono::NaiveDateTime::parse_from_str(f[1], "%Y-%m-%d %H:%M:%S") else {
            continue;
        };
        let Ok(v) = f[2].parse::<f64>() else { continue };
        let ns = (t.and_utc().timestamp() - 8 * 3600) * 1_000_000_000;
        lp.push_str(&format!("meter,meter={} value={v} {ns}\n", f[0]));
    }
    let lp_path = dir.path().join("readings.lp");
    std::fs::write(&lp_path, lp).expect("write lp");
    import(&site_a, &[&csv]);
    let (out, _) = import(&site_b, &[&lp_path]);
    assert!(out.contains("unknown_meter"), "{out}");
    let (da, db) = (dump(&a.join("store.db")), dump(&b.join("store.db")));
    assert_eq!(da.intervals, db.intervals);
    assert_eq!(da.days, db.days);
    assert_eq!(da.anomalies, db.anomalies);
    assert_eq!(da.readings, db.readings);
}
