//! One identity's connection, with its reconnect loop.

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

use crate::{Backoff, TokenSource, UpstreamError, UpstreamEvent, UpstreamSettings, jitter};

/// The api-version announced upstream (what current SDKs send).
const API_VERSION: &str = "2021-04-12";
/// Largest packet accepted or sent upstream: the 256 KiB message limit plus topic room.
const MAX_PACKET: usize = 256 * 1024 + 16 * 1024;
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
    /// A change counter (shared by an application's connections), bumped on every state change
    /// of this one.
    changed: Arc<watch::Sender<u64>>,
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
    /// Creates the connection and spawns its reconnect loop. It subscribes to twin responses,
    /// to `filters` and to whatever [`Connection::ensure_subscribed`] adds, after every
    /// (re)connect; events go to `events`; every state change bumps `changed`.
    pub fn start(
        identity: Identity,
        settings: UpstreamSettings,
        tokens: Arc<dyn TokenSource>,
        filters: &[&str],
        events: mpsc::Sender<UpstreamEvent>,
        changed: Arc<watch::Sender<u64>>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (connected, _) = watch::channel(false);
        let mut subscriptions = BTreeSet::from([TWIN_RESPONSES.to_owned()]);
        subscriptions.extend(filters.iter().map(|f| (*f).to_owned()));
        let conn = Arc::new(Self {
            identity,
            connected,
            down: AtomicBool::new(false),
            changed,
            client: Mutex::new(None),
            subscriptions: Mutex::new(subscriptions),
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

    /// Follows the connection state.
    pub fn subscribe_connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
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
        let mut changes = self.changed.subscribe();
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
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
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
        // Decided under the subscriptions lock, which a new connection holds while it takes its
        // list: a filter is either in that list or sent on that connection here, never neither.
        // (The client is set before the connection counts as connected, so it is not asked.)
        let client = {
            let mut subscriptions = lock(&self.subscriptions);
            if !subscriptions.insert(filter.to_owned()) {
                return;
            }
            lock(&self.client).clone()
        };
        if let Some(client) = client
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
                // Both Azure IoT SDKs send one space as the body of a twin GET.
                Bytes::from_static(b" "),
            )
            .await?;
        if status != 200 {
            return Err(self.status_error("twin GET", status));
        }
        serde_json::from_slice(&body).map_err(|_| UpstreamError::Decode {
            operation: "twin GET",
            identity: self.identity.to_string(),
        })
    }

    /// Sends a reported-properties patch and waits for the cloud's answer.
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
                    match serde_json::from_slice::<serde_json::Map<_, _>>(&payload) {
                        Ok(patch) => {
                            let identity = self.identity.clone();
                            let _ = events
                                .send(UpstreamEvent::DesiredPatch { identity, patch })
                                .await;
                        }
                        Err(_) => tracing::warn!(
                            identity = %self.identity,
                            bytes = payload.len(),
                            "ignoring a desired patch that is not a JSON object"
                        ),
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
    opts.inflight = settings.inflight;
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

/// How one established connection ended.
enum Ended {
    Shutdown,
    /// The token is due: reconnect at once with a fresh one.
    Renew,
    Lost,
}

/// The reconnect loop: connect with a fresh token, relay until the connection fails or its token
/// is due for renewal, back off after failures, repeat until shutdown.
async fn run(
    conn: Arc<Connection>,
    settings: UpstreamSettings,
    tokens: Arc<dyn TokenSource>,
    events: mpsc::Sender<UpstreamEvent>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    let mut renewing = false;
    while !shutdown.is_cancelled() {
        let expiry = unix_now() + settings.token_ttl.as_secs();
        let Some(token) = tokens.token(&conn.identity, &settings.hub_host_name, expiry) else {
            tracing::warn!(identity = %conn.identity, "no key to sign an upstream token; retrying later");
            conn.set_state(false);
            report_failed_renewal(&mut renewing, &conn, &events).await;
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
        let (client, connection) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                // Nothing is in flight: the last connection's were failed when it ended.
                tracing::warn!(identity = %conn.identity, error = %e, "upstream connection failed");
                conn.set_state(false);
                report_failed_renewal(&mut renewing, &conn, &events).await;
                if sleep_or_shutdown(&mut backoff, &shutdown).await {
                    break;
                }
                continue;
            }
        };
        backoff.reset();
        let renew_after = settings.token_ttl.mul_f64(0.8);
        let ended = serve(&conn, client, connection, &events, &shutdown, renew_after).await;
        conn.fail_in_flight();
        renewing = matches!(ended, Ended::Renew);
        if renewing {
            // Down only for the reconnect; not reported as a lost connection.
            conn.connected.send_replace(false);
            continue;
        }
        conn.set_state(false);
        let _ = events
            .send(UpstreamEvent::Disconnected(conn.identity.clone()))
            .await;
        if matches!(ended, Ended::Shutdown) || sleep_or_shutdown(&mut backoff, &shutdown).await {
            break;
        }
    }
}

/// A renewal's reconnect was not announced as a loss; once it fails, the loss is real.
async fn report_failed_renewal(
    renewing: &mut bool,
    conn: &Connection,
    events: &mpsc::Sender<UpstreamEvent>,
) {
    if std::mem::take(renewing) {
        let _ = events
            .send(UpstreamEvent::Disconnected(conn.identity.clone()))
            .await;
    }
}

/// Runs one established connection: subscribes, then relays what the cloud sends until the
/// connection ends, the token is due or shutdown. Every connect is announced, a token
/// renewal's too: the cloud does not keep desired patches for a disconnected client, so the
/// application reads the twin again.
async fn serve(
    conn: &Arc<Connection>,
    client: Client,
    mut connection: client::Connection,
    events: &mpsc::Sender<UpstreamEvent>,
    shutdown: &CancellationToken,
    renew_after: Duration,
) -> Ended {
    let filters: Vec<(String, QoS)> = {
        let subscriptions = lock(&conn.subscriptions);
        *lock(&conn.client) = Some(client.clone());
        subscriptions
            .iter()
            .map(|f| (f.clone(), QoS::AtLeastOnce))
            .collect()
    };
    // Queued before anything else can be sent (twin requests need the response subscription);
    // the SUBACK is not waited for.
    let _ = client.subscribe(filters).await;
    conn.set_state(true);
    tracing::info!(identity = %conn.identity, "upstream connected");
    let _ = events
        .send(UpstreamEvent::Connected(conn.identity.clone()))
        .await;
    let renew = tokio::time::sleep(renew_after);
    tokio::pin!(renew);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = client.disconnect().await;
                return Ended::Shutdown;
            }
            () = &mut renew => {
                tracing::debug!(identity = %conn.identity, "renewing the SAS token");
                let _ = client.disconnect().await;
                return Ended::Renew;
            }
            next = connection.next() => match next {
                Ok(p) => conn.dispatch(&p.topic, p.payload, events).await,
                Err(e) => {
                    tracing::warn!(identity = %conn.identity, error = %e, "upstream connection lost");
                    return Ended::Lost;
                }
            },
        }
    }
}

/// Sleeps for the next back-off delay; true if shutdown came first.
async fn sleep_or_shutdown(backoff: &mut Backoff, shutdown: &CancellationToken) -> bool {
    let delay = backoff.next_delay(jitter());
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}
