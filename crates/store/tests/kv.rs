//! The typed key-value area: twin cache, identity cache, pending reported patches, checkpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::TestStore;
use ironedge_store::{
    CachedIdentity, CachedTwin, Config, IDENTITIES, IdentityCredentials, KvError, KvQueue, KvTable,
    ManualClock, PendingReportedPatch, REPORTED_PATCHES, StoreHandle, TWINS, Timestamp,
    UPSTREAM_CHECKPOINTS,
};
use serde_json::json;

fn identity(module: &str) -> CachedIdentity {
    CachedIdentity {
        device_id: "edge1".into(),
        module_id: Some(module.into()),
        generation_id: Some("638000".into()),
        credentials: IdentityCredentials::SymmetricKey {
            primary_key: "cHJpbWFyeQ==".into(),
            secondary_key: "c2Vjb25kYXJ5".into(),
        },
        fetched_at: Timestamp::from_unix_millis(5),
    }
}

#[test]
fn twin_and_identity_caches_survive_a_restart() {
    let mut t = TestStore::new(Config::default());
    let twin = CachedTwin {
        fetched_at: Timestamp::from_unix_millis(42),
        twin: json!({"desired": {"$version": 3, "interval": 5}, "reported": {"$version": 1}}),
    };
    let writes = vec![
        TWINS.put("edge1/sensor", &twin).unwrap(),
        IDENTITIES.put("edge1/sensor", &identity("sensor")).unwrap(),
        IDENTITIES.put("edge1/filter", &identity("filter")).unwrap(),
        UPSTREAM_CHECKPOINTS
            .put("desired/edge1/sensor", &3)
            .unwrap(),
    ];
    t.store().kv(&writes).unwrap();
    t.reopen();
    let reader = t.store().reader();
    assert_eq!(reader.get(&TWINS, "edge1/sensor").unwrap(), Some(twin));
    assert_eq!(reader.get(&TWINS, "edge1/other").unwrap(), None);
    let ids: Vec<String> = reader
        .list(&IDENTITIES)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(ids, ["edge1/filter", "edge1/sensor"]);
    assert_eq!(
        reader
            .get(&UPSTREAM_CHECKPOINTS, "desired/edge1/sensor")
            .unwrap(),
        Some(3)
    );

    t.store().kv(&[IDENTITIES.remove("edge1/filter")]).unwrap();
    assert_eq!(t.store().reader().list(&IDENTITIES).unwrap().len(), 1);
    t.store().kv(&[IDENTITIES.clear()]).unwrap();
    assert!(t.store().reader().list(&IDENTITIES).unwrap().is_empty());
}

#[test]
fn reported_patches_queue_in_order_and_ids_are_never_reused() {
    let mut t = TestStore::new(Config::default());
    let patch = |n: i64| PendingReportedPatch {
        identity: "edge1/sensor".into(),
        patch: json!({"n": n}),
        received_at: Timestamp::from_unix_millis(1),
    };
    let ids = t
        .store()
        .kv(&[
            REPORTED_PATCHES.push(&patch(1)).unwrap(),
            REPORTED_PATCHES.push(&patch(2)).unwrap(),
            REPORTED_PATCHES.push(&patch(3)).unwrap(),
        ])
        .unwrap();
    assert_eq!(ids, [1, 2, 3]);
    let reader = t.store().reader();
    let pending = reader.queue_peek(&REPORTED_PATCHES, 2).unwrap();
    assert_eq!(pending, [(1, patch(1)), (2, patch(2))]);
    t.store().kv(&[REPORTED_PATCHES.ack_through(2)]).unwrap();
    t.store().kv(&[REPORTED_PATCHES.ack([3])]).unwrap();
    assert_eq!(t.store().reader().queue_len(&REPORTED_PATCHES).unwrap(), 0);
    drop(reader); // readers keep the file open
    t.reopen();
    let next = t
        .store()
        .kv(&[REPORTED_PATCHES.push(&patch(4)).unwrap()])
        .unwrap();
    assert_eq!(
        next,
        [4],
        "an emptied queue does not hand out old ids again"
    );
}

#[test]
fn reserved_table_names_are_refused_and_nothing_is_written() {
    const SNEAKY: KvTable<u64> = KvTable::new("store/meta");
    const FINE: KvTable<u64> = KvTable::new("fine");
    let mut t = TestStore::new(Config::default());
    let err = t
        .store()
        .kv(&[
            FINE.put("a", &1).unwrap(),
            SNEAKY.put("next_seq", &0).unwrap(),
        ])
        .unwrap_err();
    assert!(
        matches!(err, KvError::ReservedName { name: "store/meta" }),
        "{err}"
    );
    assert_eq!(
        t.store().reader().get(&FINE, "a").unwrap(),
        None,
        "the batch is all or nothing"
    );
}

#[test]
fn a_value_of_the_wrong_shape_reports_table_and_key() {
    const AS_TEXT: KvTable<String> = KvTable::new("settings");
    const AS_NUMBER: KvTable<u64> = KvTable::new("settings");
    let mut t = TestStore::new(Config::default());
    t.store()
        .kv(&[AS_TEXT.put("mode", &"fast".to_owned()).unwrap()])
        .unwrap();
    let err = t.store().reader().get(&AS_NUMBER, "mode").unwrap_err();
    assert!(matches!(&err, KvError::Decode { table: "settings", key, .. } if key == "mode"));
    assert!(err.to_string().contains("remove the key"), "{err}");
}

#[test]
fn reading_a_table_never_written_is_empty() {
    const NEW: KvQueue<u64> = KvQueue::new("never_written");
    let t = TestStore::new(Config::default());
    let reader = t.store.as_ref().unwrap().reader();
    assert!(reader.queue_peek(&NEW, 10).unwrap().is_empty());
    assert_eq!(reader.queue_len(&NEW).unwrap(), 0);
    assert!(reader.list(&TWINS).unwrap().is_empty());
}

#[tokio::test]
async fn handle_writes_key_values_through_the_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_millis(1));
    let store = StoreHandle::open(
        dir.path().join("s.redb"),
        Config::default(),
        Arc::new(clock),
    )
    .unwrap();
    store.put(&UPSTREAM_CHECKPOINTS, "c2d", &7).await.unwrap();
    let id = store
        .push(
            &REPORTED_PATCHES,
            &PendingReportedPatch {
                identity: "edge1".into(),
                patch: json!({}),
                received_at: Timestamp::from_unix_millis(1),
            },
        )
        .await
        .unwrap();
    assert_eq!(id, 1);
    assert_eq!(
        store.reader().get(&UPSTREAM_CHECKPOINTS, "c2d").unwrap(),
        Some(7)
    );
    store.remove(&UPSTREAM_CHECKPOINTS, "c2d").await.unwrap();
    assert_eq!(
        store.reader().get(&UPSTREAM_CHECKPOINTS, "c2d").unwrap(),
        None
    );
}
