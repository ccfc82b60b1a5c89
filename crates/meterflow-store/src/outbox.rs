//! The durable outbox of the InfluxDB sink.
//!
//! Everything bound for InfluxDB is first written here, in the same
//! transaction as the store rows it comes from: a committed reading is
//! always either in InfluxDB or in the outbox. The sink reads rows in `id`
//! order and deletes them only after InfluxDB answered 2xx, so a crash or an
//! outage replays them (a replayed point overwrites itself in InfluxDB: same
//! series, same timestamp, same value).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use meterflow_core::aggregate::ScopeKey;
use meterflow_core::lineproto::{self, Encoder, Value};
use meterflow_core::memlog::BucketTotals;
use meterflow_model::config::{InfluxSink, OutboxFull};
use meterflow_model::{Quality, Site};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::{Ctx, StoreError};

/// Lines per outbox row: rows are the unit of delivery, so they stay small
/// enough to combine into batches.
const ROW_POINTS: usize = 1000;

/// Tags of a meter's points.
#[derive(Debug, Clone)]
struct MeterTags {
    class: &'static str,
    subitem: String,
    building: String,
    agency: String,
    root: bool,
}

/// What the writer puts in the outbox (present when `[influx]` is configured).
pub(crate) struct Emit {
    enc: Encoder,
    meters: HashMap<String, MeterTags>,
    /// series id → (meter, quantity).
    series: HashMap<i64, (String, String)>,
    raw: bool,
    max_bytes: i64,
    policy: OutboxFull,
    /// This instance's shard index when the site is sharded: a rollup holds
    /// only the shard's meters, so its points carry a `shard` tag and the
    /// shards' series add up instead of overwriting each other (ADR 0013).
    shard: Option<String>,
}

impl Emit {
    pub(crate) fn new(site: &Site, cfg: &InfluxSink) -> Emit {
        let meters = site
            .meters
            .iter()
            .map(|m| {
                let building = m
                    .serves
                    .building
                    .clone()
                    .or_else(|| {
                        let z = m.serves.zone.as_ref()?;
                        site.zones
                            .iter()
                            .find(|x| &x.id == z)
                            .map(|x| x.building.clone())
                    })
                    .unwrap_or_default();
                (
                    m.id.clone(),
                    MeterTags {
                        class: m.kind.as_str(),
                        subitem: m.subitem.clone().unwrap_or_else(|| "total".into()),
                        building,
                        agency: m.serves.agency.clone().unwrap_or_default(),
                        root: m.parent.is_none(),
                    },
                )
            })
            .collect();
        Emit {
            enc: Encoder::new(),
            meters,
            series: HashMap::new(),
            raw: cfg.raw_readings,
            max_bytes: i64::try_from(cfg.outbox_max_mib.saturating_mul(1 << 20))
                .unwrap_or(i64::MAX),
            policy: cfg.when_full,
            shard: site
                .shard
                .is_sharded()
                .then(|| site.shard.index.to_string()),
        }
    }

