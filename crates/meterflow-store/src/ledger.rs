//! Ledger events: append-only, timestamped, corrections as new events.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::conn::open_conn;
use crate::error::{Ctx, StoreError};
use crate::schema;

/// A stored ledger event (also one line of `meterflow ledger export`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LedgerEvent {
    /// Id (order of entry).
    pub id: i64,
    /// Ledger: `vehicles`, `space`, `waste`, `assets`.
    pub ledger: String,
    /// Kind within the ledger, e.g. `weigh_in`.
    pub kind: String,
    /// Agency it belongs to (scoping), if any.
    pub agency: Option<String>,
    /// When it happened, ms.
    pub ts_ms: i64,
    /// The event's fields, JSON.
    pub body: String,
    /// The event this one corrects.
    pub corrects: Option<i64>,
    /// This correction voids the corrected event.
    #[serde(default)]
    pub void: bool,
    /// Role of the token that entered it.
    pub author: String,
    /// When it was entered, ms.
    pub created_ms: i64,
}

/// A new event (before it has an id).
#[derive(Debug, Clone, PartialEq)]
pub struct NewLedgerEvent<'a> {
    /// Ledger.
    pub ledger: &'a str,
    /// Kind.
    pub kind: &'a str,
    /// Agency.
    pub agency: Option<&'a str>,
    /// When it happened, ms.
    pub ts_ms: i64,
    /// Fields, JSON.
    pub body: &'a str,
    /// Corrected event.
    pub corrects: Option<i64>,
    /// Voids the corrected event.
    pub void: bool,
    /// Author role.
    pub author: &'a str,
}

/// The ledgers of a store (its own connection).
pub struct LedgerDb {
    conn: Connection,
    path: PathBuf,
}

const COLS: &str = "id, ledger, kind, agency, ts_ms, body, corrects, void, author, created_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerEvent> {
    Ok(LedgerEvent {
        id: r.get(0)?,
        ledger: r.get(1)?,
        kind: r.get(2)?,
        agency: r.get(3)?,
        ts_ms: r.get(4)?,
        body: r.get(5)?,
        corrects: r.get(6)?,
        void: r.get::<_, i64>(7)? != 0,
        author: r.get(8)?,
        created_ms: r.get(9)?,
    })
}

impl LedgerDb {
    /// Open (creating and migrating if needed).
    pub fn open(path: &Path) -> Result<LedgerDb, StoreError> {
        let mut conn = open_conn(path, 8, false)?;
        schema::migrate(&mut conn, path)?;
        Ok(LedgerDb {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Append an event; its id. The transaction takes the write lock at once
    /// (IMMEDIATE): it reads before it writes, and a deferred one that
    /// another writer overtakes fails at once with SQLITE_BUSY instead of
    /// waiting for the busy timeout. A correction must name an event of the same
    /// ledger and kind that is itself still in effect (`Ok(None)` otherwise).
    pub fn append(
        &mut self,
        e: &NewLedgerEvent<'_>,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(&self.path)?;
        if let Some(c) = e.corrects {
            let target: Option<(String, String)> = tx
                .query_row(
                    "SELECT ledger, kind FROM ledger_events WHERE id = ?1",
                    params![c],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .at(&self.path)?;
            let superseded: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM ledger_events WHERE corrects = ?1)",
                    params![c],
                    |r| r.get(0),
                )
                .at(&self.path)?;
            if target
                .as_ref()
                .is_none_or(|(l, k)| l != e.ledger || k != e.kind)
                || superseded
            {
                return Ok(None);
            }
        }
        tx.execute(
            "INSERT INTO ledger_events (ledger, kind, agency, ts_ms, body, corrects, void, author, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![e.ledger, e.kind, e.agency, e.ts_ms, e.body, e.corrects, e.void, e.author, now_ms],
        )
        .at(&self.path)?;
        let id = tx.last_insert_rowid();
        tx.commit().at(&self.path)?;
        Ok(Some(id))
    }

    /// Append several new events (no corrections) in one transaction; their ids.
    pub fn append_batch(
        &mut self,
        events: &[NewLedgerEvent<'_>],
        now_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(&self.path)?;
        let mut ids = Vec::with_capacity(events.len());
        for e in events {
            tx.execute(
                "INSERT INTO ledger_events (ledger, kind, agency, ts_ms, body, corrects, void, author, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, NULL, 0, ?6, ?7)",
                params![e.ledger, e.kind, e.agency, e.ts_ms, e.body, e.author, now_ms],
            )
            .at(&self.path)?;
            ids.push(tx.last_insert_rowid());
        }
        tx.commit().at(&self.path)?;
        Ok(ids)
    }

    /// Every event, corrections and voids included, in id order: the
    /// ledgers' whole history (`ledger` = one ledger only).
    pub fn all(&self, ledger: Option<&str>) -> Result<Vec<LedgerEvent>, StoreError> {
        let mut s = self
            .conn
            .prepare(&format!(
                "SELECT {COLS} FROM ledger_events WHERE ?1 IS NULL OR ledger = ?1 ORDER BY id"
            ))
            .at(&self.path)?;
        let rows = s.query_map(params![ledger], row).at(&self.path)?;
        rows.collect::<Result<_, _>>().at(&self.path)
    }

    /// Add events exported from another store with their ids, in one
    /// transaction: an event already here with the same id and the same
    /// content is skipped (importing twice changes nothing); one with the
    /// same id and other content, or a correction of an event that is in
    /// neither, refuses the whole import. Returns (added, already present).
    pub fn import_events(
        &mut self,
        events: &[LedgerEvent],
    ) -> Result<(usize, usize), ImportRefused> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(&path)?;
        let (mut added, mut present) = (0, 0);
        let mut sorted: Vec<&LedgerEvent> = events.iter().collect();
        sorted.sort_by_key(|e| e.id);
        for e in sorted {
            let here: Option<LedgerEvent> = tx
                .query_row(
                    &format!("SELECT {COLS} FROM ledger_events WHERE id = ?1"),
                    params![e.id],
                    row,
                )
                .optional()
                .at(&path)?;
            match here {
                Some(h) if &h == e => present += 1,
                Some(h) => {
                    return Err(ImportRefused::Conflict {
                        id: e.id,
                        here: format!("{} {} at {}", h.ledger, h.kind, h.ts_ms),
                        there: format!("{} {} at {}", e.ledger, e.kind, e.ts_ms),
                    });
                }
                None => {
                    tx.execute(
                        "INSERT INTO ledger_events (id, ledger, kind, agency, ts_ms, body, corrects, void, author, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                        params![e.id, e.ledger, e.kind, e.agency, e.ts_ms, e.body, e.corrects, e.void, e.author, e.created_ms],
                    )
                    .at(&path)?;
                    added += 1;
                }
            }
        }
        for e in events {
            if let Some(c) = e.corrects {
                let ok: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM ledger_events WHERE id = ?1 AND ledger = ?2 AND kind = ?3)",
                        params![c, e.ledger, e.kind],
                        |r| r.get(0),
                    )
                    .at(&path)?;
                if !ok {
                    return Err(ImportRefused::Dangling {
                        id: e.id,
                        corrects: c,
                    });
                }
            }
        }
        tx.commit().at(&path)?;
        Ok((added, present))
    }

