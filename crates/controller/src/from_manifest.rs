//! A validated IoT Edge deployment manifest → an [`EdgeDeploymentSpec`], plus the registry
//! credentials that must become `kubernetes.io/dockerconfigjson` Secrets (they never enter the spec).
//!
//! The agent uses this before writing the EdgeDeployment, and `ironedge manifest render` uses it to
//! print what a manifest becomes. The system modules are not modules of the spec: the device chart
//! installs the agent (which runs the controller, so it must not manage itself) and the edge hub
//! (Deployment `ironedge-edgehub`, Service `edgehub`). What `$edgeHub` asks of the edge hub, its
//! routes and store-and-forward settings, stays in the spec, where the edge hub reads it.

use std::collections::BTreeMap;

use ironedge_model::{EdgeAgentDesired, EdgeHubDesired, Manifest, Route};
use k8s_openapi::api::core::v1::Secret;

use crate::crd::{
    DesiredStatus, EdgeDeployment, EdgeDeploymentSpec, ImagePullPolicy, ManifestVersion,
    ModuleSpec, RestartPolicy, RouteSpec, StoreAndForwardSpec, WorkloadSpec,
};
use crate::names::{self, Rule};
use crate::translate::registry::RegistryCredential;

/// What the manifest does not say but the modules need: the device identity and where the
/// workload API is. The agent owns these values.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The IoT Hub device id.
    pub device_id: String,
    /// The IoT Hub host name.
    pub hub_host_name: String,
    /// Host name modules use for the edge hub; default: the edge hub Service.
    pub gateway_host_name: Option<String>,
    /// Workload API location for `IOTEDGE_WORKLOADURI` / `IOTEDGE_APIVERSION`.
    pub workload: Option<WorkloadSpec>,
    /// Module id (`$edgeHub`, `tempSensor`) → generation id of its IoT Hub identity.
    pub generation_ids: BTreeMap<String, String>,
}

/// The spec and the Secrets to write beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The EdgeDeployment spec.
    pub spec: EdgeDeploymentSpec,
    /// One credential per registry of `runtime.settings.registryCredentials`.
    pub credentials: Vec<RegistryCredential>,
}

/// Converts a validated manifest.
pub fn from_manifest(manifest: &Manifest, identity: &Identity) -> Converted {
    let agent = &manifest.edge_agent;
    let credentials = credentials(agent);
    let modules = agent
        .modules
        .iter()
        .map(|(name, m)| module(name, m, identity))
        .collect();
    let spec = EdgeDeploymentSpec {
        device_id: identity.device_id.clone(),
        hub_host_name: identity.hub_host_name.clone(),
        gateway_host_name: identity.gateway_host_name.clone(),
        workload: identity.workload.clone(),
        manifest: Some(ManifestVersion {
            agent_schema_version: Some(agent.schema_version.to_string()),
            hub_schema_version: Some(manifest.edge_hub.schema_version.to_string()),
            desired_version: agent.twin_version,
        }),
        modules,
        routes: routes(&manifest.edge_hub),
        store_and_forward: manifest.edge_hub.store_and_forward.as_ref().map(|s| {
            StoreAndForwardSpec {
                time_to_live_secs: i64::from(s.time_to_live_secs),
                max_size_bytes: s.max_size_bytes,
            }
        }),
        image_pull_secrets: credentials.iter().map(RegistryCredential::to_ref).collect(),
        port_binding_service_type: None,
        storage: None,
    };
    Converted { spec, credentials }
}

fn module(name: &str, m: &ironedge_model::Module, identity: &Identity) -> ModuleSpec {
    let mut image = m.settings.pull_image();
    if let Some(digest) = &m.settings.digest {
        image = format!("{image}@{digest}");
    }
    let options = m.settings.create_options.to_value();
    ModuleSpec {
        name: name.to_string(),
        image,
        version: (!m.version.is_empty()).then(|| m.version.clone()),
        status: match m.status {
            ironedge_model::DesiredStatus::Running => DesiredStatus::Running,
            ironedge_model::DesiredStatus::Stopped => DesiredStatus::Stopped,
        },
        restart_policy: match m.restart_policy {
            ironedge_model::RestartPolicy::Never => RestartPolicy::Never,
            ironedge_model::RestartPolicy::OnFailure => RestartPolicy::OnFailure,
            ironedge_model::RestartPolicy::OnUnhealthy => RestartPolicy::OnUnhealthy,
            ironedge_model::RestartPolicy::Always => RestartPolicy::Always,
        },
        image_pull_policy: match m.image_pull_policy {
            ironedge_model::ImagePullPolicy::OnCreate => ImagePullPolicy::OnCreate,
            ironedge_model::ImagePullPolicy::Never => ImagePullPolicy::Never,
        },
        startup_order: m.startup_order,
        env: m.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        create_options: options
            .as_object()
            .is_some_and(|o| !o.is_empty())
            .then_some(options),
        generation_id: identity.generation_ids.get(name).cloned(),
    }
}

fn routes(hub: &EdgeHubDesired) -> BTreeMap<String, RouteSpec> {
    hub.routes
        .iter()
        .map(|(name, r)| {
            let spec = RouteSpec {
                route: r.route.clone(),
                priority: (r.priority != Route::DEFAULT_PRIORITY)
                    .then(|| u8::try_from(r.priority).ok())
                    .flatten(),
                time_to_live_secs: (r.time_to_live_secs != 0).then_some(r.time_to_live_secs),
            };
            (name.clone(), spec)
        })
        .collect()
}

