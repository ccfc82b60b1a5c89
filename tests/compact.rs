//! Closed months kept compactly (issue 25, ADR 0024): every query reads the
//! same before and after a compaction, a late reading into a compacted
//! month derives exactly what in-order arrival derives, and the store holds
//! fewer rows.

use std::path::Path;

use meterflow_core::aggregate::{Grain, Level};
use meterflow_model::{EnergyClass, Reading, Site, TimeSource};
use meterflow_store::{Reader, Writer};

const Q: i64 = 900_000;
const DAY: i64 = 86_400_000;
/// 2026-01-01 00:00 +08:00.
const JAN1: i64 = 1_767_196_800_000;

fn site(dir: &Path, db: &str) -> Site {
    let src = site_text(dir, db);
    match Site::parse(&src, &dir.join("site.toml")) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn site_text(dir: &Path, db: &str) -> String {
    crate::support::shared_building_site(dir, "compact", db, "2026-02-20")
}

fn reading(meter: &str, quantity: &str, ts_ms: i64, value: f64) -> Reading {
    Reading {
        meter: meter.into(),
        quantity: quantity.into(),
        ts_ms,
        value,
        recv_ms: ts_ms + 3_000,
        time_source: TimeSource::Device,
    }
}

/// M every 15 minutes from 1 January to 20 May 2026 (with a three-day
/// outage in February, one reading with no number, and an hourly gauge);
/// OLD every 15 minutes until 20 March, then it is taken out.
fn history() -> Vec<Reading> {
    let mut out = Vec::new();
    let (mut m, mut old) = (1_000.0f64, 50.0f64);
    let end = JAN1 + 139 * DAY;
    let mut t = JAN1 + 60_000;
    let mut i = 0u64;
    while t < end {
        // Steps of 0.25–1.0 kWh: exact in binary, so sums do not depend on order.
        m += 0.25 + (i % 4) as f64 * 0.25;
        let outage = (JAN1 + 40 * DAY..JAN1 + 43 * DAY).contains(&t);
        if !outage {
            let value = if i == 5_000 { f64::NAN } else { m };
            out.push(reading("M", "energy_import", t, value));
        }
        if i.is_multiple_of(4) {
            out.push(reading("M", "power_kw", t, (i % 13) as f64 * 1.5));
        }
        if t < JAN1 + 78 * DAY {
            old += 0.5;
            out.push(reading("OLD", "energy_import", t, old));
        }
        t += Q;
        i += 1;
    }
    out
}

/// Held back, then sent after the compaction: M's whole 3 February (its
/// neighbours then lie a day and 15 minutes apart: a long gap kept whole
/// until they come) and one of OLD's January readings.
fn late(r: &Reading) -> bool {
    let feb3 = JAN1 + 33 * DAY;
    (r.meter == "M" && r.quantity == "energy_import" && r.ts_ms >= feb3 && r.ts_ms < feb3 + DAY)
        || (r.meter == "OLD" && r.ts_ms == JAN1 + 14 * DAY + 48 * Q + 60_000)
}

/// Store A: the whole history in time order, as rows; with the readings
/// held back and the others.
fn store_a(dir: &Path) -> (Site, Vec<Reading>, Vec<Reading>) {
    let all = history();
    let (held, early): (Vec<Reading>, Vec<Reading>) = all.iter().cloned().partition(late);
    let a_site = site(dir, "a.db");
    let mut a = Writer::open(&a_site).expect("store a");
    write(&mut a, &all);
    (a_site, held, early)
}

fn write(w: &mut Writer, rows: &[Reading]) {
    for chunk in rows.chunks(5_000) {
        w.write_batch(chunk, "test").expect("batch commits");
    }
}

/// Everything a reader can be asked, as text lines.
fn snapshot(db: &Path) -> Vec<String> {
    let r = Reader::open(db).expect("store opens");
    let mut out = Vec::new();
    for (meter, q) in [
        ("M", "energy_import"),
        ("M", "power_kw"),
        ("OLD", "energy_import"),
    ] {
        let id = r.series_id(meter, q).expect("query").expect("series");
        let (lo, hi) = (i64::MIN, i64::MAX);
        for x in r.readings(id, lo, hi).expect("readings") {
            out.push(format!("{meter} {q} reading {x:?}"));
        }
        for x in r.intervals(id, lo, hi).expect("intervals") {
            out.push(format!("{meter} interval {x:?}"));
        }
        for x in r.hours(id, lo, hi).expect("hours") {
            out.push(format!("{meter} hour {x:?}"));
        }
        for x in r.days(id, "0000", "9999").expect("days") {
            out.push(format!("{meter} day {x:?}"));
        }
        // A window that starts and ends inside compacted months.
        for x in r
            .intervals(id, JAN1 + 20 * DAY + 7 * Q, JAN1 + 50 * DAY + 3 * Q)
            .expect("intervals")
        {
            out.push(format!("{meter} window {x:?}"));
        }
        out.push(format!(
            "{meter} {q} total {} last {:?} {:?}",
            r.total_micro(id).expect("total"),
            r.last_ts(id).expect("last"),
            r.last_value(id).expect("last value")
        ));
        out.push(format!(
            "{meter} {q} gaps {:?} {:?}",
            r.long_gaps(id, lo, hi, 3_600_000).expect("gaps"),
            r.long_gaps(id, JAN1 + 41 * DAY, JAN1 + 42 * DAY, 3_600_000)
                .expect("gaps")
        ));
    }
    for scope in [
        (Level::Building, "B"),
        (Level::Agency, "A1"),
        (Level::Agency, "A2"),
        (Level::Site, "site"),
    ] {
        for grain in [
            Grain::Quarter,
            Grain::Hour,
            Grain::Day,
            Grain::Month,
            Grain::Year,
        ] {
            for x in r
                .agg(
                    scope.0,
                    scope.1,
                    EnergyClass::Electricity,
                    "",
                    grain,
                    i64::MIN,
                    i64::MAX,
                )
                .expect("agg")
            {
                out.push(format!("{:?} {} {grain:?} {x:?}", scope.0, scope.1));
            }
        }
    }
    let mut after = (i64::MIN, i64::MIN);
    loop {
        let page = r.raw_page(after, 7_000).expect("page");
        let Some(last) = page.last() else { break };
        after = (last.series, last.ts_ms);
        out.extend(page.iter().map(|x| format!("raw {x:?}")));
    }
    for t in ["readings", "intervals", "rollup_hour"] {
        out.push(format!("count {t} {}", r.count(t).expect("count")));
    }
    out
}

fn live_rows(db: &Path, table: &str) -> i64 {
    let c = rusqlite::Connection::open(db).expect("open");
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

fn same(a: &[String], b: &[String], what: &str) {
    if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
        panic!(
            "{what}: first difference at line {i} of {}/{}:\n  {:?}\n  {:?}",
            a.len(),
            b.len(),
            a.get(i),
            b.get(i)
        );
    }
}

#[test]
fn compacted_months_read_the_same_and_take_late_readings_like_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A: everything in time order, never compacted.
    let (a_site, held, early) = store_a(dir.path());
    assert_eq!(held.len(), 96 + 1);
    let reference = snapshot(&a_site.store_path());

    // B: without the held-back readings, then compacted.
    let b_site = site(dir.path(), "b.db");
    let b_db = b_site.store_path();
    let mut b = Writer::open(&b_site).expect("store b");
    write(&mut b, &early);
    let before = snapshot(&b_db);
    let readings_before = live_rows(&b_db, "readings");
    let report = b.compact(35).expect("compaction");
    assert!(report.done);
    // M's newest reading is 20 May: January, February and March (ending
    // 1 April, before 15 April) are closed; OLD's newest is 20 March: only
    // January (ending 1 February, before 13 February). The scopes follow
    // the newest reading of all: January to March.
    assert_eq!(report.series_months, 3 + 3 + 1, "{report:?}");
    let scopes = live_rows(&b_db, "agg_scope");
    assert!(report.scope_months >= 3 * scopes as usize - 3, "{report:?}");
    let after = snapshot(&b_db);
    same(&before, &after, "compaction changed what readers see");
    // The rows of the closed months left their tables.
    let readings_left = live_rows(&b_db, "readings");
    assert!(
        readings_left * 2 < readings_before,
        "{readings_left} of {readings_before} readings still rows"
    );
    assert!(live_rows(&b_db, "cold") > 0);

    // The late readings into compacted months, as one batch.
    write(&mut b, &held);
    drop(b);
    same(
        &reference,
        &snapshot(&b_db),
        "late readings into compacted months",
    );

    // Compacted again (and reopened: nothing cached), still the same.
    let mut b = Writer::open(&b_site).expect("store b");
    let again = b.compact(35).expect("compaction");
    assert!(again.series_months >= 2, "{again:?}");
    drop(b);
    same(&reference, &snapshot(&b_db), "after compacting again");

    // A reading after the compacted months, from a writer that opened a
    // compacted store, goes on like in A.
    next_reading_alike(&a_site, &b_site, "a new reading after compaction");
}

