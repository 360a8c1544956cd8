//! SQLite backend: one file, WAL journal, `synchronous=FULL` (a committed write survives a crash
//! or power loss), one writer connection and a few readers.
//!
//! Documents (identities, twins, configurations) are stored as JSON beside the columns that
//! queries and compare-and-swap need; telemetry and C2D bodies as BLOBs.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::migrations::migrate;
use super::{
    C2dMessage, C2dState, Policy, Result, Storage, StorageError, TelemetryFilter, TelemetryRecord,
    TwinScope,
};
use crate::configuration::Configuration;
use crate::registry::{Device, DeviceStatus, Module};
use crate::twin::Twin;

const READERS: usize = 2;

/// The SQLite [`Storage`].
#[derive(Debug)]
pub struct SqliteStorage {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn open_err(path: &Path, e: impl ToString) -> StorageError {
    StorageError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn decode<T: DeserializeOwned>(what: impl Into<String>, doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| StorageError::Corrupt {
        what: what.into(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(v: &T) -> String {
    // Our document types serialise infallibly (string keys, no custom serialisers that fail).
    serde_json::to_string(v).unwrap_or_default()
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(path, e))?;
        }
        let mut writer = Connection::open(path).map_err(|e| open_err(path, e))?;
        configure(&writer)?;
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| {
                let c = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| open_err(path, e))?;
                c.busy_timeout(std::time::Duration::from_secs(5))?;
                Ok(Mutex::new(c))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    fn read(&self) -> MutexGuard<'_, Connection> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        lock(&self.readers[i])
    }

    fn write(&self) -> MutexGuard<'_, Connection> {
        lock(&self.writer)
    }
}

fn configure(c: &Connection) -> Result<()> {
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn insert_twin(tx: &rusqlite::Transaction<'_>, t: &Twin) -> Result<()> {
    tx.execute(
        "INSERT INTO twins (device_id, module_id, version, doc) VALUES (?1, ?2, ?3, ?4)",
        params![
            t.device_id,
            t.module_id.as_deref().unwrap_or(""),
            to_i64(t.version),
            encode(t)
        ],
    )?;
    Ok(())
}

fn insert_module(tx: &rusqlite::Transaction<'_>, m: &Module, t: &Twin) -> Result<()> {
    let n = tx.execute(
        "INSERT OR IGNORE INTO modules (device_id, module_id, revision, doc) VALUES (?1, ?2, ?3, ?4)",
        params![m.device_id, m.module_id, to_i64(m.revision), encode(m)],
    )?;
    if n == 0 {
        return Err(StorageError::Conflict(format!(
            "module {}/{}",
            m.device_id, m.module_id
        )));
    }
    tx.execute(
        "DELETE FROM twins WHERE device_id = ?1 AND module_id = ?2",
        params![m.device_id, m.module_id],
    )?;
    insert_twin(tx, t)
}

fn telemetry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, Vec<u8>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn c2d_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, String, i64, Vec<u8>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn c2d_decode(row: (i64, String, String, i64, Vec<u8>)) -> Result<C2dMessage> {
    let (seq, meta, state, updated, body) = row;
    let mut m: C2dMessage = decode(format!("c2d message {seq}"), &meta)?;
    m.seq = to_u64(seq);
    m.state = C2dState::parse(&state).unwrap_or(C2dState::Expired);
    m.updated_ms = updated;
    m.body = body;
    Ok(m)
}

const C2D_COLUMNS: &str = "seq, meta, state, updated_ms, body";

impl Storage for SqliteStorage {
    fn get_device(&self, id: &str) -> Result<Option<Device>> {
        let doc: Option<String> = self
            .read()
            .query_row("SELECT doc FROM devices WHERE device_id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        doc.map(|d| decode(format!("device {id}"), &d)).transpose()
    }

    fn list_devices(&self, limit: usize) -> Result<Vec<Device>> {
        let conn = self.read();
        let mut stmt =
            conn.prepare_cached("SELECT doc FROM devices ORDER BY device_id LIMIT ?1")?;
        let docs = stmt.query_map([to_i64(limit as u64)], |r| r.get::<_, String>(0))?;
        docs.map(|d| decode("device", &d?)).collect()
    }

    fn count_devices(&self) -> Result<(u64, u64)> {
        let mut enabled = 0;
        let mut disabled = 0;
        for d in self.list_devices(usize::MAX)? {
            match d.status {
                DeviceStatus::Enabled => enabled += 1,
                DeviceStatus::Disabled => disabled += 1,
            }
        }
        Ok((enabled, disabled))
    }

    fn create_device(
        &self,
        device: &Device,
        twin: &Twin,
        modules: &[(Module, Twin)],
    ) -> Result<()> {
        let mut conn = self.write();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO devices (device_id, revision, doc) VALUES (?1, ?2, ?3)",
            params![device.device_id, to_i64(device.revision), encode(device)],
        )?;
        if n == 0 {
            return Err(StorageError::Conflict(format!(
                "device {}",
                device.device_id
            )));
        }
        // Leftovers of an earlier device with the same id never survive a delete, but be safe.
        tx.execute(
            "DELETE FROM twins WHERE device_id = ?1",
            [&device.device_id],
        )?;
        tx.execute(
            "DELETE FROM modules WHERE device_id = ?1",
            [&device.device_id],
        )?;
        insert_twin(&tx, twin)?;
        for (m, t) in modules {
            insert_module(&tx, m, t)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn update_device(
        &self,
        device: &Device,
        expected_revision: u64,
        new_modules: &[(Module, Twin)],
    ) -> Result<()> {
        let mut conn = self.write();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE devices SET revision = ?1, doc = ?2 WHERE device_id = ?3 AND revision = ?4",
            params![
                to_i64(device.revision),
                encode(device),
                device.device_id,
                to_i64(expected_revision)
            ],
        )?;
        if n == 0 {
            return Err(StorageError::Conflict(format!(
                "device {}",
                device.device_id
            )));
        }
        for (m, t) in new_modules {
            insert_module(&tx, m, t)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn delete_device(&self, id: &str) -> Result<bool> {
        let mut conn = self.write();
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM devices WHERE device_id = ?1", [id])?;
        for table in ["modules", "twins", "device_content", "c2d"] {
            tx.execute(&format!("DELETE FROM {table} WHERE device_id = ?1"), [id])?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    fn get_module(&self, device_id: &str, module_id: &str) -> Result<Option<Module>> {
        let doc: Option<String> = self
            .read()
            .query_row(
                "SELECT doc FROM modules WHERE device_id = ?1 AND module_id = ?2",
                [device_id, module_id],
                |r| r.get(0),
            )
            .optional()?;
        doc.map(|d| decode(format!("module {device_id}/{module_id}"), &d))
            .transpose()
    }

    fn list_modules(&self, device_id: &str) -> Result<Vec<Module>> {
        let conn = self.read();
        let mut stmt =
            conn.prepare_cached("SELECT doc FROM modules WHERE device_id = ?1 ORDER BY module_id")?;
        let docs = stmt.query_map([device_id], |r| r.get::<_, String>(0))?;
        docs.map(|d| decode("module", &d?)).collect()
    }

    fn list_all_modules(&self) -> Result<Vec<Module>> {
        let conn = self.read();
        let mut stmt =
            conn.prepare_cached("SELECT doc FROM modules ORDER BY device_id, module_id")?;
        let docs = stmt.query_map([], |r| r.get::<_, String>(0))?;
        docs.map(|d| decode("module", &d?)).collect()
    }

    fn create_module(&self, module: &Module, twin: &Twin) -> Result<()> {
        let mut conn = self.write();
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM devices WHERE device_id = ?1",
                [&module.device_id],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            return Err(StorageError::Conflict(format!(
                "device {} vanished",
                module.device_id
            )));
        }
        insert_module(&tx, module, twin)?;
        tx.commit()?;
        Ok(())
    }

    fn update_module(&self, module: &Module, expected_revision: u64) -> Result<()> {
        let n = self.write().execute(
            "UPDATE modules SET revision = ?1, doc = ?2 WHERE device_id = ?3 AND module_id = ?4 AND revision = ?5",
            params![
                to_i64(module.revision),
                encode(module),
                module.device_id,
                module.module_id,
                to_i64(expected_revision)
            ],
        )?;
        if n == 0 {
            return Err(StorageError::Conflict(format!(
                "module {}/{}",
                module.device_id, module.module_id
            )));
        }
        Ok(())
    }

    fn delete_module(&self, device_id: &str, module_id: &str) -> Result<bool> {
        let mut conn = self.write();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM modules WHERE device_id = ?1 AND module_id = ?2",
            [device_id, module_id],
        )?;
        tx.execute(
            "DELETE FROM twins WHERE device_id = ?1 AND module_id = ?2",
            [device_id, module_id],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn get_twin(&self, device_id: &str, module_id: Option<&str>) -> Result<Option<Twin>> {
        let doc: Option<String> = self
            .read()
            .query_row(
                "SELECT doc FROM twins WHERE device_id = ?1 AND module_id = ?2",
                [device_id, module_id.unwrap_or("")],
                |r| r.get(0),
            )
            .optional()?;
        doc.map(|d| decode(format!("twin {device_id}"), &d))
            .transpose()
    }

    fn put_twin(&self, twin: &Twin, expected_version: u64) -> Result<()> {
        let n = self.write().execute(
            "UPDATE twins SET version = ?1, doc = ?2 WHERE device_id = ?3 AND module_id = ?4 AND version = ?5",
            params![
                to_i64(twin.version),
                encode(twin),
                twin.device_id,
                twin.module_id.as_deref().unwrap_or(""),
                to_i64(expected_version)
            ],
        )?;
        if n == 0 {
            return Err(StorageError::Conflict(format!("twin {}", twin.device_id)));
        }
        Ok(())
    }

    fn list_twins(&self, scope: TwinScope) -> Result<Vec<Twin>> {
        let sql = match scope {
            TwinScope::Devices => "SELECT doc FROM twins WHERE module_id = '' ORDER BY device_id",
            TwinScope::Modules => {
                "SELECT doc FROM twins WHERE module_id != '' ORDER BY device_id, module_id"
            }
        };
        let conn = self.read();
        let mut stmt = conn.prepare_cached(sql)?;
        let docs = stmt.query_map([], |r| r.get::<_, String>(0))?;
        docs.map(|d| decode("twin", &d?)).collect()
    }

    fn device_twins(&self, device_id: &str) -> Result<Vec<Twin>> {
        let conn = self.read();
        let mut stmt =
            conn.prepare_cached("SELECT doc FROM twins WHERE device_id = ?1 ORDER BY module_id")?;
        let docs = stmt.query_map([device_id], |r| r.get::<_, String>(0))?;
        docs.map(|d| decode("twin", &d?)).collect()
    }

    fn get_configuration(&self, id: &str) -> Result<Option<Configuration>> {
        let doc: Option<String> = self
            .read()
            .query_row("SELECT doc FROM configurations WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        doc.map(|d| decode(format!("configuration {id}"), &d))
            .transpose()
    }

    fn list_configurations(&self) -> Result<Vec<Configuration>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached("SELECT doc FROM configurations ORDER BY id")?;
        let docs = stmt.query_map([], |r| r.get::<_, String>(0))?;
        docs.map(|d| decode("configuration", &d?)).collect()
    }

    fn put_configuration(
        &self,
        config: &Configuration,
        expected_revision: Option<u64>,
    ) -> Result<()> {
        let conn = self.write();
        let n = match expected_revision {
            None => conn.execute(
                "INSERT OR IGNORE INTO configurations (id, revision, doc) VALUES (?1, ?2, ?3)",
                params![config.id, to_i64(config.revision), encode(config)],
            )?,
            Some(rev) => conn.execute(
                "UPDATE configurations SET revision = ?1, doc = ?2 WHERE id = ?3 AND revision = ?4",
                params![
                    to_i64(config.revision),
                    encode(config),
                    config.id,
                    to_i64(rev)
                ],
            )?,
        };
        if n == 0 {
            return Err(StorageError::Conflict(format!(
                "configuration {}",
                config.id
            )));
        }
        Ok(())
    }

    fn delete_configuration(&self, id: &str) -> Result<bool> {
        Ok(self
            .write()
            .execute("DELETE FROM configurations WHERE id = ?1", [id])?
            > 0)
    }

    fn get_device_content(&self, device_id: &str) -> Result<Option<Map<String, Value>>> {
        let doc: Option<String> = self
            .read()
            .query_row(
                "SELECT doc FROM device_content WHERE device_id = ?1",
                [device_id],
                |r| r.get(0),
            )
            .optional()?;
        doc.map(|d| decode(format!("content of {device_id}"), &d))
            .transpose()
    }

    fn put_device_content(&self, device_id: &str, content: &Map<String, Value>) -> Result<()> {
        self.write().execute(
            "INSERT INTO device_content (device_id, doc) VALUES (?1, ?2)
             ON CONFLICT (device_id) DO UPDATE SET doc = excluded.doc",
            params![device_id, encode(content)],
        )?;
        Ok(())
    }

    fn append_telemetry(&self, batch: &mut [TelemetryRecord]) -> Result<()> {
        let mut conn = self.write();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO telemetry (enqueued_ms, device_id, module_id, meta, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for m in batch.iter_mut() {
                stmt.execute(params![
                    m.enqueued_ms,
                    m.device_id,
                    m.module_id.as_deref().unwrap_or(""),
                    encode(&*m),
                    m.body
                ])?;
                m.seq = to_u64(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn read_telemetry(&self, f: &TelemetryFilter, limit: usize) -> Result<Vec<TelemetryRecord>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, meta, body FROM telemetry
             WHERE seq >= ?1
               AND (?2 IS NULL OR device_id = ?2)
               AND (?3 IS NULL OR module_id = ?3)
               AND (?4 IS NULL OR enqueued_ms >= ?4)
               AND (?5 IS NULL OR enqueued_ms < ?5)
             ORDER BY seq LIMIT ?6",
        )?;
        let rows = stmt.query_map(
            params![
                to_i64(f.from_seq),
                f.device_id,
                f.module_id,
                f.since_ms,
                f.until_ms,
                to_i64(limit as u64)
            ],
            telemetry_from_row,
        )?;
        rows.map(|r| {
            let (seq, meta, body) = r?;
            let mut m: TelemetryRecord = decode(format!("telemetry {seq}"), &meta)?;
            m.seq = to_u64(seq);
            m.body = body;
            Ok(m)
        })
        .collect()
    }

    fn last_telemetry_seq(&self) -> Result<u64> {
        let seq: Option<i64> =
            self.read()
                .query_row("SELECT MAX(seq) FROM telemetry", [], |r| r.get(0))?;
        Ok(seq.map_or(0, to_u64))
    }

    fn prune_telemetry(&self, max_count: u64, min_enqueued_ms: i64) -> Result<u64> {
        let conn = self.write();
        let max: Option<i64> =
            conn.query_row("SELECT MAX(seq) FROM telemetry", [], |r| r.get(0))?;
        let mut n = conn.execute(
            "DELETE FROM telemetry WHERE enqueued_ms < ?1",
            [min_enqueued_ms],
        )?;
        if let Some(max) = max {
            n += conn.execute(
                "DELETE FROM telemetry WHERE seq <= ?1",
                [max - to_i64(max_count)],
            )?;
        }
        Ok(n as u64)
    }

    fn enqueue_c2d(&self, msg: &mut C2dMessage) -> Result<()> {
        let conn = self.write();
        let n = conn.execute(
            "INSERT OR IGNORE INTO c2d (device_id, message_id, state, expiry_ms, updated_ms, meta, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                msg.device_id,
                msg.message_id,
                msg.state.as_str(),
                msg.expiry_ms,
                msg.updated_ms,
                encode(&*msg),
                msg.body
            ],
        )?;
        if n == 0 {
            return Err(StorageError::Conflict(format!(
                "C2D message {} of {}",
                msg.message_id, msg.device_id
            )));
        }
        msg.seq = to_u64(conn.last_insert_rowid());
        Ok(())
    }

    fn pending_c2d(&self, device_id: &str) -> Result<Vec<C2dMessage>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {C2D_COLUMNS} FROM c2d WHERE device_id = ?1 AND state IN ('queued', 'delivered') ORDER BY seq"
        ))?;
        let rows = stmt.query_map([device_id], c2d_from_row)?;
        rows.map(|r| c2d_decode(r?)).collect()
    }

    fn get_c2d(&self, device_id: &str, message_id: &str) -> Result<Option<C2dMessage>> {
        let row = self
            .read()
            .query_row(
                &format!("SELECT {C2D_COLUMNS} FROM c2d WHERE device_id = ?1 AND message_id = ?2"),
                [device_id, message_id],
                c2d_from_row,
            )
            .optional()?;
        row.map(c2d_decode).transpose()
    }

    fn set_c2d_state(
        &self,
        device_id: &str,
        message_id: &str,
        state: C2dState,
        now_ms: i64,
    ) -> Result<bool> {
        let n = self.write().execute(
            "UPDATE c2d SET state = ?1, updated_ms = ?2 WHERE device_id = ?3 AND message_id = ?4",
            params![state.as_str(), now_ms, device_id, message_id],
        )?;
        Ok(n > 0)
    }

    fn c2d_feedback(&self, after_ms: i64, limit: usize) -> Result<Vec<C2dMessage>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {C2D_COLUMNS} FROM c2d WHERE state IN ('completed', 'expired') AND updated_ms > ?1
             ORDER BY updated_ms, seq LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![after_ms, to_i64(limit as u64)], c2d_from_row)?;
        rows.map(|r| c2d_decode(r?)).collect()
    }

    fn expire_c2d(&self, now_ms: i64) -> Result<u64> {
        let n = self.write().execute(
            "UPDATE c2d SET state = 'expired', updated_ms = ?1 WHERE state IN ('queued', 'delivered') AND expiry_ms <= ?1",
            [now_ms],
        )?;
        Ok(n as u64)
    }

    fn list_policies(&self) -> Result<Vec<Policy>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached("SELECT doc FROM policies ORDER BY key_name")?;
        let docs = stmt.query_map([], |r| r.get::<_, String>(0))?;
        docs.map(|d| decode("policy", &d?)).collect()
    }

    fn put_policy(&self, policy: &Policy) -> Result<()> {
        self.write().execute(
            "INSERT INTO policies (key_name, doc) VALUES (?1, ?2)
             ON CONFLICT (key_name) DO UPDATE SET doc = excluded.doc",
            params![policy.key_name, encode(policy)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
