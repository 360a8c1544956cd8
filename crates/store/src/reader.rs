//! [`Reader`]: reads from consistent snapshots, concurrently with the writer and each other.

use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use redb::{
    AccessGuard, Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    TableError,
};
use serde::de::DeserializeOwned;

use crate::blobs::{BLOBS, BlobView, Location};
use crate::clock::{Clock, Timestamp};
use crate::error::{During, KvError, PeekError, StorageError};
use crate::kv::{KvQueue, KvTable, decode};
use crate::message::{Delivery, Offset, PeekOptions, Peeked, ReadCursor};
use crate::stats::{EndpointStats, StoreStats};
use crate::tables::{ENDPOINTS, MESSAGES, MessageRecord, Payload, QUEUES, STORE_META, meta_keys};
use crate::transaction::{kv_queue, kv_table};

/// Reads queues, counters and key-value tables; cheap to clone and share between threads.
#[derive(Clone)]
pub struct Reader {
    db: Arc<Database>,
    clock: Arc<dyn Clock>,
    quota_bytes: Option<u64>,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Reader {
    pub(crate) fn new(db: Arc<Database>, clock: Arc<dyn Clock>, quota_bytes: Option<u64>) -> Self {
        Self {
            db,
            clock,
            quota_bytes,
        }
    }

    fn begin(&self) -> Result<ReadTransaction, StorageError> {
        self.db.begin_read().during("begin read")
    }

    /// Reads messages of `endpoint` in delivery order (priority, then arrival) without removing
    /// them. Messages whose TTL has passed are skipped, never returned.
    pub fn peek(&self, endpoint: &str, options: PeekOptions) -> Result<Peeked, PeekError> {
        self.peek_inner(endpoint, options, None)
    }

    /// As [`Reader::peek`], leaving out every message `cursor` covers (already read, typically
    /// still waiting for its acknowledgement); `options.after` is ignored. The scan seeks past
    /// each priority's cursor, so skipping a long window of messages in flight costs one seek.
    pub fn peek_past(
        &self,
        endpoint: &str,
        options: PeekOptions,
        cursor: &ReadCursor,
    ) -> Result<Peeked, PeekError> {
        self.peek_inner(endpoint, options, Some(cursor))
    }

    fn peek_inner(
        &self,
        endpoint: &str,
        options: PeekOptions,
        cursor: Option<&ReadCursor>,
    ) -> Result<Peeked, PeekError> {
        let txn = self.begin()?;
        let err = "read queue";
        let endpoints = txn.open_table(ENDPOINTS).during(err)?;
        let id = endpoints
            .get(endpoint)
            .during(err)?
            .map(|v| v.value().id)
            .ok_or_else(|| PeekError::UnknownEndpoint {
                endpoint: endpoint.to_owned(),
            })?;
        let queues = txn.open_table(QUEUES).during(err)?;
        let messages = txn.open_table(MESSAGES).during(err)?;
        let mut payloads = Payloads::new(txn.open_table(BLOBS).during(err)?);
        let now = self.clock.now();
        let mut start = match (cursor, options.after) {
            (None, Some(after)) => Bound::Excluded((id, after.priority, after.seq)),
            _ => Bound::Included((id, 0, 0)),
        };
        let mut peeked = Peeked::default();
        let mut bytes = 0usize;
        'scan: loop {
            for entry in queues
                .range((start, Bound::Included((id, u32::MAX, u64::MAX))))
                .during(err)?
            {
                if peeked.deliveries.len() >= options.max_messages {
                    break 'scan;
                }
                let (key, entry) = entry.during(err)?;
                let (_, priority, seq) = key.value();
                if let Some(last) = cursor.and_then(|c| c.last(priority))
                    && seq <= last
                {
                    // Seek past what this priority has already read, then go on scanning.
                    start = Bound::Excluded((id, priority, last));
                    continue 'scan;
                }
                let entry = entry.value();
                if entry.is_expired(now) {
                    peeked.skipped_expired += 1;
                    continue;
                }
                let size = entry.size as usize;
                if !peeked.deliveries.is_empty() && bytes.saturating_add(size) > options.max_bytes {
                    break 'scan;
                }
                let record =
                    messages
                        .get(seq)
                        .during(err)?
                        .ok_or_else(|| StorageError::Inconsistent {
                            detail: format!(
                                "endpoint {endpoint:?} references missing message {seq}"
                            ),
                        })?;
                let payload = match MessageRecord::new(record.value()).payload() {
                    Payload::Inline(bytes) => Bytes::copy_from_slice(bytes),
                    Payload::InBlob(location) => payloads.get(&location, seq)?,
                };
                bytes += size;
                peeked.deliveries.push(Delivery {
                    offset: Offset::new(priority, seq),
                    enqueued_at: Timestamp::from_unix_millis(entry.enqueued_at),
                    expires_at: entry.expiry(),
                    payload,
                });
            }
            break;
        }
        Ok(peeked)
    }

