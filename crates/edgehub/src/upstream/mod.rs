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
//! with valid credentials, and a long drain reconnects with a fresh token at 80 % of the old one's
//! lifetime instead of being cut off at its expiry.
//!
//! The connections are [`ironedge_upstream::Connection`]s (shared with the edge agent): they
//! reconnect with exponential back-off (1 s → 60 s, jittered); publishes are QoS 1 and a caller
//! gets a receipt that resolves on the cloud's PUBACK; anything not acknowledged when the
//! connection drops stays in the store and is sent again (at-least-once).

pub use ironedge_upstream::{
    Backoff, Connection, TokenSource, UpstreamError, UpstreamEvent, UpstreamSettings,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ironedge_protocol::Identity;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

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
                    &[],
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
