//! The redb tables and the fixed binary records stored in them. `DESIGN.md` beside this crate
//! draws the layout.
//!
//! Records decode without failing: a short or damaged record reads as zeros, which the
//! consistency check then reports, rather than panicking inside the engine.

use redb::{TableDefinition, TypeName, Value};

use crate::blobs::Location;
use crate::clock::Timestamp;
use crate::stats::EndpointStats;

/// Table names starting with this belong to the store; key-value tables may not use it.
pub(crate) const RESERVED_PREFIX: &str = "store/";

/// The schema this build reads and writes.
pub(crate) const SCHEMA_VERSION: u64 = 2;

/// The schema before payloads could live in blobs; its records read as inline ones, so opening
/// such a file only records the new version.
pub(crate) const SCHEMA_INLINE_PAYLOADS: u64 = 1;

/// `seq → message record`: every stored message, once, with the list of endpoint references
/// still pointing at it and where its payload is (see [`MessageRecord`]); the message goes when
/// that list is empty.
pub(crate) const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("store/messages");

/// `(endpoint id, priority, seq) → reference`: every endpoint queue, in delivery order.
pub(crate) const QUEUES: TableDefinition<QueueKey, QueueEntry> =
    TableDefinition::new("store/queues");

/// `(expires at, endpoint id, priority, seq)`: references with a TTL, soonest first.
pub(crate) const EXPIRY: TableDefinition<ExpiryKey, ()> = TableDefinition::new("store/expiry");

/// `endpoint name → id and counters`.
pub(crate) const ENDPOINTS: TableDefinition<&str, EndpointRecord> =
    TableDefinition::new("store/endpoints");

/// `name → number`: schema version, sequence counters, store-wide totals.
pub(crate) const STORE_META: TableDefinition<&str, u64> = TableDefinition::new("store/meta");

/// `key-value queue name → next id` (ids are never reused, so a stale ack cannot hit a new item).
pub(crate) const KV_QUEUE_IDS: TableDefinition<&str, u64> =
    TableDefinition::new("store/kv_queue_ids");

/// Keys of [`STORE_META`].
pub(crate) mod meta_keys {
    pub(crate) const SCHEMA_VERSION: &str = "schema_version";
    pub(crate) const NEXT_SEQ: &str = "next_seq";
    pub(crate) const NEXT_ENDPOINT_ID: &str = "next_endpoint_id";
    pub(crate) const TOTAL_BYTES: &str = "total_bytes";
    pub(crate) const MESSAGES: &str = "messages";
    pub(crate) const EVICTED_MESSAGES: &str = "evicted_messages";
    pub(crate) const NEXT_BLOB: &str = "next_blob";
    pub(crate) const BLOB_BYTES: &str = "blob_bytes";
}

/// `(endpoint id, priority, seq)`.
pub(crate) type QueueKey = (u32, u32, u64);

/// `(expires at millis, endpoint id, priority, seq)`.
pub(crate) type ExpiryKey = (u64, u32, u32, u64);

/// Stored in place of an expiry time for references that never expire.
pub(crate) const NEVER: u64 = u64::MAX;

pub(crate) fn read_u64(data: &[u8], at: usize) -> u64 {
    data.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

pub(crate) fn read_u32(data: &[u8], at: usize) -> u32 {
    data.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// One reference in an endpoint queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueEntry {
    /// When it expires, or [`NEVER`].
    pub(crate) expires_at: u64,
    /// When the message was appended.
    pub(crate) enqueued_at: u64,
    /// The payload size, for byte counters without reading the payload.
    pub(crate) size: u32,
}

impl QueueEntry {
    pub(crate) fn expiry(&self) -> Option<Timestamp> {
        (self.expires_at != NEVER).then_some(Timestamp::from_unix_millis(self.expires_at))
    }

    pub(crate) fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now.as_unix_millis()
    }
}

impl Value for QueueEntry {
    type SelfType<'a> = QueueEntry;
    type AsBytes<'a> = [u8; 20];

    fn fixed_width() -> Option<usize> {
        Some(20)
    }

