//! The meterflow data model: site configuration (schema, loading, validation
//! with file/line/column errors), the factor registry, and the value types
//! that travel the data path (`Reading`, `Quality`, `AnomalyKind`).
//!
//! No I/O here except reading a configuration file from disk; everything else
//! is plain data.

pub mod calendar;
pub mod clock;
pub mod config;
pub mod factors;
pub mod metering_groups;
pub mod profile;
pub mod reading;
pub mod secret_file;
pub mod shard;
pub mod span;

pub use config::{ConfigError, ConfigErrors, Site};
pub use reading::{
    AnomalyKind, Batch, DeadLetter, Done, EnergyClass, Quality, Reading, TimeSource,
};
