//! Closed months kept compactly (ADR 0024).
//!
//! A series' readings, 15-minute intervals and hourly rollups of one local
//! month, and a scope's 15-minute and hourly rollups of one local month,
//! can be moved out of their tables into one row of `cold`: the rows
//! encoded column by column (times as delta-of-delta, integers as deltas,
//! decimals as scaled integers, all as zig-zag varints), then deflated.
//! A key is either a row or in a block, never both: [`freeze`] and [`thaw`]
//! move a month in the caller's transaction, and an import writes closed
//! months' new keys as blocks of their own ([`write_segment`], merged into
//! the month's block by the next [`freeze`]). Readers merge blocks with
//! rows (`Reader`), the writer thaws what a late reading touches before it
//! writes (`Writer`), and `Writer::compact` freezes what is closed.

use std::io::{Read, Write};
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, params, params_from_iter};

use crate::error::{Ctx, StoreError};

/// Which table a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tbl {
    /// `readings` of a series.
    Readings = 0,
    /// `intervals` of a series.
    Intervals = 1,
    /// `rollup_hour` of a series.
    Hours = 2,
    /// `agg` rows of grain `15m` of a scope.
    AggQuarter = 3,
    /// `agg` rows of grain `hour` of a scope.
    AggHour = 4,
}

/// The tables of a series, frozen and thawed together by month.
pub(crate) const SERIES_TABLES: [Tbl; 3] = [Tbl::Readings, Tbl::Intervals, Tbl::Hours];
/// The tables of a scope.
pub(crate) const SCOPE_TABLES: [Tbl; 2] = [Tbl::AggQuarter, Tbl::AggHour];

struct Spec {
    table: &'static str,
    key: &'static str,
    /// A fixed key column and its value (the grain of `agg`).
    fixed: Option<(&'static str, &'static str)>,
    time: &'static str,
    cols: &'static [&'static str],
}

impl Tbl {
    fn spec(self) -> Spec {
        match self {
            Tbl::Readings => Spec {
                table: "readings",
                key: "series",
                fixed: None,
                time: "ts_ms",
                cols: &[
                    "kind",
                    "value",
                    "aux",
                    "raw",
                    "recv_ms",
                    "time_source",
                    "source",
                    "status",
                ],
            },
            Tbl::Intervals => Spec {
                table: "intervals",
                key: "series",
                fixed: None,
                time: "bucket_ms",
                cols: &["micro", "measured_ms", "estimated_ms"],
            },
            Tbl::Hours => Spec {
                table: "rollup_hour",
                key: "series",
                fixed: None,
                time: "hour_ms",
                cols: &["micro", "measured", "estimated"],
            },
            Tbl::AggQuarter => Spec {
                table: "agg",
                key: "scope",
                fixed: Some(("grain", "15m")),
                time: "start_ms",
                cols: &["value", "measured", "estimated"],
            },
            Tbl::AggHour => Spec {
                table: "agg",
                key: "scope",
                fixed: Some(("grain", "hour")),
                time: "start_ms",
                cols: &["value", "measured", "estimated"],
            },
        }
    }

    /// Number of columns after the time.
    pub(crate) fn width(self) -> usize {
        self.spec().cols.len()
    }
}

/// One row of a block: its time and the other columns in table order.
pub(crate) type Row = (i64, Vec<Value>);

/// First instant of the local month of `ts_ms`.
pub(crate) fn month_start(ts_ms: i64, tz: Tz) -> i64 {
    let d = meterflow_core::time::local_date(ts_ms, tz);
    let first = NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap_or(d);
    meterflow_core::time::day_start(first, tz)
}

/// First instant of the local month after the one starting at `start_ms`.
pub(crate) fn next_month(start_ms: i64, tz: Tz) -> i64 {
    let d = meterflow_core::time::local_date(start_ms, tz);
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    match NaiveDate::from_ymd_opt(y, m, 1) {
        Some(n) => meterflow_core::time::day_start(n, tz),
        None => i64::MAX,
    }
}

