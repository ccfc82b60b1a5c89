//! Command-line interface.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands;

/// meterflow: the metering pipeline for public institutions.
#[derive(Debug, Parser)]
#[command(name = "meterflow", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a site configuration: a summary if valid, every error (file:line:column: key: message) if not (exit 2).
    Check {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Import historical readings (CSV or InfluxDB line protocol) into the embedded store.
    Import {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Force the file format (default: by extension, then by content).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Timestamp precision of line-protocol files.
        #[arg(long, default_value = "ns")]
        precision: String,
        /// Data files.
        #[arg(required = true)]
        data: Vec<PathBuf>,
    },
    /// Per-agency KPIs for a year or month: consumption by carrier, kgce, CO₂, per capita and per m², grades.
    Kpi {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Calendar year.
        #[arg(long)]
        year: i32,
        /// Month (1-12); absent = the whole year.
        #[arg(long)]
        month: Option<u32>,
        /// One agency (default: all).
        #[arg(long)]
        agency: Option<String>,
    },
    /// Online, consistent backup of the store while `run` keeps writing: gzip plus a manifest (schema, row counts, SHA-256).
    Backup {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Backup file, or a directory for a dated file in it.
        #[arg(long)]
        out: PathBuf,
        /// With a directory: keep only the newest N backups in it.
        #[arg(long)]
        keep: Option<u32>,
    },
    /// Keep closed months compactly: each series' local months that ended more than N days before its newest reading move into compressed blocks (queries read the same). `run` does this once a day.
    Compact {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Days after its newest reading a series' month must have ended (default: `[store] compact_after_days`, 35).
        #[arg(long)]
        after_days: Option<u32>,
        /// Then give the freed space back to the file system (rewrites the store; stop `run` first).
        #[arg(long)]
        vacuum: bool,
    },
    /// Restore a backup as the site's store: verifies its checksums and schema; refuses a store in use or not empty (exit 2).
    Restore {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Move a store that holds data aside (`<store>.before-restore-<ms>`) instead of refusing.
        #[arg(long)]
        force: bool,
        /// The backup file (its `.manifest.json` beside it).
        backup: PathBuf,
    },
    /// The ledgers' events out and in as JSON lines (ids kept; importing twice changes nothing).
    Ledger {
        #[command(subcommand)]
        what: LedgerWhat,
    },
    /// Shards: `shard move` re-shards a site's stores (ADR 0013).
    Shard {
        #[command(subcommand)]
        what: ShardWhat,
    },
    /// Exports: `export assessment` writes the annual energy assessment.
    #[cfg(feature = "export")]
    Export {
        #[command(subcommand)]
        what: ExportWhat,
    },
    /// Evaluate the alert rules once, deliver due notifications, and list firing alerts and history.
    Alerts {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Evaluate as of this time (RFC 3339 or local `YYYY-MM-DD HH:MM`; default: now): a dry run unless --record.
        #[arg(long)]
        at: Option<String>,
        /// With --at: keep what the evaluation finds in the alert history.
        #[arg(long)]
        record: bool,
        /// Acknowledge a firing alert, given as RULE:TARGET.
        #[arg(long)]
        ack: Option<String>,
        /// History entries to print.
        #[arg(long, default_value_t = 20)]
        history: usize,
    },
    /// Print a meter's consumption with quality per bucket.
    Report {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Meter id.
        #[arg(long)]
        meter: String,
        /// Start (local date or time, inclusive).
        #[arg(long)]
        from: String,
        /// End (local date or time, exclusive).
        #[arg(long)]
        to: String,
        /// Row size.
        #[arg(long, value_enum, default_value = "day")]
        by: commands::report::By,
    },
    /// Poll the site's meters (Modbus TCP/RTU) into the store until SIGINT/SIGTERM, then drain and stop.
    Run {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Print every committed counter reading.
        #[arg(long)]
        live: bool,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<u64>,
        /// Run as shard i of N (overrides `[site] shard`): poll and store only
        /// this shard's metering groups (ADR 0013). `i` may be a StatefulSet pod
        /// name such as `meterflow-2`.
        #[arg(long, value_name = "i/N")]
        shard: Option<String>,
    },
    /// Start the simulator with a bundled example site and the pipeline against it over loopback Modbus TCP.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Serve a bus's meters from the simulator: Modbus TCP, or RTU on a serial device or pty.
    Simulate {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// TCP address to listen on (default 127.0.0.1:5020).
        #[arg(long)]
        listen: Option<String>,
        /// Serve Modbus RTU on this serial device or pty instead of TCP.
        #[arg(long)]
        rtu: Option<PathBuf>,
        /// Line speed for --rtu, Bd.
        #[arg(long, default_value_t = 9600)]
        baud: u32,
        /// Emulate the line speed on a pty (a byte costs 11 bits of time).
        #[arg(long)]
        emulate_line: bool,
        /// Bus whose meters to serve (default: the first).
        #[arg(long)]
        bus: Option<String>,
        /// Inject a fault: UNIT=KIND[@SECONDS], KIND = silent | late:MS | exception:CODE | sentinel | reset | rollover | none.
        #[arg(long)]
        fault: Vec<String>,
        /// A night-time leak on a water meter: METER=M3_PER_H.
        #[arg(long)]
        leak: Vec<String>,
    },
    /// Read every register of a profile once and show decoded values next to plausibility checks (commissioning).
    Probe {
        /// tcp://host:port, rtu-over-tcp://host:port or rtu:///dev/ttyUSB0?baud=9600&parity=even
        #[arg(long)]
        endpoint: String,
        /// Modbus unit (slave) id.
        #[arg(long)]
        unit: Option<u8>,
        /// Modbus profile name (shipped, or from --config).
        #[arg(long)]
        profile: Option<String>,
        /// A DL/T 645 meter instead: its 12-digit address, or `discover` (one meter on the line).
        #[arg(long)]
        dlt645: Option<String>,
        /// A CJ/T 188 meter instead: its 14 hex digits in wire order (the nameplate's number reversed byte by byte).
        #[arg(long)]
        cjt188: Option<String>,
        /// CJ/T 188 meter type: cold_water, hot_water, heat, cooling, gas.
        #[arg(long, default_value = "cold_water")]
        meter_type: String,
        /// CJ/T 188 layout: standard, collector, or a [[cjt188_layout]] of --config.
        #[arg(long, default_value = "standard")]
        layout: String,
        /// CJ/T 188 DI byte order to try first: 901F or 1F90 (the other is tried after an error).
        #[arg(long)]
        di_order: Option<String>,
        /// Site file whose [[profile]]s to use as well.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Response timeout, ms.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// Every meter's last reading, its age and state (ok, silent, parked), the outbox and the alerts: from the store, and from the running process when [api] is set.
    Status {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
        /// As of this time (RFC 3339 or local `YYYY-MM-DD HH:MM`; default: now).
        #[arg(long)]
        at: Option<String>,
    },
    /// Exit 0 when the running process says it is ready (GET /readyz on [api]): a health check for containers.
    Ready {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Make an API token for a role (admin, manager, clerk:LEDGER, agency:ID): prints the token once and the line for [api] tokens_file.
    Token {
        /// Role.
        #[arg(long)]
        role: String,
    },
    /// Write simulated readings of a site's meters as CSV (example data, test and benchmark fixtures).
    Generate {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// First reading (local date or time).
        #[arg(long)]
        from: String,
        /// Number of days.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Minutes between readings.
        #[arg(long, default_value_t = 15)]
        step_min: u32,
        /// Add a spike, an invalid (negative) value, a counter reset and three malformed lines.
        #[arg(long)]
        faults: bool,
        /// Output CSV file.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Csv,
    Lp,
}

/// Ledger events out and in.
#[derive(Debug, clap::Subcommand)]
enum ShardWhat {
    /// Move the old shards' stores (or one unsharded store) into N new
    /// shards' stores by the site's metering groups, then check that every
    /// meter kept its readings and totals. Stop the old shards first.
    Move {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The new number of shards.
        #[arg(long)]
        to: u32,
        /// Empty folder for the new stores (`<store>-shard-<i>-of-<N>.db`).
        #[arg(long)]
        out: PathBuf,
        /// The old stores.
        #[arg(required = true)]
        stores: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum LedgerWhat {
    /// Every ledger event (corrections and voids included) as JSON lines, in id order.
    Export {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// One ledger only: space, vehicles, waste, assets.
        #[arg(long)]
        ledger: Option<String>,
        /// Output file (`-` = standard output).
        #[arg(long)]
        out: PathBuf,
    },
    /// Add exported events to this site's store with their ids: one already here is skipped; a different one under the same id refuses the whole file (exit 2).
    Import {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The JSON-lines file.
        file: PathBuf,
    },
}

/// What to export.
#[cfg(feature = "export")]
#[derive(Debug, clap::Subcommand)]
enum ExportWhat {
    /// The annual energy assessment per agency, building and site: carriers, kgce/tce, CO₂,
    /// denominators, indicators, YoY, reductions against the plan, quota grades, waste, vehicles,
    /// data quality; a monthly table and the factors, quotas and targets used.
    Assessment {
        /// Site configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Calendar year.
        #[arg(long)]
        year: i32,
        /// One agency only.
        #[arg(long)]
        agency: Option<String>,
        /// xlsx (one workbook), csv or parquet (a directory with one file per table).
        #[arg(long, value_enum, default_value = "xlsx")]
        format: ExportFormat,
        /// national (per-area with vehicle fuel, water over calendar days) or quota-standard.
        #[arg(long, value_enum, default_value = "national")]
        profile: ExportProfile,
        /// Output: the .xlsx file, or the directory for csv/parquet.
        #[arg(long)]
        out: PathBuf,
    },
}

#[cfg(feature = "export")]
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Xlsx,
    Csv,
    Parquet,
}

#[cfg(feature = "export")]
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExportProfile {
    National,
    QuotaStandard,
}

/// A reader that closes the pipe early (`meterflow check … | head -3`) ends
/// the command quietly, with the status a shell gives a process killed by
/// SIGPIPE (141), instead of a panic message: Rust ignores SIGPIPE, so
/// printing to a closed pipe panics in `println!`.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// Parse arguments, run, return the exit code.
pub fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Check { config } => return commands::check::run(&config),
        Command::Import {
            config,
            format,
            precision,
            data,
        } => {
            let format = format.map(|f| match f {
                FormatArg::Csv => meterflow_import::Format::Csv,
                FormatArg::Lp => meterflow_import::Format::LineProtocol,
            });
            commands::import::run(&config, &data, format, &precision)
        }
        #[cfg(feature = "export")]
        Command::Export {
            what:
                ExportWhat::Assessment {
                    config,
                    year,
                    agency,
                    format,
                    profile,
                    out,
                },
        } => commands::export::run(
            &config,
            meterflow_export::gather::Request {
                year,
                agency,
                profile: match profile {
                    ExportProfile::National => meterflow_export::Profile::National,
                    ExportProfile::QuotaStandard => meterflow_export::Profile::QuotaStandard,
                },
            },
            match format {
                ExportFormat::Xlsx => meterflow_export::Format::Xlsx,
                ExportFormat::Csv => meterflow_export::Format::Csv,
                ExportFormat::Parquet => meterflow_export::Format::Parquet,
            },
            &out,
        ),
        Command::Kpi {
            config,
            year,
            month,
            agency,
        } => commands::kpi::run(&config, year, month, agency.as_deref()),
        Command::Shard {
            what:
                ShardWhat::Move {
                    config,
                    to,
                    out,
                    stores,
                },
        } => commands::shard::move_cmd(&config, to, &out, &stores),
        Command::Ledger {
            what:
                LedgerWhat::Export {
                    config,
                    ledger,
                    out,
                },
        } => commands::ledger::export(&config, ledger.as_deref(), &out),
        Command::Ledger {
            what: LedgerWhat::Import { config, file },
        } => commands::ledger::import(&config, &file),
        Command::Backup { config, out, keep } => commands::backup::run_backup(&config, &out, keep),
        Command::Compact {
            config,
            after_days,
            vacuum,
        } => commands::compact::run(&config, after_days, vacuum),
        Command::Restore {
            config,
            force,
            backup,
        } => commands::backup::run_restore(&config, &backup, force),
        Command::Ready { config } => commands::status::ready(&config),
        Command::Status { config, json, at } => commands::status::run(&config, json, at.as_deref()),
        Command::Alerts {
            config,
            at,
            record,
            ack,
            history,
        } => commands::alerts::run(&config, at.as_deref(), ack.as_deref(), history, record),
        Command::Report {
            config,
            meter,
            from,
            to,
            by,
        } => commands::report::run(&config, &meter, &from, &to, by),
        Command::Generate {
            config,
            from,
            days,
            step_min,
            faults,
            out,
        } => commands::generate::run(&config, &from, days, step_min, faults, &out),
        Command::Run {
            config,
            live,
            seconds,
            shard,
        } => commands::run::run(&config, live, seconds, shard.as_deref()),
        Command::Probe {
            endpoint,
            unit,
            profile,
            dlt645,
            cjt188,
            meter_type,
            layout,
            di_order,
            config,
            timeout_ms,
        } => commands::runtime().and_then(|rt| {
            if dlt645.is_some() || cjt188.is_some() {
                let cjt = commands::probe::CjtOptions {
                    meter_type,
                    layout,
                    di_order,
                    config: config.clone(),
                };
                return rt.block_on(commands::probe::probe_serial_cmd(
                    &endpoint,
                    dlt645.as_deref(),
                    cjt188.as_deref(),
                    &cjt,
                    timeout_ms,
                ));
            }
            let (Some(unit), Some(profile)) = (unit, profile) else {
                eprintln!(
                    "error: a Modbus probe needs --unit and --profile (or use --dlt645 / --cjt188)"
                );
                return Ok(ExitCode::from(crate::EXIT_CONFIG));
            };
            rt.block_on(commands::probe::probe_cmd(
                &endpoint,
                unit,
                &profile,
                config.as_deref(),
                timeout_ms,
            ))
        }),
        Command::Token { role } => Ok(commands::token::run(&role)),
        Command::Demo { seconds } => {
            commands::runtime().and_then(|rt| rt.block_on(commands::demo::demo(seconds)))
        }
        Command::Simulate {
            config,
            listen,
            rtu,
            baud,
            emulate_line,
            bus,
            fault,
            leak,
        } => {
            let opts = commands::simulate::SimulateOptions {
                listen,
                rtu,
                baud,
                emulate_line,
                bus,
                faults: fault,
                leaks: leak,
            };
            commands::runtime()
                .and_then(|rt| rt.block_on(commands::simulate::simulate(&config, opts)))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    // rumqttd (the embedded broker) logs every client that goes away as an
    // ERROR; its real failures (a port it cannot bind) reach our own log.
    let filter = tracing_subscriber::EnvFilter::try_from_env("METERFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rumqttd=off"));
    // Colours only on a terminal (and never with NO_COLOR): a journal or a
    // log file gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}
