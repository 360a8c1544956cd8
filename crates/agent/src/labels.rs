//! The field manager, labels and object names the agent writes, defined once.

use std::collections::BTreeMap;

/// Field manager of every server-side apply the agent makes (the controller has its own).
pub const FIELD_MANAGER: &str = "ironedge-agent";
/// `app.kubernetes.io/managed-by` value on the agent's own objects.
pub const MANAGED_BY_VALUE: &str = "ironedge-agent";
/// Label naming what an agent object is for.
pub const COMPONENT: &str = "ironedge.io/component";
/// [`COMPONENT`] of module identity Secrets.
pub const COMPONENT_IDENTITY: &str = "module-identity";

/// Secret holding the generated device CA.
pub const EDGE_CA_SECRET: &str = "ironedge-edge-ca";
/// `kubernetes.io/tls` Secret with the edge hub's server certificate.
pub const EDGEHUB_TLS_SECRET: &str = "ironedge-edgehub-tls";
/// ConfigMap with the trust bundle (`trust-bundle.pem`).
pub const TRUST_BUNDLE_CONFIG_MAP: &str = "ironedge-trust-bundle";

/// Labels of an agent object with component `component`.
pub fn agent_labels(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            ironedge_controller::labels::MANAGED_BY.to_string(),
            MANAGED_BY_VALUE.to_string(),
        ),
        (
            ironedge_controller::labels::PART_OF.to_string(),
            ironedge_controller::labels::PART_OF_VALUE.to_string(),
        ),
        (COMPONENT.to_string(), component.to_string()),
    ])
}

/// Labels of a module identity Secret.
pub fn identity_labels() -> BTreeMap<String, String> {
    agent_labels(COMPONENT_IDENTITY)
}

/// Selector of the module identity Secrets.
pub fn identity_selector() -> String {
    format!(
        "{}={MANAGED_BY_VALUE},{COMPONENT}={COMPONENT_IDENTITY}",
        ironedge_controller::labels::MANAGED_BY
    )
}
