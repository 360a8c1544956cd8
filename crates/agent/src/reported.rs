//! `$edgeAgent` reported properties in IoT Edge's schema (`reference/iotedge-runtime.md` §4.7),
//! built from the last accepted manifest and the EdgeDeployment's status, and the JSON diff that
//! is all the agent sends (`IoTHubReporter`: only changes go upstream). Pure.
//!
//! ```text
//! schemaVersion, version{version,build,commit}, lastDesiredVersion, lastDesiredStatus{code,description},
//! runtime{type,platform{os,architecture,version},settings{minDockerVersion,loggingOptions,registryCredentials}},
//! systemModules{edgeAgent,edgeHub}, modules{<name>}
//! ```
//!
//! Each module carries its desired fields as the manifest has them plus `runtimeStatus`
//! (running/backoff/failed/stopped/unknown), `exitCode`, `statusDescription`,
//! `lastStartTimeUtc`, `lastExitTimeUtc`, `restartCount`, `lastRestartTimeUtc`. Registry passwords
//! are never reported.

use ironedge_controller::crd::{EdgeDeploymentStatus, ModuleStatus, RuntimeStatus};
use ironedge_model::{EDGE_AGENT, EDGE_HUB, Manifest};
use serde_json::{Map, Value, json};

/// What IoT Edge reports for a time it does not know.
pub const UNKNOWN_TIME: &str = "0001-01-01T00:00:00Z";
/// Reported `schemaVersion`.
pub const SCHEMA_VERSION: &str = "1.0";

/// The outcome of the last desired properties the agent processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastDesired {
    /// Their `$version`.
    pub version: i64,
    /// 200, 400, 406, 412, 417 or 500.
    pub code: u16,
    /// Why, when not 200.
    pub description: String,
}

impl LastDesired {
    /// The `lastDesiredStatus` object.
    pub fn status_value(&self) -> Value {
        json!({"code": self.code, "description": self.description})
    }
}

/// Where the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// CPU architecture.
    pub architecture: String,
    /// Kubernetes server version.
    pub version: String,
}

/// Everything the `$edgeAgent` reported properties are made of.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The agent's own version.
    pub agent_version: &'a str,
    /// Where it runs.
    pub platform: &'a Platform,
    /// The last processed desired properties.
    pub last_desired: Option<&'a LastDesired>,
    /// The last accepted manifest (what the cluster runs).
    pub manifest: Option<&'a Manifest>,
    /// The EdgeDeployment's status.
    pub status: Option<&'a EdgeDeploymentStatus>,
    /// When the agent started (RFC 3339).
    pub agent_started: &'a str,
}

/// The full `$edgeAgent` reported properties.
pub fn edge_agent(inputs: Inputs<'_>) -> Value {
    let mut out = Map::new();
    out.insert("schemaVersion".into(), json!(SCHEMA_VERSION));
    out.insert(
        "version".into(),
        json!({"version": inputs.agent_version, "build": "", "commit": ""}),
    );
    if let Some(last) = inputs.last_desired {
        out.insert("lastDesiredVersion".into(), json!(last.version));
        out.insert("lastDesiredStatus".into(), last.status_value());
    }
    let desired = inputs.manifest.map(|m| m.edge_agent.to_value());
    let settings = desired
        .as_ref()
        .map(|d| runtime_settings(&d["runtime"]["settings"]))
        .unwrap_or_else(|| json!({}));
    out.insert(
        "runtime".into(),
        json!({
            "type": "docker",
            "platform": {
                "os": inputs.platform.os,
                "architecture": inputs.platform.architecture,
                "version": inputs.platform.version,
            },
            "settings": settings,
        }),
    );
    let find = |id: &str| {
        inputs
            .status
            .and_then(|s| s.modules.iter().find(|m| m.name == id))
    };
    let observed = inputs.status.and_then(|s| s.system_modules.as_ref());
    let mut system = Map::new();
    let agent = desired
        .as_ref()
        .and_then(|d| d["systemModules"][EDGE_AGENT].as_object().cloned())
        .unwrap_or_default();
    let agent_pod = observed
        .and_then(|s| s.edge_agent.as_ref())
        .filter(|s| s.runtime_status != RuntimeStatus::Unknown);
    let agent = match agent_pod {
        Some(pod) => with_runtime(agent, Some(pod)),
        // No pod of ours is seen (run by hand, or status not computed yet): this process runs.
        None => this_process(agent, inputs.agent_started),
    };
    system.insert(EDGE_AGENT.into(), agent);
    if let Some(hub) = desired
        .as_ref()
        .and_then(|d| d["systemModules"][EDGE_HUB].as_object())
    {
        // The device chart runs the edge hub; a controller that predates systemModules
        // deployed it as a module.
        let status = observed
            .and_then(|s| s.edge_hub.as_ref())
            .or_else(|| find(ironedge_controller::translate::env::EDGE_HUB));
        system.insert(EDGE_HUB.into(), with_runtime(hub.clone(), status));
    }
    out.insert("systemModules".into(), Value::Object(system));
    let mut modules = Map::new();
    if let Some(user) = desired.as_ref().and_then(|d| d["modules"].as_object()) {
        for (name, module) in user {
            let Some(module) = module.as_object() else {
                continue;
            };
            modules.insert(name.clone(), with_runtime(module.clone(), find(name)));
        }
    }
    out.insert("modules".into(), Value::Object(modules));
    Value::Object(out)
}

