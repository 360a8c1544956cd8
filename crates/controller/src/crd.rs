//! The `EdgeDeployment` custom resource (`ironedge.io/v1`): one per device namespace, written by the
//! edge agent from the device's deployment manifest and reconciled by the controller.
//!
//! The spec is structured (modules as objects, `createOptions` as a JSON object, routes included),
//! unlike the older preview's array of modules with JSON-encoded settings
//! (`reference/azure-iotedge-k8s.md` §1.2). Credentials never appear here: image pull Secrets are
//! referenced by name. The identity inputs that modules need as `IOTEDGE_*` variables (hub host
//! name, device id, generation ids, workload URI) are part of the spec, so that translation is a pure
//! function of the resource.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod fixup;

pub use fixup::fix_crd_for_1_20;

/// Desired state of one edge device's modules, as the controller reconciles it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ironedge.io",
    version = "v1",
    kind = "EdgeDeployment",
    namespaced,
    status = "EdgeDeploymentStatus",
    shortname = "ed",
    category = "ironedge",
    derive = "PartialEq",
    doc = "The modules and routes of one IoT Edge device, reconciled into Kubernetes objects",
    printcolumn = r#"{"name":"Device","type":"string","jsonPath":".spec.deviceId"}"#,
    printcolumn = r#"{"name":"Modules","type":"string","description":"modules ready / total","jsonPath":".status.modulesReady"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EdgeDeploymentSpec {
    /// The IoT Hub device id (`IOTEDGE_DEVICEID`).
    pub device_id: String,
    /// The IoT Hub host name (`IOTEDGE_IOTHUBHOSTNAME`), e.g. `myhub.azure-devices.net`.
    pub hub_host_name: String,
    /// Host name modules use to reach the edge hub (`IOTEDGE_GATEWAYHOSTNAME`); defaults to the
    /// edge hub module's Service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_host_name: Option<String>,
    /// Where modules reach the workload API, and which API version they should use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadSpec>,
    /// The deployment manifest this spec was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestVersion>,
    /// The modules to run, keyed by name.
    #[serde(default)]
    #[schemars(transform = list_map_by_name)]
    pub modules: Vec<ModuleSpec>,
    /// Message routes of the edge hub, by route name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, RouteSpec>,
    /// Store-and-forward settings of the edge hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_and_forward: Option<StoreAndForwardSpec>,
    /// Image pull Secrets (type `kubernetes.io/dockerconfigjson`) and the registries they serve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<ImagePullSecretRef>,
    /// Service type for modules with `HostConfig.PortBindings` (default `ClusterIP`); a module's
    /// `k8s-experimental.serviceOptions.type` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_binding_service_type: Option<ServiceType>,
    /// How Docker named volumes become PersistentVolumeClaims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
}

/// One IoT Edge module.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleSpec {
    /// The module id as IoT Hub knows it (`$edgeHub`, `tempSensor`).
    pub name: String,
    /// Container image, `repo[:tag][@digest]`.
    pub image: String,
    /// Opaque module version from the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Desired status: `running` (default) or `stopped`.
    #[serde(default)]
    pub status: DesiredStatus,
    /// IoT Edge restart policy (default `on-unhealthy`, as in IoT Edge).
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// IoT Edge image pull policy (default `on-create`).
    #[serde(default)]
    pub image_pull_policy: ImagePullPolicy,
    /// Lower groups start first; a group is created once every earlier group is available.
    #[serde(default = "default_startup_order")]
    pub startup_order: u32,
    /// Environment variables from the manifest's `env` (values as strings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Docker `ContainerCreate` options as a JSON object, including a `k8s-experimental` section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "json_object")]
    pub create_options: Option<serde_json::Value>,
    /// Generation id of the module identity in IoT Hub (`IOTEDGE_MODULEGENERATIONID`); set by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_id: Option<String>,
}

/// Desired module status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DesiredStatus {
    /// The module should run.
    #[default]
    Running,
    /// The module should not run (its objects stay, with no pod).
    Stopped,
}

/// IoT Edge restart policy, mapped to Kubernetes as documented in `translate::workload`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart.
    Never,
    /// Restart after a non-zero exit.
    OnFailure,
    /// Restart after a non-zero exit or a failed health check (the IoT Edge default).
    #[default]
    OnUnhealthy,
    /// Always restart.
    Always,
}

/// IoT Edge image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ImagePullPolicy {
    /// Pull when the module is created (Kubernetes `IfNotPresent`).
    #[default]
    OnCreate,
    /// Never pull (Kubernetes `Never`).
    Never,
}

