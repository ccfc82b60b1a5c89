//! Import throughput: one year of 15-minute readings for 100 meters
//! (3.5 M rows) through `meterflow import`'s library path, next to the rate at
//! which plain SQLite inserts the same rows into a bare table (the reference).
//!
//! `cargo run --release -p meterflow-benches --bin import-throughput -- [METERS] [DAYS] [priced]`
//!
//! With `priced`, the same rows are imported a second time into a store of
//! the same site with tariffs (time of use with 尖峰, water with a
//! surcharge, gas, heat by area, a demand charge), and the two rates are compared: cost
//! is priced where it is read (ADR 0022), so the ratio shows what the
//! tariffs cost the import and its streaming aggregation.

use std::time::Instant;

use meterflow_import::CsvReader;
use meterflow_model::Site;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let meters: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(100);
    let days: u32 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(365);
    let dir = tempfile::tempdir()?;
    let config = meterflow_benches::synthetic_site(dir.path(), meters, 50_000)?;
    let site = Site::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let csv = dir.path().join("year.csv");

    let t = Instant::now();
    let rows = meterflow_benches::year_csv(&site, &csv, days)?;
    let size = std::fs::metadata(&csv)?.len();
    println!(
        "fixture: {meters} meters x {days} days x 96 = {rows} rows, {:.0} MiB CSV, generated in {:.1} s",
        size as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );

    // Reference: parse the same CSV and insert rows into a bare WITHOUT ROWID table, same batch size.
    let reference = raw_sqlite_rate(&csv, &dir.path().join("raw.db"), &site)?;

    let secs = timed_import(&site, &csv, rows)?;
    let rate = rows as f64 / secs;
    if args.get(3).map(String::as_str) == Some("priced") {
        let priced_dir = dir.path().join("priced");
        std::fs::create_dir_all(&priced_dir)?;
        let priced_config = meterflow_benches::synthetic_site(&priced_dir, meters, 50_000)?;
        let mut text = std::fs::read_to_string(&priced_config)?;
        text.push_str(PRICES);
        std::fs::write(&priced_config, text)?;
        let priced = Site::load(&priced_config).map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(!priced.tariffs.is_empty(), "the tariffs were not read");
        let priced_secs = timed_import(&priced, &csv, rows)?;
        let priced_rate = rows as f64 / priced_secs;
        println!(
            "with tariffs: {rows} rows in {priced_secs:.1} s = {priced_rate:.0} rows/s; priced / unpriced = {:.3}",
            priced_rate / rate
        );
    }
    let db = dir.path().join("store.db");
    let db_mib = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    println!(
        "meterflow import: {rows} rows in {secs:.1} s = {rate:.0} rows/s (readings + normaliser + intervals + hourly/daily rollups), store {db_mib:.0} MiB"
    );
    println!("raw SQLite insert of the same rows: {reference:.0} rows/s");
    println!("ratio import / raw insert: {:.2}", rate / reference);
    // The compact store (ADR 0024): bytes in use per reading, all tables
    // and indexes, before and after closed months become blocks.
    let mut w = meterflow_store::Writer::open(&site)?;
    let (used, _) = w.space()?;
    let t = Instant::now();
    let report = w.compact(site.store.compact_after_days)?;
    let compact_secs = t.elapsed().as_secs_f64();
    let (after, _) = w.space()?;
    drop(w);
    println!(
        "by table after compaction (B/reading): {}",
        by_table(&db, rows)?
    );
    let mut w = meterflow_store::Writer::open(&site)?;
    let t = Instant::now();
    w.vacuum()?;
    let vacuum_secs = t.elapsed().as_secs_f64();
    drop(w);
    let file = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "store in use: {:.1} B/reading after import; compaction ({} series-months, {} scope-months, {} rows) in {compact_secs:.1} s = {:.0} rows/s; {:.1} B/reading after; file after VACUUM ({vacuum_secs:.1} s) {:.1} MiB = {:.1} B/reading",
        used as f64 / rows as f64,
        report.series_months,
        report.scope_months,
        report.rows,
        report.rows as f64 / compact_secs,
        after as f64 / rows as f64,
        file as f64 / 1048576.0,
        file as f64 / rows as f64
    );
    if let Some(kib) = meterflow_benches::peak_rss_kib() {
        println!(
            "peak RSS of the whole benchmark process: {:.0} MiB",
            kib as f64 / 1024.0
        );
    }
    Ok(())
}

