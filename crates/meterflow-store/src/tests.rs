//! The store derives exactly what the in-memory reference derives.

use std::collections::BTreeMap;
use std::path::Path;

use meterflow_core::counter::{CounterSpec, Item};

use meterflow_core::memlog::MemSeries;
use meterflow_model::{AnomalyKind, Reading, Site, TimeSource};

use crate::{Reader, Verdict, Writer};

const T0: i64 = 1_735_660_800_000; // 2025-01-01T00:00+08:00

fn site(dir: &Path) -> Site {
    let src = format!(
        r#"
[site]
name = "t"
[store]
path = "{}/t.db"
[[building]]
id = "b"
total_area_m2 = 1
[[meter]]
id = "m"
kind = "electricity"
unit = "kWh"
serves = {{ building = "b" }}
multiplier = 2
rollover = 100000
max_rate = 400
[[replacement]]
meter = "m"
at = 2025-01-01T05:00:00
old_final = 1200.0
new_initial = 5.0
"#,
        dir.display()
    );
    match Site::parse(&src, &dir.join("site.toml")) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// Values every 15 min for 12 h with a spike, a sentinel and a reset.
fn values() -> Vec<(i64, f64)> {
    let mut v = 1000.0;
    (0..48)
        .map(|i| {
            v += 3.25;
            let value = match i {
                7 => v + 5000.0, // spike
                11 => f64::NAN,  // invalid value
                30 => {
                    v = 2.0; // reset
                    v
                }
                _ => v,
            };
            (T0 + i * 900_000 + 60_000, value)
        })
        .collect()
}

fn reading(ts_ms: i64, value: f64) -> Reading {
    Reading {
        meter: "m".into(),
        quantity: "energy_import".into(),
        ts_ms,
        value,
        recv_ms: ts_ms,
        time_source: TimeSource::Import,
    }
}

fn stored_buckets(path: &Path) -> BTreeMap<i64, (i64, i64, i64)> {
    let r = Reader::open(path).expect("store exists");
    let id = r
        .series_id("m", "energy_import")
        .expect("query")
        .expect("series");
    r.intervals(id, i64::MIN, i64::MAX)
        .expect("query")
        .into_iter()
        .map(|i| (i.bucket_ms, (i.micro, i.measured_ms, i.estimated_ms)))
        .collect()
}

fn reference(site: &Site) -> MemSeries {
    let spec = CounterSpec::from_meter(site.meter("m").expect("meter m"));
    let mut mem = MemSeries::default();
    for (t, v) in values() {
        mem.ingest(&spec, Item::Reading { ts_ms: t, value: v });
    }
    // The store places a replacement declared at T at T − 1 ms (ADR 0004).
    mem.ingest(&spec, crate::replacement_item(&site.replacements[0]));
    mem
}

#[test]
fn shuffled_batches_and_a_restart_give_the_reference_buckets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = site(dir.path());
    let mem = reference(&site);
    let expected: BTreeMap<i64, (i64, i64, i64)> = mem
        .buckets
        .iter()
        .map(|(k, b)| (*k, (b.micro, b.measured_ms, b.estimated_ms)))
        .collect();

    // A fixed permutation: reverse odd positions, interleave.
    let mut order = values();
    order.swap(3, 40);
    order.swap(10, 20);
    order.reverse();
    let (first, second) = order.split_at(17);
    {
        let mut w = Writer::open(&site).expect("open");
        w.write_batch(
            &first
                .iter()
                .map(|&(t, v)| reading(t, v))
                .collect::<Vec<_>>(),
            "test",
        )
        .expect("batch 1");
        w.sync_replacements(&site, T0).expect("replacement");
    }
    // Restart: a new writer resumes from the stored state.
    let mut w = Writer::open(&site).expect("reopen");
    let (verdicts, _) = w
        .write_batch(
            &second
                .iter()
                .map(|&(t, v)| reading(t, v))
                .collect::<Vec<_>>(),
            "test",
        )
        .expect("batch 2");
    assert!(
        verdicts.iter().all(|v| matches!(v, Verdict::Stored(_))),
        "{verdicts:?}"
    );
    assert_eq!(stored_buckets(w.path()), expected);

    // Rollups equal the sums of their buckets.
    let r = Reader::open(w.path()).expect("reader");
    let id = r
        .series_id("m", "energy_import")
        .expect("q")
        .expect("series");
    let day_total: i64 = r
        .days(id, "2025-01-01", "2025-01-02")
        .expect("days")
        .iter()
        .map(|d| d.micro)
        .sum();
    let hour_total: i64 = r
        .hours(id, i64::MIN, i64::MAX)
        .expect("hours")
        .iter()
        .map(|h| h.micro)
        .sum();
    assert_eq!(day_total, mem.total_micro());
    assert_eq!(hour_total, mem.total_micro());
    // Anomalies: the same set as the reference.
    let kinds: Vec<String> = r
        .anomalies(Some("m"), i64::MIN, i64::MAX)
        .expect("anomalies")
        .into_iter()
        .map(|a| a.kind)
        .collect();
    let mut want: Vec<String> = mem
        .anomalies
        .values()
        .flatten()
        .map(|a| a.kind.as_str().to_string())
        .collect();
    let mut got = kinds.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert!(
        got.contains(&"implausible_delta".to_string())
            && got.contains(&"counter_reset".to_string())
    );
}

