//! The running pipeline of `meterflow run`: Modbus, DL/T 645 / CJ/T 188,
//! MQTT and HTTP push sources hand batches to one writer thread, which
//! commits them to the store and acknowledges after the commit
//! ([`pipeline`]); the InfluxDB sink delivers the outbox ([`sink`]) with the
//! points built in [`points`] (KPIs of every scope through the KPI service,
//! ledger figures, alerts, health; on shard 0 of a sharded site from the
//! merged rollups of [`shardkpi`]); the alert rules are evaluated on a
//! thread of their own ([`alerting`]) and their notifications delivered by
//! [`notify`]; RFID scans arrive over MQTT ([`rfid`]). Historical files go
//! into the same store through [`import`].
//!
//! The read API is not started from here on its own: the binary passes a
//! starter in [`pipeline::RunOptions::api`], so the HTTP crate builds on
//! this one and not the other way round.

/// mimalloc instead of glibc's malloc for every binary that links the
/// runtime (the `meterflow` command, the benches and the tests alike):
/// ingest allocates readings on the tokio threads and frees them on the
/// writer thread, which glibc serialises on its arena locks (ADR 0014).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod alerting;
pub mod backup;
pub mod import;
pub mod notify;
pub mod pipeline;
pub mod points;
pub mod reshard;
pub mod rfid;
pub mod shardkpi;
pub mod sink;
pub mod status;
pub mod supervise;
