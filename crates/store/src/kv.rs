//! The typed key-value area: tables of `key → record` and ordered queues of records, declared as
//! typed consts (redb style) and written through the same group-committed writer as messages.
//!
//! Records are stored as JSON, so a table's record type may gain optional fields without a
//! migration. Table names starting with `store/` are reserved for the store itself.

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::KvError;
use crate::tables::RESERVED_PREFIX;

/// A table of `string key → V`.
pub struct KvTable<V> {
    name: &'static str,
    record: PhantomData<fn() -> V>,
}

impl<V> KvTable<V> {
    /// Declares a table; the name is its identity in the file.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            record: PhantomData,
        }
    }

    /// The table's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// A write that removes `key`.
    pub fn remove(&self, key: impl Into<String>) -> KvWrite {
        KvWrite(KvOp::Remove {
            table: self.name,
            key: key.into(),
        })
    }

    /// A write that removes every key.
    pub fn clear(&self) -> KvWrite {
        KvWrite(KvOp::Clear { table: self.name })
    }
}

impl<V: Serialize> KvTable<V> {
    /// A write that sets `key` to `value`.
    pub fn put(&self, key: impl Into<String>, value: &V) -> Result<KvWrite, KvError> {
        Ok(KvWrite(KvOp::Put {
            table: self.name,
            key: key.into(),
            bytes: encode(self.name, value)?,
        }))
    }
}

impl<V> fmt::Debug for KvTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KvTable").field(&self.name).finish()
    }
}

/// An ordered queue of `V`; each pushed item gets an id that is never reused.
pub struct KvQueue<V> {
    name: &'static str,
    record: PhantomData<fn() -> V>,
}

impl<V> KvQueue<V> {
    /// Declares a queue; the name is its identity in the file.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            record: PhantomData,
        }
    }

    /// The queue's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// A write that removes the items with these ids (unknown ids are ignored).
    pub fn ack(&self, ids: impl IntoIterator<Item = u64>) -> KvWrite {
        KvWrite(KvOp::Ack {
            queue: self.name,
            ids: ids.into_iter().collect(),
        })
    }

    /// A write that removes every item up to and including `id`.
    pub fn ack_through(&self, id: u64) -> KvWrite {
        KvWrite(KvOp::AckThrough {
            queue: self.name,
            id,
        })
    }
}

impl<V: Serialize> KvQueue<V> {
    /// A write that appends `value`; its id is returned by the commit.
    pub fn push(&self, value: &V) -> Result<KvWrite, KvError> {
        Ok(KvWrite(KvOp::Push {
            queue: self.name,
            bytes: encode(self.name, value)?,
        }))
    }
}

impl<V> fmt::Debug for KvQueue<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KvQueue").field(&self.name).finish()
    }
}

/// One key-value change; a list of them commits atomically.
#[derive(Clone, PartialEq, Eq)]
pub struct KvWrite(pub(crate) KvOp);

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum KvOp {
    Put {
        table: &'static str,
        key: String,
        bytes: Vec<u8>,
    },
    Remove {
        table: &'static str,
        key: String,
    },
    Clear {
        table: &'static str,
    },
    Push {
        queue: &'static str,
        bytes: Vec<u8>,
    },
    Ack {
        queue: &'static str,
        ids: Vec<u64>,
    },
    AckThrough {
        queue: &'static str,
        id: u64,
    },
}

impl KvOp {
    pub(crate) fn table_name(&self) -> &'static str {
        match self {
            KvOp::Put { table, .. } | KvOp::Remove { table, .. } | KvOp::Clear { table } => table,
            KvOp::Push { queue, .. } | KvOp::Ack { queue, .. } | KvOp::AckThrough { queue, .. } => {
                queue
            }
        }
    }

    pub(crate) fn payload_len(&self) -> usize {
        match self {
            KvOp::Put { bytes, .. } | KvOp::Push { bytes, .. } => bytes.len(),
            _ => 0,
        }
    }
}

impl fmt::Debug for KvWrite {
    // Values can hold keys and twins: show the shape only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            KvOp::Put { table, key, bytes } => {
                write!(f, "Put({table}/{key}, {} bytes)", bytes.len())
            }
            KvOp::Remove { table, key } => write!(f, "Remove({table}/{key})"),
            KvOp::Clear { table } => write!(f, "Clear({table})"),
            KvOp::Push { queue, bytes } => write!(f, "Push({queue}, {} bytes)", bytes.len()),
            KvOp::Ack { queue, ids } => write!(f, "Ack({queue}, {} ids)", ids.len()),
            KvOp::AckThrough { queue, id } => write!(f, "AckThrough({queue}, {id})"),
        }
    }
}

/// Refuses names that would collide with the store's own tables.
pub(crate) fn check_name(name: &'static str) -> Result<(), KvError> {
    if name.starts_with(RESERVED_PREFIX) {
        return Err(KvError::ReservedName { name });
    }
    Ok(())
}

fn encode<V: Serialize>(table: &'static str, value: &V) -> Result<Vec<u8>, KvError> {
    serde_json::to_vec(value).map_err(|e| KvError::Encode {
        table,
        reason: e.to_string(),
    })
}

/// Decodes a stored record of `table`.
pub(crate) fn decode<V: DeserializeOwned>(
    table: &'static str,
    key: impl fmt::Display,
    bytes: &[u8],
) -> Result<V, KvError> {
    serde_json::from_slice(bytes).map_err(|e| KvError::Decode {
        table,
        key: key.to_string(),
        reason: e.to_string(),
    })
}
