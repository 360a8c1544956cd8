//! The server against a raw MQTT client: auth codes, ordered asynchronous PUBACKs, per-filter
//! SUBACK codes, QoS 2, oversize and malformed packets, takeover, sessions, keepalive, expiry
//! and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::{RawClient, TestServer, wait_until};
use ironedge_mqtt::{ConnectReturnCode, MqttConfig, OutboundMessage, QoS};
use rumqttc::mqttbytes::v4::{
    ConnAck, Packet, PubAck, SubAck, Subscribe, SubscribeFilter, SubscribeReasonCode,
};

fn connack(code: ConnectReturnCode, present: bool) -> Packet {
    Packet::ConnAck(ConnAck::new(code, present))
}

async fn server() -> TestServer {
    TestServer::start(MqttConfig::default(), None, false).await
}

#[tokio::test]
async fn wrong_password_gets_connack_4_and_unauthorised_client_gets_5() {
    let s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    assert_eq!(
        c.connect("dev1", "wrong", true, 60).await,
        connack(ConnectReturnCode::BadUserNamePassword, false)
    );
    c.expect_closed().await;
    let mut c = RawClient::tcp(s.addr).await;
    assert_eq!(
        c.connect("forbidden", "secret", true, 60).await,
        connack(ConnectReturnCode::NotAuthorized, false)
    );
    assert_eq!(s.server.metrics().auth_failures_total.get(), 2);
}

#[tokio::test]
async fn mqtt_5_connect_is_refused_as_unacceptable_protocol_version() {
    let s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    let mut connect = rumqttc::mqttbytes::v4::Connect::new("dev1");
    connect.protocol = rumqttc::mqttbytes::Protocol::V5;
    c.send(Packet::Connect(connect)).await;
    assert_eq!(
        c.recv().await,
        Some(connack(ConnectReturnCode::RefusedProtocolVersion, false))
    );
}

#[tokio::test]
async fn puback_waits_for_the_application_and_keeps_arrival_order() {
    let mut s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    assert_eq!(
        c.connect("dev1", "secret", true, 60).await,
        connack(ConnectReturnCode::Success, false)
    );
    c.publish("devices/dev1/messages/events/", QoS::AtLeastOnce, 1, b"one")
        .await;
    c.publish("devices/dev1/messages/events/", QoS::AtLeastOnce, 2, b"two")
        .await;
    let (id, first, ack1) = s.next_publish().await;
    let (_, second, ack2) = s.next_publish().await;
    assert_eq!(
        (id.as_str(), &first.payload[..], &second.payload[..]),
        ("dev1", &b"one"[..], &b"two"[..])
    );
    // The second is committed first; its PUBACK must still wait for the first.
    ack2.accept();
    c.send(Packet::PingReq).await;
    assert_eq!(
        c.recv().await,
        Some(Packet::PingResp),
        "no PUBACK may overtake the unacked first publish"
    );
    ack1.accept();
    assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(1))));
    assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(2))));
}

#[tokio::test]
async fn rejected_or_dropped_ack_closes_the_connection_without_puback() {
    let mut s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 60).await;
    c.publish("t/1", QoS::AtLeastOnce, 5, b"x").await;
    let (_, _, ack) = s.next_publish().await;
    drop(ack);
    c.expect_closed().await;
}

#[tokio::test]
async fn qos0_publish_needs_no_ack() {
    let mut s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 60).await;
    c.publish("t/0", QoS::AtMostOnce, 0, b"fire").await;
    let (_, p, ack) = s.next_publish().await;
    assert!(!ack.is_required());
    assert_eq!(&p.payload[..], b"fire");
    drop(ack);
    c.send(Packet::PingReq).await;
    assert_eq!(
        c.recv().await,
        Some(Packet::PingResp),
        "dropping a QoS 0 ack keeps the connection"
    );
}

#[tokio::test]
async fn subscribe_grants_per_filter_and_downgrades_qos2() {
    let s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 60).await;
    let sub = Subscribe::new_many([
        SubscribeFilter::new("allowed/a".into(), QoS::AtLeastOnce),
        SubscribeFilter::new("other/b".into(), QoS::AtMostOnce),
        SubscribeFilter::new("allowed/c".into(), QoS::ExactlyOnce),
    ]);
    let mut sub = sub;
    sub.pkid = 9;
    c.send(Packet::Subscribe(sub)).await;
    assert_eq!(
        c.recv().await,
        Some(Packet::SubAck(SubAck::new(
            9,
            vec![
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Failure,
                SubscribeReasonCode::Success(QoS::AtLeastOnce)
            ]
        )))
    );
}

