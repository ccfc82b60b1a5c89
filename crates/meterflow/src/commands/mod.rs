//! One module per subcommand of `meterflow`, and what they share: loading a
//! site file with its errors printed, and the tokio runtime of the commands
//! that need one.

use std::process::ExitCode;

pub(crate) mod alerts;
pub(crate) mod backup;
pub(crate) mod check;
pub(crate) mod compact;
pub(crate) mod demo;
#[cfg(feature = "export")]
pub(crate) mod export;
pub(crate) mod generate;
pub(crate) mod import;
pub(crate) mod kpi;
pub(crate) mod ledger;
pub(crate) mod probe;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod shard;
pub(crate) mod simulate;
pub(crate) mod status;
pub(crate) mod token;

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Load a site or print its errors; `Err(code)` is the exit code to return.
/// The site of `path` and the time of `--at` (default now), or the exit code
/// after saying what is wrong.
pub(crate) fn site_at(
    path: &std::path::Path,
    at: Option<&str>,
) -> Result<(meterflow_model::Site, i64), ExitCode> {
    let site = load_site(path)?;
    let now = match at.map(|a| meterflow_core::timeparse::parse_time_arg(a, site.tz)) {
        None => meterflow_model::clock::now_ms(),
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            eprintln!("error: --at: {e}");
            return Err(ExitCode::from(crate::EXIT_CONFIG));
        }
    };
    Ok((site, now))
}

pub(crate) fn load_site(path: &std::path::Path) -> Result<meterflow_model::Site, ExitCode> {
    meterflow_model::Site::load(path).map_err(|errors| {
        for e in &errors.0 {
            eprintln!("{e}");
        }
        eprintln!(
            "{} error{} in {}",
            errors.0.len(),
            if errors.0.len() == 1 { "" } else { "s" },
            path.display()
        );
        ExitCode::from(crate::EXIT_CONFIG)
    })
}

/// A site whose store exists, or the exit code after saying so
/// (`what`: what there is nothing to do, e.g. "nothing to back up").
pub(crate) fn site_with_store(
    path: &std::path::Path,
    what: &str,
) -> Result<(meterflow_model::Site, std::path::PathBuf), ExitCode> {
    let site = load_site(path)?;
    let db = site.store_path();
    if !db.exists() {
        eprintln!("error: no store at {} yet: {what}", db.display());
        return Err(ExitCode::FAILURE);
    }
    Ok((site, db))
}
