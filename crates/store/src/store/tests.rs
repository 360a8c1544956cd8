//! Storage failures under the store: a backend that fails I/O on command, and one that models
//! power loss (every write since the last fsync is gone). These reach what a `kill -9` cannot:
//! the fsync ordering itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::StorageBackend;

use crate::{
    AppendError, Config, ManualClock, NewMessage, PeekOptions, StorageError, Store, Target,
    Timestamp,
};

/// Storage whose writes land in `current` and reach `durable` only on a successful sync, and
/// that fails every call from the `fail_at`-th on (a dead disk, or the moment power goes).
#[derive(Debug, Clone, Default)]
struct Disk {
    current: Arc<Mutex<Vec<u8>>>,
    durable: Arc<Mutex<Vec<u8>>>,
    calls: Arc<AtomicU64>,
    fail_at: Arc<AtomicU64>,
}

impl Disk {
    fn new() -> Self {
        let disk = Self::default();
        disk.fail_at.store(u64::MAX, Ordering::SeqCst);
        disk
    }

    /// What survives a power loss: only synced bytes, on a healthy new disk.
    fn after_power_loss(&self) -> Self {
        let durable = self.durable.lock().unwrap().clone();
        let disk = Self::new();
        *disk.current.lock().unwrap() = durable.clone();
        *disk.durable.lock().unwrap() = durable;
        disk
    }

    fn fail_after(&self, calls: u64) {
        self.fail_at
            .store(self.calls.load(Ordering::SeqCst) + calls, Ordering::SeqCst);
    }

    fn tick(&self) -> std::io::Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n >= self.fail_at.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected I/O failure"));
        }
        Ok(())
    }
}

impl StorageBackend for Disk {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.current.lock().unwrap().len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let data = self.current.lock().unwrap();
        let start = offset as usize;
        let src = data
            .get(start..start + out.len())
            .ok_or_else(|| std::io::Error::other("read past the end"))?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.tick()?;
        self.current.lock().unwrap().resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.tick()?;
        let current = self.current.lock().unwrap().clone();
        *self.durable.lock().unwrap() = current;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.tick()?;
        let mut current = self.current.lock().unwrap();
        let start = offset as usize;
        if current.len() < start + data.len() {
            current.resize(start + data.len(), 0);
        }
        current[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_unix_millis(1_000)))
}

fn open(disk: &Disk) -> Result<Store, crate::OpenError> {
    Store::open_with_backend(disk.clone(), "<test disk>", Config::default(), clock())
}

fn message(i: u64) -> NewMessage {
    NewMessage::new(format!("message {i}").into_bytes(), vec![Target::new("e")])
}

fn stored(store: &Store) -> Vec<String> {
    store
        .reader()
        .peek("e", PeekOptions::head(usize::MAX))
        .unwrap()
        .deliveries
        .iter()
        .map(|d| String::from_utf8(d.payload.to_vec()).unwrap())
        .collect()
}

#[test]
fn failed_commit_fails_every_operation_of_its_batch_and_keeps_what_was_committed() {
    let disk = Disk::new();
    let mut store = open(&disk).unwrap();
    store.add_endpoint("e").unwrap();
    for i in 0..5 {
        store.append(&message(i)).unwrap();
    }
    disk.fail_after(0);
    let result = store.write(|tx| (0..3).map(|i| tx.append(&message(100 + i))).count());
    assert!(
        matches!(result, Err(StorageError::Database { .. })),
        "{result:?}"
    );
    let err = store.append(&message(200)).unwrap_err();
    assert!(matches!(err, AppendError::Storage(_)), "{err}");
    assert!(err.to_string().contains("check the disk"), "{err}");
    // Memory still says what the file says.
    assert_eq!(store.stats().endpoints["e"].len, 5);
    drop(store);

    let store = open(&disk.after_power_loss()).unwrap();
    store.verify().unwrap();
    let want: Vec<String> = (0..5).map(|i| format!("message {i}")).collect();
    assert_eq!(stored(&store), want);
}

