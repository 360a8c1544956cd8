//! The module's MQTT connection to the edge hub (`reference/iot-hub-protocols.md` §1,
//! `iotedge-runtime.md` §3.3): client id `{device}/{module}`, IoT Hub username, SAS token
//! password, TLS trusting the workload trust bundle, and the module topics.
//!
//! One task owns the connection. It connects with a fresh token, subscribes to the module's
//! inputs, twin responses, desired patches and method calls, pumps events, and reconnects with
//! back-off when the connection drops. Tokens are renewed by reconnecting before they expire
//! (MQTT has no other way). Publishes wait for their PUBACK: packet ids are matched to waiters in
//! the order the publishes were queued on the current connection; when that connection ends,
//! every waiter learns so and [`ModuleClient::send_output`] sends again (at-least-once).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ironedge_protocol::{
    Identity, InputTopic, Message, MethodTopic, Subscription, TelemetryTopic, TwinTopic,
    encode_component,
};
use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, Publish, QoS, TlsConfiguration, Transport,
};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::credentials::Credentials;
use crate::environment::EdgeEnvironment;
use crate::error::{Error, Result};
use crate::events::{InputMessage, MethodRequest, ModuleEvent};

/// IoT Hub's message size limit (body plus property names and values).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The api-version the client announces in its username.
const API_VERSION: &str = "2021-04-12";
/// Largest MQTT packet: the message limit plus room for the topic.
const MAX_PACKET: usize = MAX_MESSAGE_BYTES + 16 * 1024;
/// Capacity of the request channel into the connection task.
const REQUEST_CAPACITY: usize = 256;

/// How the client behaves; the defaults are the Azure SDKs'.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Lifetime of each SAS token.
    pub token_ttl: Duration,
    /// Reconnect with a new token this long before the old one expires.
    pub token_renew_before: Duration,
    /// How long one twin request, method response or publish attempt may take.
    pub operation_timeout: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// How many connections may end while one output message is in flight before
    /// [`ModuleClient::send_output`] gives up on it.
    pub max_send_attempts: u32,
    /// `DeviceClientType` in the username.
    pub product_info: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(60),
            token_ttl: Duration::from_secs(3600),
            token_renew_before: Duration::from_secs(15 * 60),
            operation_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_send_attempts: 10,
            product_info: format!("ironedge-module-client/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl ClientOptions {
    /// When to reconnect with a fresh token: `renew_before` ahead of expiry, but never sooner
    /// than half the lifetime.
    pub fn renew_after(&self) -> Duration {
        self.token_ttl
            .saturating_sub(self.token_renew_before)
            .max(self.token_ttl / 2)
    }
}

/// The module twin as the edge hub returns it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Twin {
    /// Desired properties with `$version`.
    #[serde(default)]
    pub desired: Value,
    /// Reported properties with `$version`.
    #[serde(default)]
    pub reported: Value,
}

/// Publishes waiting for their packet id, then for their PUBACK, on connection `epoch`.
#[derive(Default)]
struct Acks {
    epoch: u64,
    awaiting_pkid: VecDeque<oneshot::Sender<()>>,
    inflight: HashMap<u16, oneshot::Sender<()>>,
}

struct Shared {
    identity: Identity,
    hub_host_name: String,
    options: ClientOptions,
    connected: watch::Sender<bool>,
    /// The current connection's client and its epoch.
    current: Mutex<Option<(AsyncClient, u64)>>,
    /// Keeps "take an ack slot, then queue the publish" atomic so slots match packet ids.
    order: tokio::sync::Mutex<()>,
    acks: Mutex<Acks>,
    requests: Mutex<HashMap<String, oneshot::Sender<(u16, Bytes)>>>,
    next_rid: AtomicU64,
    shutdown: CancellationToken,
}

/// A connected module: send outputs, read and patch the twin, answer methods. Cheap to clone.
#[derive(Clone)]
pub struct ModuleClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ModuleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleClient")
            .field("identity", &self.shared.identity)
            .field("connected", &self.is_connected())
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

