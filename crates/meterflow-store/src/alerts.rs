//! Alert state, history and the notification outbox. The evaluator (in the
//! binary) decides transitions; this keeps them durable so a restart resumes
//! every alert where it was (no re-firing) and every undelivered
//! notification is retried.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::conn::open_conn;
use crate::error::{Ctx, StoreError};
use crate::schema;

/// Stored state of one (rule, target).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertStateRow {
    /// `inactive`, `pending` or `firing`.
    pub state: String,
    /// Since when (pending or firing), ms.
    pub since_ms: Option<i64>,
    /// Acknowledged by an operator.
    pub acknowledged: bool,
    /// Last evaluated value.
    pub value: Option<f64>,
}

/// One history entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// Event id.
    pub id: i64,
    /// Rule id.
    pub rule: String,
    /// Target (agency, building, meter, bus).
    pub target: String,
    /// Rule kind.
    pub kind: String,
    /// Severity.
    pub severity: String,
    /// `fired`, `resolved` or `acknowledged`.
    pub event: String,
    /// When, ms.
    pub ts_ms: i64,
    /// Value at the time.
    pub value: Option<f64>,
    /// Threshold.
    pub threshold: Option<f64>,
    /// Human-readable text.
    pub message: String,
}

/// A firing alert: (rule, target, since ms, acknowledged, last value).
pub type Firing = (String, String, i64, bool, Option<f64>);

/// A notification due for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingNotification {
    /// The event to deliver.
    pub event: AlertEvent,
    /// Notifier id.
    pub notifier: String,
    /// Attempts so far.
    pub attempts: u32,
}

/// A transition to record: state, and an event with the notifiers to tell.
#[derive(Debug, Clone)]
pub struct Transition {
    /// Rule id.
    pub rule: String,
    /// Target.
    pub target: String,
    /// New state.
    pub state: AlertStateRow,
    /// Event to append (with its notifiers), if the change is worth telling.
    pub event: Option<(AlertEvent, Vec<String>)>,
}

