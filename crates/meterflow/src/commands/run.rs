//! `meterflow run`: the pipeline with the site's sources, the sink, alerting
//! and the read API, until SIGINT/SIGTERM (or `--seconds`).

use std::path::Path;
use std::process::ExitCode;

use super::{load_site, runtime};

/// Run the site of `config` (one shard of it with `--shard i/N`).
pub(crate) fn run(
    config: &Path,
    live: bool,
    seconds: Option<u64>,
    shard: Option<&str>,
) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut site = match load_site(config) {
            Ok(s) => s,
            Err(code) => return Ok(code),
        };
        if let Some(s) = shard {
            match s.parse() {
                Ok(s) => site.shard = s,
                Err(e) => {
                    eprintln!("error: --shard {e}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        let opts = meterflow_runtime::pipeline::RunOptions {
            live,
            duration: seconds.map(std::time::Duration::from_secs),
            stop: None,
            committed: None,
            api: Some(meterflow_http::starter()),
            // On a terminal, a status line every 10 s; a journal or a log
            // file gets the plain log only.
            status_every: (!live && std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .then_some(std::time::Duration::from_secs(10)),
        };
        let s = meterflow_runtime::pipeline::run(site, opts).await?;
        eprintln!(
            "stopped: {} readings stored, {} refused",
            s.stored, s.refused
        );
        Ok(ExitCode::SUCCESS)
    })
}
