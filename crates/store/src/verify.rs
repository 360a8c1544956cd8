//! The consistency check behind [`Store::verify`](crate::Store::verify): every table must agree
//! with the others and with the counters. Crash and property tests run it after every reopen.

use std::collections::BTreeMap;

use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata,
};

use crate::blobs::{BLOB_USAGE, BLOBS, BlobUsage, BlobView};
use crate::error::{During, StorageError, VerifyError};
use crate::state::State;
use crate::tables::{ENDPOINTS, EXPIRY, MESSAGES, MessageRecord, NEVER, QUEUES};

/// Stop listing after this many problems; the first ones tell the story.
const MAX_PROBLEMS: usize = 100;

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, problem: impl FnOnce() -> String) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(problem());
        }
    }
}

pub(crate) fn check(db: &Database, state: &State) -> Result<(), VerifyError> {
    let txn = db.begin_read().during("begin read")?;
    let mut problems = Problems::default();
    check_tables(&txn, state, &mut problems).map_err(VerifyError::Storage)?;
    if problems.0.is_empty() {
        Ok(())
    } else {
        Err(VerifyError::Inconsistent {
            problems: problems.0,
        })
    }
}

fn check_tables(
    txn: &ReadTransaction,
    state: &State,
    p: &mut Problems,
) -> Result<(), StorageError> {
    let err = "verify";
    let endpoints = txn.open_table(ENDPOINTS).during(err)?;
    let queues = txn.open_table(QUEUES).during(err)?;
    let messages = txn.open_table(MESSAGES).during(err)?;
    let expiry = txn.open_table(EXPIRY).during(err)?;
    let blobs = txn.open_table(BLOBS).during(err)?;
    let usage = txn.open_table(BLOB_USAGE).during(err)?;

    // Endpoint records against the writer's memory.
    let mut records = BTreeMap::new();
    for entry in endpoints.iter().during(err)? {
        let (name, record) = entry.during(err)?;
        let (name, record) = (name.value().to_owned(), record.value());
        match state.endpoints.get(&record.id) {
            Some(known) if known.name == name && known.stats == record.stats => {}
            _ => p.push(|| format!("endpoint {name:?} record differs from the writer's state")),
        }
        records.insert(record.id, (name, record.stats));
    }
    if records.len() != state.endpoints.len() {
        p.push(|| "endpoint table and writer state list different endpoints".to_owned());
    }

    // Queue references: each points at a stored message that lists it.
    let mut counted: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for entry in queues.iter().during(err)? {
        let (key, value) = entry.during(err)?;
        let ((endpoint, priority, seq), value) = (key.value(), value.value());
        if !records.contains_key(&endpoint) {
            p.push(|| format!("queue entry {endpoint}/{priority}/{seq} of unknown endpoint"));
        }
        if seq >= state.next_seq {
            p.push(|| format!("queue entry {endpoint}/{priority}/{seq} is beyond next_seq"));
        }
        match messages.get(seq).during(err)? {
            Some(stored) => {
                let record = MessageRecord::new(stored.value());
                let listed = record.targets().iter().any(|t| {
                    t.endpoint_id == endpoint
                        && t.priority == priority
                        && t.expires_at == value.expires_at
                });
                if !listed {
                    p.push(|| format!("queue entry {endpoint}/{priority}/{seq} missing from its message's references"));
                }
                if record.payload().len() != value.size {
                    p.push(|| {
                        format!("queue entry {endpoint}/{priority}/{seq} has the wrong size")
                    });
                }
            }
            None => p.push(|| format!("queue entry {endpoint}/{priority}/{seq} has no message")),
        }
        if value.expires_at != NEVER
            && expiry
                .get((value.expires_at, endpoint, priority, seq))
                .during(err)?
                .is_none()
        {
            p.push(|| format!("queue entry {endpoint}/{priority}/{seq} missing from expiry index"));
        }
        let c = counted.entry(endpoint).or_default();
        c.0 += 1;
        c.1 += u64::from(value.size);
    }
    for (id, (name, stats)) in &records {
        let (len, bytes) = counted.get(id).copied().unwrap_or_default();
        if (len, bytes) != (stats.len, stats.bytes) {
            p.push(|| {
                format!(
                    "endpoint {name:?} counts {}/{} bytes but holds {len}/{bytes}",
                    stats.len, stats.bytes
                )
            });
        }
    }

    // Messages: each lists at least one reference, each listed reference is queued, its payload
    // is in its blob, and the totals match the counters.
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut used: BTreeMap<u64, BlobUsage> = BTreeMap::new();
    for entry in messages.iter().during(err)? {
        let (seq, stored) = entry.during(err)?;
        let seq = seq.value();
        let record = MessageRecord::new(stored.value());
        let payload = record.payload();
        count += 1;
        bytes += u64::from(payload.len());
        if let Some(location) = payload.location() {
            let usage = used.entry(location.blob).or_default();
            usage.live_count += 1;
            usage.live_bytes += u64::from(location.len);
            let in_blob = blobs
                .get(location.blob)
                .during(err)?
                .is_some_and(|b| BlobView::new(b.value()).payload(&location).is_some());
            if !in_blob {
                p.push(|| format!("message {seq} points at a payload its blob does not hold"));
            }
        }
        let targets = record.targets();
        if targets.is_empty() {
            p.push(|| format!("message {seq} is referenced by no endpoint"));
        }
        for t in &targets {
            if queues
                .get((t.endpoint_id, t.priority, seq))
                .during(err)?
                .is_none()
            {
                p.push(|| {
                    format!(
                        "message {seq} lists endpoint {} which does not queue it",
                        t.endpoint_id
                    )
                });
            }
        }
    }
    if (count, bytes) != (state.messages, state.total_bytes) {
        p.push(|| {
            format!(
                "counters say {} messages/{} bytes but the store holds {count}/{bytes}",
                state.messages, state.total_bytes
            )
        });
    }

    check_blobs(&blobs, &usage, &used, state, p)?;

    // Expiry index: each entry is a queued reference with that expiry.
    for entry in expiry.iter().during(err)? {
        let (key, _) = entry.during(err)?;
        let (expires_at, endpoint, priority, seq) = key.value();
        let matches = queues
            .get((endpoint, priority, seq))
            .during(err)?
            .is_some_and(|q| q.value().expires_at == expires_at);
        if !matches {
            p.push(|| format!("expiry entry {endpoint}/{priority}/{seq} has no queue entry"));
        }
    }
    Ok(())
}

