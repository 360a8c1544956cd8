//! [`Tx`]: the operations of one write transaction. The writer runs a whole batch of appends,
//! acknowledgements and key-value writes through one `Tx` and commits it with one fsync.
//!
//! Every operation validates before it modifies anything, so a refused operation (unknown
//! endpoint, quota) leaves the transaction as it was and the others in the batch still commit. A
//! storage failure instead poisons the transaction: later operations fail at once and the commit
//! is refused, so nothing of the batch is half-applied.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::blobs::{
    BLOB_USAGE, BLOBS, BlobBuilder, BlobUsage, BlobView, Location, UsageDelta, write_blob,
};
use crate::clock::Timestamp;
use crate::config::{Config, QuotaPolicy};
use crate::error::{AckError, AppendError, During, EndpointError, KvError, StorageError};
use crate::kv::{KvOp, KvWrite, check_name};
use crate::message::{Appended, NewMessage, Offset};
use crate::state::{EndpointState, State};
use crate::stats::EndpointStats;
use crate::tables::{
    ENDPOINTS, EXPIRY, EndpointRecord, ExpiryKey, KV_QUEUE_IDS, MESSAGES, MessageRecord, NEVER,
    Payload, QUEUES, QueueEntry, QueueKey, RefTarget, STORE_META,
};

/// Longest endpoint name accepted.
const MAX_ENDPOINT_NAME: usize = 1024;

/// Most live payload bytes one commit copies out of sparse blobs.
const COMPACT_BYTES_PER_COMMIT: u64 = 1024 * 1024;

/// Why a reference leaves a queue; decides which counter it lands in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    Acked,
    Expired,
    Evicted,
    EndpointRemoved,
}

/// What a committed transaction changed that others may wait on.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Endpoint names that received messages, with how many.
    pub(crate) appended: Vec<(String, u64)>,
    /// References removed because their TTL passed.
    pub(crate) expired: u64,
    /// Whether anything was written.
    pub(crate) dirty: bool,
}

/// One write transaction over the store; see [`Store::write`](crate::Store::write).
pub struct Tx<'t> {
    txn: &'t WriteTransaction,
    messages: Table<'t, u64, &'static [u8]>,
    queues: Table<'t, QueueKey, QueueEntry>,
    expiry: Table<'t, ExpiryKey, ()>,
    endpoints: Table<'t, &'static str, EndpointRecord>,
    meta: Table<'t, &'static str, u64>,
    blobs: Table<'t, u64, &'static [u8]>,
    usage: Table<'t, u64, BlobUsage>,
    /// The blob this transaction's payloads go into.
    building: Option<BlobBuilder>,
    /// Changes to blob usage, written when the transaction finishes.
    usage_deltas: BTreeMap<u64, UsageDelta>,
    state: &'t mut State,
    config: &'t Config,
    now: Timestamp,
    touched: BTreeSet<u32>,
    removed_endpoints: Vec<String>,
    appended: BTreeMap<u32, u64>,
    expired: u64,
    dirty: bool,
    failed: Option<StorageError>,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("now", &self.now)
            .field("dirty", &self.dirty)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// Errors that may carry a storage failure, which poisons the transaction.
trait StorageFailure {
    fn storage(&self) -> Option<&StorageError>;
}

macro_rules! storage_failure {
    ($($error:ty),*) => {$(
        impl StorageFailure for $error {
            fn storage(&self) -> Option<&StorageError> {
                match self {
                    Self::Storage(e) => Some(e),
                    _ => None,
                }
            }
        }
    )*};
}
storage_failure!(AppendError, AckError, EndpointError, KvError);

impl StorageFailure for StorageError {
    fn storage(&self) -> Option<&StorageError> {
        Some(self)
    }
}

impl<'t> Tx<'t> {
    pub(crate) fn open(
        txn: &'t WriteTransaction,
        state: &'t mut State,
        config: &'t Config,
        now: Timestamp,
    ) -> Result<Self, StorageError> {
        let open = "open tables";
        Ok(Self {
            txn,
            messages: txn.open_table(MESSAGES).during(open)?,
            queues: txn.open_table(QUEUES).during(open)?,
            expiry: txn.open_table(EXPIRY).during(open)?,
            endpoints: txn.open_table(ENDPOINTS).during(open)?,
            meta: txn.open_table(STORE_META).during(open)?,
            blobs: txn.open_table(BLOBS).during(open)?,
            usage: txn.open_table(BLOB_USAGE).during(open)?,
            building: None,
            usage_deltas: BTreeMap::new(),
            state,
            config,
            now,
            touched: BTreeSet::new(),
            removed_endpoints: Vec::new(),
            appended: BTreeMap::new(),
            expired: 0,
            dirty: false,
            failed: None,
        })
    }

