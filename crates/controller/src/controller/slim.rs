//! What the reflector caches keep of each object: the fields reconcile, drift detection and status
//! read, and nothing else, since every cached object lives as long as the controller.
//!
//! Drift detection compares every field the controller applies with the cached object, so the
//! specs and our metadata stay whole; what goes is what the API server and other controllers add
//! and nothing here reads (managed fields, `kubectl apply`'s copy of the whole object, rollout
//! conditions, pod addresses and image ids).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodSpec, PodStatus};
use kube::Resource;

/// The copy of the whole object `kubectl apply` keeps; the controller never sets it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The pod conditions status reads.
const POD_CONDITIONS: [&str; 2] = ["Ready", "PodScheduled"];

/// Drops managed fields and `kubectl apply`'s copy of the object.
pub fn slim_meta<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

/// Deployments keep their spec and metadata (drift detection compares them) and the replica
/// counts status reads; rollout conditions go.
pub fn slim_deployment(deployment: &mut Deployment) {
    slim_meta(deployment);
    if let Some(status) = &mut deployment.status {
        status.conditions = None;
    }
}

/// Pods keep what status reads: labels, creation and deletion times, the node name, the phase
/// with its reason, the Ready and PodScheduled conditions, and each container's name, state,
/// last state and restart count.
pub fn slim_pod(pod: &mut Pod) {
    slim_meta(pod);
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
    pod.metadata.generate_name = None;
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        node_name: spec.node_name,
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        reason: status.reason,
        message: status.message,
        conditions: status.conditions.map(|conditions| {
            conditions
                .into_iter()
                .filter(|c| POD_CONDITIONS.contains(&c.type_.as_str()))
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    ..PodCondition::default()
                })
                .collect()
        }),
        container_statuses: status.container_statuses.map(|statuses| {
            statuses
                .into_iter()
                .map(|c| ContainerStatus {
                    name: c.name,
                    state: c.state,
                    last_state: c.last_state,
                    restart_count: c.restart_count,
                    ready: c.ready,
                    ..ContainerStatus::default()
                })
                .collect()
        }),
        ..PodStatus::default()
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateTerminated, ContainerStateWaiting, PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    use super::*;
    use crate::crd::DesiredStatus;
    use crate::fixtures::mk_running_pod;
    use crate::status::{ObservedModule, is_available, module_status, system_modules};

    fn time(text: &str) -> Option<Time> {
        Some(Time(text.parse().unwrap()))
    }

    /// A pod as the API server sends it: every field status does not read is filled too.
    fn full_pod(state: ContainerState, phase: &str) -> Pod {
        let mut pod = mk_running_pod("sensor", true, 2);
        pod.metadata.generate_name = Some("sensor-5d9c7-".into());
        pod.metadata.labels = Some(BTreeMap::from([
            ("app.kubernetes.io/component".into(), "edgehub".into()),
            ("pod-template-hash".into(), "5d9c7".into()),
        ]));
        pod.metadata.annotations = Some(BTreeMap::from([
            (LAST_APPLIED.into(), "{\"kind\":\"Pod\"}".into()),
            ("com.example/label".into(), "value".into()),
        ]));
        pod.metadata.owner_references = Some(vec![OwnerReference {
            name: "sensor-5d9c7".into(),
            ..OwnerReference::default()
        }]);
        pod.spec = Some(PodSpec {
            node_name: Some("node-1".into()),
            containers: vec![Container {
                name: "sensor".into(),
                image: Some("example/sensor:1".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        });
        let status = pod.status.as_mut().unwrap();
        status.phase = Some(phase.into());
        status.reason = Some("Evicted".into());
        status.message = Some("node out of memory".into());
        status.host_ip = Some("10.0.0.1".into());
        status.pod_ip = Some("10.1.0.7".into());
        status.qos_class = Some("BestEffort".into());
        status.start_time = time("2026-01-01T00:00:01Z");
        let conditions = status.conditions.as_mut().unwrap();
        for type_ in ["Initialized", "ContainersReady", "PodScheduled"] {
            conditions.push(PodCondition {
                type_: type_.into(),
                status: "True".into(),
                reason: Some("Done".into()),
                message: Some("all good".into()),
                last_transition_time: time("2026-01-01T00:00:02Z"),
                ..PodCondition::default()
            });
        }
        let container = &mut status.container_statuses.as_mut().unwrap()[0];
        container.image = "example/sensor:1".into();
        container.image_id = "docker-pullable://example/sensor@sha256:0123".into();
        container.container_id = Some("containerd://4567".into());
        container.state = Some(state);
        container.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 137,
                started_at: time("2026-01-01T00:00:03Z"),
                finished_at: time("2026-01-01T00:00:04Z"),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        });
        pod
    }

    fn states() -> Vec<ContainerState> {
        let running = mk_running_pod("sensor", true, 0)
            .status
            .unwrap()
            .container_statuses
            .unwrap()[0]
            .state
            .clone()
            .unwrap();
        let waiting = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".into()),
                message: Some("back-off 5m0s".into()),
            }),
            ..ContainerState::default()
        };
        let terminated = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                reason: Some("Error".into()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
        vec![running, waiting, terminated]
    }

    fn seen<'a>(pods: &'a [&'a Pod]) -> ObservedModule<'a> {
        ObservedModule {
            deployment: None,
            job: None,
            pods,
        }
    }

    fn assert_same_status(full: &Pod, slim: &Pod, case: &str) {
        let (full, slim) = ([full], [slim]);
        for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
            assert_eq!(
                module_status("sensor", "sensor", desired, &seen(&full), false),
                module_status("sensor", "sensor", desired, &seen(&slim), false),
                "{case} {desired:?}"
            );
            assert_eq!(
                is_available(desired, &seen(&full)),
                is_available(desired, &seen(&slim)),
                "{case} {desired:?}"
            );
        }
        assert_eq!(system_modules(&full), system_modules(&slim), "{case}");
    }

    #[test]
    fn a_slimmed_pod_gives_the_same_module_and_system_status() {
        for state in states() {
            for phase in ["Running", "Pending", "Failed", "Succeeded"] {
                let full = full_pod(state.clone(), phase);
                let mut slim = full.clone();
                slim_pod(&mut slim);
                assert_same_status(&full, &slim, &format!("{phase} {state:?}"));
            }
        }
    }

    #[test]
    fn a_slimmed_pod_drops_what_status_never_reads() {
        let mut pod = full_pod(states().remove(0), "Running");
        slim_pod(&mut pod);
        let status = pod.status.unwrap();
        assert_eq!(pod.metadata.annotations, None);
        assert_eq!(pod.metadata.owner_references, None);
        assert_eq!((status.host_ip, status.pod_ip), (None, None));
        let conditions: Vec<_> = status
            .conditions
            .unwrap()
            .into_iter()
            .map(|c| c.type_)
            .collect();
        assert_eq!(conditions, ["Ready", "PodScheduled"]);
        assert_eq!(status.container_statuses.unwrap()[0].image_id, "");
    }

    #[test]
    fn an_unscheduled_pod_keeps_its_scheduling_message() {
        let mut pod = mk_running_pod("sensor", false, 0);
        let status = pod.status.as_mut().unwrap();
        status.phase = Some("Pending".into());
        status.container_statuses = None;
        status.conditions = Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("0/1 nodes are available".into()),
            last_transition_time: time("2026-01-01T00:00:02Z"),
            ..PodCondition::default()
        }]);
        let full = pod.clone();
        slim_pod(&mut pod);
        let want = module_status(
            "sensor",
            "sensor",
            DesiredStatus::Running,
            &seen(&[&full]),
            false,
        );
        assert!(want.description.as_deref().unwrap().contains("0/1 nodes"));
        assert_same_status(&full, &pod, "unscheduled");
    }

    #[test]
    fn a_slimmed_deployment_keeps_spec_our_annotations_and_replica_counts() {
        let mut deployment = Deployment {
            metadata: ObjectMeta {
                name: Some("sensor".into()),
                annotations: Some(BTreeMap::from([
                    (LAST_APPLIED.into(), "{\"kind\":\"Deployment\"}".into()),
                    ("ironedge.io/applied-hash".into(), "0123abcd".into()),
                ])),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                template: PodTemplateSpec::default(),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(3),
                replicas: Some(1),
                updated_replicas: Some(1),
                available_replicas: Some(1),
                conditions: Some(vec![DeploymentCondition {
                    type_: "Progressing".into(),
                    status: "True".into(),
                    message: Some(
                        "ReplicaSet \"sensor-5d9c7\" has successfully progressed.".into(),
                    ),
                    ..DeploymentCondition::default()
                }]),
                ..DeploymentStatus::default()
            }),
        };
        let full = deployment.clone();
        slim_deployment(&mut deployment);
        assert_eq!(deployment.spec, full.spec);
        assert_eq!(
            deployment.metadata.annotations,
            Some(BTreeMap::from([(
                "ironedge.io/applied-hash".into(),
                "0123abcd".into()
            )]))
        );
        let (slim, full) = (deployment.status.unwrap(), full.status.unwrap());
        assert_eq!(slim.conditions, None);
        assert_eq!(
            (
                slim.observed_generation,
                slim.replicas,
                slim.updated_replicas,
                slim.available_replicas
            ),
            (
                full.observed_generation,
                full.replicas,
                full.updated_replicas,
                full.available_replicas
            )
        );
    }
}
