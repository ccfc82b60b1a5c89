//! Online backup and restore of the store (the system of record).
//!
//! A backup is `VACUUM INTO` a temporary file — one read transaction, so a
//! consistent snapshot while the writer keeps committing (WAL) — checked
//! with `PRAGMA integrity_check`, gzip-compressed next to a JSON manifest
//! (schema version, meterflow version, site, row counts per table, SHA-256
//! of the compressed file and of the database). A restore verifies both
//! checksums and the schema version, refuses a store in use or not empty
//! unless forced (then the old store is moved aside, never deleted), and
//! puts the database in place. The outbox comes back as it was at the
//! backup: points InfluxDB had already taken are sent again, which InfluxDB
//! absorbs (a point with the same measurement, tags and time overwrites
//! itself with the same values).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::schema::VERSION;

/// Why a backup or a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// SQLite failed.
    #[error("SQLite error on {path}: {source}")]
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The backup is damaged or not a backup.
    #[error("{path}: {reason}")]
    Corrupt {
        /// Backup file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The backup was made by a newer meterflow.
    #[error(
        "{path} holds schema version {found}, newer than this meterflow understands ({supported}): restore it with a meterflow at least as new as the one that made it"
    )]
    TooNew {
        /// Backup file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// This build's.
        supported: i64,
    },
    /// The target store holds data.
    #[error(
        "{path} is not empty ({readings} readings, {events} ledger events): restore into an empty store, or pass --force to move it aside first"
    )]
    NotEmpty {
        /// Store file.
        path: PathBuf,
        /// Readings in it.
        readings: i64,
        /// Ledger events in it.
        events: i64,
    },
    /// Another process holds the store.
    #[error("{path} is in use (is `meterflow run` running?): stop it before restoring")]
    InUse {
        /// Store file.
        path: PathBuf,
    },
}

trait At<T> {
    fn at(self, path: &Path) -> Result<T, BackupError>;
}

impl<T> At<T> for Result<T, rusqlite::Error> {
    fn at(self, path: &Path) -> Result<T, BackupError> {
        self.map_err(|source| BackupError::Sqlite {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl<T> At<T> for Result<T, std::io::Error> {
    fn at(self, path: &Path) -> Result<T, BackupError> {
        self.map_err(|source| BackupError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// What a backup holds, written next to it as `<file>.manifest.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Manifest format, 1.
    pub format: u32,
    /// meterflow version that made it.
    pub meterflow_version: String,
    /// Store schema version (`PRAGMA user_version`).
    pub schema_version: i64,
    /// Site name.
    pub site: String,
    /// When it was taken, UTC ms.
    pub created_ms: i64,
    /// Rows per table.
    pub tables: std::collections::BTreeMap<String, i64>,
    /// Size of the database, bytes.
    pub db_bytes: u64,
    /// SHA-256 of the database, hex.
    pub db_sha256: String,
    /// Size of the compressed file, bytes.
    pub file_bytes: u64,
    /// SHA-256 of the compressed file, hex.
    pub file_sha256: String,
}

/// The manifest's path for a backup file.
pub fn manifest_path(backup: &Path) -> PathBuf {
    let mut name = backup.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

fn sha256_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut f = std::fs::File::open(path).at(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).at(path)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Row counts of every table, and the schema version, of a database.
fn describe(path: &Path) -> Result<(i64, std::collections::BTreeMap<String, i64>), BackupError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).at(path)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .at(path)?;
    let names: Vec<String> = {
        let mut s = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .at(path)?;
        let rows = s.query_map([], |r| r.get(0)).at(path)?;
        rows.collect::<Result<_, _>>().at(path)?
    };
    let mut tables = std::collections::BTreeMap::new();
    for n in names {
        let count: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM \"{}\"", n.replace('"', "\"\"")),
                [],
                |r| r.get(0),
            )
            .at(path)?;
        tables.insert(n, count);
    }
    // Rows kept in compacted months count as rows of their tables.
    if tables.contains_key("cold") {
        let mut s = conn
            .prepare("SELECT tbl, sum(rows) FROM cold WHERE tbl IN (0, 1, 2) GROUP BY tbl")
            .at(path)?;
        let rows: Vec<(i64, i64)> = s
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .at(path)?
            .collect::<Result<_, _>>()
            .at(path)?;
        for (tbl, n) in rows {
            let name = ["readings", "intervals", "rollup_hour"][tbl as usize % 3];
            *tables.entry(name.to_string()).or_default() += n;
        }
    }
    Ok((version, tables))
}

fn integrity(path: &Path) -> Result<(), BackupError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).at(path)?;
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .at(path)?;
    if ok == "ok" {
        Ok(())
    } else {
        Err(BackupError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("integrity check: {ok}"),
        })
    }
}

