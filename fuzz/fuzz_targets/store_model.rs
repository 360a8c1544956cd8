//! The store against a plain model (BTreeMaps), on a storage backend that fails I/O on command and
//! loses power (keeping only fsynced bytes), as redb's own fuzzer does. After every step the
//! store must deliver exactly what the model holds; after every power loss the reopened file
//! must hold exactly the committed operations and pass `Store::verify`.
#![no_main]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use ironedge_store::{
    Config, ManualClock, NewMessage, Offset, PeekOptions, Store, Target, Timestamp,
};
use libfuzzer_sys::fuzz_target;
use redb::StorageBackend;

const ENDPOINTS: [&str; 3] = ["iothub", "m1/in", "m2/in"];

#[derive(Arbitrary, Debug)]
enum Op {
    Add(u8),
    Remove(u8),
    Append {
        to: u8,
        also: Option<u8>,
        priority: u8,
        len: u8,
    },
    /// Appends in one commit (they share a payload blob): (endpoint and priority, length).
    AppendBatch(Vec<(u8, u8)>),
    Ack {
        endpoint: u8,
        mask: u8,
    },
    AckThrough {
        endpoint: u8,
        index: u8,
    },
    FailAfter(u8),
    PowerLoss,
}

#[derive(Debug, Default, Clone)]
struct Disk {
    current: Arc<Mutex<Vec<u8>>>,
    durable: Arc<Mutex<Vec<u8>>>,
    calls: Arc<AtomicU64>,
    fail_at: Arc<AtomicU64>,
}

impl Disk {
    fn healthy(bytes: Vec<u8>) -> Self {
        let disk = Disk::default();
        *disk.current.lock().unwrap() = bytes.clone();
        *disk.durable.lock().unwrap() = bytes;
        disk.fail_at.store(u64::MAX, Ordering::SeqCst);
        disk
    }

    fn tick(&self) -> std::io::Result<()> {
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.fail_at.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected"));
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
        let src = data
            .get(offset as usize..offset as usize + out.len())
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
        let bytes = self.current.lock().unwrap().clone();
        *self.durable.lock().unwrap() = bytes;
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.tick()?;
        let mut current = self.current.lock().unwrap();
        let end = offset as usize + data.len();
        if current.len() < end {
            current.resize(end, 0);
        }
        current[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}

/// Endpoint → (priority, seq) → payload: what must be delivered, in order.
type Model = BTreeMap<&'static str, BTreeMap<(u32, u64), Vec<u8>>>;

fn open(disk: &Disk) -> Option<Store> {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(1)));
    // Compaction after one quiet commit, so that short inputs reach it; payloads over 64 bytes
    // (of up to 255) go to blobs, the others stay inline.
    let config = Config {
        compact_after_commits: 1,
        inline_payload_max: 64,
        ..Config::default()
    };
    Store::open_with_backend(disk.clone(), "<fuzz disk>", config, clock).ok()
}