    fn series_name(
        &mut self,
        tx: &Transaction<'_>,
        path: &Path,
        series: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        if let Some(x) = self.series.get(&series) {
            return Ok(Some(x.clone()));
        }
        let row: Option<(String, String)> = tx
            .prepare_cached("SELECT meter, quantity FROM series WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row(params![series], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .at(path)?;
        if let Some(x) = &row {
            self.series.insert(series, x.clone());
        }
        Ok(row)
    }

    /// Make room before a batch: `Err(OutboxFull)` under `block`, oldest rows dropped (and counted) under `drop_oldest`.
    pub(crate) fn check_room(&self, conn: &Connection, path: &Path) -> Result<(), StoreError> {
        let bytes: i64 = conn
            .query_row("SELECT bytes FROM outbox_stats", [], |r| r.get(0))
            .at(path)?;
        if bytes < self.max_bytes {
            return Ok(());
        }
        match self.policy {
            OutboxFull::Block => Err(StoreError::OutboxFull {
                path: path.to_path_buf(),
                bytes,
                limit: self.max_bytes,
            }),
            OutboxFull::DropOldest => {
                // Drop a tenth of the bound beyond the excess from the head, in whole rows.
                let target = bytes - self.max_bytes + self.max_bytes / 10;
                let (mut last, mut points, mut freed) = (0i64, 0i64, 0i64);
                {
                    let mut stmt = conn
                        .prepare(
                            "SELECT id, points, octet_length(body) FROM influx_outbox ORDER BY id",
                        )
                        .at(path)?;
                    let mut rows = stmt.query([]).at(path)?;
                    while let Some(r) = rows.next().at(path)? {
                        last = r.get(0).at(path)?;
                        points += r.get::<_, i64>(1).at(path)?;
                        freed += r.get::<_, i64>(2).at(path)?;
                        if freed >= target {
                            break;
                        }
                    }
                }
                conn.execute("DELETE FROM influx_outbox WHERE id <= ?1", params![last])
                    .at(path)?;
                conn.execute(
                    "UPDATE outbox_stats SET dropped = dropped + ?1",
                    params![points],
                )
                .at(path)?;
                eprintln!(
                    "warning: InfluxDB outbox {} full: dropped its {points} oldest points (policy drop_oldest; the store keeps them)",
                    path.display()
                );
                Ok(())
            }
        }
    }

    pub(crate) fn reading(
        &mut self,
        meter: &str,
        quantity: &str,
        ts_ms: i64,
        value: f64,
        status: &str,
        time_source: &str,
    ) {
        if !self.raw {
            return;
        }
        let t = self.meters.get(meter);
        let tags = [
            ("meter", meter),
            ("quantity", quantity),
            ("class", t.map_or("", |t| t.class)),
            ("building", t.map_or("", |t| t.building.as_str())),
            ("agency", t.map_or("", |t| t.agency.as_str())),
        ];
        let fields = [
            ("value", Value::F(value)),
            ("status", Value::S(status)),
            ("time_source", Value::S(time_source)),
        ];
        // Declared schema, so only a bug could fail here; never lose the batch for it.
        let _ = self.enc.point(&lineproto::READING, &tags, &fields, ts_ms);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn anomaly(
        &mut self,
        tx: &Transaction<'_>,
        path: &Path,
        series: i64,
        ts_ms: i64,
        kind: &str,
        detail: &str,
        count: i64,
    ) -> Result<(), StoreError> {
        let Some((meter, _)) = self.series_name(tx, path, series)? else {
            return Ok(());
        };
        // The same measurement, tags and time as the original: a retraction
        // (count 0) overwrites the point in InfluxDB.
        let _ = self.enc.point(
            &lineproto::ANOMALY,
            &[("meter", &meter), ("kind", kind)],
            &[("count", Value::I(count)), ("detail", Value::S(detail))],
            ts_ms,
        );
        Ok(())
    }

    pub(crate) fn consumption(
        &mut self,
        tx: &Transaction<'_>,
        path: &Path,
        series: i64,
        bucket_ms: i64,
        t: &BucketTotals,
    ) -> Result<(), StoreError> {
        let Some((meter, _)) = self.series_name(tx, path, series)? else {
            return Ok(());
        };
        let Some(m) = self.meters.get(&meter) else {
            return Ok(());
        };
        let quality = if t.is_empty() {
            "missing"
        } else {
            match t.quality() {
                Quality::Measured => "measured",
                Quality::Estimated => "estimated",
                _ => "mixed",
            }
        };
        let root = if m.root { "true" } else { "" };
        let _ = self.enc.point(
            &lineproto::CONSUMPTION,
            &[
                ("meter", &meter),
                ("class", m.class),
                ("subitem", &m.subitem),
                ("building", &m.building),
                ("agency", &m.agency),
                ("root", root),
            ],
            &[
                ("value", Value::F(meterflow_core::from_micro(t.micro))),
                ("quality", Value::S(quality)),
                ("measured_s", Value::I(t.measured_ms / 1000)),
                ("estimated_s", Value::I(t.estimated_ms / 1000)),
            ],
            bucket_ms,
        );
        Ok(())
    }

    pub(crate) fn rollup(
        &mut self,
        key: &ScopeKey,
        grain: &str,
        start_ms: i64,
        value: i64,
        measured: i64,
        estimated: i64,
    ) {
        let subitem = if key.subitem.is_empty() {
            "total"
        } else {
            key.subitem.as_str()
        };
        let mut tags = vec![
            ("level", key.level.as_str()),
            ("id", key.id.as_str()),
            ("class", key.class.as_str()),
            ("subitem", subitem),
            ("grain", grain),
        ];
        if let Some(s) = &self.shard {
            tags.push(("shard", s.as_str()));
        }
        let _ = self.enc.point(
            &lineproto::ROLLUP,
            &tags,
            &[
                (
                    "value",
                    Value::F(meterflow_core::aggregate::to_carrier(key.class, value)),
                ),
                ("measured", Value::I(measured)),
                ("estimated", Value::I(estimated)),
            ],
            start_ms,
        );
    }

    /// Write what was encoded in this transaction to the outbox.
    pub(crate) fn flush(
        &mut self,
        tx: &Transaction<'_>,
        path: &Path,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if self.enc.is_empty() {
            return Ok(());
        }
        let (text, _) = self.enc.take();
        append_lines(tx, path, &text, now_ms)
    }
}

/// Append line protocol (whole lines) to the outbox, in rows of at most [`ROW_POINTS`] lines.
fn append_lines(conn: &Connection, path: &Path, text: &str, now_ms: i64) -> Result<(), StoreError> {
    let mut start = 0;
    let mut lines = 0;
    let bytes = text.as_bytes();
    let mut stmt = conn
        .prepare_cached("INSERT INTO influx_outbox (created_ms, points, body) VALUES (?1, ?2, ?3)")
        .at(path)?;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            lines += 1;
            if lines == ROW_POINTS {
                stmt.execute(params![now_ms, lines as i64, &text[start..=i]])
                    .at(path)?;
                start = i + 1;
                lines = 0;
            }
        }
    }
    if lines > 0 {
        stmt.execute(params![now_ms, lines as i64, &text[start..]])
            .at(path)?;
    }
    Ok(())
}

