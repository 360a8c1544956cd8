//! One MQTT connection to the hub for one module identity, with its reconnect loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ironedge_protocol::{Identity, MethodTopic, SasToken, SymmetricKey, TwinTopic};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{Backoff, LinkEvent, UpstreamError, jitter};

/// The api-version the agent announces (what current SDKs send).
const API_VERSION: &str = "2021-04-12";
/// Largest packet: twins are at most 32 KiB per section, method payloads 128 KiB.
const MAX_PACKET: usize = 256 * 1024;
const SUBSCRIPTIONS: [&str; 3] = [
    "$iothub/twin/res/#",
    "$iothub/twin/PATCH/properties/desired/#",
    "$iothub/methods/POST/#",
];

/// Where and how a link connects.
#[derive(Clone)]
pub struct LinkSettings {
    /// The hub name in usernames and SAS audiences.
    pub hub_host_name: String,
    /// TCP/TLS host.
    pub host: String,
    /// TCP/TLS port.
    pub port: u16,
    /// TLS client configuration trusting the hub.
    pub tls: Arc<rustls::ClientConfig>,
    /// Token lifetime; the link reconnects with a fresh token at 80% of it.
    pub token_ttl: Duration,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Timeout of one request.
    pub operation_timeout: Duration,
}

impl std::fmt::Debug for LinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSettings")
            .field("hub_host_name", &self.hub_host_name)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Signs tokens for the link: the identity's current primary key.
pub type KeySource = Arc<dyn Fn() -> Option<SymmetricKey> + Send + Sync>;

/// A module identity's connection to the hub.
pub struct Link {
    identity: Identity,
    connected: watch::Sender<bool>,
    client: Mutex<Option<AsyncClient>>,
    requests: Mutex<HashMap<String, oneshot::Sender<(u16, Bytes)>>>,
    next_rid: AtomicU64,
    operation_timeout: Duration,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
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
    u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0)
}

impl Link {
    /// Creates the link and spawns its reconnect loop.
    pub fn start(
        identity: Identity,
        settings: LinkSettings,
        key: KeySource,
        events: mpsc::Sender<LinkEvent>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (connected, _) = watch::channel(false);
        let link = Arc::new(Self {
            identity,
            connected,
            client: Mutex::new(None),
            requests: Mutex::new(HashMap::new()),
            next_rid: AtomicU64::new(1),
            operation_timeout: settings.operation_timeout,
        });
        tokio::spawn(run(link.clone(), settings, key, events, shutdown));
        link
    }