    /// The endpoints, by name.
    pub fn endpoints(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.stats()?.endpoints.into_keys().collect())
    }

    /// One endpoint's counters, or `None` if it does not exist.
    pub fn endpoint_stats(&self, endpoint: &str) -> Result<Option<EndpointStats>, StorageError> {
        let txn = self.begin()?;
        let err = "read endpoint counters";
        let endpoints = txn.open_table(ENDPOINTS).during(err)?;
        Ok(endpoints
            .get(endpoint)
            .during(err)?
            .map(|v| v.value().stats))
    }

    /// Sizes and counters as of the last commit.
    pub fn stats(&self) -> Result<StoreStats, StorageError> {
        let txn = self.begin()?;
        let err = "read counters";
        let meta = txn.open_table(STORE_META).during(err)?;
        let get = |key: &str| -> Result<u64, StorageError> {
            Ok(meta.get(key).during(err)?.map_or(0, |v| v.value()))
        };
        let mut stats = StoreStats {
            messages: get(meta_keys::MESSAGES)?,
            bytes: get(meta_keys::TOTAL_BYTES)?,
            blob_bytes: get(meta_keys::BLOB_BYTES)?,
            quota_bytes: self.quota_bytes,
            evicted_messages_total: get(meta_keys::EVICTED_MESSAGES)?,
            endpoints: Default::default(),
        };
        let endpoints = txn.open_table(ENDPOINTS).during(err)?;
        for entry in endpoints.iter().during(err)? {
            let (name, record) = entry.during(err)?;
            stats
                .endpoints
                .insert(name.value().to_owned(), record.value().stats);
        }
        Ok(stats)
    }

    /// The value stored under `key`, if any.
    pub fn get<V: DeserializeOwned>(
        &self,
        table: &KvTable<V>,
        key: &str,
    ) -> Result<Option<V>, KvError> {
        let txn = self.begin()?;
        let err = "read key-value table";
        let t = match txn.open_table(kv_table(table.name())) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(StorageError::database(err, e).into()),
        };
        let Some(bytes) = t.get(key).during(err)? else {
            return Ok(None);
        };
        decode(table.name(), key, bytes.value()).map(Some)
    }

    /// Every `(key, value)` of a table, in key order.
    pub fn list<V: DeserializeOwned>(
        &self,
        table: &KvTable<V>,
    ) -> Result<Vec<(String, V)>, KvError> {
        let txn = self.begin()?;
        let err = "read key-value table";
        let t = match txn.open_table(kv_table(table.name())) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::database(err, e).into()),
        };
        let mut out = Vec::new();
        for entry in t.iter().during(err)? {
            let (key, bytes) = entry.during(err)?;
            let key = key.value().to_owned();
            let value = decode(table.name(), &key, bytes.value())?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// Up to `limit` items from the head of a queue, oldest first, with their ids.
    pub fn queue_peek<V: DeserializeOwned>(
        &self,
        queue: &KvQueue<V>,
        limit: usize,
    ) -> Result<Vec<(u64, V)>, KvError> {
        let txn = self.begin()?;
        let err = "read key-value queue";
        let t = match txn.open_table(kv_queue(queue.name())) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::database(err, e).into()),
        };
        let mut out = Vec::new();
        for entry in t.iter().during(err)?.take(limit) {
            let (id, bytes) = entry.during(err)?;
            let id = id.value();
            out.push((id, decode(queue.name(), id, bytes.value())?));
        }
        Ok(out)
    }

    /// How many items a queue holds.
    pub fn queue_len<V>(&self, queue: &KvQueue<V>) -> Result<u64, StorageError> {
        let txn = self.begin()?;
        let err = "read key-value queue";
        match txn.open_table(kv_queue(queue.name())) {
            Ok(t) => redb::ReadableTableMetadata::len(&t).during(err),
            Err(TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(StorageError::database(err, e)),
        }
    }
}

/// Reads payloads out of blobs, keeping the last blob at hand: the messages of a peek mostly
/// sit next to each other.
struct Payloads {
    blobs: ReadOnlyTable<u64, &'static [u8]>,
    current: Option<(u64, AccessGuard<'static, &'static [u8]>)>,
}

impl Payloads {
    fn new(blobs: ReadOnlyTable<u64, &'static [u8]>) -> Self {
        Self {
            blobs,
            current: None,
        }
    }

    fn get(&mut self, location: &Location, seq: u64) -> Result<Bytes, StorageError> {
        let missing = || StorageError::Inconsistent {
            detail: format!(
                "message {seq} points at bytes {}+{} of payload blob {}, which are not stored",
                location.offset, location.len, location.blob
            ),
        };
        if self
            .current
            .as_ref()
            .is_none_or(|(id, _)| *id != location.blob)
        {
            let guard = self
                .blobs
                .get(location.blob)
                .during("read payload")?
                .ok_or_else(missing)?;
            self.current = Some((location.blob, guard));
        }
        let (_, guard) = self.current.as_ref().ok_or_else(missing)?;
        BlobView::new(guard.value())
            .payload(location)
            .map(Bytes::copy_from_slice)
            .ok_or_else(missing)
    }
}
