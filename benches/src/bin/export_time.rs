//! Export time: the annual assessment (`meterflow export assessment`) of a
//! stored year, in each format, with the process's peak memory.
//!
//! `cargo run --release -p meterflow-benches --bin export-time -- SITE.toml YEAR`
//! exports any site with a year in its store, e.g. the api-latency
//! benchmark's (1 000 meters, 20 agencies, 100 buildings).
//!
//! `cargo run --release -p meterflow-benches --bin export-time -- --fixture DIR`
//! first builds (once; reused while `DIR/fixture-done` exists) the issue's
//! size: 5 000 meters of 200 agencies in 20 buildings with a year (2025) of
//! 15-minute data, 175 M meter intervals held as scope rollups, then exports
//! it. The intervals go through the real streaming aggregator (hierarchy,
//! area shares, the 1 July moves) and its rollup rows are written to the
//! store's `agg` table in bulk, as the writer would have left them. The
//! per-meter `readings` and `intervals` tables stay empty: the export reads
//! only the scope rollups, the anomalies and the ledgers, and importing 175 M
//! readings through the full pipeline would take hours on this machine
//! (35 M took 31 min). Ledgers: every agency has monthly waste weigh-ins
//! (one agency none, for the veto), every fourth agency a vehicle with weekly
//! fuel fills and trips; 2 % of the meters have one anomaly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::NaiveDate;
use meterflow_benches::assessment_site::{AGENCIES, METERS, site_toml};
use meterflow_core::aggregate::{Aggregator, Grain};
use meterflow_core::buckets::BUCKET_MS;
use meterflow_core::memlog::BucketTotals;
use meterflow_core::time::day_start;
use meterflow_model::Site;

use meterflow_export::{Format, Profile};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (config, year) = if args.get(1).map(String::as_str) == Some("--fixture") {
        let dir = args
            .get(2)
            .ok_or_else(|| anyhow::anyhow!("usage: export-time --fixture DIR"))?;
        (build_fixture(std::path::Path::new(dir))?, 2025)
    } else {
        let config = args
            .get(1)
            .ok_or_else(|| anyhow::anyhow!("usage: export-time SITE.toml YEAR | --fixture DIR"))?;
        let year: i32 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(2025);
        (std::path::PathBuf::from(config), year)
    };
    let config = &config;
    let site = meterflow_model::Site::load(std::path::Path::new(config))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "site: {} meters, {} agencies, {} buildings; year {year}",
        site.meters.len(),
        site.agencies.len(),
        site.buildings.len()
    );
    let dir = tempfile::tempdir()?;
    for (name, format) in [
        ("csv", Format::Csv),
        ("parquet", Format::Parquet),
        ("xlsx", Format::Xlsx),
    ] {
        let out = dir.path().join(format!("out-{name}"));
        let out = if format == Format::Xlsx {
            out.with_extension("xlsx")
        } else {
            out
        };
        let t = Instant::now();
        let files = meterflow_export::gather::export(
            &site,
            &meterflow_export::gather::Request {
                year,
                agency: None,
                profile: Profile::National,
            },
            format,
            &out,
            &|_| {},
        )?;
        let bytes: u64 = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        println!(
            "{name}: {:.2} s, {} file(s), {:.0} KiB",
            t.elapsed().as_secs_f64(),
            files.len(),
            bytes as f64 / 1024.0
        );
    }
    if let Some(kib) = meterflow_benches::peak_rss_kib() {
        println!("peak RSS: {:.0} MiB", kib as f64 / 1024.0);
    }
    Ok(())
}