/// A temporary file next to `path` (same file system: renames are atomic).
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{tag}.{}", std::process::id()));
    PathBuf::from(name)
}

/// Take an online, consistent backup of the store `db` into `out` (gzip),
/// with its manifest; returns the manifest.
pub fn backup(db: &Path, out: &Path, site: &str, now_ms: i64) -> Result<Manifest, BackupError> {
    let raw = sibling(out, "db-tmp");
    let _ = std::fs::remove_file(&raw);
    {
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .at(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .at(db)?;
        conn.execute("VACUUM INTO ?1", [raw.to_string_lossy().as_ref()])
            .at(db)?;
    }
    let result = (|| {
        integrity(&raw)?;
        let (schema_version, tables) = describe(&raw)?;
        let (db_sha256, db_bytes) = sha256_file(&raw)?;
        let gz = sibling(out, "gz-tmp");
        {
            let mut input = std::fs::File::open(&raw).at(&raw)?;
            let file = std::fs::File::create(&gz).at(&gz)?;
            let mut enc = flate2::write::GzEncoder::new(
                std::io::BufWriter::new(file),
                flate2::Compression::new(6),
            );
            std::io::copy(&mut input, &mut enc).at(&gz)?;
            let mut w = enc.finish().at(&gz)?;
            w.flush().at(&gz)?;
            w.get_ref().sync_all().at(&gz)?;
        }
        // The backup holds the ledgers and every reading: its owner's only.
        meterflow_model::secret_file::restrict(&gz).at(&gz)?;
        let (file_sha256, file_bytes) = sha256_file(&gz)?;
        let manifest = Manifest {
            format: 1,
            meterflow_version: env!("CARGO_PKG_VERSION").to_string(),
            schema_version,
            site: site.to_string(),
            created_ms: now_ms,
            tables,
            db_bytes,
            db_sha256,
            file_bytes,
            file_sha256,
        };
        std::fs::rename(&gz, out).at(out)?;
        let mpath = manifest_path(out);
        let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
        std::fs::write(&mpath, text + "\n").at(&mpath)?;
        Ok(manifest)
    })();
    let _ = std::fs::remove_file(&raw);
    result
}

/// Read and check a backup's manifest and file; returns the manifest and a
/// verified, decompressed database next to `near` (the caller moves or
/// removes it).
pub fn verify(backup: &Path, near: &Path) -> Result<(Manifest, PathBuf), BackupError> {
    let mpath = manifest_path(backup);
    let text = std::fs::read_to_string(&mpath).at(&mpath)?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| BackupError::Corrupt {
        path: mpath.clone(),
        reason: format!("not a meterflow backup manifest: {e}"),
    })?;
    let (sha, bytes) = sha256_file(backup)?;
    if sha != manifest.file_sha256 || bytes != manifest.file_bytes {
        return Err(BackupError::Corrupt {
            path: backup.to_path_buf(),
            reason: format!(
                "checksum mismatch: the file has {bytes} bytes, SHA-256 {sha}; its manifest says {} bytes, {}",
                manifest.file_bytes, manifest.file_sha256
            ),
        });
    }
    if manifest.schema_version > VERSION {
        return Err(BackupError::TooNew {
            path: backup.to_path_buf(),
            found: manifest.schema_version,
            supported: VERSION,
        });
    }
    let raw = sibling(near, "restore-tmp");
    {
        let input = std::fs::File::open(backup).at(backup)?;
        let mut dec = flate2::read::GzDecoder::new(std::io::BufReader::new(input));
        let mut file = std::fs::File::create(&raw).at(&raw)?;
        std::io::copy(&mut dec, &mut file).map_err(|e| BackupError::Corrupt {
            path: backup.to_path_buf(),
            reason: format!("cannot decompress: {e}"),
        })?;
        file.sync_all().at(&raw)?;
    }
    let check = (|| {
        let (sha, _) = sha256_file(&raw)?;
        if sha != manifest.db_sha256 {
            return Err(BackupError::Corrupt {
                path: backup.to_path_buf(),
                reason: "the decompressed database does not match its checksum".into(),
            });
        }
        let (version, _) = describe(&raw)?;
        if version > VERSION {
            return Err(BackupError::TooNew {
                path: backup.to_path_buf(),
                found: version,
                supported: VERSION,
            });
        }
        integrity(&raw)
    })();
    if let Err(e) = check {
        let _ = std::fs::remove_file(&raw);
        return Err(e);
    }
    Ok((manifest, raw))
}

