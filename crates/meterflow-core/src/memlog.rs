//! An in-memory series with its buckets: the reference the store is compared
//! against in tests, and the subject of the normaliser benchmark.

use std::collections::BTreeMap;
use std::convert::Infallible;

use meterflow_model::Quality;

use crate::buckets::BucketDelta;
use crate::counter::{Anomaly, CounterSpec, Item, State, Status};
use crate::engine::{Outcome, SeriesLog, ingest};

/// Totals of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketTotals {
    /// Consumption, micro-units.
    pub micro: i64,
    /// Measured coverage, ms.
    pub measured_ms: i64,
    /// Estimated coverage, ms.
    pub estimated_ms: i64,
}

impl BucketTotals {
    /// Quality of the bucket (`docs/methodology.md` §1).
    pub fn quality(&self) -> Quality {
        if self.measured_ms > 0 {
            Quality::Measured
        } else if self.estimated_ms > 0 {
            Quality::Estimated
        } else {
            Quality::Missing
        }
    }

    /// Add a contribution.
    pub fn add(&mut self, d: &BucketDelta) {
        self.micro += d.micro;
        self.measured_ms += d.measured_ms;
        self.estimated_ms += d.estimated_ms;
    }

    /// No contribution left.
    pub fn is_empty(&self) -> bool {
        self.micro == 0 && self.measured_ms == 0 && self.estimated_ms == 0
    }
}

/// One meter series held in memory.
#[derive(Debug, Clone, Default)]
pub struct MemSeries {
    /// Items by time, with their status.
    pub items: BTreeMap<i64, (Item, Status)>,
    /// Buckets with any contribution.
    pub buckets: BTreeMap<i64, BucketTotals>,
    /// Anomalies by item time.
    pub anomalies: BTreeMap<i64, Vec<Anomaly>>,
    /// State after the last item.
    pub state: State,
}

struct Log<'a>(&'a BTreeMap<i64, (Item, Status)>);

impl SeriesLog for Log<'_> {
    type Error = Infallible;
    fn last_ts(&mut self) -> Result<Option<i64>, Infallible> {
        Ok(self.0.keys().next_back().copied())
    }
    fn last_base_before(&mut self, ts: i64) -> Result<Option<Item>, Infallible> {
        Ok(self
            .0
            .range(..ts)
            .rev()
            .find(|(_, (_, s))| s.sets_base())
            .map(|(_, (i, _))| *i))
    }
    fn last_valid_before(&mut self, ts: i64) -> Result<Option<(Item, Status)>, Infallible> {
        Ok(self
            .0
            .range(..ts)
            .rev()
            .find(|(_, (_, s))| *s != Status::Invalid)
            .map(|(_, v)| *v))
    }
    fn items_after(&mut self, ts: i64, limit: usize) -> Result<Vec<Item>, Infallible> {
        Ok(self
            .0
            .range(ts + 1..)
            .take(limit)
            .map(|(_, (i, _))| *i)
            .collect())
    }
}

impl MemSeries {
    /// Ingest an item; an item at a time already held is ignored (returns `None`).
    pub fn ingest(&mut self, spec: &CounterSpec, item: Item) -> Option<Outcome> {
        let ts = item.ts_ms();
        if self.items.contains_key(&ts) {
            return None;
        }
        let outcome = match ingest(spec, &mut Log(&self.items), &mut self.state, item) {
            Ok(o) => o,
            Err(never) => match never {},
        };
        self.items.insert(ts, (item, outcome.status));
        for (t, s) in &outcome.restatus {
            if let Some(entry) = self.items.get_mut(t) {
                entry.1 = *s;
            }
        }
        if let Some((from, to)) = outcome.replace_anomalies {
            let keys: Vec<i64> = self.anomalies.range(from..=to).map(|(k, _)| *k).collect();
            for k in keys {
                self.anomalies.remove(&k);
            }
        }
        for a in &outcome.anomalies {
            self.anomalies.entry(a.ts_ms).or_default().push(a.clone());
        }
        // The reference holds every bucket: spans are expanded here.
        let expanded = outcome.spans.iter().flat_map(|(s, sign)| {
            s.buckets(s.lo_ms, s.hi_ms)
                .map(move |d| if *sign < 0 { d.negated() } else { d })
        });
        for d in outcome.deltas.iter().copied().chain(expanded) {
            let b = self.buckets.entry(d.bucket_ms).or_default();
            b.add(&d);
            if b.is_empty() {
                self.buckets.remove(&d.bucket_ms);
            }
        }
        Some(outcome)
    }

    /// Total consumption, micro-units.
    pub fn total_micro(&self) -> i64 {
        self.buckets.values().map(|b| b.micro).sum()
    }
}