/// Blob usage records against the messages that point into each blob (`used`), every blob with
/// a usage record and the other way round, and the blob byte counter.
fn check_blobs(
    blobs: &ReadOnlyTable<u64, &'static [u8]>,
    usage: &ReadOnlyTable<u64, BlobUsage>,
    used: &BTreeMap<u64, BlobUsage>,
    state: &State,
    p: &mut Problems,
) -> Result<(), StorageError> {
    let err = "verify blobs";
    let mut size = 0u64;
    let mut recorded = 0usize;
    for entry in usage.iter().during(err)? {
        let (blob, record) = entry.during(err)?;
        let (blob, record) = (blob.value(), record.value());
        recorded += 1;
        size += record.size;
        let live = used.get(&blob).copied().unwrap_or_default();
        if (record.live_count, record.live_bytes) != (live.live_count, live.live_bytes) {
            p.push(|| {
                format!(
                    "blob {blob} usage says {}/{} bytes live but messages use {}/{}",
                    record.live_count, record.live_bytes, live.live_count, live.live_bytes
                )
            });
        }
        if record.live_count == 0 {
            p.push(|| format!("blob {blob} has no live message but was kept"));
        }
        if blobs.get(blob).during(err)?.is_none() {
            p.push(|| format!("blob {blob} has a usage record but no bytes"));
        }
    }
    if recorded != used.len() {
        p.push(|| {
            format!(
                "{} blobs are in use but {recorded} have usage records",
                used.len()
            )
        });
    }
    let stored = blobs.len().during(err)?;
    if stored != recorded as u64 {
        p.push(|| format!("{stored} blobs are stored but {recorded} have usage records"));
    }
    if size != state.blob_bytes {
        p.push(|| {
            format!(
                "counters say blobs hold {} bytes but their usage records add up to {size}",
                state.blob_bytes
            )
        });
    }
    Ok(())
}