/// Build (once) the 5 000-meter year; returns its site file.
fn build_fixture(dir: &Path) -> anyhow::Result<PathBuf> {
    let config = dir.join("site.toml");
    if dir.join("fixture-done").exists() {
        println!("fixture: reused from {}", dir.display());
        return Ok(config);
    }
    std::fs::create_dir_all(dir)?;
    let _ = std::fs::remove_file(dir.join("store.db"));
    std::fs::write(&config, site_toml(dir))?;
    let site = Site::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The schema and the hierarchy fingerprint, as a first run leaves them.
    drop(meterflow_store::Writer::open(&site)?);
    let t = Instant::now();
    let mut agg = Aggregator::new(&site);
    let mut conn = rusqlite::Connection::open(site.store_path())?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -1_048_576i64)?;
    let tx = conn.transaction()?;
    for (i, key) in agg.scopes().iter().enumerate() {
        tx.execute(
            "INSERT INTO agg_scope (id, level, ref, class, subitem) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                i as i64 + 1,
                key.level.as_str(),
                key.id,
                key.class.as_str(),
                key.subitem
            ],
        )?;
    }
    for (i, m) in site.meters.iter().enumerate() {
        tx.execute(
            "INSERT INTO series (id, meter, quantity, counter) VALUES (?1, ?2, ?3, 1)",
            rusqlite::params![i as i64 + 1, m.id, m.counter_quantity()],
        )?;
    }
    tx.commit()?;
    let jan1 = day_start(
        NaiveDate::from_ymd_opt(2025, 1, 1).context("date")?,
        site.tz,
    );
    let empty = BucketTotals::default();
    // Month and year rows collect over the year; finer rows are final after each day.
    let mut open_rows: BTreeMap<(u32, &'static str, i64), (i64, i64, i64)> = BTreeMap::new();
    let mut intervals = 0u64;
    let mut rows = 0u64;
    let meters = site.meters.len() as u32;
    for day in 0..365i64 {
        let start = jan1 + day * 86_400_000;
        for q in 0..96i64 {
            let bucket = start + q * BUCKET_MS;
            for m in 0..meters {
                // One day in March without data for every 50th meter (a gap),
                // and the next day estimated.
                if m % 50 == 0 && day == 70 {
                    continue;
                }
                let water = m as usize >= METERS - 1_000;
                // Daytime load three times the night's; kWh or m³ per 15 minutes.
                let base: i64 = if water {
                    20_000
                } else {
                    500_000 + i64::from(m % 97) * 10_000
                };
                let micro = if (32..76).contains(&q) {
                    base * 3
                } else {
                    base
                };
                let estimated = m % 50 == 0 && day == 71;
                let new = BucketTotals {
                    micro,
                    measured_ms: if estimated { 0 } else { BUCKET_MS },
                    estimated_ms: if estimated { BUCKET_MS } else { 0 },
                };
                agg.apply(m, bucket, &empty, &new);
                intervals += 1;
            }
        }
        let tx = conn.transaction()?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO agg (scope, grain, start_ms, value, measured, estimated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (scope, grain, start_ms) DO UPDATE SET value = value + excluded.value,
                    measured = measured + excluded.measured, estimated = estimated + excluded.estimated",
            )?;
            for d in agg.drain() {
                if matches!(d.grain, Grain::Month | Grain::Year) {
                    let e = open_rows
                        .entry((d.scope, d.grain.as_str(), d.start_ms))
                        .or_default();
                    e.0 += d.value;
                    e.1 += d.measured;
                    e.2 += d.estimated;
                    continue;
                }
                ins.execute(rusqlite::params![
                    i64::from(d.scope) + 1,
                    d.grain.as_str(),
                    d.start_ms,
                    d.value,
                    d.measured,
                    d.estimated
                ])?;
                rows += 1;
            }
        }
        tx.commit()?;
        if day % 30 == 29 {
            println!(
                "fixture: day {} of 365, {intervals} intervals, {rows} rollup rows, {:.0} s",
                day + 1,
                t.elapsed().as_secs_f64()
            );
        }
    }
    let tx = conn.transaction()?;
    for ((scope, grain, start), (v, me, es)) in &open_rows {
        tx.execute(
            "INSERT INTO agg (scope, grain, start_ms, value, measured, estimated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![i64::from(*scope) + 1, grain, start, v, me, es],
        )?;
        rows += 1;
    }
    // An anomaly (a counter reset) on every 50th meter, on 1 June.
    let june = day_start(
        NaiveDate::from_ymd_opt(2025, 6, 1).context("date")?,
        site.tz,
    );
    for m in (0..site.meters.len()).step_by(50) {
        tx.execute(
            "INSERT INTO anomalies (series, ts_ms, kind, detail, detected_ms) VALUES (?1, ?2, 'reset', 'fixture', ?2)",
            rusqlite::params![m as i64 + 1, june + 36_000_000],
        )?;
    }
    tx.commit()?;
    drop(conn);
    let ledger_events = write_ledgers(&site, jan1)?;
    std::fs::write(dir.join("fixture-done"), format!("{intervals} {rows}\n"))?;
    println!(
        "fixture: {intervals} intervals -> {rows} rollup rows, {ledger_events} ledger entries in {:.0} s; store {:.0} MiB",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(site.store_path())?.len() as f64 / 1_048_576.0
    );
    Ok(config)
}

/// Waste weigh-ins, vehicles, trips and fuel fills of the fixture year.
fn write_ledgers(site: &Site, jan1: i64) -> anyhow::Result<usize> {
    let day = 86_400_000i64;
    // (ledger, kind, agency, ts, body)
    let mut events: Vec<(&str, &str, String, i64, String)> = Vec::new();
    for a in 0..AGENCIES {
        let agency = format!("a{a}");
        // The last agency keeps no waste records (the veto).
        if a + 1 < AGENCIES {
            for month in 0..12i64 {
                for (category, destination, kg) in [
                    ("recyclable", "recycling", 40 + a % 7),
                    ("kitchen", "composting", 60 + a % 5),
                    ("hazardous", "hazardous_treatment", 1),
                    ("residual", "incineration", 80 + a % 11),
                ] {
                    events.push((
                        "waste",
                        "weigh_in",
                        agency.clone(),
                        jan1 + (month * 30 + 5) * day,
                        format!(
                            r#"{{"agency":"{agency}","point":"p{a}","category":"{category}","kg":{kg},"destination":"{destination}"}}"#
                        ),
                    ));
                }
            }
        }
        if a % 4 == 0 {
            let plate = format!("京A{a:05}");
            events.push((
                "vehicles",
                "vehicle",
                agency.clone(),
                jan1 - 30 * day,
                format!(
                    r#"{{"plate":"{plate}","agency":"{agency}","fuel":"gasoline","purpose":"general","odometer_km":10000}}"#
                ),
            ));
            for week in 0..52i64 {
                let km = 10_000 + week * 200;
                events.push((
                    "vehicles",
                    "trip",
                    agency.clone(),
                    jan1 + week * 7 * day,
                    format!(
                        r#"{{"plate":"{plate}","start_km":{km},"end_km":{}}}"#,
                        km + 200
                    ),
                ));
                events.push((
                    "vehicles",
                    "fuel",
                    agency.clone(),
                    jan1 + (week * 7 + 1) * day,
                    format!(r#"{{"plate":"{plate}","litres":16,"amount_cny":128}}"#),
                ));
            }
        }
    }
    let batch: Vec<meterflow_store::NewLedgerEvent<'_>> = events
        .iter()
        .map(
            |(ledger, kind, agency, ts, body)| meterflow_store::NewLedgerEvent {
                ledger,
                kind,
                agency: Some(agency),
                ts_ms: *ts,
                body,
                corrects: None,
                void: false,
                author: "bench",
            },
        )
        .collect();
    let mut db = meterflow_store::LedgerDb::open(&site.store_path())?;
    db.append_batch(&batch, jan1)?;
    Ok(batch.len())
}
