//! Scope rollups (zone, building, agency, site × class × sub-item × grain)
//! kept by the writer in the same transaction as the intervals they come from.
//!
//! The hierarchy (meters, zones, spaces, shares) comes from the site file. Its
//! fingerprint is stored; when the site file's hierarchy changes (an agency
//! moved, a meter was re-parented), the rollups are rebuilt from the stored
//! intervals on open, so they always equal what the current configuration
//! would have produced in order.

use std::collections::HashMap;
use std::path::Path;

use meterflow_core::aggregate::{Aggregator, Grain, RollupDelta};
use meterflow_core::memlog::BucketTotals;
use meterflow_model::Site;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::cold::{self, Tbl};
use crate::counters::{AGG, CounterTable};
use crate::error::{Ctx, StoreError};
use crate::outbox::Emit;

/// The writer's rollup state.
pub(crate) struct Rollups {
    agg: Aggregator,
    /// Aggregator scope index → `agg_scope.id`.
    scope_ids: Vec<Option<i64>>,
    /// Counter series id → meter index (`None`: a gauge or unknown series).
    series_meter: HashMap<i64, Option<u32>>,
    counter_quantity: HashMap<String, (u32, String)>,
    tz: chrono_tz::Tz,
    /// Local months (starts) whose scope 15-minute and hourly rows are compacted.
    cold_months: std::collections::BTreeSet<i64>,
    /// Per (scope id, grain): no row of it starts later than this (read
    /// once, then kept): a change after it is a new row, inserted without
    /// reading it first (what in-order imports and drains mostly write).
    newest: HashMap<(i64, Grain), Option<i64>>,
}

/// FNV-1a of the hierarchy-relevant parts of a site file.
fn fingerprint(site: &Site) -> String {
    let mut text = format!("tz={}\n", site.tz);
    for m in &site.meters {
        text.push_str(&format!(
            "m {} {:?} {} {:?} {:?} {:?} {:?} {:?} {}\n",
            m.id,
            m.kind,
            m.unit,
            m.parent,
            m.subitem,
            m.serves,
            m.effective_allocation(),
            m.shares,
            m.counter_quantity()
        ));
    }
    for z in &site.zones {
        text.push_str(&format!("z {} {}\n", z.id, z.building));
    }
    for s in &site.spaces {
        text.push_str(&format!(
            "s {} {:?} {:?} {} {:?} {}\n",
            s.agency, s.zone, s.building, s.from, s.to, s.area_m2
        ));
    }
    for a in &site.agencies {
        text.push_str(&format!("a {}\n", a.id));
    }
    format!("{:016x}", meterflow_model::shard::stable_hash(&text))
}