    /// The module id this link speaks for.
    pub fn module_id(&self) -> &str {
        self.identity.module_id.as_deref().unwrap_or_default()
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Follows the connection state.
    pub fn subscribe_connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    fn client(&self) -> Result<AsyncClient, UpstreamError> {
        if !self.is_connected() {
            return Err(UpstreamError::Offline(self.identity.to_string()));
        }
        lock(&self.client)
            .clone()
            .ok_or_else(|| UpstreamError::Offline(self.identity.to_string()))
    }

    async fn publish(&self, topic: String, payload: Bytes) -> Result<(), UpstreamError> {
        self.client()?
            .publish_bytes(topic, QoS::AtMostOnce, false, payload)
            .await
            .map_err(|_| UpstreamError::Closed(self.identity.to_string()))
    }

    async fn request(
        &self,
        operation: &'static str,
        topic_for: impl FnOnce(String) -> String,
        payload: Bytes,
    ) -> Result<(u16, Bytes), UpstreamError> {
        let rid = format!("{:x}", self.next_rid.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        lock(&self.requests).insert(rid.clone(), tx);
        if let Err(e) = self.publish(topic_for(rid.clone()), payload).await {
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

    /// The twin's properties `{desired, reported}`.
    pub async fn get_twin(&self) -> Result<Value, UpstreamError> {
        // Both SDKs send one space as the body of a twin GET.
        let (status, body) = self
            .request(
                "twin GET",
                |rid| TwinTopic::Get { rid }.to_string(),
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

    /// Sends a reported-properties patch.
    pub async fn patch_reported(&self, patch: &Value) -> Result<(), UpstreamError> {
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

    /// Answers a direct method call.
    pub async fn method_response(
        &self,
        rid: &str,
        status: u16,
        payload: &Value,
    ) -> Result<(), UpstreamError> {
        let topic = MethodTopic::Response {
            status: i32::from(status),
            rid: rid.to_string(),
        }
        .to_string();
        let body = Bytes::from(serde_json::to_vec(payload).unwrap_or_default());
        self.publish(topic, body).await
    }

    fn status_error(&self, operation: &'static str, status: u16) -> UpstreamError {
        UpstreamError::Status {
            operation,
            identity: self.identity.to_string(),
            status,
        }
    }

    fn fail_in_flight(&self) {
        lock(&self.requests).clear();
        *lock(&self.client) = None;
    }

    async fn dispatch(&self, topic: &str, payload: Bytes, events: &mpsc::Sender<LinkEvent>) {
        let module = self.module_id().to_string();
        match TwinTopic::parse(topic) {
            Ok(TwinTopic::Response { status, rid, .. }) => {
                if let Some(tx) = lock(&self.requests).remove(&rid) {
                    let _ = tx.send((status, payload));
                }
                return;
            }
            Ok(TwinTopic::DesiredPatch { .. }) => {
                match serde_json::from_slice::<Map<String, Value>>(&payload) {
                    Ok(patch) => {
                        let _ = events.send(LinkEvent::DesiredPatch { module, patch }).await;
                    }
                    Err(_) => tracing::warn!(
                        identity = %self.identity,
                        bytes = payload.len(),
                        "ignoring a desired patch that is not a JSON object"
                    ),
                }
                return;
            }
            _ => {}
        }
        if let Ok(MethodTopic::Request { name, rid }) = MethodTopic::parse(topic) {
            let event = LinkEvent::Method {
                module,
                name,
                rid,
                payload,
            };
            let _ = events.send(event).await;
            return;
        }
        tracing::debug!(identity = %self.identity, topic, "ignoring an unexpected publish");
    }
}

fn options(identity: &Identity, settings: &LinkSettings, token: String) -> MqttOptions {
    let mut opts = MqttOptions::new(identity.client_id(), settings.host.clone(), settings.port);
    opts.set_credentials(
        identity.username(&settings.hub_host_name, API_VERSION),
        token,
    );
    opts.set_keep_alive(settings.keep_alive);
    opts.set_clean_session(true);
    opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(
        settings.tls.clone(),
    )));
    opts
}

/// What ended one connection.
enum Ended {
    Shutdown,
    Renew,
    Lost,
}

/// Connect with a fresh token, pump events until the connection fails or the token is due for
/// renewal, back off, repeat until shutdown.
async fn run(
    link: Arc<Link>,
    settings: LinkSettings,
    key: KeySource,
    events: mpsc::Sender<LinkEvent>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    while !shutdown.is_cancelled() {
        let Some(key) = key() else {
            tracing::warn!(identity = %link.identity, "no key for the identity yet; waiting");
            if sleep_or_shutdown(backoff.next_delay(jitter()), &shutdown).await {
                break;
            }
            continue;
        };
        let expiry = unix_now() + settings.token_ttl.as_secs();
        let resource = link.identity.resource_uri(&settings.hub_host_name);
        let token = SasToken::build(&resource, &key, expiry, None).to_string();
        let (client, mut eventloop) =
            AsyncClient::new(options(&link.identity, &settings, token), 64);
        // rumqttc leaves Nagle on: small PUBLISHes would wait for the previous segment's ACK.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        *lock(&link.client) = Some(client.clone());
        let renew_after = settings.token_ttl.mul_f64(0.8);
        let (ended, was_connected) =
            pump(&link, &client, eventloop, &events, &shutdown, renew_after).await;
        if was_connected {
            backoff.reset();
        }
        link.connected.send_replace(false);
        link.fail_in_flight();
        // A token renewal reconnects at once; it is not a lost connection.
        if was_connected && !matches!(ended, Ended::Renew) {
            let _ = events
                .send(LinkEvent::Disconnected(link.module_id().to_string()))
                .await;
        }
        match ended {
            Ended::Shutdown => break,
            Ended::Renew => continue,
            Ended::Lost => {
                if sleep_or_shutdown(backoff.next_delay(jitter()), &shutdown).await {
                    break;
                }
            }
        }
    }
}

async fn pump(
    link: &Arc<Link>,
    client: &AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    events: &mpsc::Sender<LinkEvent>,
    shutdown: &CancellationToken,
    renew_after: Duration,
) -> (Ended, bool) {
    let mut was_connected = false;
    let renew = tokio::time::sleep(renew_after);
    tokio::pin!(renew);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => {
                let _ = client.disconnect().await;
                return (Ended::Shutdown, was_connected);
            }
            () = &mut renew => {
                tracing::debug!(identity = %link.identity, "renewing the SAS token");
                let _ = client.disconnect().await;
                return (Ended::Renew, was_connected);
            }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                was_connected = true;
                for filter in SUBSCRIPTIONS {
                    let _ = client.subscribe(filter, QoS::AtLeastOnce).await;
                }
                link.connected.send_replace(true);
                tracing::info!(identity = %link.identity, "connected to the hub");
                let _ = events
                    .send(LinkEvent::Connected(link.module_id().to_string()))
                    .await;
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                link.dispatch(&p.topic, p.payload, events).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(identity = %link.identity, error = %e, "hub connection lost");
                return (Ended::Lost, was_connected);
            }
        }
    }
}

/// Sleeps for `delay`; true if shutdown came first.
async fn sleep_or_shutdown(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}