    /// Keep a refused input in `dead_letters` (the payload clipped to 4 KiB).
    pub fn dead_letter(
        &mut self,
        received_ms: i64,
        source: &str,
        location: &str,
        reason: &str,
        payload: &str,
    ) -> Result<(), StoreError> {
        let mut end = payload.len().min(4096);
        while !payload.is_char_boundary(end) {
            end -= 1;
        }
        self.conn
            .execute(
                "INSERT INTO dead_letters (received_ms, source, location, reason, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![received_ms, source, location, reason, &payload[..end]],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// One event by id.
    pub fn get(&self, id: i64) -> Result<Option<LedgerEvent>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLS} FROM ledger_events WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()
            .at(&self.path)
    }

    /// Events in effect (not corrected, not voids) of a ledger and kind with
    /// `from_ms <= ts < to_ms`, in time order.
    pub fn effective(
        &self,
        ledger: &str,
        kind: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<LedgerEvent>, StoreError> {
        effective_in(&self.conn, &self.path, ledger, kind, from_ms, to_ms)
    }

    /// Events in effect of every kind of a ledger up to `to_ms`, in time order.
    pub fn ledger_until(&self, ledger: &str, to_ms: i64) -> Result<Vec<LedgerEvent>, StoreError> {
        ledger_in(&self.conn, &self.path, ledger, to_ms)
    }
}

/// [`LedgerDb::effective`] on any connection to the store.
pub(crate) fn effective_in(
    conn: &Connection,
    path: &Path,
    ledger: &str,
    kind: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<LedgerEvent>, StoreError> {
    let mut s = conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM ledger_events e WHERE ledger = ?1 AND kind = ?2 AND ts_ms >= ?3 AND ts_ms < ?4 AND void = 0
             AND NOT EXISTS (SELECT 1 FROM ledger_events c WHERE c.corrects = e.id) ORDER BY ts_ms, id"
        ))
        .at(path)?;
    let rows = s
        .query_map(params![ledger, kind, from_ms, to_ms], row)
        .at(path)?;
    rows.collect::<Result<_, _>>().at(path)
}

/// Events in effect of every kind of `ledger` with `ts < to_ms`, in time order.
pub(crate) fn ledger_in(
    conn: &Connection,
    path: &Path,
    ledger: &str,
    to_ms: i64,
) -> Result<Vec<LedgerEvent>, StoreError> {
    let mut s = conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM ledger_events e WHERE ledger = ?1 AND ts_ms < ?2 AND void = 0
             AND NOT EXISTS (SELECT 1 FROM ledger_events c WHERE c.corrects = e.id) ORDER BY ts_ms, id"
        ))
        .at(path)?;
    let rows = s.query_map(params![ledger, to_ms], row).at(path)?;
    rows.collect::<Result<_, _>>().at(path)
}

/// Why an import of ledger events added nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportRefused {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event id is taken by another event.
    #[error(
        "event {id} is already here as another event ({here}; the file has {there}): the ledgers come from different stores; nothing was imported"
    )]
    Conflict {
        /// The id.
        id: i64,
        /// What the store holds under it.
        here: String,
        /// What the file holds.
        there: String,
    },
    /// A correction of an event that is neither here nor in the file.
    #[error(
        "event {id} corrects event {corrects}, which is neither here nor in the file (of the same ledger and kind); nothing was imported"
    )]
    Dangling {
        /// The correcting event.
        id: i64,
        /// What it corrects.
        corrects: i64,
    },
}