impl Rollups {
    /// Build the hierarchy; rebuild the stored rollups if it changed since they were written.
    pub(crate) fn open(
        conn: &mut Connection,
        path: &Path,
        site: &Site,
        emit: Option<&mut Emit>,
    ) -> Result<Rollups, StoreError> {
        let agg = Aggregator::new(site);
        let counter_quantity = site
            .meters
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), (i as u32, m.counter_quantity().to_string())))
            .collect();
        let mut r = Rollups {
            scope_ids: vec![None; agg.scopes().len()],
            agg,
            series_meter: HashMap::new(),
            counter_quantity,
            tz: site.tz,
            cold_months: Default::default(),
            newest: HashMap::new(),
        };
        r.load_cold_months(conn, path)?;
        let want = fingerprint(site);
        let have: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'agg_fingerprint'",
                [],
                |row| row.get(0),
            )
            .optional()
            .at(path)?;
        if have.as_deref() != Some(want.as_str()) {
            let tx = conn.transaction().at(path)?;
            r.rebuild(&tx, path, emit)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('agg_fingerprint', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![want],
            )
            .at(path)?;
            tx.commit().at(path)?;
        }
        Ok(r)
    }

    /// Read which months of the scope rollups are compacted.
    pub(crate) fn load_cold_months(
        &mut self,
        conn: &Connection,
        path: &Path,
    ) -> Result<(), StoreError> {
        self.cold_months = conn
            .prepare("SELECT DISTINCT month_ms FROM cold WHERE tbl IN (3, 4)")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .at(path)?;
        self.newest.clear();
        Ok(())
    }

    /// Recompute every rollup from the stored intervals.
    fn rebuild(
        &mut self,
        tx: &Transaction<'_>,
        path: &Path,
        mut emit: Option<&mut Emit>,
    ) -> Result<(), StoreError> {
        // Compacted months back into rows first (the next compaction
        // closes them again): the scopes' are rebuilt, the series' read.
        let blocks: Vec<(i64, i64, i64)> = tx
            .prepare("SELECT tbl, key, month_ms FROM cold ORDER BY tbl, key, month_ms")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .at(path)?;
        for (tbl, key, month) in blocks {
            match tbl {
                0 => cold::thaw(tx, path, Tbl::Readings, key, month)?,
                1 => cold::thaw(tx, path, Tbl::Intervals, key, month)?,
                2 => cold::thaw(tx, path, Tbl::Hours, key, month)?,
                _ => 0,
            };
        }
        tx.execute("DELETE FROM cold WHERE tbl IN (3, 4)", [])
            .at(path)?;
        self.cold_months.clear();
        tx.execute("DELETE FROM agg", []).at(path)?;
        self.newest.clear();
        let mut stmt = tx
            .prepare("SELECT series, bucket_ms, micro, measured_ms, estimated_ms FROM intervals ORDER BY bucket_ms, series")
            .at(path)?;
        let mut rows = stmt.query([]).at(path)?;
        let mut n = 0usize;
        while let Some(row) = rows.next().at(path)? {
            let series: i64 = row.get(0).at(path)?;
            let bucket: i64 = row.get(1).at(path)?;
            let new = BucketTotals {
                micro: row.get(2).at(path)?,
                measured_ms: row.get(3).at(path)?,
                estimated_ms: row.get(4).at(path)?,
            };
            self.apply(tx, path, series, bucket, &BucketTotals::default(), &new)?;
            n += 1;
            if n.is_multiple_of(200_000) {
                self.write(tx, path, emit.as_deref_mut())?;
            }
        }
        drop(rows);
        drop(stmt);
        // Long gaps kept whole: their scope parts anew.
        tx.execute("DELETE FROM agg_span", []).at(path)?;
        let spans: Vec<(i64, meterflow_core::buckets::Span)> = tx
            .prepare("SELECT series, from_ms, to_ms, micro, lo_ms, hi_ms FROM spans ORDER BY series, from_ms")
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        meterflow_core::buckets::Span {
                            from_ms: r.get(1)?,
                            to_ms: r.get(2)?,
                            micro: r.get(3)?,
                            lo_ms: r.get(4)?,
                            hi_ms: r.get(5)?,
                        },
                    ))
                })?
                .collect()
            })
            .at(path)?;
        for (series, s) in spans {
            for block in self.day_blocks(s.lo_ms, s.hi_ms) {
                let micro = s.between(block.0, block.1);
                self.apply_block(tx, path, series, block, micro, 1)?;
            }
            if self.agg.pending() > 200_000 {
                self.write(tx, path, emit.as_deref_mut())?;
            }
        }
        self.write(tx, path, emit.as_deref_mut())?;
        if let Some(e) = emit {
            // Rebuilt rollups overwrite their InfluxDB points.
            e.flush(tx, path, 0)?;
        }
        Ok(())
    }

    /// Feed one bucket change of a series.
    pub(crate) fn apply(
        &mut self,
        tx: &Transaction<'_>,
        path: &Path,
        series: i64,
        bucket_ms: i64,
        old: &BucketTotals,
        new: &BucketTotals,
    ) -> Result<(), StoreError> {
        if let Some(m) = self.meter_of(tx, path, series)? {
            self.agg.apply(m, bucket_ms, old, new);
        }
        Ok(())
    }

    /// `[lo, hi)` cut at local midnights.
    pub(crate) fn day_blocks(&mut self, lo_ms: i64, hi_ms: i64) -> Vec<(i64, i64)> {
        self.agg.day_blocks(lo_ms, hi_ms)
    }

    /// Feed one day's block of a long gap kept whole (`sign` −1 takes it
    /// back): its days, months and years go with the pending changes, its
    /// part of each scope to `agg_span`.
    pub(crate) fn apply_block(
        &mut self,
        tx: &Transaction<'_>,
        path: &Path,
        series: i64,
        (lo, hi): (i64, i64),
        micro: i64,
        sign: i64,
    ) -> Result<(), StoreError> {
        let Some(m) = self.meter_of(tx, path, series)? else {
            return Ok(());
        };
        for (s, value, estimated) in self.agg.apply_block(m, lo, hi, micro, sign) {
            let scope = self.scope_id(tx, path, s)?;
            tx.prepare_cached(
                "INSERT INTO agg_span (scope, series, lo_ms, hi_ms, value, estimated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (scope, series, lo_ms) DO UPDATE SET value = value + excluded.value, estimated = estimated + excluded.estimated",
            )
            .and_then(|mut st| st.execute(params![scope, series, lo, hi, value, estimated]))
            .at(path)?;
            tx.prepare_cached(
                "DELETE FROM agg_span WHERE scope = ?1 AND series = ?2 AND lo_ms = ?3 AND value = 0 AND estimated = 0",
            )
            .and_then(|mut st| st.execute(params![scope, series, lo]))
            .at(path)?;
        }
        Ok(())
    }

    /// The meter index of a counter series (`None`: a gauge or unknown series).
    fn meter_of(
        &mut self,
        tx: &Transaction<'_>,
        path: &Path,
        series: i64,
    ) -> Result<Option<u32>, StoreError> {
        let meter = match self.series_meter.get(&series) {
            Some(m) => *m,
            None => {
                let row: Option<(String, String)> = tx
                    .prepare_cached("SELECT meter, quantity FROM series WHERE id = ?1")
                    .and_then(|mut s| {
                        s.query_row(params![series], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .at(path)?;
                let m = row.and_then(|(meter, quantity)| {
                    self.counter_quantity
                        .get(&meter)
                        .filter(|(_, q)| *q == quantity)
                        .map(|(i, _)| *i)
                });
                self.series_meter.insert(series, m);
                m
            }
        };
        Ok(meter)
    }

    /// Write the pending changes.
    pub(crate) fn write(
        &mut self,
        tx: &Transaction<'_>,
        path: &Path,
        mut emit: Option<&mut Emit>,
    ) -> Result<(), StoreError> {
        let deltas = self.agg.drain();
        if !self.cold_months.is_empty() {
            // A late change into a compacted month: that month's scope rows back first.
            let mut months: Vec<i64> = deltas
                .iter()
                .filter(|d| matches!(d.grain, Grain::Quarter | Grain::Hour))
                .map(|d| cold::month_start(d.start_ms, self.tz))
                .filter(|m| self.cold_months.contains(m))
                .collect();
            months.sort_unstable();
            months.dedup();
            for m in months {
                self.thaw_month(tx, path, m)?;
            }
        }
        let mut new_row = AGG.inserter(tx, path)?;
        for d in deltas {
            let scope = self.scope_id(tx, path, d.scope)?;
            let newest = match self.newest.get(&(scope, d.grain)) {
                Some(n) => *n,
                None => {
                    let n: Option<i64> = tx
                        .prepare_cached(
                            "SELECT max(start_ms) FROM agg WHERE scope = ?1 AND grain = ?2",
                        )
                        .and_then(|mut s| {
                            s.query_row(params![scope, d.grain.as_str()], |r| r.get(0))
                        })
                        .at(path)?;
                    self.newest.insert((scope, d.grain), n);
                    n
                }
            };
            let (value, measured, estimated) = if newest.is_none_or(|n| d.start_ms > n) {
                let v = [d.value, d.measured, d.estimated];
                if v != [0; 3] {
                    CounterTable::insert_with(
                        &mut new_row,
                        path,
                        &[
                            &scope as &dyn rusqlite::ToSql,
                            &d.grain.as_str(),
                            &d.start_ms,
                        ],
                        v,
                    )?;
                    self.newest.insert((scope, d.grain), Some(d.start_ms));
                }
                (d.value, d.measured, d.estimated)
            } else {
                upsert(tx, path, scope, &d)?
            };
            if let (Some(e), Some(key)) = (emit.as_deref_mut(), self.agg.scope(d.scope)) {
                e.rollup(
                    key,
                    d.grain.as_str(),
                    d.start_ms,
                    value,
                    measured,
                    estimated,
                );
            }
        }
        Ok(())
    }

    /// Move every scope's 15-minute and hourly rows of a local month back into rows.
    pub(crate) fn thaw_month(
        &mut self,
        tx: &Transaction<'_>,
        path: &Path,
        month: i64,
    ) -> Result<(), StoreError> {
        let keys: Vec<(i64, i64)> = tx
            .prepare_cached("SELECT tbl, key FROM cold WHERE tbl IN (3, 4) AND month_ms = ?1")
            .and_then(|mut s| {
                s.query_map(params![month], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .at(path)?;
        for (tbl, key) in keys {
            let tbl = if tbl == 3 {
                Tbl::AggQuarter
            } else {
                Tbl::AggHour
            };
            cold::thaw(tx, path, tbl, key, month)?;
        }
        self.cold_months.remove(&month);
        // Rows are back: where each scope's newest row is, is read anew.
        self.newest.clear();
        Ok(())
    }

    fn scope_id(&mut self, tx: &Transaction<'_>, path: &Path, i: u32) -> Result<i64, StoreError> {
        if let Some(Some(id)) = self.scope_ids.get(i as usize) {
            return Ok(*id);
        }
        let Some(key) = self.agg.scope(i) else {
            return Err(StoreError::Sqlite {
                path: path.to_path_buf(),
                source: rusqlite::Error::QueryReturnedNoRows,
            });
        };
        let (level, class) = (key.level.as_str(), key.class.as_str());
        tx.prepare_cached(
            "INSERT OR IGNORE INTO agg_scope (level, ref, class, subitem) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![level, key.id, class, key.subitem]))
        .at(path)?;
        let id: i64 = tx
            .prepare_cached(
                "SELECT id FROM agg_scope WHERE level = ?1 AND ref = ?2 AND class = ?3 AND subitem = ?4",
            )
            .and_then(|mut s| s.query_row(params![level, key.id, class, key.subitem], |r| r.get(0)))
            .at(path)?;
        if let Some(slot) = self.scope_ids.get_mut(i as usize) {
            *slot = Some(id);
        }
        Ok(id)
    }
}

fn upsert(
    tx: &Transaction<'_>,
    path: &Path,
    scope: i64,
    d: &RollupDelta,
) -> Result<(i64, i64, i64), StoreError> {
    let (_, [value, measured, estimated]) = AGG.add(
        tx,
        path,
        &[&scope, &d.grain.as_str(), &d.start_ms],
        [d.value, d.measured, d.estimated],
    )?;
    Ok((value, measured, estimated))
}
