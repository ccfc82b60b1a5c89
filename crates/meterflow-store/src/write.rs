//! The single writer.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use meterflow_core::buckets::{BUCKET_MS, BucketDelta, Span, bucket_of};
use meterflow_core::counter::{CounterSpec, Item, State, Status};
use meterflow_core::engine::{self, SeriesLog};
use meterflow_core::memlog::BucketTotals;
use meterflow_core::time::{hour_start, local_date};
use meterflow_model::{AnomalyKind, Quality, Reading, Site};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::CLOCK_SKEW_MS;
use crate::agg::Rollups;
use crate::cold;
use crate::conn::open_conn;
use crate::counters::{CounterTable, INTERVALS, ROLLUP_DAY, ROLLUP_HOUR};
use crate::error::{Ctx, StoreError};
use crate::outbox::Emit;
use crate::rows::{PendingRows, ReadingRow, raw_text};
use crate::schema;
use crate::stage::Stage;

/// Maps looked up once or more per reading (meter, quantity, series and
/// bucket): foldhash instead of SipHash (SipHash cost ~2 % of the writer's time).
/// Meters are the site's own; quantities of a known meter can come from a
/// payload, and foldhash's per-process random seed keeps crafted collisions
/// impractical from outside.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What happened to one reading of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Stored; the normaliser's decision (`None` for a gauge quantity).
    Stored(Option<Status>),
    /// The same value at the same time was already stored: nothing changed.
    Duplicate,
    /// A different value at the same time is already stored; the first one is kept.
    Conflict {
        /// The stored value.
        existing: Option<f64>,
    },
    /// No such meter in the site configuration.
    UnknownMeter,
    /// Older than the raw-retention horizon: it can no longer be re-derived.
    TooOld,
    /// Its time is outside the plausible window (before the meter's
    /// earliest date, or too far past its receive time): kept as a dead
    /// letter with the reason, never spread into buckets.
    ImplausibleTime {
        /// Why, with the bound it broke.
        reason: String,
    },
}

/// Totals of one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchReport {
    /// Readings newly stored.
    pub stored: usize,
    /// Readings already present with the same value.
    pub duplicates: usize,
    /// Readings refused (conflict, unknown meter, too old).
    pub refused: usize,
    /// Anomalies raised by this batch, by kind (net of those a later
    /// reading of the same batch withdrew).
    pub anomalies: BTreeMap<AnomalyKind, usize>,
    /// Anomalies of earlier batches that this batch's late readings withdrew
    /// (a gap that was not a gap), by kind: subtract them from a running
    /// total. Their InfluxDB points are rewritten with `count` 0.
    pub retracted: BTreeMap<AnomalyKind, usize>,
}

struct MeterEntry {
    spec: CounterSpec,
    counter_quantity: String,
    /// No reading before this (ms): `Site::earliest_ms`.
    earliest_ms: i64,
}

#[derive(Clone, Copy)]
struct SeriesCache {
    id: i64,
    last_ts: Option<i64>,
    state: State,
    /// End of the series' latest compacted month (`i64::MIN`: none).
    cold_end: i64,
    /// An item at or after this needs nothing thawed: one past the first
    /// base reading after `cold_end` (`i64::MAX`: none known).
    safe_from: i64,
    /// No compacted interval or hour of the series lies at or after this:
    /// an item after the newest, spreading from a baseline at or after
    /// it, needs nothing thawed.
    hot_from: i64,
}

/// The one writer of a store.
pub struct Writer {
    conn: Connection,
    path: PathBuf,
    tz: Tz,
    meters: FastMap<String, MeterEntry>,
    /// meter → quantity → cache (looked up by `&str`, no allocation per reading).
    series: FastMap<String, FastMap<String, SeriesCache>>,
    retention_floor_ms: i64,
    /// How far past its receive time a reading may be (ms).
    max_future_ms: i64,
    dead_letters: Vec<(i64, String, String, String, String)>,
    rollups: Rollups,
    emit: Option<Emit>,
    /// Where a compaction in slices goes on: (0 series / 1 scopes, last id done).
    compact_cursor: (u8, i64),
    /// The batch accumulator, kept between batches so that its maps keep
    /// their capacity (growing them anew each batch faulted in fresh pages:
    /// ~5 % of the writer's CPU under MQTT load).
    acc: Accumulator,
    /// The store's compaction count as this writer last saw it: another
    /// process (`meterflow compact`) may have compacted since.
    cold_gen: i64,
    /// `[store] compact_after_days`: months closed that long go into blocks.
    compact_after_days: u32,
    /// During a bulk load: the rows of closed months collected for blocks.
    stage: Option<Stage>,
    /// The readings block last looked into for a stored reading.
    peek: Peek,
}

/// A stored reading's value, and the text of a non-finite one.
type StoredValue = (Option<f64>, Option<String>);

/// A decoded block of readings: (series, block start, rows).
type Peek = Option<(i64, i64, Vec<cold::Row>)>;

