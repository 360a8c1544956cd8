//! The async handle: group commit, durability before the answer, notifications, shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use ironedge_store::{
    AppendError, Config, ManualClock, NewMessage, Offset, PeekOptions, StorageError, Store,
    StoreHandle, Target, Timestamp,
};

fn open(dir: &tempfile::TempDir, clock: &ManualClock) -> StoreHandle {
    StoreHandle::open(
        dir.path().join("store.redb"),
        Config::default(),
        Arc::new(clock.clone()),
    )
    .unwrap()
}

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_millis(1_700_000_000_000))
}

fn message(text: String, endpoint: &str) -> NewMessage {
    NewMessage::new(text.into_bytes(), vec![Target::new(endpoint)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits_and_all_become_durable() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(&dir, &clock);
    store.add_endpoint("iothub").await.unwrap();

    let appenders = (0..64).map(|task| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..20 {
                let appended = store
                    .append(message(format!("{task}:{i}"), "iothub"))
                    .await
                    .unwrap();
                seqs.push(appended.seq);
            }
            seqs
        })
    });
    let seqs: Vec<Vec<u64>> = join_all(appenders)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for task in &seqs {
        assert!(
            task.windows(2).all(|w| w[0] < w[1]),
            "each appender's order holds"
        );
    }
    let all: BTreeSet<u64> = seqs.iter().flatten().copied().collect();
    assert_eq!(all.len(), 64 * 20, "every append got its own seq");

    let writer = store.writer_stats();
    assert_eq!(writer.operations_total, 64 * 20 + 1);
    assert!(
        writer.commits_total < writer.operations_total,
        "appends waiting together are committed together: {writer:?}"
    );

    store.close().await.unwrap();
    drop(store);
    // Every answered append is in the file.
    let reopened = Store::open(
        dir.path().join("store.redb"),
        Config::default(),
        Arc::new(clock),
    )
    .unwrap();
    reopened.verify().unwrap();
    assert_eq!(reopened.stats().endpoints["iothub"].len, 64 * 20);
}

#[tokio::test]
async fn refused_append_gets_its_own_error_while_others_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, &clock());
    store.add_endpoint("a").await.unwrap();
    let (ok, refused) = tokio::join!(
        store.append(message("fine".into(), "a")),
        store.append(message("lost".into(), "nowhere")),
    );
    ok.unwrap();
    assert!(matches!(refused, Err(AppendError::UnknownEndpoint { .. })));
    assert_eq!(store.stats().endpoints["a"].len, 1);
}

#[tokio::test]
async fn submitted_appends_keep_their_order_and_call_back_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, &clock());
    store.add_endpoint("a").await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..200 {
        let tx = tx.clone();
        let endpoint = if i == 100 { "nowhere" } else { "a" };
        store.submit_append(message(format!("m{i:03}"), endpoint), move |r| {
            let _ = tx.send((i, r));
        });
    }
    drop(tx);
    let mut outcomes = Vec::new();
    while let Some((i, r)) = rx.recv().await {
        if let Ok(appended) = &r {
            // Committed when the callback runs: a reader sees it.
            let queued = store
                .peek("a", PeekOptions::head(usize::MAX))
                .await
                .unwrap();
            assert!(
                queued
                    .deliveries
                    .iter()
                    .any(|d| d.offset.seq == appended.seq),
                "message {i} answered before its commit"
            );
        }
        outcomes.push((i, r.is_ok()));
    }
    assert_eq!(outcomes.len(), 200, "every submission is answered once");
    assert!(outcomes.iter().all(|&(i, ok)| ok == (i != 100)));
    let stored: Vec<String> = store
        .peek("a", PeekOptions::head(usize::MAX))
        .await
        .unwrap()
        .deliveries
        .iter()
        .map(|d| String::from_utf8(d.payload.to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..200)
        .filter(|&i| i != 100)
        .map(|i| format!("m{i:03}"))
        .collect();
    assert_eq!(stored, expected, "queue order is submission order");
}

#[tokio::test]
async fn consumer_reads_acks_and_is_woken_by_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, &clock());
    store.add_endpoint("module").await.unwrap();
    let mut changes = store.subscribe("module");

    store.append(message("one".into(), "module")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("woken within 5 s")
        .unwrap();
    assert_eq!(*changes.borrow_and_update(), 1);

    let batch = store.peek("module", PeekOptions::head(10)).await.unwrap();
    assert_eq!(batch.deliveries.len(), 1);
    let acked = store
        .ack("module", vec![batch.deliveries[0].offset])
        .await
        .unwrap();
    assert_eq!(acked, 1);
    let stats = store.stats().endpoints["module"];
    assert_eq!((stats.len, stats.acked_total), (0, 1));
}

#[tokio::test]
async fn peek_hands_expired_messages_to_the_writer_for_removal() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(&dir, &clock);
    store.add_endpoint("e").await.unwrap();
    let target = Target::new("e").with_ttl(Duration::from_secs(10));
    store
        .append(NewMessage::new(&b"x"[..], vec![target]))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(10));
    let peeked = store.peek("e", PeekOptions::head(10)).await.unwrap();
    assert!(peeked.deliveries.is_empty());
    assert_eq!(peeked.skipped_expired, 1);

    // The sweep runs in the background; wait for its commit, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.stats().endpoints["e"].expired_total == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expired message was not removed"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.stats().endpoints["e"].len, 0);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
}

#[tokio::test]
async fn ack_through_and_endpoint_removal_work_through_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, &clock());
    store.add_endpoint("a").await.unwrap();
    store.add_endpoint("b").await.unwrap();
    let mut last = 0;
    for i in 0..5 {
        let targets = vec![Target::new("a").with_priority(1), Target::new("b")];
        last = store
            .append(NewMessage::new(format!("{i}").into_bytes(), targets))
            .await
            .unwrap()
            .seq;
    }
    assert_eq!(
        store.ack_through("a", Offset::new(1, last)).await.unwrap(),
        5
    );
    assert!(store.remove_endpoint("b").await.unwrap());
    let stats = store.stats();
    assert_eq!((stats.messages, stats.bytes), (0, 0));
}

#[tokio::test]
async fn writes_after_close_fail_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, &clock());
    store.add_endpoint("a").await.unwrap();
    store.close().await.unwrap();
    let err = store.append(message("late".into(), "a")).await.unwrap_err();
    assert!(
        matches!(err, AppendError::Storage(StorageError::Closed)),
        "{err}"
    );
    assert!(err.to_string().contains("reopen"), "{err}");
    // Reads still work until the handle is dropped.
    assert_eq!(store.reader().endpoints().unwrap(), ["a"]);
}
