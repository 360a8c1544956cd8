//! An identity's MQTT connection to IoT Hub (the ironedge cloud hub or Azure IoT Hub), as the
//! edge hub and the edge agent both need it (`reference/iot-hub-protocols.md` §1–2).
//!
//! A [`Connection`] speaks for one device or module identity. It connects over TLS with a SAS
//! token it asks a [`TokenSource`] for, subscribes to what it was told to, and reconnects with
//! jittered exponential back-off. The token is renewed before it expires by reconnecting with a
//! fresh one. Telemetry is QoS 1 with a receipt completed by the cloud's PUBACK; twin GETs and
//! reported patches are requests correlated by `$rid`; method calls, desired patches and C2D
//! messages arrive as [`UpstreamEvent`]s. The transport is the batching client of
//! [`ironedge_mqtt::client`].

mod connection;
mod error;
mod event;
mod settings;

pub use connection::Connection;
pub use error::UpstreamError;
pub use event::UpstreamEvent;
pub use ironedge_protocol::Backoff;
pub use settings::UpstreamSettings;

use ironedge_protocol::Identity;

/// Mints SAS tokens for the identities a connection speaks for.
pub trait TokenSource: Send + Sync + 'static {
    /// A token for `identity` on `hub_host_name` valid until `expiry` (Unix seconds), or `None`
    /// when no key is known for the identity (the connection waits and asks again).
    fn token(&self, identity: &Identity, hub_host_name: &str, expiry: u64) -> Option<String>;
}

/// A little randomness for back-off jitter without a generator: the clock's sub-second
/// nanoseconds, in `[0, 1)`.
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}
