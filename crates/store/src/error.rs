//! Errors, one enum per operation so callers match only what that call can fail with; all convert
//! into the umbrella [`Error`].

use std::path::PathBuf;
use std::sync::Arc;

/// A failure of the storage underneath (disk, file, database engine) or of the writer task.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The database engine failed.
    #[error(
        "store {operation} failed: {source}; check the disk (space, permissions) and restart the edge hub"
    )]
    Database {
        /// What the store was doing.
        operation: &'static str,
        /// The engine's error.
        #[source]
        source: Arc<redb::Error>,
    },
    /// The file holds data the store cannot have written.
    #[error(
        "store file is inconsistent: {detail}; restore it from a backup or move it aside to start empty"
    )]
    Inconsistent {
        /// What was found.
        detail: String,
    },
    /// The writer task has stopped (the store was closed, or its thread died).
    #[error("the store writer has stopped; reopen the store")]
    Closed,
}

impl StorageError {
    /// Wraps an engine error with what the store was doing.
    pub(crate) fn database(operation: &'static str, source: impl Into<redb::Error>) -> Self {
        Self::Database {
            operation,
            source: Arc::new(source.into()),
        }
    }
}

/// Wraps engine errors with what the store was doing: `table.get(k).during("read queue")?`.
pub(crate) trait During<T> {
    fn during(self, operation: &'static str) -> Result<T, StorageError>;
}

impl<T, E: Into<redb::Error>> During<T> for Result<T, E> {
    fn during(self, operation: &'static str) -> Result<T, StorageError> {
        self.map_err(|source| StorageError::database(operation, source))
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (or another `Store` in this one) has the file open.
    #[error("store file {path} is already open by another process; stop the other edge hub first")]
    AlreadyOpen {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a newer or unknown version of the store.
    #[error(
        "store file {path} has schema version {found}, this build reads version {supported}; run a matching ironedge version"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The version this build writes.
        supported: u64,
    },
    /// The file could not be opened or read.
    #[error("cannot open store file {path}: {source}")]
    Storage {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: StorageError,
    },
}

/// Why an append was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The message has no target endpoint.
    #[error("message has no target endpoint; route it to at least one endpoint")]
    NoTargets,
    /// A target endpoint does not exist.
    #[error("unknown endpoint {endpoint:?}; add it with add_endpoint before routing to it")]
    UnknownEndpoint {
        /// The endpoint.
        endpoint: String,
    },
    /// The payload is larger than the per-message limit.
    #[error("message of {size} bytes exceeds the store's message limit of {limit} bytes")]
    MessageTooLarge {
        /// The payload size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The payload alone is larger than the whole store quota.
    #[error(
        "message of {size} bytes exceeds the store quota of {quota} bytes; raise the quota (storeLimits.maxSizeBytes) or send smaller messages"
    )]
    QuotaExceeded {
        /// The payload size.
        size: usize,
        /// The configured quota.
        quota: u64,
    },
    /// The store is full and configured to refuse new messages.
    #[error(
        "store is full ({used} of {quota} bytes used, message needs {size}); drain the endpoints or raise the quota"
    )]
    StoreFull {
        /// The payload size.
        size: usize,
        /// Bytes stored.
        used: u64,
        /// The configured quota.
        quota: u64,
    },
    /// Storage failed; the message was not stored.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why an acknowledgement failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AckError {
    /// The endpoint does not exist (it may have been removed).
    #[error("unknown endpoint {endpoint:?}; it may have been removed")]
    UnknownEndpoint {
        /// The endpoint.
        endpoint: String,
    },
    /// Storage failed; nothing was acknowledged.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeekError {
    /// The endpoint does not exist.
    #[error("unknown endpoint {endpoint:?}; add it with add_endpoint first")]
    UnknownEndpoint {
        /// The endpoint.
        endpoint: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why adding or removing an endpoint failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EndpointError {
    /// The name cannot be an endpoint name.
    #[error("invalid endpoint name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Storage failed; nothing changed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a key-value operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    /// The value could not be encoded.
    #[error("cannot encode a value for table {table:?}: {reason}")]
    Encode {
        /// The table.
        table: &'static str,
        /// The encoder's message.
        reason: String,
    },
    /// A stored value could not be decoded as the table's type.
    #[error(
        "stored value {key:?} in table {table:?} does not decode: {reason}; remove the key or fix the table's record type"
    )]
    Decode {
        /// The table.
        table: &'static str,
        /// The key (or queue id).
        key: String,
        /// The decoder's message.
        reason: String,
    },
    /// The table name collides with the store's own tables.
    #[error("table name {name:?} is reserved (names starting with \"store/\" belong to the store)")]
    ReservedName {
        /// The name.
        name: &'static str,
    },
    /// Storage failed; nothing changed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a consistency check failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    /// The store's tables disagree with each other.
    #[error("store is inconsistent ({} problems, first: {})", problems.len(), problems.first().map_or("", String::as_str))]
    Inconsistent {
        /// Every problem found.
        problems: Vec<String>,
    },
    /// Storage failed while checking.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Any store error, for callers that do not need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// See [`OpenError`].
    #[error(transparent)]
    Open(#[from] OpenError),
    /// See [`AppendError`].
    #[error(transparent)]
    Append(#[from] AppendError),
    /// See [`AckError`].
    #[error(transparent)]
    Ack(#[from] AckError),
    /// See [`PeekError`].
    #[error(transparent)]
    Peek(#[from] PeekError),
    /// See [`EndpointError`].
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// See [`KvError`].
    #[error(transparent)]
    Kv(#[from] KvError),
    /// See [`VerifyError`].
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// See [`StorageError`].
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A result with the store's umbrella error by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
