//! Adding to the three counters of a derived row (intervals, hourly and daily
//! rollups, scope rollups) inside the writer's transaction.
//!
//! Read, then insert, update or delete: `INSERT … ON CONFLICT DO UPDATE …
//! RETURNING` did the same in one statement, but SQLite collects RETURNING
//! rows in a temporary table per execution. The `sqlite-upsert` bench
//! measured it at ~2.5× a plain insert (1.89 against 0.74–0.76 µs a row) and
//! the read-then-write at ~1.4× (1.05 µs); see `docs/performance.md`.

use std::path::Path;
use std::sync::LazyLock;

use rusqlite::{CachedStatement, OptionalExtension, ToSql, Transaction};

use crate::error::{Ctx, StoreError};

/// The statements of one table with a key and three summed counters.
pub(crate) struct CounterTable {
    select: String,
    insert: String,
    update: String,
    delete: String,
}

impl CounterTable {
    /// `table (keys…, counters…)`; parameters are the keys, then the counters.
    pub(crate) fn new(table: &str, keys: &[&str], counters: [&str; 3]) -> CounterTable {
        let n = keys.len();
        let key_match = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = ?{}", i + 1))
            .collect::<Vec<_>>()
            .join(" AND ");
        let [c0, c1, c2] = counters;
        let columns = keys
            .iter()
            .copied()
            .chain(counters)
            .collect::<Vec<_>>()
            .join(", ");
        let marks = (1..=n + 3)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        CounterTable {
            select: format!("SELECT {c0}, {c1}, {c2} FROM {table} WHERE {key_match}"),
            insert: format!("INSERT INTO {table} ({columns}) VALUES ({marks})"),
            update: format!(
                "UPDATE {table} SET {c0} = ?{}, {c1} = ?{}, {c2} = ?{} WHERE {key_match}",
                n + 1,
                n + 2,
                n + 3
            ),
            delete: format!("DELETE FROM {table} WHERE {key_match}"),
        }
    }

    /// Add `delta` to the row at `key`, creating it if absent and deleting it
    /// when all three counters reach zero. Returns the counters before and after.
    pub(crate) fn add(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        key: &[&dyn ToSql],
        delta: [i64; 3],
    ) -> Result<([i64; 3], [i64; 3]), StoreError> {
        let old: Option<[i64; 3]> = tx
            .prepare_cached(&self.select)
            .and_then(|mut s| {
                s.query_row(key, |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]))
                    .optional()
            })
            .at(path)?;
        let before = old.unwrap_or_default();
        let after = [
            before[0].saturating_add(delta[0]),
            before[1].saturating_add(delta[1]),
            before[2].saturating_add(delta[2]),
        ];
        if after == [0; 3] {
            if old.is_some() {
                tx.prepare_cached(&self.delete)
                    .and_then(|mut s| s.execute(key))
                    .at(path)?;
            }
        } else if after != before {
            let sql = if old.is_some() {
                &self.update
            } else {
                &self.insert
            };
            let mut params: Vec<&dyn ToSql> = Vec::with_capacity(key.len() + 3);
            params.extend_from_slice(key);
            params.extend(after.iter().map(|v| v as &dyn ToSql));
            tx.prepare_cached(sql)
                .and_then(|mut s| s.execute(params.as_slice()))
                .at(path)?;
        }
        Ok((before, after))
    }

    /// The insert statement, prepared once for a run of [`Self::insert_with`].
    pub(crate) fn inserter<'c>(
        &self,
        tx: &'c Transaction<'_>,
        path: &Path,
    ) -> Result<CachedStatement<'c>, StoreError> {
        tx.prepare_cached(&self.insert).at(path)
    }

    /// Insert the row at `key`, known to be absent (nothing to read first),
    /// with a statement from [`CounterTable::inserter`] (looking the
    /// statement up per row hashed its SQL each time).
    pub(crate) fn insert_with(
        stmt: &mut CachedStatement<'_>,
        path: &Path,
        key: &[&dyn ToSql],
        value: [i64; 3],
    ) -> Result<(), StoreError> {
        if value == [0; 3] {
            return Ok(());
        }
        // At most three key columns (the tables above): no allocation per row.
        debug_assert!(key.len() <= 3);
        let mut params: [&dyn ToSql; 6] = [&0i64; 6];
        let n = key.len().min(3);
        params[..n].copy_from_slice(&key[..n]);
        for (i, v) in value.iter().enumerate() {
            params[n + i] = v;
        }
        stmt.execute(&params[..n + 3]).at(path)?;
        Ok(())
    }
}

/// 15-minute intervals of a series.
pub(crate) static INTERVALS: LazyLock<CounterTable> = LazyLock::new(|| {
    CounterTable::new(
        "intervals",
        &["series", "bucket_ms"],
        ["micro", "measured_ms", "estimated_ms"],
    )
});

/// Local-hour rollups of a series.
pub(crate) static ROLLUP_HOUR: LazyLock<CounterTable> = LazyLock::new(|| {
    CounterTable::new(
        "rollup_hour",
        &["series", "hour_ms"],
        ["micro", "measured", "estimated"],
    )
});

/// Local-day rollups of a series.
pub(crate) static ROLLUP_DAY: LazyLock<CounterTable> = LazyLock::new(|| {
    CounterTable::new(
        "rollup_day",
        &["series", "day"],
        ["micro", "measured", "estimated"],
    )
});

/// Scope rollups (zone, building, agency, site) at every grain.
pub(crate) static AGG: LazyLock<CounterTable> = LazyLock::new(|| {
    CounterTable::new(
        "agg",
        &["scope", "grain", "start_ms"],
        ["value", "measured", "estimated"],
    )
});
