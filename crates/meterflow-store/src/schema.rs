//! Versioned schema migrations (PRAGMA user_version).

use std::path::Path;

use rusqlite::Connection;

use crate::error::{Ctx, StoreError};

/// Migrations in order; entry `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the foundation.
    r#"
    CREATE TABLE series (
        id        INTEGER PRIMARY KEY,
        meter     TEXT NOT NULL,
        quantity  TEXT NOT NULL,
        counter   INTEGER NOT NULL,           -- 1: normalised counter, 0: gauge
        UNIQUE (meter, quantity)
    );
    -- Raw readings (kind 0) and replacement events (kind 1: value = old final,
    -- aux = new initial). status: normaliser decision code, NULL for gauges.
    -- value is NULL when the source sent a non-finite number (raw keeps its text).
    CREATE TABLE readings (
        series       INTEGER NOT NULL,
        ts_ms        INTEGER NOT NULL,
        kind         INTEGER NOT NULL DEFAULT 0,
        value        REAL,
        aux          REAL,
        raw          TEXT,
        recv_ms      INTEGER NOT NULL,
        time_source  TEXT NOT NULL,
        source       TEXT NOT NULL,
        status       INTEGER,
        PRIMARY KEY (series, ts_ms)
    ) WITHOUT ROWID;
    CREATE TABLE anomalies (
        series       INTEGER NOT NULL,
        ts_ms        INTEGER NOT NULL,
        kind         TEXT NOT NULL,
        detail       TEXT NOT NULL,
        detected_ms  INTEGER NOT NULL,
        PRIMARY KEY (series, ts_ms, kind)
    ) WITHOUT ROWID;
    -- 15-minute buckets with any coverage; an absent bucket is `missing`.
    -- micro: consumption in 1e-6 of the meter's unit (exact sums).
    CREATE TABLE intervals (
        series        INTEGER NOT NULL,
        bucket_ms     INTEGER NOT NULL,
        micro         INTEGER NOT NULL,
        measured_ms   INTEGER NOT NULL,
        estimated_ms  INTEGER NOT NULL,
        PRIMARY KEY (series, bucket_ms)
    ) WITHOUT ROWID;
    -- Local-hour rollups keyed by the hour's first instant (UTC ms);
    -- measured/estimated count buckets of that quality.
    CREATE TABLE rollup_hour (
        series     INTEGER NOT NULL,
        hour_ms    INTEGER NOT NULL,
        micro      INTEGER NOT NULL,
        measured   INTEGER NOT NULL,
        estimated  INTEGER NOT NULL,
        PRIMARY KEY (series, hour_ms)
    ) WITHOUT ROWID;
    -- Local-day rollups keyed by the local date (YYYY-MM-DD).
    CREATE TABLE rollup_day (
        series     INTEGER NOT NULL,
        day        TEXT NOT NULL,
        micro      INTEGER NOT NULL,
        measured   INTEGER NOT NULL,
        estimated  INTEGER NOT NULL,
        PRIMARY KEY (series, day)
    ) WITHOUT ROWID;
    -- Input that could not be stored, kept with its reason (nothing is lost silently).
    CREATE TABLE dead_letters (
        id           INTEGER PRIMARY KEY,
        received_ms  INTEGER NOT NULL,
        source       TEXT NOT NULL,
        location     TEXT NOT NULL,
        reason       TEXT NOT NULL,
        payload      TEXT NOT NULL
    );
    CREATE TABLE meta (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    );
    "#,
    // 2: scope rollups of the streaming aggregator.
    r#"
    -- A rollup scope: zone, building, agency or site; class; sub-item ('' = all).
    CREATE TABLE agg_scope (
        id       INTEGER PRIMARY KEY,
        level    TEXT NOT NULL,
        ref      TEXT NOT NULL,
        class    TEXT NOT NULL,
        subitem  TEXT NOT NULL,
        UNIQUE (level, ref, class, subitem)
    );
    -- grain: 15m, hour, day, month, year; start_ms: UTC ms of the local period start.
    -- value: 1e-9 kWh / m3 (1e-12 GJ for heat and cooling), exact sums.
    -- measured/estimated: meter-buckets of that quality.
    CREATE TABLE agg (
        scope      INTEGER NOT NULL,
        grain      TEXT NOT NULL,
        start_ms   INTEGER NOT NULL,
        value      INTEGER NOT NULL,
        measured   INTEGER NOT NULL,
        estimated  INTEGER NOT NULL,
        PRIMARY KEY (scope, grain, start_ms)
    ) WITHOUT ROWID;
    "#,
    // 3: alert lifecycle, history and the notification outbox.
    r#"
    -- Current state of each (rule, target): inactive, pending or firing.
    CREATE TABLE alert_state (
        rule          TEXT NOT NULL,
        target        TEXT NOT NULL,
        state         TEXT NOT NULL,
        since_ms      INTEGER,
        acknowledged  INTEGER NOT NULL DEFAULT 0,
        value         REAL,
        updated_ms    INTEGER NOT NULL,
        PRIMARY KEY (rule, target)
    ) WITHOUT ROWID;
    -- History: fired, resolved, acknowledged.
    CREATE TABLE alert_events (
        id         INTEGER PRIMARY KEY,
        rule       TEXT NOT NULL,
        target     TEXT NOT NULL,
        kind       TEXT NOT NULL,
        severity   TEXT NOT NULL,
        event      TEXT NOT NULL,
        ts_ms      INTEGER NOT NULL,
        value      REAL,
        threshold  REAL,
        message    TEXT NOT NULL
    );
    -- One delivery per (event, notifier); retried until delivered or out of attempts.
    CREATE TABLE notifications (
        event         INTEGER NOT NULL,
        notifier      TEXT NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        next_ms       INTEGER NOT NULL,
        delivered_ms  INTEGER,
        last_error    TEXT,
        PRIMARY KEY (event, notifier)
    ) WITHOUT ROWID;
    "#,
    // 4: the durable outbox of the InfluxDB sink.
    r#"
    -- Line protocol (precision ms) bound for InfluxDB, in delivery order (id);
    -- a row is deleted only after InfluxDB answered 2xx for it.
    CREATE TABLE influx_outbox (
        id          INTEGER PRIMARY KEY,
        created_ms  INTEGER NOT NULL,
        points      INTEGER NOT NULL,
        body        TEXT NOT NULL
    );
    -- Running totals of the outbox, kept by triggers (one row).
    CREATE TABLE outbox_stats (
        one      INTEGER PRIMARY KEY CHECK (one = 1),
        points   INTEGER NOT NULL,
        bytes    INTEGER NOT NULL,
        dropped  INTEGER NOT NULL
    );
    INSERT INTO outbox_stats (one, points, bytes, dropped) VALUES (1, 0, 0, 0);
    CREATE TRIGGER influx_outbox_added AFTER INSERT ON influx_outbox BEGIN
        UPDATE outbox_stats SET points = points + NEW.points, bytes = bytes + octet_length(NEW.body);
    END;
    CREATE TRIGGER influx_outbox_removed AFTER DELETE ON influx_outbox BEGIN
        UPDATE outbox_stats SET points = points - OLD.points, bytes = bytes - octet_length(OLD.body);
    END;
    "#,
    // 5: ledgers (vehicles, office space, waste, assets) as append-only events.
    r#"
    -- Nothing is updated in place: a correction is a new event naming the one
    -- it replaces (`corrects`), or voiding it (`void` = 1).
    CREATE TABLE ledger_events (
        id          INTEGER PRIMARY KEY,
        ledger      TEXT NOT NULL,
        kind        TEXT NOT NULL,
        agency      TEXT,
        ts_ms       INTEGER NOT NULL,
        body        TEXT NOT NULL,
        corrects    INTEGER REFERENCES ledger_events (id),
        void        INTEGER NOT NULL DEFAULT 0,
        author      TEXT NOT NULL,
        created_ms  INTEGER NOT NULL
    );
    CREATE INDEX ledger_events_by_time ON ledger_events (ledger, kind, ts_ms);
    CREATE INDEX ledger_events_by_corrects ON ledger_events (corrects);
    "#,
    // 6: long estimated gaps kept whole, expanded where buckets are read.
    r#"
    -- The whole buckets [lo_ms, hi_ms) of a gap longer than a day between
    -- readings at from_ms and to_ms with micro between them: bucket b holds
    -- floor(micro × (b + 15 min − from) / (to − from)) − floor(micro × (b − from) / (to − from)).
    -- Their days are in rollup_day and agg (day, month, year) like any bucket's.
    CREATE TABLE spans (
        series   INTEGER NOT NULL,
        from_ms  INTEGER NOT NULL,
        to_ms    INTEGER NOT NULL,
        micro    INTEGER NOT NULL,
        lo_ms    INTEGER NOT NULL,
        hi_ms    INTEGER NOT NULL,
        PRIMARY KEY (series, from_ms)
    ) WITHOUT ROWID;
    -- A span's part of one local day [lo_ms, hi_ms) in a scope, in place of
    -- its 15-minute and hourly agg rows: value (spread evenly over the
    -- block's buckets when read) and estimated meter-buckets.
    CREATE TABLE agg_span (
        scope      INTEGER NOT NULL,
        series     INTEGER NOT NULL,
        lo_ms      INTEGER NOT NULL,
        hi_ms      INTEGER NOT NULL,
        value      INTEGER NOT NULL,
        estimated  INTEGER NOT NULL,
        PRIMARY KEY (scope, series, lo_ms)
    ) WITHOUT ROWID;
    "#,
    // 7: readings name their time source and source by code, not by text
    // on every row (issue 25: 59 of a reading's ~100 bytes were its row,
    // 18 of them the two texts).
    r#"
    CREATE TABLE IF NOT EXISTS sources (
        id    INTEGER PRIMARY KEY,
        text  TEXT NOT NULL UNIQUE
    );
    INSERT OR IGNORE INTO sources (text)
        SELECT DISTINCT source FROM readings WHERE typeof(source) = 'text';
    -- time_source: 0 device, 1 poll, 2 receive, 3 import, 4 operator, 9 other.
    CREATE TABLE readings_v7 (
        series       INTEGER NOT NULL,
        ts_ms        INTEGER NOT NULL,
        kind         INTEGER NOT NULL DEFAULT 0,
        value        REAL,
        aux          REAL,
        raw          TEXT,
        recv_ms      INTEGER NOT NULL,
        time_source  INTEGER NOT NULL,
        source       INTEGER NOT NULL,
        status       INTEGER,
        PRIMARY KEY (series, ts_ms)
    ) WITHOUT ROWID;
    INSERT INTO readings_v7
        SELECT r.series, r.ts_ms, r.kind, r.value, r.aux, r.raw, r.recv_ms,
               CASE WHEN typeof(r.time_source) = 'integer' THEN r.time_source
                    ELSE CASE r.time_source WHEN 'device' THEN 0 WHEN 'poll' THEN 1
                         WHEN 'receive' THEN 2 WHEN 'import' THEN 3 WHEN 'operator' THEN 4 ELSE 9 END
               END,
               CASE WHEN typeof(r.source) = 'integer' THEN r.source
                    ELSE (SELECT s.id FROM sources s WHERE s.text = r.source)
               END,
               r.status
        FROM readings r;
    DROP TABLE readings;
    ALTER TABLE readings_v7 RENAME TO readings;
    "#,
    // 8: closed months kept compactly (issue 25, ADR 0024).
    r#"
    -- One local month of one table's rows of a series (tbl 0 readings,
    -- 1 intervals, 2 rollup_hour) or of a scope (3 agg 15m, 4 agg hour),
    -- encoded column by column and deflated (cold.rs). A month is either
    -- rows in its table or a block here, never both.
    CREATE TABLE cold (
        tbl       INTEGER NOT NULL,
        key       INTEGER NOT NULL,
        month_ms  INTEGER NOT NULL,
        rows      INTEGER NOT NULL,
        blob      BLOB NOT NULL,
        PRIMARY KEY (tbl, key, month_ms)
    ) WITHOUT ROWID;
    "#,
];

/// Highest schema version this build knows.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Bring the database to the current version.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .at(path)?;
    if found > VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
        });
    }
    if found > 0 && found < VERSION {
        // An upgrade: keep the store as it was before changing it.
        let copy = pre_migration_copy(conn, path, found).at(path)?;
        tracing::warn!(
            "upgrading {} from schema {found} to {VERSION}; the store as it was is kept in {}",
            path.display(),
            copy.display()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction().at(path)?;
        tx.execute_batch(sql).at(path)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .at(path)?;
        tx.commit().at(path)?;
    }
    Ok(())
}

/// Before migrating an existing store from schema `found`, keep a copy of it
/// as it was: `<db>.pre-v<found>-<ms>.db` (uncompressed, consistent).
fn pre_migration_copy(
    conn: &Connection,
    db: &Path,
    found: i64,
) -> Result<std::path::PathBuf, rusqlite::Error> {
    let mut name = db.as_os_str().to_owned();
    name.push(format!(
        ".pre-v{found}-{}.db",
        meterflow_model::clock::now_ms()
    ));
    let copy = std::path::PathBuf::from(name);
    conn.execute("VACUUM INTO ?1", [copy.to_string_lossy().as_ref()])?;
    Ok(copy)
}