/// One more reading of M, written by a fresh writer into each store: both
/// stores still read the same.
fn next_reading_alike(a_site: &Site, b_site: &Site, what: &str) {
    let next = reading("M", "energy_import", JAN1 + 139 * DAY + 60_000, 99_999.0);
    for s in [a_site, b_site] {
        let mut w = Writer::open(s).expect("store");
        write(&mut w, std::slice::from_ref(&next));
    }
    same(
        &snapshot(&a_site.store_path()),
        &snapshot(&b_site.store_path()),
        what,
    );
}

#[test]
fn a_compaction_killed_at_any_moment_leaves_every_month_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = site(dir.path(), "k.db");
    let db = site.store_path();
    let mut w = Writer::open(&site).expect("store");
    write(&mut w, &history());
    drop(w);
    let reference = snapshot(&db);
    let config = dir.path().join("site.toml");
    std::fs::write(&config, site_text(dir.path(), "k.db")).expect("site file");
    let config = config.to_str().expect("path");
    // SIGKILL after 20-200 ms: each run goes on from the months the last
    // one committed; a month is rows or a block, never half of each.
    for ms in [20u64, 60, 120, 200] {
        let mut child = crate::support::bin()
            .args(["compact", "--config", config])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        same(&reference, &snapshot(&db), &format!("killed after {ms} ms"));
    }
    let out = crate::support::run(&["compact", "--config", config, "--vacuum"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("series-months") && text.contains("vacuumed"),
        "{text}"
    );
    same(&reference, &snapshot(&db), "after a full compaction");
    assert!(live_rows(&db, "cold") > 0);
    // Nothing left to do the second time.
    let out = crate::support::run(&["compact", "--config", config]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("compacted 0 series-months and 0 scope-months"),
        "{text}"
    );
}

