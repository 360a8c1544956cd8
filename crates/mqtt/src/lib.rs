//! A reusable MQTT 3.1.1 server core on tokio for the cloud hub and the edge hub.
//!
//! The caller binds the listener and supplies a shutdown future (mini-redis style); the server
//! speaks MQTT over TCP, TLS and WebSocket (`/$iothub/websocket`, subprotocol `mqtt`), decodes
//! packets with rumqttc's v4 codec, and leaves every decision to the application's [`Hooks`]:
//! authentication (CONNACK 4/5 on failure), per-filter SUBSCRIBE authorisation, and PUBLISH
//! handling with an asynchronous [`PublishAck`] so the edge hub can PUBACK only after its store
//! commit while later packets keep flowing. Limits follow IoT Hub: 256 KiB packets, QoS 0/1
//! only, keepalive timeout 1.5 × the client's keepalive, one connection per identity (a new one
//! kicks the old), persistent sessions with QoS 1 retransmission when CleanSession = 0.
//!
//! [`client`] is the other side: an MQTT client that batches its writes, for upstream links.
//!
//! Protocol state is a pure state machine ([`session`](crate::PersistedSession)); sockets live
//! in a thin shell that batches writes per loop turn. Counters are in [`MqttMetrics`].

pub mod client;
mod config;
mod connection;
mod error;
mod handle;
mod hooks;
mod metrics;
mod server;
mod session;
mod transport;
mod wire;

pub use config::MqttConfig;
pub use error::{DisconnectReason, Error, Result};
pub use handle::{ConnectionHandle, OutboundMessage, PublishAck, SendError};
pub use hooks::{Authenticated, ConnectRequest, Hooks, TransportKind};
pub use metrics::MqttMetrics;
pub use server::{MqttServer, WEBSOCKET_PATH, WEBSOCKET_PROTOCOL};
pub use session::PersistedSession;
pub use transport::{StreamTransport, Transport, WebSocketTransport};

/// The rumqttc v4 packet types the hooks see.
pub use rumqttc::mqttbytes::QoS;
pub use rumqttc::mqttbytes::v4::{ConnectReturnCode, Publish};