/// Readings and ledger events in a store (0 when the tables do not exist).
fn contents(path: &Path) -> Result<(i64, i64), BackupError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).at(path)?;
    let count = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap_or(0)
    };
    let cold: i64 = conn
        .query_row(
            "SELECT coalesce(sum(rows), 0) FROM cold WHERE tbl = 0",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    Ok((count("readings") + cold, count("ledger_events")))
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// Where the store that was there was moved, if it was.
    pub moved_aside: Option<PathBuf>,
}

/// Restore `backup` as the store `db`. An existing store must be empty, or
/// `force` moves it aside (`<db>.before-restore-<ms>`); a store another
/// process holds is never touched.
pub fn restore(
    backup: &Path,
    db: &Path,
    force: bool,
    now_ms: i64,
) -> Result<Restored, BackupError> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    let (manifest, raw) = verify(backup, db)?;
    let result = (|| {
        let mut moved_aside = None;
        if db.exists() {
            // In use? An exclusive lock is refused while a writer or reader holds it.
            {
                let conn = Connection::open(db).at(db)?;
                conn.busy_timeout(std::time::Duration::from_millis(0))
                    .at(db)?;
                if conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;").is_err() {
                    return Err(BackupError::InUse {
                        path: db.to_path_buf(),
                    });
                }
            }
            let (readings, events) = contents(db)?;
            if (readings > 0 || events > 0) && !force {
                return Err(BackupError::NotEmpty {
                    path: db.to_path_buf(),
                    readings,
                    events,
                });
            }
            let mut aside = db.as_os_str().to_owned();
            aside.push(format!(".before-restore-{now_ms}"));
            let aside = PathBuf::from(aside);
            std::fs::rename(db, &aside).at(db)?;
            for ext in ["-wal", "-shm"] {
                let mut side = db.as_os_str().to_owned();
                side.push(ext);
                let side = PathBuf::from(side);
                if side.exists() {
                    let mut to = aside.as_os_str().to_owned();
                    to.push(ext);
                    std::fs::rename(&side, PathBuf::from(to)).at(&side)?;
                }
            }
            moved_aside = Some(aside);
        }
        meterflow_model::secret_file::restrict(&raw).at(&raw)?;
        std::fs::rename(&raw, db).at(db)?;
        Ok(Restored {
            manifest: manifest.clone(),
            moved_aside,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&raw);
    }
    result
}
