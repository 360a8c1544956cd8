//! The application's side of the server: authentication, authorisation and message handling.

use crate::DisconnectReason;
use crate::handle::{ConnectionHandle, PublishAck};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Publish};
use rustls::pki_types::CertificateDer;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::SystemTime;

/// How the client reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// Plain TCP (tests, in-cluster sidecars).
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket (over TLS when the listener has TLS).
    WebSocket,
}

/// A CONNECT to authenticate. `Debug` hides the password.
pub struct ConnectRequest {
    /// Client identifier.
    pub client_id: String,
    /// Username, if sent.
    pub username: Option<String>,
    /// Password (a SAS token for IoT Hub clients), if sent.
    pub password: Option<String>,
    /// CleanSession flag.
    pub clean_session: bool,
    /// Keepalive in seconds.
    pub keep_alive: u16,
    /// Remote address.
    pub peer: SocketAddr,
    /// TLS client certificate chain, when the client presented one (X.509 authentication).
    pub client_certificates: Option<Vec<CertificateDer<'static>>>,
    /// Transport used.
    pub transport: TransportKind,
}

impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectRequest")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("clean_session", &self.clean_session)
            .field("keep_alive", &self.keep_alive)
            .field("peer", &self.peer)
            .field(
                "client_certificates",
                &self.client_certificates.as_ref().map(Vec::len),
            )
            .field("transport", &self.transport)
            .finish()
    }
}

/// A successful authentication.
#[derive(Clone, Debug)]
pub struct Authenticated<I> {
    /// Who connected; one connection per identity is kept.
    pub identity: I,
    /// When the credentials expire; the connection is closed then.
    pub expires_at: Option<SystemTime>,
}

/// Hooks an application implements. Publish, subscribe and ack handling are synchronous and
/// must not block: hand work to your own tasks and complete the [`PublishAck`] later.
pub trait Hooks: Send + Sync + 'static {
    /// Who a connection is (e.g. `ironedge_protocol::Identity`).
    type Identity: Clone + Eq + Hash + fmt::Display + fmt::Debug + Send + Sync + 'static;

    /// Checks a CONNECT; return a CONNACK code (4 bad username or password, 5 not authorised)
    /// to refuse it.
    fn authenticate(
        &self,
        request: &ConnectRequest,
    ) -> impl Future<Output = Result<Authenticated<Self::Identity>, ConnectReturnCode>> + Send;

    /// A connection is established. `session_present` is true when a persistent session was
    /// resumed, with the subscriptions it held.
    fn connected(
        &self,
        connection: &ConnectionHandle<Self::Identity>,
        session_present: bool,
        subscriptions: &[(String, QoS)],
    ) {
        let _ = (connection, session_present, subscriptions);
    }

    /// Authorises one SUBSCRIBE filter: `Some(granted QoS ≤ 1)` or `None` (0x80 failure).
    fn subscribe(
        &self,
        connection: &ConnectionHandle<Self::Identity>,
        filter: &str,
        qos: QoS,
    ) -> Option<QoS>;

    /// A filter was unsubscribed.
    fn unsubscribe(&self, connection: &ConnectionHandle<Self::Identity>, filter: &str) {
        let _ = (connection, filter);
    }

    /// An inbound PUBLISH (QoS 0 or 1). Accept the ack when the message is safe. Returning
    /// `Err` closes the connection (e.g. a topic the identity may not use).
    fn publish(
        &self,
        connection: &ConnectionHandle<Self::Identity>,
        publish: Publish,
        ack: PublishAck,
    ) -> Result<(), String>;

    /// The connection ended without DISCONNECT (lost, timed out, kicked, taken over, expired)
    /// and the client had set a Will in CONNECT: publish it as the application sees fit (IoT
    /// Hub turns a Will on the identity's telemetry topic into telemetry; reference §1.2).
    /// Called once, just before [`Hooks::disconnected`]; the default drops it.
    fn will(
        &self,
        connection: &ConnectionHandle<Self::Identity>,
        will: Publish,
        reason: &DisconnectReason,
    ) {
        let _ = (connection, will, reason);
    }

    /// The connection ended.
    fn disconnected(
        &self,
        connection: &ConnectionHandle<Self::Identity>,
        reason: &DisconnectReason,
    ) {
        let _ = (connection, reason);
    }
}
