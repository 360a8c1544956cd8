//! Converting a store file written by an older build to the current schema, in the transaction
//! that opens it (so a crash mid-way leaves the old file as it was).

use std::collections::BTreeMap;

use redb::{ReadableTable, Table, WriteTransaction};

use crate::blobs::{BLOB_USAGE, BLOBS, BlobBuilder, BlobUsage, UsageDelta, write_blob};
use crate::error::{During, StorageError};
use crate::tables::{MESSAGES, MessageRecord, meta_keys};

/// Records converted per pass over the messages table.
const CHUNK: usize = 1024;

/// Schema 1 → 2: payloads move out of the message records into blobs.
pub(crate) fn inline_payloads_to_blobs(
    txn: &WriteTransaction,
    meta: &mut Table<'_, &str, u64>,
) -> Result<u64, StorageError> {
    let err = "convert messages to payload blobs";
    let mut messages = txn.open_table(MESSAGES).during(err)?;
    let mut blobs = txn.open_table(BLOBS).during(err)?;
    let mut usage_table = txn.open_table(BLOB_USAGE).during(err)?;
    let mut next_blob = 1;
    let mut usage: BTreeMap<u64, BlobUsage> = BTreeMap::new();
    let mut building = BlobBuilder::new(next_blob);
    let mut after = None;
    let mut converted = 0;
    loop {
        let range = match after {
            None => messages.range::<u64>(..),
            Some(seq) => messages.range((seq + 1)..),
        };
        let mut chunk = Vec::with_capacity(CHUNK);
        for entry in range.during(err)?.take(CHUNK) {
            let (seq, record) = entry.during(err)?;
            let record = MessageRecord::new(record.value());
            chunk.push((
                seq.value(),
                record.targets(),
                record.inline_payload().to_vec(),
            ));
        }
        let Some((last, _, _)) = chunk.last() else {
            break;
        };
        after = Some(*last);
        for (seq, targets, payload) in chunk {
            if building.is_full_for(payload.len()) {
                write_blob(&mut blobs, &building)?;
                next_blob += 1;
                building = BlobBuilder::new(next_blob);
            }
            let location = building.push(seq, &payload);
            usage
                .entry(location.blob)
                .or_default()
                .apply(&UsageDelta::added(location.len));
            let record = MessageRecord::encode(&targets, &location);
            messages.insert(seq, record.as_slice()).during(err)?;
            converted += 1;
        }
    }
    write_blob(&mut blobs, &building)?;
    let mut blob_bytes = 0;
    for (blob, usage) in usage {
        blob_bytes += usage.size;
        usage_table.insert(blob, usage).during(err)?;
    }
    meta.insert(meta_keys::NEXT_BLOB, next_blob + 1)
        .during(err)?;
    meta.insert(meta_keys::BLOB_BYTES, blob_bytes).during(err)?;
    Ok(converted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use redb::{Database, ReadableDatabase};

    use super::*;
    use crate::blobs::BlobView;
    use crate::tables::{SCHEMA_INLINE_PAYLOADS, STORE_META};
    use crate::{Config, NewMessage, PeekOptions, Store, SystemClock, Target};

    /// Rewrites a current store file the way schema 1 stored it: payloads inside the message
    /// records, no blob tables or counters.
    fn downgrade(path: &std::path::Path) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let read = db.begin_read().unwrap();
            let blobs = read.open_table(BLOBS).unwrap();
            let mut messages = txn.open_table(MESSAGES).unwrap();
            let old: Vec<(u64, Vec<u8>)> = messages
                .iter()
                .unwrap()
                .map(|e| {
                    let (seq, record) = e.unwrap();
                    (seq.value(), record.value().to_vec())
                })
                .collect();
            for (seq, record) in old {
                let record = MessageRecord::new(&record);
                let location = record.location();
                let blob = blobs.get(location.blob).unwrap().unwrap();
                let payload = BlobView::new(blob.value()).payload(&location).unwrap();
                let mut v1 = MessageRecord::encode(&record.targets(), &location);
                v1.truncate(v1.len() - crate::blobs::Location::ENCODED_LEN);
                v1.extend_from_slice(payload);
                messages.insert(seq, v1.as_slice()).unwrap();
            }
            let mut meta = txn.open_table(STORE_META).unwrap();
            meta.insert(meta_keys::SCHEMA_VERSION, SCHEMA_INLINE_PAYLOADS)
                .unwrap();
            meta.remove(meta_keys::NEXT_BLOB).unwrap();
            meta.remove(meta_keys::BLOB_BYTES).unwrap();
        }
        txn.delete_table(BLOBS).unwrap();
        txn.delete_table(BLOB_USAGE).unwrap();
        txn.commit().unwrap();
    }

    fn contents(store: &Store, endpoint: &str) -> Vec<(u64, Vec<u8>)> {
        store
            .reader()
            .peek(endpoint, PeekOptions::head(usize::MAX))
            .unwrap()
            .deliveries
            .into_iter()
            .map(|d| (d.offset.seq, d.payload.to_vec()))
            .collect()
    }

    #[test]
    fn a_schema_1_file_opens_with_its_messages_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let open = || Store::open(&path, Config::default(), Arc::new(SystemClock)).unwrap();
        let mut store = open();
        store.add_endpoint("a").unwrap();
        store.add_endpoint("b").unwrap();
        // More than a chunk of records and more than a blob's worth of bytes.
        store
            .write(|tx| {
                for i in 0..(CHUNK + 300) {
                    let payload = vec![u8::try_from(i % 251).unwrap(); 100 + i % 700];
                    let targets = if i % 3 == 0 {
                        vec![Target::new("a"), Target::new("b").with_priority(2)]
                    } else {
                        vec![Target::new("a")]
                    };
                    tx.append(&NewMessage::new(payload, targets)).unwrap();
                }
            })
            .unwrap();
        let (before_a, before_b, stats) =
            (contents(&store, "a"), contents(&store, "b"), store.stats());
        drop(store);
        downgrade(&path);

        let mut store = open();
        store.verify().unwrap();
        assert_eq!(contents(&store, "a"), before_a);
        assert_eq!(contents(&store, "b"), before_b);
        assert_eq!(store.stats(), stats);
        // And it keeps working: new appends go to new blobs.
        let seq = store
            .append(&NewMessage::new(b"new".to_vec(), vec![Target::new("b")]))
            .unwrap()
            .seq;
        assert_eq!(contents(&store, "b").last(), Some(&(seq, b"new".to_vec())));
        store.verify().unwrap();
    }
}