#[tokio::test]
async fn qos2_publish_and_denied_topics_close_only_that_connection() {
    let s = server().await;
    let mut bystander = RawClient::tcp(s.addr).await;
    bystander.connect("dev2", "secret", true, 60).await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 60).await;
    c.publish("t", QoS::ExactlyOnce, 3, b"x").await;
    c.expect_closed().await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 60).await;
    c.publish("deny/x", QoS::AtLeastOnce, 3, b"x").await;
    c.expect_closed().await;
    bystander.send(Packet::PingReq).await;
    assert_eq!(bystander.recv().await, Some(Packet::PingResp));
    wait_until(|| s.server.metrics().protocol_errors_total.get() >= 1).await;
}

#[tokio::test]
async fn oversize_packet_is_refused_before_it_is_read_and_the_broker_stays_up() {
    let s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 60).await;
    // Announce 256 KiB + 1 of remaining length; the server must not wait for the body.
    let mut header = vec![0x30];
    let mut len = 256 * 1024 + 1;
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        header.push(b);
        if len == 0 {
            break;
        }
    }
    c.send_raw(&header).await;
    c.expect_closed().await;
    let mut again = RawClient::tcp(s.addr).await;
    assert_eq!(
        again.connect("dev1", "secret", true, 60).await,
        connack(ConnectReturnCode::Success, false)
    );
    wait_until(|| s.server.metrics().protocol_errors_total.get() == 1).await;
}

#[tokio::test]
async fn largest_allowed_publish_passes() {
    let mut s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 60).await;
    let topic = "devices/dev1/messages/events/";
    let payload = vec![1u8; 256 * 1024 - 2 - topic.len() - 2];
    let mut p =
        rumqttc::mqttbytes::v4::Publish::from_bytes(topic, QoS::AtLeastOnce, Bytes::from(payload));
    p.pkid = 1;
    c.send(Packet::Publish(p)).await;
    let (_, got, ack) = s.next_publish().await;
    assert_eq!(got.payload.len(), 256 * 1024 - 4 - topic.len());
    ack.accept();
    assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(1))));
}

#[tokio::test]
async fn malformed_packets_close_the_connection() {
    let s = server().await;
    let cases: [&[u8]; 5] = [
        &[0x10, 0x02, 0x00, 0x00],             // CONNECT too short
        &[0xF0, 0x00],                         // reserved packet type 15
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], // remaining length of 5 bytes
        &[0x82, 0x02, 0x00, 0x01],             // SUBSCRIBE before CONNECT
        &[
            0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0xFF,
        ], // bad client id length
    ];
    for bytes in cases {
        let mut c = RawClient::tcp(s.addr).await;
        c.send_raw(bytes).await;
        c.expect_closed().await;
    }
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 60).await;
    c.send_raw(&[0x62, 0x02, 0x00, 0x01]).await; // PUBREL: QoS 2 flow
    c.expect_closed().await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 60).await;
    c.send_raw(&[0x30, 0x05, 0x00, 0x03, 0xFF, 0xFE, 0xFD])
        .await; // topic not UTF-8
    c.expect_closed().await;
}

#[tokio::test]
async fn new_connection_for_the_same_identity_kicks_the_old_one() {
    let s = server().await;
    let mut old = RawClient::tcp(s.addr).await;
    old.connect("dev1", "secret", true, 60).await;
    let mut new = RawClient::tcp(s.addr).await;
    assert_eq!(
        new.connect("dev1", "secret", true, 60).await,
        connack(ConnectReturnCode::Success, false)
    );
    old.expect_closed().await;
    new.send(Packet::PingReq).await;
    assert_eq!(new.recv().await, Some(Packet::PingResp));
    assert_eq!(s.server.metrics().takeovers_total.get(), 1);
    wait_until(|| s.server.connection_count() == 1).await;
}

#[tokio::test]
async fn outbound_qos1_is_retransmitted_with_dup_in_a_resumed_session() {
    let s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    assert_eq!(
        c.connect("dev1", "secret", false, 60).await,
        connack(ConnectReturnCode::Success, false)
    );
    let mut sub = Subscribe::new("allowed/c2d/#", QoS::AtLeastOnce);
    sub.pkid = 1;
    c.send(Packet::Subscribe(sub)).await;
    c.recv().await;
    let handle = s.server.connection(&"dev1".to_owned()).unwrap();
    let (msg, receipt) = OutboundMessage::with_receipt(
        "allowed/c2d/1".into(),
        Bytes::from_static(b"hello"),
        QoS::AtLeastOnce,
    );
    handle.send(msg).await.unwrap();
    let Some(Packet::Publish(first)) = c.recv().await else {
        panic!("expected the publish")
    };
    assert!(!first.dup);
    drop(c); // no PUBACK
    s.wait_for_event("disconnected dev1").await;

    let mut c = RawClient::tcp(s.addr).await;
    assert_eq!(
        c.connect("dev1", "secret", false, 60).await,
        connack(ConnectReturnCode::Success, true)
    );
    s.wait_for_event("present=true subs=1").await;
    let Some(Packet::Publish(again)) = c.recv().await else {
        panic!("expected the retransmission")
    };
    assert!(again.dup);
    assert_eq!(
        (again.pkid, &again.payload[..]),
        (first.pkid, &b"hello"[..])
    );
    c.send(Packet::PubAck(PubAck::new(again.pkid))).await;
    tokio::time::timeout(common::TIMEOUT, receipt)
        .await
        .unwrap()
        .unwrap();

    let mut clean = RawClient::tcp(s.addr).await;
    assert_eq!(
        clean.connect("dev1", "secret", true, 60).await,
        connack(ConnectReturnCode::Success, false)
    );
}

