//! The writer's in-memory copy of the counters and the endpoint directory. Each transaction works
//! on a clone and the clone replaces the original only after the commit succeeds, so a failed
//! commit leaves memory and file in agreement.

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableTable, Table};

use crate::blobs::BlobUsage;
use crate::error::{During, StorageError};
use crate::stats::{EndpointStats, StoreStats};
use crate::tables::{EndpointRecord, meta_keys};

/// One endpoint as the writer knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EndpointState {
    pub(crate) name: String,
    pub(crate) stats: EndpointStats,
}

/// Counters and endpoints, mirrored from `store/meta` and `store/endpoints`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) next_seq: u64,
    pub(crate) next_endpoint_id: u32,
    pub(crate) total_bytes: u64,
    pub(crate) messages: u64,
    pub(crate) evicted_messages: u64,
    /// The id the next payload blob gets (ids are never reused).
    pub(crate) next_blob: u64,
    /// Payload bytes in blobs, live or not (what the payloads take on disk).
    pub(crate) blob_bytes: u64,
    /// Blobs less than half live, by id, with the commit that last changed them: compaction
    /// candidates once they have been left alone for a while.
    pub(crate) sparse_blobs: BTreeMap<u64, u64>,
    /// Commits since the store was opened (the clock of `sparse_blobs`).
    pub(crate) commits: u64,
    pub(crate) endpoints: BTreeMap<u32, EndpointState>,
    pub(crate) ids: HashMap<String, u32>,
}

impl State {
    /// Reads the state from an open write transaction's tables.
    pub(crate) fn load(
        meta: &Table<'_, &str, u64>,
        endpoints: &Table<'_, &str, EndpointRecord>,
        usage: &Table<'_, u64, BlobUsage>,
    ) -> Result<Self, StorageError> {
        let get = |key: &str| -> Result<u64, StorageError> {
            Ok(meta
                .get(key)
                .during("read counters")?
                .map_or(0, |v| v.value()))
        };
        let mut state = State {
            next_seq: get(meta_keys::NEXT_SEQ)?.max(1),
            next_endpoint_id: u32::try_from(get(meta_keys::NEXT_ENDPOINT_ID)?)
                .unwrap_or(u32::MAX)
                .max(1),
            total_bytes: get(meta_keys::TOTAL_BYTES)?,
            messages: get(meta_keys::MESSAGES)?,
            evicted_messages: get(meta_keys::EVICTED_MESSAGES)?,
            next_blob: get(meta_keys::NEXT_BLOB)?.max(1),
            blob_bytes: get(meta_keys::BLOB_BYTES)?,
            ..State::default()
        };
        for entry in usage.iter().during("read blob usage")? {
            let (blob, usage) = entry.during("read blob usage")?;
            if usage.value().is_sparse() {
                state.sparse_blobs.insert(blob.value(), 0);
            }
        }
        for entry in endpoints.iter().during("read endpoints")? {
            let (name, record) = entry.during("read endpoints")?;
            let name = name.value().to_owned();
            let record = record.value();
            state.ids.insert(name.clone(), record.id);
            state.endpoints.insert(
                record.id,
                EndpointState {
                    name,
                    stats: record.stats,
                },
            );
        }
        Ok(state)
    }

    /// Writes the counters to `store/meta`.
    pub(crate) fn save_counters(
        &self,
        meta: &mut Table<'_, &str, u64>,
    ) -> Result<(), StorageError> {
        let values = [
            (meta_keys::NEXT_SEQ, self.next_seq),
            (
                meta_keys::NEXT_ENDPOINT_ID,
                u64::from(self.next_endpoint_id),
            ),
            (meta_keys::TOTAL_BYTES, self.total_bytes),
            (meta_keys::MESSAGES, self.messages),
            (meta_keys::EVICTED_MESSAGES, self.evicted_messages),
            (meta_keys::NEXT_BLOB, self.next_blob),
            (meta_keys::BLOB_BYTES, self.blob_bytes),
        ];
        for (key, value) in values {
            meta.insert(key, value).during("write counters")?;
        }
        Ok(())
    }

    pub(crate) fn stats_mut(&mut self, endpoint_id: u32) -> Option<&mut EndpointStats> {
        self.endpoints.get_mut(&endpoint_id).map(|e| &mut e.stats)
    }

    /// The counters as plain data.
    pub(crate) fn to_stats(&self, quota_bytes: Option<u64>) -> StoreStats {
        StoreStats {
            messages: self.messages,
            bytes: self.total_bytes,
            blob_bytes: self.blob_bytes,
            quota_bytes,
            evicted_messages_total: self.evicted_messages,
            endpoints: self
                .endpoints
                .values()
                .map(|e| (e.name.clone(), e.stats))
                .collect(),
        }
    }
}