/// The `$edgeHub` reported properties the agent keeps (the hub section's outcome).
pub fn edge_hub(last: Option<&LastDesired>) -> Value {
    let mut out = Map::new();
    out.insert("schemaVersion".into(), json!(SCHEMA_VERSION));
    if let Some(last) = last {
        out.insert("lastDesiredVersion".into(), json!(last.version));
        out.insert("lastDesiredStatus".into(), last.status_value());
    }
    Value::Object(out)
}

/// The agent's own runtime fields when no pod of it is observed: it is running since `started`.
fn this_process(mut agent: Map<String, Value>, started: &str) -> Value {
    agent.insert("runtimeStatus".into(), json!("running"));
    agent.insert("statusDescription".into(), json!("running"));
    agent.insert("exitCode".into(), json!(0));
    agent.insert("lastStartTimeUtc".into(), json!(started));
    agent.insert("lastExitTimeUtc".into(), json!(UNKNOWN_TIME));
    agent.insert("restartCount".into(), json!(0));
    agent.insert("lastRestartTimeUtc".into(), json!(UNKNOWN_TIME));
    Value::Object(agent)
}

/// `runtime.settings` without registry passwords.
fn runtime_settings(settings: &Value) -> Value {
    let mut settings = settings.clone();
    if let Some(creds) = settings
        .get_mut("registryCredentials")
        .and_then(Value::as_object_mut)
    {
        for cred in creds.values_mut() {
            if let Some(cred) = cred.as_object_mut() {
                cred.remove("password");
            }
        }
    }
    settings
}

/// A module's desired fields plus its runtime fields.
fn with_runtime(mut module: Map<String, Value>, status: Option<&ModuleStatus>) -> Value {
    let (runtime, description) = match status {
        Some(s) => (
            s.runtime_status.as_str(),
            s.description.clone().unwrap_or_default(),
        ),
        None => ("unknown", "status not observed yet".to_string()),
    };
    let restarts = status.map_or(0, |s| s.restart_count);
    let last_start = status
        .and_then(|s| s.last_start_time.clone())
        .unwrap_or_else(|| UNKNOWN_TIME.to_string());
    // A restart is a start after an earlier run: with restarts, the last start is the last restart.
    let last_restart = if restarts > 0 {
        last_start.clone()
    } else {
        UNKNOWN_TIME.to_string()
    };
    module.insert("runtimeStatus".into(), json!(runtime));
    module.insert("statusDescription".into(), json!(description));
    module.insert(
        "exitCode".into(),
        json!(status.and_then(|s| s.exit_code).unwrap_or(0)),
    );
    module.insert("lastStartTimeUtc".into(), json!(last_start));
    module.insert(
        "lastExitTimeUtc".into(),
        json!(
            status
                .and_then(|s| s.last_exit_time.clone())
                .unwrap_or_else(|| UNKNOWN_TIME.to_string())
        ),
    );
    module.insert("restartCount".into(), json!(restarts));
    module.insert("lastRestartTimeUtc".into(), json!(last_restart));
    Value::Object(module)
}