#[test]
fn power_loss_at_any_write_keeps_exactly_the_committed_appends() {
    // Count the storage calls of a clean run, then lose power before each one in turn.
    let appends = 12u64;
    let run = |disk: &Disk| -> Vec<u64> {
        let mut committed = Vec::new();
        let Ok(mut store) = open(disk) else {
            return committed;
        };
        if store.add_endpoint("e").is_err() {
            return committed;
        }
        for i in 0..appends {
            let acked = store.write(|tx| {
                let first = tx.append(&message(i));
                let second = tx.ack("e", &[]); // a second operation in the same commit
                (first, second)
            });
            match acked {
                Ok((Ok(_), Ok(_))) => committed.push(i),
                _ => break,
            }
        }
        committed
    };
    let clean = Disk::new();
    assert_eq!(run(&clean).len() as u64, appends);
    let total_calls = clean.calls.load(Ordering::SeqCst);

    for crash_at in 0..total_calls {
        let disk = Disk::new();
        disk.fail_after(crash_at);
        let committed = run(&disk);
        let survivor = disk.after_power_loss();
        let Ok(store) = open(&survivor) else {
            // Power went before the file was first initialised: nothing was ever committed.
            assert!(committed.is_empty(), "crash at call {crash_at}");
            continue;
        };
        store.verify().unwrap();
        let present: Vec<String> = if store.reader().endpoints().unwrap().is_empty() {
            Vec::new()
        } else {
            stored(&store)
        };
        let want: Vec<String> = committed.iter().map(|i| format!("message {i}")).collect();
        assert_eq!(
            present, want,
            "crash at storage call {crash_at} of {total_calls}"
        );
    }
}

/// What survives must be a state some commit left: (payloads of `slow`, payloads of `e`).
type Survivor = (Vec<String>, Vec<String>);

#[test]
fn power_loss_during_batches_and_compaction_keeps_exactly_the_committed_state() {
    // Each commit acknowledges the previous batch of `e` and appends a new batch that shares a
    // blob with one message for `slow`, which nobody reads: every blob turns sparse one commit
    // later and is compacted the commit after (compaction waits one quiet commit here).
    let steps = 8u64;
    let config = Config {
        compact_after_commits: 1,
        // These short payloads go to blobs too.
        inline_payload_max: 8,
        ..Config::default()
    };
    let run = |disk: &Disk| -> Vec<Survivor> {
        let mut states = vec![(Vec::new(), Vec::new())];
        let Ok(mut store) =
            Store::open_with_backend(disk.clone(), "<test disk>", config.clone(), clock())
        else {
            return states;
        };
        if store.add_endpoint("e").is_err() || store.add_endpoint("slow").is_err() {
            return states;
        }
        let (mut slow, mut last_e): (Vec<String>, Option<u64>) = (Vec::new(), None);
        for step in 0..steps {
            let batch: Vec<(String, &str)> = (0..4)
                .map(|i| {
                    let to = if i == 3 { "slow" } else { "e" };
                    (format!("step {step} message {i}"), to)
                })
                .collect();
            let committed = store.write(|tx| {
                if let Some(seq) = last_e {
                    tx.ack_through("e", crate::Offset::new(crate::DEFAULT_PRIORITY, seq))
                        .map_err(|_| StorageError::Closed)?;
                }
                let mut seqs = Vec::new();
                for (payload, to) in &batch {
                    let message =
                        NewMessage::new(payload.clone().into_bytes(), vec![Target::new(*to)]);
                    seqs.push(tx.append(&message).map_err(|_| StorageError::Closed)?.seq);
                }
                Ok::<_, StorageError>(seqs)
            });
            let Ok(Ok(seqs)) = committed else { break };
            last_e = seqs.get(2).copied();
            slow.push(batch[3].0.clone());
            let e = batch[..3].iter().map(|(p, _)| p.clone()).collect();
            states.push((slow.clone(), e));
        }
        states
    };
    let clean = Disk::new();
    let states = run(&clean);
    assert_eq!(states.len() as u64, steps + 1);
    let store =
        Store::open_with_backend(clean.clone(), "<test disk>", config.clone(), clock()).unwrap();
    let stats = store.stats();
    let appended: u64 = (0..steps)
        .map(|s| {
            (0..4)
                .map(|i| format!("step {s} message {i}").len() as u64)
                .sum::<u64>()
        })
        .sum();
    assert!(
        stats.blob_bytes < appended && stats.blob_bytes <= 2 * stats.bytes,
        "compaction should have run: {stats:?}, {appended} bytes appended"
    );
    drop(store);
    let total_calls = clean.calls.load(Ordering::SeqCst);

    for crash_at in 0..total_calls {
        let disk = Disk::new();
        disk.fail_after(crash_at);
        let states = run(&disk);
        let Ok(store) = Store::open_with_backend(
            disk.after_power_loss(),
            "<test disk>",
            config.clone(),
            clock(),
        ) else {
            assert_eq!(
                states.len(),
                1,
                "crash at call {crash_at}: commits were lost"
            );
            continue;
        };
        store.verify().unwrap();
        let endpoints = store.reader().endpoints().unwrap();
        let read = |endpoint: &str| -> Vec<String> {
            if !endpoints.iter().any(|e| e == endpoint) {
                return Vec::new();
            }
            store
                .reader()
                .peek(endpoint, PeekOptions::head(usize::MAX))
                .unwrap()
                .deliveries
                .iter()
                .map(|d| String::from_utf8(d.payload.to_vec()).unwrap())
                .collect()
        };
        let survivor = (read("slow"), read("e"));
        assert_eq!(
            &survivor,
            states.last().unwrap(),
            "crash at storage call {crash_at} of {total_calls}"
        );
    }
}