    fn from_bytes<'a>(data: &'a [u8]) -> QueueEntry
    where
        Self: 'a,
    {
        QueueEntry {
            expires_at: read_u64(data, 0),
            enqueued_at: read_u64(data, 8),
            size: read_u32(data, 16),
        }
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a QueueEntry) -> [u8; 20]
    where
        Self: 'b,
    {
        let mut out = [0; 20];
        out[0..8].copy_from_slice(&value.expires_at.to_le_bytes());
        out[8..16].copy_from_slice(&value.enqueued_at.to_le_bytes());
        out[16..20].copy_from_slice(&value.size.to_le_bytes());
        out
    }

    fn type_name() -> TypeName {
        TypeName::new("ironedge_store::QueueEntry")
    }
}

/// One endpoint a stored message is still queued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RefTarget {
    pub(crate) endpoint_id: u32,
    pub(crate) priority: u32,
    pub(crate) expires_at: u64,
}

const TARGET_LEN: usize = 16;

/// Set in a record's target count when the payload is in a blob (schema 1 never set it: its
/// records all read as inline).
const IN_BLOB: u16 = 0x8000;

/// Most targets a record holds (an append has at most one per endpoint).
const MAX_TARGETS: usize = 0x7FFF;

/// Where a stored message's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Payload<'a> {
    /// In the record itself.
    Inline(&'a [u8]),
    /// In a blob.
    InBlob(Location),
}

impl Payload<'_> {
    /// The payload's length in bytes.
    pub(crate) fn len(&self) -> u32 {
        match self {
            // Bounded by `Config::max_message_bytes`, itself at most `u32::MAX`.
            #[allow(clippy::cast_possible_truncation)]
            Payload::Inline(bytes) => bytes.len() as u32,
            Payload::InBlob(location) => location.len,
        }
    }

    /// The blob holding it, if any.
    pub(crate) fn location(&self) -> Option<Location> {
        match self {
            Payload::Inline(_) => None,
            Payload::InBlob(location) => Some(*location),
        }
    }
}

/// A stored message: `[u16 flag | n][n × (u32 endpoint, u32 priority, u64 expires)]` then the
/// payload itself, or with the flag `IN_BLOB` its location `[u64 blob, u32 offset, u32 len]`.
///
/// Keeping the references in the same record as the payload makes an append one insert and the
/// last acknowledgement of a message one remove.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MessageRecord<'a> {
    bytes: &'a [u8],
}

impl<'a> MessageRecord<'a> {
    /// Reads a record; a damaged one reads as no targets and an empty payload.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn header(&self) -> u16 {
        self.bytes
            .get(0..2)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u16::from_le_bytes)
    }

    fn target_count(&self) -> usize {
        let n = (self.header() & !IN_BLOB) as usize;
        n.min(self.bytes.len().saturating_sub(2) / TARGET_LEN)
    }

    /// The references still pointing at the message.
    pub(crate) fn targets(&self) -> Vec<RefTarget> {
        let n = self.target_count();
        self.bytes
            .get(2..2 + n * TARGET_LEN)
            .unwrap_or_default()
            .chunks_exact(TARGET_LEN)
            .map(|chunk| RefTarget {
                endpoint_id: read_u32(chunk, 0),
                priority: read_u32(chunk, 4),
                expires_at: read_u64(chunk, 8),
            })
            .collect()
    }

    fn tail(&self) -> &'a [u8] {
        self.bytes
            .get(2 + self.target_count() * TARGET_LEN..)
            .unwrap_or_default()
    }

    /// The payload, or where it is.
    pub(crate) fn payload(&self) -> Payload<'a> {
        if self.header() & IN_BLOB == 0 {
            Payload::Inline(self.tail())
        } else {
            Payload::InBlob(Location::decode(self.tail()))
        }
    }

    /// Encodes a record (at most `MAX_TARGETS` targets are kept).
    pub(crate) fn encode(targets: &[RefTarget], payload: &Payload<'_>) -> Vec<u8> {
        let (flag, tail_len) = match payload {
            Payload::Inline(bytes) => (0, bytes.len()),
            Payload::InBlob(_) => (IN_BLOB, Location::ENCODED_LEN),
        };
        let n = targets.len().min(MAX_TARGETS);
        let mut out = vec![0; 2 + n * TARGET_LEN + tail_len];
        #[allow(clippy::cast_possible_truncation)] // bounded above
        out[0..2].copy_from_slice(&(flag | n as u16).to_le_bytes());
        for (i, target) in targets.iter().take(n).enumerate() {
            let at = 2 + i * TARGET_LEN;
            out[at..at + 4].copy_from_slice(&target.endpoint_id.to_le_bytes());
            out[at + 4..at + 8].copy_from_slice(&target.priority.to_le_bytes());
            out[at + 8..at + 16].copy_from_slice(&target.expires_at.to_le_bytes());
        }
        let tail = &mut out[2 + n * TARGET_LEN..];
        match payload {
            Payload::Inline(bytes) => tail.copy_from_slice(bytes),
            Payload::InBlob(location) => location.encode_into(tail),
        }
        out
    }
}

