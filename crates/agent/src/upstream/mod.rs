//! The agent's MQTT links to the hub, one per identity it speaks for: `$edgeAgent` (its own twin,
//! direct methods) and `$edgeHub` (the hub section of the deployment: routes and
//! store-and-forward). IoT Hub's device API over MQTT 3.1.1/TLS with module SAS tokens the agent
//! signs with keys it holds (`reference/iot-hub-protocols.md` §1–2), so the same code talks to the
//! ironedge hub and to Azure IoT Hub.
//!
//! Each [`Link`] reconnects with exponential back-off and reports what happens as [`LinkEvent`]s;
//! twin GETs and reported patches are request/response over `$rid`.

mod jitter;
mod link;

pub use ironedge_protocol::Backoff;
pub use jitter::jitter;
pub use link::{KeySource, Link, LinkSettings};

use bytes::Bytes;
use serde_json::{Map, Value};

/// What a link tells the agent.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// Connected (again): time for a full twin GET.
    Connected(String),
    /// The connection dropped.
    Disconnected(String),
    /// A desired-properties patch (with `$version`).
    DesiredPatch {
        /// Module id of the link.
        module: String,
        /// The patch.
        patch: Map<String, Value>,
    },
    /// A direct method call.
    Method {
        /// Module id of the link.
        module: String,
        /// Method name as sent.
        name: String,
        /// Request id to answer with.
        rid: String,
        /// Request payload.
        payload: Bytes,
    },
}

/// A failed operation on a link.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Not connected right now.
    #[error("{0} is not connected to the hub")]
    Offline(String),
    /// The connection closed while waiting.
    #[error("the connection of {0} closed during the request")]
    Closed(String),
    /// No answer in time.
    #[error("{operation} for {identity} timed out")]
    Timeout {
        /// What was attempted.
        operation: &'static str,
        /// Who.
        identity: String,
    },
    /// The hub answered with an error status.
    #[error("{operation} for {identity} failed with status {status}")]
    Status {
        /// What was attempted.
        operation: &'static str,
        /// Who.
        identity: String,
        /// The status.
        status: u16,
    },
    /// The answer was not JSON.
    #[error("{operation} for {identity}: the hub's answer is not JSON")]
    Decode {
        /// What was attempted.
        operation: &'static str,
        /// Who.
        identity: String,
    },
}