#[test]
fn same_batch_twice_changes_nothing_and_conflicts_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = site(dir.path());
    let rs: Vec<Reading> = values().into_iter().map(|(t, v)| reading(t, v)).collect();
    let mut w = Writer::open(&site).expect("open");
    w.write_batch(&rs, "a").expect("first");
    let before = stored_buckets(w.path());
    let (verdicts, report) = w.write_batch(&rs, "a").expect("second");
    assert!(
        verdicts.iter().all(|v| *v == Verdict::Duplicate),
        "{verdicts:?}"
    );
    assert_eq!((report.stored, report.duplicates), (0, 48));
    assert_eq!(stored_buckets(w.path()), before);
    let mut changed = rs[5].clone();
    changed.value += 1.0;
    let (verdicts, _) = w.write_batch(&[changed], "a").expect("third");
    assert!(
        matches!(verdicts[0], Verdict::Conflict { .. }),
        "{verdicts:?}"
    );
    assert_eq!(stored_buckets(w.path()), before);
}

/// A message delivered twice inside one batch (an MQTT redelivery): the
/// first copy's row still waits for its chunk of 32 when the second comes,
/// and must be found all the same. The same value is a duplicate, another
/// value a conflict, and the buckets are those of the six readings alone.
#[test]
fn a_reading_repeated_in_its_own_batch_is_a_duplicate_or_a_conflict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = site(dir.path());
    let six: Vec<Reading> = values()
        .into_iter()
        .take(6)
        .map(|(t, v)| reading(t, v))
        .collect();
    let alone = {
        let d = tempfile::tempdir().expect("tempdir");
        let s = self::site(d.path());
        let mut w = Writer::open(&s).expect("open");
        w.write_batch(&six, "a").expect("six");
        stored_buckets(w.path())
    };
    let mut batch = six.clone();
    batch.push(six[3].clone());
    let mut other = six[4].clone();
    other.value += 1.0;
    batch.push(other);
    let mut w = Writer::open(&site).expect("open");
    let (verdicts, report) = w.write_batch(&batch, "a").expect("one batch");
    assert!(
        verdicts[..6]
            .iter()
            .all(|v| matches!(v, Verdict::Stored(_))),
        "{verdicts:?}"
    );
    assert_eq!(verdicts[6], Verdict::Duplicate);
    assert!(
        matches!(verdicts[7], Verdict::Conflict { existing: Some(v) } if v == six[4].value),
        "{verdicts:?}"
    );
    assert_eq!(
        (report.stored, report.duplicates, report.refused),
        (6, 1, 1)
    );
    assert_eq!(stored_buckets(w.path()), alone);
}

