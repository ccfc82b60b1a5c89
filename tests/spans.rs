//! A long gap is one estimated span (issue 24): one row, expanded where
//! buckets are read, with the buckets, hours, days and scope rollups that
//! bucket-by-bucket spreading gives; a late reading inside it re-derives it
//! exactly as in-order arrival; a reading 26 years before the next costs a
//! handful of rows.

use std::collections::BTreeMap;
use std::path::Path;

use meterflow_core::aggregate::{Grain, Level};
use meterflow_core::counter::{CounterSpec, Item};
use meterflow_core::memlog::MemSeries;
use meterflow_model::{EnergyClass, Reading, Site, TimeSource};

const Q: i64 = 900_000;

fn site(dir: &Path) -> Site {
    let src = crate::support::shared_building_site(dir, "spans", "s.db", "2026-03-25");
    Site::parse(&src, &dir.join("site.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("time")
        .timestamp_millis()
}

fn reading(meter: &str, ts_ms: i64, value: f64) -> Reading {
    Reading {
        meter: meter.into(),
        quantity: "energy_import".into(),
        ts_ms,
        value,
        recv_ms: ts_ms,
        time_source: TimeSource::Import,
    }
}

/// A day of quarter-hour readings (10 kWh each) from 2026-03-01 00:00, a
/// reading at 2026-04-10 13:07 (40 days later, 9 000 kWh more), and four
/// quarter hours after it.
fn readings() -> Vec<Reading> {
    let t0 = ms("2026-03-01T00:00:00+08:00");
    let mut v = 100.0;
    let mut out = Vec::new();
    for i in 0..=96 {
        out.push(reading("M", t0 + i * Q, v));
        v += 10.0;
    }
    v += 9_000.0 - 10.0;
    let t1 = ms("2026-04-10T13:07:00+08:00");
    for i in 0..5 {
        out.push(reading("M", t1 + i * Q, v));
        v += 10.0;
    }
    out
}

/// A reading inside the gap, on the line between its ends.
fn inside() -> Reading {
    let (a, b) = (
        ms("2026-03-02T00:00:00+08:00"),
        ms("2026-04-10T13:07:00+08:00"),
    );
    let t = ms("2026-03-20T08:00:00+08:00");
    let (va, vb) = (1060.0, 1060.0 + 9_000.0);
    reading("M", t, va + (vb - va) * (t - a) as f64 / (b - a) as f64)
}

fn count(db: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(db).expect("store");
    c.query_row(sql, [], |r| r.get(0)).expect("count")
}

/// Every derived table of a store, in a comparable form.
fn derived(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).expect("store");
    let mut out = Vec::new();
    for sql in [
        "SELECT s.meter, i.bucket_ms, i.micro, i.measured_ms, i.estimated_ms FROM intervals i JOIN series s ON s.id = i.series ORDER BY 1, 2",
        "SELECT s.meter, h.hour_ms, h.micro, h.measured, h.estimated FROM rollup_hour h JOIN series s ON s.id = h.series ORDER BY 1, 2",
        "SELECT s.meter, d.day, d.micro, d.measured, d.estimated FROM rollup_day d JOIN series s ON s.id = d.series ORDER BY 1, 2",
        "SELECT s.meter, x.from_ms, x.to_ms, x.micro, x.lo_ms, x.hi_ms FROM spans x JOIN series s ON s.id = x.series ORDER BY 1, 2",
        "SELECT g.level, g.ref, g.class, g.subitem, a.grain, a.start_ms, a.value, a.measured, a.estimated FROM agg a JOIN agg_scope g ON g.id = a.scope ORDER BY 1, 2, 3, 4, 5, 6",
        "SELECT g.level, g.ref, g.class, g.subitem, b.lo_ms, b.hi_ms, b.value, b.estimated FROM agg_span b JOIN agg_scope g ON g.id = b.scope ORDER BY 1, 2, 3, 4, 5",
    ] {
        let mut s = c.prepare(sql).expect("prepare");
        let n = s.column_count();
        let rows = s
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        r.get::<_, rusqlite::types::Value>(i)
                            .map(|v| format!("{v:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|v| v.join(" "))
            })
            .expect("query");
        out.extend(rows.map(|r| r.expect("row")));
    }
    out
}

type Buckets = BTreeMap<i64, (i64, i64, i64)>;

/// A series' buckets read back from the store, and the in-memory reference's.
fn buckets_and_reference(
    reader: &meterflow_store::Reader,
    series: i64,
    mem: &MemSeries,
) -> (Buckets, Buckets) {
    let read = reader
        .intervals(series, i64::MIN, i64::MAX)
        .expect("intervals")
        .into_iter()
        .map(|i| (i.bucket_ms, (i.micro, i.measured_ms, i.estimated_ms)))
        .collect();
    let want = mem
        .buckets
        .iter()
        .map(|(k, b)| (*k, (b.micro, b.measured_ms, b.estimated_ms)))
        .collect();
    (read, want)
}

#[test]
fn a_long_gap_is_one_span_read_like_every_bucket_and_re_derived_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = site(dir.path());
    let mut w = meterflow_store::Writer::open(&site).expect("store");
    w.write_batch(&readings(), "test").expect("write");
    drop(w);
    let db = site.store_path();
    // The 40 days are one span: the day of readings (96 buckets), the
    // gap's two partial edge buckets, the four quarters after it.
    assert_eq!(count(&db, "SELECT count(*) FROM spans"), 1);
    let rows = count(&db, "SELECT count(*) FROM intervals");
    assert!(rows <= 96 + 2 + 5, "{rows} interval rows");

    // Read back, the buckets are those of bucket-by-bucket spreading (the
    // in-memory reference the store has always been compared with).
    let spec = CounterSpec::for_site(&site, site.meter("M").expect("M"));
    let mut mem = MemSeries::default();
    for r in readings() {
        mem.ingest(
            &spec,
            Item::Reading {
                ts_ms: r.ts_ms,
                value: r.value,
            },
        );
    }
    let reader = meterflow_store::Reader::open(&db).expect("reader");
    let series = reader
        .series_id("M", "energy_import")
        .expect("q")
        .expect("M");
    let (read, want) = buckets_and_reference(&reader, series, &mem);
    assert_eq!(read.len(), want.len());
    assert_eq!(read, want);
    // 96 × 10 + 9 000 + 4 × 10 kWh in all.
    assert_eq!(reader.total_micro(series).expect("total"), 10_000_000_000);
    // A window inside the gap: 8 March, 96 estimated buckets.
    let (a, b) = (
        ms("2026-03-08T00:00:00+08:00"),
        ms("2026-03-09T00:00:00+08:00"),
    );
    let day = reader.intervals(series, a, b).expect("a day");
    assert_eq!(day.len(), 96);
    assert!(
        day.iter()
            .all(|i| i.estimated_ms == Q && i.measured_ms == 0)
    );
    // Hours and days add up the same buckets.
    let hours = reader.hours(series, a, b).expect("hours");
    assert_eq!(hours.len(), 24);
    assert!(hours.iter().all(|h| h.estimated == 4 && h.measured == 0));
    let day_micro: i64 = day.iter().map(|i| i.micro).sum();
    assert_eq!(hours.iter().map(|h| h.micro).sum::<i64>(), day_micro);
    let days = reader
        .days(series, "2026-03-08", "2026-03-09")
        .expect("days");
    assert_eq!((days[0].micro, days[0].estimated), (day_micro, 96));

    // Scopes: the building's 15-minute and hourly rows inside the gap add
    // up to its day; the agencies (60 / 40 by area until A2 leaves on 25
    // March) add up to the building each day.
    let agg = |level: Level, id: &str, grain: Grain, a: i64, b: i64| -> Vec<(i64, i64, i64)> {
        reader
            .agg(level, id, EnergyClass::Electricity, "", grain, a, b)
            .expect("agg")
            .into_iter()
            .map(|r| (r.start_ms, r.raw, r.estimated))
            .collect()
    };
    let q = agg(Level::Building, "B", Grain::Quarter, a, b);
    let h = agg(Level::Building, "B", Grain::Hour, a, b);
    let d = agg(Level::Building, "B", Grain::Day, a, b);
    assert_eq!((q.len(), h.len(), d.len()), (96, 24, 1));
    let sum = |v: &[(i64, i64, i64)]| v.iter().map(|x| x.1).sum::<i64>();
    assert_eq!(sum(&q), d[0].1);
    assert_eq!(sum(&h), d[0].1);
    // Nano-kWh: the meter's micro-kWh × 1 000.
    assert_eq!(d[0].1, day_micro * 1000);
    assert_eq!(q.iter().map(|x| x.2).sum::<i64>(), 96);
    let a1 = agg(Level::Agency, "A1", Grain::Day, a, b);
    let a2 = agg(Level::Agency, "A2", Grain::Day, a, b);
    assert_eq!(a1[0].1 + a2[0].1, d[0].1);
    assert_eq!(a1[0].1, d[0].1 * 6 / 10);
    // After 25 March A1 has it all.
    let (c0, c1) = (
        ms("2026-03-28T00:00:00+08:00"),
        ms("2026-03-29T00:00:00+08:00"),
    );
    assert_eq!(
        sum(&agg(Level::Agency, "A1", Grain::Quarter, c0, c1)),
        agg(Level::Building, "B", Grain::Day, c0, c1)[0].1
    );
    assert!(agg(Level::Agency, "A2", Grain::Quarter, c0, c1).is_empty());

    // A late reading inside the gap: two spans, and every derived row what
    // in-order arrival gives.
    let mut w = meterflow_store::Writer::open(&site).expect("store");
    w.write_batch(&[inside()], "test").expect("late");
    drop(w);
    assert_eq!(count(&db, "SELECT count(*) FROM spans"), 2);
    let dir2 = tempfile::tempdir().expect("tempdir");
    let site2 = self::site(dir2.path());
    let mut all = readings();
    all.push(inside());
    all.sort_by_key(|r| r.ts_ms);
    let mut w = meterflow_store::Writer::open(&site2).expect("store");
    w.write_batch(&all, "test").expect("in order");
    drop(w);
    let (late, in_order) = (derived(&db), derived(&site2.store_path()));
    assert_eq!(late.len(), in_order.len());
    for (x, y) in late.iter().zip(&in_order) {
        assert_eq!(x, y);
    }
    // And the reads still equal the reference with the new reading.
    mem.ingest(
        &spec,
        Item::Reading {
            ts_ms: inside().ts_ms,
            value: inside().value,
        },
    );
    let reader = meterflow_store::Reader::open(&db).expect("reader");
    let (read, want) = buckets_and_reference(&reader, series, &mem);
    assert_eq!(read, want);
}

