//! Where and how a connection reaches the cloud.

use std::sync::Arc;
use std::time::Duration;

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
    /// Lifetime of the SAS tokens minted for each CONNECT; the connection reconnects with a
    /// fresh token at 80 % of it.
    pub token_ttl: Duration,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// How long a twin round trip may take.
    pub operation_timeout: Duration,
    /// Unacknowledged QoS 1 publishes allowed at once (a backlog drains at the link's speed,
    /// not one round trip per window).
    pub inflight: u16,
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
