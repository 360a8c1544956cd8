//! Label and annotation keys, and the server-side-apply field manager: every key the controller
//! writes is defined here and nowhere else.

/// The one field manager for every server-side apply the controller makes.
pub const FIELD_MANAGER: &str = "ironedge-controller";

/// `app.kubernetes.io/name`: the module's object name.
pub const NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the owning EdgeDeployment's name (label-safe).
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/managed-by`: always [`MANAGED_BY_VALUE`].
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/part-of`: always [`PART_OF_VALUE`].
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// `ironedge.io/device`: the device id (label-safe).
pub const DEVICE: &str = "ironedge.io/device";
/// `ironedge.io/module`: the module's object name.
pub const MODULE: &str = "ironedge.io/module";

/// Value of [`MANAGED_BY`] on everything the controller creates; watches select on it.
pub const MANAGED_BY_VALUE: &str = "ironedge-controller";
/// Value of [`PART_OF`].
pub const PART_OF_VALUE: &str = "ironedge";

/// Annotation holding the original module id (`$edgeHub`), which object names cannot carry.
pub const ORIGINAL_MODULE: &str = "ironedge.io/module-id";
/// Annotation holding the original device id.
pub const ORIGINAL_DEVICE: &str = "ironedge.io/device-id";
/// Annotation holding the original Docker volume name of a PVC.
pub const ORIGINAL_VOLUME: &str = "ironedge.io/volume-name";
/// Annotation holding a hash of the applied object, so that a changed desired object is applied
/// even when it only removes fields.
pub const APPLIED_HASH: &str = "ironedge.io/applied-hash";
/// Annotation on workloads naming their startupOrder group.
pub const STARTUP_ORDER: &str = "ironedge.io/startup-order";
/// Annotation on Jobs holding a hash of their pod template, which Kubernetes does not let change:
/// a Job whose template hash differs is replaced instead of applied.
pub const TEMPLATE_HASH: &str = "ironedge.io/template-hash";
/// Annotation that exists only in the controller's caches, never on the server: a hash of the
/// cached object's content before the caches strip it, so that drift is noticed without keeping
/// whole objects in memory.
pub const LIVE_FINGERPRINT: &str = "ironedge.io/live-fingerprint";

/// `app.kubernetes.io/component`: names the device chart's components.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// [`COMPONENT`] of the edge agent's pods (the device chart's `ironedge-agent`).
pub const COMPONENT_AGENT: &str = "agent";
/// [`COMPONENT`] of the edge hub's pods (the device chart's `ironedge-edgehub`).
pub const COMPONENT_EDGE_HUB: &str = "edgehub";

/// The label selector every watch of the controller uses.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE}")
}

/// The label selector of the system modules' pods, which the device chart runs.
pub fn system_pod_selector() -> String {
    format!("{PART_OF}={PART_OF_VALUE},{COMPONENT} in ({COMPONENT_AGENT},{COMPONENT_EDGE_HUB})")
}