    /// The time this transaction runs at (enqueue time of its appends, expiry cut-off).
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Stores a message once and queues a reference to it for every target endpoint.
    ///
    /// A message routed to the same endpoint twice is queued there once, at the more urgent
    /// priority and the longer TTL. When the quota would be exceeded the oldest messages are
    /// evicted first (or the append is refused, per [`QuotaPolicy`]).
    pub fn append(&mut self, message: &NewMessage) -> Result<Appended, AppendError> {
        self.guard(|tx| tx.append_inner(message))
    }

    /// Acknowledges these offsets of `endpoint`; returns how many were still queued (offsets
    /// already acknowledged, expired or evicted are ignored, so redelivery is harmless).
    pub fn ack(&mut self, endpoint: &str, offsets: &[Offset]) -> Result<u64, AckError> {
        self.guard(|tx| {
            let id = tx
                .endpoint_id(endpoint)
                .ok_or_else(|| AckError::UnknownEndpoint {
                    endpoint: endpoint.to_owned(),
                })?;
            let mut acked = 0;
            for offset in offsets {
                if tx.remove_ref((id, offset.priority, offset.seq), Removal::Acked)? {
                    acked += 1;
                }
            }
            Ok(acked)
        })
    }

    /// Acknowledges every message of `endpoint` at `through.priority` up to and including
    /// `through.seq`. Other priorities are untouched: a message of a more urgent priority that
    /// arrived after the batch was read is never acknowledged by accident.
    pub fn ack_through(&mut self, endpoint: &str, through: Offset) -> Result<u64, AckError> {
        self.guard(|tx| {
            let id = tx
                .endpoint_id(endpoint)
                .ok_or_else(|| AckError::UnknownEndpoint {
                    endpoint: endpoint.to_owned(),
                })?;
            let range = (id, through.priority, 0)..=(id, through.priority, through.seq);
            let keys = tx.collect_queue_keys(range, usize::MAX)?;
            for key in &keys {
                tx.remove_ref(*key, Removal::Acked)?;
            }
            Ok(keys.len() as u64)
        })
    }

    /// Adds an endpoint; returns false if it already existed.
    pub fn add_endpoint(&mut self, name: &str) -> Result<bool, EndpointError> {
        self.guard(|tx| {
            check_endpoint_name(name)?;
            if tx.state.ids.contains_key(name) {
                return Ok(false);
            }
            let id = tx.state.next_endpoint_id;
            tx.state.next_endpoint_id = id.checked_add(1).ok_or(EndpointError::InvalidName {
                name: name.to_owned(),
                reason: "the store has run out of endpoint ids",
            })?;
            tx.state.ids.insert(name.to_owned(), id);
            tx.state.endpoints.insert(
                id,
                EndpointState {
                    name: name.to_owned(),
                    stats: EndpointStats::default(),
                },
            );
            tx.removed_endpoints.retain(|n| n != name);
            tx.touched.insert(id);
            tx.dirty = true;
            Ok(true)
        })
    }

    /// Removes an endpoint and drops its references (messages no other endpoint holds are
    /// deleted); returns false if it did not exist.
    pub fn remove_endpoint(&mut self, name: &str) -> Result<bool, EndpointError> {
        self.guard(|tx| {
            let Some(id) = tx.endpoint_id(name) else {
                return Ok(false);
            };
            let keys = tx.collect_queue_keys((id, 0, 0)..=(id, u32::MAX, u64::MAX), usize::MAX)?;
            for key in keys {
                tx.remove_ref(key, Removal::EndpointRemoved)?;
            }
            tx.state.ids.remove(name);
            tx.state.endpoints.remove(&id);
            tx.touched.remove(&id);
            tx.appended.remove(&id);
            tx.removed_endpoints.push(name.to_owned());
            tx.dirty = true;
            Ok(true)
        })
    }

