//! Store settings, as plain values the CLI fills in.

use std::time::Duration;

/// What an append does when the byte quota is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum QuotaPolicy {
    /// Remove the oldest messages (from every endpoint) until the new one fits; each removed
    /// reference is counted as evicted.
    #[default]
    EvictOldest,
    /// Refuse the new message with [`AppendError::StoreFull`](crate::AppendError::StoreFull).
    RejectNew,
}

/// Store settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most payload bytes the store holds (each message counted once); `None` for no limit.
    pub quota_bytes: Option<u64>,
    /// What to do when the quota is reached.
    pub quota_policy: QuotaPolicy,
    /// Largest payload accepted by an append.
    pub max_message_bytes: usize,
    /// Payloads up to this size stay in their message record; larger ones are packed into the
    /// commit's payload blob (see `DESIGN.md`).
    pub inline_payload_max: usize,
    /// Most operations the writer puts in one transaction.
    pub max_batch_ops: usize,
    /// Most payload bytes the writer puts in one transaction.
    pub max_batch_bytes: usize,
    /// Longest the writer keeps gathering already-queued operations into one transaction; it
    /// never waits for new ones.
    pub max_batch_time: Duration,
    /// Most expired references removed per write transaction (the rest go in later ones).
    pub max_expired_per_commit: usize,
    /// Commits a blob left mostly dead by acknowledgements must go unchanged before its live
    /// messages are copied out of it (compaction; see `DESIGN.md`).
    pub compact_after_commits: u64,
    /// Memory redb may use to cache pages.
    pub cache_bytes: usize,
    /// Capacity of the queue of operations waiting for the writer; appenders wait when full.
    pub pending_capacity: usize,
    /// Verify every page checksum when opening (slow for large files; tests and `fsck` use it).
    pub verify_on_open: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            quota_bytes: None,
            quota_policy: QuotaPolicy::EvictOldest,
            max_message_bytes: 4 * 1024 * 1024,
            inline_payload_max: 1024,
            max_batch_ops: 4096,
            max_batch_bytes: 16 * 1024 * 1024,
            max_batch_time: Duration::from_millis(50),
            max_expired_per_commit: 4096,
            compact_after_commits: 64,
            cache_bytes: 16 * 1024 * 1024,
            pending_capacity: 16 * 1024,
            verify_on_open: false,
        }
    }
}
