//! The `meterflow` command: the command line (`cli`) and one module per
//! subcommand (`commands`), over the library crates. Nothing imports from
//! here. The global allocator comes with `meterflow-runtime` (ADR 0014).

pub mod cli;
mod commands;

/// Exit code for an invalid configuration or invalid arguments.
pub const EXIT_CONFIG: u8 = 2;