    /// Removes up to `limit` references whose TTL has passed, counting each as expired; returns
    /// how many. Every write transaction already does this first, up to
    /// [`Config::max_expired_per_commit`].
    pub fn purge_expired(&mut self, limit: usize) -> Result<u64, StorageError> {
        self.guard(|tx| {
            let cut_off = tx.now.as_unix_millis();
            let mut keys = Vec::new();
            for entry in tx
                .expiry
                .range(..=(cut_off, u32::MAX, u32::MAX, u64::MAX))
                .during("scan expiry index")?
                .take(limit)
            {
                let (key, _) = entry.during("scan expiry index")?;
                keys.push(key.value());
            }
            let mut removed = 0;
            for (expires_at, endpoint, priority, seq) in keys {
                if tx.remove_ref((endpoint, priority, seq), Removal::Expired)? {
                    removed += 1;
                } else {
                    // An index entry without its reference: drop it so it is not scanned again.
                    tx.expiry
                        .remove((expires_at, endpoint, priority, seq))
                        .during("remove expiry entry")?;
                    tx.dirty = true;
                }
            }
            Ok(removed)
        })
    }

    /// Applies key-value writes atomically; returns the ids given to pushed queue items, in order.
    pub fn kv(&mut self, writes: &[KvWrite]) -> Result<Vec<u64>, KvError> {
        self.guard(|tx| {
            for write in writes {
                check_name(write.0.table_name())?;
            }
            let mut pushed = Vec::new();
            for write in writes {
                if let Some(id) = tx.kv_one(&write.0)? {
                    pushed.push(id);
                }
            }
            tx.dirty |= !writes.is_empty();
            Ok(pushed)
        })
    }

    /// Runs `op`, and poisons the transaction if it hit a storage failure.
    fn guard<T, E>(&mut self, op: impl FnOnce(&mut Self) -> Result<T, E>) -> Result<T, E>
    where
        E: StorageFailure + From<StorageError>,
    {
        if let Some(failed) = &self.failed {
            return Err(failed.clone().into());
        }
        let result = op(self);
        if let Err(e) = &result
            && let Some(storage) = e.storage()
        {
            self.failed = Some(storage.clone());
        }
        result
    }

    fn endpoint_id(&self, name: &str) -> Option<u32> {
        self.state.ids.get(name).copied()
    }

    fn append_inner(&mut self, message: &NewMessage) -> Result<Appended, AppendError> {
        let size = message.payload.len();
        let limit = self.config.max_message_bytes.min(u32::MAX as usize);
        if size > limit {
            return Err(AppendError::MessageTooLarge { size, limit });
        }
        if message.targets.is_empty() {
            return Err(AppendError::NoTargets);
        }
        let targets = self.resolve_targets(message)?;
        self.make_room(size)?;

        let seq = self.state.next_seq;
        let now = self.now.as_unix_millis();
        #[allow(clippy::cast_possible_truncation)] // bounded by `limit` above
        let size32 = size as u32;
        let err = "append message";
        let payload = if size <= self.config.inline_payload_max {
            Payload::Inline(&message.payload)
        } else {
            Payload::InBlob(self.stage_payload(seq, &message.payload)?)
        };
        let record = MessageRecord::encode(&targets, &payload);
        self.messages.insert(seq, record.as_slice()).during(err)?;
        for target in &targets {
            let entry = QueueEntry {
                expires_at: target.expires_at,
                enqueued_at: now,
                size: size32,
            };
            self.queues
                .insert((target.endpoint_id, target.priority, seq), entry)
                .during(err)?;
            if target.expires_at != NEVER {
                self.expiry
                    .insert(
                        (target.expires_at, target.endpoint_id, target.priority, seq),
                        (),
                    )
                    .during(err)?;
            }
            if let Some(stats) = self.state.stats_mut(target.endpoint_id) {
                stats.len += 1;
                stats.bytes += size as u64;
                stats.appended_total += 1;
            }
            self.touched.insert(target.endpoint_id);
            *self.appended.entry(target.endpoint_id).or_default() += 1;
        }
        self.state.next_seq += 1;
        self.state.total_bytes += size as u64;
        self.state.messages += 1;
        self.dirty = true;
        Ok(Appended {
            seq,
            enqueued_at: self.now,
        })
    }

    /// Endpoint names to ids, merging duplicates (most urgent priority, longest TTL).
    fn resolve_targets(&self, message: &NewMessage) -> Result<Vec<RefTarget>, AppendError> {
        let mut merged: BTreeMap<u32, RefTarget> = BTreeMap::new();
        for target in &message.targets {
            let endpoint_id =
                self.endpoint_id(&target.endpoint)
                    .ok_or_else(|| AppendError::UnknownEndpoint {
                        endpoint: target.endpoint.clone(),
                    })?;
            let expires_at = target
                .ttl
                .map_or(NEVER, |ttl| self.now.saturating_add(ttl).as_unix_millis());
            merged
                .entry(endpoint_id)
                .and_modify(|t| {
                    t.priority = t.priority.min(target.priority);
                    t.expires_at = t.expires_at.max(expires_at);
                })
                .or_insert(RefTarget {
                    endpoint_id,
                    priority: target.priority,
                    expires_at,
                });
        }
        Ok(merged.into_values().collect())
    }

