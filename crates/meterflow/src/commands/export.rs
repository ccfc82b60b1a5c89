//! `meterflow export assessment`: the annual assessment written to files,
//! with a spinner on a terminal.

use std::path::Path;

use anyhow::Context;
use meterflow_export::Format;
use meterflow_export::gather::{Request, export};

/// `meterflow export assessment`.
pub(crate) fn run(
    config: &Path,
    req: Request,
    format: Format,
    out: &Path,
) -> anyhow::Result<std::process::ExitCode> {
    let site = match super::load_site(config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if let Some(a) = &req.agency
        && !site.agencies.iter().any(|x| &x.id == a)
    {
        eprintln!("error: no agency `{a}` in {}", config.display());
        return Ok(std::process::ExitCode::from(crate::EXIT_CONFIG));
    }
    // Opening the writer brings the scope rollups up to date first.
    drop(
        meterflow_store::Writer::open(&site)
            .with_context(|| format!("opening {}", site.store_path().display()))?,
    );
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        Some(b)
    } else {
        None
    };
    let progress = |m: &str| {
        if let Some(b) = &bar {
            b.set_message(format!("export {}: {m}", req.year));
        }
    };
    let files = export(&site, &req, format, out, &progress)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for f in files {
        println!("{}", f.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}
