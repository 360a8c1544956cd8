//! Payload blobs: the payloads of the messages appended in one commit, packed into one redb value.
//!
//! redb gives a value larger than a page a power-of-two run of pages of its own, so a 4.4 KiB
//! message stored alone costs an 8 KiB page to allocate, zero, write and later free. Packing a
//! commit's payloads into values of up to [`BLOB_TARGET_BYTES`] makes the payload cost of an
//! append a copy (measured: 38 × 4.4 KiB messages per commit went from 833 µs to 383 µs).
//!
//! A blob lives while any message in it does ([`BlobUsage`] counts them). Messages whose
//! neighbours were all acknowledged keep a blob that is mostly dead; compaction copies them into
//! a fresh blob so the dead bytes do not pile up (see `Tx::compact`).
//!
//! Layout of a blob value: `[u32 n][n × (u64 seq, u32 offset, u32 len)][payloads]`, offsets
//! relative to the start of the payloads. The directory lets compaction find a blob's messages.

use redb::{Table, TableDefinition, TypeName, Value};

use crate::error::{During, StorageError};
use crate::tables::{read_u32, read_u64};

/// `blob id → [directory][payloads]`.
pub(crate) const BLOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("store/blobs");

/// `blob id → usage`: how much of each blob is still referenced.
pub(crate) const BLOB_USAGE: TableDefinition<u64, BlobUsage> =
    TableDefinition::new("store/blob_usage");

/// A blob is closed once its payloads reach this size (a larger message gets a blob of its own).
/// Small enough that reading one message reads little else, large enough for a commit's worth.
pub(crate) const BLOB_TARGET_BYTES: usize = 256 * 1024;

const DIRECTORY_ENTRY: usize = 16;

/// Where a message's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) blob: u64,
    pub(crate) offset: u32,
    pub(crate) len: u32,
}

impl Location {
    pub(crate) const ENCODED_LEN: usize = 16;

    pub(crate) fn encode_into(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.blob.to_le_bytes());
        out[8..12].copy_from_slice(&self.offset.to_le_bytes());
        out[12..16].copy_from_slice(&self.len.to_le_bytes());
    }

    /// Reads a location; a damaged one reads as zeros (blob 0 never exists).
    pub(crate) fn decode(data: &[u8]) -> Self {
        Self {
            blob: read_u64(data, 0),
            offset: read_u32(data, 8),
            len: read_u32(data, 12),
        }
    }
}

/// One blob's live messages and size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BlobUsage {
    /// Messages still stored in the blob.
    pub(crate) live_count: u64,
    /// Their payload bytes.
    pub(crate) live_bytes: u64,
    /// All payload bytes the blob holds, live or not.
    pub(crate) size: u64,
}

impl BlobUsage {
    /// Less than half of the blob is live: worth copying the rest out.
    pub(crate) fn is_sparse(&self) -> bool {
        self.live_count > 0 && self.live_bytes.saturating_mul(2) < self.size
    }

    /// Adds a change; counters never go below zero.
    pub(crate) fn apply(&mut self, delta: &UsageDelta) {
        self.live_count = self.live_count.saturating_add_signed(delta.count);
        self.live_bytes = self.live_bytes.saturating_add_signed(delta.bytes);
        self.size = self.size.saturating_add(delta.size);
    }
}

impl Value for BlobUsage {
    type SelfType<'a> = BlobUsage;
    type AsBytes<'a> = [u8; 24];

    fn fixed_width() -> Option<usize> {
        Some(24)
    }

    fn from_bytes<'a>(data: &'a [u8]) -> BlobUsage
    where
        Self: 'a,
    {
        BlobUsage {
            live_count: read_u64(data, 0),
            live_bytes: read_u64(data, 8),
            size: read_u64(data, 16),
        }
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a BlobUsage) -> [u8; 24]
    where
        Self: 'b,
    {
        let mut out = [0; 24];
        out[0..8].copy_from_slice(&value.live_count.to_le_bytes());
        out[8..16].copy_from_slice(&value.live_bytes.to_le_bytes());
        out[16..24].copy_from_slice(&value.size.to_le_bytes());
        out
    }

    fn type_name() -> TypeName {
        TypeName::new("ironedge_store::BlobUsage")
    }
}