    /// Makes room for `size` more bytes under the quota.
    fn make_room(&mut self, size: usize) -> Result<(), AppendError> {
        let Some(quota) = self.config.quota_bytes else {
            return Ok(());
        };
        if size as u64 > quota {
            return Err(AppendError::QuotaExceeded { size, quota });
        }
        while self.state.total_bytes + size as u64 > quota {
            match self.config.quota_policy {
                QuotaPolicy::RejectNew => {
                    return Err(AppendError::StoreFull {
                        size,
                        used: self.state.total_bytes,
                        quota,
                    });
                }
                QuotaPolicy::EvictOldest => {
                    if !self.evict_oldest()? {
                        return Err(StorageError::Inconsistent {
                            detail: format!(
                                "byte counter says {} bytes stored but no message is left",
                                self.state.total_bytes
                            ),
                        }
                        .into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the oldest message and every reference to it; false if the store is empty.
    fn evict_oldest(&mut self) -> Result<bool, StorageError> {
        let err = "evict oldest message";
        let Some(seq) = self
            .messages
            .first()
            .during(err)?
            .map(|(key, _)| key.value())
        else {
            return Ok(false);
        };
        let Some(removed) = self.messages.remove(seq).during(err)? else {
            return Ok(false);
        };
        let record = MessageRecord::new(removed.value());
        let (targets, payload) = (record.targets(), record.payload());
        let (len, location) = (payload.len(), payload.location());
        drop(removed);
        for target in &targets {
            self.unqueue((target.endpoint_id, target.priority, seq), Removal::Evicted)?;
        }
        self.forget_message(len, location);
        self.state.evicted_messages += 1;
        self.dirty = true;
        Ok(true)
    }

    /// Removes one queue reference and releases its message; false if it was not queued.
    fn remove_ref(&mut self, key: QueueKey, reason: Removal) -> Result<bool, StorageError> {
        if self.unqueue(key, reason)?.is_none() {
            return Ok(false);
        }
        self.release(key.2, key.0)?;
        Ok(true)
    }

    /// Removes one queue reference (and its expiry entry) and counts why; the message itself is
    /// left to the caller.
    fn unqueue(
        &mut self,
        key: QueueKey,
        reason: Removal,
    ) -> Result<Option<QueueEntry>, StorageError> {
        let err = "remove queued message";
        let Some(entry) = self.queues.remove(key).during(err)?.map(|v| v.value()) else {
            return Ok(None);
        };
        let (endpoint_id, priority, seq) = key;
        if entry.expires_at != NEVER {
            self.expiry
                .remove((entry.expires_at, endpoint_id, priority, seq))
                .during(err)?;
        }
        if reason != Removal::EndpointRemoved
            && let Some(stats) = self.state.stats_mut(endpoint_id)
        {
            stats.len = stats.len.saturating_sub(1);
            stats.bytes = stats.bytes.saturating_sub(u64::from(entry.size));
            match reason {
                Removal::Acked => stats.acked_total += 1,
                Removal::Expired => {
                    stats.expired_total += 1;
                    self.expired += 1;
                }
                Removal::Evicted => stats.evicted_total += 1,
                Removal::EndpointRemoved => {}
            }
            self.touched.insert(endpoint_id);
        }
        self.dirty = true;
        Ok(Some(entry))
    }

    /// Drops `endpoint_id`'s hold on message `seq`, deleting the message when none is left.
    fn release(&mut self, seq: u64, endpoint_id: u32) -> Result<(), StorageError> {
        let err = "release message";
        let Some(removed) = self.messages.remove(seq).during(err)? else {
            return Ok(());
        };
        let record = MessageRecord::new(removed.value());
        let mut targets = record.targets();
        targets.retain(|t| t.endpoint_id != endpoint_id);
        if targets.is_empty() {
            let payload = record.payload();
            let (len, location) = (payload.len(), payload.location());
            drop(removed);
            self.forget_message(len, location);
            return Ok(());
        }
        // Other endpoints still hold it: write it back with the shorter list.
        let record = MessageRecord::encode(&targets, &record.payload());
        drop(removed);
        self.messages.insert(seq, record.as_slice()).during(err)?;
        Ok(())
    }

    fn forget_message(&mut self, len: u32, location: Option<Location>) {
        self.state.total_bytes = self.state.total_bytes.saturating_sub(u64::from(len));
        self.state.messages = self.state.messages.saturating_sub(1);
        if let Some(location) = location {
            self.usage_change(location.blob, UsageDelta::removed(location.len));
        }
    }

    fn usage_change(&mut self, blob: u64, delta: UsageDelta) {
        self.usage_deltas.entry(blob).or_default().merge(delta);
    }

    /// Puts a payload into the blob being built (closing it first when full).
    fn stage_payload(&mut self, seq: u64, payload: &[u8]) -> Result<Location, StorageError> {
        if self
            .building
            .as_ref()
            .is_some_and(|b| b.is_full_for(payload.len()))
        {
            self.close_blob()?;
        }
        let state = &mut *self.state;
        let building = self.building.get_or_insert_with(|| {
            let id = state.next_blob;
            state.next_blob += 1;
            BlobBuilder::new(id)
        });
        let location = building.push(seq, payload);
        self.usage_change(location.blob, UsageDelta::added(location.len));
        Ok(location)
    }

    /// Writes the blob being built.
    fn close_blob(&mut self) -> Result<(), StorageError> {
        match self.building.take() {
            Some(building) => write_blob(&mut self.blobs, &building),
            None => Ok(()),
        }
    }

    /// Copies the live messages of sparse blobs no commit has changed for
    /// [`Config::compact_after_commits`] into the blob being built, so their dead neighbours'
    /// bytes can go; at most `COMPACT_BYTES_PER_COMMIT` per commit, whole blobs at a time.
    /// Waiting leaves alone the blob at an endpoint's acknowledgement frontier, which dies by
    /// itself.
    pub(crate) fn compact(&mut self) -> Result<u64, StorageError> {
        self.guard(|tx| {
            let ripe: Vec<u64> = tx
                .state
                .sparse_blobs
                .iter()
                .filter(|(_, changed)| {
                    changed.saturating_add(tx.config.compact_after_commits) <= tx.state.commits
                })
                .map(|(blob, _)| *blob)
                .collect();
            let mut moved = 0;
            for blob in ripe {
                if moved >= COMPACT_BYTES_PER_COMMIT {
                    break;
                }
                moved += tx.compact_blob(blob)?;
            }
            Ok(moved)
        })
    }

    fn compact_blob(&mut self, blob: u64) -> Result<u64, StorageError> {
        let err = "compact payload blob";
        self.state.sparse_blobs.remove(&blob);
        let Some(stored) = self
            .blobs
            .get(blob)
            .during(err)?
            .map(|v| v.value().to_vec())
        else {
            return Ok(0);
        };
        let view = BlobView::new(&stored);
        let mut moved = 0;
        for (seq, old) in view.directory(blob) {
            let Some((targets, current)) = self.messages.get(seq).during(err)?.map(|v| {
                let record = MessageRecord::new(v.value());
                (record.targets(), record.payload().location())
            }) else {
                continue;
            };
            // Moved or deleted since the blob was written: the directory entry is stale.
            if current != Some(old) {
                continue;
            }
            let payload = view
                .payload(&old)
                .ok_or_else(|| StorageError::Inconsistent {
                    detail: format!("message {seq} lies outside payload blob {blob}"),
                })?;
            let location = self.stage_payload(seq, payload)?;
            let record = MessageRecord::encode(&targets, &Payload::InBlob(location));
            self.messages.insert(seq, record.as_slice()).during(err)?;
            self.usage_change(blob, UsageDelta::removed(old.len));
            moved += u64::from(old.len);
        }
        self.dirty = true;
        Ok(moved)
    }

    /// Writes the usage changes of this transaction; deletes blobs nobody uses any more.
    fn write_blob_usage(&mut self) -> Result<(), StorageError> {
        let err = "write blob usage";
        let commit = self.state.commits + 1;
        for (blob, delta) in std::mem::take(&mut self.usage_deltas) {
            let mut usage = self
                .usage
                .get(blob)
                .during(err)?
                .map(|v| v.value())
                .unwrap_or_default();
            usage.apply(&delta);
            self.state.blob_bytes = self.state.blob_bytes.saturating_add(delta.size);
            if usage.live_count == 0 {
                self.usage.remove(blob).during(err)?;
                self.blobs.remove(blob).during(err)?;
                self.state.blob_bytes = self.state.blob_bytes.saturating_sub(usage.size);
                self.state.sparse_blobs.remove(&blob);
                continue;
            }
            self.usage.insert(blob, usage).during(err)?;
            if usage.is_sparse() {
                self.state.sparse_blobs.insert(blob, commit);
            } else {
                self.state.sparse_blobs.remove(&blob);
            }
        }
        self.state.commits = commit;
        Ok(())
    }

    fn collect_queue_keys(
        &self,
        range: std::ops::RangeInclusive<QueueKey>,
        limit: usize,
    ) -> Result<Vec<QueueKey>, StorageError> {
        let err = "scan queue";
        let mut keys = Vec::new();
        for entry in self.queues.range(range).during(err)?.take(limit) {
            let (key, _) = entry.during(err)?;
            keys.push(key.value());
        }
        Ok(keys)
    }

    fn kv_one(&mut self, op: &KvOp) -> Result<Option<u64>, KvError> {
        let err = "write key-value table";
        match op {
            KvOp::Put { table, key, bytes } => {
                let mut t = self.txn.open_table(kv_table(table)).during(err)?;
                t.insert(key.as_str(), bytes.as_slice()).during(err)?;
            }
            KvOp::Remove { table, key } => {
                let mut t = self.txn.open_table(kv_table(table)).during(err)?;
                t.remove(key.as_str()).during(err)?;
            }
            KvOp::Clear { table } => {
                let mut t = self.txn.open_table(kv_table(table)).during(err)?;
                t.retain(|_, _| false).during(err)?;
            }
            KvOp::Push { queue, bytes } => {
                let mut ids = self.txn.open_table(KV_QUEUE_IDS).during(err)?;
                let id = ids.get(*queue).during(err)?.map_or(1, |v| v.value());
                ids.insert(*queue, id + 1).during(err)?;
                let mut t = self.txn.open_table(kv_queue(queue)).during(err)?;
                t.insert(id, bytes.as_slice()).during(err)?;
                return Ok(Some(id));
            }
            KvOp::Ack { queue, ids } => {
                let mut t = self.txn.open_table(kv_queue(queue)).during(err)?;
                for id in ids {
                    t.remove(*id).during(err)?;
                }
            }
            KvOp::AckThrough { queue, id } => {
                let mut t = self.txn.open_table(kv_queue(queue)).during(err)?;
                t.retain_in(..=*id, |_, _| false).during(err)?;
            }
        }
        Ok(None)
    }

    /// Writes changed counters; returns what the commit will have changed.
    pub(crate) fn finish(mut self) -> Result<Effects, StorageError> {
        if let Some(failed) = self.failed.take() {
            return Err(failed);
        }
        if !self.dirty {
            return Ok(Effects::default());
        }
        self.close_blob()?;
        self.write_blob_usage()?;
        let err = "write endpoint counters";
        for name in &self.removed_endpoints {
            if !self.state.ids.contains_key(name) {
                self.endpoints.remove(name.as_str()).during(err)?;
            }
        }
        for id in &self.touched {
            if let Some(endpoint) = self.state.endpoints.get(id) {
                let record = EndpointRecord {
                    id: *id,
                    stats: endpoint.stats,
                };
                self.endpoints
                    .insert(endpoint.name.as_str(), record)
                    .during(err)?;
            }
        }
        self.state.save_counters(&mut self.meta)?;
        let appended = self
            .appended
            .iter()
            .filter_map(|(id, n)| Some((self.state.endpoints.get(id)?.name.clone(), *n)))
            .collect();
        Ok(Effects {
            appended,
            expired: self.expired,
            dirty: true,
        })
    }
}

/// The redb table behind a key-value table.
pub(crate) fn kv_table(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

/// The redb table behind a key-value queue.
pub(crate) fn kv_queue(name: &str) -> TableDefinition<'_, u64, &'static [u8]> {
    TableDefinition::new(name)
}

fn check_endpoint_name(name: &str) -> Result<(), EndpointError> {
    let reason = if name.is_empty() {
        "the name is empty"
    } else if name.len() > MAX_ENDPOINT_NAME {
        "the name is longer than 1024 bytes"
    } else if name.chars().any(char::is_control) {
        "the name contains control characters"
    } else {
        return Ok(());
    };
    Err(EndpointError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}