/// The stored value (and text of a non-finite one) of a series' reading
/// at `ts`, from the rows or from a compacted block.
fn stored_reading(
    tx: &Transaction<'_>,
    path: &Path,
    cache: &SeriesCache,
    ts: i64,
    peek: &mut Peek,
) -> Result<Option<StoredValue>, StoreError> {
    let row: Option<StoredValue> = tx
        .prepare_cached("SELECT value, raw FROM readings WHERE series = ?1 AND ts_ms = ?2")
        .and_then(|mut s| {
            s.query_row(params![cache.id, ts], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .at(path)?;
    if row.is_some() || cache.cold_end == i64::MIN || ts >= cache.cold_end {
        return Ok(row);
    }
    for m in cold::months(tx, path, cold::Tbl::Readings, cache.id, ts, ts + 1)?
        .into_iter()
        .rev()
    {
        if peek
            .as_ref()
            .is_none_or(|(id, month, _)| (*id, *month) != (cache.id, m))
        {
            let rows = cold::block_rows(tx, path, cold::Tbl::Readings, cache.id, m)?;
            *peek = Some((cache.id, m, rows));
        }
        let Some((_, _, rows)) = peek.as_ref() else {
            continue;
        };
        if let Ok(i) = rows.binary_search_by_key(&ts, |r| r.0) {
            let c = &rows[i].1;
            let raw = match c.get(3) {
                Some(rusqlite::types::Value::Text(t)) => Some(t.clone()),
                _ => None,
            };
            return Ok(Some((c.get(1).and_then(cold::real), raw)));
        }
    }
    Ok(None)
}

/// The compaction count of a store (`meta` key `cold_gen`).
fn cold_gen(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let v: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'cold_gen'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .at(path)?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn bump_cold_gen(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('cold_gen', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        [],
    )
    .at(path)?;
    Ok(())
}

impl Writer {
    /// Open (creating and migrating if needed) the store of a site.
    pub fn open(site: &Site) -> Result<Writer, StoreError> {
        Writer::open_at(&site.store_path(), site)
    }

    /// Open the store at an explicit path.
    pub fn open_at(path: &Path, site: &Site) -> Result<Writer, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let new = !path.exists();
        let mut conn = open_conn(path, site.store.cache_mib, false)?;
        if new {
            // The store holds the ledgers, alert history and every reading:
            // its owner's only (SQLite gives the -wal and -shm files the
            // same mode).
            meterflow_model::secret_file::restrict(path).map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        schema::migrate(&mut conn, path)?;
        // Readers place the buckets of long gaps kept whole in local hours.
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('tz', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![site.tz.name()],
        )
        .at(path)?;
        let meters = site
            .meters
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    MeterEntry {
                        spec: CounterSpec::for_site(site, m),
                        counter_quantity: m.counter_quantity().to_string(),
                        earliest_ms: site.earliest_ms(m),
                    },
                )
            })
            .collect();
        let retention_floor_ms = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'retention_floor_ms'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .at(path)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MIN);
        let mut emit = site.influx.as_ref().map(|c| Emit::new(site, c));
        let rollups = Rollups::open(&mut conn, path, site, emit.as_mut())?;
        let generation = cold_gen(&conn, path)?;
        Ok(Writer {
            rollups,
            emit,
            conn,
            path: path.to_path_buf(),
            tz: site.tz,
            meters,
            series: FastMap::default(),
            retention_floor_ms,
            max_future_ms: i64::try_from(site.store.max_future_s)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
            dead_letters: Vec::new(),
            compact_cursor: (0, i64::MIN),
            acc: Accumulator::default(),
            cold_gen: generation,
            compact_after_days: site.store.compact_after_days,
            stage: None,
            peek: None,
        })
    }

    /// Database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue input that could not be stored; written with the next batch.
    pub fn dead_letter(
        &mut self,
        received_ms: i64,
        source: &str,
        location: &str,
        reason: &str,
        payload: &str,
    ) {
        const MAX_PAYLOAD: usize = 4096;
        let mut payload = payload.to_string();
        if payload.len() > MAX_PAYLOAD {
            let mut cut = MAX_PAYLOAD;
            while !payload.is_char_boundary(cut) {
                cut -= 1;
            }
            payload.truncate(cut);
            payload.push_str("…[truncated]");
        }
        self.dead_letters.push((
            received_ms,
            source.to_string(),
            location.to_string(),
            reason.to_string(),
            payload,
        ));
    }

    /// Store the configured replacement events not yet stored (each is an item
    /// of its meter's counter sequence; a late one re-derives what follows).
    pub fn sync_replacements(&mut self, site: &Site, now_ms: i64) -> Result<usize, StoreError> {
        self.sync_replacements_where(site, now_ms, false)
    }

    /// Like [`Writer::sync_replacements`], but only the replacements that are
    /// already behind their meter's newest stored reading (they re-derive
    /// what follows them once); the others wait. An import in time order
    /// calls this first and [`Writer::sync_replacements`] at its end, so its
    /// readings before a replacement are appended instead of each re-folding
    /// the replacement (which made such an import quadratic).
    pub fn sync_replacements_behind(
        &mut self,
        site: &Site,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        self.sync_replacements_where(site, now_ms, true)
    }

    fn sync_replacements_where(
        &mut self,
        site: &Site,
        now_ms: i64,
        only_behind: bool,
    ) -> Result<usize, StoreError> {
        let mut added = 0;
        let tx = self.conn.transaction().at(&self.path)?;
        let generation = cold_gen(&tx, &self.path)?;
        if generation != self.cold_gen {
            self.series.clear();
            self.rollups.load_cold_months(&tx, &self.path)?;
            self.cold_gen = generation;
        }
        let mut acc = Accumulator::default();
        for r in &site.replacements {
            let Some(meter) = self.meters.get(&r.meter) else {
                continue;
            };
            let cache = series_cache(
                &tx,
                &self.path,
                &mut self.series,
                self.tz,
                (&r.meter, &meter.counter_quantity),
                true,
                &meter.spec,
                None,
            )?;
            let item = replacement_item(r);
            if only_behind && cache.last_ts.is_none_or(|last| last < item.ts_ms()) {
                continue;
            }
            ensure_live(&tx, &self.path, self.tz, cache, item.ts_ms(), true)?;
            let exists: Option<i64> = tx
                .prepare_cached("SELECT kind FROM readings WHERE series = ?1 AND ts_ms = ?2")
                .and_then(|mut s| {
                    s.query_row(params![cache.id, item.ts_ms()], |row| row.get(0))
                        .optional()
                })
                .at(&self.path)?;
            match exists {
                Some(1) => continue,
                Some(_) => {
                    let payload = format!(
                        "{} at {} ms: old_final {}, new_initial {}",
                        r.meter, r.ts_ms, r.old_final, r.new_initial
                    );
                    let reason = "a reading is stored 1 ms before the replacement instant, where the replacement item goes";
                    tx.execute(
                        "INSERT INTO dead_letters (received_ms, source, location, reason, payload) VALUES (?1, 'config', 'replacement', ?2, ?3)",
                        params![now_ms, reason, payload],
                    )
                    .at(&self.path)?;
                    continue;
                }
                None => {}
            }
            let status = apply(&tx, &self.path, &meter.spec, cache, item, now_ms, &mut acc)?;
            let source = source_id(&tx, &self.path, "config:replacement")?;
            let mut row = PendingRows::new(&tx, &self.path)?;
            row.push(
                &self.path,
                ReadingRow::of(
                    cache.id,
                    &item,
                    now_ms,
                    time_source_code("operator"),
                    source,
                    Some(status.code()),
                ),
            )?;
            row.flush(&self.path)?;
            added += 1;
        }
        acc.flush(
            &tx,
            &self.path,
            self.tz,
            &mut self.rollups,
            self.emit.as_mut(),
            None,
        )?;
        if let Some(e) = self.emit.as_mut() {
            e.flush(&tx, &self.path, now_ms)?;
        }
        tx.commit().at(&self.path)?;
        Ok(added)
    }

    /// Store a batch of readings in one transaction; one verdict per reading.
    pub fn write_batch(
        &mut self,
        readings: &[Reading],
        source: &str,
    ) -> Result<(Vec<Verdict>, BatchReport), StoreError> {
        let (mut verdicts, report) = self.write_batches(&[(readings, source)])?;
        Ok((verdicts.pop().unwrap_or_default(), report))
    }

    /// Store several sources' batches in one transaction (group commit);
    /// verdicts per batch, in order.
    pub fn write_batches(
        &mut self,
        batches: &[(&[Reading], &str)],
    ) -> Result<(Vec<Vec<Verdict>>, BatchReport), StoreError> {
        if let Some(e) = &self.emit {
            e.check_room(&self.conn, &self.path)?;
        }
        let tx = self.conn.transaction().at(&self.path)?;
        let generation = cold_gen(&tx, &self.path)?;
        if generation != self.cold_gen {
            // Compacted by another process since: what this writer knows of
            // each series' compacted months is read anew.
            self.series.clear();
            self.rollups.load_cold_months(&tx, &self.path)?;
            self.cold_gen = generation;
        }
        if let Some(st) = self.stage.as_mut() {
            // What a failed batch collected was never committed.
            st.clear();
        }
        // Blocks may have changed since (thawed, compacted, rolled back).
        self.peek = None;
        let mut now_ms = i64::MIN;
        // Empty (a failed batch left a fresh one), with the last batch's capacity.
        let mut acc = std::mem::take(&mut self.acc);
        let mut all = Vec::with_capacity(batches.len());
        let mut report = BatchReport::default();
        // New readings rows, inserted a chunk at a time (`rows.rs`).
        let mut pending = PendingRows::new(&tx, &self.path)?;
        let mut implausible = Vec::new();
        for (readings, source) in batches {
            let source_code = source_id(&tx, &self.path, source)?;
            let mut verdicts = Vec::with_capacity(readings.len());
            for r in *readings {
                let v = write_one(
                    &tx,
                    &mut pending,
                    &self.path,
                    &self.meters,
                    &mut self.series,
                    self.tz,
                    self.retention_floor_ms,
                    self.max_future_ms,
                    r,
                    source_code,
                    &mut acc,
                    &mut self.stage,
                    &mut self.peek,
                )?;
                if let Verdict::ImplausibleTime { reason } = &v {
                    implausible.push((r.recv_ms, (*source).to_string(), r, reason.clone()));
                }
                now_ms = now_ms.max(r.recv_ms);
                match v {
                    Verdict::Stored(status) => {
                        report.stored += 1;
                        if let Some(e) = self.emit.as_mut() {
                            let status = status.map_or("gauge", |s| s.as_str());
                            e.reading(
                                &r.meter,
                                &r.quantity,
                                r.ts_ms,
                                r.value,
                                status,
                                r.time_source.as_str(),
                            );
                        }
                    }
                    Verdict::Duplicate => report.duplicates += 1,
                    _ => report.refused += 1,
                }
                verdicts.push(v);
            }
            all.push(verdicts);
        }
        pending.flush(&self.path)?;
        drop(pending);
        for (recv_ms, src, r, reason) in implausible {
            let payload = format!("{} {} {} {}", r.meter, r.quantity, r.ts_ms, r.value);
            // Short by construction: no truncation needed.
            self.dead_letters.push((
                recv_ms,
                src,
                format!("meter {}", r.meter),
                format!("implausible_time: {reason}"),
                payload,
            ));
        }
        for (received_ms, src, location, reason, payload) in self.dead_letters.drain(..) {
            tx.prepare_cached("INSERT INTO dead_letters (received_ms, source, location, reason, payload) VALUES (?1, ?2, ?3, ?4, ?5)")
                .and_then(|mut s| s.execute(params![received_ms, src, location, reason, payload]))
                .at(&self.path)?;
        }
        // Per series touched, the keys a later in-order reading cannot
        // touch (before its baseline's hour) may go into blocks.
        let mut limits: FastMap<i64, i64> = FastMap::default();
        if let Some(st) = &self.stage {
            for cache in self.series.values().flat_map(|q| q.values()) {
                if acc.before_batch.contains_key(&cache.id) {
                    let limit = match cache.state.base {
                        Some(b) => hour_start(bucket_of(b.ts_ms), self.tz),
                        None => i64::MAX,
                    };
                    limits.insert(cache.id, limit.min(st.before_ms));
                }
            }
        }
        acc.flush(
            &tx,
            &self.path,
            self.tz,
            &mut self.rollups,
            self.emit.as_mut(),
            self.stage.as_mut().map(|st| (st, &limits)),
        )?;
        if let Some(st) = self.stage.as_mut() {
            let written = st.write_all(&tx, &self.path, self.tz)?;
            if !written.is_empty() {
                for (meter, qs) in self.series.iter_mut() {
                    for (quantity, cache) in qs.iter_mut() {
                        let Some(end) = written.get(&cache.id) else {
                            continue;
                        };
                        cache.hot_from = cache.hot_from.max(*end);
                        let counter = self
                            .meters
                            .get(meter)
                            .is_some_and(|m| m.counter_quantity == *quantity);
                        refresh_cold(&tx, &self.path, self.tz, cache, counter)?;
                    }
                }
            }
        }
        if let Some(e) = self.emit.as_mut() {
            e.flush(&tx, &self.path, if now_ms == i64::MIN { 0 } else { now_ms })?;
        }
        tx.commit().at(&self.path)?;
        report.anomalies = std::mem::take(&mut acc.anomaly_counts);
        report.anomalies.retain(|_, n| *n > 0);
        report.retracted = std::mem::take(&mut acc.retracted_counts);
        self.acc = acc;
        Ok((all, report))
    }

    /// Delete raw readings older than `days` before `now_ms`, keeping each
    /// series' last baseline before the horizon so later data still derives;
    /// readings older than the horizon are refused from then on.
    pub fn apply_retention(&mut self, days: u32, now_ms: i64) -> Result<usize, StoreError> {
        let horizon = now_ms - i64::from(days) * 86_400_000;
        let tx = self.conn.transaction().at(&self.path)?;
        let ids: Vec<i64> = {
            let mut s = tx.prepare("SELECT id FROM series").at(&self.path)?;
            let rows = s.query_map([], |r| r.get(0)).at(&self.path)?;
            rows.collect::<Result<_, _>>().at(&self.path)?
        };
        let mut deleted = 0;
        for id in ids {
            let keep: Option<i64> = tx
                .query_row(
                    "SELECT ts_ms FROM readings WHERE series = ?1 AND ts_ms < ?2 AND (status IS NULL OR status IN (0,1,2,3,5,7)) ORDER BY ts_ms DESC LIMIT 1",
                    params![id, horizon],
                    |r| r.get(0),
                )
                .optional()
                .at(&self.path)?;
            let keep = keep.max(latest_cold_base(&tx, &self.path, id, horizon)?);
            let below = keep.unwrap_or(horizon).min(horizon);
            // Compacted months: wholly before the line dropped, the one
            // across it back into rows (then cut below like the others).
            for m in cold::months(&tx, &self.path, cold::Tbl::Readings, id, i64::MIN, below)? {
                if cold::next_month(m, self.tz) <= below {
                    let rows: i64 = tx
                        .query_row(
                            "DELETE FROM cold WHERE tbl = 0 AND key = ?1 AND month_ms = ?2 RETURNING rows",
                            params![id, m],
                            |r| r.get(0),
                        )
                        .at(&self.path)?;
                    deleted += usize::try_from(rows).unwrap_or(0);
                    continue;
                }
                cold::thaw(&tx, &self.path, cold::Tbl::Readings, id, m)?;
            }
            deleted += tx
                .execute(
                    "DELETE FROM readings WHERE series = ?1 AND ts_ms < ?2",
                    params![id, below],
                )
                .at(&self.path)?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('retention_floor_ms', ?1)",
            params![horizon.to_string()],
        )
        .at(&self.path)?;
        tx.commit().at(&self.path)?;
        self.retention_floor_ms = horizon;
        self.series.clear();
        Ok(deleted)
    }

    /// Move each series' local months that ended more than `after_days`
    /// before its newest reading (and the scopes' months that ended that long
    /// before the newest reading of all) into compacted blocks (ADR 0024).
    /// One transaction per series and per scope: interrupted, a month is
    /// either rows or a block. Queries, KPIs and exports read the same.
    pub fn compact(&mut self, after_days: u32) -> Result<CompactReport, StoreError> {
        self.compact_cursor = (0, i64::MIN);
        self.compact_within(after_days, None)
    }

    /// [`Writer::compact`] in slices: stops once `budget` is spent (after
    /// the series or scope in hand) with `done` false; the next call goes on
    /// from there. The daemon's writer runs it between batches.
    pub fn compact_within(
        &mut self,
        after_days: u32,
        budget: Option<std::time::Duration>,
    ) -> Result<CompactReport, StoreError> {
        let started = std::time::Instant::now();
        // At least one series or scope per call, so that slices always advance.
        let taken = std::cell::Cell::new(0usize);
        let spent = || {
            taken.set(taken.get() + 1);
            taken.get() > 1 && budget.is_some_and(|b| started.elapsed() >= b)
        };
        let keep = i64::from(after_days).saturating_mul(86_400_000);
        let tz = self.tz;
        let path = self.path.clone();
        let mut report = CompactReport::default();
        let ids: Vec<i64> = self
            .conn
            .prepare("SELECT id FROM series WHERE id > ?1 ORDER BY id")
            .and_then(|mut s| {
                s.query_map(params![self.compact_cursor.1], |r| r.get(0))?
                    .collect()
            })
            .at(&path)?;
        let ids = if self.compact_cursor.0 == 0 {
            ids
        } else {
            Vec::new()
        };
        let first_at = |tx: &Transaction<'_>,
                        id: i64,
                        from: i64|
         -> Result<Option<i64>, StoreError> {
            let mut first: Option<i64> = None;
            for sql in [
                "SELECT min(ts_ms) FROM readings WHERE series = ?1 AND ts_ms >= ?2",
                "SELECT min(bucket_ms) FROM intervals WHERE series = ?1 AND bucket_ms >= ?2",
                "SELECT min(hour_ms) FROM rollup_hour WHERE series = ?1 AND hour_ms >= ?2",
                // Blocks too: an import's segments are merged by month.
                "SELECT min(month_ms) FROM cold WHERE tbl IN (0, 1, 2) AND key = ?1 AND month_ms >= ?2",
            ] {
                let t: Option<i64> = tx
                    .prepare_cached(sql)
                    .and_then(|mut s| s.query_row(params![id, from], |r| r.get(0)))
                    .at(&path)?;
                first = match (first, t) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Ok(first)
        };
        for id in ids {
            if spent() {
                self.series.clear();
                return Ok(report);
            }
            self.compact_cursor = (0, id);
            let tx = self.conn.transaction().at(&path)?;
            let Some(newest) = newest_reading(&tx, &path, id)? else {
                continue;
            };
            let cutoff = newest.saturating_sub(keep);
            let (months, rows) =
                freeze_closed(&tx, &path, tz, (&cold::SERIES_TABLES, id), cutoff, |from| {
                    first_at(&tx, id, from)
                })?;
            report.series_months += months;
            report.rows += rows;
            if months > 0 {
                bump_cold_gen(&tx, &path)?;
            }
            tx.commit().at(&path)?;
        }
        if self.compact_cursor.0 == 0 {
            self.compact_cursor = (1, i64::MIN);
        }
        let mut newest_of_all: Option<i64> = None;
        {
            let ids: Vec<i64> = self
                .conn
                .prepare("SELECT id FROM series")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .at(&path)?;
            for id in ids {
                newest_of_all = newest_of_all.max(newest_reading(&self.conn, &path, id)?);
            }
        }
        if let Some(newest) = newest_of_all {
            let cutoff = newest.saturating_sub(keep);
            let scopes: Vec<i64> = self
                .conn
                .prepare("SELECT id FROM agg_scope WHERE id > ?1 ORDER BY id")
                .and_then(|mut s| {
                    s.query_map(params![self.compact_cursor.1], |r| r.get(0))?
                        .collect()
                })
                .at(&path)?;
            for scope in scopes {
                if spent() {
                    self.rollups.load_cold_months(&self.conn, &path)?;
                    self.series.clear();
                    return Ok(report);
                }
                self.compact_cursor = (1, scope);
                let tx = self.conn.transaction().at(&path)?;
                let first = |from: i64| -> Result<Option<i64>, StoreError> {
                    tx.prepare_cached(
                        "SELECT min(start_ms) FROM agg WHERE scope = ?1 AND grain IN ('15m', 'hour') AND start_ms >= ?2",
                    )
                    .and_then(|mut s| s.query_row(params![scope, from], |r| r.get(0)))
                    .at(&path)
                };
                let (months, rows) =
                    freeze_closed(&tx, &path, tz, (&cold::SCOPE_TABLES, scope), cutoff, first)?;
                report.scope_months += months;
                report.rows += rows;
                if months > 0 {
                    bump_cold_gen(&tx, &path)?;
                }
                tx.commit().at(&path)?;
            }
        }
        self.rollups.load_cold_months(&self.conn, &path)?;
        // Each series' place relative to its compacted months is read anew.
        self.series.clear();
        self.cold_gen = cold_gen(&self.conn, &path)?;
        self.compact_cursor = (0, i64::MIN);
        report.done = true;
        Ok(report)
    }
}

impl Writer {
    /// Bytes of the store in use and free for reuse: `(used, free)`.
    pub fn space(&self) -> Result<(i64, i64), StoreError> {
        let q = |p: &str| -> Result<i64, StoreError> {
            self.conn
                .query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                .at(&self.path)
        };
        let (pages, free, size) = (q("page_count")?, q("freelist_count")?, q("page_size")?);
        Ok(((pages - free) * size, free * size))
    }

    /// Settings for a bulk load (`meterflow import`), or back to the daemon's.
    /// Bulk: `synchronous = NORMAL` (in WAL mode a SIGKILL loses nothing
    /// committed; a power cut may lose the last batches, which the import
    /// run again stores as new) and a checkpoint every 64 MiB of WAL instead
    /// of every 4 MiB (fewer rewrites of the same pages).
    pub fn bulk_load(&mut self, on: bool) -> Result<(), StoreError> {
        // Months closed `compact_after_days` ago go straight into blocks.
        self.stage = (on && self.compact_after_days > 0).then(|| {
            let now = meterflow_model::clock::now_ms();
            let keep = i64::from(self.compact_after_days).saturating_mul(86_400_000);
            Stage::new(cold::month_start(now.saturating_sub(keep), self.tz))
        });
        let (sync, pages) = if on {
            ("NORMAL", 16_384)
        } else {
            ("FULL", 1_000)
        };
        self.conn
            .pragma_update(None, "synchronous", sync)
            .and_then(|_| self.conn.pragma_update(None, "wal_autocheckpoint", pages))
            .at(&self.path)
    }

    /// Give the free pages back to the file system (rewrites the file:
    /// needs its size again in free disk space while it runs).
    pub fn vacuum(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("VACUUM").at(&self.path)
    }
}

/// Freeze the months of `key` in `tables` from the first live row on
/// (`first(from)`: the first row time at or after `from`) that ended by
/// `cutoff`. Returns the months and the rows moved.
fn freeze_closed(
    tx: &Transaction<'_>,
    path: &Path,
    tz: Tz,
    (tables, key): (&[cold::Tbl], i64),
    cutoff: i64,
    first: impl Fn(i64) -> Result<Option<i64>, StoreError>,
) -> Result<(usize, usize), StoreError> {
    let (mut months, mut rows) = (0, 0);
    let mut next = first(i64::MIN)?;
    while let Some(t) = next {
        let month = cold::month_start(t, tz);
        let end = cold::next_month(month, tz);
        if end > cutoff {
            break;
        }
        let mut moved = 0;
        for tbl in tables {
            moved += cold::freeze(tx, path, *tbl, key, (month, end))?;
        }
        if moved > 0 {
            months += 1;
            rows += moved;
        }
        next = first(end)?;
    }
    Ok((months, rows))
}

/// What one compaction moved into blocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactReport {
    /// Series-months compacted.
    pub series_months: usize,
    /// Scope-months compacted.
    pub scope_months: usize,
    /// Rows moved into blocks.
    pub rows: usize,
    /// Whether the pass is complete (false: the budget ran out first).
    pub done: bool,
}

