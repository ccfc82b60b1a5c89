//! `meterflow backup` and `meterflow restore`: an online, consistent copy of
//! the store while `run` keeps writing, and its verified restore
//! (`meterflow_store::backup`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use meterflow_store::backup::{self, BackupError};

/// Where a backup goes: `out` itself, or a dated file in `out` when it is a
/// directory.
fn target(out: &Path, site: &str, now_ms: i64) -> PathBuf {
    if out.is_dir() {
        out.join(meterflow_runtime::backup::file_name(site, now_ms))
    } else {
        out.to_path_buf()
    }
}

/// `meterflow backup --config FILE --out PATH`.
pub(crate) fn run_backup(config: &Path, out: &Path, keep: Option<u32>) -> anyhow::Result<ExitCode> {
    let (site, db) = match super::site_with_store(config, "nothing to back up") {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let now = meterflow_model::clock::now_ms();
    let file = target(out, &site.site.name, now);
    let started = std::time::Instant::now();
    match backup::backup(&db, &file, &site.site.name, now) {
        Ok(m) => {
            println!(
                "backup of {} written to {} in {:.1} s: schema {}, {} readings, {} ledger events, {} bytes ({} compressed), SHA-256 {}",
                db.display(),
                file.display(),
                started.elapsed().as_secs_f64(),
                m.schema_version,
                m.tables.get("readings").copied().unwrap_or(0),
                m.tables.get("ledger_events").copied().unwrap_or(0),
                m.db_bytes,
                m.file_bytes,
                m.file_sha256
            );
            println!("manifest: {}", backup::manifest_path(&file).display());
            if let Some(keep) = keep.filter(|_| out.is_dir()) {
                let all = meterflow_runtime::backup::list(out);
                let extra = all.len().saturating_sub(keep.max(1) as usize);
                for (old, _) in all.into_iter().take(extra) {
                    let _ = std::fs::remove_file(backup::manifest_path(&old));
                    match std::fs::remove_file(&old) {
                        Ok(()) => println!("deleted {} (keeping {keep})", old.display()),
                        Err(e) => eprintln!("warning: cannot delete {}: {e}", old.display()),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: backup failed: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `meterflow restore --config FILE [--force] BACKUP`.
pub(crate) fn run_restore(config: &Path, file: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let site = match super::load_site(config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let db = site.store_path();
    match backup::restore(file, &db, force, meterflow_model::clock::now_ms()) {
        Ok(r) => {
            if let Some(aside) = &r.moved_aside {
                println!("the store that was there is kept in {}", aside.display());
            }
            println!(
                "restored {} (site {}, schema {}, taken by meterflow {}) into {}: {} readings, {} ledger events",
                file.display(),
                r.manifest.site,
                r.manifest.schema_version,
                r.manifest.meterflow_version,
                db.display(),
                r.manifest.tables.get("readings").copied().unwrap_or(0),
                r.manifest.tables.get("ledger_events").copied().unwrap_or(0),
            );
            println!(
                "points InfluxDB already had are sent again from the restored outbox; InfluxDB overwrites them with the same values"
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: restore refused: {e}");
            Ok(match e {
                BackupError::NotEmpty { .. } | BackupError::InUse { .. } => {
                    ExitCode::from(crate::EXIT_CONFIG)
                }
                _ => ExitCode::FAILURE,
            })
        }
    }
}
