//! The meterflow application: command-line entry points over the library
//! crates. Each command lives in its own module; `cli::main` dispatches.

/// mimalloc instead of glibc's malloc for every binary that links meterflow
/// (the `meterflow` command, the benches and the tests alike): ingest
/// allocates readings on the runtime's threads and frees them on the writer
/// thread, which glibc serialises on its arena locks (ADR 0014).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod check;
pub mod cli;
pub mod demo;
#[cfg(feature = "export")]
pub mod export;
pub mod generate;
pub mod import;
pub mod kpi;
pub mod probe;
pub mod report;

/// Exit code for an invalid configuration or invalid arguments.
pub const EXIT_CONFIG: u8 = 2;