/// The alert tables, with their own write connection (separate from the
/// reading writer: alert writes are few and never hold up ingest).
pub struct AlertDb {
    conn: Connection,
    path: PathBuf,
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertEvent> {
    Ok(AlertEvent {
        id: r.get(0)?,
        rule: r.get(1)?,
        target: r.get(2)?,
        kind: r.get(3)?,
        severity: r.get(4)?,
        event: r.get(5)?,
        ts_ms: r.get(6)?,
        value: r.get(7)?,
        threshold: r.get(8)?,
        message: r.get(9)?,
    })
}

const EVENT_COLS: &str =
    "id, rule, target, kind, severity, event, ts_ms, value, threshold, message";

impl AlertDb {
    /// Open (creating and migrating if needed).
    pub fn open(path: &Path) -> Result<AlertDb, StoreError> {
        let mut conn = open_conn(path, 8, false)?;
        schema::migrate(&mut conn, path)?;
        Ok(AlertDb {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// State of a (rule, target), if any was stored.
    pub fn state(&self, rule: &str, target: &str) -> Result<Option<AlertStateRow>, StoreError> {
        self.conn
            .prepare_cached("SELECT state, since_ms, acknowledged, value FROM alert_state WHERE rule = ?1 AND target = ?2")
            .and_then(|mut s| {
                s.query_row(params![rule, target], |r| {
                    Ok(AlertStateRow {
                        state: r.get(0)?,
                        since_ms: r.get(1)?,
                        acknowledged: r.get::<_, i64>(2)? != 0,
                        value: r.get(3)?,
                    })
                })
                .optional()
            })
            .at(&self.path)
    }

    /// Start a dry run: what is recorded from here on is undone by
    /// [`AlertDb::end_dry_run`] (an evaluation at another time must not
    /// enter the lasting history).
    pub fn begin_dry_run(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN").at(&self.path)
    }

    /// Undo everything since [`AlertDb::begin_dry_run`].
    pub fn end_dry_run(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("ROLLBACK").at(&self.path)
    }

    /// Record transitions (states, events, outbox entries) at once (a
    /// savepoint: inside a dry run, undone with it).
    pub fn record(&mut self, now_ms: i64, items: &[Transition]) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.savepoint().at(&self.path)?;
        let mut ids = Vec::new();
        for t in items {
            tx.prepare_cached(
                "INSERT INTO alert_state (rule, target, state, since_ms, acknowledged, value, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (rule, target) DO UPDATE SET state = excluded.state, since_ms = excluded.since_ms,
                    acknowledged = excluded.acknowledged, value = excluded.value, updated_ms = excluded.updated_ms",
            )
            .and_then(|mut s| {
                s.execute(params![
                    t.rule,
                    t.target,
                    t.state.state,
                    t.state.since_ms,
                    i64::from(t.state.acknowledged),
                    t.state.value,
                    now_ms
                ])
            })
            .at(&self.path)?;
            if let Some((e, notifiers)) = &t.event {
                tx.prepare_cached(
                    "INSERT INTO alert_events (rule, target, kind, severity, event, ts_ms, value, threshold, message)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut s| {
                    s.execute(params![e.rule, e.target, e.kind, e.severity, e.event, e.ts_ms, e.value, e.threshold, e.message])
                })
                .at(&self.path)?;
                let id = tx.last_insert_rowid();
                ids.push(id);
                for n in notifiers {
                    tx.prepare_cached(
                        "INSERT INTO notifications (event, notifier, next_ms) VALUES (?1, ?2, ?3)",
                    )
                    .and_then(|mut s| s.execute(params![id, n, now_ms]))
                    .at(&self.path)?;
                }
            }
        }
        tx.commit().at(&self.path)?;
        Ok(ids)
    }

    /// History, newest first.
    pub fn events(&self, limit: usize) -> Result<Vec<AlertEvent>, StoreError> {
        let sql = format!("SELECT {EVENT_COLS} FROM alert_events ORDER BY id DESC LIMIT ?1");
        let mut s = self.conn.prepare_cached(&sql).at(&self.path)?;
        let rows = s
            .query_map(params![limit as i64], event_row)
            .at(&self.path)?;
        rows.collect::<Result<_, _>>().at(&self.path)
    }

    /// Alerts firing now: (rule, target, since_ms, acknowledged, value).
    pub fn firing(&self) -> Result<Vec<Firing>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached("SELECT rule, target, since_ms, acknowledged, value FROM alert_state WHERE state = 'firing' ORDER BY rule, target")
            .at(&self.path)?;
        let rows = s
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    r.get::<_, i64>(3)? != 0,
                    r.get(4)?,
                ))
            })
            .at(&self.path)?;
        rows.collect::<Result<_, _>>().at(&self.path)
    }

    /// Notifications due at `now_ms` (not delivered, attempts left), oldest first.
    pub fn due(
        &self,
        now_ms: i64,
        max_attempts: u32,
        limit: usize,
    ) -> Result<Vec<PendingNotification>, StoreError> {
        let sql =
            "SELECT e.id, e.rule, e.target, e.kind, e.severity, e.event, e.ts_ms, e.value, e.threshold, e.message, n.notifier, n.attempts
             FROM notifications n JOIN alert_events e ON e.id = n.event
             WHERE n.delivered_ms IS NULL AND n.next_ms <= ?1 AND n.attempts < ?2 ORDER BY n.event LIMIT ?3"
        ;
        let mut s = self.conn.prepare_cached(sql).at(&self.path)?;
        let rows = s
            .query_map(
                params![now_ms, i64::from(max_attempts), limit as i64],
                |r| {
                    Ok(PendingNotification {
                        event: event_row(r)?,
                        notifier: r.get(10)?,
                        attempts: r.get::<_, i64>(11)? as u32,
                    })
                },
            )
            .at(&self.path)?;
        rows.collect::<Result<_, _>>().at(&self.path)
    }

    /// Earliest next attempt of an undelivered notification.
    pub fn next_due(&self, max_attempts: u32) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(next_ms) FROM notifications WHERE delivered_ms IS NULL AND attempts < ?1",
                params![i64::from(max_attempts)],
                |r| r.get(0),
            )
            .at(&self.path)
    }

    /// Mark a notification delivered.
    pub fn delivered(&self, event: i64, notifier: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE notifications SET delivered_ms = ?3, attempts = attempts + 1, last_error = NULL WHERE event = ?1 AND notifier = ?2")
            .and_then(|mut s| s.execute(params![event, notifier, now_ms]))
            .at(&self.path)?;
        Ok(())
    }

    /// Record a failed attempt; the next one at `next_ms`.
    pub fn failed(
        &self,
        event: i64,
        notifier: &str,
        next_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE notifications SET attempts = attempts + 1, next_ms = ?3, last_error = ?4 WHERE event = ?1 AND notifier = ?2")
            .and_then(|mut s| s.execute(params![event, notifier, next_ms, error]))
            .at(&self.path)?;
        Ok(())
    }

    /// Counts of the outbox: (delivered, waiting, given up).
    pub fn outbox_counts(&self, max_attempts: u32) -> Result<(i64, i64, i64), StoreError> {
        self.conn
            .query_row(
                "SELECT count(delivered_ms), sum(delivered_ms IS NULL AND attempts < ?1), sum(delivered_ms IS NULL AND attempts >= ?1) FROM notifications",
                params![i64::from(max_attempts)],
                |r| Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0), r.get::<_, Option<i64>>(2)?.unwrap_or(0))),
            )
            .at(&self.path)
    }
}
