//! Test builders: `EdgeDeployment::test().with_module(…)` and `mk_*` constructors.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStatus, Pod, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::json;

use crate::crd::{DesiredStatus, EdgeDeployment, EdgeDeploymentSpec, ModuleSpec, RestartPolicy};

impl EdgeDeployment {
    /// A device `dev1` in namespace `dev1`, uid set, no modules.
    pub(crate) fn test() -> Self {
        let spec: EdgeDeploymentSpec = serde_json::from_value(json!({
            "deviceId": "dev1",
            "hubHostName": "hub.example.net",
        }))
        .unwrap();
        let mut ed = EdgeDeployment::new("dev1", spec);
        ed.metadata.namespace = Some("dev1".into());
        ed.metadata.uid = Some("0a1b2c3d-0000-4000-8000-000000000001".into());
        ed.metadata.generation = Some(1);
        ed
    }

    /// Adds a running module with `restartPolicy: always`.
    pub(crate) fn with_module(mut self, name: &str) -> Self {
        self.spec.modules.push(mk_module(name));
        self
    }

    /// Adds a module as given.
    pub(crate) fn with(mut self, module: ModuleSpec) -> Self {
        self.spec.modules.push(module);
        self
    }

    /// Marks the last module stopped.
    pub(crate) fn stopped(mut self) -> Self {
        if let Some(m) = self.spec.modules.last_mut() {
            m.status = DesiredStatus::Stopped;
        }
        self
    }
}

/// A running `always` module with image `<name>:1.0`.
pub(crate) fn mk_module(name: &str) -> ModuleSpec {
    ModuleSpec {
        name: name.into(),
        image: format!(
            "example.azurecr.io/{}:1.0",
            name.to_lowercase().trim_start_matches('$')
        ),
        version: Some("1.0".into()),
        status: DesiredStatus::Running,
        restart_policy: RestartPolicy::Always,
        image_pull_policy: Default::default(),
        startup_order: crate::crd::DEFAULT_STARTUP_ORDER,
        env: Default::default(),
        create_options: None,
        generation_id: None,
    }
}

/// A pod of module `name` whose container runs, Ready as `ready` says.
pub(crate) fn mk_running_pod(name: &str, ready: bool, restarts: i32) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{name}-abc")),
            creation_timestamp: Some(Time("2026-01-01T00:00:00Z".parse().unwrap())),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            container_statuses: Some(vec![ContainerStatus {
                name: name.into(),
                restart_count: restarts,
                ready,
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time("2026-01-01T00:00:05Z".parse().unwrap())),
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    }
}