#[test]
fn retention_keeps_the_baseline_and_refuses_what_can_no_longer_be_derived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = site(dir.path());
    let day = 86_400_000;
    // One reading a day for 10 days, +10 units each (×2 multiplier = 20 per day).
    let rs: Vec<Reading> = (0..10)
        .map(|d| reading(T0 + d * day, 100.0 + 10.0 * d as f64))
        .collect();
    let mut w = Writer::open(&site).expect("open");
    w.write_batch(&rs, "t").expect("write");
    let before = stored_buckets(w.path());
    // Keep 3 days before "now" = day 9: horizon = day 6. Rows before day 5 go;
    // day 5 (the last baseline before the horizon) stays.
    let deleted = w.apply_retention(3, T0 + 9 * day).expect("retention");
    assert_eq!(deleted, 5);
    let r = Reader::open(w.path()).expect("reader");
    let id = r
        .series_id("m", "energy_import")
        .expect("q")
        .expect("series");
    let kept: Vec<i64> = r
        .readings(id, i64::MIN, i64::MAX)
        .expect("readings")
        .iter()
        .map(|x| (x.ts_ms - T0) / day)
        .collect();
    assert_eq!(kept, vec![5, 6, 7, 8, 9]);
    // Intervals are kept forever.
    assert_eq!(stored_buckets(w.path()), before);
    // A reading older than the horizon is refused; a new one still derives from day 9.
    let (v, _) = w
        .write_batch(
            &[
                reading(T0 + 2 * day + 1, 121.0),
                reading(T0 + 10 * day, 200.0),
            ],
            "t",
        )
        .expect("write");
    assert_eq!(v[0], Verdict::TooOld);
    assert!(
        matches!(
            v[1],
            Verdict::Stored(Some(meterflow_core::counter::Status::Good))
        ),
        "{v:?}"
    );
    // Day 9 → day 10: (200 − 190) × 2 = 20 units, spread over that day's 96 buckets.
    let after: i64 = stored_buckets(w.path()).values().map(|b| b.0).sum();
    let before_total: i64 = before.values().map(|b| b.0).sum();
    assert_eq!(after - before_total, 20_000_000);
    // The horizon survives a restart.
    drop(w);
    let mut w = Writer::open(&site).expect("reopen");
    let (v, _) = w
        .write_batch(&[reading(T0 + 3 * day + 7, 130.0)], "t")
        .expect("write");
    assert_eq!(v[0], Verdict::TooOld);
}

#[test]
fn future_source_time_is_flagged_as_clock_skew_and_still_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = site(dir.path());
    let mut w = Writer::open(&site).expect("open");
    let mut early = reading(T0, 100.0);
    early.recv_ms = T0 + 1_000; // received a second after the source time: fine
    let mut skewed = reading(T0 + 900_000, 101.0);
    skewed.recv_ms = T0 + 900_000 - 6 * 60_000; // source time 6 min ahead of arrival
    let (v, report) = w.write_batch(&[early, skewed], "t").expect("write");
    assert!(v.iter().all(|v| matches!(v, Verdict::Stored(_))));
    assert_eq!(
        report
            .anomalies
            .get(&meterflow_model::AnomalyKind::ClockSkew),
        Some(&1)
    );
    let r = Reader::open(w.path()).expect("reader");
    let a = r
        .anomalies(Some("m"), i64::MIN, i64::MAX)
        .expect("anomalies");
    assert_eq!(
        a.iter()
            .map(|a| (a.ts_ms, a.kind.as_str()))
            .collect::<Vec<_>>(),
        vec![(T0 + 900_000, "clock_skew")]
    );
}