/// Time of the newest reading of a series, in rows or blocks.
fn newest_reading(conn: &Connection, path: &Path, id: i64) -> Result<Option<i64>, StoreError> {
    let live: Option<i64> = conn
        .prepare_cached("SELECT max(ts_ms) FROM readings WHERE series = ?1")
        .and_then(|mut s| s.query_row(params![id], |r| r.get(0)))
        .at(path)?;
    let after = live.unwrap_or(i64::MIN);
    Ok(live.max(cold::newest_after(
        conn,
        path,
        cold::Tbl::Readings,
        id,
        after,
    )?))
}

/// The latest base reading of a series before `before` kept in a compacted month.
fn latest_cold_base(
    tx: &Transaction<'_>,
    path: &Path,
    series: i64,
    before: i64,
) -> Result<Option<i64>, StoreError> {
    let mut months = cold::months(tx, path, cold::Tbl::Readings, series, i64::MIN, before)?;
    months.reverse();
    for m in months {
        let rows = cold::fetch(tx, path, cold::Tbl::Readings, series, m, before)?;
        let base = rows
            .iter()
            .rev()
            .find(|(_, c)| cold::int_opt(&c[7]).is_some_and(|s| [0, 1, 2, 3, 5, 7].contains(&s)));
        if let Some((t, _)) = base {
            return Ok(Some(*t));
        }
    }
    Ok(None)
}