fn check(store: &Store, model: &Model) {
    store.verify().expect("consistent");
    for (endpoint, queue) in model {
        let got: Vec<((u32, u64), Vec<u8>)> = store
            .reader()
            .peek(endpoint, PeekOptions::head(usize::MAX))
            .expect("known endpoint")
            .deliveries
            .into_iter()
            .map(|d| ((d.offset.priority, d.offset.seq), d.payload.to_vec()))
            .collect();
        let want: Vec<_> = queue.iter().map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(got, want, "{endpoint}");
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut disk = Disk::healthy(Vec::new());
    let Some(mut store) = open(&disk) else { return };
    let mut model = Model::new();
    let mut healthy = true;
    for op in ops.into_iter().take(64) {
        let name = |i: u8| ENDPOINTS[i as usize % ENDPOINTS.len()];
        match op {
            Op::Add(e) => {
                if store.add_endpoint(name(e)).is_ok() {
                    model.entry(name(e)).or_default();
                }
            }
            Op::Remove(e) => {
                if store.remove_endpoint(name(e)).is_ok() {
                    model.remove(name(e));
                }
            }
            Op::Append {
                to,
                also,
                priority,
                len,
            } => {
                let payload = vec![to ^ len; len as usize];
                let mut targets =
                    vec![Target::new(name(to)).with_priority(u32::from(priority % 3))];
                if let Some(also) = also {
                    targets.push(Target::new(name(also)));
                }
                if let Ok(appended) =
                    store.append(&NewMessage::new(payload.clone(), targets.clone()))
                {
                    // Duplicate targets merge to the most urgent priority.
                    let mut merged: BTreeMap<&str, u32> = BTreeMap::new();
                    for t in &targets {
                        let p = merged
                            .entry(
                                ENDPOINTS
                                    .iter()
                                    .find(|n| **n == t.endpoint)
                                    .copied()
                                    .unwrap_or(""),
                            )
                            .or_insert(t.priority);
                        *p = (*p).min(t.priority);
                    }
                    for (endpoint, priority) in merged {
                        let queue = model
                            .get_mut(endpoint)
                            .expect("append succeeded, so the endpoint exists");
                        queue.insert((priority, appended.seq), payload.clone());
                    }
                }
            }
            Op::AppendBatch(batch) => {
                let batch: Vec<(&'static str, u32, Vec<u8>)> = batch
                    .into_iter()
                    .take(16)
                    .map(|(to, len)| (name(to), u32::from(to % 3), vec![to ^ len; len as usize]))
                    .collect();
                let appended = store.write(|tx| {
                    batch
                        .iter()
                        .map(|(to, priority, payload)| {
                            let target = Target::new(*to).with_priority(*priority);
                            tx.append(&NewMessage::new(payload.clone(), vec![target]))
                        })
                        .collect::<Vec<_>>()
                });
                if let Ok(results) = appended {
                    for ((to, priority, payload), result) in batch.into_iter().zip(results) {
                        if let Ok(appended) = result {
                            let queue = model
                                .get_mut(to)
                                .expect("append succeeded, so the endpoint exists");
                            queue.insert((priority, appended.seq), payload);
                        }
                    }
                }
            }
            Op::Ack { endpoint, mask } => {
                let Some(queue) = model.get(name(endpoint)) else {
                    continue;
                };
                let chosen: Vec<(u32, u64)> = queue
                    .keys()
                    .enumerate()
                    .filter(|(i, _)| *i < 8 && mask & (1 << i) != 0)
                    .map(|(_, k)| *k)
                    .collect();
                let offsets: Vec<Offset> =
                    chosen.iter().map(|(p, s)| Offset::new(*p, *s)).collect();
                if store.ack(name(endpoint), &offsets).is_ok() {
                    let queue = model.get_mut(name(endpoint)).expect("checked above");
                    for k in chosen {
                        queue.remove(&k);
                    }
                }
            }
            Op::AckThrough { endpoint, index } => {
                let Some(queue) = model.get(name(endpoint)) else {
                    continue;
                };
                let Some(&(priority, seq)) = queue.keys().nth(index as usize % 8) else {
                    continue;
                };
                if store
                    .ack_through(name(endpoint), Offset::new(priority, seq))
                    .is_ok()
                {
                    let queue = model.get_mut(name(endpoint)).expect("checked above");
                    queue.retain(|(p, s), _| !(*p == priority && *s <= seq));
                }
            }
            Op::FailAfter(n) => {
                disk.fail_at.store(
                    disk.calls.load(Ordering::SeqCst) + u64::from(n % 16),
                    Ordering::SeqCst,
                );
                healthy = false;
            }
            Op::PowerLoss => {
                drop(store);
                let durable = disk.durable.lock().unwrap().clone();
                disk = Disk::healthy(durable);
                store = open(&disk).expect("a committed file reopens");
                healthy = true;
            }
        }
        if healthy {
            check(&store, &model);
        }
    }
    drop(store);
    let durable = disk.durable.lock().unwrap().clone();
    let survivor = Disk::healthy(durable);
    let store = open(&survivor).expect("a committed file reopens");
    check(&store, &model);
});
