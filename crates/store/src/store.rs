//! [`Store`]: the synchronous core. It owns the write side of the redb file (one writer at a
//! time, as redb allows) and hands out [`Reader`]s, which read concurrently from snapshots.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Builder, Database, DatabaseError, ReadableTable, StorageBackend, WriteTransaction};

use crate::blobs::{BLOB_USAGE, BLOBS};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{
    AckError, AppendError, During, EndpointError, KvError, OpenError, StorageError, VerifyError,
};
use crate::kv::KvWrite;
use crate::message::{Appended, NewMessage, Offset};
use crate::reader::Reader;
use crate::state::State;
use crate::stats::StoreStats;
use crate::tables::{
    ENDPOINTS, EXPIRY, KV_QUEUE_IDS, MESSAGES, QUEUES, SCHEMA_INLINE_PAYLOADS, SCHEMA_VERSION,
    STORE_META, meta_keys,
};
use crate::transaction::{Effects, Tx};
use crate::verify;

/// The durable store: per-endpoint message queues and typed key-value tables in one redb file.
///
/// Every method that changes something commits one transaction with one fsync before it
/// returns. To put many operations in one commit, use [`Store::write`]; the async
/// [`StoreHandle`](crate::StoreHandle) does that for concurrent callers (group commit).
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
    config: Config,
    clock: Arc<dyn Clock>,
    state: State,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("messages", &self.state.messages)
            .field("bytes", &self.state.total_bytes)
            .field("endpoints", &self.state.endpoints.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store file at `path`, creating it if missing. After a crash redb recovers the
    /// last committed transaction first.
    pub fn open(
        path: impl AsRef<Path>,
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let db = builder(&config).create(&path);
        Self::from_database(db, path, config, clock)
    }

    /// Opens a store on another storage medium, for example redb's `InMemoryBackend` in tests
    /// of code built on the store. `name` stands in for the path in logs and errors.
    pub fn open_with_backend(
        backend: impl StorageBackend,
        name: &str,
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        let db = builder(&config).create_with_backend(backend);
        Self::from_database(db, PathBuf::from(name), config, clock)
    }

    fn from_database(
        db: Result<Database, DatabaseError>,
        path: PathBuf,
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        let storage = |source: StorageError| OpenError::Storage {
            path: path.clone(),
            source,
        };
        let db = db.map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => OpenError::AlreadyOpen { path: path.clone() },
            other => storage(StorageError::database("open", other)),
        })?;
        let txn = db
            .begin_write()
            .map_err(|e| storage(StorageError::database("begin write", e)))?;
        let state = init(&txn, &path)?;
        txn.commit()
            .map_err(|e| storage(StorageError::database("initialise", e)))?;
        tracing::info!(
            path = %path.display(),
            messages = state.messages,
            bytes = state.total_bytes,
            endpoints = state.endpoints.len(),
            "store opened"
        );
        Ok(Self {
            db: Arc::new(db),
            path,
            config,
            clock,
            state,
        })
    }

    /// A reader over the same file; readers see every commit made before each of their calls.
    pub fn reader(&self) -> Reader {
        Reader::new(self.db.clone(), self.clock.clone(), self.config.quota_bytes)
    }

    /// The store's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sizes and counters as of the last commit.
    pub fn stats(&self) -> StoreStats {
        self.state.to_stats(self.config.quota_bytes)
    }

    /// Runs `ops` in one write transaction and commits it with one fsync.
    ///
    /// Expired references are removed first (up to [`Config::max_expired_per_commit`]). The
    /// result of `ops` is returned only if the commit succeeded; each operation's own result
    /// says whether that operation took effect.
    pub fn write<R>(&mut self, ops: impl FnOnce(&mut Tx<'_>) -> R) -> Result<R, StorageError> {
        self.write_with_effects(ops).map(|(result, _)| result)
    }

    pub(crate) fn write_with_effects<R>(
        &mut self,
        ops: impl FnOnce(&mut Tx<'_>) -> R,
    ) -> Result<(R, Effects), StorageError> {
        let txn = self.db.begin_write().during("begin write")?;
        let mut state = self.state.clone();
        let now = self.clock.now();
        let (result, effects) = {
            let mut tx = Tx::open(&txn, &mut state, &self.config, now)?;
            // A failed sweep poisons `tx`; the error surfaces from `finish`.
            let _ = tx.purge_expired(self.config.max_expired_per_commit);
            let result = ops(&mut tx);
            // Likewise for compaction; the ops' own results do not depend on it.
            let _ = tx.compact();
            (result, tx.finish()?)
        };
        if effects.dirty {
            txn.commit().during("commit")?;
            self.state = state;
        } else {
            txn.abort().during("abort")?;
        }
        Ok((result, effects))
    }

    /// Appends one message (see [`Tx::append`]).
    pub fn append(&mut self, message: &NewMessage) -> Result<Appended, AppendError> {
        self.write(|tx| tx.append(message))?
    }

    /// Acknowledges offsets of an endpoint (see [`Tx::ack`]).
    pub fn ack(&mut self, endpoint: &str, offsets: &[Offset]) -> Result<u64, AckError> {
        self.write(|tx| tx.ack(endpoint, offsets))?
    }

    /// Acknowledges an endpoint's messages of one priority up to an offset (see
    /// [`Tx::ack_through`]).
    pub fn ack_through(&mut self, endpoint: &str, through: Offset) -> Result<u64, AckError> {
        self.write(|tx| tx.ack_through(endpoint, through))?
    }

    /// Adds an endpoint (see [`Tx::add_endpoint`]).
    pub fn add_endpoint(&mut self, name: &str) -> Result<bool, EndpointError> {
        self.write(|tx| tx.add_endpoint(name))?
    }

    /// Removes an endpoint and its references (see [`Tx::remove_endpoint`]).
    pub fn remove_endpoint(&mut self, name: &str) -> Result<bool, EndpointError> {
        self.write(|tx| tx.remove_endpoint(name))?
    }

    /// Removes every reference whose TTL has passed; returns how many.
    pub fn purge_expired(&mut self) -> Result<u64, StorageError> {
        let (result, effects) = self.write_with_effects(|tx| tx.purge_expired(usize::MAX))?;
        result?;
        Ok(effects.expired)
    }

    /// Applies key-value writes atomically (see [`Tx::kv`]).
    pub fn kv(&mut self, writes: &[KvWrite]) -> Result<Vec<u64>, KvError> {
        self.write(|tx| tx.kv(writes))?
    }

    /// Checks that the tables agree with each other and with the counters: every reference
    /// points at a stored message, every message is referenced, counts and bytes add up.
    pub fn verify(&self) -> Result<(), VerifyError> {
        verify::check(&self.db, &self.state)
    }
}

fn builder(config: &Config) -> Builder {
    let mut builder = Builder::new();
    builder.set_cache_size(config.cache_bytes);
    builder.set_check_integrity_on_open(config.verify_on_open);
    builder
}

/// Creates the tables on first open, checks the schema version, loads the counters.
fn init(txn: &WriteTransaction, path: &Path) -> Result<State, OpenError> {
    let storage = |source: StorageError| OpenError::Storage {
        path: path.to_path_buf(),
        source,
    };
    let open = "create tables";
    let mut meta = txn.open_table(STORE_META).during(open).map_err(storage)?;
    let endpoints = txn.open_table(ENDPOINTS).during(open).map_err(storage)?;
    txn.open_table(MESSAGES).during(open).map_err(storage)?;
    txn.open_table(QUEUES).during(open).map_err(storage)?;
    txn.open_table(EXPIRY).during(open).map_err(storage)?;
    txn.open_table(KV_QUEUE_IDS).during(open).map_err(storage)?;
    txn.open_table(BLOBS).during(open).map_err(storage)?;

    let found = meta
        .get(meta_keys::SCHEMA_VERSION)
        .during("read schema version")
        .map_err(storage)?
        .map(|v| v.value());
    match found {
        Some(SCHEMA_VERSION) => {}
        Some(SCHEMA_INLINE_PAYLOADS) => {
            // Its records all read as records with inline payloads: only the version changes.
            meta.insert(meta_keys::SCHEMA_VERSION, SCHEMA_VERSION)
                .during("write schema version")
                .map_err(storage)?;
            tracing::info!(path = %path.display(), "store upgraded to schema {SCHEMA_VERSION}");
        }
        Some(found) => {
            return Err(OpenError::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        None => {
            meta.insert(meta_keys::SCHEMA_VERSION, SCHEMA_VERSION)
                .during("write schema version")
                .map_err(storage)?;
        }
    }
    let usage = txn.open_table(BLOB_USAGE).during(open).map_err(storage)?;
    State::load(&meta, &endpoints, &usage).map_err(storage)
}

#[cfg(test)]
mod tests;
