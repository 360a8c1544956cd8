//! [`StoreHandle`]: the async face of the store, with group commit.
//!
//! Every write is sent to one writer thread that owns the [`Store`]. The writer takes whatever
//! has queued up while it was busy (up to the batch limits), applies it in one transaction,
//! commits with one fsync, and only then answers each caller. There is no timer: when the writer
//! is idle a lone append commits at once; under load batches grow by themselves.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{
    AckError, AppendError, EndpointError, KvError, OpenError, PeekError, StorageError,
};
use crate::kv::{KvQueue, KvTable, KvWrite};
use crate::message::{Appended, NewMessage, Offset, PeekOptions, Peeked};
use crate::reader::Reader;
use crate::stats::StoreStats;
use crate::store::Store;
use crate::transaction::{Effects, Tx};

/// A cloneable async handle to a store; see the module docs for how writes are batched.
///
/// A caller that drops an append's future after sending it may still find the message stored:
/// delivery is at-least-once, as with a publisher that retries after a lost PUBACK.
#[derive(Clone)]
pub struct StoreHandle {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::Sender<Command>,
    reader: Reader,
    shared: Arc<Shared>,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
}

/// What the writer publishes after each commit.
struct Shared {
    stats: Mutex<StoreStats>,
    watchers: Mutex<HashMap<String, watch::Sender<u64>>>,
    writer: Mutex<WriterStats>,
}

impl fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreHandle").finish_non_exhaustive()
    }
}

impl StoreHandle {
    /// Opens the store file and starts its writer thread.
    pub fn open(
        path: impl AsRef<Path>,
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        let store = Store::open(path, config, clock)?;
        Ok(Self::spawn(store))
    }

