//! Ingesting one item into a meter's series: the in-order fast path, and the
//! late path that re-derives exactly what in-order arrival would have given.
//!
//! The fold of [`crate::counter::step`] over the time-sorted items defines the
//! result. A late item is folded in from the stored state just before it; the
//! items after it are re-folded in lockstep with their old fold until both
//! states agree again, after which nothing downstream can differ. The old
//! fold's contributions are retracted and the new ones added; all amounts are
//! integers, so the net effect is exact.

use std::collections::BTreeMap;

use crate::buckets::{BucketDelta, Span};
use crate::counter::{Anomaly, CounterSpec, Item, State, Status, step};

/// What the engine needs from a series' stored items (items are unique by time).
pub trait SeriesLog {
    /// Storage error.
    type Error;
    /// Time of the last stored item.
    fn last_ts(&mut self) -> Result<Option<i64>, Self::Error>;
    /// The last item before `ts` whose status sets a baseline ([`Status::sets_base`]).
    fn last_base_before(&mut self, ts: i64) -> Result<Option<Item>, Self::Error>;
    /// The last item before `ts` that is not [`Status::Invalid`], with its status.
    fn last_valid_before(&mut self, ts: i64) -> Result<Option<(Item, Status)>, Self::Error>;
    /// Stored items strictly after `ts`, in time order, at most `limit`.
    fn items_after(&mut self, ts: i64, limit: usize) -> Result<Vec<Item>, Self::Error>;
}

/// The effect of ingesting one item; the caller stores it atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Status of the new item.
    pub status: Status,
    /// Net bucket contributions (merged per bucket, zero entries dropped).
    pub deltas: Vec<BucketDelta>,
    /// Long gaps kept whole: `(span, +1)` to add, `(span, −1)` to take back
    /// (net, cancelling pairs dropped).
    pub spans: Vec<(Span, i64)>,
    /// Later items whose status changed: `(ts, new status)`.
    pub restatus: Vec<(i64, Status)>,
    /// Normaliser anomalies of stored items in `[from, to]` are replaced by `anomalies`
    /// (`None`: nothing to replace, just add).
    pub replace_anomalies: Option<(i64, i64)>,
    /// Anomalies of the new item (and of re-derived items).
    pub anomalies: Vec<Anomaly>,
}

/// State just before `ts`, from stored statuses.
pub fn state_before<L: SeriesLog>(
    spec: &CounterSpec,
    log: &mut L,
    ts: i64,
) -> Result<State, L::Error> {
    let base = log
        .last_base_before(ts)?
        .and_then(|it| spec.point_after(&it));
    let pending = match log.last_valid_before(ts)? {
        Some((it @ Item::Reading { .. }, Status::Spike)) => spec.point_after(&it),
        _ => None,
    };
    Ok(State { base, pending })
}

/// Ingest `item` (whose time the log does not hold yet). `current` is the
/// state after the last stored item; it is updated.
pub fn ingest<L: SeriesLog>(
    spec: &CounterSpec,
    log: &mut L,
    current: &mut State,
    item: Item,
) -> Result<Outcome, L::Error> {
    let ts = item.ts_ms();
    let in_order = log.last_ts()?.is_none_or(|last| ts > last);
    if in_order {
        let s = step(spec, current, &item);
        return Ok(Outcome {
            status: s.status,
            deltas: s.deltas,
            spans: s.spans.into_iter().map(|x| (x, 1)).collect(),
            restatus: Vec::new(),
            replace_anomalies: None,
            anomalies: s.anomalies,
        });
    }

    let mut old = state_before(spec, log, ts)?;
    let mut new = old;
    let first = step(spec, &mut new, &item);
    let status = first.status;
    let mut deltas = first.deltas;
    let mut spans: Vec<(Span, i64)> = first.spans.into_iter().map(|x| (x, 1)).collect();
    let mut anomalies = first.anomalies;
    let mut restatus = Vec::new();
    let mut replaced_to = ts;
    let mut cursor = ts;
    let mut converged = old == new;
    while !converged {
        let chunk = log.items_after(cursor, 256)?;
        if chunk.is_empty() {
            break;
        }
        for y in &chunk {
            let so = step(spec, &mut old, y);
            let sn = step(spec, &mut new, y);
            deltas.extend(so.deltas.into_iter().map(BucketDelta::negated));
            deltas.extend(sn.deltas);
            spans.extend(so.spans.into_iter().map(|x| (x, -1)));
            spans.extend(sn.spans.into_iter().map(|x| (x, 1)));
            anomalies.extend(sn.anomalies);
            if so.status != sn.status {
                restatus.push((y.ts_ms(), sn.status));
            }
            replaced_to = y.ts_ms();
            cursor = y.ts_ms();
            if old == new {
                converged = true;
                break;
            }
        }
    }
    if !converged {
        // The late item changed the state at the end of the series.
        *current = new;
    }
    Ok(Outcome {
        status,
        deltas: merge(deltas),
        spans: merge_spans(spans),
        restatus,
        replace_anomalies: Some((ts, replaced_to)),
        anomalies,
    })
}

/// Net signs per span; drop the ones that cancel out.
pub fn merge_spans(spans: Vec<(Span, i64)>) -> Vec<(Span, i64)> {
    let mut net: BTreeMap<Span, i64> = BTreeMap::new();
    for (s, sign) in spans {
        *net.entry(s).or_default() += sign;
    }
    net.into_iter().filter(|(_, n)| *n != 0).collect()
}

/// Sum contributions per bucket; drop the ones that cancel out.
pub fn merge(deltas: Vec<BucketDelta>) -> Vec<BucketDelta> {
    let mut by_bucket: BTreeMap<i64, BucketDelta> = BTreeMap::new();
    for d in deltas {
        by_bucket
            .entry(d.bucket_ms)
            .or_insert_with(|| BucketDelta::zero(d.bucket_ms))
            .absorb(&d);
    }
    by_bucket.into_values().filter(|d| !d.is_zero()).collect()
}