impl ModuleClient {
    /// Starts the client for the module `env` describes and returns at once; the connection
    /// task connects (and reconnects) in the background. Events arrive on the returned receiver,
    /// which the module should keep draining.
    pub fn start(
        env: &EdgeEnvironment,
        options: ClientOptions,
    ) -> Result<(Self, mpsc::UnboundedReceiver<ModuleEvent>)> {
        ironedge_pki::install_default_provider();
        let credentials = Credentials::from_environment(env)?;
        let (connected, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            identity: env.identity(),
            hub_host_name: env.hub_host_name.clone(),
            options,
            connected,
            current: Mutex::new(None),
            order: tokio::sync::Mutex::new(()),
            acks: Mutex::new(Acks::default()),
            requests: Mutex::new(HashMap::new()),
            next_rid: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
        });
        let client = Self { shared };
        let (events, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client.clone(), env.clone(), credentials, events));
        Ok((client, rx))
    }

    /// The module's identity.
    pub fn identity(&self) -> &Identity {
        &self.shared.identity
    }

    /// True while connected to the edge hub.
    pub fn is_connected(&self) -> bool {
        *self.shared.connected.borrow()
    }

    /// Waits until connected; `Err(Closed)` once the client is closed.
    pub async fn wait_connected(&self) -> Result<()> {
        let mut rx = self.shared.connected.subscribe();
        tokio::select! {
            r = rx.wait_for(|c| *c) => r.map(|_| ()).map_err(|_| Error::Closed),
            () = self.shared.shutdown.cancelled() => Err(Error::Closed),
        }
    }

    /// Sends `message` on `output` and returns after the edge hub acknowledged it (it is then
    /// durably queued for every route that took it). Sends again when the connection drops
    /// first, so a message may arrive twice but is never lost silently.
    pub async fn send_output(&self, output: &str, mut message: Message) -> Result<()> {
        message.system.output_name = Some(output.to_owned());
        let size = message.size();
        if size > MAX_MESSAGE_BYTES {
            return Err(Error::TooLarge {
                size,
                limit: MAX_MESSAGE_BYTES,
            });
        }
        let topic = TelemetryTopic::for_message(&self.shared.identity, &message).to_string();
        let mut attempts = 0;
        loop {
            self.wait_connected().await?;
            let Ok(ack) = self.publish(topic.clone(), message.body.clone()).await else {
                continue;
            };
            let timeout = self.shared.options.operation_timeout;
            match tokio::time::timeout(timeout, ack).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(_)) | Err(_) => {
                    attempts += 1;
                    if attempts >= self.shared.options.max_send_attempts {
                        return Err(Error::Undelivered {
                            output: output.to_owned(),
                            attempts,
                        });
                    }
                    tracing::debug!(
                        output,
                        attempts,
                        "output message not acknowledged; sending again"
                    );
                }
            }
        }
    }

    /// Reads the module twin.
    pub async fn get_twin(&self) -> Result<Twin> {
        let (status, body) = self
            .request(
                "twin GET",
                |rid| TwinTopic::Get { rid }.to_string(),
                Bytes::new(),
            )
            .await?;
        if status != 200 {
            return Err(Error::TwinStatus {
                operation: "GET",
                status,
            });
        }
        serde_json::from_slice(&body).map_err(|source| Error::Json {
            what: "the twin",
            source,
        })
    }

    /// Patches the reported properties (a JSON merge patch).
    pub async fn patch_reported(&self, patch: &Value) -> Result<()> {
        let body = Bytes::from(patch.to_string());
        let (status, _) = self
            .request(
                "reported patch",
                |rid| TwinTopic::ReportedPatch { rid, version: None }.to_string(),
                body,
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(Error::TwinStatus {
                operation: "PATCH reported",
                status,
            });
        }
        Ok(())
    }

    /// Disconnects and stops reconnecting; outstanding operations end with `Err(Closed)`.
    pub fn close(&self) {
        self.shared.shutdown.cancel();
    }

    pub(crate) async fn method_response(
        &self,
        rid: &str,
        status: i32,
        payload: &Value,
    ) -> Result<()> {
        let topic = MethodTopic::Response {
            status,
            rid: rid.to_owned(),
        }
        .to_string();
        let ack = self
            .publish(topic, Bytes::from(payload.to_string()))
            .await?;
        self.await_ack("method response", ack).await
    }

    async fn await_ack(&self, operation: &'static str, ack: oneshot::Receiver<()>) -> Result<()> {
        let timeout = self.shared.options.operation_timeout;
        match tokio::time::timeout(timeout, ack).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::ConnectionLost { operation }),
            Err(_) => Err(Error::Timeout {
                operation,
                seconds: timeout.as_secs(),
            }),
        }
    }

    /// Queues a QoS 1 publish on the current connection; the receiver resolves on its PUBACK
    /// and fails when the connection ends first.
    async fn publish(&self, topic: String, payload: Bytes) -> Result<oneshot::Receiver<()>> {
        let (client, epoch) = lock(&self.shared.current)
            .clone()
            .ok_or(Error::ConnectionLost {
                operation: "publish",
            })?;
        let _order = self.shared.order.lock().await;
        let (tx, rx) = oneshot::channel();
        {
            let mut acks = lock(&self.shared.acks);
            if acks.epoch != epoch {
                return Err(Error::ConnectionLost {
                    operation: "publish",
                });
            }
            acks.awaiting_pkid.push_back(tx);
        }
        if client
            .publish_bytes(topic, QoS::AtLeastOnce, false, payload)
            .await
            .is_err()
        {
            let mut acks = lock(&self.shared.acks);
            if acks.epoch == epoch {
                acks.awaiting_pkid.pop_back();
            }
            return Err(Error::ConnectionLost {
                operation: "publish",
            });
        }
        Ok(rx)
    }

    async fn request(
        &self,
        operation: &'static str,
        topic_for: impl Fn(String) -> String,
        payload: Bytes,
    ) -> Result<(u16, Bytes)> {
        self.wait_connected().await?;
        let rid = self
            .shared
            .next_rid
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.requests).insert(rid.clone(), tx);
        if let Err(e) = self.publish(topic_for(rid.clone()), payload).await {
            lock(&self.shared.requests).remove(&rid);
            return Err(e);
        }
        let timeout = self.shared.options.operation_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(Error::ConnectionLost { operation }),
            Err(_) => {
                lock(&self.shared.requests).remove(&rid);
                Err(Error::Timeout {
                    operation,
                    seconds: timeout.as_secs(),
                })
            }
        }
    }

    fn on_outgoing_publish(&self, pkid: u16) {
        if pkid == 0 {
            return;
        }
        let mut acks = lock(&self.shared.acks);
        if let Some(tx) = acks.awaiting_pkid.pop_front() {
            acks.inflight.insert(pkid, tx);
        }
    }

    fn on_puback(&self, pkid: u16) {
        if let Some(tx) = lock(&self.shared.acks).inflight.remove(&pkid) {
            let _ = tx.send(());
        }
    }

    /// A new connection: publishes from now on belong to it.
    fn begin_connection(&self, client: AsyncClient) {
        let epoch = {
            let mut acks = lock(&self.shared.acks);
            acks.epoch += 1;
            acks.epoch
        };
        *lock(&self.shared.current) = Some((client, epoch));
    }

    /// The connection ended: every waiter learns so (its sender is dropped).
    fn end_connection(&self) {
        self.shared.connected.send_replace(false);
        *lock(&self.shared.current) = None;
        {
            let mut acks = lock(&self.shared.acks);
            acks.epoch += 1;
            acks.awaiting_pkid.clear();
            acks.inflight.clear();
        }
        lock(&self.shared.requests).clear();
    }

    fn dispatch(
        &self,
        client: &AsyncClient,
        publish: Publish,
        events: &mpsc::UnboundedSender<ModuleEvent>,
    ) {
        if let Ok(topic) = InputTopic::parse(&publish.topic)
            && topic.identity == self.shared.identity
        {
            let message = Message::from_property_bag(publish.payload.clone(), topic.properties);
            let input = InputMessage::new(topic.input, message, client.clone(), publish);
            let _ = events.send(ModuleEvent::Input(Box::new(input)));
            return;
        }
        // Everything but inputs is acknowledged at once: the event is taken over by this task.
        if publish.qos != QoS::AtMostOnce && client.try_ack(&publish).is_err() {
            tracing::debug!("could not acknowledge a publish: the connection is closing");
        }
        if let Ok(t) = TwinTopic::parse(&publish.topic) {
            match t {
                TwinTopic::Response { status, rid, .. } => {
                    if let Some(tx) = lock(&self.shared.requests).remove(&rid) {
                        let _ = tx.send((status, publish.payload));
                    }
                }
                TwinTopic::DesiredPatch { .. } => match serde_json::from_slice(&publish.payload) {
                    Ok(patch) => {
                        let _ = events.send(ModuleEvent::DesiredProperties(patch));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring a desired patch that is not JSON")
                    }
                },
                _ => {}
            }
            return;
        }
        if let Ok(MethodTopic::Request { name, rid }) = MethodTopic::parse(&publish.topic) {
            let request = MethodRequest::new(name, publish.payload, rid, self.clone());
            let _ = events.send(ModuleEvent::Method(request));
            return;
        }
        tracing::debug!(topic = %publish.topic, "ignoring an unexpected publish");
    }
}

