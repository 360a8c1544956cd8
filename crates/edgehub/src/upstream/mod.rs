//! The upstream link to the cloud hub (ours or Azure IoT Hub) over MQTT 3.1.1/TLS.
//!
//! IoT Hub's MQTT API allows one connection per identity, so every device or module the edge hub
//! speaks for gets its own upstream connection (`reference/iotedge-runtime.md` §3.8), made on
//! first need. Telemetry forwarded on such a connection keeps the sender's identity, which is
//! exactly what `$upstream` must do.
//!
//! **Tokens during long outages.** Module SAS tokens are short-lived (the SDKs use 1 h) and the
//! module is not around to sign a new one when the link comes back after a day. The edge hub does
//! not forward module tokens: it mints a fresh token for every upstream CONNECT with the identity's
//! own symmetric key, which it obtained from the cloud registry with the edge device's credentials
//! and keeps in the durable identity cache ([`TokenSource`]). So a drain after any outage connects
//! with valid credentials, and a token can never expire mid-drain for longer than one reconnect.
//!
//! Each connection reconnects with exponential back-off (1 s → 60 s, jittered). Publishes are QoS 1
//! and a caller gets a future that resolves on the cloud's PUBACK; anything not acknowledged when
//! the connection drops stays in the store and is sent again (at-least-once).

mod connection;

pub use connection::Connection;
pub use ironedge_protocol::Backoff;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ironedge_protocol::Identity;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Where and how to reach the cloud hub.
#[derive(Clone)]
pub struct UpstreamSettings {
    /// IoT Hub host name, used in usernames and SAS audiences (`IOTEDGE_IOTHUBHOSTNAME`).
    pub hub_host_name: String,
    /// Host to dial (often the same as `hub_host_name`; a gateway or test address otherwise).
    pub host: String,
    /// MQTT/TLS port (8883).
    pub port: u16,
    /// TLS client configuration with the cloud's trust roots (and the SNI the host needs).
    pub tls: Arc<rustls::ClientConfig>,
    /// Lifetime of the SAS tokens the edge hub mints for each CONNECT.
    pub token_ttl: Duration,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// How long a twin or method round trip may take.
    pub operation_timeout: Duration,
}

impl std::fmt::Debug for UpstreamSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSettings")
            .field("hub_host_name", &self.hub_host_name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("token_ttl", &self.token_ttl)
            .finish_non_exhaustive()
    }
}

/// Mints SAS tokens for identities the edge hub speaks for.
pub trait TokenSource: Send + Sync + 'static {
    /// A token for `identity` on `hub_host_name` valid until `expiry` (Unix seconds), or `None`
    /// when no key is known for the identity.
    fn token(&self, identity: &Identity, hub_host_name: &str, expiry: u64) -> Option<String>;
}

/// Why an upstream operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The identity's connection is down; try again later.
    #[error("upstream connection for {0} is not connected")]
    Offline(String),
    /// No key to sign a token with.
    #[error("no credentials for {0}; is it in the identity cache?")]
    NoCredentials(String),
    /// The cloud did not answer in time.
    #[error("upstream {operation} for {identity} timed out")]
    Timeout {
        /// What was attempted.
        operation: &'static str,
        /// For whom.
        identity: String,
    },
    /// The cloud answered with an error status.
    #[error("upstream {operation} for {identity} failed with status {status}")]
    Status {
        /// What was attempted.
        operation: &'static str,
        /// For whom.
        identity: String,
        /// The status.
        status: u16,
    },
    /// The connection went away before the answer arrived.
    #[error("upstream connection for {0} closed before the operation completed")]
    Closed(String),
}

/// Something the cloud sent that local clients must see.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamEvent {
    /// A direct method call for `identity`.
    MethodRequest {
        /// Target identity.
        identity: Identity,
        /// Method name.
        method: String,
        /// Cloud request id, to be echoed in the response.
        rid: String,
        /// Request payload.
        payload: Bytes,
    },
    /// A desired-properties patch (with `$version`) for `identity`.
    DesiredPatch {
        /// Target identity.
        identity: Identity,
        /// The patch.
        patch: serde_json::Value,
    },
    /// A cloud-to-device message for a leaf device: its property bag and body.
    CloudToDevice {
        /// Target leaf device.
        identity: Identity,
        /// Property bag text as received.
        property_bag: String,
        /// Body.
        payload: Bytes,
    },
    /// The identity's connection came up (the hub re-syncs twins then).
    Connected(Identity),
    /// The identity's connection went down.
    Disconnected(Identity),
}

/// All upstream connections; cheap to clone.
#[derive(Clone)]
pub struct UpstreamLink {
    inner: Arc<Inner>,
}

struct Inner {
    settings: UpstreamSettings,
    tokens: Arc<dyn TokenSource>,
    events: mpsc::Sender<UpstreamEvent>,
    connections: Mutex<HashMap<Identity, Arc<Connection>>>,
    /// Bumped whenever a connection comes up, goes down or fails an attempt.
    changed: Arc<watch::Sender<u64>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for UpstreamLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamLink")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl UpstreamLink {
    /// A link with no connections yet; events go to `events`.
    pub fn new(
        settings: UpstreamSettings,
        tokens: Arc<dyn TokenSource>,
        events: mpsc::Sender<UpstreamEvent>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                tokens,
                events,
                connections: Mutex::new(HashMap::new()),
                changed: Arc::new(watch::channel(0).0),
                shutdown,
            }),
        }
    }

    /// The connection for `identity`, started on first use.
    pub fn connection(&self, identity: &Identity) -> Arc<Connection> {
        let mut map = match self.inner.connections.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(identity.clone())
            .or_insert_with(|| {
                Connection::start(
                    identity.clone(),
                    self.inner.settings.clone(),
                    self.inner.tokens.clone(),
                    self.inner.events.clone(),
                    self.inner.changed.clone(),
                    self.inner.shutdown.child_token(),
                )
            })
            .clone()
    }

    /// True when `identity`'s connection is up (false if none was started).
    pub fn is_connected(&self, identity: &Identity) -> bool {
        let map = match self.inner.connections.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(identity).is_some_and(|c| c.is_connected())
    }

    /// Number of connections that are up, for metrics.
    pub fn connected_count(&self) -> usize {
        let map = match self.inner.connections.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.values().filter(|c| c.is_connected()).count()
    }

    /// True when the cloud is known to be unreachable right now: no connection is up and at
    /// least one has tried and failed since the last one was up.
    pub fn is_known_down(&self) -> bool {
        let map = match self.inner.connections.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        !map.values().any(|c| c.is_connected()) && map.values().any(|c| c.is_known_down())
    }

    /// A receiver that changes whenever any connection comes up, goes down or fails to connect.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Settings in use.
    pub fn settings(&self) -> &UpstreamSettings {
        &self.inner.settings
    }
}