/// A transaction's change to one blob's usage, applied when the transaction finishes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UsageDelta {
    pub(crate) count: i64,
    pub(crate) bytes: i64,
    pub(crate) size: u64,
}

impl UsageDelta {
    pub(crate) fn added(len: u32) -> Self {
        Self {
            count: 1,
            bytes: i64::from(len),
            size: u64::from(len),
        }
    }

    pub(crate) fn removed(len: u32) -> Self {
        Self {
            count: -1,
            bytes: -i64::from(len),
            size: 0,
        }
    }

    pub(crate) fn merge(&mut self, other: Self) {
        self.count += other.count;
        self.bytes += other.bytes;
        self.size += other.size;
    }
}

/// The blob a transaction is filling.
#[derive(Debug)]
pub(crate) struct BlobBuilder {
    id: u64,
    directory: Vec<(u64, u32, u32)>,
    data: Vec<u8>,
}

impl BlobBuilder {
    pub(crate) fn new(id: u64) -> Self {
        Self {
            id,
            directory: Vec::new(),
            data: Vec::new(),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Whether `len` more bytes belong in a new blob instead.
    pub(crate) fn is_full_for(&self, len: usize) -> bool {
        !self.data.is_empty() && self.data.len() + len > BLOB_TARGET_BYTES
    }

    /// Adds a payload (at most `u32::MAX` bytes, and the blob stays under 4 GiB because it
    /// closes at [`BLOB_TARGET_BYTES`]).
    pub(crate) fn push(&mut self, seq: u64, payload: &[u8]) -> Location {
        #[allow(clippy::cast_possible_truncation)] // bounded, see above
        let location = Location {
            blob: self.id,
            offset: self.data.len() as u32,
            len: payload.len() as u32,
        };
        self.directory.push((seq, location.offset, location.len));
        self.data.extend_from_slice(payload);
        location
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.directory.is_empty()
    }

    pub(crate) fn encoded_len(&self) -> usize {
        4 + self.directory.len() * DIRECTORY_ENTRY + self.data.len()
    }

    /// Writes the blob value into `out`, which must be exactly [`Self::encoded_len`] long.
    pub(crate) fn encode_into(&self, out: &mut [u8]) {
        #[allow(clippy::cast_possible_truncation)] // one entry per message of a closed blob
        out[0..4].copy_from_slice(&(self.directory.len() as u32).to_le_bytes());
        for (i, (seq, offset, len)) in self.directory.iter().enumerate() {
            let at = 4 + i * DIRECTORY_ENTRY;
            out[at..at + 8].copy_from_slice(&seq.to_le_bytes());
            out[at + 8..at + 12].copy_from_slice(&offset.to_le_bytes());
            out[at + 12..at + 16].copy_from_slice(&len.to_le_bytes());
        }
        let start = 4 + self.directory.len() * DIRECTORY_ENTRY;
        out[start..].copy_from_slice(&self.data);
    }
}

/// Stores a blob (nothing if it holds no message).
pub(crate) fn write_blob(
    table: &mut Table<'_, u64, &'static [u8]>,
    blob: &BlobBuilder,
) -> Result<(), StorageError> {
    if blob.is_empty() {
        return Ok(());
    }
    let mut slot = table
        .insert_reserve(blob.id(), blob.encoded_len())
        .during("write payload blob")?;
    blob.encode_into(slot.as_mut());
    Ok(())
}

/// A stored blob value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlobView<'a> {
    bytes: &'a [u8],
}

impl<'a> BlobView<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn count(&self) -> usize {
        let n = read_u32(self.bytes, 0) as usize;
        n.min(self.bytes.len().saturating_sub(4) / DIRECTORY_ENTRY)
    }

    fn data(&self) -> &'a [u8] {
        self.bytes
            .get(4 + self.count() * DIRECTORY_ENTRY..)
            .unwrap_or_default()
    }

    /// The payload at `offset`/`len`, or `None` if the blob is too short (damaged).
    pub(crate) fn payload(&self, location: &Location) -> Option<&'a [u8]> {
        let start = location.offset as usize;
        self.data()
            .get(start..start.checked_add(location.len as usize)?)
    }

    /// The messages written into the blob: `(seq, location)`.
    pub(crate) fn directory(&self, blob: u64) -> impl Iterator<Item = (u64, Location)> + 'a {
        self.bytes
            .get(4..4 + self.count() * DIRECTORY_ENTRY)
            .unwrap_or_default()
            .chunks_exact(DIRECTORY_ENTRY)
            .map(move |entry| {
                let location = Location {
                    blob,
                    offset: read_u32(entry, 8),
                    len: read_u32(entry, 12),
                };
                (read_u64(entry, 0), location)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_round_trips_its_payloads_and_directory() {
        let mut builder = BlobBuilder::new(7);
        let a = builder.push(10, b"hello");
        let b = builder.push(11, b"");
        let c = builder.push(12, b"world!");
        let mut bytes = vec![0; builder.encoded_len()];
        builder.encode_into(&mut bytes);
        let view = BlobView::new(&bytes);
        assert_eq!(view.payload(&a), Some(&b"hello"[..]));
        assert_eq!(view.payload(&b), Some(&b""[..]));
        assert_eq!(view.payload(&c), Some(&b"world!"[..]));
        let directory: Vec<_> = view.directory(7).collect();
        assert_eq!(directory, vec![(10, a), (11, b), (12, c)]);

        let mut out = [0; Location::ENCODED_LEN];
        c.encode_into(&mut out);
        assert_eq!(Location::decode(&out), c);
    }

    #[test]
    fn damaged_blobs_read_as_missing_payloads_instead_of_panicking() {
        let view = BlobView::new(&[200, 0, 0, 0, 1, 2]);
        assert_eq!(view.directory(1).count(), 0);
        let far = Location {
            blob: 1,
            offset: u32::MAX,
            len: u32::MAX,
        };
        assert_eq!(view.payload(&far), None);
        assert_eq!(BlobView::new(&[]).payload(&far), None);
    }

    #[test]
    fn a_blob_closes_at_the_target_size_but_takes_one_large_message() {
        let mut builder = BlobBuilder::new(1);
        assert!(!builder.is_full_for(BLOB_TARGET_BYTES * 2));
        builder.push(1, &vec![0; BLOB_TARGET_BYTES - 10]);
        assert!(!builder.is_full_for(10));
        assert!(builder.is_full_for(11));
    }

    #[test]
    fn usage_turns_sparse_below_half_and_counts_never_underflow() {
        let mut usage = BlobUsage::default();
        usage.apply(&UsageDelta::added(100));
        usage.apply(&UsageDelta::added(100));
        assert!(!usage.is_sparse());
        usage.apply(&UsageDelta::removed(100));
        assert!(!usage.is_sparse(), "exactly half is not sparse");
        usage.apply(&UsageDelta::added(10));
        usage.apply(&UsageDelta::removed(10));
        assert!(usage.is_sparse());
        usage.apply(&UsageDelta::removed(100));
        usage.apply(&UsageDelta::removed(100));
        assert_eq!((usage.live_count, usage.live_bytes), (0, 0));
        assert!(
            !usage.is_sparse(),
            "an empty blob is deleted, not compacted"
        );
        assert_eq!(BlobUsage::from_bytes(&BlobUsage::as_bytes(&usage)), usage);
    }
}