/// Why a reading's time is outside its plausible window, if it is: before
/// `earliest_ms`, or more than `max_future_ms` past its receive time. A
/// reading there would make one row per 15-minute bucket of the gap to its
/// neighbours (a year dated 2100 is 2.6 M rows), so it never reaches the
/// counter.
pub(crate) fn implausible_time(
    r: &Reading,
    earliest_ms: i64,
    max_future_ms: i64,
) -> Option<String> {
    if r.ts_ms < earliest_ms {
        return Some(format!(
            "{} is before the meter's earliest plausible time {}",
            iso_utc(r.ts_ms),
            iso_utc(earliest_ms)
        ));
    }
    let latest = r.recv_ms.saturating_add(max_future_ms);
    if r.ts_ms > latest {
        return Some(format!(
            "{} is more than {} after it was received ({})",
            iso_utc(r.ts_ms),
            meterflow_core::time::human_duration(max_future_ms),
            iso_utc(r.recv_ms)
        ));
    }
    None
}

/// A time for messages: RFC 3339 in UTC, or the raw ms when out of
/// chrono's range.
fn iso_utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// The counter item of a replacement declared at T: stored at T − 1 ms, so a
/// reading taken at exactly T belongs to the new meter (items are unique by time).
pub fn replacement_item(r: &meterflow_model::config::ReplacementEvent) -> Item {
    Item::Replacement {
        ts_ms: r.ts_ms - 1,
        old_final: r.old_final,
        new_initial: r.new_initial,
    }
}

