//! Connections to the store file, with its pragmas: every reader, writer,
//! outbox, ledger and alert handle opens through here.

use std::path::Path;

use rusqlite::Connection;

use crate::error::{Ctx, StoreError};

/// Open a connection with the store's pragmas.
pub(crate) fn open_conn(
    path: &Path,
    cache_mib: u32,
    read_only: bool,
) -> Result<Connection, StoreError> {
    use rusqlite::OpenFlags;
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).at(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .at(path)?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL").at(path)?;
        // FULL: a committed batch survives power loss too; commits are batched, so it is cheap.
        conn.pragma_update(None, "synchronous", "FULL").at(path)?;
    }
    conn.pragma_update(None, "cache_size", -(i64::from(cache_mib) * 1024))
        .at(path)?;
    conn.pragma_update(None, "temp_store", "MEMORY").at(path)?;
    // The writer cycles through ~30 statements per batch; rusqlite's default
    // cache of 16 would re-prepare some of them on every batch.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}