#[test]
fn compaction_in_slices_ends_where_one_pass_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = history();
    let one = site(dir.path(), "one.db");
    let mut w = Writer::open(&one).expect("store");
    write(&mut w, &all);
    let whole = w.compact(35).expect("compaction");
    drop(w);
    let sliced = site(dir.path(), "sliced.db");
    let mut w = Writer::open(&sliced).expect("store");
    write(&mut w, &all);
    // A zero budget: one series or scope per call, as the daemon's writer
    // would do between batches (with readings arriving in between).
    let mut calls = 0;
    let mut total = meterflow_store::CompactReport::default();
    loop {
        let r = w
            .compact_within(35, Some(std::time::Duration::ZERO))
            .expect("slice");
        calls += 1;
        total.series_months += r.series_months;
        total.scope_months += r.scope_months;
        total.rows += r.rows;
        if r.done {
            break;
        }
        assert!(calls < 1_000, "slices do not advance");
    }
    drop(w);
    // 3 series and every scope, one each per call (the last call also ends the pass).
    let scopes = live_rows(&sliced.store_path(), "agg_scope") as usize;
    assert!(calls >= 3 + scopes, "{calls} calls for {scopes} scopes");
    assert_eq!(
        (total.series_months, total.scope_months, total.rows),
        (whole.series_months, whole.scope_months, whole.rows)
    );
    same(
        &snapshot(&one.store_path()),
        &snapshot(&sliced.store_path()),
        "sliced compaction",
    );
    assert_eq!(
        live_rows(&one.store_path(), "cold"),
        live_rows(&sliced.store_path(), "cold")
    );
}

#[test]
fn a_writer_notices_that_another_process_compacted_its_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a_site, held, early) = store_a(dir.path());
    // The daemon's writer (kept open, its caches warm) and `meterflow
    // compact` on the same store: two connections, as two processes.
    let b_site = site(dir.path(), "b.db");
    let mut daemon = Writer::open(&b_site).expect("store b");
    write(&mut daemon, &early);
    let mut command = Writer::open(&b_site).expect("second writer");
    let report = command.compact(35).expect("compaction");
    assert!(report.series_months > 0, "{report:?}");
    drop(command);
    // Late readings into the months the other process compacted.
    write(&mut daemon, &held);
    drop(daemon);
    same(
        &snapshot(&a_site.store_path()),
        &snapshot(&b_site.store_path()),
        "late readings after another process compacted",
    );
}

/// Starts of the blocks of `cold` that do not start a local month
/// (+08:00): an import's segments not merged yet.
fn segments(db: &Path) -> Vec<i64> {
    let c = rusqlite::Connection::open(db).expect("open");
    let months: Vec<i64> = c
        .prepare("SELECT month_ms FROM cold")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("blocks");
    months
        .into_iter()
        .filter(|m| {
            let local = chrono::DateTime::from_timestamp_millis(*m + 8 * 3_600_000)
                .expect("time")
                .naive_utc();
            local.format("%d %H:%M:%S%.3f").to_string() != "01 00:00:00.000"
        })
        .collect()
}