/// Rewrites a current store file the way schema 1 stored it: every payload inside its message
/// record, no blob tables or counters.
fn downgrade_to_schema_1(path: &std::path::Path) {
    use crate::blobs::{BLOB_USAGE, BLOBS, BlobView};
    use crate::tables::{
        MESSAGES, MessageRecord, Payload, SCHEMA_INLINE_PAYLOADS, STORE_META, meta_keys,
    };
    use redb::{ReadableDatabase, ReadableTable};

    let db = redb::Database::create(path).unwrap();
    let read = db.begin_read().unwrap();
    let blobs = read.open_table(BLOBS).unwrap();
    let txn = db.begin_write().unwrap();
    {
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
            let Payload::InBlob(location) = record.payload() else {
                continue;
            };
            let blob = blobs.get(location.blob).unwrap().unwrap();
            let payload = BlobView::new(blob.value()).payload(&location).unwrap();
            let v1 = MessageRecord::encode(&record.targets(), &Payload::Inline(payload));
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

#[test]
fn a_schema_1_file_opens_with_its_messages_intact_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let open = || Store::open(&path, Config::default(), clock()).unwrap();
    let contents = |store: &Store, endpoint: &str| -> Vec<(u64, Vec<u8>)> {
        store
            .reader()
            .peek(endpoint, PeekOptions::head(usize::MAX))
            .unwrap()
            .deliveries
            .into_iter()
            .map(|d| (d.offset.seq, d.payload.to_vec()))
            .collect()
    };
    let mut store = open();
    store.add_endpoint("a").unwrap();
    store.add_endpoint("b").unwrap();
    // Small payloads (inline) and large ones (in blobs, which schema 1 did not have).
    store
        .write(|tx| {
            for i in 0..300usize {
                let payload = vec![u8::try_from(i % 251).unwrap(); 100 + i * 37 % 3000];
                let targets = if i % 3 == 0 {
                    vec![Target::new("a"), Target::new("b").with_priority(2)]
                } else {
                    vec![Target::new("a")]
                };
                tx.append(&NewMessage::new(payload, targets)).unwrap();
            }
        })
        .unwrap();
    let (before_a, before_b) = (contents(&store, "a"), contents(&store, "b"));
    let stats = store.stats();
    assert!(
        stats.blob_bytes > 0 && stats.blob_bytes < stats.bytes,
        "{stats:?}"
    );
    drop(store);
    downgrade_to_schema_1(&path);

    let mut store = open();
    store.verify().unwrap();
    assert_eq!(contents(&store, "a"), before_a);
    assert_eq!(contents(&store, "b"), before_b);
    assert_eq!(store.stats().bytes, stats.bytes);
    assert_eq!(
        store.stats().blob_bytes,
        0,
        "schema 1 payloads stay in their records"
    );
    // New large messages go to blobs; acknowledging old ones works.
    let big = vec![9u8; 5000];
    let seq = store
        .append(&NewMessage::new(big.clone(), vec![Target::new("b")]))
        .unwrap()
        .seq;
    assert_eq!(contents(&store, "b").last(), Some(&(seq, big)));
    let last_a = before_a.last().unwrap().0;
    store
        .ack_through("a", crate::Offset::new(crate::DEFAULT_PRIORITY, last_a))
        .unwrap();
    assert!(contents(&store, "a").is_empty());
    store.verify().unwrap();
    drop(store);
    open().verify().unwrap();
}