/// A site with `[influx]` and a 1 MiB outbox bound under `policy`.
fn influx_site(dir: &Path, policy: &str) -> Site {
    let src = format!(
        "[site]\nname = \"t\"\n[store]\npath = \"{}/t.db\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n[[meter]]\nid = \"m\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\n[influx]\nurl = \"http://127.0.0.1:1\"\ndatabase = \"d\"\noutbox_max_mib = 1\nwhen_full = \"{policy}\"\n",
        dir.display()
    );
    Site::parse(&src, &dir.join("site.toml")).unwrap_or_else(|e| panic!("{e}"))
}

/// Readings every 15 min from `from` (index), rising 1 kWh each.
fn rising(from: usize, n: usize) -> Vec<Reading> {
    (from..from + n)
        .map(|i| reading(T0 + i as i64 * 900_000, 1000.0 + i as f64))
        .collect()
}

/// Fill the outbox past 1 MiB: each reading adds a raw reading point, a
/// consumption point and 20 rollup points (5 grains × building/site × class
/// and sub-item "total"), ~2.5 KB.
fn fill(w: &mut Writer) -> usize {
    let mut i = 0;
    while w.write_batch(&rising(i, 100), "t").is_ok() {
        i += 100;
        assert!(i < 100_000, "the outbox never filled");
    }
    i
}

#[test]
fn a_full_outbox_blocks_commits_until_the_sink_drains_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = influx_site(dir.path(), "block");
    let mut w = Writer::open(&site).expect("writer");
    let written = fill(&mut w);
    let outbox = crate::Outbox::open(&site.store_path()).expect("outbox");
    let before = outbox.stats().expect("stats");
    assert!(before.bytes >= 1 << 20, "{before:?}");
    // Refused before anything is written: the batch is not stored at all.
    match w.write_batch(&rising(written, 10), "t") {
        Err(crate::StoreError::OutboxFull { bytes, limit, .. }) => {
            assert_eq!(limit, 1 << 20);
            assert_eq!(bytes, before.bytes);
        }
        other => panic!("expected OutboxFull, got {other:?}"),
    }
    assert_eq!(stored_readings(&site), written);
    assert_eq!(outbox.stats().expect("stats").dropped, 0);
    // The sink delivers everything: commits go on.
    let mut outbox = outbox;
    outbox.ack(i64::MAX).expect("ack");
    assert_eq!(outbox.stats().expect("stats").points, 0);
    let (verdicts, _) = w
        .write_batch(&rising(written, 10), "t")
        .expect("commits again");
    assert!(verdicts.iter().all(|v| matches!(v, Verdict::Stored(_))));
}

#[test]
fn drop_oldest_drops_whole_head_rows_and_counts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = influx_site(dir.path(), "drop_oldest");
    let mut w = Writer::open(&site).expect("writer");
    // Under drop_oldest writes never fail: write until the bound was crossed.
    let mut i = 0;
    let outbox = crate::Outbox::open(&site.store_path()).expect("outbox");
    while outbox.stats().expect("stats").bytes < 1 << 20 {
        w.write_batch(&rising(i, 100), "t").expect("write");
        i += 100;
    }
    let full = outbox.stats().expect("stats");
    let head = outbox.peek(1, 1).expect("peek")[0].id;
    w.write_batch(&rising(i, 100), "t")
        .expect("the next write makes room");
    let after = outbox.stats().expect("stats");
    // A tenth of the bound beyond the excess went from the head, counted.
    assert!(after.dropped > 0, "{after:?}");
    assert!(after.bytes < full.bytes, "{full:?} → {after:?}");
    assert!(outbox.peek(1, 1).expect("peek")[0].id > head);
    // The store itself keeps every reading.
    assert_eq!(stored_readings(&site), i + 100);
}

fn stored_readings(site: &Site) -> usize {
    let c = rusqlite::Connection::open(site.store_path()).expect("open");
    c.query_row("SELECT count(*) FROM readings", [], |r| r.get::<_, i64>(0))
        .expect("count") as usize
}

