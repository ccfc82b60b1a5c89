//! Read-only access: concurrent with the writer (WAL).

use std::path::{Path, PathBuf};

use meterflow_core::aggregate::{Grain, Level, to_carrier};
use meterflow_core::buckets::Span;
use meterflow_core::from_micro;
use meterflow_model::EnergyClass;
use rusqlite::{Connection, OptionalExtension, params};

use crate::cold::{self, Tbl};
use crate::conn::open_conn;
use crate::error::{Ctx, StoreError};

/// One stored reading as it was received (for copying between stores).
#[derive(Debug, Clone, PartialEq)]
pub struct RawReading {
    /// Series id in its store.
    pub series: i64,
    /// Time, ms.
    pub ts_ms: i64,
    /// Meter id.
    pub meter: String,
    /// Quantity.
    pub quantity: String,
    /// Value (`None`: the source sent a non-finite number).
    pub value: Option<f64>,
    /// When it was received, ms.
    pub recv_ms: i64,
    /// Who stated the time (`device`, `poll`, `receive`, `import`).
    pub time_source: String,
    /// Where it came from (`mqtt:…`, `import:…`).
    pub source: String,
}

/// One 15-minute bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow {
    /// Bucket start, ms.
    pub bucket_ms: i64,
    /// Consumption, micro-units.
    pub micro: i64,
    /// Measured coverage, ms.
    pub measured_ms: i64,
    /// Estimated coverage, ms.
    pub estimated_ms: i64,
}

/// One local hour.
#[derive(Debug, Clone, PartialEq)]
pub struct HourRow {
    /// First instant of the local hour, ms.
    pub hour_ms: i64,
    /// Consumption, micro-units.
    pub micro: i64,
    /// Measured buckets.
    pub measured: i64,
    /// Estimated buckets.
    pub estimated: i64,
}

/// One local day.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    /// Local date, YYYY-MM-DD.
    pub day: String,
    /// Consumption, micro-units.
    pub micro: i64,
    /// Measured buckets.
    pub measured: i64,
    /// Estimated buckets.
    pub estimated: i64,
}

/// One stored anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyRow {
    /// Meter id.
    pub meter: String,
    /// Item time, ms.
    pub ts_ms: i64,
    /// Kind (stable text).
    pub kind: String,
    /// Detail.
    pub detail: String,
}

/// One raw reading.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingRow {
    /// Time, ms.
    pub ts_ms: i64,
    /// Value (NaN when the source sent a non-finite number).
    pub value: f64,
    /// Normaliser status code (`None` for gauges).
    pub status: Option<i64>,
    /// 1 for a replacement event.
    pub kind: i64,
}

/// One scope rollup row.
#[derive(Debug, Clone, PartialEq)]
pub struct AggRow {
    /// Period start, UTC ms (local midnight for day, month, year).
    pub start_ms: i64,
    /// Consumption in the class's carrier unit (kWh, m³, GJ).
    pub value: f64,
    /// Exact integer value (10⁻⁹ kWh or m³, 10⁻¹² GJ).
    pub raw: i64,
    /// Measured meter-buckets.
    pub measured: i64,
    /// Estimated meter-buckets.
    pub estimated: i64,
}

/// A read-only connection.
pub struct Reader {
    conn: Connection,
    path: PathBuf,
    /// Whether the store has long gaps kept whole (schema 6), and its time
    /// zone (local hours of their buckets); read once.
    spans: std::cell::OnceCell<Option<chrono_tz::Tz>>,
    /// Whether the store can hold compacted months (schema 8); read once.
    cold: std::cell::OnceCell<bool>,
    /// Scope rollups come from an attached rollup file (`rollups.agg`)
    /// instead of the store's own (a sharded deployment's merged rollups).
    attached: bool,
}

/// The tables of a rollup file: the store's `agg_scope` and `agg`.
const ROLLUP_FILE_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS agg_scope (
        id INTEGER PRIMARY KEY, level TEXT NOT NULL, ref TEXT NOT NULL,
        class TEXT NOT NULL, subitem TEXT NOT NULL, UNIQUE (level, ref, class, subitem));
    CREATE TABLE IF NOT EXISTS agg (
        scope INTEGER NOT NULL, grain TEXT NOT NULL, start_ms INTEGER NOT NULL,
        value INTEGER NOT NULL, measured INTEGER NOT NULL, estimated INTEGER NOT NULL,
        PRIMARY KEY (scope, grain, start_ms)) WITHOUT ROWID;";

