//! The cost of the ways to add to a derived row (the intervals table, with
//! the writer's pragmas), one statement per row, in batches shaped like an
//! MQTT drain: 8 series × 400 new 15-minute buckets per transaction, 100
//! series, 10 rounds (384 000 rows).
//!
//! - `upsert-returning`: `INSERT … ON CONFLICT DO UPDATE … RETURNING` (what
//!   the writer did before `CounterTable`);
//! - `upsert`: the same without RETURNING;
//! - `select-write`: read the row, then write it (what `CounterTable` does);
//! - `insert`: a plain insert, the floor.
//!
//! `cargo run --release -p meterflow-benches --bin sqlite-upsert`

use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};

const UPSERT: &str = "INSERT INTO intervals VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (series, bucket_ms) DO UPDATE SET micro = micro + excluded.micro, measured_ms = measured_ms + excluded.measured_ms, estimated_ms = estimated_ms + excluded.estimated_ms";

fn run(mode: &str, dir: &std::path::Path) -> anyhow::Result<f64> {
    let path = dir.join(format!("{mode}.db"));
    let mut c = Connection::open(&path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "cache_size", -(256 * 1024))?;
    c.execute_batch(
        "CREATE TABLE intervals (series INTEGER NOT NULL, bucket_ms INTEGER NOT NULL, micro INTEGER NOT NULL,
           measured_ms INTEGER NOT NULL, estimated_ms INTEGER NOT NULL, PRIMARY KEY (series, bucket_ms)) WITHOUT ROWID;",
    )?;
    let returning = format!("{UPSERT} RETURNING micro, measured_ms, estimated_ms");
    let t = Instant::now();
    let mut rows = 0u64;
    for round in 0..10i64 {
        for group in 0..(100 / 8 + 1) {
            let tx = c.transaction()?;
            for s in (group * 8)..(group * 8 + 8).min(100) {
                for b in (round * 400)..(round * 400 + 400) {
                    let row = params![s, b * 900_000, 1_000i64, 900_000i64, 0i64];
                    match mode {
                        "upsert-returning" => {
                            let _: (i64, i64, i64) = tx
                                .prepare_cached(&returning)?
                                .query_row(row, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                        }
                        "upsert" => {
                            tx.prepare_cached(UPSERT)?.execute(row)?;
                        }
                        "select-write" => {
                            let old: Option<i64> = tx
                                .prepare_cached("SELECT micro FROM intervals WHERE series = ?1 AND bucket_ms = ?2")?
                                .query_row(params![s, b * 900_000], |r| r.get(0))
                                .optional()?;
                            let sql = if old.is_some() {
                                "UPDATE intervals SET micro = ?3, measured_ms = ?4, estimated_ms = ?5 WHERE series = ?1 AND bucket_ms = ?2"
                            } else {
                                "INSERT INTO intervals VALUES (?1, ?2, ?3, ?4, ?5)"
                            };
                            tx.prepare_cached(sql)?.execute(row)?;
                        }
                        _ => {
                            tx.prepare_cached("INSERT INTO intervals VALUES (?1, ?2, ?3, ?4, ?5)")?
                                .execute(row)?;
                        }
                    }
                    rows += 1;
                }
            }
            tx.commit()?;
        }
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / rows as f64)
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let modes = ["upsert-returning", "upsert", "select-write", "insert"];
    let mut us = Vec::new();
    for m in modes {
        us.push(run(m, dir.path())?);
    }
    let floor = us[3];
    for (m, u) in modes.iter().zip(&us) {
        println!(
            "{m:>17}: {u:.3} µs per row ({:.2}× a plain insert)",
            u / floor
        );
    }
    Ok(())
}
