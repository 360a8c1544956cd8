//! [`StoreHandle`]: the async face of the store, with group commit.
//!
//! Every write is sent to one writer thread that owns the [`Store`]. The writer takes whatever
//! has queued up while it was busy (up to the batch limits), applies it in one transaction,
//! commits with one fsync, and only then answers each caller. There is no timer: when the writer
//! is idle a lone append commits at once; under load batches grow by themselves.
//!
//! Two ways to append: [`StoreHandle::append`] waits for room in the queue of pending operations
//! and then for the commit; [`StoreHandle::submit_append`] hands the message over at once,
//! synchronously, and calls back from the writer after the commit. Submitting is what a broker
//! wants: the order of `submit_append` calls is the order of the messages in every queue, with no
//! task between the connection and the store, and the PUBACK leaves from the callback.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{
    AckError, AppendError, EndpointError, KvError, OpenError, PeekError, StorageError,
};
use crate::kv::{KvQueue, KvTable, KvWrite};
use crate::message::{Appended, NewMessage, Offset, PeekOptions, Peeked, ReadCursor};
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
    commands: mpsc::UnboundedSender<Command>,
    /// Room in the queue of pending operations (`Config::pending_capacity`); awaiting writers
    /// hold a permit until the writer takes their operation.
    room: Arc<Semaphore>,
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
        let (commands, receiver) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(store.config().pending_capacity.max(1)));
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
                room,
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

    /// Hands `message` to the writer now and calls `done` from the writer thread once its commit
    /// returned (or failed). Messages submitted one after another are appended in that order.
    ///
    /// Unlike [`StoreHandle::append`] this never waits for room in the queue of pending
    /// operations: the caller bounds how many submissions it has outstanding (a broker's
    /// window of unacknowledged PUBLISHes does). `done` runs on the writer thread, so it must be
    /// quick and must not block (completing a oneshot or a channel send is right).
    pub fn submit_append(
        &self,
        message: NewMessage,
        done: impl FnOnce(Result<Appended, AppendError>) + Send + 'static,
    ) {
        let command = Command {
            request: Request::Append(message),
            reply: Reply::Callback(Box::new(done)),
            room: None,
        };
        if let Err(mpsc::error::SendError(command)) = self.inner.commands.send(command) {
            command.reply.fail(&StorageError::Closed);
        }
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
        self.sweep_if_expired(&peeked);
        Ok(peeked)
    }

    /// As [`StoreHandle::peek`], leaving out what `cursor` covers (see [`Reader::peek_past`]).
    pub async fn peek_past(
        &self,
        endpoint: impl Into<String>,
        options: PeekOptions,
        cursor: ReadCursor,
    ) -> Result<Peeked, PeekError> {
        let reader = self.inner.reader.clone();
        let endpoint = endpoint.into();
        let peeked =
            tokio::task::spawn_blocking(move || reader.peek_past(&endpoint, options, &cursor))
                .await
                .map_err(|_| StorageError::Closed)??;
        self.sweep_if_expired(&peeked);
        Ok(peeked)
    }

    fn sweep_if_expired(&self, peeked: &Peeked) {
        if peeked.skipped_expired > 0
            && let Ok(room) = self.inner.room.clone().try_acquire_owned()
        {
            // Best effort: if the writer is busy, the next write sweeps anyway.
            let _ = self.inner.commands.send(Command {
                request: Request::Sweep,
                reply: Reply::None,
                room: Some(room),
            });
        }
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
        let room = self
            .inner
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Closed)?;
        self.inner
            .commands
            .send(Command {
                request,
                reply,
                room: Some(room),
            })
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
    /// Released when the writer takes the operation (none for submitted appends).
    room: Option<OwnedSemaphorePermit>,
}

/// What [`StoreHandle::submit_append`] calls once the append is committed or failed.
type AppendCallback = Box<dyn FnOnce(Result<Appended, AppendError>) + Send>;

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
    Callback(AppendCallback),
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
            (Reply::Callback(done), Outcome::Append(r)) => done(r),
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
            Reply::Callback(done) => done(Err(e.into())),
            Reply::Ack(tx) => drop(tx.send(Err(e.into()))),
            Reply::Endpoint(tx) => drop(tx.send(Err(e.into()))),
            Reply::Purge(tx) => drop(tx.send(Err(e))),
            Reply::Kv(tx) => drop(tx.send(Err(e.into()))),
            Reply::Close(tx) => drop(tx.send(())),
            Reply::None => {}
        }
    }
}

fn run_writer(mut store: Store, mut commands: mpsc::UnboundedReceiver<Command>, shared: &Shared) {
    let config = store.config().clone();
    while let Some(mut first) = commands.blocking_recv() {
        let started = Instant::now();
        let mut bytes = first.request.payload_len();
        first.room = None;
        let mut batch = vec![first];
        while batch.len() < config.max_batch_ops
            && bytes < config.max_batch_bytes
            && started.elapsed() < config.max_batch_time
        {
            match commands.try_recv() {
                Ok(mut command) => {
                    bytes += command.request.payload_len();
                    command.room = None;
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
