//! Counters the edge hub turns into Prometheus metrics.

use std::collections::BTreeMap;

/// One endpoint's queue size and lifetime counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Messages queued (not yet acknowledged, expired or evicted).
    pub len: u64,
    /// Payload bytes queued (a message shared with other endpoints counts here in full).
    pub bytes: u64,
    /// Messages ever appended to this endpoint.
    pub appended_total: u64,
    /// Messages acknowledged.
    pub acked_total: u64,
    /// Messages removed because their TTL passed.
    pub expired_total: u64,
    /// Messages removed to stay within the byte quota.
    pub evicted_total: u64,
}

/// The whole store's size and counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Distinct messages stored.
    pub messages: u64,
    /// Distinct payload bytes stored (what the quota limits).
    pub bytes: u64,
    /// Payload bytes the file holds for them: [`StoreStats::bytes`] plus acknowledged payloads
    /// that share a blob with unacknowledged ones (compaction keeps this under about twice
    /// `bytes`).
    pub blob_bytes: u64,
    /// The configured quota.
    pub quota_bytes: Option<u64>,
    /// Messages ever evicted to stay within the quota.
    pub evicted_messages_total: u64,
    /// Per endpoint.
    pub endpoints: BTreeMap<String, EndpointStats>,
}