/// An endpoint's id and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EndpointRecord {
    pub(crate) id: u32,
    pub(crate) stats: EndpointStats,
}

const ENDPOINT_RECORD_LEN: usize = 4 + 6 * 8;

impl Value for EndpointRecord {
    type SelfType<'a> = EndpointRecord;
    type AsBytes<'a> = [u8; ENDPOINT_RECORD_LEN];

    fn fixed_width() -> Option<usize> {
        Some(ENDPOINT_RECORD_LEN)
    }

    fn from_bytes<'a>(data: &'a [u8]) -> EndpointRecord
    where
        Self: 'a,
    {
        EndpointRecord {
            id: read_u32(data, 0),
            stats: EndpointStats {
                len: read_u64(data, 4),
                bytes: read_u64(data, 12),
                appended_total: read_u64(data, 20),
                acked_total: read_u64(data, 28),
                expired_total: read_u64(data, 36),
                evicted_total: read_u64(data, 44),
            },
        }
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a EndpointRecord) -> [u8; ENDPOINT_RECORD_LEN]
    where
        Self: 'b,
    {
        let s = &value.stats;
        let mut out = [0; ENDPOINT_RECORD_LEN];
        out[0..4].copy_from_slice(&value.id.to_le_bytes());
        let fields = [
            s.len,
            s.bytes,
            s.appended_total,
            s.acked_total,
            s.expired_total,
            s.evicted_total,
        ];
        for (i, field) in fields.iter().enumerate() {
            out[4 + 8 * i..12 + 8 * i].copy_from_slice(&field.to_le_bytes());
        }
        out
    }

    fn type_name() -> TypeName {
        TypeName::new("ironedge_store::EndpointRecord")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_bytes() {
        let entry = QueueEntry {
            expires_at: 7,
            enqueued_at: 3,
            size: 99,
        };
        assert_eq!(QueueEntry::from_bytes(&QueueEntry::as_bytes(&entry)), entry);

        let targets = vec![
            RefTarget {
                endpoint_id: 1,
                priority: 2,
                expires_at: NEVER,
            },
            RefTarget {
                endpoint_id: 4,
                priority: 0,
                expires_at: 55,
            },
        ];
        let location = Location {
            blob: 9,
            offset: 40,
            len: 3,
        };
        let bytes = MessageRecord::encode(&targets, &Payload::InBlob(location));
        let record = MessageRecord::new(&bytes);
        assert_eq!(record.targets(), targets);
        assert_eq!(record.payload(), Payload::InBlob(location));
        let bytes = MessageRecord::encode(&targets, &Payload::Inline(b"abc"));
        let record = MessageRecord::new(&bytes);
        assert_eq!(record.targets(), targets);
        assert_eq!(record.payload(), Payload::Inline(b"abc"));
        assert_eq!(record.payload().len(), 3);

        let record = EndpointRecord {
            id: 3,
            stats: EndpointStats {
                len: 1,
                bytes: 2,
                appended_total: 3,
                acked_total: 4,
                expired_total: 5,
                evicted_total: 6,
            },
        };
        assert_eq!(
            EndpointRecord::from_bytes(&EndpointRecord::as_bytes(&record)),
            record
        );
    }

    #[test]
    fn damaged_records_decode_as_zeros_instead_of_panicking() {
        assert_eq!(QueueEntry::from_bytes(&[1, 2, 3]).size, 0);
        assert!(MessageRecord::new(&[9]).targets().is_empty());
        assert!(MessageRecord::new(&[200, 0, 1]).targets().is_empty());
        assert_eq!(
            MessageRecord::new(&[0, 0x80, 1])
                .payload()
                .location()
                .map(|l| l.blob),
            Some(0)
        );
        assert_eq!(MessageRecord::new(&[]).payload(), Payload::Inline(b""));
        assert_eq!(EndpointRecord::from_bytes(&[]).id, 0);
    }
}
