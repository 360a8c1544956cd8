//! Payload blobs: a commit's payloads share a blob; a blob goes with its last message; blobs
//! left mostly dead by stragglers are compacted so the file does not keep what was acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestStore, at};
use ironedge_store::{Config, NewMessage, Offset, PeekOptions, Store};

/// Appends `n` messages of `size` bytes in one commit; every `slow_every`-th one also goes to
/// `slow` instead, the rest to `fast`. Returns the payloads that went to `slow`.
fn append_batch(
    store: &mut Store,
    first: usize,
    n: usize,
    size: usize,
    slow_every: usize,
) -> Vec<Vec<u8>> {
    let mut slow = Vec::new();
    store
        .write(|tx| {
            for i in first..first + n {
                let mut payload = format!("message {i} ").into_bytes();
                payload.resize(size, b'.');
                let targets = if i % slow_every == slow_every - 1 {
                    slow.push(payload.clone());
                    vec![at("slow", 0)]
                } else {
                    vec![at("fast", 0)]
                };
                tx.append(&NewMessage::new(payload, targets)).unwrap();
            }
        })
        .unwrap();
    slow
}

fn ack_all(store: &mut Store, endpoint: &str) {
    let peeked = store
        .reader()
        .peek(endpoint, PeekOptions::head(usize::MAX))
        .unwrap();
    if let Some(last) = peeked.deliveries.last() {
        store.ack_through(endpoint, last.offset).unwrap();
    }
}

fn slow_payloads(store: &Store) -> Vec<Vec<u8>> {
    store
        .reader()
        .peek("slow", PeekOptions::head(usize::MAX))
        .unwrap()
        .deliveries
        .into_iter()
        .map(|d| d.payload.to_vec())
        .collect()
}

#[test]
fn a_blob_is_deleted_with_its_last_message() {
    let mut t = TestStore::with_endpoints(Config::default(), &["fast", "slow"]);
    append_batch(t.store(), 0, 40, 4096, usize::MAX);
    let stats = t.store().stats();
    assert_eq!(stats.bytes, 40 * 4096);
    assert_eq!(
        stats.blob_bytes, stats.bytes,
        "one commit, one blob, all of it live"
    );

    let first = t
        .store()
        .reader()
        .peek("fast", PeekOptions::head(10))
        .unwrap();
    let tenth = first.deliveries.last().unwrap().offset;
    t.store().ack_through("fast", tenth).unwrap();
    let stats = t.store().stats();
    assert_eq!(stats.bytes, 30 * 4096);
    assert_eq!(
        stats.blob_bytes,
        40 * 4096,
        "the blob stays while messages live in it"
    );

    ack_all(t.store(), "fast");
    let stats = t.store().stats();
    assert_eq!((stats.messages, stats.bytes, stats.blob_bytes), (0, 0, 0));
    t.store().verify().unwrap();
    t.reopen();
}

#[test]
fn stragglers_are_compacted_out_of_dead_blobs_after_a_quiet_spell() {
    let mut t = TestStore::with_endpoints(Config::default(), &["fast", "slow"]);
    // 10 commits of 50 × 4 KiB, a blob each; one message in ten goes to the slow endpoint,
    // which is offline, the rest to the fast one.
    let mut slow = Vec::new();
    for commit in 0..10 {
        slow.extend(append_batch(t.store(), commit * 50, 50, 4096, 10));
    }
    ack_all(t.store(), "fast");
    let stats = t.store().stats();
    assert_eq!(stats.bytes, 50 * 4096);
    assert_eq!(
        stats.blob_bytes,
        500 * 4096,
        "acknowledged neighbours still take room"
    );

    // Restart: the compaction candidates are found again from the file.
    t.reopen();

    // Traffic that touches nothing old: the sparse blobs ripen, and compaction moves the
    // stragglers out of them a bounded amount per commit.
    let mut commits = 0;
    while t.store().stats().blob_bytes > 2 * t.store().stats().bytes {
        append_batch(t.store(), 10_000 + commits, 1, 100, usize::MAX);
        ack_all(t.store(), "fast");
        commits += 2;
        assert!(
            commits < 400,
            "compaction made no progress: {:?}",
            t.store().stats()
        );
    }
    let stats = t.store().stats();
    assert_eq!(stats.bytes, 50 * 4096);
    assert!(stats.blob_bytes <= 2 * stats.bytes, "{stats:?}");
    assert!(
        commits >= 64,
        "compaction waited for blobs to be left alone ({commits} commits)"
    );
    t.store().verify().unwrap();
    assert_eq!(
        slow_payloads(t.store()),
        slow,
        "moved payloads read back unchanged"
    );

    t.reopen();
    assert_eq!(slow_payloads(t.store()), slow);
    ack_all(t.store(), "slow");
    let stats = t.store().stats();
    assert_eq!((stats.bytes, stats.blob_bytes), (0, 0));
    t.store().verify().unwrap();
}

#[test]
fn a_message_shared_by_endpoints_keeps_its_blob_until_the_last_ack() {
    let mut t = TestStore::with_endpoints(Config::default(), &["a", "b"]);
    let shared = "shared ".repeat(300);
    let seq = t.append(&shared, vec![at("a", 0), at("b", 3)]);
    t.store().ack("a", &[Offset::new(0, seq)]).unwrap();
    assert_eq!(t.payloads("b"), vec![shared.clone()]);
    assert_eq!(t.store().stats().blob_bytes, shared.len() as u64);
    t.store().ack("b", &[Offset::new(3, seq)]).unwrap();
    assert_eq!(t.store().stats().blob_bytes, 0);
    t.store().verify().unwrap();
}

#[test]
fn a_message_larger_than_a_blob_gets_one_of_its_own() {
    let mut t = TestStore::with_endpoints(Config::default(), &["fast", "slow"]);
    let big = vec![7u8; 1024 * 1024];
    t.store()
        .write(|tx| {
            tx.append(&NewMessage::new(b"small".to_vec(), vec![at("slow", 0)]))
                .unwrap();
            tx.append(&NewMessage::new(big.clone(), vec![at("slow", 0)]))
                .unwrap();
            tx.append(&NewMessage::new(b"after".to_vec(), vec![at("slow", 0)]))
                .unwrap();
        })
        .unwrap();
    let payloads = slow_payloads(t.store());
    assert_eq!(payloads, vec![b"small".to_vec(), big, b"after".to_vec()]);
    t.store().verify().unwrap();
}

#[test]
fn quota_eviction_inside_the_commit_that_filled_the_blob_keeps_counters_right() {
    let config = Config {
        quota_bytes: Some(10 * 2000),
        ..Config::default()
    };
    let mut t = TestStore::with_endpoints(config, &["fast", "slow"]);
    // 25 × 2000 bytes in one commit under a 20 000-byte quota: the first 15 are evicted from
    // the very blob this commit is still building.
    append_batch(t.store(), 0, 25, 2000, 1);
    let stats = t.store().stats();
    assert_eq!((stats.messages, stats.bytes), (10, 10 * 2000));
    // The blob was written whole; the evicted payloads in it are dead bytes until compaction.
    assert_eq!(stats.blob_bytes, 25 * 2000);
    assert_eq!(stats.evicted_messages_total, 15);
    assert_eq!(slow_payloads(t.store()).len(), 10);
    t.store().verify().unwrap();
    t.reopen();
}