#[allow(clippy::too_many_arguments)]
fn write_one(
    tx: &Transaction<'_>,
    pending: &mut PendingRows<'_>,
    path: &Path,
    meters: &FastMap<String, MeterEntry>,
    series: &mut FastMap<String, FastMap<String, SeriesCache>>,
    tz: Tz,
    retention_floor_ms: i64,
    max_future_ms: i64,
    r: &Reading,
    source: i64,
    acc: &mut Accumulator,
    stage: &mut Option<Stage>,
    peek: &mut Peek,
) -> Result<Verdict, StoreError> {
    let Some(meter) = meters.get(&r.meter) else {
        return Ok(Verdict::UnknownMeter);
    };
    if let Some(reason) = implausible_time(r, meter.earliest_ms, max_future_ms) {
        return Ok(Verdict::ImplausibleTime { reason });
    }
    if r.ts_ms < retention_floor_ms {
        return Ok(Verdict::TooOld);
    }
    let counter = r.quantity == meter.counter_quantity;
    let cache = series_cache(
        tx,
        path,
        series,
        tz,
        (&r.meter, &r.quantity),
        counter,
        &meter.spec,
        Some(&mut *pending),
    )?;
    let in_order = cache.last_ts.is_none_or(|last| r.ts_ms > last);
    if !in_order {
        // Out of order, the normaliser reads the series back and may
        // re-status its readings: every row of the batch goes in first.
        pending.flush(path)?;
        if let Some(st) = stage.as_mut()
            && st.readings.contains_key(&cache.id)
        {
            // The normaliser and the duplicate check read the series back:
            // its readings collected in this batch are written first.
            st.write_readings(tx, path, tz, cache.id)?;
            refresh_cold(tx, path, tz, cache, counter)?;
            *peek = None;
        }
        // Already stored (a rerun of an import): answered from the rows or
        // the compacted block that holds it, without thawing anything.
        if let Some((value, raw)) = stored_reading(tx, path, cache, r.ts_ms, peek)? {
            let same = match value {
                Some(v) => v == r.value,
                None => raw.as_deref() == Some(raw_text(r.value).as_str()),
            };
            return Ok(if same {
                Verdict::Duplicate
            } else {
                Verdict::Conflict { existing: value }
            });
        }
    }
    // In order, an item writes only after the newest reading and spreads
    // from its baseline on: nothing to thaw when no compacted interval or
    // hour lies there.
    let spread_from = match cache.state.base {
        Some(b) if counter => b.ts_ms,
        _ => r.ts_ms,
    };
    if !(in_order && spread_from >= cache.hot_from) {
        pending.flush(path)?;
        ensure_live(tx, path, tz, cache, r.ts_ms, counter)?;
        *peek = None;
    }
    let status = if counter {
        let item = Item::Reading {
            ts_ms: r.ts_ms,
            value: r.value,
        };
        Some(apply(tx, path, &meter.spec, cache, item, r.recv_ms, acc)?)
    } else {
        None
    };
    let row = ReadingRow::of(
        cache.id,
        &Item::Reading {
            ts_ms: r.ts_ms,
            value: r.value,
        },
        r.recv_ms,
        time_source_code(r.time_source.as_str()),
        source,
        status.map(Status::code),
    );
    match stage.as_mut() {
        Some(st) if in_order && r.ts_ms < st.before_ms => {
            st.readings.entry(cache.id).or_default().push(row);
        }
        _ => pending.push(path, row)?,
    }
    if r.ts_ms > r.recv_ms + CLOCK_SKEW_MS {
        let detail = format!(
            "source time is {} ahead of receive time",
            meterflow_core::time::human_duration(r.ts_ms - r.recv_ms)
        );
        insert_anomaly(
            tx,
            path,
            cache.id,
            r.ts_ms,
            AnomalyKind::ClockSkew,
            &detail,
            r.recv_ms,
        )?;
        acc.anomaly_rows
            .push((cache.id, r.ts_ms, AnomalyKind::ClockSkew, detail, true));
        *acc.anomaly_counts
            .entry(AnomalyKind::ClockSkew)
            .or_default() += 1;
    }
    cache.last_ts = Some(cache.last_ts.map_or(r.ts_ms, |l| l.max(r.ts_ms)));
    Ok(Verdict::Stored(status))
}