/// One row of a rollup file.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupFileRow {
    /// Level (`agency`, `building`, `zone`, `site`).
    pub level: String,
    /// Scope id.
    pub id: String,
    /// Energy class.
    pub class: String,
    /// Grain (`15m`, `day`, ...).
    pub grain: String,
    /// Period start, UTC ms.
    pub start_ms: i64,
    /// Exact integer value (10⁻⁹ kWh or m³, 10⁻¹² GJ).
    pub raw: i64,
    /// Measured meter-buckets.
    pub measured: i64,
    /// Estimated meter-buckets.
    pub estimated: i64,
}

/// Replace the contents of the rollup file at `path` (created if needed)
/// with `rows` (class totals), in one transaction.
pub fn write_rollup_file(path: &Path, rows: &[RollupFileRow]) -> Result<(), StoreError> {
    let mut conn = Connection::open(path).at(path)?;
    conn.execute_batch(ROLLUP_FILE_SCHEMA).at(path)?;
    let tx = conn.transaction().at(path)?;
    tx.execute_batch("DELETE FROM agg; DELETE FROM agg_scope;")
        .at(path)?;
    {
        let mut scope = tx
            .prepare("INSERT OR IGNORE INTO agg_scope (level, ref, class, subitem) VALUES (?1, ?2, ?3, '')")
            .at(path)?;
        let mut id = tx
            .prepare("SELECT id FROM agg_scope WHERE level = ?1 AND ref = ?2 AND class = ?3 AND subitem = ''")
            .at(path)?;
        let mut ins = tx
            .prepare("INSERT OR REPLACE INTO agg (scope, grain, start_ms, value, measured, estimated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .at(path)?;
        for r in rows {
            scope.execute(params![r.level, r.id, r.class]).at(path)?;
            let sid: i64 = id
                .query_row(params![r.level, r.id, r.class], |x| x.get(0))
                .at(path)?;
            ins.execute(params![
                sid,
                r.grain,
                r.start_ms,
                r.raw,
                r.measured,
                r.estimated
            ])
            .at(path)?;
        }
    }
    tx.commit().at(path)
}

impl Reader {
    /// Open read-only; the store must exist.
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        Ok(Reader {
            conn: open_conn(path, 32, true)?,
            path: path.to_path_buf(),
            spans: std::cell::OnceCell::new(),
            cold: std::cell::OnceCell::new(),
            attached: false,
        })
    }

    /// Read scope rollups from the rollup file at `rollups` (see
    /// [`write_rollup_file`]) instead of the store; everything else still
    /// comes from the store.
    pub fn attach_rollups(&mut self, rollups: &Path) -> Result<(), StoreError> {
        let file = rollups.to_string_lossy();
        self.conn
            .execute("ATTACH DATABASE ?1 AS rollups", params![file])
            .at(rollups)?;
        self.attached = true;
        Ok(())
    }

    /// Whether scope rollups come from an attached rollup file.
    pub fn has_attached_rollups(&self) -> bool {
        self.attached
    }

    /// Ledger events in effect of every kind of `ledger` before `to_ms`, in
    /// time order (none in a store that predates the ledgers).
    pub fn ledger_until(
        &self,
        ledger: &str,
        to_ms: i64,
    ) -> Result<Vec<crate::LedgerEvent>, StoreError> {
        let exists: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_events')",
                [],
                |r| r.get(0),
            )
            .at(&self.path)?;
        if !exists {
            return Ok(Vec::new());
        }
        crate::ledger::ledger_in(&self.conn, &self.path, ledger, to_ms)
    }

    /// Series id of a meter's quantity.
    pub fn series_id(&self, meter: &str, quantity: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT id FROM series WHERE meter = ?1 AND quantity = ?2",
                params![meter, quantity],
                |r| r.get(0),
            )
            .optional()
            .at(&self.path)
    }

    /// Rollup rows of a scope (`level`, `id`, `class`, `subitem` with `""`
    /// for the class total) at `grain` with the start in `[from_ms, to_ms)`.
    #[allow(clippy::too_many_arguments)]
    pub fn agg(
        &self,
        level: Level,
        id: &str,
        class: EnergyClass,
        subitem: &str,
        grain: Grain,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AggRow>, StoreError> {
        let sql = if self.attached {
            "SELECT a.start_ms, a.value, a.measured, a.estimated FROM rollups.agg a JOIN rollups.agg_scope s ON s.id = a.scope
             WHERE s.level = ?1 AND s.ref = ?2 AND s.class = ?3 AND s.subitem = ?4 AND a.grain = ?5
               AND a.start_ms >= ?6 AND a.start_ms < ?7 ORDER BY a.start_ms"
        } else {
            "SELECT a.start_ms, a.value, a.measured, a.estimated FROM agg a JOIN agg_scope s ON s.id = a.scope
             WHERE s.level = ?1 AND s.ref = ?2 AND s.class = ?3 AND s.subitem = ?4 AND a.grain = ?5
               AND a.start_ms >= ?6 AND a.start_ms < ?7 ORDER BY a.start_ms"
        };
        let mut s = self.conn.prepare_cached(sql).at(&self.path)?;
        let rows = s
            .query_map(
                params![
                    level.as_str(),
                    id,
                    class.as_str(),
                    subitem,
                    grain.as_str(),
                    from_ms,
                    to_ms
                ],
                |r| {
                    let raw: i64 = r.get(1)?;
                    Ok(AggRow {
                        start_ms: r.get(0)?,
                        value: to_carrier(class, raw),
                        raw,
                        measured: r.get(2)?,
                        estimated: r.get(3)?,
                    })
                },
            )
            .at(&self.path)?;
        let mut out: Vec<AggRow> = rows.collect::<Result<_, _>>().at(&self.path)?;
        if self.attached || !matches!(grain, Grain::Quarter | Grain::Hour) {
            return Ok(out);
        }
        let tbl = if grain == Grain::Hour {
            Tbl::AggHour
        } else {
            Tbl::AggQuarter
        };
        if let Some(scope) = self.scope_id(level, id, class, subitem)? {
            let cold = self.cold_rows(tbl, scope, from_ms, to_ms)?;
            if !cold.is_empty() {
                out.extend(cold.iter().map(|(t, c)| {
                    let raw = cold::int(&c[0]);
                    AggRow {
                        start_ms: *t,
                        value: to_carrier(class, raw),
                        raw,
                        measured: cold::int(&c[1]),
                        estimated: cold::int(&c[2]),
                    }
                }));
                out.sort_by_key(|r| r.start_ms);
            }
        }
        let Some(tz) = self.span_zone()? else {
            return Ok(out);
        };
        // Long gaps kept whole: each block's value spread evenly over its
        // buckets (cumulative floor: the buckets add up to the block).
        let mut blocks = self
            .conn
            .prepare_cached(
                "SELECT b.lo_ms, b.hi_ms, b.value, b.estimated FROM agg_span b JOIN agg_scope s ON s.id = b.scope
                 WHERE s.level = ?1 AND s.ref = ?2 AND s.class = ?3 AND s.subitem = ?4
                   AND b.hi_ms > ?5 AND b.lo_ms < ?6",
            )
            .at(&self.path)?;
        let reach = to_ms.saturating_add(3_600_000);
        let blocks: Vec<(i64, i64, i64, i64)> = blocks
            .query_map(
                params![level.as_str(), id, class.as_str(), subitem, from_ms, reach],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .at(&self.path)?
            .collect::<Result<_, _>>()
            .at(&self.path)?;
        if blocks.is_empty() {
            return Ok(out);
        }
        let mut by_start: std::collections::BTreeMap<i64, (i64, i64, i64)> = out
            .into_iter()
            .map(|r| (r.start_ms, (r.raw, r.measured, r.estimated)))
            .collect();
        let part = |total: i64, k: i64, n: i64| -> i64 {
            let upto =
                |j: i64| (i128::from(total) * i128::from(j)).div_euclid(i128::from(n)) as i64;
            upto(k + 1) - upto(k)
        };
        for (lo, hi, value, estimated) in blocks {
            let n = (hi - lo) / meterflow_core::buckets::BUCKET_MS;
            for k in 0..n {
                let bucket = lo + k * meterflow_core::buckets::BUCKET_MS;
                let start = match grain {
                    Grain::Hour => meterflow_core::time::hour_start(bucket, tz),
                    _ => bucket,
                };
                if start < from_ms || start >= to_ms {
                    continue;
                }
                let e = by_start.entry(start).or_default();
                e.0 += part(value, k, n);
                e.2 += part(estimated, k, n);
            }
        }
        Ok(by_start
            .into_iter()
            .filter(|(_, (v, m, e))| *v != 0 || *m != 0 || *e != 0)
            .map(|(start_ms, (raw, measured, estimated))| AggRow {
                start_ms,
                value: to_carrier(class, raw),
                raw,
                measured,
                estimated,
            })
            .collect())
    }

    /// Time of the latest reading of a series.
    pub fn last_ts(&self, series: i64) -> Result<Option<i64>, StoreError> {
        let live: Option<i64> = self
            .conn
            .prepare_cached("SELECT max(ts_ms) FROM readings WHERE series = ?1 AND kind = 0")
            .and_then(|mut s| s.query_row(params![series], |r| r.get(0)))
            .at(&self.path)?;
        let cold = self.cold_rows(
            Tbl::Readings,
            series,
            live.map_or(i64::MIN, |t| t + 1),
            i64::MAX,
        )?;
        Ok(cold
            .iter()
            .rev()
            .find(|(_, c)| cold::int(&c[0]) == 0)
            .map(|(t, _)| *t)
            .or(live))
    }

    /// The latest reading of a series that has a value: `(ts_ms, value)`.
    pub fn last_value(&self, series: i64) -> Result<Option<(i64, f64)>, StoreError> {
        let live: Option<(i64, f64)> = self
            .conn
            .prepare_cached(
                "SELECT ts_ms, value FROM readings WHERE series = ?1 AND kind = 0 AND value IS NOT NULL ORDER BY ts_ms DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![series], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .at(&self.path)?;
        let from = live.map_or(i64::MIN, |(t, _)| t + 1);
        let cold = self.cold_rows(Tbl::Readings, series, from, i64::MAX)?;
        let newer = cold.iter().rev().find_map(|(t, c)| {
            (cold::int(&c[0]) == 0)
                .then(|| cold::real(&c[1]).map(|v| (*t, v)))
                .flatten()
        });
        Ok(newer.or(live))
    }

    /// Buckets with coverage in `[from_ms, to_ms)`.
    pub fn intervals(
        &self,
        series: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<IntervalRow>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached("SELECT bucket_ms, micro, measured_ms, estimated_ms FROM intervals WHERE series = ?1 AND bucket_ms >= ?2 AND bucket_ms < ?3 ORDER BY bucket_ms")
            .at(&self.path)?;
        let rows = s
            .query_map(params![series, from_ms, to_ms], |r| {
                Ok(IntervalRow {
                    bucket_ms: r.get(0)?,
                    micro: r.get(1)?,
                    measured_ms: r.get(2)?,
                    estimated_ms: r.get(3)?,
                })
            })
            .at(&self.path)?;
        let mut out: Vec<IntervalRow> = rows.collect::<Result<_, _>>().at(&self.path)?;
        // Compacted months and long gaps kept whole, merged in time order.
        let cold = self.cold_rows(Tbl::Intervals, series, from_ms, to_ms)?;
        let spans = self.spans_of(series, from_ms, to_ms)?;
        if cold.is_empty() && spans.is_empty() {
            return Ok(out);
        }
        out.extend(cold.iter().map(|(t, c)| IntervalRow {
            bucket_ms: *t,
            micro: cold::int(&c[0]),
            measured_ms: cold::int(&c[1]),
            estimated_ms: cold::int(&c[2]),
        }));
        for s in &spans {
            out.extend(s.buckets(from_ms, to_ms).map(|d| IntervalRow {
                bucket_ms: d.bucket_ms,
                micro: d.micro,
                measured_ms: d.measured_ms,
                estimated_ms: d.estimated_ms,
            }));
        }
        out.sort_by_key(|r| r.bucket_ms);
        Ok(out)
    }

    /// The store's time zone and whether it keeps long gaps whole.
    fn span_zone(&self) -> Result<Option<chrono_tz::Tz>, StoreError> {
        if let Some(z) = self.spans.get() {
            return Ok(*z);
        }
        let zone = if self.has_table("spans")? {
            let tz: Option<String> = self
                .conn
                .query_row("SELECT value FROM meta WHERE key = 'tz'", [], |r| r.get(0))
                .optional()
                .at(&self.path)?;
            Some(tz.and_then(|t| t.parse().ok()).unwrap_or(chrono_tz::UTC))
        } else {
            None
        };
        Ok(*self.spans.get_or_init(|| zone))
    }

    /// The long gaps kept whole of a series whose buckets meet `[from_ms, to_ms)`.
    pub fn spans_of(&self, series: i64, from_ms: i64, to_ms: i64) -> Result<Vec<Span>, StoreError> {
        if self.span_zone()?.is_none() {
            return Ok(Vec::new());
        }
        let mut s = self
            .conn
            .prepare_cached("SELECT from_ms, to_ms, micro, lo_ms, hi_ms FROM spans WHERE series = ?1 AND hi_ms > ?2 AND lo_ms < ?3")
            .at(&self.path)?;
        let rows = s
            .query_map(params![series, from_ms, to_ms], |r| {
                Ok(Span {
                    from_ms: r.get(0)?,
                    to_ms: r.get(1)?,
                    micro: r.get(2)?,
                    lo_ms: r.get(3)?,
                    hi_ms: r.get(4)?,
                })
            })
            .at(&self.path)?;
        rows.collect::<Result<_, _>>().at(&self.path)
    }

    /// Hourly rollups with the hour start in `[from_ms, to_ms)`.
    pub fn hours(&self, series: i64, from_ms: i64, to_ms: i64) -> Result<Vec<HourRow>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached("SELECT hour_ms, micro, measured, estimated FROM rollup_hour WHERE series = ?1 AND hour_ms >= ?2 AND hour_ms < ?3 ORDER BY hour_ms")
            .at(&self.path)?;
        let rows = s
            .query_map(params![series, from_ms, to_ms], |r| {
                Ok(HourRow {
                    hour_ms: r.get(0)?,
                    micro: r.get(1)?,
                    measured: r.get(2)?,
                    estimated: r.get(3)?,
                })
            })
            .at(&self.path)?;
        let mut out: Vec<HourRow> = rows.collect::<Result<_, _>>().at(&self.path)?;
        let cold = self.cold_rows(Tbl::Hours, series, from_ms, to_ms)?;
        if !cold.is_empty() {
            out.extend(cold.iter().map(|(t, c)| HourRow {
                hour_ms: *t,
                micro: cold::int(&c[0]),
                measured: cold::int(&c[1]),
                estimated: cold::int(&c[2]),
            }));
            out.sort_by_key(|r| r.hour_ms);
        }
        // A local hour starts at most 45 min before its first bucket.
        let spans = self.spans_of(series, from_ms, to_ms.saturating_add(3_600_000))?;
        let (Some(tz), false) = (self.span_zone()?, spans.is_empty()) else {
            return Ok(out);
        };
        let mut by_hour: std::collections::BTreeMap<i64, HourRow> =
            out.into_iter().map(|r| (r.hour_ms, r)).collect();
        for s in &spans {
            for d in s.buckets(
                from_ms.saturating_sub(3_600_000),
                to_ms.saturating_add(3_600_000),
            ) {
                let h = meterflow_core::time::hour_start(d.bucket_ms, tz);
                if h < from_ms || h >= to_ms {
                    continue;
                }
                let e = by_hour.entry(h).or_insert(HourRow {
                    hour_ms: h,
                    micro: 0,
                    measured: 0,
                    estimated: 0,
                });
                e.micro += d.micro;
                e.estimated += 1;
            }
        }
        Ok(by_hour.into_values().collect())
    }

    /// Daily rollups for local dates in `[from, to)` (YYYY-MM-DD).
    pub fn days(&self, series: i64, from: &str, to: &str) -> Result<Vec<DayRow>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached("SELECT day, micro, measured, estimated FROM rollup_day WHERE series = ?1 AND day >= ?2 AND day < ?3 ORDER BY day")
            .at(&self.path)?;
        let rows = s
            .query_map(params![series, from, to], |r| {
                Ok(DayRow {
                    day: r.get(0)?,
                    micro: r.get(1)?,
                    measured: r.get(2)?,
                    estimated: r.get(3)?,
                })
            })
            .at(&self.path)?;
        rows.collect::<Result<_, _>>().at(&self.path)
    }

    /// Raw readings of a series in `[from_ms, to_ms)`.
    pub fn readings(
        &self,
        series: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<ReadingRow>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached("SELECT ts_ms, value, status, kind FROM readings WHERE series = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 ORDER BY ts_ms")
            .at(&self.path)?;
        let rows = s
            .query_map(params![series, from_ms, to_ms], |r| {
                Ok(ReadingRow {
                    ts_ms: r.get(0)?,
                    value: r.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
                    status: r.get(2)?,
                    kind: r.get(3)?,
                })
            })
            .at(&self.path)?;
        let mut out: Vec<ReadingRow> = rows.collect::<Result<_, _>>().at(&self.path)?;
        let cold = self.cold_rows(Tbl::Readings, series, from_ms, to_ms)?;
        if !cold.is_empty() {
            out.extend(cold.iter().map(|(t, c)| ReadingRow {
                ts_ms: *t,
                value: cold::real(&c[1]).unwrap_or(f64::NAN),
                status: cold::int_opt(&c[7]),
                kind: cold::int(&c[0]),
            }));
            out.sort_by_key(|r| r.ts_ms);
        }
        Ok(out)
    }

    /// Anomalies of a meter (all meters if `None`) in `[from_ms, to_ms)`.
    pub fn anomalies(
        &self,
        meter: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AnomalyRow>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT s.meter, a.ts_ms, a.kind, a.detail FROM anomalies a JOIN series s ON s.id = a.series
                 WHERE (?1 IS NULL OR s.meter = ?1) AND a.ts_ms >= ?2 AND a.ts_ms < ?3 ORDER BY a.ts_ms, s.meter, a.kind",
            )
            .at(&self.path)?;
        let rows = s
            .query_map(params![meter, from_ms, to_ms], |r| {
                Ok(AnomalyRow {
                    meter: r.get(0)?,
                    ts_ms: r.get(1)?,
                    kind: r.get(2)?,
                    detail: r.get(3)?,
                })
            })
            .at(&self.path)?;
        rows.collect::<Result<_, _>>().at(&self.path)
    }

    /// Total consumption of a series over all time, in the meter's unit.
    pub fn total(&self, series: i64) -> Result<f64, StoreError> {
        Ok(from_micro(self.total_micro(series)?))
    }

    /// Gaps longer than `min_ms` between consecutive readings with a value
    /// that overlap `[from_ms, to_ms)`: `(earlier, later)` reading times.
    pub fn long_gaps(
        &self,
        series: i64,
        from_ms: i64,
        to_ms: i64,
        min_ms: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        if self.has_cold(Tbl::Readings, series)? {
            return self.long_gaps_merged(series, from_ms, to_ms, min_ms);
        }
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT prev, ts_ms FROM (
                   SELECT ts_ms, LAG(ts_ms) OVER (ORDER BY ts_ms) AS prev FROM readings
                   WHERE series = ?1 AND kind = 0 AND value IS NOT NULL
                     AND ts_ms >= coalesce((SELECT max(ts_ms) FROM readings
                                            WHERE series = ?1 AND kind = 0 AND value IS NOT NULL AND ts_ms < ?2), ?2)
                     AND ts_ms <= coalesce((SELECT min(ts_ms) FROM readings
                                            WHERE series = ?1 AND kind = 0 AND value IS NOT NULL AND ts_ms >= ?3), ?3))
                 WHERE prev IS NOT NULL AND ts_ms - prev > ?4 AND ts_ms > ?2 AND prev < ?3",
            )
            .at(&self.path)?;
        let rows = s
            .query_map(params![series, from_ms, to_ms, min_ms], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .at(&self.path)?;
        rows.collect::<Result<_, _>>().at(&self.path)
    }

    /// [`Reader::long_gaps`] over rows and compacted months.
    fn long_gaps_merged(
        &self,
        series: i64,
        from_ms: i64,
        to_ms: i64,
        min_ms: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let valued = |r: &ReadingRow| r.kind == 0 && !r.value.is_nan();
        // The reading before the window, the window, the reading after it.
        let mut times: Vec<i64> = Vec::new();
        let mut before = from_ms;
        let mut step = 31 * 86_400_000i64;
        let first = loop {
            let lo = before.saturating_sub(step);
            let found = self
                .readings(series, lo, before)?
                .into_iter()
                .rev()
                .find(valued)
                .map(|r| r.ts_ms);
            if found.is_some() || lo == i64::MIN {
                break found;
            }
            before = lo;
            step = step.saturating_mul(4);
        };
        times.extend(first);
        times.extend(
            self.readings(series, from_ms, to_ms)?
                .into_iter()
                .filter(valued)
                .map(|r| r.ts_ms),
        );
        let mut after = to_ms;
        let mut step = 31 * 86_400_000i64;
        loop {
            let hi = after.saturating_add(step);
            let found = self
                .readings(series, after, hi)?
                .into_iter()
                .find(valued)
                .map(|r| r.ts_ms);
            if let Some(t) = found {
                times.push(t);
                break;
            }
            if hi == i64::MAX {
                break;
            }
            after = hi;
            step = step.saturating_mul(4);
        }
        Ok(times
            .windows(2)
            .filter(|w| w[1] - w[0] > min_ms && w[1] > from_ms && w[0] < to_ms)
            .map(|w| (w[0], w[1]))
            .collect())
    }

    /// Whether the store can hold compacted months.
    fn cold_table(&self) -> Result<bool, StoreError> {
        if let Some(c) = self.cold.get() {
            return Ok(*c);
        }
        let exists = self.has_table("cold")?;
        Ok(*self.cold.get_or_init(|| exists))
    }

    /// Whether the store has a table of that name (older schemas lack some).
    fn has_table(&self, name: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
                [name],
                |r| r.get(0),
            )
            .at(&self.path)
    }

    /// Rows of `key` kept in compacted months with a time in `[from_ms, to_ms)`.
    fn cold_rows(
        &self,
        tbl: Tbl,
        key: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<cold::Row>, StoreError> {
        if !self.cold_table()? {
            return Ok(Vec::new());
        }
        cold::fetch(&self.conn, &self.path, tbl, key, from_ms, to_ms)
    }

    /// Whether `key` has compacted months in `tbl`.
    fn has_cold(&self, tbl: Tbl, key: i64) -> Result<bool, StoreError> {
        Ok(self.cold_table()? && cold::any(&self.conn, &self.path, tbl, key)?)
    }

    /// The id of a scope in the store's own rollups.
    fn scope_id(
        &self,
        level: Level,
        id: &str,
        class: EnergyClass,
        subitem: &str,
    ) -> Result<Option<i64>, StoreError> {
        if !self.cold_table()? {
            return Ok(None);
        }
        self.conn
            .prepare_cached(
                "SELECT id FROM agg_scope WHERE level = ?1 AND ref = ?2 AND class = ?3 AND subitem = ?4",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![level.as_str(), id, class.as_str(), subitem],
                    |r| r.get(0),
                )
                .optional()
            })
            .at(&self.path)
    }

    /// Sum of a series' intervals in micro-units (exact).
    pub fn total_micro(&self, series: i64) -> Result<i64, StoreError> {
        let eager: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(sum(micro), 0) FROM intervals WHERE series = ?1",
                params![series],
                |r| r.get(0),
            )
            .at(&self.path)?;
        let cold: i64 = self
            .cold_rows(Tbl::Intervals, series, i64::MIN, i64::MAX)?
            .iter()
            .map(|(_, c)| cold::int(&c[0]))
            .sum();
        let kept: i64 = self
            .spans_of(series, i64::MIN, i64::MAX)?
            .iter()
            .map(|s| s.between(s.lo_ms, s.hi_ms))
            .sum();
        Ok(eager + cold + kept)
    }

    /// Stored readings (not replacement events) after `after` = (series,
    /// ts_ms) in that order, at most `limit`: to copy a store page by page.
    pub fn raw_page(&self, after: (i64, i64), limit: usize) -> Result<Vec<RawReading>, StoreError> {
        if self.cold_table()? && cold::count(&self.conn, &self.path, Tbl::Readings)? > 0 {
            return self.raw_page_merged(after, limit);
        }
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT r.series, r.ts_ms, s.meter, s.quantity, r.value, r.recv_ms, r.time_source, src.text
                 FROM readings r JOIN series s ON s.id = r.series JOIN sources src ON src.id = r.source
                 WHERE r.kind = 0 AND (r.series > ?1 OR (r.series = ?1 AND r.ts_ms > ?2))
                 ORDER BY r.series, r.ts_ms LIMIT ?3",
            )
            .at(&self.path)?;
        let rows = s
            .query_map(params![after.0, after.1, limit as i64], |r| {
                Ok(RawReading {
                    series: r.get(0)?,
                    ts_ms: r.get(1)?,
                    meter: r.get(2)?,
                    quantity: r.get(3)?,
                    value: r.get(4)?,
                    recv_ms: r.get(5)?,
                    time_source: crate::write::time_source_text(r.get(6)?).to_string(),
                    source: r.get(7)?,
                })
            })
            .at(&self.path)?;
        rows.collect::<Result<_, _>>().at(&self.path)
    }

    /// [`Reader::raw_page`] over rows and compacted months, series by series.
    fn raw_page_merged(
        &self,
        after: (i64, i64),
        limit: usize,
    ) -> Result<Vec<RawReading>, StoreError> {
        let ids: Vec<(i64, String, String)> = self
            .conn
            .prepare_cached("SELECT id, meter, quantity FROM series WHERE id >= ?1 ORDER BY id")
            .and_then(|mut s| {
                s.query_map(params![after.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .at(&self.path)?;
        let mut sources: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
        let mut out = Vec::new();
        for (id, meter, quantity) in ids {
            if out.len() >= limit {
                break;
            }
            let from = if id == after.0 {
                after.1.saturating_add(1)
            } else {
                i64::MIN
            };
            let left = limit - out.len();
            let mut rows: Vec<(i64, Option<f64>, i64, i64, i64)> = self
                .conn
                .prepare_cached(
                    "SELECT ts_ms, value, recv_ms, time_source, source FROM readings
                     WHERE series = ?1 AND kind = 0 AND ts_ms >= ?2 ORDER BY ts_ms LIMIT ?3",
                )
                .and_then(|mut s| {
                    s.query_map(params![id, from, left as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })?
                    .collect()
                })
                .at(&self.path)?;
            let cold = self.cold_rows(Tbl::Readings, id, from, i64::MAX)?;
            rows.extend(
                cold.iter()
                    .filter(|(_, c)| cold::int(&c[0]) == 0)
                    .map(|(t, c)| {
                        (
                            *t,
                            cold::real(&c[1]),
                            cold::int(&c[4]),
                            cold::int(&c[5]),
                            cold::int(&c[6]),
                        )
                    }),
            );
            rows.sort_by_key(|r| r.0);
            rows.truncate(left);
            for (ts_ms, value, recv_ms, time_source, source) in rows {
                let source = match sources.get(&source) {
                    Some(t) => t.clone(),
                    None => {
                        let t: String = self
                            .conn
                            .query_row(
                                "SELECT text FROM sources WHERE id = ?1",
                                params![source],
                                |r| r.get(0),
                            )
                            .at(&self.path)?;
                        sources.insert(source, t.clone());
                        t
                    }
                };
                out.push(RawReading {
                    series: id,
                    ts_ms,
                    meter: meter.clone(),
                    quantity: quantity.clone(),
                    value,
                    recv_ms,
                    time_source: crate::write::time_source_text(time_source).to_string(),
                    source,
                });
            }
        }
        Ok(out)
    }

    /// The store's size: bytes in use (without free pages), and the
    /// series-months kept compacted (ADR 0024).
    pub fn storage(&self) -> Result<(i64, i64), StoreError> {
        let q = |p: &str| -> Result<i64, StoreError> {
            self.conn
                .query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                .at(&self.path)
        };
        let used = (q("page_count")? - q("freelist_count")?) * q("page_size")?;
        let months = if self.cold_table()? {
            // An import's segments count as the month they lie in.
            let tz = self.span_zone()?.unwrap_or(chrono_tz::UTC);
            let blocks: Vec<(i64, i64)> = self
                .conn
                .prepare("SELECT key, month_ms FROM cold WHERE tbl = 0")
                .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .at(&self.path)?;
            let distinct: std::collections::HashSet<(i64, i64)> = blocks
                .into_iter()
                .map(|(key, m)| (key, cold::month_start(m, tz)))
                .collect();
            distinct.len() as i64
        } else {
            0
        };
        Ok((used, months))
    }

    /// Row count of a table (for tests and summaries).
    pub fn count(&self, table: &str) -> Result<i64, StoreError> {
        let allowed = [
            "readings",
            "anomalies",
            "intervals",
            "rollup_hour",
            "rollup_day",
            "dead_letters",
            "series",
        ];
        if !allowed.contains(&table) {
            return Ok(0);
        }
        let rows: i64 = self
            .conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .at(&self.path)?;
        let tbl = match table {
            "readings" => Tbl::Readings,
            "intervals" => Tbl::Intervals,
            "rollup_hour" => Tbl::Hours,
            _ => return Ok(rows),
        };
        if !self.cold_table()? {
            return Ok(rows);
        }
        Ok(rows + cold::count(&self.conn, &self.path, tbl)?)
    }

    /// Dead letters as `(source, location, reason)`.
    pub fn dead_letters(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached("SELECT source, location, reason FROM dead_letters ORDER BY id")
            .at(&self.path)?;
        let rows = s
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .at(&self.path)?;
        rows.collect::<Result<_, _>>().at(&self.path)
    }
}