/// A local month lasts at most this long (a block starting before
/// `from − MAX_MONTH_MS` ends before `from`).
pub(crate) const MAX_MONTH_MS: i64 = 32 * 86_400_000;

// ---- encoding ------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.at).ok_or("block ends early")?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 64 bits".into())
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).ok_or("length overflows")?;
        let s = self.buf.get(self.at..end).ok_or("block ends early")?;
        self.at = end;
        Ok(s)
    }
}

const TAG_NULL: u8 = 0;
const TAG_INT: u8 = 1;
const TAG_REAL: u8 = 2;
const TAG_TEXT: u8 = 3;
const TAG_BLOB: u8 = 4;
/// Reals kept as their bits (XOR with the previous), not as decimals.
const REAL_BITS: u8 = 255;

/// The smallest number of decimals that gives back every real exactly.
fn decimals(reals: &[f64]) -> Option<u8> {
    'k: for k in 0..=9u8 {
        let p = 10f64.powi(i32::from(k));
        for &v in reals {
            let s = (v * p).round();
            // What decode computes, bit for bit (−0.0 is not a decimal).
            if !s.is_finite()
                || s.abs() >= 9.0e15
                || ((s as i64) as f64 / p).to_bits() != v.to_bits()
            {
                continue 'k;
            }
        }
        return Some(k);
    }
    None
}

/// Rows to encode: a time and `width` cells each, in time order.
pub(crate) trait Cells {
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Time of row `i`.
    fn time(&self, i: usize) -> i64;
    /// Cell `c` of row `i`.
    fn cell(&self, i: usize, c: usize) -> ValueRef<'_>;
}

impl Cells for [Row] {
    fn rows(&self) -> usize {
        self.len()
    }

    fn time(&self, i: usize) -> i64 {
        self[i].0
    }

    fn cell(&self, i: usize, c: usize) -> ValueRef<'_> {
        self[i].1.get(c).map_or(ValueRef::Null, ValueRef::from)
    }
}

/// Encode rows sorted by time, each with `width` columns.
pub(crate) fn encode(rows: &[Row], width: usize) -> Vec<u8> {
    encode_cells(rows, width, flate2::Compression::default())
}

/// Encode any [`Cells`], deflated at `level` (any level decodes the same way).
pub(crate) fn encode_cells<C: Cells + ?Sized>(
    rows: &C,
    width: usize,
    level: flate2::Compression,
) -> Vec<u8> {
    let n = rows.rows();
    let mut out = Vec::with_capacity(n * (width + 2));
    put_varint(&mut out, n as u64);
    let (mut prev, mut step) = (0i64, 0i64);
    for i in 0..n {
        let t = rows.time(i);
        let d = t.wrapping_sub(prev);
        put_varint(&mut out, zigzag(d.wrapping_sub(step)));
        step = d;
        prev = t;
    }
    let mut reals = Vec::new();
    for c in 0..width {
        reals.clear();
        for i in 0..n {
            let tag = match rows.cell(i, c) {
                ValueRef::Null => TAG_NULL,
                ValueRef::Integer(_) => TAG_INT,
                ValueRef::Real(f) => {
                    reals.push(f);
                    TAG_REAL
                }
                ValueRef::Text(_) => TAG_TEXT,
                ValueRef::Blob(_) => TAG_BLOB,
            };
            out.push(tag);
        }
        let mut prev = 0i64;
        for i in 0..n {
            if let ValueRef::Integer(v) = rows.cell(i, c) {
                put_varint(&mut out, zigzag(v.wrapping_sub(prev)));
                prev = v;
            }
        }
        if !reals.is_empty() {
            match decimals(&reals) {
                Some(k) => {
                    out.push(k);
                    let p = 10f64.powi(i32::from(k));
                    let mut prev = 0i64;
                    for v in &reals {
                        let s = (v * p).round() as i64;
                        put_varint(&mut out, zigzag(s.wrapping_sub(prev)));
                        prev = s;
                    }
                }
                None => {
                    out.push(REAL_BITS);
                    let mut prev = 0u64;
                    for v in &reals {
                        out.extend_from_slice(&(v.to_bits() ^ prev).to_be_bytes());
                        prev = v.to_bits();
                    }
                }
            }
        }
        for i in 0..n {
            match rows.cell(i, c) {
                ValueRef::Text(b) | ValueRef::Blob(b) => {
                    put_varint(&mut out, b.len() as u64);
                    out.extend_from_slice(b);
                }
                _ => {}
            }
        }
    }
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), level);
    // Writing to a Vec cannot fail.
    let _ = z.write_all(&out);
    z.finish().unwrap_or_default()
}