/// Kubernetes Service type for modules with port bindings.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also reachable on every node's port.
    NodePort,
    /// Also reachable through the cloud's load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The manifest-level IoT Edge default for `startupOrder` (`uint32::MAX`: start last).
pub const DEFAULT_STARTUP_ORDER: u32 = u32::MAX;

fn default_startup_order() -> u32 {
    DEFAULT_STARTUP_ORDER
}

/// Where modules reach the workload API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// `IOTEDGE_WORKLOADURI`, e.g. `http://edgeagent-workload:15581/`.
    pub uri: String,
    /// `IOTEDGE_APIVERSION`, e.g. `2020-07-07`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// A sidecar in every module pod that serves `uri` (a `unix://` socket shared only with the
    /// module's container) and forwards to the agent with the pod's audience-bound
    /// ServiceAccount token, so that the agent knows which module calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<WorkloadProxySpec>,
}

/// The per-pod workload API sidecar (`ironedge workload-proxy`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadProxySpec {
    /// Image holding the `ironedge` binary.
    pub image: String,
    /// The agent's workload API, e.g. `https://ironedge-agent.dev1.svc:15581`.
    pub agent_url: String,
    /// Audience of the projected ServiceAccount token the sidecar presents (e.g. `ironedge-workload`).
    pub audience: String,
    /// ConfigMap in the namespace holding the edge CA trust bundle under `trust-bundle.pem`.
    pub trust_bundle_config_map: String,
    /// Lifetime of the projected token in seconds (default 3600; the kubelet renews it at 80%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expiration_seconds: Option<i64>,
}

/// Which manifest the spec was made from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestVersion {
    /// `$edgeAgent` `schemaVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_schema_version: Option<String>,
    /// `$edgeHub` `schemaVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_schema_version: Option<String>,
    /// The twin's desired `$version` the manifest came with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<i64>,
}

/// One edge hub route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// `FROM … [WHERE …] INTO …`.
    pub route: String,
    /// 0 (highest) to 9; absent means the IoT Edge default (lowest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Message time to live; absent or 0 means the store-and-forward default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_live_secs: Option<u32>,
}

/// Edge hub store-and-forward settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreAndForwardSpec {
    /// Default message time to live; negative means forever.
    pub time_to_live_secs: i64,
    /// Upper bound of the store in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_bytes: Option<u64>,
}

/// Reference to an image pull Secret; the credentials live only in the Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullSecretRef {
    /// Name of a `kubernetes.io/dockerconfigjson` Secret in the same namespace.
    pub name: String,
    /// Registry address the Secret serves (`myacr.azurecr.io`, `localhost:5000`); a module uses
    /// the Secret when its image comes from this registry.
    pub registry: String,
}

/// How Docker named volumes become PersistentVolumeClaims.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Storage class of the claims; absent means the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Requested size of each claim (default `1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Access mode of each claim (default `ReadWriteOnce`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<String>,
    /// Delete the claims (and their data) with the EdgeDeployment or when no module mounts them
    /// any more. Default false: claims are retained.
    #[serde(default)]
    pub delete_with_deployment: bool,
}

/// What the controller observed, written through the status subresource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeDeploymentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    #[schemars(transform = list_map_by_type)]
    pub conditions: Vec<Condition>,
    /// Runtime status of each module.
    #[serde(default)]
    #[schemars(transform = list_map_by_name)]
    pub modules: Vec<ModuleStatus>,
    /// `ready/total` for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules_ready: Option<String>,
    /// Runtime status of the system modules, which the device chart runs (not the controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_modules: Option<SystemModulesStatus>,
}

/// Runtime status of `$edgeAgent` and `$edgeHub`, read from the pods the device chart runs
/// (labelled `app.kubernetes.io/component=agent` and `=edgehub`), for the agent to report upstream.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemModulesStatus {
    /// The edge agent (`$edgeAgent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_agent: Option<ModuleStatus>,
    /// The edge hub (`$edgeHub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_hub: Option<ModuleStatus>,
}

/// A status condition in the usual Kubernetes shape.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable CamelCase reason.
    pub reason: String,
    /// Human-readable detail (omitted when empty: Kubernetes 1.20 turns `""` into null).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    /// The generation the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Runtime status of one module, in IoT Edge terms.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleStatus {
    /// Module id (`$edgeHub`, `tempSensor`).
    pub name: String,
    /// `running`, `backoff`, `failed`, `stopped` or `unknown`.
    pub runtime_status: RuntimeStatus,
    /// Human-readable detail (reason from the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Exit code of the last terminated container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Container restarts so far.
    #[serde(default)]
    pub restart_count: i32,
    /// RFC 3339 time the container last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_start_time: Option<String>,
    /// RFC 3339 time the container last exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit_time: Option<String>,
    /// createOptions fields that have no Kubernetes equivalent and were not applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<String>,
}

