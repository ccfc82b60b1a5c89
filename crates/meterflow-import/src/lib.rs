//! Streaming readers for historical data files. Each yields, in file order,
//! either an [`ImportRow`] or a [`RowError`] naming the line and the reason;
//! memory use is independent of the file's size.
//!
//! - CSV: `meter_id,timestamp,value[,quantity]`, optional header row;
//!   timestamps RFC 3339 or local time (`2025-01-01 08:15[:00]`) in the site zone.
//! - InfluxDB line protocol: the meter is the `meter` (or `meter_id`) tag; each
//!   numeric field is a quantity named by its key (a field named `value` takes
//!   the `quantity` tag, or the meter's counter quantity).

mod csvfile;
mod lp;

use std::fmt;

pub use csvfile::CsvReader;
pub use lp::{LineProtocolReader, Precision, parse_line};
pub use meterflow_core::timeparse::parse_timestamp;

/// One value read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    /// 1-based line number.
    pub line: u64,
    /// Meter id.
    pub meter: String,
    /// Quantity; `None` = the meter's counter quantity.
    pub quantity: Option<String>,
    /// Time, ms since the epoch.
    pub ts_ms: i64,
    /// Value as written (may be non-finite: the normaliser rejects those with an anomaly).
    pub value: f64,
}

/// Why a line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// The line is not valid CSV / line protocol, or misses a column.
    Malformed,
    /// The timestamp could not be read.
    BadTimestamp,
    /// The value is not a number.
    NonNumericValue,
    /// The meter is not in the site configuration (decided by the caller).
    UnknownMeter,
    /// A quantity name is not ASCII snake_case.
    BadQuantity,
    /// A different value for the same meter and time is already stored (decided by the caller).
    Conflict,
    /// Older than the raw-retention horizon (decided by the caller).
    TooOld,
    /// The time is outside the plausible window (decided by the store).
    ImplausibleTime,
}

impl RejectReason {
    /// Stable text form (dead-letter reason, summary).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::NonNumericValue => "non_numeric_value",
            RejectReason::UnknownMeter => "unknown_meter",
            RejectReason::BadQuantity => "bad_quantity",
            RejectReason::Conflict => "conflicting_duplicate",
            RejectReason::TooOld => "older_than_retention",
            RejectReason::ImplausibleTime => "implausible_time",
        }
    }
}

/// A rejected line.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    /// 1-based line number.
    pub line: u64,
    /// Reason.
    pub reason: RejectReason,
    /// Details (what was found, what was expected).
    pub detail: String,
    /// The line's text (for the dead-letter table).
    pub raw: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: {}: {}",
            self.line,
            self.reason.as_str(),
            self.detail
        )
    }
}

/// Is `s` an ASCII snake_case name?
pub fn is_snake_case(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// File formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV.
    Csv,
    /// InfluxDB line protocol.
    LineProtocol,
}

impl Format {
    /// Guess from the file name, then from the first non-empty, non-comment line.
    pub fn detect(name: &str, first_line: &str) -> Format {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            return Format::Csv;
        }
        if [".lp", ".line", ".influx"]
            .iter()
            .any(|e| lower.ends_with(e))
        {
            return Format::LineProtocol;
        }
        if first_line.contains('=') {
            Format::LineProtocol
        } else {
            Format::Csv
        }
    }
}