/// Decode a block of rows with `width` columns.
pub(crate) fn decode(blob: &[u8], width: usize) -> Result<Vec<Row>, String> {
    let mut raw = Vec::new();
    flate2::read::DeflateDecoder::new(blob)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot inflate: {e}"))?;
    let mut c = Cursor { buf: &raw, at: 0 };
    let n = usize::try_from(c.varint()?).map_err(|_| "row count too large")?;
    if n > raw.len() {
        return Err(format!("{n} rows in {} bytes", raw.len()));
    }
    let mut rows: Vec<Row> = Vec::with_capacity(n);
    let (mut prev, mut step) = (0i64, 0i64);
    for _ in 0..n {
        let d = step.wrapping_add(unzigzag(c.varint()?));
        prev = prev.wrapping_add(d);
        step = d;
        rows.push((prev, Vec::with_capacity(width)));
    }
    for _ in 0..width {
        let tags = c.bytes(n)?.to_vec();
        let mut ints = Vec::new();
        let mut prev = 0i64;
        for _ in tags.iter().filter(|t| **t == TAG_INT) {
            prev = prev.wrapping_add(unzigzag(c.varint()?));
            ints.push(prev);
        }
        let nreal = tags.iter().filter(|t| **t == TAG_REAL).count();
        let mut reals = Vec::with_capacity(nreal);
        if nreal > 0 {
            let mode = c.byte()?;
            if mode == REAL_BITS {
                let mut prev = 0u64;
                for _ in 0..nreal {
                    let b: [u8; 8] = c.bytes(8)?.try_into().map_err(|_| "short real")?;
                    prev ^= u64::from_be_bytes(b);
                    reals.push(f64::from_bits(prev));
                }
            } else if mode <= 9 {
                let p = 10f64.powi(i32::from(mode));
                let mut prev = 0i64;
                for _ in 0..nreal {
                    prev = prev.wrapping_add(unzigzag(c.varint()?));
                    reals.push(prev as f64 / p);
                }
            } else {
                return Err(format!("unknown real encoding {mode}"));
            }
        }
        let (mut ii, mut ri) = (ints.into_iter(), reals.into_iter());
        for (row, tag) in rows.iter_mut().zip(&tags) {
            let v = match *tag {
                TAG_NULL => Value::Null,
                TAG_INT => Value::Integer(ii.next().ok_or("missing integer")?),
                TAG_REAL => Value::Real(ri.next().ok_or("missing real")?),
                TAG_TEXT | TAG_BLOB => {
                    let len = usize::try_from(c.varint()?).map_err(|_| "length too large")?;
                    let b = c.bytes(len)?.to_vec();
                    if *tag == TAG_TEXT {
                        Value::Text(String::from_utf8(b).map_err(|_| "text is not UTF-8")?)
                    } else {
                        Value::Blob(b)
                    }
                }
                t => return Err(format!("unknown tag {t}")),
            };
            row.1.push(v);
        }
    }
    if c.at != raw.len() {
        return Err(format!("{} bytes left after the rows", raw.len() - c.at));
    }
    Ok(rows)
}

// ---- moving months -------------------------------------------------------

fn corrupt(path: &Path, tbl: Tbl, key: i64, month: i64, why: String) -> StoreError {
    StoreError::Sqlite {
        path: path.to_path_buf(),
        source: rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            format!(
                "compacted block of {} {key} month {month} is damaged: {why}",
                tbl.spec().table
            )
            .into(),
        ),
    }
}

