//! Scheduled backups while `run` runs (`[backup]`): every `every_h` hours an
//! online backup of the store into `dir` (`meterflow_store::backup`), the
//! oldest beyond `keep` deleted; the newest good backup's age feeds the
//! `backup_stale` alert and `/metrics`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meterflow_model::Site;
use meterflow_store::backup::{self, Manifest};
use tokio::sync::watch;

/// Backups that failed since the process started.
pub static FAILURES: AtomicU64 = AtomicU64::new(0);

/// The dated file name of a backup of `site` taken at `now_ms`.
pub fn file_name(site: &str, now_ms: i64) -> String {
    let when = chrono::DateTime::from_timestamp_millis(now_ms)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| now_ms.to_string());
    let slug: String = site
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let slug = slug.trim_matches('-');
    let slug = if slug.is_empty() { "site" } else { slug };
    format!("meterflow-{slug}-{when}.db.gz")
}

/// Backups in `dir` with a readable manifest, oldest first.
pub fn list(dir: &Path) -> Vec<(PathBuf, Manifest)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Manifest)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".db.gz"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(backup::manifest_path(&p)).ok()?;
            let m: Manifest = serde_json::from_str(&text).ok()?;
            Some((p, m))
        })
        .collect();
    out.sort_by_key(|(_, m)| m.created_ms);
    out
}

/// Take one backup into the site's `[backup] dir` and delete the oldest
/// beyond `keep`; the new file.
pub fn take(site: &Site, now_ms: i64) -> anyhow::Result<PathBuf> {
    let (Some(cfg), Some(dir)) = (site.backup.as_ref(), site.backup_dir()) else {
        anyhow::bail!("no [backup] section");
    };
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(file_name(&site.site.name, now_ms));
    backup::backup(&site.store_path(), &file, &site.site.name, now_ms)?;
    let all = list(&dir);
    let extra = all.len().saturating_sub(cfg.keep.max(1) as usize);
    for (old, _) in all.into_iter().take(extra) {
        let _ = std::fs::remove_file(backup::manifest_path(&old));
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!("backup retention: cannot delete {}: {e}", old.display());
        }
    }
    Ok(file)
}

/// The backup thread's loop: a backup when the newest is a period old (at
/// start too, when there is none), until `stop`.
pub fn run_schedule(site: &Site, stop: &watch::Receiver<bool>) {
    let (Some(cfg), Some(dir)) = (site.backup.as_ref(), site.backup_dir()) else {
        return;
    };
    let period_ms = i64::from(cfg.every_h.max(1)) * 3_600_000;
    let mut st = stop.clone();
    let mut retry_at = i64::MIN;
    loop {
        let now = meterflow_model::clock::now_ms();
        let newest = list(&dir).last().map(|(_, m)| m.created_ms);
        let due = newest.is_none_or(|t| now - t >= period_ms);
        if due && now >= retry_at {
            match take(site, now) {
                Ok(f) => tracing::info!("backup written to {}", f.display()),
                Err(e) => {
                    FAILURES.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("backup failed: {e:#}");
                    // Try again in 10 minutes, not in a loop.
                    retry_at = now + 600_000;
                }
            }
        }
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < until {
            if *st.borrow_and_update() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
