//! Store errors.

use std::path::PathBuf;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("SQLite error on {path}: {source}")]
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database directory could not be created.
    #[error("cannot create the directory of {path}: {source}")]
    Io {
        /// Database file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer meterflow.
    #[error(
        "{path} has schema version {found}, newer than this meterflow understands ({supported}); upgrade meterflow"
    )]
    TooNew {
        /// Database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Highest version known.
        supported: i64,
    },
    /// The InfluxDB outbox reached its bound and the policy is `block`.
    #[error(
        "the InfluxDB outbox of {path} is full ({bytes} bytes waiting, bound {limit}): waiting for the sink to drain it (raise [influx] outbox_max_mib, or run `meterflow run` so the sink delivers)"
    )]
    OutboxFull {
        /// Database file.
        path: PathBuf,
        /// Bytes waiting.
        bytes: i64,
        /// Bound.
        limit: i64,
    },
}

pub(crate) trait Ctx<T> {
    fn at(self, path: &std::path::Path) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for Result<T, rusqlite::Error> {
    fn at(self, path: &std::path::Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })
    }
}
