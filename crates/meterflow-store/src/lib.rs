//! The embedded store: SQLite in WAL mode, the system of record.
//!
//! One [`Writer`] owns the write connection and the normaliser's per-series
//! state; it commits readings, their statuses, anomalies, 15-minute intervals
//! and hourly/daily rollups in one transaction per batch. [`Reader`]s are
//! read-only connections that may run concurrently.
//!
//! Architecture invariants:
//! - A reading is reported stored only after its transaction committed.
//! - Intervals and rollups are a function of the stored readings: restarting,
//!   re-importing or receiving readings late gives the same rows.
//! - The store knows nothing about where readings come from (Modbus, MQTT, files).

mod agg;
mod alerts;
pub mod backup;
mod cold;
mod conn;
mod counters;
mod error;
mod ledger;
mod outbox;
mod read;
mod rows;
mod schema;
mod stage;
mod write;

pub use alerts::{AlertDb, AlertEvent, AlertStateRow, Firing, PendingNotification, Transition};
pub use error::StoreError;
pub use ledger::{ImportRefused, LedgerDb, LedgerEvent, NewLedgerEvent};
pub use outbox::{Outbox, OutboxRow, OutboxStats};
pub use read::{
    AggRow, AnomalyRow, DayRow, HourRow, IntervalRow, RawReading, Reader, ReadingRow,
    RollupFileRow, write_rollup_file,
};
pub use write::{BatchReport, CompactReport, Verdict, Writer, replacement_item};

/// Clock skew tolerance: a source time more than this ahead of receive time is flagged.
pub const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

#[cfg(test)]
mod tests;
