//! `meterflow shard move`: re-shard a site's stores.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Move `stores` into `to` new shards in `out`, and say what was checked.
pub(crate) fn move_cmd(
    config: &Path,
    to: u32,
    out: &Path,
    stores: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let site = match super::load_site(config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if to == 0 {
        eprintln!("error: --to: at least 1 shard");
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    }
    for s in stores {
        if !s.exists() {
            eprintln!("error: no store {}", s.display());
            return Ok(ExitCode::from(crate::EXIT_CONFIG));
        }
    }
    let r = meterflow_runtime::reshard::move_shards(&site, stores, to, out)?;
    for (i, (path, n)) in r.stores.iter().zip(&r.readings).enumerate() {
        println!("shard {i}/{to}: {n} readings → {}", path.display());
    }
    if r.ledger_events > 0 {
        println!("ledgers: {} events → shard 0", r.ledger_events);
    }
    if r.unknown > 0 {
        println!(
            "{} readings of meters not in {} left behind",
            r.unknown,
            config.display()
        );
    }
    if r.mismatches.is_empty() {
        println!(
            "checked: {} meter quantities, readings and interval totals equal before and after",
            r.compared
        );
        println!(
            "next: point each shard's [store] path at its new file and start it with --shard i/{to}"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for m in &r.mismatches {
            eprintln!("MISMATCH {m}");
        }
        eprintln!(
            "{} meter quantities differ: keep the old stores and report this",
            r.mismatches.len()
        );
        Ok(ExitCode::FAILURE)
    }
}
