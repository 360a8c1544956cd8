//! Versioned schema migrations, tracked in `PRAGMA user_version`.
//!
//! Each entry upgrades from its index to index + 1 and runs in its own transaction together with
//! the version bump, so a crash mid-upgrade leaves the previous version intact. Never edit a
//! released migration; append a new one.

use rusqlite::Connection;

use super::{Result, StorageError};

/// Schema steps; `MIGRATIONS[i]` takes version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: registry, twins, configurations, telemetry, C2D, policies.
    r"
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        doc TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE modules (
        device_id TEXT NOT NULL,
        module_id TEXT NOT NULL,
        revision INTEGER NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (device_id, module_id)
    ) WITHOUT ROWID;
    CREATE TABLE twins (
        device_id TEXT NOT NULL,
        module_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (device_id, module_id)
    ) WITHOUT ROWID;
    CREATE TABLE configurations (
        id TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        doc TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE device_content (
        device_id TEXT PRIMARY KEY,
        doc TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE telemetry (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        enqueued_ms INTEGER NOT NULL,
        device_id TEXT NOT NULL,
        module_id TEXT NOT NULL,
        meta TEXT NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX telemetry_by_identity ON telemetry (device_id, module_id, seq);
    CREATE INDEX telemetry_by_time ON telemetry (enqueued_ms);
    CREATE TABLE c2d (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        state TEXT NOT NULL,
        expiry_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        meta TEXT NOT NULL,
        body BLOB NOT NULL,
        UNIQUE (device_id, message_id)
    );
    CREATE INDEX c2d_by_state ON c2d (state, updated_ms);
    CREATE TABLE policies (
        key_name TEXT PRIMARY KEY,
        doc TEXT NOT NULL
    ) WITHOUT ROWID;
    ",
];

/// Brings the schema of `conn` up to date.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > supported {
        return Err(StorageError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
        tracing::info!(version = i + 1, "hub database migrated");
    }
    Ok(())
}
