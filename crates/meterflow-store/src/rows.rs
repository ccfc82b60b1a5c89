//! New readings rows of the open transaction, inserted a chunk at a time.
//!
//! An `INSERT` of one row pays for starting the statement, checking the
//! transaction, opening the table's cursor, halting and resetting: about as
//! much as placing the row in the B-tree. One `INSERT … VALUES (…), (…), …`
//! of [`CHUNK`] rows pays for those once (measured in
//! `docs/performance.md`). Rows wait here only while nothing reads or
//! updates the `readings` table in the transaction: the writer calls
//! [`PendingRows::flush`] before every such statement and before the commit.

use std::path::Path;
use std::sync::LazyLock;

use meterflow_core::counter::Item;
use rusqlite::{CachedStatement, Connection};

use crate::error::{Ctx, StoreError};

/// Rows per multi-row statement (10 parameters each, far below SQLite's
/// limit of 32 766).
pub(crate) const CHUNK: usize = 32;

const COLUMNS: &str = "INSERT INTO readings (series, ts_ms, kind, value, aux, raw, recv_ms, time_source, source, status) VALUES ";

/// The single-row insert.
static INSERT_ONE: LazyLock<String> = LazyLock::new(|| format!("{COLUMNS}{}", values(1)));

static INSERT_CHUNK: LazyLock<String> = LazyLock::new(|| format!("{COLUMNS}{}", values(CHUNK)));

fn values(rows: usize) -> String {
    vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(", ")
}

/// One row of the `readings` table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReadingRow {
    pub(crate) series: i64,
    pub(crate) ts_ms: i64,
    /// 0 a reading, 1 a replacement.
    pub(crate) kind: i64,
    /// NULL when the source sent a non-finite number (`raw` keeps its text).
    pub(crate) value: Option<f64>,
    pub(crate) aux: Option<f64>,
    pub(crate) raw: Option<String>,
    pub(crate) recv_ms: i64,
    pub(crate) time_source: i64,
    pub(crate) source: i64,
    pub(crate) status: Option<i64>,
}

impl ReadingRow {
    /// The row of `item` (a reading, or a replacement: kind 1, `aux` the new
    /// meter's initial value). SQLite stores NaN as NULL, so a non-finite
    /// value is NULL with its text in `raw`.
    pub(crate) fn of(
        series: i64,
        item: &Item,
        recv_ms: i64,
        time_source: i64,
        source: i64,
        status: Option<i64>,
    ) -> ReadingRow {
        let (ts_ms, kind, value, aux) = match *item {
            Item::Reading { ts_ms, value } => (ts_ms, 0, value, None),
            Item::Replacement {
                ts_ms,
                old_final,
                new_initial,
            } => (ts_ms, 1, old_final, Some(new_initial)),
        };
        let finite = value.is_finite();
        ReadingRow {
            series,
            ts_ms,
            kind,
            value: finite.then_some(value),
            aux,
            raw: (!finite).then(|| raw_text(value)),
            recv_ms,
            time_source,
            source,
            status,
        }
    }
}

/// The text kept for a value SQLite cannot hold (NaN, ±inf).
pub(crate) fn raw_text(v: f64) -> String {
    format!("{v}")
}

/// Rows waiting for their chunk, with the two statements prepared once for
/// the transaction (looking a statement up per row, by hashing its text,
/// cost more than it saved).
pub(crate) struct PendingRows<'c> {
    one: CachedStatement<'c>,
    chunk: CachedStatement<'c>,
    rows: Vec<ReadingRow>,
}

impl<'c> PendingRows<'c> {
    /// Statements on `conn` (the open transaction).
    pub(crate) fn new(conn: &'c Connection, path: &Path) -> Result<PendingRows<'c>, StoreError> {
        Ok(PendingRows {
            one: conn.prepare_cached(&INSERT_ONE).at(path)?,
            chunk: conn.prepare_cached(&INSERT_CHUNK).at(path)?,
            rows: Vec::with_capacity(CHUNK),
        })
    }

    /// Queue a row; a full chunk is inserted at once.
    pub(crate) fn push(&mut self, path: &Path, row: ReadingRow) -> Result<(), StoreError> {
        self.rows.push(row);
        if self.rows.len() >= CHUNK {
            self.flush(path)?;
        }
        Ok(())
    }

    /// Insert every queued row. A key already stored fails here, as the
    /// single insert would have.
    pub(crate) fn flush(&mut self, path: &Path) -> Result<(), StoreError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut chunks = self.rows.chunks_exact(CHUNK);
        for chunk in chunks.by_ref() {
            for (i, row) in chunk.iter().enumerate() {
                bind(&mut self.chunk, i * 10, row).at(path)?;
            }
            self.chunk.raw_execute().at(path)?;
        }
        for row in chunks.remainder() {
            bind(&mut self.one, 0, row).at(path)?;
            self.one.raw_execute().at(path)?;
        }
        self.rows.clear();
        Ok(())
    }
}

