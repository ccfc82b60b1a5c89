//! Re-sharding: the stores of a site's old shards read page by page and
//! written into new shards' stores, each metering group to the shard the new
//! plan gives it. Readings go through the ordinary write path, so intervals,
//! rollups and anomalies are derived again exactly as at ingest; ledger
//! events go to the new shard 0. Then every meter's totals are compared:
//! the move refuses to call itself done if any reading or micro-unit was
//! lost or doubled.
//!
//! The new stores queue nothing for InfluxDB: the history is already there
//! under the old shards' tags, and its sums do not change (new data comes
//! with the new tags).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use meterflow_model::metering_groups::Plan;
use meterflow_model::{Reading, Site, TimeSource};
use meterflow_store::{LedgerDb, Reader, Verdict, Writer};

/// What a move did, and what it checked.
#[derive(Debug, Default)]
pub struct MoveReport {
    /// The new stores, by shard index.
    pub stores: Vec<PathBuf>,
    /// Readings written into each new store.
    pub readings: Vec<u64>,
    /// Readings of meters the site file does not have (left behind).
    pub unknown: u64,
    /// Ledger events moved to the new shard 0.
    pub ledger_events: usize,
    /// Meter quantities whose reading counts or interval totals differ
    /// between the old and the new stores (empty when nothing was lost).
    pub mismatches: Vec<String>,
    /// Meter quantities compared.
    pub compared: usize,
}

/// Per (meter, quantity): readings and interval micro-units over `stores`.
fn totals(stores: &[PathBuf]) -> anyhow::Result<BTreeMap<(String, String), (u64, i64)>> {
    let mut out: BTreeMap<(String, String), (u64, i64)> = BTreeMap::new();
    for path in stores {
        let r = Reader::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut after = (i64::MIN, i64::MIN);
        let mut seen: BTreeMap<i64, (String, String)> = BTreeMap::new();
        loop {
            let page = r.raw_page(after, 50_000)?;
            let Some(last) = page.last() else { break };
            after = (last.series, last.ts_ms);
            for row in page {
                let key = (row.meter.clone(), row.quantity.clone());
                out.entry(key.clone()).or_default().0 += 1;
                seen.insert(row.series, key);
            }
        }
        for (series, key) in seen {
            out.entry(key).or_default().1 += r.total_micro(series)?;
        }
    }
    Ok(out)
}

/// Move the readings of `old` stores (the shards of any earlier plan, or one
/// unsharded store) into `to` new stores in `out`, planned by `site`.
pub fn move_shards(
    site: &Site,
    old: &[PathBuf],
    to: u32,
    out: &Path,
) -> anyhow::Result<MoveReport> {
    anyhow::ensure!(to >= 1, "at least one shard");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let plan = Plan::new(site, to);
    let stem = site.store_path().file_stem().map_or_else(
        || "meterflow".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let mut report = MoveReport::default();
    let mut writers = Vec::new();
    for j in 0..to {
        let path = out.join(format!("{stem}-shard-{j}-of-{to}.db"));
        anyhow::ensure!(
            !path.exists(),
            "{} exists: move into an empty folder",
            path.display()
        );
        let mut s = site.clone();
        s.store.path = path.clone();
        s.shard = format!("{j}/{to}")
            .parse()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // History is in InfluxDB already, under the old shards' tags.
        s.influx = None;
        s.backup = None;
        let mut w = Writer::open(&s).with_context(|| format!("creating {}", path.display()))?;
        w.sync_replacements_behind(&s, meterflow_model::clock::now_ms())?;
        writers.push((s, w));
        report.stores.push(path);
        report.readings.push(0);
    }
    let batch_rows = site.store.batch_rows.max(1);
    for path in old {
        let r = Reader::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut after = (i64::MIN, i64::MIN);
        loop {
            let page = r.raw_page(after, batch_rows)?;
            let Some(last) = page.last() else { break };
            after = (last.series, last.ts_ms);
            // Per new shard, per source: one batch each.
            let mut batches: BTreeMap<(u32, String), Vec<Reading>> = BTreeMap::new();
            for row in page {
                let Some(j) = plan.meter(&row.meter) else {
                    report.unknown += 1;
                    continue;
                };
                batches.entry((j, row.source)).or_default().push(Reading {
                    meter: row.meter,
                    quantity: row.quantity,
                    ts_ms: row.ts_ms,
                    value: row.value.unwrap_or(f64::NAN),
                    recv_ms: row.recv_ms,
                    time_source: TimeSource::parse(&row.time_source).unwrap_or(TimeSource::Import),
                });
            }
            for ((j, source), readings) in batches {
                let (_, w) = &mut writers[j as usize];
                let (verdicts, _) = w.write_batch(&readings, &source)?;
                report.readings[j as usize] += verdicts
                    .iter()
                    .filter(|v| matches!(v, Verdict::Stored(_)))
                    .count() as u64;
            }
        }
        // Ledgers live on shard 0.
        if let Ok(ledgers) = LedgerDb::open(path) {
            let events = ledgers.all(None)?;
            if !events.is_empty() {
                let mut target = LedgerDb::open(&report.stores[0])?;
                let (added, _) = target
                    .import_events(&events)
                    .map_err(|e| anyhow::anyhow!("ledger events of {}: {e}", path.display()))?;
                report.ledger_events += added;
            }
        }
    }
    for (s, w) in &mut writers {
        w.sync_replacements(s, meterflow_model::clock::now_ms())?;
    }
    drop(writers);
    let before = totals(old)?;
    let after = totals(&report.stores)?;
    report.compared = before.len();
    for (key, b) in &before {
        if site.meter(&key.0).is_none() {
            continue;
        }
        let a = after.get(key).copied().unwrap_or_default();
        if a != *b {
            report.mismatches.push(format!(
                "{} {}: {} readings and {} µ-units before, {} and {} after",
                key.0, key.1, b.0, b.1, a.0, a.1
            ));
        }
    }
    for key in after.keys() {
        if !before.contains_key(key) {
            report
                .mismatches
                .push(format!("{} {}: only after the move", key.0, key.1));
        }
    }
    Ok(report)
}
