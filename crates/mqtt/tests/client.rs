//! The batching MQTT client against real servers: our own over TLS, the mosquitto broker
//! (installed by `scripts/install-mqtt-clients`), and scripted sockets for failures a real
//! server does not produce on demand (silence, garbage, a dropped connection).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::{TIMEOUT, TestServer};
use ironedge_mqtt::client::{self, Client, ClientError, ClientOptions, Connection};
use ironedge_mqtt::{ConnectReturnCode, MqttConfig, QoS, StreamTransport};
use ironedge_pki::{CertificateAuthority, client_config, server_config};
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn options(id: &str) -> ClientOptions {
    let mut o = ClientOptions::new(id);
    o.username = Some(format!("hub/{id}/?api-version=1"));
    o.password = Some("secret".into());
    o
}

async fn tcp(addr: std::net::SocketAddr, options: &ClientOptions) -> (Client, Connection) {
    let stream = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(TIMEOUT, client::connect(StreamTransport(stream), options))
        .await
        .expect("CONNACK in time")
        .unwrap()
}

async fn acked(rx: tokio::sync::oneshot::Receiver<()>) -> bool {
    tokio::time::timeout(TIMEOUT, rx)
        .await
        .expect("outcome in time")
        .is_ok()
}

#[tokio::test]
async fn a_publish_over_tls_completes_only_when_the_server_acknowledges_it() {
    let later = Timestamp::now() + SignedDuration::from_hours(1);
    let ca = CertificateAuthority::new_root("client test CA", later).unwrap();
    let leaf = ca.issue_server(&["localhost"], later).unwrap();
    let tls = server_config(&leaf.chain_pem, &leaf.key_pem).unwrap();
    let mut server = TestServer::start(MqttConfig::default(), Some(tls), false).await;

    let connector = tokio_rustls::TlsConnector::from(client_config(ca.cert_pem(), None).unwrap());
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let stream = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (c, _conn) = client::connect(StreamTransport(stream), &options("dev1"))
        .await
        .unwrap();

    let mut receipt = c
        .publish("a/b", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    let (who, publish, ack) = server.next_publish().await;
    assert_eq!((who.as_str(), publish.topic.as_str()), ("dev1", "a/b"));
    assert_eq!(&publish.payload[..], b"hello");
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    // The server has the message but has not acknowledged it yet.
    assert!(receipt.try_recv().is_err());
    ack.accept();
    assert!(acked(receipt).await);
}

#[tokio::test]
async fn a_refused_connect_reports_the_servers_return_code() {
    let server = TestServer::start(MqttConfig::default(), None, false).await;
    let mut o = options("dev1");
    o.password = Some("wrong".into());
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let err = client::connect(StreamTransport(stream), &o)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ClientError::Refused(ConnectReturnCode::BadUserNamePassword)
    );
}

#[tokio::test]
async fn a_refused_subscription_is_reported_per_filter() {
    let server = TestServer::start(MqttConfig::default(), None, false).await;
    let (c, _conn) = tcp(server.addr, &options("dev1")).await;
    let granted = c
        .subscribe(vec![
            ("allowed/x".into(), QoS::AtLeastOnce),
            ("other/x".into(), QoS::AtLeastOnce),
        ])
        .await
        .unwrap();
    assert_eq!(granted.await.unwrap(), [Some(QoS::AtLeastOnce), None]);
    let none = c.subscribe(Vec::new()).await.unwrap();
    assert_eq!(none.await.unwrap(), []);
}

/// A mosquitto broker on a free loopback port, stopped on drop.
struct Mosquitto {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
}

impl Mosquitto {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        // Default inflight window (20) towards subscribers: a client that did not acknowledge
        // incoming QoS 1 messages would stall after 20.
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"),
        )
        .unwrap();
        let child = tokio::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto (scripts/install-mqtt-clients)");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        common::wait_until(|| std::net::TcpStream::connect(addr).is_ok()).await;
        Self {
            _child: child,
            _dir: dir,
            addr,
        }
    }
}

