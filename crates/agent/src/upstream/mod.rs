//! The agent's MQTT connections to the hub, one per identity it speaks for: `$edgeAgent` (its own
//! twin, direct methods) and `$edgeHub` (the hub section of the deployment: routes and
//! store-and-forward). IoT Hub's device API over MQTT 3.1.1/TLS with module SAS tokens the agent
//! signs with keys it holds (`reference/iot-hub-protocols.md` §1–2), so the same code talks to the
//! ironedge hub and to Azure IoT Hub.
//!
//! The connections are [`ironedge_upstream::Connection`]s, shared with the edge hub: they
//! reconnect with back-off, renew their token before it expires and report what happens as
//! [`UpstreamEvent`]s; twin GETs and reported patches are request/response over `$rid`.

pub use ironedge_upstream::{
    Backoff, Connection, UpstreamError, UpstreamEvent, UpstreamSettings, jitter,
};

use std::sync::Arc;

use ironedge_protocol::{Identity, SasToken, SymmetricKey};

/// What the agent's connections subscribe to besides twin responses.
pub const SUBSCRIPTIONS: [&str; 2] = [
    "$iothub/twin/PATCH/properties/desired/#",
    "$iothub/methods/POST/#",
];

/// Signs tokens for a connection: the identity's current primary key, if known yet.
pub type KeySource = Arc<dyn Fn() -> Option<SymmetricKey> + Send + Sync>;

/// Tokens signed with the key a [`KeySource`] gives.
pub struct KeyTokens(pub KeySource);

impl std::fmt::Debug for KeyTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyTokens")
    }
}

impl ironedge_upstream::TokenSource for KeyTokens {
    fn token(&self, identity: &Identity, hub_host_name: &str, expiry: u64) -> Option<String> {
        let key = (self.0)()?;
        let resource = identity.resource_uri(hub_host_name);
        Some(SasToken::build(&resource, &key, expiry, None).to_string())
    }
}

/// The module id a connection speaks for (`$edgeAgent`, `$edgeHub`).
pub fn module_id(connection: &Connection) -> &str {
    connection
        .identity()
        .module_id
        .as_deref()
        .unwrap_or_default()
}
