//! One upstream MQTT connection for one identity, with its reconnect loop.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ironedge_mqtt::client::{self, Client, ClientError, ClientOptions};
use ironedge_mqtt::{QoS, StreamTransport};
use ironedge_protocol::{C2dTopic, Identity, MethodTopic, TwinTopic};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{Backoff, TokenSource, UpstreamError, UpstreamEvent, UpstreamSettings};

/// The api-version the edge hub announces upstream.
const API_VERSION: &str = "2021-04-12";
/// Largest packet accepted or sent upstream: the 256 KiB message limit plus topic room.
const MAX_PACKET: usize = 256 * 1024 + 16 * 1024;
/// Unacknowledged QoS 1 publishes allowed on one upstream connection.
const UPSTREAM_INFLIGHT: u16 = 1000;
/// Where twin answers arrive; every connection subscribes to it.
const TWIN_RESPONSES: &str = "$iothub/twin/res/#";
/// How long TCP, TLS and CONNECT/CONNACK together may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// An identity's upstream connection.
pub struct Connection {
    identity: Identity,
    connected: watch::Sender<bool>,
    /// True once an attempt failed or a connection was lost, until the next CONNACK.
    down: AtomicBool,
    /// The link's change counter, bumped on every state change of this connection.
    link_changed: Arc<watch::Sender<u64>>,
    client: Mutex<Option<Client>>,
    subscriptions: Mutex<BTreeSet<String>>,
    requests: Mutex<HashMap<String, oneshot::Sender<(u16, Bytes)>>>,
    next_rid: AtomicU64,
    operation_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("identity", &self.identity)
            .field("connected", &*self.connected.borrow())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Connection {
    /// Creates the connection and spawns its reconnect loop.
    pub(super) fn start(
        identity: Identity,
        settings: UpstreamSettings,
        tokens: Arc<dyn TokenSource>,
        events: mpsc::Sender<UpstreamEvent>,
        link_changed: Arc<watch::Sender<u64>>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (connected, _) = watch::channel(false);
        let conn = Arc::new(Self {
            identity,
            connected,
            down: AtomicBool::new(false),
            link_changed,
            client: Mutex::new(None),
            subscriptions: Mutex::new(BTreeSet::from([TWIN_RESPONSES.to_owned()])),
            requests: Mutex::new(HashMap::new()),
            next_rid: AtomicU64::new(1),
            operation_timeout: settings.operation_timeout,
        });
        tokio::spawn(run(conn.clone(), settings, tokens, events, shutdown));
        conn
    }

    /// The identity this connection speaks for.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// True when the last attempt failed or the connection was lost (not while the first
    /// attempt is still under way).
    pub fn is_known_down(&self) -> bool {
        !self.is_connected() && self.down.load(Ordering::Relaxed)
    }

    /// Waits until connected, or until `timeout` passes.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.connected.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until connected or known down, for at most `timeout`; true when connected.
    pub async fn wait_settled(&self, timeout: Duration) -> bool {
        if self.is_connected() || self.is_known_down() {
            return self.is_connected();
        }
        let mut changes = self.link_changed.subscribe();
        let settled = async {
            while !self.is_connected() && !self.is_known_down() {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, settled).await;
        self.is_connected()
    }

    fn set_state(&self, connected: bool) {
        self.down.store(!connected, Ordering::Relaxed);
        self.connected.send_replace(connected);
        self.link_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn client(&self) -> Result<Client, UpstreamError> {
        if !self.is_connected() {
            return Err(UpstreamError::Offline(self.identity.to_string()));
        }
        lock(&self.client)
            .clone()
            .ok_or_else(|| UpstreamError::Offline(self.identity.to_string()))
    }

    /// Publishes at QoS 1; the returned receiver resolves on the cloud's PUBACK and errors if the
    /// connection drops first.
    pub async fn publish(
        &self,
        topic: String,
        payload: Bytes,
    ) -> Result<oneshot::Receiver<()>, UpstreamError> {
        self.client()?
            .publish(topic, payload)
            .await
            .map_err(|_| UpstreamError::Closed(self.identity.to_string()))
    }

    /// Publishes at QoS 0 (method responses, twin requests).
    async fn publish_qos0(&self, topic: String, payload: Bytes) -> Result<(), UpstreamError> {
        self.client()?
            .publish_qos0(topic, payload)
            .await
            .map_err(|_| UpstreamError::Closed(self.identity.to_string()))
    }

    /// Subscribes now (if connected) and after every reconnect.
    pub async fn ensure_subscribed(&self, filter: &str) {
        let added = lock(&self.subscriptions).insert(filter.to_owned());
        if added
            && let Ok(client) = self.client()
            && let Ok(granted) = client
                .subscribe(vec![(filter.to_owned(), QoS::AtLeastOnce)])
                .await
        {
            let _ = granted.await;
        }
    }

    async fn request(
        &self,
        operation: &'static str,
        topic_for: impl FnOnce(String) -> String,
        payload: Bytes,
    ) -> Result<(u16, Bytes), UpstreamError> {
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed).to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.requests).insert(rid.clone(), tx);
        let sent = self.publish_qos0(topic_for(rid.clone()), payload).await;
        if let Err(e) = sent {
            lock(&self.requests).remove(&rid);
            return Err(e);
        }
        let identity = self.identity.to_string();
        match tokio::time::timeout(self.operation_timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(UpstreamError::Closed(identity)),
            Err(_) => {
                lock(&self.requests).remove(&rid);
                Err(UpstreamError::Timeout {
                    operation,
                    identity,
                })
            }
        }
    }

    /// Fetches the twin (`{desired, reported}`) from the cloud.
    pub async fn get_twin(&self) -> Result<serde_json::Value, UpstreamError> {
        let (status, body) = self
            .request(
                "twin GET",
                |rid| TwinTopic::Get { rid }.to_string(),
                Bytes::new(),
            )
            .await?;
        if status != 200 {
            return Err(self.status_error("twin GET", status));
        }
        serde_json::from_slice(&body).map_err(|_| self.status_error("twin GET", 500))
    }

    /// Sends a reported-properties patch; returns the cloud's new reported version if it said.
    pub async fn patch_reported(&self, patch: &serde_json::Value) -> Result<(), UpstreamError> {
        let body = Bytes::from(serde_json::to_vec(patch).unwrap_or_default());
        let (status, _) = self
            .request(
                "reported patch",
                |rid| TwinTopic::ReportedPatch { rid, version: None }.to_string(),
                body,
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(self.status_error("reported patch", status));
        }
        Ok(())
    }

    /// Answers a direct method call from the cloud.
    pub async fn method_response(
        &self,
        rid: &str,
        status: i32,
        payload: Bytes,
    ) -> Result<(), UpstreamError> {
        let topic = MethodTopic::Response {
            status,
            rid: rid.to_owned(),
        }
        .to_string();
        self.publish_qos0(topic, payload).await
    }

    fn status_error(&self, operation: &'static str, status: u16) -> UpstreamError {
        UpstreamError::Status {
            operation,
            identity: self.identity.to_string(),
            status,
        }
    }

    /// Fails every twin request in flight (publishes fail with their connection) and forgets
    /// the client.
    fn fail_in_flight(&self) {
        lock(&self.requests).clear();
        *lock(&self.client) = None;
    }

    async fn dispatch(&self, topic: &str, payload: Bytes, events: &mpsc::Sender<UpstreamEvent>) {
        if let Ok(t) = TwinTopic::parse(topic) {
            match t {
                TwinTopic::Response { status, rid, .. } => {
                    if let Some(tx) = lock(&self.requests).remove(&rid) {
                        let _ = tx.send((status, payload));
                    }
                }
                TwinTopic::DesiredPatch { .. } => {
                    if let Ok(patch) = serde_json::from_slice(&payload) {
                        let identity = self.identity.clone();
                        let _ = events
                            .send(UpstreamEvent::DesiredPatch { identity, patch })
                            .await;
                    }
                }
                _ => {}
            }
            return;
        }
        if let Ok(MethodTopic::Request { name, rid }) = MethodTopic::parse(topic) {
            let event = UpstreamEvent::MethodRequest {
                identity: self.identity.clone(),
                method: name,
                rid,
                payload,
            };
            let _ = events.send(event).await;
            return;
        }
        if let Ok(c2d) = C2dTopic::parse(topic) {
            let event = UpstreamEvent::CloudToDevice {
                identity: self.identity.clone(),
                property_bag: c2d.properties.format(),
                payload,
            };
            let _ = events.send(event).await;
            return;
        }
        tracing::debug!(identity = %self.identity, topic, "ignoring unexpected upstream publish");
    }
}

fn options(identity: &Identity, settings: &UpstreamSettings, token: String) -> ClientOptions {
    let mut opts = ClientOptions::new(identity.client_id());
    opts.username = Some(identity.username(&settings.hub_host_name, API_VERSION));
    opts.password = Some(token);
    opts.keep_alive = settings.keep_alive;
    opts.max_packet = MAX_PACKET;
    // A deep window: a backlog after an outage drains at the link's speed, not one RTT per 100.
    opts.inflight = UPSTREAM_INFLIGHT;
    opts
}

/// Why one connection attempt or connection ended.
#[derive(Debug, thiserror::Error)]
enum Attempt {
    #[error("connecting to {0} failed: {1}")]
    Dial(String, std::io::Error),
    #[error("TLS with {0} failed: {1}")]
    Tls(String, std::io::Error),
    #[error("invalid TLS server name {0}")]
    ServerName(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Mqtt(#[from] ClientError),
}

/// TCP, TLS and CONNECT/CONNACK.
async fn open(
    settings: &UpstreamSettings,
    opts: &ClientOptions,
) -> Result<(Client, client::Connection), Attempt> {
    let address = format!("{}:{}", settings.host, settings.port);
    let attempt = async {
        let tcp = TcpStream::connect(address.as_str())
            .await
            .map_err(|e| Attempt::Dial(address.clone(), e))?;
        // Batches are written whole; a lone request must not wait for the previous ACK.
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(settings.host.clone())
            .map_err(|_| Attempt::ServerName(settings.host.clone()))?;
        let tls = tokio_rustls::TlsConnector::from(settings.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| Attempt::Tls(address.clone(), e))?;
        Ok(client::connect(StreamTransport(tls), opts).await?)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or(Err(Attempt::Timeout(CONNECT_TIMEOUT)))
}

/// The reconnect loop: connect with a fresh token, pump events until the connection fails, back
/// off, repeat until shutdown.
async fn run(
    conn: Arc<Connection>,
    settings: UpstreamSettings,
    tokens: Arc<dyn TokenSource>,
    events: mpsc::Sender<UpstreamEvent>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    while !shutdown.is_cancelled() {
        let expiry = unix_now() + settings.token_ttl.as_secs();
        let Some(token) = tokens.token(&conn.identity, &settings.hub_host_name, expiry) else {
            tracing::warn!(identity = %conn.identity, "no key to sign an upstream token; retrying later");
            conn.set_state(false);
            if sleep_or_shutdown(&mut backoff, &shutdown).await {
                break;
            }
            continue;
        };
        let opts = options(&conn.identity, &settings, token);
        let opened = tokio::select! {
            () = shutdown.cancelled() => break,
            opened = open(&settings, &opts) => opened,
        };
        match opened {
            Ok((client, connection)) => {
                backoff.reset();
                serve(&conn, client, connection, &events, &shutdown).await;
            }
            Err(e) => {
                tracing::warn!(identity = %conn.identity, error = %e, "upstream connection failed");
                conn.fail_in_flight();
                conn.set_state(false);
            }
        }
        if sleep_or_shutdown(&mut backoff, &shutdown).await {
            break;
        }
    }
}

/// Runs one established connection: subscribes, then relays what the cloud sends until the
/// connection ends or shutdown.
async fn serve(
    conn: &Arc<Connection>,
    client: Client,
    mut connection: client::Connection,
    events: &mpsc::Sender<UpstreamEvent>,
    shutdown: &CancellationToken,
) {
    *lock(&conn.client) = Some(client.clone());
    let filters: Vec<(String, QoS)> = lock(&conn.subscriptions)
        .iter()
        .map(|f| (f.clone(), QoS::AtLeastOnce))
        .collect();
    // Queued before anything else can be sent (twin requests need the response subscription);
    // the SUBACK is not waited for.
    let _ = client.subscribe(filters).await;
    conn.set_state(true);
    tracing::info!(identity = %conn.identity, "upstream connected");
    let _ = events
        .send(UpstreamEvent::Connected(conn.identity.clone()))
        .await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = client.disconnect().await;
                break;
            }
            next = connection.next() => match next {
                Ok(p) => conn.dispatch(&p.topic, p.payload, events).await,
                Err(e) => {
                    tracing::warn!(identity = %conn.identity, error = %e, "upstream connection lost");
                    break;
                }
            },
        }
    }
    conn.fail_in_flight();
    conn.set_state(false);
    let _ = events
        .send(UpstreamEvent::Disconnected(conn.identity.clone()))
        .await;
}

/// Sleeps for the next back-off delay; true if shutdown came first.
async fn sleep_or_shutdown(backoff: &mut Backoff, shutdown: &CancellationToken) -> bool {
    let jitter = f64::from(u32::from(rand_byte())) / 256.0;
    let delay = backoff.next_delay(jitter);
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

/// A little randomness for jitter without a generator: the clock's sub-second nanoseconds.
fn rand_byte() -> u8 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d.subsec_nanos() % 256) as u8)
}