/// Run the engine for one item of a counter series; update statuses and anomalies; accumulate deltas.
#[allow(clippy::too_many_arguments)]
fn apply(
    tx: &Transaction<'_>,
    path: &Path,
    spec: &CounterSpec,
    cache: &mut SeriesCache,
    item: Item,
    now_ms: i64,
    acc: &mut Accumulator,
) -> Result<Status, StoreError> {
    let mut log = SqlLog {
        tx,
        path,
        series: cache.id,
        last_ts: cache.last_ts,
    };
    // The series' newest item before this batch: no interval row lies past
    // its bucket, so the batch's buckets after it are new rows.
    acc.before_batch.entry(cache.id).or_insert(cache.last_ts);
    let outcome = engine::ingest(spec, &mut log, &mut cache.state, item)?;
    for (ts, status) in &outcome.restatus {
        tx.prepare_cached("UPDATE readings SET status = ?3 WHERE series = ?1 AND ts_ms = ?2")
            .and_then(|mut s| s.execute(params![cache.id, ts, status.code()]))
            .at(path)?;
    }
    if !outcome.restatus.is_empty() && cache.cold_end != i64::MIN {
        // The first base after the compacted months may have changed.
        cache.safe_from = first_base_from(tx, path, cache.id, cache.cold_end)?;
    }
    let mut replaced: Vec<(i64, String)> = Vec::new();
    if let Some((from, to)) = outcome.replace_anomalies {
        let mut q = tx
            .prepare_cached("SELECT ts_ms, kind FROM anomalies WHERE series = ?1 AND ts_ms BETWEEN ?2 AND ?3 AND kind != 'clock_skew'")
            .at(path)?;
        replaced = q
            .query_map(params![cache.id, from, to], |r| Ok((r.get(0)?, r.get(1)?)))
            .at(path)?
            .collect::<Result<_, _>>()
            .at(path)?;
        tx.prepare_cached("DELETE FROM anomalies WHERE series = ?1 AND ts_ms BETWEEN ?2 AND ?3 AND kind != 'clock_skew'")
            .and_then(|mut s| s.execute(params![cache.id, from, to]))
            .at(path)?;
    }
    let existed = |ts: i64, kind: AnomalyKind| {
        replaced
            .iter()
            .any(|(t, k)| *t == ts && AnomalyKind::parse(k) == Some(kind))
    };
    for a in &outcome.anomalies {
        insert_anomaly(tx, path, cache.id, a.ts_ms, a.kind, &a.detail, now_ms)?;
        if existed(a.ts_ms, a.kind) {
            // Raised again by the re-derivation: already counted and sent
            // (by this batch or an earlier one).
            continue;
        }
        acc.anomaly_rows.push((
            cache.id,
            a.ts_ms,
            a.kind,
            a.detail.clone(),
            a.ts_ms == item.ts_ms(),
        ));
        if a.ts_ms == item.ts_ms() {
            *acc.anomaly_counts.entry(a.kind).or_default() += 1;
        }
    }
    // What the re-derivation withdrew (and did not raise again) is neither
    // counted nor sent (`docs/methodology.md` §1): taken back from this
    // batch, or retracted downstream when an earlier batch sent it.
    for (ts, kind) in replaced {
        let Some(kind) = AnomalyKind::parse(&kind) else {
            continue;
        };
        if outcome
            .anomalies
            .iter()
            .any(|a| a.ts_ms == ts && a.kind == kind)
        {
            continue;
        }
        acc.withdraw(cache.id, ts, kind);
    }
    for d in &outcome.deltas {
        acc.add(cache.id, d);
    }
    for (s, sign) in &outcome.spans {
        *acc.spans.entry((cache.id, *s)).or_default() += sign;
    }
    cache.last_ts = Some(cache.last_ts.map_or(item.ts_ms(), |l| l.max(item.ts_ms())));
    Ok(outcome.status)
}

#[allow(clippy::too_many_arguments)]
fn series_cache<'a>(
    tx: &Transaction<'_>,
    path: &Path,
    series: &'a mut FastMap<String, FastMap<String, SeriesCache>>,
    tz: Tz,
    (meter, quantity): (&str, &str),
    counter: bool,
    spec: &CounterSpec,
    pending: Option<&mut PendingRows<'_>>,
) -> Result<&'a mut SeriesCache, StoreError> {
    // Two lookups by &str on the hot path; allocation only for a series not seen yet.
    let known = series.get(meter).is_some_and(|q| q.contains_key(quantity));
    if !known {
        // The series is read below: no row of the batch may still wait.
        if let Some(p) = pending {
            p.flush(path)?;
        }
        tx.prepare_cached(
            "INSERT OR IGNORE INTO series (meter, quantity, counter) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut s| s.execute(params![meter, quantity, counter]))
        .at(path)?;
        let id: i64 = tx
            .prepare_cached("SELECT id FROM series WHERE meter = ?1 AND quantity = ?2")
            .and_then(|mut s| s.query_row(params![meter, quantity], |r| r.get(0)))
            .at(path)?;
        let last_ts: Option<i64> = tx
            .prepare_cached("SELECT max(ts_ms) FROM readings WHERE series = ?1")
            .and_then(|mut s| s.query_row(params![id], |r| r.get(0)))
            .at(path)?;
        let mut entry = SeriesCache {
            id,
            last_ts,
            state: State::default(),
            cold_end: i64::MIN,
            safe_from: i64::MIN,
            hot_from: i64::MAX,
        };
        refresh_cold(tx, path, tz, &mut entry, counter)?;
        if counter && entry.cold_end != i64::MIN && entry.safe_from == i64::MAX {
            // No base reading after the compacted months: the normaliser's
            // state lies in them.
            ensure_live(tx, path, tz, &mut entry, i64::MAX, true)?;
            entry.last_ts = tx
                .prepare_cached("SELECT max(ts_ms) FROM readings WHERE series = ?1")
                .and_then(|mut s| s.query_row(params![id], |r| r.get(0)))
                .at(path)?;
        }
        entry.hot_from = i64::MIN;
        if entry.cold_end != i64::MIN {
            // An import may have left the newest readings in blocks.
            let after = entry.last_ts.unwrap_or(i64::MIN);
            entry.last_ts = entry.last_ts.max(cold::newest_after(
                tx,
                path,
                cold::Tbl::Readings,
                id,
                after,
            )?);
            if let Some(t) = cold::newest_after(tx, path, cold::Tbl::Intervals, id, i64::MIN)? {
                entry.hot_from = t + BUCKET_MS;
            }
            if let Some(t) = cold::newest_after(tx, path, cold::Tbl::Hours, id, i64::MIN)? {
                // A local hour lasts at most an hour.
                entry.hot_from = entry.hot_from.max(t + 3_600_000);
            }
        }
        // Resume the normaliser from the stored statuses: the state after the last item.
        let mut log = SqlLog {
            tx,
            path,
            series: id,
            last_ts: entry.last_ts,
        };
        if counter {
            entry.state = engine::state_before(spec, &mut log, i64::MAX)?;
        }
        series
            .entry(meter.to_string())
            .or_default()
            .insert(quantity.to_string(), entry);
    }
    series
        .get_mut(meter)
        .and_then(|q| q.get_mut(quantity))
        .ok_or_else(|| StoreError::Sqlite {
            path: path.to_path_buf(),
            source: rusqlite::Error::QueryReturnedNoRows,
        })
}

/// Base statuses: readings a later one is measured from (the normaliser's
/// `last_base_before`).
const BASE_STATUSES: &str = "(0,1,2,3,5,7)";

/// One past the first base reading of a series at or after `from` (`i64::MAX`: none).
fn first_base_from(
    tx: &Transaction<'_>,
    path: &Path,
    series: i64,
    from: i64,
) -> Result<i64, StoreError> {
    let t: Option<i64> = tx
        .prepare_cached(&format!(
            "SELECT min(ts_ms) FROM readings WHERE series = ?1 AND ts_ms >= ?2 AND status IN {BASE_STATUSES}"
        ))
        .and_then(|mut s| s.query_row(params![series, from], |r| r.get(0)))
        .at(path)?;
    Ok(t.map_or(i64::MAX, |t| t.saturating_add(1)))
}

/// Read where a series' compacted months end, and from when items need nothing thawed.
fn refresh_cold(
    tx: &Transaction<'_>,
    path: &Path,
    tz: Tz,
    cache: &mut SeriesCache,
    counter: bool,
) -> Result<(), StoreError> {
    let last: Option<i64> = tx
        .prepare_cached("SELECT max(month_ms) FROM cold WHERE tbl IN (0, 1, 2) AND key = ?1")
        .and_then(|mut s| s.query_row(params![cache.id], |r| r.get(0)))
        .at(path)?;
    cache.cold_end = last.map_or(i64::MIN, |m| cold::next_month(m, tz));
    cache.safe_from = if cache.cold_end == i64::MIN {
        i64::MIN
    } else if counter {
        first_base_from(tx, path, cache.id, cache.cold_end)?
    } else {
        cache.cold_end
    };
    Ok(())
}