    /// Starts a writer thread for an open store.
    pub fn spawn(store: Store) -> Self {
        let (commands, receiver) = mpsc::channel(store.config().pending_capacity.max(1));
        let shared = Arc::new(Shared {
            stats: Mutex::new(store.stats()),
            watchers: Mutex::new(HashMap::new()),
            writer: Mutex::new(WriterStats::default()),
        });
        let reader = store.reader();
        let writer_shared = shared.clone();
        let writer = thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run_writer(store, receiver, &writer_shared))
            .map_err(|e| tracing::error!(error = %e, "cannot start the store writer thread"))
            .ok();
        Self {
            inner: Arc::new(Inner {
                commands,
                reader,
                shared,
                writer: Mutex::new(writer),
            }),
        }
    }

    /// Appends a message; resolves once it is durably committed (safe to PUBACK then).
    pub async fn append(&self, message: NewMessage) -> Result<Appended, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Append(message), Reply::Append(reply))
            .await?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Acknowledges offsets of an endpoint (see [`Tx::ack`]); resolves once committed.
    pub async fn ack(
        &self,
        endpoint: impl Into<String>,
        offsets: Vec<Offset>,
    ) -> Result<u64, AckError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Ack {
            endpoint: endpoint.into(),
            offsets,
        };
        self.send(request, Reply::Ack(reply)).await?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Acknowledges an endpoint's messages of one priority up to an offset (see
    /// [`Tx::ack_through`]); resolves once committed.
    pub async fn ack_through(
        &self,
        endpoint: impl Into<String>,
        through: Offset,
    ) -> Result<u64, AckError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::AckThrough {
            endpoint: endpoint.into(),
            through,
        };
        self.send(request, Reply::Ack(reply)).await?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Adds an endpoint; false if it already existed.
    pub async fn add_endpoint(&self, name: impl Into<String>) -> Result<bool, EndpointError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::AddEndpoint(name.into()), Reply::Endpoint(reply))
            .await?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Removes an endpoint and drops its references; false if it did not exist.
    pub async fn remove_endpoint(&self, name: impl Into<String>) -> Result<bool, EndpointError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::RemoveEndpoint(name.into()), Reply::Endpoint(reply))
            .await?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Removes every reference whose TTL has passed; returns how many were removed by the
    /// commit. The edge hub calls this periodically (IoT Edge's `MessageCleanupIntervalSecs`);
    /// writes also remove expired references as they go.
    pub async fn purge_expired(&self) -> Result<u64, StorageError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Purge, Reply::Purge(reply)).await?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Applies key-value writes atomically; returns the ids of pushed queue items.
    pub async fn kv(&self, writes: Vec<KvWrite>) -> Result<Vec<u64>, KvError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Kv(writes), Reply::Kv(reply)).await?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Sets `key` in `table`; resolves once committed.
    pub async fn put<V: Serialize>(
        &self,
        table: &KvTable<V>,
        key: impl Into<String>,
        value: &V,
    ) -> Result<(), KvError> {
        self.kv(vec![table.put(key, value)?]).await.map(drop)
    }

    /// Removes `key` from `table`; resolves once committed.
    pub async fn remove<V>(
        &self,
        table: &KvTable<V>,
        key: impl Into<String>,
    ) -> Result<(), KvError> {
        self.kv(vec![table.remove(key)]).await.map(drop)
    }

    /// Appends to a key-value queue; returns the item's id once committed.
    pub async fn push<V: Serialize>(&self, queue: &KvQueue<V>, value: &V) -> Result<u64, KvError> {
        let ids = self.kv(vec![queue.push(value)?]).await?;
        ids.first().copied().ok_or_else(|| {
            KvError::Storage(StorageError::Inconsistent {
                detail: "a push committed without an id".to_owned(),
            })
        })
    }

    /// Reads an endpoint's queue without removing anything (see [`Reader::peek`]). Expired
    /// messages it passes over are handed to the writer for removal.
    pub async fn peek(
        &self,
        endpoint: impl Into<String>,
        options: PeekOptions,
    ) -> Result<Peeked, PeekError> {
        let reader = self.inner.reader.clone();
        let endpoint = endpoint.into();
        let peeked = tokio::task::spawn_blocking(move || reader.peek(&endpoint, options))
            .await
            .map_err(|_| StorageError::Closed)??;
        if peeked.skipped_expired > 0 {
            // Best effort: if the writer is busy, the next write sweeps anyway.
            let _ = self.inner.commands.try_send(Command {
                request: Request::Sweep,
                reply: Reply::None,
            });
        }
        Ok(peeked)
    }

    /// Synchronous reads: key-value lookups, counters, peeks from blocking code.
    pub fn reader(&self) -> &Reader {
        &self.inner.reader
    }

    /// Sizes and counters as of the last commit, without touching the file.
    pub fn stats(&self) -> StoreStats {
        lock(&self.inner.shared.stats).clone()
    }

    /// How the writer has batched so far (commits, operations, largest batch).
    pub fn writer_stats(&self) -> WriterStats {
        *lock(&self.inner.shared.writer)
    }

    /// A receiver whose value grows by the number of messages appended to `endpoint` by each
    /// commit; a consumer waits on `changed()` instead of polling.
    pub fn subscribe(&self, endpoint: &str) -> watch::Receiver<u64> {
        lock(&self.inner.shared.watchers)
            .entry(endpoint.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Commits everything sent before, stops the writer and waits for it. Later writes fail
    /// with [`StorageError::Closed`]; the file is released when every clone is dropped.
    pub async fn close(&self) -> Result<(), StorageError> {
        let (reply, answer) = oneshot::channel();
        if self.send(Request::Close, Reply::Close(reply)).await.is_ok() {
            let _ = answer.await;
        }
        let writer = lock(&self.inner.writer).take();
        if let Some(writer) = writer {
            tokio::task::spawn_blocking(move || writer.join())
                .await
                .map_err(|_| StorageError::Closed)?
                .map_err(|_| StorageError::Closed)?;
        }
        Ok(())
    }

    async fn send(&self, request: Request, reply: Reply) -> Result<(), StorageError> {
        self.inner
            .commands
            .send(Command { request, reply })
            .await
            .map_err(|_| StorageError::Closed)
    }
}

/// Group-commit counters of a [`StoreHandle`]'s writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Batches taken from the queue of waiting operations.
    pub batches_total: u64,
    /// Batches that changed something and were committed with an fsync.
    pub commits_total: u64,
    /// Operations answered (appends, acks, key-value writes, ...).
    pub operations_total: u64,
    /// The most operations one batch held.
    pub largest_batch: u64,
    /// Batches whose commit failed (every operation in them got the storage error).
    pub failed_batches_total: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are plain snapshots, valid even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One queued write and where its answer goes.
struct Command {
    request: Request,
    reply: Reply,
}

enum Request {
    Append(NewMessage),
    Ack {
        endpoint: String,
        offsets: Vec<Offset>,
    },
    AckThrough {
        endpoint: String,
        through: Offset,
    },
    AddEndpoint(String),
    RemoveEndpoint(String),
    Purge,
    Sweep,
    Kv(Vec<KvWrite>),
    Close,
}

impl Request {
    fn payload_len(&self) -> usize {
        match self {
            Request::Append(m) => m.payload.len(),
            Request::Kv(writes) => writes.iter().map(|w| w.0.payload_len()).sum(),
            _ => 0,
        }
    }

    fn apply(&self, tx: &mut Tx<'_>) -> Outcome {
        match self {
            Request::Append(message) => Outcome::Append(tx.append(message)),
            Request::Ack { endpoint, offsets } => Outcome::Ack(tx.ack(endpoint, offsets)),
            Request::AckThrough { endpoint, through } => {
                Outcome::Ack(tx.ack_through(endpoint, *through))
            }
            Request::AddEndpoint(name) => Outcome::Endpoint(tx.add_endpoint(name)),
            Request::RemoveEndpoint(name) => Outcome::Endpoint(tx.remove_endpoint(name)),
            Request::Purge => Outcome::Purge(tx.purge_expired(usize::MAX).map(drop)),
            Request::Kv(writes) => Outcome::Kv(tx.kv(writes)),
            Request::Sweep | Request::Close => Outcome::Done,
        }
    }
}

enum Outcome {
    Append(Result<Appended, AppendError>),
    Ack(Result<u64, AckError>),
    Endpoint(Result<bool, EndpointError>),
    Purge(Result<(), StorageError>),
    Kv(Result<Vec<u64>, KvError>),
    Done,
}

enum Reply {
    Append(oneshot::Sender<Result<Appended, AppendError>>),
    Ack(oneshot::Sender<Result<u64, AckError>>),
    Endpoint(oneshot::Sender<Result<bool, EndpointError>>),
    Purge(oneshot::Sender<Result<u64, StorageError>>),
    Kv(oneshot::Sender<Result<Vec<u64>, KvError>>),
    Close(oneshot::Sender<()>),
    None,
}

impl Reply {
    /// Answers after a successful commit. A caller that went away is no longer interested.
    fn send(self, outcome: Outcome, effects: &Effects) {
        match (self, outcome) {
            (Reply::Append(tx), Outcome::Append(r)) => drop(tx.send(r)),
            (Reply::Ack(tx), Outcome::Ack(r)) => drop(tx.send(r)),
            (Reply::Endpoint(tx), Outcome::Endpoint(r)) => drop(tx.send(r)),
            (Reply::Purge(tx), Outcome::Purge(r)) => drop(tx.send(r.map(|()| effects.expired))),
            (Reply::Kv(tx), Outcome::Kv(r)) => drop(tx.send(r)),
            (Reply::Close(tx), _) => drop(tx.send(())),
            _ => {}
        }
    }

    /// Answers when the batch's commit failed: nothing of it took effect.
    fn fail(self, error: &StorageError) {
        let e = error.clone();
        match self {
            Reply::Append(tx) => drop(tx.send(Err(e.into()))),
            Reply::Ack(tx) => drop(tx.send(Err(e.into()))),
            Reply::Endpoint(tx) => drop(tx.send(Err(e.into()))),
            Reply::Purge(tx) => drop(tx.send(Err(e))),
            Reply::Kv(tx) => drop(tx.send(Err(e.into()))),
            Reply::Close(tx) => drop(tx.send(())),
            Reply::None => {}
        }
    }
}

fn run_writer(mut store: Store, mut commands: mpsc::Receiver<Command>, shared: &Shared) {
    let config = store.config().clone();
    while let Some(first) = commands.blocking_recv() {
        let started = Instant::now();
        let mut bytes = first.request.payload_len();
        let mut batch = vec![first];
        while batch.len() < config.max_batch_ops
            && bytes < config.max_batch_bytes
            && started.elapsed() < config.max_batch_time
        {
            match commands.try_recv() {
                Ok(command) => {
                    bytes += command.request.payload_len();
                    batch.push(command);
                }
                Err(_) => break,
            }
        }
        let closing = batch.iter().any(|c| matches!(c.request, Request::Close));
        commit_batch(&mut store, batch, shared);
        if closing {
            break;
        }
    }
    tracing::debug!(path = %store.path().display(), "store writer stopped");
}

fn commit_batch(store: &mut Store, batch: Vec<Command>, shared: &Shared) {
    let (requests, replies): (Vec<Request>, Vec<Reply>) =
        batch.into_iter().map(|c| (c.request, c.reply)).unzip();
    let result = store.write_with_effects(|tx| {
        requests
            .iter()
            .map(|request| request.apply(tx))
            .collect::<Vec<_>>()
    });
    match result {
        Ok((outcomes, effects)) => {
            let mut writer = lock(&shared.writer);
            writer.batches_total += 1;
            writer.operations_total += replies.len() as u64;
            writer.largest_batch = writer.largest_batch.max(replies.len() as u64);
            if effects.dirty {
                writer.commits_total += 1;
            }
            drop(writer);
            if effects.dirty {
                *lock(&shared.stats) = store.stats();
                let watchers = lock(&shared.watchers);
                for (endpoint, count) in &effects.appended {
                    if let Some(watcher) = watchers.get(endpoint) {
                        watcher.send_modify(|n| *n += count);
                    }
                }
            }
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                reply.send(outcome, &effects);
            }
        }
        Err(error) => {
            lock(&shared.writer).failed_batches_total += 1;
            tracing::error!(%error, operations = replies.len(), "store commit failed");
            for reply in replies {
                reply.fail(&error);
            }
        }
    }
}