/// Readings dated 2100, at i64::MAX or i64::MIN, or before the meter went
/// into service, become dead letters with their reason: no raw row, no
/// bucket, and the meter's next reading is unaffected (issue 24).
#[test]
fn implausible_times_are_dead_letters_and_cost_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = format!(
        r#"
[site]
name = "t"
[store]
path = "{}/t.db"
max_future_s = 3600
[[building]]
id = "b"
total_area_m2 = 1
[[meter]]
id = "m"
kind = "electricity"
unit = "kWh"
serves = {{ building = "b" }}
in_service = 2024-07-01
"#,
        dir.path().display()
    );
    let site = Site::parse(&src, Path::new("t.toml")).expect("site");
    // 2024-07-01T00:00+08:00 = 2024-06-30T16:00Z = 1 719 763 200 000 ms.
    let in_service = 1_719_763_200_000;
    let m = site.meter("m").expect("meter");
    assert_eq!(site.earliest_ms(m), in_service);
    let mut w = Writer::open(&site).expect("open");
    let now = T0 + 86_400_000;
    let at = |ts_ms: i64, value: f64| Reading {
        recv_ms: now,
        ..reading(ts_ms, value)
    };
    // 2100-01-01T00:00Z = 4 102 444 800 000 ms.
    let batch = [
        at(T0, 100.0),
        at(4_102_444_800_000, 200.0),
        at(i64::MAX, 300.0),
        at(i64::MIN, 400.0),
        at(in_service - 1, 50.0),
        at(in_service, 60.0),
        // One hour past the receive time is the bound (max_future_s = 3600).
        at(now + 3_600_000, 150.0),
        at(now + 3_600_001, 151.0),
    ];
    let (v, report) = w.write_batch(&batch, "t").expect("write");
    let implausible: Vec<usize> = v
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(v, Verdict::ImplausibleTime { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(implausible, vec![1, 2, 3, 4, 7]);
    assert_eq!(report.stored, 3);
    match &v[1] {
        Verdict::ImplausibleTime { reason } => assert!(
            reason.contains("2100-01-01T00:00:00Z") && reason.contains("more than 1 h after"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    match &v[4] {
        Verdict::ImplausibleTime { reason } => {
            assert!(reason.contains("2024-06-30T16:00:00Z"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Five dead letters, each with the reason and the reading.
    let conn = rusqlite::Connection::open(w.path()).expect("open");
    let dead: Vec<(String, String)> = conn
        .prepare("SELECT reason, payload FROM dead_letters ORDER BY id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(dead.len(), 5);
    assert!(
        dead.iter()
            .all(|(r, _)| r.starts_with("implausible_time: "))
    );
    assert_eq!(dead[1].1, format!("m energy_import {} 300", i64::MAX));
    // Three raw rows; the buckets run from the in-service reading to one
    // hour past `now`, nothing towards 2100: (now + 1 h − in_service) / 15 min
    // buckets at most.
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM readings", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 3);
    let buckets = stored_buckets(w.path());
    let last = buckets.keys().next_back().copied().unwrap_or(0);
    assert!(last <= now + 3_600_000, "a bucket at {last}");
    assert!(buckets.len() as i64 <= (now + 3_600_000 - in_service) / 900_000 + 1);
    // The next reading of the meter, an hour later, is an ordinary one:
    // 160 − 150 = 10 register units counted (× multiplier 1).
    let next = Reading {
        recv_ms: now + 7_200_000,
        ..reading(now + 7_200_000, 160.0)
    };
    let (v, report) = w.write_batch(&[next], "t").expect("write");
    assert!(matches!(v[0], Verdict::Stored(_)), "{v:?}");
    // No reset and no spike: only the hour's silence is noted.
    assert_eq!(
        report
            .anomalies
            .keys()
            .map(|k| k.as_str())
            .collect::<Vec<_>>(),
        vec!["meter_silent"]
    );
    let after = stored_buckets(w.path());
    let added: i64 =
        after.values().map(|b| b.0).sum::<i64>() - buckets.values().map(|b| b.0).sum::<i64>();
    assert_eq!(added, 10_000_000);
}

/// A new store is its owner's only (0600), and so are its WAL files.
#[cfg(unix)]
#[test]
fn a_new_store_is_created_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let site = site(dir.path());
    let mut w = Writer::open(&site).expect("open");
    w.write_batch(&[reading(T0, 100.0)], "t").expect("write");
    for f in ["t.db", "t.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}: {:o}", mode & 0o777);
    }
}

/// Anomaly lines of the outbox, in delivery order.
fn anomaly_lines(site: &Site) -> Vec<String> {
    let outbox = crate::Outbox::open(&site.store_path()).expect("outbox");
    outbox
        .peek(100_000, 1 << 30)
        .expect("peek")
        .iter()
        .flat_map(|r| r.body.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| l.starts_with("anomaly,"))
        .collect()
}

#[test]
fn an_anomaly_a_late_reading_withdraws_is_neither_counted_nor_left_downstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = influx_site(dir.path(), "block");
    let mut w = Writer::open(&site).expect("writer");
    // Batch 1: T0 and T0 + 4 h: a 4-hour gap (> 3 × 15 min) → meter_silent at T0 + 4 h.
    let (_, r1) = w
        .write_batch(
            &[reading(T0, 1000.0), reading(T0 + 16 * 900_000, 1016.0)],
            "t",
        )
        .expect("write");
    assert_eq!(r1.anomalies.get(&AnomalyKind::MeterSilent), Some(&1));
    // Batch 2: the 15 readings in between arrive late: the gap was not one.
    let late: Vec<Reading> = (1..16)
        .map(|i| reading(T0 + i * 900_000, 1000.0 + i as f64))
        .collect();
    let (_, r2) = w.write_batch(&late, "t").expect("write");
    assert_eq!(
        r2.retracted.get(&AnomalyKind::MeterSilent),
        Some(&1),
        "{r2:?}"
    );
    assert!(
        !r2.anomalies.contains_key(&AnomalyKind::MeterSilent),
        "{r2:?}"
    );
    let reader = crate::Reader::open(&site.store_path()).expect("reader");
    assert!(
        reader
            .anomalies(Some("m"), i64::MIN, i64::MAX)
            .expect("anomalies")
            .iter()
            .all(|a| a.kind != "meter_silent")
    );
    // Downstream: the point sent with batch 1 is rewritten with count 0 (same
    // tags and time), so a sum over InfluxDB counts nothing.
    let lines: Vec<String> = anomaly_lines(&site)
        .into_iter()
        .filter(|l| l.contains("kind=meter_silent"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let time = |l: &str| l.rsplit(' ').next().unwrap_or_default().to_string();
    assert!(
        lines[0].contains("count=1i") && lines[1].contains("count=0i"),
        "{lines:?}"
    );
    assert_eq!(time(&lines[0]), time(&lines[1]));

    // Within one batch: the gap and its filling together raise nothing at all.
    let dir = tempfile::tempdir().expect("tempdir");
    let site = influx_site(dir.path(), "block");
    let mut w = Writer::open(&site).expect("writer");
    let mut all = vec![reading(T0, 1000.0), reading(T0 + 16 * 900_000, 1016.0)];
    all.extend((1..16).map(|i| reading(T0 + i * 900_000, 1000.0 + i as f64)));
    let (_, r) = w.write_batch(&all, "t").expect("write");
    assert!(
        !r.anomalies.contains_key(&AnomalyKind::MeterSilent),
        "{r:?}"
    );
    assert!(
        anomaly_lines(&site)
            .iter()
            .all(|l| !l.contains("kind=meter_silent")),
        "{:?}",
        anomaly_lines(&site)
    );
}
