//! Who may connect to the edge hub, relative to the edge device it serves.
//!
//! - modules of the edge device (`{edge}/{module}`), including `$edgeAgent`;
//! - leaf devices (`{leaf}`) other than the edge device itself, that the identity cache knows;
//! - never `$edgeHub` (that is the hub itself), never the edge device's own device identity (it
//!   talks to the cloud, not to its own hub), never a module of another device.

use ironedge_protocol::Identity;

/// The module id of the edge hub itself.
pub const EDGE_HUB_MODULE: &str = "$edgeHub";
/// The module id of the edge agent.
pub const EDGE_AGENT_MODULE: &str = "$edgeAgent";

/// What kind of client an authenticated identity is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// A module of the edge device (`$edgeAgent` included).
    Module(String),
    /// A leaf device behind this gateway.
    LeafDevice(String),
}

/// Why an identity may not connect at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefused {
    /// Somebody tried to connect as the edge hub.
    #[error("no client may connect as {EDGE_HUB_MODULE}")]
    EdgeHubIdentity,
    /// The edge device's own device identity.
    #[error("the edge device {0:?} connects upstream, not to its own edge hub")]
    EdgeDeviceIdentity(String),
    /// A module of some other device.
    #[error("module {module:?} of device {device:?} does not belong to edge device {edge:?}")]
    ForeignModule {
        /// Device id the client claimed.
        device: String,
        /// Module id the client claimed.
        module: String,
        /// This hub's edge device.
        edge: String,
    },
}

/// Classifies an authenticated identity for the edge device `edge_device_id`.
pub fn classify(edge_device_id: &str, identity: &Identity) -> Result<ClientKind, ConnectRefused> {
    match &identity.module_id {
        Some(m) if identity.device_id == edge_device_id => {
            if m == EDGE_HUB_MODULE {
                Err(ConnectRefused::EdgeHubIdentity)
            } else {
                Ok(ClientKind::Module(m.clone()))
            }
        }
        Some(m) => Err(ConnectRefused::ForeignModule {
            device: identity.device_id.clone(),
            module: m.clone(),
            edge: edge_device_id.to_owned(),
        }),
        None if identity.device_id == edge_device_id => Err(ConnectRefused::EdgeDeviceIdentity(
            identity.device_id.clone(),
        )),
        None => Ok(ClientKind::LeafDevice(identity.device_id.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_of_the_edge_device_and_leaf_devices_may_connect() {
        assert_eq!(
            classify("edge", &Identity::module("edge", "sensor")),
            Ok(ClientKind::Module("sensor".into()))
        );
        assert_eq!(
            classify("edge", &Identity::module("edge", "$edgeAgent")),
            Ok(ClientKind::Module("$edgeAgent".into()))
        );
        assert_eq!(
            classify("edge", &Identity::device("leaf1")),
            Ok(ClientKind::LeafDevice("leaf1".into()))
        );
    }

    #[test]
    fn the_hub_itself_the_edge_device_and_foreign_modules_are_refused() {
        assert_eq!(
            classify("edge", &Identity::module("edge", "$edgeHub")),
            Err(ConnectRefused::EdgeHubIdentity)
        );
        assert!(matches!(
            classify("edge", &Identity::device("edge")),
            Err(ConnectRefused::EdgeDeviceIdentity(_))
        ));
        assert!(matches!(
            classify("edge", &Identity::module("other", "sensor")),
            Err(ConnectRefused::ForeignModule { .. })
        ));
    }

    #[test]
    fn device_ids_are_compared_exactly() {
        assert!(matches!(
            classify("edge", &Identity::module("Edge", "sensor")),
            Err(ConnectRefused::ForeignModule { .. })
        ));
    }
}