#[tokio::test]
async fn a_backlog_far_larger_than_the_window_arrives_complete_and_in_order_through_mosquitto() {
    let broker = Mosquitto::start().await;
    let mut o = ClientOptions::new("loop");
    o.inflight = 16;
    let (c, mut conn) = tcp(broker.addr, &o).await;
    let granted = c
        .subscribe(vec![("loop/#".into(), QoS::AtLeastOnce)])
        .await
        .unwrap();
    assert_eq!(granted.await.unwrap(), [Some(QoS::AtLeastOnce)]);

    const N: u32 = 5_000;
    let sender = c.clone();
    let publishing = tokio::spawn(async move {
        let mut receipts = Vec::new();
        for i in 0..N {
            let body = Bytes::from(i.to_be_bytes().to_vec());
            receipts.push(sender.publish("loop/n", body).await.unwrap());
        }
        receipts
    });
    for want in 0..N {
        let p = tokio::time::timeout(TIMEOUT, conn.next())
            .await
            .expect("message in time")
            .unwrap();
        assert_eq!(p.topic, "loop/n");
        assert_eq!(u32::from_be_bytes(p.payload[..].try_into().unwrap()), want);
    }
    for receipt in publishing.await.unwrap() {
        assert!(acked(receipt).await);
    }
    c.disconnect().await.unwrap();
    assert_eq!(conn.next().await.unwrap_err(), ClientError::Disconnected);
}

/// A server that answers CONNECT with a successful CONNACK and then does `then`.
async fn scripted<F, Fut>(then: F) -> std::net::SocketAddr
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
        then(s).await;
    });
    addr
}

#[tokio::test]
async fn a_server_that_stops_answering_pings_ends_the_connection() {
    let addr = scripted(|mut s| async move {
        // Reads (and ignores) everything, answers nothing.
        let mut buf = [0u8; 1024];
        while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    let mut o = options("quiet");
    o.keep_alive = Duration::from_secs(1);
    let (_c, mut conn) = tcp(addr, &o).await;
    let err = tokio::time::timeout(TIMEOUT, conn.next())
        .await
        .expect("the keepalive ends the connection")
        .unwrap_err();
    assert_eq!(err, ClientError::KeepAliveTimeout(Duration::from_secs(1)));
}

#[tokio::test]
async fn unacknowledged_publishes_fail_when_the_server_drops_the_connection() {
    let (got_publish, published) = tokio::sync::oneshot::channel();
    let addr = scripted(|mut s| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = got_publish.send(());
        drop(s);
    })
    .await;
    let (c, mut conn) = tcp(addr, &options("dropped")).await;
    let receipt = c.publish("t", Bytes::from_static(b"x")).await.unwrap();
    published.await.unwrap();
    assert!(!acked(receipt).await);
    let err = tokio::time::timeout(TIMEOUT, conn.next())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Closed | ClientError::Io(_)),
        "{err:?}"
    );
    // The handle outlives the connection and says so.
    assert_eq!(
        c.publish("t", Bytes::new()).await.unwrap_err(),
        ClientError::Disconnected
    );
}

#[tokio::test]
async fn garbage_from_the_server_ends_the_connection_with_a_malformed_packet_error() {
    let addr = scripted(|mut s| async move {
        // Packet type 0 is reserved.
        s.write_all(&[0x00, 0x00]).await.unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf).await;
    })
    .await;
    let (_c, mut conn) = tcp(addr, &options("garbage")).await;
    let err = tokio::time::timeout(TIMEOUT, conn.next())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ClientError::Malformed(_)), "{err:?}");
}

#[tokio::test]
async fn a_second_connack_is_a_protocol_violation() {
    let addr = scripted(|mut s| async move {
        s.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf).await;
    })
    .await;
    let (_c, mut conn) = tcp(addr, &options("twice")).await;
    let err = tokio::time::timeout(TIMEOUT, conn.next())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err, ClientError::Protocol("a second CONNACK"));
}