/// Bytes in use per reading of each table with its indexes (`dbstat`), largest first.
fn by_table(db: &std::path::Path, rows: u64) -> anyhow::Result<String> {
    let c = rusqlite::Connection::open(db)?;
    let mut s = c.prepare(
        "SELECT name, sum(pgsize - unused) AS b FROM dbstat GROUP BY name ORDER BY b DESC LIMIT 8",
    )?;
    let parts: Vec<String> = s
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .map(|x| x.map(|(n, b)| format!("{n} {:.1}", b as f64 / rows as f64)))
        .collect::<Result<_, _>>()?;
    Ok(parts.join(", "))
}

/// Seconds to import `csv` into `site`'s store, every one of its `rows` stored.
fn timed_import(site: &Site, csv: &std::path::Path, rows: u64) -> anyhow::Result<f64> {
    let t = Instant::now();
    let s = meterflow_benches::import_csv(site, csv)?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        s.stored == rows && s.rejected_total() == 0,
        "import stored {} of {rows} rows, rejected {}",
        s.stored,
        s.rejected_total()
    );
    Ok(secs)
}

/// Tariffs of every kind, for the `priced` comparison.
const PRICES: &str = r#"
[[tariff]]
id = "tou"
carrier = "electricity"
from = 2020-01-01
source = "benchmark"
periods = { valley = ["23:00-07:00"], flat = ["07:00-08:00", "11:00-18:00"], peak = ["08:00-11:00", "18:00-23:00"] }
prices = { critical = 1.3, peak = 1.0, flat = 0.7, valley = 0.3 }
critical = { months = [7, 8], hours = ["10:00-11:00", "19:00-21:00"] }
demand_cny_per_kw = 30

[[tariff]]
id = "water"
carrier = "water"
from = 2020-01-01
source = "benchmark"
price = 5.0
surcharge = [{ above_pct = 0, factor = 0.5 }, { above_pct = 20, factor = 1.0 }]

[[tariff]]
id = "gas"
carrier = "gas"
from = 2020-01-01
source = "benchmark"
price = 3.5

[[tariff]]
id = "heat"
carrier = "heat"
from = 2020-01-01
source = "benchmark"
per_m2_season = 30
season = ["11-15", "03-15"]
"#;

fn raw_sqlite_rate(
    csv: &std::path::Path,
    db: &std::path::Path,
    site: &Site,
) -> anyhow::Result<f64> {
    let mut conn = rusqlite::Connection::open(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -262_144)?;
    conn.execute_batch("CREATE TABLE r (series INTEGER NOT NULL, ts_ms INTEGER NOT NULL, value REAL, PRIMARY KEY (series, ts_ms)) WITHOUT ROWID")?;
    let ids: std::collections::HashMap<&str, i64> = site
        .meters
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.as_str(), i as i64))
        .collect();
    let t = Instant::now();
    let mut n = 0u64;
    let mut rows =
        CsvReader::new(std::io::BufReader::new(std::fs::File::open(csv)?), site.tz).peekable();
    while rows.peek().is_some() {
        let tx = conn.transaction()?;
        {
            let mut st =
                tx.prepare_cached("INSERT INTO r (series, ts_ms, value) VALUES (?1, ?2, ?3)")?;
            for row in rows.by_ref().take(50_000) {
                let row = row.map_err(|e| anyhow::anyhow!("{e}"))?;
                st.execute(rusqlite::params![
                    ids.get(row.meter.as_str()).copied().unwrap_or(-1),
                    row.ts_ms,
                    row.value
                ])?;
                n += 1;
            }
        }
        tx.commit()?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}