/// Totals of the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Points waiting.
    pub points: i64,
    /// Bytes waiting.
    pub bytes: i64,
    /// Creation time of the oldest waiting row, ms.
    pub oldest_ms: Option<i64>,
    /// Points dropped by the `drop_oldest` policy, ever.
    pub dropped: i64,
}

/// One outbox row.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Delivery order.
    pub id: i64,
    /// Points in `body`.
    pub points: i64,
    /// Line protocol, each line ending in `\n`, precision ms.
    pub body: String,
}

/// The sink's (and the periodic producers') handle on the outbox: its own connection.
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
}

impl Outbox {
    /// Open the outbox of the store at `path` (created and migrated if needed).
    pub fn open(path: &Path) -> Result<Outbox, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let mut conn = crate::conn::open_conn(path, 8, false)?;
        crate::schema::migrate(&mut conn, path)?;
        // Losing this connection's last commits at a power cut is harmless:
        // an ack lost replays points that overwrite themselves, and KPI and
        // health points are recomputed. So no fsync per ack.
        conn.pragma_update(None, "synchronous", "NORMAL").at(path)?;
        Ok(Outbox {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Append encoded lines (KPIs, alerts, health).
    pub fn append(&mut self, enc: &mut Encoder, now_ms: i64) -> Result<(), StoreError> {
        if enc.is_empty() {
            return Ok(());
        }
        let (text, _) = enc.take();
        let tx = self.conn.transaction().at(&self.path)?;
        append_lines(&tx, &self.path, &text, now_ms)?;
        tx.commit().at(&self.path)
    }

    /// The oldest rows, whole, up to `max_points` and `max_bytes` (at least one row).
    pub fn peek(&self, max_points: usize, max_bytes: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.peek_after(i64::MIN, max_points, max_bytes)
    }

    /// Like [`Outbox::peek`], from the first row after `after_id` (benchmarks, inspection).
    pub fn peek_after(
        &self,
        after_id: i64,
        max_points: usize,
        max_bytes: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, points, body FROM influx_outbox WHERE id > ?1 ORDER BY id LIMIT 256",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map(params![after_id], |r| {
                Ok(OutboxRow {
                    id: r.get(0)?,
                    points: r.get(1)?,
                    body: r.get(2)?,
                })
            })
            .at(&self.path)?;
        let (mut out, mut points, mut bytes) = (Vec::new(), 0usize, 0usize);
        for row in rows {
            let row = row.at(&self.path)?;
            let (p, b) = (row.points as usize, row.body.len());
            if !out.is_empty() && (points + p > max_points || bytes + b > max_bytes) {
                break;
            }
            points += p;
            bytes += b;
            out.push(row);
        }
        Ok(out)
    }

    /// The lowest and highest row id waiting, if any: a row appended up to
    /// now has been delivered once the lowest id is above the highest
    /// (or nothing waits).
    pub fn id_range(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let (lo, hi): (Option<i64>, Option<i64>) = self
            .conn
            .query_row("SELECT MIN(id), MAX(id) FROM influx_outbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .at(&self.path)?;
        Ok(lo.zip(hi))
    }

    /// Remove rows up to and including `last_id` (InfluxDB took them).
    pub fn ack(&mut self, last_id: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM influx_outbox WHERE id <= ?1", params![last_id])
            .at(&self.path)?;
        Ok(())
    }

    /// Move lines InfluxDB will never take to the dead-letter table and remove
    /// rows up to `last_id`, in one transaction.
    pub fn ack_with_dead(
        &mut self,
        last_id: i64,
        dead: &[(String, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction().at(&self.path)?;
        for (reason, line) in dead {
            tx.execute(
                "INSERT INTO dead_letters (received_ms, source, location, reason, payload) VALUES (?1, 'influx_sink', 'influx_outbox', ?2, ?3)",
                params![now_ms, reason, line],
            )
            .at(&self.path)?;
        }
        tx.execute("DELETE FROM influx_outbox WHERE id <= ?1", params![last_id])
            .at(&self.path)?;
        tx.commit().at(&self.path)
    }

    /// Totals.
    pub fn stats(&self) -> Result<OutboxStats, StoreError> {
        let (points, bytes, dropped): (i64, i64, i64) = self
            .conn
            .query_row("SELECT points, bytes, dropped FROM outbox_stats", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .at(&self.path)?;
        let oldest_ms: Option<i64> = self
            .conn
            .query_row(
                "SELECT created_ms FROM influx_outbox ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .at(&self.path)?;
        Ok(OutboxStats {
            points,
            bytes,
            oldest_ms,
            dropped,
        })
    }
}