/// IoT Edge module runtime status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeStatus {
    /// The container runs.
    Running,
    /// Waiting to (re)start: image pull, crash loop, startup order.
    Backoff,
    /// Exited with an error and will not be restarted.
    Failed,
    /// Not running, as desired or after a clean exit.
    Stopped,
    /// Not known yet (no pod, pod not scheduled).
    Unknown,
}

impl RuntimeStatus {
    /// The IoT Edge spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Backoff => "backoff",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Unknown => "unknown",
        }
    }
}

/// The CRD as applied to clusters: generated from the types, then made acceptable to Kubernetes 1.20.
pub fn crd() -> CustomResourceDefinition {
    fix_crd_for_1_20(EdgeDeployment::crd())
}

/// The CRD as YAML, as committed under `deploy/crds/` and printed by `ironedge crd`.
pub fn crd_yaml() -> String {
    // Serialising a CRD built from our own types cannot fail: it holds only strings, maps and lists.
    serde_norway::to_string(&crd()).unwrap_or_default()
}

fn json_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

fn list_map_by_name(schema: &mut schemars::Schema) {
    list_map(schema, "name");
}

fn list_map_by_type(schema: &mut schemars::Schema) {
    list_map(schema, "type");
}

/// Declares a list as a map keyed by `key`, so that server-side apply merges items by key.
fn list_map(schema: &mut schemars::Schema, key: &str) {
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!([key]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = include_str!("../../../deploy/crds/edgedeployments.ironedge.io.yaml");

    #[test]
    fn committed_crd_yaml_matches_the_types() {
        if std::env::var_os("IRONEDGE_WRITE_CRD").is_some() {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../deploy/crds/edgedeployments.ironedge.io.yaml"
            );
            std::fs::write(path, crd_yaml()).unwrap();
            return;
        }
        assert!(
            COMMITTED == crd_yaml(),
            "deploy/crds/edgedeployments.ironedge.io.yaml is out of date; regenerate it with \
             `ironedge crd > deploy/crds/edgedeployments.ironedge.io.yaml` or \
             `IRONEDGE_WRITE_CRD=1 cargo test -p ironedge-controller committed_crd`"
        );
    }

    #[test]
    fn crd_has_no_constructs_that_kubernetes_1_20_rejects() {
        let json = serde_json::to_value(crd()).unwrap();
        let text = json.to_string();
        assert!(!text.contains("x-kubernetes-validations"));
        assert!(!text.contains("selectableFields"));
        fn walk(v: &serde_json::Value) {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::Array(items)) = map.get("enum") {
                        assert!(
                            !items.contains(&serde_json::Value::Null),
                            "null in enum: {v}"
                        );
                    }
                    if let Some(default) = map.get("default") {
                        assert!(
                            !default.to_string().contains("\"\""),
                            "empty string in default"
                        );
                    }
                    map.values().for_each(walk);
                }
                serde_json::Value::Array(items) => items.iter().for_each(walk),
                _ => {}
            }
        }
        walk(&json);
    }

    #[test]
    fn crd_declares_status_subresource_printer_columns_and_short_name() {
        let crd = crd();
        assert_eq!(crd.spec.group, "ironedge.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["ed".to_string()]));
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Device", "Modules", "Ready", "Age"]);
        let schema = serde_json::to_value(&version.schema).unwrap();
        let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
        for field in [
            "observedGeneration",
            "conditions",
            "modules",
            "systemModules",
        ] {
            assert!(status.get(field).is_some(), "status.{field} not declared");
        }
        let create_options = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["modules"]
            ["items"]["properties"]["createOptions"];
        assert_eq!(create_options["x-kubernetes-preserve-unknown-fields"], true);
    }

    #[test]
    fn spec_round_trips_through_json_with_defaults_filled() {
        let ed: EdgeDeploymentSpec = serde_json::from_value(serde_json::json!({
            "deviceId": "dev1",
            "hubHostName": "hub.example.net",
            "modules": [{"name": "sensor", "image": "sensor:1"}]
        }))
        .unwrap();
        let module = &ed.modules[0];
        assert_eq!(module.status, DesiredStatus::Running);
        assert_eq!(module.restart_policy, RestartPolicy::OnUnhealthy);
        assert_eq!(module.image_pull_policy, ImagePullPolicy::OnCreate);
        assert_eq!(module.startup_order, DEFAULT_STARTUP_ORDER);
        let back: EdgeDeploymentSpec =
            serde_json::from_value(serde_json::to_value(&ed).unwrap()).unwrap();
        assert_eq!(back, ed);
    }
}
