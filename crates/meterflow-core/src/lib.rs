//! The pure core of meterflow: counter normalisation (`docs/methodology.md` §1),
//! 15-minute interval attribution, local-time rollup keys and KPI maths.
//!
//! No tokio, no sockets, no files: everything here is a function of its
//! inputs, so it is tested exhaustively (unit tables and property tests).
//!
//! Architecture invariant: consumption is carried as integer micro-units
//! (10⁻⁶ of the meter's unit) from the counter to the bucket, so sums are exact
//! and a late reading re-derives buckets to exactly the in-order result.

pub mod aggregate;
pub mod alerts;
pub mod backoff;
pub mod buckets;
pub mod counter;
pub mod denominators;
pub mod engine;
pub mod grade;
pub mod kpi;
pub mod limiter;
pub mod lineproto;
pub mod memlog;
pub mod quota;
pub mod time;
pub mod timeparse;

pub use counter::{Anomaly, CounterSpec, Item, Point, State, Status, Step};
pub use engine::{Outcome, SeriesLog, ingest};

/// Micro-units per unit: consumption and registers are `i64` micro-units.
pub const MICRO: f64 = 1_000_000.0;

/// Micro-units to a float in the meter's unit.
pub fn from_micro(micro: i64) -> f64 {
    micro as f64 / MICRO
}

#[cfg(test)]
mod aggregate_tests;
#[cfg(test)]
mod counter_tests;
#[cfg(test)]
mod denominators_tests;
#[cfg(test)]
mod engine_props;