/// The JSON merge patch that turns `old` into `new` (`null` removes a key); `None` when equal.
pub fn diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = Map::new();
            for (k, v) in b {
                match a.get(k) {
                    Some(prev) => {
                        if let Some(d) = diff(prev, v) {
                            out.insert(k.clone(), d);
                        }
                    }
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in a.keys() {
                if !b.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (a, b) if a == b => None,
        (_, b) => Some(b.clone()),
    }
}

/// The reported section as the cloud holds it, without `$version` and `$metadata`.
pub fn without_twin_metadata(reported: &Value) -> Value {
    let mut reported = reported.clone();
    if let Some(obj) = reported.as_object_mut() {
        obj.remove("$version");
        obj.remove("$metadata");
    }
    reported
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironedge_controller::crd::SystemModulesStatus;

    const MANIFEST: &str = r#"{"modulesContent": {
      "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1",
        "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25",
          "registryCredentials": {"acr": {"address": "acr.io", "username": "u", "password": "hunter2"}}}},
        "systemModules": {
          "edgeAgent": {"type": "docker", "settings": {"image": "agent:1"}},
          "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always", "settings": {"image": "hub:1"}}},
        "modules": {"sensor": {"type": "docker", "status": "running", "restartPolicy": "always", "version": "1.0",
          "settings": {"image": "sensor:1"}}}}},
      "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {}, "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}}}"#;

    fn manifest() -> Manifest {
        ironedge_model::validate(MANIFEST.as_bytes())
            .into_result()
            .unwrap()
    }

    fn platform() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "x86_64".into(),
            version: "v1.20.2".into(),
        }
    }

    #[test]
    fn modules_report_desired_and_runtime_fields_without_passwords() {
        let manifest = manifest();
        let status = EdgeDeploymentStatus {
            modules: vec![ModuleStatus {
                name: "sensor".into(),
                runtime_status: RuntimeStatus::Backoff,
                description: Some("CrashLoopBackOff".into()),
                exit_code: Some(3),
                restart_count: 4,
                last_start_time: Some("2026-01-01T00:00:05Z".into()),
                last_exit_time: Some("2026-01-01T00:00:09Z".into()),
                unsupported: vec![],
            }],
            ..EdgeDeploymentStatus::default()
        };
        let last = LastDesired {
            version: 7,
            code: 200,
            description: String::new(),
        };
        let doc = edge_agent(Inputs {
            agent_version: "0.1.0",
            platform: &platform(),
            last_desired: Some(&last),
            manifest: Some(&manifest),
            status: Some(&status),
            agent_started: "2026-01-01T00:00:00Z",
        });
        assert_eq!(doc["lastDesiredVersion"], 7);
        assert_eq!(doc["lastDesiredStatus"]["code"], 200);
        let sensor = &doc["modules"]["sensor"];
        assert_eq!(sensor["runtimeStatus"], "backoff");
        assert_eq!(sensor["exitCode"], 3);
        assert_eq!(sensor["restartCount"], 4);
        assert_eq!(sensor["statusDescription"], "CrashLoopBackOff");
        assert_eq!(sensor["lastRestartTimeUtc"], "2026-01-01T00:00:05Z");
        assert_eq!(sensor["version"], "1.0");
        assert_eq!(sensor["settings"]["image"], "sensor:1");
        assert_eq!(doc["systemModules"]["edgeHub"]["runtimeStatus"], "unknown");
        assert_eq!(
            doc["systemModules"]["edgeAgent"]["runtimeStatus"],
            "running"
        );
        assert_eq!(
            doc["runtime"]["settings"]["registryCredentials"]["acr"]["username"],
            "u"
        );
        assert!(!doc.to_string().contains("hunter2"));
    }

    fn pod_status(name: &str, runtime: RuntimeStatus, restarts: i32) -> ModuleStatus {
        ModuleStatus {
            name: name.into(),
            runtime_status: runtime,
            description: Some(format!("{runtime:?}")),
            exit_code: (restarts > 0).then_some(137),
            restart_count: restarts,
            last_start_time: Some("2026-01-03T00:00:00Z".into()),
            last_exit_time: Some("2026-01-02T23:59:00Z".into()),
            unsupported: vec![],
        }
    }

    #[test]
    fn system_modules_report_the_chart_pods_runtime_status() {
        let manifest = manifest();
        let last = LastDesired {
            version: 2,
            code: 200,
            description: String::new(),
        };
        let report = |status: &EdgeDeploymentStatus| {
            edge_agent(Inputs {
                agent_version: "0.1.0",
                platform: &platform(),
                last_desired: Some(&last),
                manifest: Some(&manifest),
                status: Some(status),
                agent_started: "2026-01-01T00:00:00Z",
            })["systemModules"]
                .clone()
        };
        let status = EdgeDeploymentStatus {
            system_modules: Some(SystemModulesStatus {
                edge_agent: Some(pod_status("$edgeAgent", RuntimeStatus::Running, 2)),
                edge_hub: Some(pod_status("$edgeHub", RuntimeStatus::Backoff, 5)),
            }),
            ..EdgeDeploymentStatus::default()
        };
        let system = report(&status);
        let agent = &system["edgeAgent"];
        assert_eq!(agent["runtimeStatus"], "running");
        assert_eq!(agent["restartCount"], 2);
        assert_eq!(agent["lastStartTimeUtc"], "2026-01-03T00:00:00Z");
        assert_eq!(agent["lastRestartTimeUtc"], "2026-01-03T00:00:00Z");
        assert_eq!(agent["settings"]["image"], "agent:1");
        let hub = &system["edgeHub"];
        assert_eq!(hub["runtimeStatus"], "backoff");
        assert_eq!(hub["restartCount"], 5);
        assert_eq!(hub["exitCode"], 137);
        assert_eq!(hub["lastExitTimeUtc"], "2026-01-02T23:59:00Z");
        assert_eq!(hub["status"], "running");
        assert_eq!(hub["settings"]["image"], "hub:1");

        // No agent pod seen (run outside the cluster): the running process reports itself.
        let unseen = EdgeDeploymentStatus {
            system_modules: Some(SystemModulesStatus {
                edge_agent: Some(pod_status("$edgeAgent", RuntimeStatus::Unknown, 0)),
                edge_hub: None,
            }),
            ..EdgeDeploymentStatus::default()
        };
        let system = report(&unseen);
        assert_eq!(system["edgeAgent"]["runtimeStatus"], "running");
        assert_eq!(
            system["edgeAgent"]["lastStartTimeUtc"],
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(system["edgeHub"]["runtimeStatus"], "unknown");
    }

    #[test]
    fn diffs_carry_only_changes_and_null_out_removed_keys() {
        let old = json!({"a": 1, "m": {"x": {"s": "running"}, "y": {"s": "running"}}, "k": [1]});
        let new = json!({"a": 1, "m": {"x": {"s": "failed"}}, "k": [1, 2], "n": true});
        assert_eq!(
            diff(&old, &new),
            Some(json!({"m": {"x": {"s": "failed"}, "y": null}, "k": [1, 2], "n": true}))
        );
        assert_eq!(diff(&new, &new), None);
    }

    #[test]
    fn applying_the_diff_reproduces_the_new_document() {
        let old = json!({"a": {"b": 1, "c": 2}, "d": "x"});
        let new = json!({"a": {"b": 1, "e": 3}, "f": [1]});
        let patch = diff(&old, &new).unwrap();
        let mut merged = old.as_object().unwrap().clone();
        ironedge_protocol::merge(&mut merged, patch.as_object().unwrap());
        assert_eq!(Value::Object(merged), new);
    }
}