/// Before an item at `ts` of a series is written: thaw the compacted months
/// it can touch. For a counter, everything after the last base reading
/// before it (the normaliser reads back to that base and spreads from it,
/// and re-derives the items after it); for a gauge, the month of `ts`.
fn ensure_live(
    tx: &Transaction<'_>,
    path: &Path,
    tz: Tz,
    cache: &mut SeriesCache,
    ts: i64,
    counter: bool,
) -> Result<(), StoreError> {
    // `safe_from` at `i64::MAX`: no base reading after the compacted months,
    // so nothing is safe (not even the `i64::MAX` a new cache asks with).
    if cache.cold_end == i64::MIN || (cache.safe_from != i64::MAX && ts >= cache.safe_from) {
        return Ok(());
    }
    let floor = if counter {
        let base: Option<i64> = tx
            .prepare_cached(&format!(
                "SELECT max(ts_ms) FROM readings WHERE series = ?1 AND ts_ms < ?2 AND status IN {BASE_STATUSES}"
            ))
            .and_then(|mut s| s.query_row(params![cache.id, ts], |r| r.get(0)))
            .at(path)?;
        let base = base.unwrap_or(i64::MIN);
        if cache.cold_end > base {
            // The base may be in a compacted month: only from its month on.
            base.max(latest_cold_base(tx, path, cache.id, ts)?.unwrap_or(i64::MIN))
        } else {
            base
        }
    } else {
        cold::month_start(ts, tz).saturating_sub(1)
    };
    if cache.cold_end > floor {
        let upto = if counter {
            i64::MAX
        } else {
            cold::next_month(cold::month_start(ts, tz), tz)
        };
        for tbl in cold::SERIES_TABLES {
            for m in cold::months(tx, path, tbl, cache.id, floor, upto)? {
                if cold::next_month(m, tz) > floor {
                    cold::thaw(tx, path, tbl, cache.id, m)?;
                }
            }
        }
    }
    refresh_cold(tx, path, tz, cache, counter)
}

/// The store's code of a reading's time source (schema 7).
pub(crate) fn time_source_code(s: &str) -> i64 {
    match s {
        "device" => 0,
        "poll" => 1,
        "receive" => 2,
        "import" => 3,
        "operator" => 4,
        _ => 9,
    }
}

/// The text of a time source code.
pub(crate) fn time_source_text(code: i64) -> &'static str {
    match code {
        0 => "device",
        1 => "poll",
        2 => "receive",
        3 => "import",
        4 => "operator",
        _ => "other",
    }
}

/// The id of a source text (`mqtt:…`, `import:…`) in `sources`, added if new.
fn source_id(tx: &Transaction<'_>, path: &Path, text: &str) -> Result<i64, StoreError> {
    tx.prepare_cached("INSERT OR IGNORE INTO sources (text) VALUES (?1)")
        .and_then(|mut s| s.execute(params![text]))
        .at(path)?;
    tx.prepare_cached("SELECT id FROM sources WHERE text = ?1")
        .and_then(|mut s| s.query_row(params![text], |r| r.get(0)))
        .at(path)
}

fn insert_anomaly(
    tx: &Transaction<'_>,
    path: &Path,
    series: i64,
    ts: i64,
    kind: AnomalyKind,
    detail: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT OR REPLACE INTO anomalies (series, ts_ms, kind, detail, detected_ms) VALUES (?1, ?2, ?3, ?4, ?5)")
        .and_then(|mut s| s.execute(params![series, ts, kind.as_str(), detail, now_ms]))
        .at(path)?;
    Ok(())
}

/// The engine's view of one series in the open transaction.
struct SqlLog<'a, 't> {
    tx: &'a Transaction<'t>,
    path: &'a Path,
    series: i64,
    last_ts: Option<i64>,
}

const ITEM_COLUMNS: &str = "kind, ts_ms, value, aux";

fn row_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let kind: i64 = row.get(0)?;
    let ts_ms: i64 = row.get(1)?;
    let value: Option<f64> = row.get(2)?;
    let value = value.unwrap_or(f64::NAN);
    Ok(if kind == 1 {
        let aux: Option<f64> = row.get(3)?;
        Item::Replacement {
            ts_ms,
            old_final: value,
            new_initial: aux.unwrap_or(f64::NAN),
        }
    } else {
        Item::Reading { ts_ms, value }
    })
}

impl SeriesLog for SqlLog<'_, '_> {
    type Error = StoreError;

    fn last_ts(&mut self) -> Result<Option<i64>, StoreError> {
        Ok(self.last_ts)
    }

    fn last_base_before(&mut self, ts: i64) -> Result<Option<Item>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM readings WHERE series = ?1 AND ts_ms < ?2 AND status IN (0,1,2,3,5,7) ORDER BY ts_ms DESC LIMIT 1"
        );
        self.tx
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row(params![self.series, ts], row_item).optional())
            .at(self.path)
    }

    fn last_valid_before(&mut self, ts: i64) -> Result<Option<(Item, Status)>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS}, status FROM readings WHERE series = ?1 AND ts_ms < ?2 AND status != 6 ORDER BY ts_ms DESC LIMIT 1"
        );
        let row = self
            .tx
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_row(params![self.series, ts], |r| {
                    Ok((row_item(r)?, r.get::<_, i64>(4)?))
                })
                .optional()
            })
            .at(self.path)?;
        Ok(row.and_then(|(item, code)| Status::from_code(code).map(|s| (item, s))))
    }

    fn items_after(&mut self, ts: i64, limit: usize) -> Result<Vec<Item>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM readings WHERE series = ?1 AND ts_ms > ?2 ORDER BY ts_ms LIMIT ?3"
        );
        let mut stmt = self.tx.prepare_cached(&sql).at(self.path)?;
        let rows = stmt
            .query_map(params![self.series, ts, limit as i64], row_item)
            .at(self.path)?;
        rows.collect::<Result<Vec<_>, _>>().at(self.path)
    }
}

/// An interval row's change: (bucket, series, micro added, counters before, after).
type RowChange = (i64, i64, i64, [i64; 3], [i64; 3]);

/// Bucket deltas of a transaction, merged, written at commit with their rollups.
#[derive(Default)]
struct Accumulator {
    deltas: FastMap<(i64, i64), BucketDelta>,
    /// Long gaps kept whole, net sign: +1 stored, −1 taken back.
    spans: BTreeMap<(i64, Span), i64>,
    /// Per series touched, its newest item's time before the batch (`None`:
    /// it had none).
    before_batch: FastMap<i64, Option<i64>>,
    anomaly_counts: BTreeMap<AnomalyKind, usize>,
    /// (series, ts, kind, detail, counted) of anomalies written, for the outbox.
    anomaly_rows: Vec<(i64, i64, AnomalyKind, String, bool)>,
    /// Anomalies of earlier batches withdrawn by this one: (series, ts, kind).
    retractions: Vec<(i64, i64, AnomalyKind)>,
    retracted_counts: BTreeMap<AnomalyKind, usize>,
    /// Scratch of `flush`, kept for its capacity.
    sorted: Vec<((i64, i64), BucketDelta)>,
    hours: FastMap<(i64, i64), [i64; 3]>,
    days: FastMap<(i64, chrono::NaiveDate), [i64; 3]>,
    /// Each interval row changed.
    changes: Vec<RowChange>,
}

impl Accumulator {
    /// An anomaly withdrawn by a re-derivation: dropped if this batch raised
    /// it, else retracted downstream.
    fn withdraw(&mut self, series: i64, ts: i64, kind: AnomalyKind) {
        let mine = self
            .anomaly_rows
            .iter()
            .position(|(s, t, k, _, _)| *s == series && *t == ts && *k == kind);
        match mine {
            // Raised by this batch: never sent, no longer counted.
            Some(i) => {
                let (_, _, _, _, counted) = self.anomaly_rows.remove(i);
                if counted && let Some(n) = self.anomaly_counts.get_mut(&kind) {
                    *n = n.saturating_sub(1);
                }
            }
            // Sent by an earlier batch: retracted downstream.
            None => {
                self.retractions.push((series, ts, kind));
                *self.retracted_counts.entry(kind).or_default() += 1;
            }
        }
    }