/// The stored block of a month, decoded.
fn block(
    conn: &Connection,
    path: &Path,
    tbl: Tbl,
    key: i64,
    month: i64,
) -> Result<Option<Vec<Row>>, StoreError> {
    use rusqlite::OptionalExtension;
    let blob: Option<Vec<u8>> = conn
        .prepare_cached("SELECT blob FROM cold WHERE tbl = ?1 AND key = ?2 AND month_ms = ?3")
        .and_then(|mut s| {
            s.query_row(params![tbl as i64, key, month], |r| r.get(0))
                .optional()
        })
        .at(path)?;
    blob.map(|b| decode(&b, tbl.width()).map_err(|e| corrupt(path, tbl, key, month, e)))
        .transpose()
}

/// Move the rows of `key` in the month `[month, end)` into its block (merged
/// with the month's blocks, an import's segments included). Returns the
/// rows moved (rows and segments' rows; 0 when the month was one block already).
pub(crate) fn freeze(
    conn: &Connection,
    path: &Path,
    tbl: Tbl,
    key: i64,
    (month, end): (i64, i64),
) -> Result<usize, StoreError> {
    let s = tbl.spec();
    let fixed = s
        .fixed
        .map(|(c, v)| format!(" AND {c} = '{v}'"))
        .unwrap_or_default();
    let select = format!(
        "SELECT {}, {} FROM {} WHERE {} = ?1{fixed} AND {} >= ?2 AND {} < ?3 ORDER BY {}",
        s.time,
        s.cols.join(", "),
        s.table,
        s.key,
        s.time,
        s.time,
        s.time
    );
    let width = s.cols.len();
    let live: Vec<Row> = conn
        .prepare_cached(&select)
        .and_then(|mut st| {
            st.query_map(params![key, month, end], |r| {
                let mut cols = Vec::with_capacity(width);
                for i in 0..width {
                    cols.push(r.get::<_, Value>(i + 1)?);
                }
                Ok((r.get::<_, i64>(0)?, cols))
            })?
            .collect()
        })
        .at(path)?;
    // Segments written by an import (blocks starting inside the month) are
    // merged into the month's one block.
    let blocks: Vec<i64> = months(conn, path, tbl, key, month, end)?
        .into_iter()
        .filter(|m| (month..end).contains(m))
        .collect();
    if live.is_empty() && blocks.iter().all(|m| *m == month) {
        return Ok(0);
    }
    let mut moved = live.len();
    let mut rows = Vec::new();
    for m in &blocks {
        let held = block(conn, path, tbl, key, *m)?.unwrap_or_default();
        if *m != month {
            moved += held.len();
        }
        rows.extend(held);
        conn.prepare_cached("DELETE FROM cold WHERE tbl = ?1 AND key = ?2 AND month_ms = ?3")
            .and_then(|mut d| d.execute(params![tbl as i64, key, m]))
            .at(path)?;
    }
    rows.extend(live);
    rows.sort_by_key(|r| r.0);
    let blob = encode(&rows, width);
    conn.prepare_cached(
        "INSERT OR REPLACE INTO cold (tbl, key, month_ms, rows, blob) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut st| st.execute(params![tbl as i64, key, month, rows.len() as i64, blob]))
    .at(path)?;
    let delete = format!(
        "DELETE FROM {} WHERE {} = ?1{fixed} AND {} >= ?2 AND {} < ?3",
        s.table, s.key, s.time, s.time
    );
    conn.prepare_cached(&delete)
        .and_then(|mut st| st.execute(params![key, month, end]))
        .at(path)?;
    Ok(moved)
}

/// Store `rows` (new keys of one local month, in time order, none of them
/// in a row or another block) as a block of their own, keyed by the first
/// row's time: an import's segment, merged into the month's block by the
/// next compaction. Returns the rows stored.
pub(crate) fn write_segment<C: Cells + ?Sized>(
    conn: &Connection,
    path: &Path,
    tbl: Tbl,
    key: i64,
    rows: &C,
) -> Result<usize, StoreError> {
    let n = rows.rows();
    if n == 0 {
        return Ok(0);
    }
    // Deflated fast: the compaction re-encodes the month's segments as one
    // block at the default level.
    let blob = encode_cells(rows, tbl.width(), flate2::Compression::fast());
    conn.prepare_cached(
        "INSERT INTO cold (tbl, key, month_ms, rows, blob) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut st| st.execute(params![tbl as i64, key, rows.time(0), n as i64, blob]))
    .at(path)?;
    Ok(n)
}

/// The rows of one block (empty if there is none).
pub(crate) fn block_rows(
    conn: &Connection,
    path: &Path,
    tbl: Tbl,
    key: i64,
    month: i64,
) -> Result<Vec<Row>, StoreError> {
    Ok(block(conn, path, tbl, key, month)?.unwrap_or_default())
}

/// Time of the newest row of `key` kept in blocks of `tbl`, if it may be
/// after `after` (else `None`, without decoding anything).
pub(crate) fn newest_after(
    conn: &Connection,
    path: &Path,
    tbl: Tbl,
    key: i64,
    after: i64,
) -> Result<Option<i64>, StoreError> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT max(month_ms) FROM cold WHERE tbl = ?1 AND key = ?2")
        .and_then(|mut s| s.query_row(params![tbl as i64, key], |r| r.get(0)))
        .at(path)?;
    // Segments of one table never overlap: the one starting last holds the newest row.
    match last {
        Some(m) if m.saturating_add(MAX_MONTH_MS) > after => {
            Ok(block(conn, path, tbl, key, m)?.and_then(|rows| rows.last().map(|r| r.0)))
        }
        _ => Ok(None),
    }
}

/// Move a month's block back into rows. Returns the rows moved.
pub(crate) fn thaw(
    conn: &Connection,
    path: &Path,
    tbl: Tbl,
    key: i64,
    month: i64,
) -> Result<usize, StoreError> {
    let Some(rows) = block(conn, path, tbl, key, month)? else {
        return Ok(0);
    };
    let s = tbl.spec();
    let (fixed_col, fixed_val) = match s.fixed {
        Some((c, v)) => (format!(", {c}"), format!(", '{v}'")),
        None => (String::new(), String::new()),
    };
    let marks = (3..s.cols.len() + 3)
        .map(|i| format!(", ?{i}"))
        .collect::<String>();
    let insert = format!(
        "INSERT INTO {} ({}{fixed_col}, {}, {}) VALUES (?1{fixed_val}, ?2{marks})",
        s.table,
        s.key,
        s.time,
        s.cols.join(", ")
    );
    let mut st = conn.prepare_cached(&insert).at(path)?;
    for (t, cols) in &rows {
        let all = [Value::Integer(key), Value::Integer(*t)]
            .into_iter()
            .chain(cols.iter().cloned());
        st.execute(params_from_iter(all)).at(path)?;
    }
    conn.prepare_cached("DELETE FROM cold WHERE tbl = ?1 AND key = ?2 AND month_ms = ?3")
        .and_then(|mut d| d.execute(params![tbl as i64, key, month]))
        .at(path)?;
    Ok(rows.len())
}

/// Months (starts) of the blocks of `key` in `tbl` that may hold rows at or
/// after `from_ms` and before `to_ms`.
pub(crate) fn months(
    conn: &Connection,
    path: &Path,
    tbl: Tbl,
    key: i64,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<i64>, StoreError> {
    conn.prepare_cached(
        "SELECT month_ms FROM cold WHERE tbl = ?1 AND key = ?2 AND month_ms > ?3 AND month_ms < ?4 ORDER BY month_ms",
    )
    .and_then(|mut s| {
        s.query_map(
            params![tbl as i64, key, from_ms.saturating_sub(MAX_MONTH_MS), to_ms],
            |r| r.get(0),
        )?
        .collect()
    })
    .at(path)
}

/// The rows of `key` in `tbl` kept in blocks with a time in `[from_ms, to_ms)`, in time order.
pub(crate) fn fetch(
    conn: &Connection,
    path: &Path,
    tbl: Tbl,
    key: i64,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<Row>, StoreError> {
    let mut out = Vec::new();
    for m in months(conn, path, tbl, key, from_ms, to_ms)? {
        if let Some(rows) = block(conn, path, tbl, key, m)? {
            out.extend(rows.into_iter().filter(|r| r.0 >= from_ms && r.0 < to_ms));
        }
    }
    Ok(out)
}

/// Rows kept in blocks of one table, over all keys.
pub(crate) fn count(conn: &Connection, path: &Path, tbl: Tbl) -> Result<i64, StoreError> {
    conn.query_row(
        "SELECT coalesce(sum(rows), 0) FROM cold WHERE tbl = ?1",
        params![tbl as i64],
        |r| r.get(0),
    )
    .at(path)
}

/// Whether `key` has any block in `tbl`.
pub(crate) fn any(conn: &Connection, path: &Path, tbl: Tbl, key: i64) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM cold WHERE tbl = ?1 AND key = ?2)")
        .and_then(|mut s| s.query_row(params![tbl as i64, key], |r| r.get(0)))
        .at(path)
}

/// Cell helpers for decoded rows.
pub(crate) fn int(v: &Value) -> i64 {
    match v {
        Value::Integer(i) => *i,
        Value::Real(f) => *f as i64,
        _ => 0,
    }
}

/// An optional real (`NULL` → `None`).
pub(crate) fn real(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Real(f) => Some(*f),
        _ => None,
    }
}