/// A reading on 2000-01-02 (inside the default plausible window) before a
/// meter's readings of 2026: 26 years, 923 000 buckets bucket by bucket
/// before; now one span, its days and the scopes' days, months and years.
#[test]
fn a_reading_26_years_early_costs_rows_by_the_day_not_by_the_bucket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = site(dir.path());
    let mut w = meterflow_store::Writer::open(&site).expect("store");
    let t = ms("2026-03-01T00:00:00+08:00");
    w.write_batch(
        &[reading("OLD", t, 500.0), reading("OLD", t + Q, 501.0)],
        "test",
    )
    .expect("write");
    let report = w
        .write_batch(
            &[reading("OLD", ms("2000-01-02T00:00:00+08:00"), 100.0)],
            "test",
        )
        .expect("early reading");
    assert_eq!(report.1.stored, 1, "{report:?}");
    drop(w);
    let db = site.store_path();
    let days = (t - ms("2000-01-02T00:00:00+08:00")) / 86_400_000;
    assert_eq!(days, 9555);
    assert_eq!(count(&db, "SELECT count(*) FROM spans"), 1);
    assert!(count(&db, "SELECT count(*) FROM intervals") <= 3);
    assert!(count(&db, "SELECT count(*) FROM rollup_hour") <= 3);
    assert!(
        count(
            &db,
            "SELECT count(*) FROM agg WHERE grain IN ('15m', 'hour')"
        ) <= 3 * 4 * 2
    );
    // Rows by the day: the meter's days, and each scope's (building, site,
    // the two agencies while they share it) days.
    assert!(count(&db, "SELECT count(*) FROM rollup_day") <= days + 2);
    assert!(count(&db, "SELECT count(*) FROM agg_span") <= 4 * days);
    // All of it is there: 400 kWh over the 26 years, and the site's year
    // 2010 has its share by time.
    let reader = meterflow_store::Reader::open(&db).expect("reader");
    let series = reader
        .series_id("OLD", "energy_import")
        .expect("q")
        .expect("OLD");
    assert_eq!(reader.total_micro(series).expect("total"), 401_000_000);
    let y2010 = reader
        .agg(
            Level::Site,
            "site",
            EnergyClass::Electricity,
            "",
            Grain::Year,
            ms("2010-01-01T00:00:00+08:00"),
            ms("2010-01-01T00:00:01+08:00"),
        )
        .expect("year");
    // 365 of the 9 555 days: 400 × 365 / 9 555 = 15.280 kWh.
    assert!(
        (y2010[0].value - 400.0 * 365.0 / 9555.0).abs() < 1e-3,
        "{y2010:?}"
    );
}