#[tokio::test]
async fn full_outbound_queue_pushes_back() {
    let config = MqttConfig {
        outbound_queue: 2,
        max_inflight: 1,
        ..MqttConfig::default()
    };
    let s = TestServer::start(config, None, false).await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 60).await;
    let handle = s.server.connection(&"dev1".to_owned()).unwrap();
    let msg = || {
        OutboundMessage::new(
            "allowed/x".into(),
            Bytes::from_static(b"m"),
            QoS::AtLeastOnce,
        )
    };
    handle.try_send(msg()).unwrap();
    // One message goes inflight (never acked), the queue holds two more, then it is full.
    let Some(Packet::Publish(_)) = c.recv().await else {
        panic!("first message delivered")
    };
    handle.try_send(msg()).unwrap();
    handle.try_send(msg()).unwrap();
    assert!(matches!(
        handle.try_send(msg()),
        Err(ironedge_mqtt::SendError::Full(_))
    ));
}

#[tokio::test]
async fn silent_client_times_out_after_one_and_a_half_keepalives() {
    let s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 1).await;
    let started = std::time::Instant::now();
    c.expect_closed().await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1400),
        "closed too early"
    );
    s.wait_for_event("keepalive timeout").await;
}

#[tokio::test]
async fn silent_client_with_keepalive_0_is_closed_at_the_keepalive_cap() {
    let config = MqttConfig {
        max_keepalive_timeout: std::time::Duration::from_secs(1),
        ..MqttConfig::default()
    };
    let s = TestServer::start(config, None, false).await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 0).await;
    c.expect_closed().await;
    s.wait_for_event("disconnected dev1 keepalive timeout after 1s")
        .await;
}

#[tokio::test]
async fn will_is_handed_over_when_the_connection_is_lost_and_not_after_disconnect() {
    let s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect_with_will(
        "lost",
        60,
        ("devices/lost/messages/events/", "gone", QoS::ExactlyOnce),
    )
    .await;
    drop(c);
    s.wait_for_event("disconnected lost").await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect_with_will(
        "polite",
        60,
        ("devices/polite/messages/events/", "bye", QoS::AtLeastOnce),
    )
    .await;
    c.send(Packet::Disconnect).await;
    s.wait_for_event("disconnected polite client disconnected")
        .await;
    let events = s.server.hooks().events.lock().unwrap().clone();
    let wills: Vec<&String> = events.iter().filter(|e| e.starts_with("will ")).collect();
    assert_eq!(
        wills,
        ["will lost devices/lost/messages/events/ AtLeastOnce b\"gone\" connection closed by peer"],
        "{events:?}"
    );
    // The Will comes before the disconnect notification, so the application still knows the link.
    let will_at = events
        .iter()
        .position(|e| e.starts_with("will lost"))
        .unwrap();
    let gone_at = events
        .iter()
        .position(|e| e.starts_with("disconnected lost"))
        .unwrap();
    assert!(will_at < gone_at, "{events:?}");
}

#[tokio::test]
async fn connection_closes_when_credentials_expire() {
    let s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("short", "secret", true, 0).await;
    c.expect_closed().await;
    s.wait_for_event("disconnected short credentials expired")
        .await;
}

#[tokio::test]
async fn shutdown_flushes_pending_acks_and_serve_returns() {
    let mut s = server().await;
    let mut c = RawClient::tcp(s.addr).await;
    c.connect("dev1", "secret", true, 60).await;
    c.publish("t", QoS::AtLeastOnce, 7, b"x").await;
    let (_, _, ack) = s.next_publish().await;
    s.stop.take().unwrap().send(()).unwrap();
    // The store commit finishes during the grace period, after the listener closed: the PUBACK still goes out.
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    while tokio::net::TcpStream::connect(s.addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener did not close"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    ack.accept();
    assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(7))));
    c.expect_closed().await;
    tokio::time::timeout(common::TIMEOUT, s.task)
        .await
        .unwrap()
        .unwrap();
}
