//! Endpoint queues on the synchronous core: order, acknowledgement, TTL, quota, endpoints,
//! persistence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestStore, at};
use ironedge_store::{
    AckError, AppendError, Config, EndpointError, NewMessage, Offset, OpenError, PeekError,
    PeekOptions, QuotaPolicy, ReadCursor, Store, Target,
};

#[test]
fn queue_delivers_by_priority_then_arrival() {
    let mut t = TestStore::with_endpoints(Config::default(), &["iothub"]);
    t.append("low-1", vec![at("iothub", 5)]);
    t.append("high-1", vec![at("iothub", 0)]);
    t.append("low-2", vec![at("iothub", 5)]);
    t.append("default", vec![Target::new("iothub")]);
    t.append("high-2", vec![at("iothub", 0)]);
    assert_eq!(
        t.payloads("iothub"),
        ["high-1", "high-2", "low-1", "low-2", "default"]
    );
}

#[test]
fn peek_does_not_remove_and_unacked_messages_are_redelivered() {
    let mut t = TestStore::with_endpoints(Config::default(), &["iothub"]);
    t.append("a", vec![at("iothub", 1)]);
    assert_eq!(t.payloads("iothub"), ["a"]);
    t.reopen();
    assert_eq!(
        t.payloads("iothub"),
        ["a"],
        "unacknowledged message survives a restart"
    );
}

#[test]
fn ack_removes_only_the_given_offsets() {
    let mut t = TestStore::with_endpoints(Config::default(), &["iothub"]);
    let a = t.append("a", vec![at("iothub", 1)]);
    let _b = t.append("b", vec![at("iothub", 1)]);
    let c = t.append("c", vec![at("iothub", 1)]);
    let acked = t
        .store()
        .ack("iothub", &[Offset::new(1, a), Offset::new(1, c)])
        .unwrap();
    assert_eq!(acked, 2);
    assert_eq!(t.payloads("iothub"), ["b"]);
    // Acknowledging again (a redelivered batch) changes nothing.
    assert_eq!(t.store().ack("iothub", &[Offset::new(1, a)]).unwrap(), 0);
    let stats = t.store().stats().endpoints["iothub"];
    assert_eq!((stats.len, stats.acked_total), (1, 2));
}

#[test]
fn ack_through_stays_within_its_priority() {
    let mut t = TestStore::with_endpoints(Config::default(), &["iothub"]);
    t.append("low-1", vec![at("iothub", 5)]);
    let low2 = t.append("low-2", vec![at("iothub", 5)]);
    // Arrives after the batch above was read, but sorts before it.
    t.append("urgent", vec![at("iothub", 0)]);
    t.append("low-3", vec![at("iothub", 5)]);
    let acked = t
        .store()
        .ack_through("iothub", Offset::new(5, low2))
        .unwrap();
    assert_eq!(acked, 2);
    assert_eq!(t.payloads("iothub"), ["urgent", "low-3"]);
}

#[test]
fn peek_respects_count_byte_limit_and_cursor() {
    let mut t = TestStore::with_endpoints(Config::default(), &["e"]);
    for p in ["aaaa", "bbbb", "cccc", "dddd"] {
        t.append(p, vec![at("e", 1)]);
    }
    let reader = t.store().reader();
    let two = reader.peek("e", PeekOptions::head(2)).unwrap().deliveries;
    assert_eq!(two.len(), 2);
    let by_bytes = reader
        .peek("e", PeekOptions::head(10).with_max_bytes(9))
        .unwrap();
    assert_eq!(by_bytes.deliveries.len(), 2, "8 bytes fit in 9, 12 do not");
    let rest = reader
        .peek("e", PeekOptions::head(10).after(two[1].offset))
        .unwrap()
        .deliveries;
    let rest: Vec<_> = rest.iter().map(|d| d.payload.as_ref()).collect();
    assert_eq!(rest, [b"cccc".as_ref(), b"dddd"]);
    let one_big = reader
        .peek("e", PeekOptions::head(10).with_max_bytes(1))
        .unwrap();
    assert_eq!(
        one_big.deliveries.len(),
        1,
        "one message is returned even if over the limit"
    );
}