    fn add(&mut self, series: i64, d: &BucketDelta) {
        self.deltas
            .entry((series, d.bucket_ms))
            .or_insert_with(|| BucketDelta::zero(d.bucket_ms))
            .absorb(d);
    }

    fn flush(
        &mut self,
        tx: &Transaction<'_>,
        path: &Path,
        tz: Tz,
        rollups: &mut Rollups,
        mut emit: Option<&mut Emit>,
        mut stage: Option<(&mut Stage, &FastMap<i64, i64>)>,
    ) -> Result<(), StoreError> {
        // Where a new row of `series` at `key` goes when it goes into a block.
        fn staged<'s>(
            stage: &'s mut Option<(&mut Stage, &FastMap<i64, i64>)>,
            series: i64,
            key: i64,
        ) -> Option<&'s mut Stage> {
            let (st, limits) = stage.as_mut()?;
            limits
                .get(&series)
                .is_some_and(|limit| key < *limit)
                .then_some(&mut **st)
        }
        if let Some(e) = emit.as_deref_mut() {
            for (series, ts, kind, detail, _) in self.anomaly_rows.drain(..) {
                e.anomaly(tx, path, series, ts, kind.as_str(), &detail, 1)?;
            }
            for (series, ts, kind) in self.retractions.drain(..) {
                e.anomaly(
                    tx,
                    path,
                    series,
                    ts,
                    kind.as_str(),
                    "retracted: a later reading re-derived this span",
                    0,
                )?;
            }
        } else {
            self.anomaly_rows.clear();
            self.retractions.clear();
        }
        let mut hours = std::mem::take(&mut self.hours);
        let mut days = std::mem::take(&mut self.days);
        let mut deltas = std::mem::take(&mut self.sorted);
        deltas.extend(self.deltas.drain());
        // The interval rows series by series (neighbouring rows of the
        // table, written one after another), then the rollups bucket by
        // bucket (the aggregator accumulates one bucket at a time).
        deltas.sort_unstable_by_key(|((s, b), _)| (*s, *b));
        let mut changes = std::mem::take(&mut self.changes);
        let mut new_interval = INTERVALS.inserter(tx, path)?;
        for ((series, bucket), d) in deltas.drain(..) {
            if d.is_zero() {
                continue;
            }
            // A bucket past the series' newest item before the batch has no
            // row yet (intervals come only from spreading between items):
            // insert it without reading it first (in-order imports and drains).
            let new_row = self
                .before_batch
                .get(&series)
                .is_some_and(|last| last.is_none_or(|l| bucket > bucket_of(l)));
            let delta = [d.micro, d.measured_ms, d.estimated_ms];
            let (before, after) = if new_row {
                if let Some(st) = staged(&mut stage, series, bucket) {
                    st.intervals
                        .entry(series)
                        .or_default()
                        .push((bucket, delta));
                } else {
                    CounterTable::insert_with(&mut new_interval, path, &[&series, &bucket], delta)?;
                }
                ([0; 3], delta)
            } else {
                INTERVALS.add(tx, path, &[&series, &bucket], delta)?
            };
            changes.push((bucket, series, d.micro, before, after));
        }
        drop(new_interval);
        changes.sort_unstable_by_key(|c| (c.0, c.1));
        for (bucket, series, micro, before, after) in changes.drain(..) {
            let totals = |c: [i64; 3]| BucketTotals {
                micro: c[0],
                measured_ms: c[1],
                estimated_ms: c[2],
            };
            let (old, new) = (totals(before), totals(after));
            rollups.apply(tx, path, series, bucket, &old, &new)?;
            if let Some(e) = emit.as_deref_mut() {
                e.consumption(tx, path, series, bucket, &new)?;
            }
            let count = |t: &BucketTotals, q: Quality| i64::from(!t.is_empty() && t.quality() == q);
            let change = [
                micro,
                count(&new, Quality::Measured) - count(&old, Quality::Measured),
                count(&new, Quality::Estimated) - count(&old, Quality::Estimated),
            ];
            let hour = hour_start(bucket, tz);
            let day = local_date(bucket, tz);
            add3(hours.entry((series, hour)).or_default(), change);
            add3(days.entry((series, day)).or_default(), change);
        }
        // Long gaps kept whole: one row each; their days (and the scopes'
        // days, months and years) like any bucket's, their 15-minute and
        // hourly rows left to the readers.
        // Those taken back first: a span and its replacement may share
        // their start (the row's key).
        let mut spans: Vec<((i64, Span), i64)> = std::mem::take(&mut self.spans)
            .into_iter()
            .filter(|(_, n)| *n != 0)
            .collect();
        spans.sort_by_key(|(_, n)| n.signum());
        for ((series, s), sign) in spans {
            let sign = sign.signum();
            if sign > 0 {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO spans (series, from_ms, to_ms, micro, lo_ms, hi_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut st| {
                    st.execute(params![series, s.from_ms, s.to_ms, s.micro, s.lo_ms, s.hi_ms])
                })
                .at(path)?;
            } else {
                tx.prepare_cached("DELETE FROM spans WHERE series = ?1 AND from_ms = ?2")
                    .and_then(|mut st| st.execute(params![series, s.from_ms]))
                    .at(path)?;
            }
            for (a, b) in rollups.day_blocks(s.lo_ms, s.hi_ms) {
                let micro = s.between(a, b);
                let n = (b - a) / BUCKET_MS;
                let day = local_date(a, tz);
                add3(
                    days.entry((series, day)).or_default(),
                    [sign * micro, 0, sign * n],
                );
                rollups.apply_block(tx, path, series, (a, b), micro, sign)?;
            }
        }
        // An hour or day after the one of the series' newest item before
        // the batch has no row yet: inserted without reading it first.
        let last_bucket = |series: i64| -> Option<Option<i64>> {
            self.before_batch
                .get(&series)
                .map(|last| last.map(bucket_of))
        };
        let mut new_hour = ROLLUP_HOUR.inserter(tx, path)?;
        for ((series, hour), c) in hours.drain() {
            if c == [0; 3] {
                continue;
            }
            match last_bucket(series) {
                Some(last) if last.is_none_or(|b| hour > hour_start(b, tz)) => {
                    if let Some(st) = staged(&mut stage, series, hour) {
                        st.hours.entry(series).or_default().push((hour, c));
                    } else {
                        CounterTable::insert_with(&mut new_hour, path, &[&series, &hour], c)?;
                    }
                }
                _ => {
                    ROLLUP_HOUR.add(tx, path, &[&series, &hour], c)?;
                }
            }
        }
        drop(new_hour);
        let mut new_day = ROLLUP_DAY.inserter(tx, path)?;
        for ((series, day), c) in days.drain() {
            if c == [0; 3] {
                continue;
            }
            let text = day.to_string();
            match last_bucket(series) {
                Some(last) if last.is_none_or(|b| day > local_date(b, tz)) => {
                    CounterTable::insert_with(&mut new_day, path, &[&series, &text], c)?;
                }
                _ => {
                    ROLLUP_DAY.add(tx, path, &[&series, &text], c)?;
                }
            }
        }
        drop(new_day);
        (self.hours, self.days, self.sorted, self.changes) = (hours, days, deltas, changes);
        self.before_batch.clear();
        rollups.write(tx, path, emit)
    }
}

fn add3(a: &mut [i64; 3], b: [i64; 3]) {
    for i in 0..3 {
        a[i] += b[i];
    }
}
