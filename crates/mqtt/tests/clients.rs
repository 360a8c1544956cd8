//! Real clients over real transports: mosquitto_pub/mosquitto_sub over TLS (installed by
//! `scripts/install-mqtt-clients`), and MQTT over a TLS WebSocket at `/$iothub/websocket`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::{RawClient, TIMEOUT, TestServer};
use ironedge_mqtt::{ConnectReturnCode, MqttConfig, OutboundMessage, QoS};
use ironedge_pki::{CertificateAuthority, client_config, server_config};
use jiff::{SignedDuration, Timestamp};
use rumqttc::mqttbytes::v4::{ConnAck, Packet};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::AsyncBufReadExt;

struct Pki {
    dir: tempfile_dir::Dir,
    ca: CertificateAuthority,
    server: Arc<rustls::ServerConfig>,
}

mod tempfile_dir {
    /// A scratch directory removed on drop.
    pub(super) struct Dir(pub(super) std::path::PathBuf);
    impl Dir {
        pub(super) fn new() -> Self {
            let p = std::env::temp_dir().join(format!(
                "ironedge-mqtt-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn pki() -> Pki {
    let later = Timestamp::now() + SignedDuration::from_hours(24);
    let ca = CertificateAuthority::new_root("mqtt test CA", later).unwrap();
    let leaf = ca.issue_server(&["localhost", "127.0.0.1"], later).unwrap();
    let server = server_config(&leaf.chain_pem, &leaf.key_pem).unwrap();
    let dir = tempfile_dir::Dir::new();
    std::fs::write(dir.0.join("ca.pem"), ca.cert_pem()).unwrap();
    Pki { dir, ca, server }
}

fn mosquitto(bin: &str, pki: &Pki, port: u16, client_id: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "-V",
        "mqttv311",
        "-h",
        "localhost",
        "-p",
        &port.to_string(),
        "--cafile",
    ])
    .arg(pki.dir.0.join("ca.pem"))
    .args([
        "-i",
        client_id,
        "-u",
        &format!("myhub/{client_id}/?api-version=2021-04-12"),
        "-P",
        "secret",
        "-q",
        "1",
    ])
    .stdin(Stdio::null())
    .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn mosquitto_pub_over_tls_is_acked_after_the_application_accepts() {
    let pki = pki();
    let mut s = TestServer::start(MqttConfig::default(), Some(pki.server.clone()), false).await;
    let mut publisher = mosquitto("mosquitto_pub", &pki, s.addr.port(), "dev1")
        .args([
            "-t",
            "devices/dev1/messages/events/%24.ct=application%2Fjson&a=b",
            "-m",
            "{\"t\":1}",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub is installed (scripts/install-mqtt-clients)");
    let (id, publish, ack) = s.next_publish().await;
    assert_eq!(id, "dev1");
    assert_eq!(
        publish.topic,
        "devices/dev1/messages/events/%24.ct=application%2Fjson&a=b"
    );
    assert_eq!(&publish.payload[..], b"{\"t\":1}");
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    ack.accept();
    let status = tokio::time::timeout(TIMEOUT, publisher.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "mosquitto_pub exits 0 only after its PUBACK"
    );
}

#[tokio::test]
async fn mosquitto_pub_with_wrong_password_is_refused() {
    let pki = pki();
    let s = TestServer::start(MqttConfig::default(), Some(pki.server.clone()), false).await;
    let out = mosquitto("mosquitto_pub", &pki, s.addr.port(), "dev1")
        .args(["-P", "nope", "-t", "t", "-m", "x"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("refused") || err.contains("password"), "{err}");
}

#[tokio::test]
async fn mosquitto_sub_over_tls_receives_outbound_qos1_messages() {
    let pki = pki();
    let s = TestServer::start(MqttConfig::default(), Some(pki.server.clone()), false).await;
    let mut sub = mosquitto("mosquitto_sub", &pki, s.addr.port(), "dev1")
        .args(["-t", "allowed/c2d/#", "-v", "-C", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_until(|| s.server.connection(&"dev1".to_owned()).is_some()).await;
    let handle = s.server.connection(&"dev1".to_owned()).unwrap();
    s.wait_for_event("connected dev1").await;
    // mosquitto_sub subscribes right after CONNACK; deliver once the SUBSCRIBE was granted.
    let mut lines = tokio::io::BufReader::new(sub.stdout.take().unwrap()).lines();
    let mut receipts = Vec::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    while got.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mosquitto_sub received {got:?}"
        );
        if receipts.len() < 2 {
            let (m, r) = OutboundMessage::with_receipt(
                format!("allowed/c2d/{}", receipts.len()),
                Bytes::from_static(b"hi"),
                QoS::AtLeastOnce,
            );
            handle.send(m).await.unwrap();
            receipts.push(r);
        }
        if let Ok(Ok(Some(line))) =
            tokio::time::timeout(std::time::Duration::from_millis(200), lines.next_line()).await
        {
            got.push(line);
        }
    }
    assert!(
        got.iter()
            .all(|l| l.starts_with("allowed/c2d/") && l.ends_with(" hi")),
        "{got:?}"
    );
    tokio::time::timeout(TIMEOUT, sub.wait())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn mqtt_over_tls_websocket_connects_at_the_iot_hub_path() {
    let pki = pki();
    let mut s = TestServer::start(MqttConfig::default(), Some(pki.server.clone()), true).await;
    let tls = tokio_rustls::TlsConnector::from(client_config(pki.ca.cert_pem(), None).unwrap());
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let stream = tls
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let mut request = format!("wss://localhost:{}/$iothub/websocket", s.addr.port())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "mqtt");
    let mut c = RawClient::over(WsBytes::new(ws));
    assert_eq!(
        c.connect("dev1", "secret", true, 60).await,
        Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))
    );
    c.publish("devices/dev1/messages/events/", QoS::AtLeastOnce, 1, b"ws")
        .await;
    let (_, p, ack) = s.next_publish().await;
    assert_eq!(&p.payload[..], b"ws");
    ack.accept();
    assert_eq!(
        c.recv().await,
        Some(Packet::PubAck(rumqttc::mqttbytes::v4::PubAck::new(1)))
    );
}

#[tokio::test]
async fn websocket_upgrade_on_another_path_or_subprotocol_is_refused() {
    let s = TestServer::start(MqttConfig::default(), None, true).await;
    for (path, proto) in [("/other", "mqtt"), ("/$iothub/websocket", "amqp")] {
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let mut request = format!("ws://localhost:{}{path}", s.addr.port())
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", proto.parse().unwrap());
        assert!(
            tokio_tungstenite::client_async(request, tcp).await.is_err(),
            "{path} {proto}"
        );
    }
}

use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// Adapts a client WebSocket to AsyncRead/AsyncWrite so the raw test client can use it.
struct WsBytes<S> {
    ws: tokio_tungstenite::WebSocketStream<S>,
    pending: bytes::BytesMut,
}

impl<S> WsBytes<S> {
    fn new(ws: tokio_tungstenite::WebSocketStream<S>) -> Self {
        Self {
            ws,
            pending: bytes::BytesMut::new(),
        }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncRead for WsBytes<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use futures::StreamExt as _;
        use std::task::Poll;
        while self.pending.is_empty() {
            match self.ws.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b)))) => {
                    self.pending.extend_from_slice(&b)
                }
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WsBytes<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use futures::SinkExt as _;
        use std::task::Poll;
        match self.ws.poll_ready_unpin(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
            Poll::Pending => return Poll::Pending,
        }
        let msg = tokio_tungstenite::tungstenite::Message::Binary(Bytes::copy_from_slice(data));
        Poll::Ready(
            self.ws
                .start_send_unpin(msg)
                .map(|()| data.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use futures::SinkExt as _;
        self.ws.poll_flush_unpin(cx).map_err(std::io::Error::other)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use futures::SinkExt as _;
        self.ws.poll_close_unpin(cx).map_err(std::io::Error::other)
    }
}