#[test]
fn peek_past_a_cursor_skips_what_was_read_and_still_reads_a_more_urgent_priority_first() {
    let mut t = TestStore::with_endpoints(Config::default(), &["e"]);
    for p in ["low-1", "low-2", "low-3"] {
        t.append(p, vec![at("e", 5)]);
    }
    let reader = t.store().reader();
    let mut cursor = ReadCursor::new();
    let first = reader
        .peek_past("e", PeekOptions::head(2), &cursor)
        .unwrap()
        .deliveries;
    for d in &first {
        cursor.advance(d.offset);
    }
    assert!(cursor.covers(first[1].offset) && !cursor.is_empty());
    // Read but not acknowledged: a more urgent message that arrives now comes before low-3.
    t.append("high-1", vec![at("e", 0)]);
    let reader = t.store().reader();
    let next: Vec<String> = reader
        .peek_past("e", PeekOptions::head(10), &cursor)
        .unwrap()
        .deliveries
        .iter()
        .map(|d| String::from_utf8(d.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(next, ["high-1", "low-3"]);
    cursor.reset();
    assert_eq!(
        reader
            .peek_past("e", PeekOptions::head(10), &cursor)
            .unwrap()
            .deliveries
            .len(),
        4,
        "a reset cursor reads from the head again"
    );
}

#[test]
fn expired_messages_are_never_delivered_and_are_counted_once_removed() {
    let mut t = TestStore::with_endpoints(Config::default(), &["iothub", "module"]);
    let ttl = Duration::from_secs(60);
    t.append("short", vec![Target::new("iothub").with_ttl(ttl)]);
    t.append("forever", vec![Target::new("iothub")]);
    t.append(
        "shared",
        vec![Target::new("iothub").with_ttl(ttl), Target::new("module")],
    );
    t.advance(Duration::from_secs(59));
    assert_eq!(t.payloads("iothub"), ["short", "forever", "shared"]);
    t.advance(Duration::from_secs(1));
    let peeked = t
        .store()
        .reader()
        .peek("iothub", PeekOptions::head(10))
        .unwrap();
    assert_eq!(peeked.skipped_expired, 2);
    assert_eq!(peeked.deliveries.len(), 1);

    assert_eq!(t.store().purge_expired().unwrap(), 2);
    let stats = t.store().stats();
    assert_eq!(stats.endpoints["iothub"].expired_total, 2);
    assert_eq!(stats.endpoints["iothub"].len, 1);
    assert_eq!(
        stats.endpoints["module"].len, 1,
        "other endpoint keeps its reference"
    );
    assert_eq!(
        stats.messages, 2,
        "payload still referenced by `module` stays"
    );
    assert_eq!(t.payloads("module"), ["shared"]);
    t.store().verify().unwrap();
}

#[test]
fn any_write_sweeps_expired_messages() {
    let mut t = TestStore::with_endpoints(Config::default(), &["e"]);
    t.append(
        "old",
        vec![Target::new("e").with_ttl(Duration::from_secs(1))],
    );
    t.advance(Duration::from_secs(2));
    t.append("new", vec![Target::new("e")]);
    let stats = t.store().stats();
    assert_eq!(stats.endpoints["e"].expired_total, 1);
    assert_eq!((stats.messages, stats.bytes), (1, 3));
}

#[test]
fn quota_evicts_oldest_messages_first_and_counts_them() {
    let config = Config {
        quota_bytes: Some(10),
        ..Config::default()
    };
    let mut t = TestStore::with_endpoints(config, &["a", "b"]);
    t.append("1111", vec![at("a", 0), at("b", 0)]);
    t.append("2222", vec![at("a", 9)]);
    // Needs 4 bytes with 8 of 10 used: the oldest message goes from both endpoints.
    t.append("3333", vec![at("b", 0)]);
    assert_eq!(t.payloads("a"), ["2222"]);
    assert_eq!(t.payloads("b"), ["3333"]);
    let stats = t.store().stats();
    assert_eq!(stats.bytes, 8);
    assert_eq!(stats.evicted_messages_total, 1);
    assert_eq!(stats.endpoints["a"].evicted_total, 1);
    assert_eq!(stats.endpoints["b"].evicted_total, 1);
    t.store().verify().unwrap();
}

#[test]
fn quota_errors_name_the_limit() {
    let config = Config {
        quota_bytes: Some(10),
        quota_policy: QuotaPolicy::RejectNew,
        max_message_bytes: 8,
        ..Config::default()
    };
    let mut t = TestStore::with_endpoints(config, &["a"]);
    let big = NewMessage::new(vec![0; 9], vec![at("a", 0)]);
    let err = t.store().append(&big).unwrap_err();
    assert!(
        matches!(err, AppendError::MessageTooLarge { size: 9, limit: 8 }),
        "{err}"
    );
    assert!(err.to_string().contains("limit of 8 bytes"), "{err}");

    t.append("12345678", vec![at("a", 0)]);
    let err = t
        .store()
        .append(&NewMessage::new(vec![0; 3], vec![at("a", 0)]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::StoreFull {
                size: 3,
                used: 8,
                quota: 10
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("raise the quota"), "{err}");
    assert_eq!(
        t.payloads("a"),
        ["12345678"],
        "nothing already stored is lost"
    );
}

#[test]
fn message_larger_than_the_quota_is_refused_without_evicting() {
    let config = Config {
        quota_bytes: Some(4),
        ..Config::default()
    };
    let mut t = TestStore::with_endpoints(config, &["a"]);
    t.append("keep", vec![at("a", 0)]);
    let err = t
        .store()
        .append(&NewMessage::new(vec![0; 5], vec![at("a", 0)]))
        .unwrap_err();
    assert!(
        matches!(err, AppendError::QuotaExceeded { size: 5, quota: 4 }),
        "{err}"
    );
    assert_eq!(t.payloads("a"), ["keep"]);
}

#[test]
fn append_to_unknown_endpoint_or_nowhere_is_refused() {
    let mut t = TestStore::with_endpoints(Config::default(), &["a"]);
    let err = t
        .store()
        .append(&NewMessage::new(&b"x"[..], vec![at("a", 0), at("nope", 0)]))
        .unwrap_err();
    assert!(matches!(&err, AppendError::UnknownEndpoint { endpoint } if endpoint == "nope"));
    assert!(err.to_string().contains("add_endpoint"), "{err}");
    assert!(
        t.payloads("a").is_empty(),
        "a refused append stores nothing"
    );
    let err = t
        .store()
        .append(&NewMessage::new(&b"x"[..], vec![]))
        .unwrap_err();
    assert!(matches!(err, AppendError::NoTargets));
}

#[test]
fn duplicate_targets_are_queued_once_at_the_most_urgent_priority() {
    let mut t = TestStore::with_endpoints(Config::default(), &["a"]);
    t.append("x", vec![at("a", 7), at("a", 2)]);
    let d = t
        .store()
        .reader()
        .peek("a", PeekOptions::head(10))
        .unwrap()
        .deliveries;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].offset.priority, 2);
}

#[test]
fn payload_is_stored_once_and_deleted_after_the_last_endpoint_acks() {
    let mut t = TestStore::with_endpoints(Config::default(), &["a", "b"]);
    let seq = t.append("shared", vec![at("a", 0), at("b", 3)]);
    let stats = t.store().stats();
    assert_eq!((stats.messages, stats.bytes), (1, 6));
    assert_eq!(stats.endpoints["a"].bytes + stats.endpoints["b"].bytes, 12);
    t.store().ack("a", &[Offset::new(0, seq)]).unwrap();
    assert_eq!(t.store().stats().messages, 1);
    t.store().ack("b", &[Offset::new(3, seq)]).unwrap();
    let stats = t.store().stats();
    assert_eq!((stats.messages, stats.bytes), (0, 0));
    t.store().verify().unwrap();
}

#[test]
fn removing_an_endpoint_drops_its_references_only() {
    let mut t = TestStore::with_endpoints(Config::default(), &["a", "b"]);
    t.append("only-a", vec![at("a", 0)]);
    t.append("both", vec![at("a", 0), at("b", 0)]);
    assert!(t.store().remove_endpoint("a").unwrap());
    assert!(!t.store().remove_endpoint("a").unwrap());
    let stats = t.store().stats();
    assert_eq!(stats.messages, 1);
    assert!(!stats.endpoints.contains_key("a"));
    assert_eq!(t.payloads("b"), ["both"]);
    let err = t
        .store()
        .reader()
        .peek("a", PeekOptions::head(1))
        .unwrap_err();
    assert!(matches!(err, PeekError::UnknownEndpoint { .. }));
    let err = t.store().ack("a", &[]).unwrap_err();
    assert!(matches!(err, AckError::UnknownEndpoint { .. }));

    // Re-adding starts empty: the old references are gone for good.
    assert!(t.store().add_endpoint("a").unwrap());
    assert!(t.payloads("a").is_empty());
    t.reopen();
    assert!(t.payloads("a").is_empty());
}

#[test]
fn bad_endpoint_names_are_refused_with_the_reason() {
    let mut t = TestStore::new(Config::default());
    for (name, reason) in [
        ("", "empty"),
        ("a\nb", "control"),
        (&"x".repeat(1025), "1024"),
    ] {
        let err = t.store().add_endpoint(name).unwrap_err();
        assert!(matches!(err, EndpointError::InvalidName { .. }));
        assert!(err.to_string().contains(reason), "{err}");
    }
}

#[test]
fn everything_survives_a_reopen_and_sequence_numbers_are_not_reused() {
    let config = Config {
        quota_bytes: Some(1000),
        ..Config::default()
    };
    let mut t = TestStore::with_endpoints(config, &["a", "b"]);
    let first = t.append("one", vec![at("a", 1), at("b", 2)]);
    t.store().ack("a", &[Offset::new(1, first)]).unwrap();
    t.store().ack("b", &[Offset::new(2, first)]).unwrap();
    let before = t.store().stats();
    t.reopen();
    assert_eq!(t.store().stats(), before);
    assert_eq!(t.store().reader().stats().unwrap(), before);
    let second = t.append("two", vec![at("a", 1)]);
    assert!(
        second > first,
        "a stale ack of `first` must not hit `second`"
    );
}

#[test]
fn second_open_of_the_same_file_says_it_is_in_use() {
    let mut t = TestStore::new(Config::default());
    let path = t.store().path().to_path_buf();
    let err = Store::open(
        &path,
        Config::default(),
        std::sync::Arc::new(t.clock.clone()),
    )
    .unwrap_err();
    assert!(matches!(err, OpenError::AlreadyOpen { .. }), "{err}");
    assert!(err.to_string().contains("already open"), "{err}");
}

#[test]
fn a_refused_operation_does_not_spoil_the_rest_of_its_batch() {
    let mut t = TestStore::with_endpoints(Config::default(), &["a"]);
    let (ok, refused) = t
        .store()
        .write(|tx| {
            let ok = tx.append(&NewMessage::new(&b"ok"[..], vec![at("a", 0)]));
            let refused = tx.append(&NewMessage::new(&b"no"[..], vec![at("missing", 0)]));
            (ok, refused)
        })
        .unwrap();
    assert!(ok.is_ok());
    assert!(refused.is_err());
    assert_eq!(t.payloads("a"), ["ok"]);
    t.store().verify().unwrap();
}

#[test]
fn reader_stats_match_the_writer_after_every_commit() {
    let mut t = TestStore::with_endpoints(Config::default(), &["a"]);
    t.append("x", vec![Target::new("a").with_ttl(Duration::from_secs(5))]);
    assert_eq!(t.store().reader().stats().unwrap(), t.store().stats());
    let es = t.store().reader().endpoint_stats("a").unwrap().unwrap();
    assert_eq!((es.len, es.bytes, es.appended_total), (1, 1, 1));
    assert_eq!(t.store().reader().endpoints().unwrap(), ["a"]);
}