fn credentials(agent: &EdgeAgentDesired) -> Vec<RegistryCredential> {
    agent
        .runtime
        .registry_credentials
        .iter()
        .map(|(id, c)| RegistryCredential {
            secret_name: names::dns_label(&format!("registry-{id}"), Rule::Dns1123),
            address: c.address.clone(),
            username: c.username.clone(),
            password: c.password.clone(),
        })
        .collect()
}

/// The image pull Secrets for `ed`, labelled and owned like the objects the controller makes.
pub fn pull_secrets(ed: &EdgeDeployment, credentials: &[RegistryCredential]) -> Vec<Secret> {
    let module_names = BTreeMap::new();
    let ctx = crate::translate::Context::new(ed, &module_names);
    credentials
        .iter()
        .map(|c| c.to_secret(ctx.meta(&c.secret_name, ctx.device_labels(), BTreeMap::new(), true)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{"modulesContent": {
      "$edgeAgent": {"properties.desired": {
        "schemaVersion": "1.1",
        "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25",
          "registryCredentials": {"myacr": {"address": "myacr.azurecr.io", "username": "u", "password": "p4ss"}}}},
        "systemModules": {
          "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
          "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always", "startupOrder": 0,
                      "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5",
                                   "createOptions": "{\"HostConfig\":{\"PortBindings\":{\"8883/tcp\":[{\"HostPort\":\"8883\"}]}}}"}}},
        "modules": {"filter": {"type": "docker", "status": "stopped", "restartPolicy": "on-failure", "version": "2",
          "env": {"LEVEL": {"value": 3}},
          "settings": {"image": "myacr.azurecr.io/filter", "createOptions": "{}"}}}}},
      "$edgeHub": {"properties.desired": {
        "schemaVersion": "1.1",
        "routes": {"up": {"route": "FROM /messages/* INTO $upstream", "priority": 0, "timeToLiveSecs": 60},
                   "plain": "FROM /messages/modules/filter/* INTO $upstream"},
        "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}}}"#;

    fn converted() -> Converted {
        let manifest = ironedge_model::validate(MANIFEST.as_bytes())
            .into_result()
            .unwrap();
        let identity = Identity {
            device_id: "dev1".into(),
            hub_host_name: "hub.example.net".into(),
            generation_ids: [("filter".to_string(), "gen-7".to_string())].into(),
            ..Identity::default()
        };
        from_manifest(&manifest, &identity)
    }

    #[test]
    fn modules_routes_and_settings_carry_over() {
        let spec = converted().spec;
        let names: Vec<_> = spec.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["filter"],
            "system modules are run by the device chart, not from the spec"
        );
        let filter = &spec.modules[0];
        assert_eq!(filter.image, "myacr.azurecr.io/filter:latest");
        assert_eq!(filter.status, DesiredStatus::Stopped);
        assert_eq!(filter.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(filter.env["LEVEL"], "3");
        assert_eq!(filter.create_options, None);
        assert_eq!(filter.generation_id.as_deref(), Some("gen-7"));
        assert_eq!(spec.routes["up"].priority, Some(0));
        assert_eq!(spec.routes["up"].time_to_live_secs, Some(60));
        assert_eq!(spec.routes["plain"].priority, None);
        assert_eq!(spec.store_and_forward.unwrap().time_to_live_secs, 7200);
        assert_eq!(
            spec.manifest.unwrap().agent_schema_version.as_deref(),
            Some("1.1")
        );
    }

    #[test]
    fn credentials_become_secret_references_and_never_enter_the_spec() {
        let Converted { spec, credentials } = converted();
        assert_eq!(spec.image_pull_secrets.len(), 1);
        assert_eq!(spec.image_pull_secrets[0].registry, "myacr.azurecr.io");
        assert!(!serde_json::to_string(&spec).unwrap().contains("p4ss"));
        let ed = EdgeDeployment::new("dev1", spec);
        let secrets = pull_secrets(&ed, &credentials);
        assert_eq!(
            secrets[0].type_.as_deref(),
            Some("kubernetes.io/dockerconfigjson")
        );
        assert_eq!(secrets[0].metadata.name, Some(spec_secret_name(&ed)));
        let desired = crate::translate::translate(&ed).unwrap();
        let pod = match &desired.module("filter").unwrap().workload {
            crate::translate::Workload::Job(j) => j.spec.clone().unwrap().template.spec.unwrap(),
            crate::translate::Workload::Deployment(_) => panic!("on-failure is a Job"),
        };
        assert_eq!(
            pod.image_pull_secrets.unwrap()[0].name,
            spec_secret_name(&ed)
        );
    }

    /// Golden files: what each real-world manifest of the model crate becomes on Kubernetes.
    #[test]
    fn model_sample_manifests_translate_to_the_reviewed_objects() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/manifests/valid");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        assert!(!files.is_empty());
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            let manifest = ironedge_model::validate(&bytes).into_result().unwrap();
            let identity = Identity {
                device_id: "dev1".into(),
                hub_host_name: "hub.example.net".into(),
                ..Identity::default()
            };
            let converted = from_manifest(&manifest, &identity);
            let mut ed = EdgeDeployment::new("dev1", converted.spec);
            ed.metadata.namespace = Some("dev1".into());
            let name = file.file_stem().unwrap().to_string_lossy().into_owned();
            let text = match crate::translate::translate(&ed) {
                Ok(desired) => {
                    let mut text = desired.to_yaml();
                    for module in &desired.modules {
                        for note in &module.unsupported {
                            text.push_str(&format!("# unsupported in {}: {note}\n", module.id));
                        }
                    }
                    text
                }
                Err(err) => format!("# rejected: {err}\n"),
            };
            insta::assert_snapshot!(format!("manifest-{name}"), text);
        }
    }

    fn spec_secret_name(ed: &EdgeDeployment) -> String {
        ed.spec.image_pull_secrets[0].name.clone()
    }
}