/// Bind `row` to parameters `at + 1 ..= at + 10`.
fn bind(s: &mut CachedStatement<'_>, at: usize, row: &ReadingRow) -> rusqlite::Result<()> {
    s.raw_bind_parameter(at + 1, row.series)?;
    s.raw_bind_parameter(at + 2, row.ts_ms)?;
    s.raw_bind_parameter(at + 3, row.kind)?;
    s.raw_bind_parameter(at + 4, row.value)?;
    s.raw_bind_parameter(at + 5, row.aux)?;
    s.raw_bind_parameter(at + 6, row.raw.as_deref())?;
    s.raw_bind_parameter(at + 7, row.recv_ms)?;
    s.raw_bind_parameter(at + 8, row.time_source)?;
    s.raw_bind_parameter(at + 9, row.source)?;
    s.raw_bind_parameter(at + 10, row.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(series: i64, ts_ms: i64) -> ReadingRow {
        ReadingRow {
            series,
            ts_ms,
            kind: 0,
            value: Some(ts_ms as f64 / 7.0),
            aux: None,
            raw: (ts_ms % 5 == 0).then(|| "NaN".to_string()),
            recv_ms: ts_ms + 3,
            time_source: ts_ms % 4,
            source: 2,
            status: (ts_ms % 3 != 0).then_some(ts_ms % 8),
        }
    }

    fn stored(conn: &Connection) -> Vec<ReadingRow> {
        let mut s = conn
            .prepare("SELECT series, ts_ms, kind, value, aux, raw, recv_ms, time_source, source, status FROM readings ORDER BY series, ts_ms")
            .expect("prepare");
        s.query_map([], |r| {
            Ok(ReadingRow {
                series: r.get(0)?,
                ts_ms: r.get(1)?,
                kind: r.get(2)?,
                value: r.get(3)?,
                aux: r.get(4)?,
                raw: r.get(5)?,
                recv_ms: r.get(6)?,
                time_source: r.get(7)?,
                source: r.get(8)?,
                status: r.get(9)?,
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    }

    fn table() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "CREATE TABLE readings (series INTEGER NOT NULL, ts_ms INTEGER NOT NULL, kind INTEGER NOT NULL DEFAULT 0, value REAL, aux REAL, raw TEXT, recv_ms INTEGER NOT NULL, time_source INTEGER NOT NULL, source INTEGER NOT NULL, status INTEGER, PRIMARY KEY (series, ts_ms)) WITHOUT ROWID",
        )
        .expect("schema");
        conn
    }

    /// 2 full chunks and 7 single rows (71 = 2 × 32 + 7), every column
    /// varied: each row reads back exactly as queued, in any column.
    #[test]
    fn full_chunks_and_the_rest_store_every_row_and_column() {
        let conn = table();
        let path = Path::new("mem");
        let want: Vec<ReadingRow> = (0..71).map(|k| row(k % 3, 1_000 + k)).collect();
        {
            let mut p = PendingRows::new(&conn, path).expect("statements");
            for r in &want {
                p.push(path, r.clone()).expect("push");
            }
            // 64 rows are in; 7 wait for their chunk until the flush.
            let n: i64 = conn
                .query_row("SELECT count(*) FROM readings", [], |r| r.get(0))
                .expect("count");
            assert_eq!(n, 64);
            p.flush(path).expect("flush");
        }
        let mut want = want;
        want.sort_by_key(|r| (r.series, r.ts_ms));
        assert_eq!(stored(&conn), want);
    }

    /// A key stored twice fails at the flush, like the single insert.
    #[test]
    fn a_key_already_stored_fails_at_the_flush() {
        let conn = table();
        let path = Path::new("mem");
        let mut p = PendingRows::new(&conn, path).expect("statements");
        p.push(path, row(1, 10)).expect("push");
        p.push(path, row(1, 10)).expect("push");
        assert!(p.flush(path).is_err());
    }
}