/// The filters every connection subscribes to.
fn subscriptions(identity: &Identity) -> Vec<String> {
    [
        Subscription::ModuleInputs {
            identity: identity.clone(),
        },
        Subscription::TwinResponses,
        Subscription::DesiredPatches,
        Subscription::MethodRequests,
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// The MQTT username: `{hub}/{device}/{module}/?api-version=…&DeviceClientType=…`.
fn username(identity: &Identity, hub: &str, product_info: &str) -> String {
    format!(
        "{}&DeviceClientType={}",
        identity.username(hub, API_VERSION),
        encode_component(product_info)
    )
}

fn mqtt_options(
    env: &EdgeEnvironment,
    options: &ClientOptions,
    token: String,
    tls: Arc<rustls::ClientConfig>,
) -> MqttOptions {
    let identity = env.identity();
    let mut opts = MqttOptions::new(
        identity.client_id(),
        env.endpoint.host.clone(),
        env.endpoint.port,
    );
    opts.set_credentials(
        username(&identity, &env.hub_host_name, &options.product_info),
        token,
    );
    opts.set_keep_alive(options.keep_alive);
    // The edge hub keeps routed messages in its durable queues, not in MQTT sessions; the
    // client subscribes again on every connection.
    opts.set_clean_session(true);
    opts.set_manual_acks(true);
    opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
    opts
}

/// Exponential back-off with jitter.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    fn reset(&mut self) {
        self.next = self.min;
    }

    fn next_delay(&mut self) -> Duration {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter = 0.5 + f64::from(nanos % 1000) / 2000.0;
        let delay = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

/// Why one connection ended.
enum Ended {
    /// Time for a fresh token: reconnect at once.
    Renew,
    /// Lost or refused: back off.
    Lost(String),
    /// The client was closed.
    Shutdown,
}

/// The connection task.
async fn run(
    client: ModuleClient,
    env: EdgeEnvironment,
    credentials: Credentials,
    events: mpsc::UnboundedSender<ModuleEvent>,
) {
    let options = client.shared.options.clone();
    let shutdown = client.shared.shutdown.clone();
    let mut backoff = Backoff::new(options.backoff_min, options.backoff_max);
    loop {
        let ended = tokio::select! {
            () = shutdown.cancelled() => Ended::Shutdown,
            ended = connect_once(&client, &env, &credentials, &events, &mut backoff) => ended,
        };
        client.end_connection();
        match ended {
            Ended::Shutdown => break,
            Ended::Renew => continue,
            Ended::Lost(reason) => {
                let delay = backoff.next_delay();
                tracing::warn!(identity = %client.shared.identity, %reason, retry_in = ?delay, "edge hub connection failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    client.end_connection();
    let _ = events.send(ModuleEvent::Disconnected {
        reason: "closed".into(),
    });
}

/// One connection from CONNECT to its end.
async fn connect_once(
    client: &ModuleClient,
    env: &EdgeEnvironment,
    credentials: &Credentials,
    events: &mpsc::UnboundedSender<ModuleEvent>,
    backoff: &mut Backoff,
) -> Ended {
    let options = &client.shared.options;
    let identity = &client.shared.identity;
    // The edge CA may rotate, so the trust bundle is read for every connection.
    let trust = match credentials.trust_pem().await {
        Ok(pem) => pem,
        Err(e) => return Ended::Lost(e.to_string()),
    };
    let tls = match ironedge_pki::client_config(&trust, None) {
        Ok(tls) => tls,
        Err(e) => return Ended::Lost(format!("unusable trust bundle: {e}")),
    };
    let expiry = unix_now() + options.token_ttl.as_secs();
    let token = match credentials
        .token(&client.shared.hub_host_name, identity, expiry)
        .await
    {
        Ok(token) => token,
        Err(e) => return Ended::Lost(e.to_string()),
    };
    let (mqtt, mut eventloop) =
        AsyncClient::new(mqtt_options(env, options, token, tls), REQUEST_CAPACITY);
    // rumqttc leaves Nagle on: small PUBLISHes would wait for the previous segment's ACK.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    client.begin_connection(mqtt.clone());
    let renew = tokio::time::sleep(options.renew_after());
    tokio::pin!(renew);
    let mut connected = false;
    let mut renewing = false;
    loop {
        let event = tokio::select! {
            () = &mut renew, if !renewing => {
                renewing = true;
                tracing::debug!(identity = %identity, "renewing the token: reconnecting");
                if mqtt.try_disconnect().is_err() {
                    return Ended::Renew;
                }
                continue;
            }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                backoff.reset();
                let filters = subscriptions(identity)
                    .into_iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f, QoS::AtLeastOnce));
                if mqtt.try_subscribe_many(filters).is_err() {
                    return Ended::Lost("could not queue the subscriptions".into());
                }
                client.shared.connected.send_replace(true);
                tracing::info!(identity = %identity, host = %env.endpoint.host, port = env.endpoint.port, "connected to the edge hub");
                let _ = events.send(ModuleEvent::Connected);
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    tracing::error!(identity = %identity, "the edge hub refused a subscription");
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => client.on_outgoing_publish(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => client.on_puback(ack.pkid),
            Ok(Event::Incoming(Packet::Publish(p))) => client.dispatch(&mqtt, p, events),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                end_event(connected, events, "token renewal");
                return Ended::Renew;
            }
            Ok(_) => {}
            Err(e) => {
                let reason = e.to_string();
                end_event(connected, events, &reason);
                return if renewing {
                    Ended::Renew
                } else {
                    Ended::Lost(reason)
                };
            }
        }
    }
}

fn end_event(connected: bool, events: &mpsc::UnboundedSender<ModuleEvent>, reason: &str) {
    if connected {
        let _ = events.send(ModuleEvent::Disconnected {
            reason: reason.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_carry_the_api_version_and_the_product() {
        let u = username(
            &Identity::module("edge1", "sensor"),
            "hub.example.net",
            "ironedge-module-client/0.1.0",
        );
        assert_eq!(
            u,
            "hub.example.net/edge1/sensor/?api-version=2021-04-12&DeviceClientType=ironedge-module-client%2F0.1.0"
        );
        let parsed = ironedge_protocol::Username::parse(&u).unwrap();
        assert_eq!(parsed.identity, Identity::module("edge1", "sensor"));
        assert_eq!(
            parsed.client_type.as_deref(),
            Some("ironedge-module-client/0.1.0")
        );
    }

    #[test]
    fn every_connection_subscribes_to_the_modules_own_topics() {
        let filters = subscriptions(&Identity::module("edge1", "sensor"));
        assert_eq!(
            filters,
            [
                "devices/edge1/modules/sensor/inputs/#",
                "$iothub/twin/res/#",
                "$iothub/twin/PATCH/properties/desired/#",
                "$iothub/methods/POST/#",
            ]
        );
    }

    #[test]
    fn tokens_are_renewed_fifteen_minutes_early_but_not_before_half_their_life() {
        let mut o = ClientOptions::default();
        assert_eq!(o.renew_after(), Duration::from_secs(45 * 60));
        o.token_ttl = Duration::from_secs(600);
        assert_eq!(o.renew_after(), Duration::from_secs(300));
    }

    #[test]
    fn backoff_doubles_up_to_the_limit_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let delays: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        for (d, base) in delays.iter().zip([1, 2, 4, 4, 4]) {
            let base = Duration::from_secs(base);
            assert!(*d >= base / 2 && *d <= base, "{d:?} vs {base:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
