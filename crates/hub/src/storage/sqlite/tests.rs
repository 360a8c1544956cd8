use serde_json::json;

use super::*;
use crate::registry::{Capabilities, DeviceRequest, IfMatch};

fn mk_device(id: &str, edge: bool) -> Device {
    let req = DeviceRequest {
        capabilities: Some(Capabilities { iot_edge: edge }),
        ..DeviceRequest::default()
    };
    Device::apply_request(id, req, None, &IfMatch::Absent, "t").unwrap()
}

fn open() -> (tempfile::TempDir, SqliteStorage) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStorage::open(&dir.path().join("hub.db")).unwrap();
    (dir, s)
}

fn create_edge(s: &SqliteStorage, id: &str) {
    let d = mk_device(id, true);
    let mods: Vec<_> = d
        .missing_edge_modules(|_| false)
        .into_iter()
        .map(|m| {
            let t = Twin::new(id, Some(&m.module_id), "t");
            (m, t)
        })
        .collect();
    s.create_device(&d, &Twin::new(id, None, "t"), &mods)
        .unwrap();
}

#[test]
fn device_create_is_atomic_and_second_create_conflicts() {
    let (_d, s) = open();
    create_edge(&s, "e1");
    assert_eq!(s.list_modules("e1").unwrap().len(), 2);
    assert_eq!(s.device_twins("e1").unwrap().len(), 3);
    let again = s.create_device(&mk_device("e1", false), &Twin::new("e1", None, "t"), &[]);
    assert!(matches!(again, Err(StorageError::Conflict(_))));
    assert!(
        s.get_device("e1").unwrap().unwrap().capabilities.iot_edge,
        "the loser changed nothing"
    );
}

#[test]
fn twin_writes_are_compare_and_swap() {
    let (_d, s) = open();
    create_edge(&s, "e1");
    let mut t = s.get_twin("e1", None).unwrap().unwrap();
    t.patch_reported(&json!({"a": 1}), "t").unwrap();
    s.put_twin(&t, 1).unwrap();
    let mut stale = t.clone();
    stale.patch_reported(&json!({"a": 2}), "t").unwrap();
    assert!(matches!(
        s.put_twin(&stale, 1),
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(s.get_twin("e1", None).unwrap().unwrap(), t);
}

#[test]
fn deleting_a_device_removes_modules_twins_and_c2d() {
    let (_d, s) = open();
    create_edge(&s, "e1");
    let mut m = c2d("e1", "m1");
    s.enqueue_c2d(&mut m).unwrap();
    assert!(s.delete_device("e1").unwrap());
    assert!(s.list_modules("e1").unwrap().is_empty());
    assert!(s.device_twins("e1").unwrap().is_empty());
    assert!(s.pending_c2d("e1").unwrap().is_empty());
    assert!(!s.delete_device("e1").unwrap());
}

fn telemetry(device: &str, module: Option<&str>, at: i64) -> TelemetryRecord {
    TelemetryRecord {
        enqueued_ms: at,
        device_id: device.into(),
        module_id: module.map(Into::into),
        message_id: Some(format!("m{at}")),
        properties: [("k".to_owned(), "v x".to_owned())].into(),
        body: b"{\"t\":1}".to_vec(),
        ..TelemetryRecord::default()
    }
}

#[test]
fn telemetry_keeps_properties_and_filters_by_identity_time_and_seq() {
    let (_d, s) = open();
    let mut batch = vec![
        telemetry("a", None, 10),
        telemetry("b", Some("m"), 20),
        telemetry("a", None, 30),
    ];
    s.append_telemetry(&mut batch).unwrap();
    assert_eq!(batch.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let all = s.read_telemetry(&TelemetryFilter::default(), 10).unwrap();
    assert_eq!(all, batch);
    let only_a = TelemetryFilter {
        device_id: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(s.read_telemetry(&only_a, 10).unwrap().len(), 2);
    let module = TelemetryFilter {
        device_id: Some("b".into()),
        module_id: Some("m".into()),
        ..Default::default()
    };
    assert_eq!(s.read_telemetry(&module, 10).unwrap()[0].seq, 2);
    let window = TelemetryFilter {
        since_ms: Some(15),
        until_ms: Some(30),
        ..Default::default()
    };
    assert_eq!(s.read_telemetry(&window, 10).unwrap()[0].seq, 2);
    let after = TelemetryFilter {
        from_seq: 3,
        ..Default::default()
    };
    assert_eq!(s.read_telemetry(&after, 10).unwrap().len(), 1);
    assert_eq!(s.last_telemetry_seq().unwrap(), 3);
}

#[test]
fn retention_keeps_the_newest_count_and_drops_old_messages() {
    let (_d, s) = open();
    let mut batch: Vec<_> = (0..10).map(|i| telemetry("a", None, i * 100)).collect();
    s.append_telemetry(&mut batch).unwrap();
    assert_eq!(s.prune_telemetry(5, 0).unwrap(), 5);
    let left = s.read_telemetry(&TelemetryFilter::default(), 100).unwrap();
    assert_eq!(left.first().unwrap().seq, 6);
    s.prune_telemetry(100, 800).unwrap();
    assert_eq!(
        s.read_telemetry(&TelemetryFilter::default(), 100)
            .unwrap()
            .len(),
        2
    );
}

fn c2d(device: &str, id: &str) -> C2dMessage {
    C2dMessage {
        seq: 0,
        device_id: device.into(),
        message_id: id.into(),
        correlation_id: None,
        content_type: None,
        content_encoding: None,
        ack: Some("full".into()),
        properties: Default::default(),
        enqueued_ms: 1,
        expiry_ms: 1000,
        state: C2dState::Queued,
        updated_ms: 1,
        body: b"hi".to_vec(),
    }
}

#[test]
fn c2d_moves_through_its_states_and_expires() {
    let (_d, s) = open();
    let (mut a, mut b) = (c2d("d", "a"), c2d("d", "b"));
    s.enqueue_c2d(&mut a).unwrap();
    s.enqueue_c2d(&mut b).unwrap();
    assert!(matches!(
        s.enqueue_c2d(&mut c2d("d", "a")),
        Err(StorageError::Conflict(_))
    ));
    assert!(s.set_c2d_state("d", "a", C2dState::Completed, 5).unwrap());
    let pending = s.pending_c2d("d").unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(pending[0].body, b"hi");
    assert_eq!(s.expire_c2d(1000).unwrap(), 1);
    let fb = s.c2d_feedback(0, 10).unwrap();
    assert_eq!(
        fb.iter()
            .map(|m| (m.message_id.as_str(), m.state))
            .collect::<Vec<_>>(),
        [("a", C2dState::Completed), ("b", C2dState::Expired)]
    );
}

#[test]
fn reopening_keeps_everything_and_refuses_newer_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    {
        let s = SqliteStorage::open(&path).unwrap();
        create_edge(&s, "e1");
        s.append_telemetry(&mut [telemetry("e1", None, 1)]).unwrap();
    }
    let s = SqliteStorage::open(&path).unwrap();
    assert!(s.get_device("e1").unwrap().is_some());
    assert_eq!(s.last_telemetry_seq().unwrap(), 1);
    drop(s);
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert!(matches!(
        SqliteStorage::open(&path),
        Err(StorageError::SchemaTooNew { found: 99, .. })
    ));
}