/// An optional integer (`NULL` → `None`).
pub(crate) fn int_opt(v: &Value) -> Option<i64> {
    match v {
        Value::Null => None,
        other => Some(int(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_give_back_every_value_exactly() {
        // Counter readings with three decimals, a NaN-free real that is not
        // a short decimal, texts, NULLs, and times with an irregular step.
        let mut rows = Vec::new();
        let mut t = 1_700_000_000_000i64;
        for i in 0..3000i64 {
            t += if i % 97 == 0 { 61_000 } else { 900_000 };
            let value = if i == 7 {
                Value::Real(std::f64::consts::PI)
            } else {
                Value::Real(12_345.678 + (i as f64) * 0.25)
            };
            rows.push((
                t,
                vec![
                    Value::Integer(i % 2),
                    value,
                    if i == 9 {
                        Value::Real(-0.0)
                    } else {
                        Value::Null
                    },
                    if i == 11 {
                        Value::Text("1e999".into())
                    } else {
                        Value::Null
                    },
                    Value::Integer(t + 2_000),
                    Value::Integer(3),
                    Value::Integer(1),
                    Value::Integer(i % 5),
                ],
            ));
        }
        let blob = encode(&rows, 8);
        let back = decode(&blob, 8).expect("decodes");
        assert_eq!(back.len(), rows.len());
        for (a, b) in rows.iter().zip(&back) {
            assert_eq!(a.0, b.0);
            for (x, y) in a.1.iter().zip(&b.1) {
                match (x, y) {
                    (Value::Real(p), Value::Real(q)) => assert_eq!(p.to_bits(), q.to_bits()),
                    _ => assert_eq!(x, y),
                }
            }
        }
        // The π row forces bit-exact reals for the column: still far under
        // the ~35 bytes a row takes in the table.
        assert!(blob.len() < rows.len() * 12, "{} bytes", blob.len());
        // A regular series with decimals: a few bytes a row.
        let regular: Vec<Row> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 7)
            .map(|(_, r)| r.clone())
            .collect();
        let small = encode(&regular, 8);
        assert!(small.len() < regular.len() * 5, "{} bytes", small.len());
        assert!(decode(&small[..small.len() / 2], 8).is_err());
    }

    #[test]
    fn local_months_start_at_local_midnight() {
        let tz: Tz = "Asia/Shanghai".parse().expect("zone");
        // 2026-03-15 12:00 local = 04:00 UTC.
        let t = 1_773_547_200_000;
        let m = month_start(t, tz);
        // 2026-03-01 00:00 +08:00 = 2026-02-28 16:00 UTC.
        assert_eq!(m, 1_772_294_400_000);
        // 2026-04-01 00:00 +08:00 = 2026-03-31 16:00 UTC.
        assert_eq!(next_month(m, tz), 1_774_972_800_000);
    }
}