#[test]
fn an_import_writes_closed_months_as_blocks_that_read_like_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A: everything in time order through the streaming path, as rows.
    let (a_site, held, early) = store_a(dir.path());
    let reference = snapshot(&a_site.store_path());
    // R: the readings but the held-back ones, as rows.
    let r_site = site(dir.path(), "r.db");
    let mut r = Writer::open(&r_site).expect("store r");
    write(&mut r, &early);
    drop(r);

    // C: the same readings as a bulk load. January to May 2026 ended more
    // than 35 days before today (the test runs after June 2026), so
    // readings, intervals and hours go into blocks as they come, batch by
    // batch; the readings are a minute past the quarter hour, so each
    // batch ends with an interval and an hour the next batch adds to.
    let c_site = site(dir.path(), "c.db");
    let c_db = c_site.store_path();
    let mut c = Writer::open(&c_site).expect("store c");
    c.bulk_load(true).expect("bulk");
    write(&mut c, &early);
    let rows = live_rows(&c_db, "readings");
    assert!(
        rows < 50,
        "{rows} of {} readings written as rows",
        early.len()
    );
    let before = segments(&c_db);
    assert!(before.len() > 10, "{} segments written", before.len());
    same(
        &snapshot(&r_site.store_path()),
        &snapshot(&c_db),
        "a bulk load into blocks against rows",
    );

    // Late readings into those segments, still in the bulk load: the
    // series' blocks after the baseline are thawed, the result is exactly
    // in-order arrival's.
    write(&mut c, &held);
    c.bulk_load(false).expect("bulk off");
    drop(c);
    same(&reference, &snapshot(&c_db), "late readings into segments");

    // The compaction merges each closed month's segments and rows into one
    // block. Closed for every series (OLD's newest reading is 20 March):
    // January; M's months up to March.
    let mut c = Writer::open(&c_site).expect("store c");
    let report = c.compact(35).expect("compaction");
    assert!(report.series_months >= 4, "{report:?}");
    drop(c);
    let left = segments(&c_db);
    assert!(left.len() < before.len(), "{left:?}");
    let feb1 = JAN1 + 31 * DAY;
    assert!(
        left.iter().all(|m| *m >= feb1),
        "January segments left: {left:?}"
    );
    same(&reference, &snapshot(&c_db), "after merging segments");

    // A new writer goes on after the blocks like the streaming store.
    next_reading_alike(
        &a_site,
        &c_site,
        "a new reading after an import into blocks",
    );
}

/// The bulk load against the streaming path on the same input, for several
/// batch sizes (batches end anywhere in a series, an hour or a month) and
/// sets of readings that arrive late (about one in 40, each 37 readings
/// after its place: mostly in the same batch as later readings of its
/// series that are collected for blocks, sometimes in the next batch, when
/// they are blocks already): every reader answer is the same.
#[test]
fn bulk_loads_with_any_batches_and_late_readings_equal_the_streaming_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a_site, _, _) = store_a(dir.path());
    let reference = snapshot(&a_site.store_path());
    let all = history();
    for (seed, batch) in [(1u64, 97usize), (2, 1_000), (3, 4_096), (4, 333)] {
        // A fixed mix of the seed and the reading's time (splitmix64).
        let late = |r: &Reading| {
            let mut z = (r.ts_ms as u64) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)).is_multiple_of(40)
        };
        let mut stream = Vec::with_capacity(all.len());
        let mut pending: std::collections::VecDeque<(usize, Reading)> = Default::default();
        for (i, r) in all.iter().enumerate() {
            if late(r) {
                pending.push_back((i + 37, r.clone()));
            } else {
                stream.push(r.clone());
            }
            while pending.front().is_some_and(|(due, _)| *due <= i) {
                if let Some((_, r)) = pending.pop_front() {
                    stream.push(r);
                }
            }
        }
        stream.extend(pending.into_iter().map(|(_, r)| r));
        assert_eq!(stream.len(), all.len());
        let s = site(dir.path(), &format!("bulk{seed}.db"));
        let mut w = Writer::open(&s).expect("store");
        w.bulk_load(true).expect("bulk");
        for chunk in stream.chunks(batch) {
            w.write_batch(chunk, "test").expect("batch commits");
        }
        w.bulk_load(false).expect("bulk off");
        drop(w);
        same(
            &reference,
            &snapshot(&s.store_path()),
            &format!("seed {seed}, batches of {batch}"),
        );
    }
}
