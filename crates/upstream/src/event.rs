//! What the cloud sends that the application must act on.

use bytes::Bytes;
use ironedge_protocol::Identity;

/// Something a connection reports.
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
    /// A desired-properties patch (a JSON object with `$version`) for `identity`.
    DesiredPatch {
        /// Target identity.
        identity: Identity,
        /// The patch.
        patch: serde_json::Map<String, serde_json::Value>,
    },
    /// A cloud-to-device message for a device: its property bag and body.
    CloudToDevice {
        /// Target device.
        identity: Identity,
        /// Property bag text as received.
        property_bag: String,
        /// Body.
        payload: Bytes,
    },
    /// The identity's connection came up (time for a full twin GET).
    Connected(Identity),
    /// The identity's connection went down (not sent for a token renewal's reconnect).
    Disconnected(Identity),
}
