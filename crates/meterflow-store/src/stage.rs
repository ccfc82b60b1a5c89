//! An import's closed months written straight into blocks (ADR 0024,
//! "segments").
//!
//! During a bulk load, the readings, 15-minute intervals and hourly rollups
//! of months that are already closed (they ended `compact_after_days` ago)
//! are not inserted as rows: the writer collects them per series during the
//! batch and stores each series-month's share as one block of its own at
//! commit, in the batch's transaction. Only keys that no later in-order
//! reading can touch are collected: a reading after the newest one, an
//! interval or hour before the series' baseline (the next reading spreads
//! from it). Everything else goes into rows as in the streaming path, so a
//! month may hold rows and segments, never the same key twice. The next
//! compaction merges a month's segments and rows into its one block.

use std::collections::HashMap;
use std::path::Path;

use chrono_tz::Tz;
use rusqlite::Connection;
use rusqlite::types::ValueRef;

use crate::cold::{self, Cells, Tbl};
use crate::error::StoreError;
use crate::rows::ReadingRow;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The rows of closed months collected during one batch.
pub(crate) struct Stage {
    /// Keys before this (the start of the first month not yet closed) are collected.
    pub(crate) before_ms: i64,
    pub(crate) readings: FastMap<i64, Vec<ReadingRow>>,
    pub(crate) intervals: FastMap<i64, Vec<(i64, [i64; 3])>>,
    pub(crate) hours: FastMap<i64, Vec<(i64, [i64; 3])>>,
}

struct Readings<'a>(&'a [ReadingRow]);

impl Cells for Readings<'_> {
    fn rows(&self) -> usize {
        self.0.len()
    }

    fn time(&self, i: usize) -> i64 {
        self.0[i].ts_ms
    }

    fn cell(&self, i: usize, c: usize) -> ValueRef<'_> {
        let r = &self.0[i];
        // kind, value, aux, raw, recv_ms, time_source, source, status
        match c {
            0 => ValueRef::Integer(r.kind),
            1 => r.value.map_or(ValueRef::Null, ValueRef::Real),
            2 => r.aux.map_or(ValueRef::Null, ValueRef::Real),
            3 => r
                .raw
                .as_deref()
                .map_or(ValueRef::Null, |t| ValueRef::Text(t.as_bytes())),
            4 => ValueRef::Integer(r.recv_ms),
            5 => ValueRef::Integer(r.time_source),
            6 => ValueRef::Integer(r.source),
            7 => r.status.map_or(ValueRef::Null, ValueRef::Integer),
            _ => ValueRef::Null,
        }
    }
}

struct Counters<'a>(&'a [(i64, [i64; 3])]);

impl Cells for Counters<'_> {
    fn rows(&self) -> usize {
        self.0.len()
    }

    fn time(&self, i: usize) -> i64 {
        self.0[i].0
    }

    fn cell(&self, i: usize, c: usize) -> ValueRef<'_> {
        ValueRef::Integer(self.0[i].1[c])
    }
}

/// Store `rows` (in time order) as one segment per local month they span.
fn by_month<T>(
    conn: &Connection,
    path: &Path,
    tz: Tz,
    rows: &[T],
    time: impl Fn(&T) -> i64,
    mut write: impl FnMut(&Connection, &Path, &[T]) -> Result<usize, StoreError>,
) -> Result<usize, StoreError> {
    let mut n = 0;
    let mut at = 0;
    while at < rows.len() {
        let end = cold::next_month(cold::month_start(time(&rows[at]), tz), tz);
        let len = rows[at..].partition_point(|r| time(r) < end);
        n += write(conn, path, &rows[at..at + len])?;
        at += len;
    }
    Ok(n)
}

impl Stage {
    pub(crate) fn new(before_ms: i64) -> Stage {
        Stage {
            before_ms,
            readings: FastMap::default(),
            intervals: FastMap::default(),
            hours: FastMap::default(),
        }
    }

    /// Forget everything collected.
    pub(crate) fn clear(&mut self) {
        self.readings.clear();
        self.intervals.clear();
        self.hours.clear();
    }

    /// Write the readings collected for `series` (before one of its items
    /// is written out of order: the normaliser reads them back).
    pub(crate) fn write_readings(
        &mut self,
        conn: &Connection,
        path: &Path,
        tz: Tz,
        series: i64,
    ) -> Result<usize, StoreError> {
        let Some(rows) = self.readings.remove(&series) else {
            return Ok(0);
        };
        by_month(
            conn,
            path,
            tz,
            &rows,
            |r| r.ts_ms,
            |c, p, part| cold::write_segment(c, p, Tbl::Readings, series, &Readings(part)),
        )
    }

    /// Write everything collected; the series written, each with the end
    /// of its newest interval and hour written (`i64::MIN`: none).
    pub(crate) fn write_all(
        &mut self,
        conn: &Connection,
        path: &Path,
        tz: Tz,
    ) -> Result<FastMap<i64, i64>, StoreError> {
        let mut touched: FastMap<i64, i64> = FastMap::default();
        let ids: Vec<i64> = self.readings.keys().copied().collect();
        for id in ids {
            self.write_readings(conn, path, tz, id)?;
            touched.entry(id).or_insert(i64::MIN);
        }
        for (tbl, map) in [
            (Tbl::Intervals, &mut self.intervals),
            (Tbl::Hours, &mut self.hours),
        ] {
            for (id, mut rows) in map.drain() {
                rows.sort_unstable_by_key(|r| r.0);
                by_month(
                    conn,
                    path,
                    tz,
                    &rows,
                    |r| r.0,
                    |c, p, part| cold::write_segment(c, p, tbl, id, &Counters(part)),
                )?;
                let end = match (tbl, rows.last()) {
                    (Tbl::Intervals, Some(r)) => r.0 + meterflow_core::buckets::BUCKET_MS,
                    // A local hour lasts at most an hour.
                    (_, Some(r)) => r.0 + 3_600_000,
                    (_, None) => i64::MIN,
                };
                let e = touched.entry(id).or_insert(i64::MIN);
                *e = (*e).max(end);
            }
        }
        Ok(touched)
    }
}
