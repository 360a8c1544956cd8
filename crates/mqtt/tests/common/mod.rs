//! A test application for the server and a raw MQTT client that can send anything.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use bytes::{Bytes, BytesMut};
use ironedge_mqtt::{
    Authenticated, ConnectRequest, ConnectReturnCode, ConnectionHandle, Hooks, MqttConfig,
    MqttServer, Publish, PublishAck, QoS,
};
use rumqttc::mqttbytes::v4::{Connect, Packet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts password "secret"; client id "forbidden" is not authorised; "short" expires in 1 s.
/// Subscriptions under `allowed/` are granted. Publishes to `deny/` are refused; others are
/// handed to the test with their ack.
pub struct TestHooks {
    pub publishes: mpsc::UnboundedSender<(String, Publish, PublishAck)>,
    pub events: Mutex<Vec<String>>,
}

impl Hooks for TestHooks {
    type Identity = String;

    async fn authenticate(
        &self,
        r: &ConnectRequest,
    ) -> Result<Authenticated<String>, ConnectReturnCode> {
        if r.client_id == "forbidden" {
            return Err(ConnectReturnCode::NotAuthorized);
        }
        if r.password.as_deref() != Some("secret") {
            return Err(ConnectReturnCode::BadUserNamePassword);
        }
        let expires_at =
            (r.client_id == "short").then(|| SystemTime::now() + Duration::from_secs(1));
        Ok(Authenticated {
            identity: r.client_id.clone(),
            expires_at,
        })
    }

    fn connected(
        &self,
        c: &ConnectionHandle<String>,
        session_present: bool,
        subs: &[(String, QoS)],
    ) {
        self.events.lock().unwrap().push(format!(
            "connected {} present={session_present} subs={}",
            c.identity(),
            subs.len()
        ));
    }

    fn subscribe(&self, _c: &ConnectionHandle<String>, filter: &str, qos: QoS) -> Option<QoS> {
        filter.starts_with("allowed/").then_some(qos)
    }

    fn publish(
        &self,
        c: &ConnectionHandle<String>,
        p: Publish,
        ack: PublishAck,
    ) -> Result<(), String> {
        if p.topic.starts_with("deny/") {
            return Err(format!("{} may not publish to {}", c.identity(), p.topic));
        }
        let _ = self.publishes.send((c.identity().clone(), p, ack));
        Ok(())
    }

    fn will(
        &self,
        c: &ConnectionHandle<String>,
        will: Publish,
        reason: &ironedge_mqtt::DisconnectReason,
    ) {
        self.events.lock().unwrap().push(format!(
            "will {} {} {:?} {:?} {reason}",
            c.identity(),
            will.topic,
            will.qos,
            will.payload
        ));
    }

    fn disconnected(&self, c: &ConnectionHandle<String>, reason: &ironedge_mqtt::DisconnectReason) {
        self.events
            .lock()
            .unwrap()
            .push(format!("disconnected {} {reason}", c.identity()));
    }
}

pub struct TestServer {
    pub server: MqttServer<TestHooks>,
    pub addr: std::net::SocketAddr,
    pub publishes: mpsc::UnboundedReceiver<(String, Publish, PublishAck)>,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(
        config: MqttConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        websocket: bool,
    ) -> Self {
        let (tx, publishes) = mpsc::unbounded_channel();
        let hooks = Arc::new(TestHooks {
            publishes: tx,
            events: Mutex::new(Vec::new()),
        });
        let server = MqttServer::new(config, hooks);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let s = server.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if websocket {
                s.serve_websocket(listener, tls, shutdown).await.unwrap();
            } else {
                s.serve(listener, tls, shutdown).await.unwrap();
            }
        });
        Self {
            server,
            addr,
            publishes,
            stop: Some(stop),
            task,
        }
    }

    pub async fn next_publish(&mut self) -> (String, Publish, PublishAck) {
        tokio::time::timeout(TIMEOUT, self.publishes.recv())
            .await
            .expect("publish reached the hooks")
            .unwrap()
    }

    pub async fn wait_for_event(&self, needle: &str) {
        wait_until(|| {
            self.server
                .hooks()
                .events
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.contains(needle))
        })
        .await;
    }
}

/// Waits for a condition, polling; fails the test after [`TIMEOUT`].
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client that writes whatever packets or bytes a test wants.
pub struct RawClient<S> {
    pub stream: S,
    buf: BytesMut,
}

impl RawClient<TcpStream> {
    pub async fn tcp(addr: std::net::SocketAddr) -> Self {
        Self::over(TcpStream::connect(addr).await.unwrap())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    pub fn over(stream: S) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).unwrap();
        self.stream.write_all(&out).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// The next packet, or `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                match Packet::read(&mut self.buf, usize::MAX) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("server sent a bad packet: {e}"),
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("server answered or closed in time")
    }

    pub async fn connect(
        &mut self,
        client_id: &str,
        password: &str,
        clean: bool,
        keep_alive: u16,
    ) -> Packet {
        let mut c = Connect::new(client_id);
        c.clean_session = clean;
        c.keep_alive = keep_alive;
        c.set_login(format!("hub/{client_id}/?api-version=1"), password);
        self.send(Packet::Connect(c)).await;
        self.recv().await.expect("CONNACK")
    }

    /// CONNECT with a Will (topic, payload, QoS), returning the CONNACK.
    pub async fn connect_with_will(
        &mut self,
        client_id: &str,
        keep_alive: u16,
        will: (&str, &str, QoS),
    ) -> Packet {
        let mut c = Connect::new(client_id);
        c.keep_alive = keep_alive;
        c.set_login(format!("hub/{client_id}/?api-version=1"), "secret");
        c.last_will = Some(rumqttc::mqttbytes::v4::LastWill::new(
            will.0, will.1, will.2, false,
        ));
        self.send(Packet::Connect(c)).await;
        self.recv().await.expect("CONNACK")
    }

    pub async fn publish(&mut self, topic: &str, qos: QoS, pkid: u16, payload: &'static [u8]) {
        let mut p = Publish::from_bytes(topic, qos, Bytes::from_static(payload));
        p.pkid = pkid;
        self.send(Packet::Publish(p)).await;
    }

    /// Asserts the server closes the connection (after possibly sending something first).
    pub async fn expect_closed(&mut self) {
        while let Some(p) = self.recv().await {
            assert!(!matches!(p, Packet::ConnAck(_)), "unexpected {p:?}");
        }
    }
}
