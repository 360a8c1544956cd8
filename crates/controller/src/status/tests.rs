use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::fixtures::mk_running_pod;
use crate::translate::translate;

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-01T00:01:00Z";

fn available_deployment() -> Deployment {
    Deployment {
        status: Some(DeploymentStatus {
            available_replicas: Some(1),
            replicas: Some(1),
            updated_replicas: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn cond<'a>(status: &'a EdgeDeploymentStatus, type_: &str) -> &'a Condition {
    status.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

fn compute_one(
    ed: &EdgeDeployment,
    pods: &[&Pod],
    deployment: Option<&Deployment>,
    now: &str,
) -> EdgeDeploymentStatus {
    let desired = translate(ed).unwrap();
    let observed = BTreeMap::from([(
        desired.modules[0].name.clone(),
        ObservedModule {
            deployment,
            job: None,
            pods,
        },
    )]);
    compute(ed, Some(&desired), &observed, &Outcome::default(), now)
}

#[test]
fn ready_running_pod_makes_the_deployment_ready() {
    let ed = EdgeDeployment::test().with_module("sensor");
    let pod = mk_running_pod("sensor", true, 2);
    let d = available_deployment();
    let status = compute_one(&ed, &[&pod], Some(&d), T0);
    assert_eq!(status.modules[0].runtime_status, RuntimeStatus::Running);
    assert_eq!(status.modules[0].restart_count, 2);
    assert_eq!(
        status.modules[0].last_start_time.as_deref(),
        Some("2026-01-01T00:00:05Z")
    );
    assert_eq!(cond(&status, READY).status, "True");
    assert_eq!(cond(&status, PROGRESSING).status, "False");
    assert_eq!(cond(&status, DEGRADED).status, "False");
    assert_eq!(status.modules_ready.as_deref(), Some("1/1"));
    assert_eq!(status.observed_generation, Some(1));
}

#[test]
fn unchanged_observations_give_an_identical_status_later() {
    let mut ed = EdgeDeployment::test().with_module("sensor");
    let pod = mk_running_pod("sensor", true, 0);
    let d = available_deployment();
    let first = compute_one(&ed, &[&pod], Some(&d), T0);
    ed.status = Some(first.clone());
    let second = compute_one(&ed, &[&pod], Some(&d), T1);
    assert_eq!(
        first, second,
        "transition times must not move without a transition"
    );
    let unready = mk_running_pod("sensor", false, 0);
    let third = compute_one(&ed, &[&unready], Some(&d), T1);
    assert_eq!(cond(&third, READY).status, "False");
    assert_eq!(cond(&third, READY).last_transition_time, T1);
}

#[test]
fn stopped_module_without_pod_is_stopped_and_ready() {
    let ed = EdgeDeployment::test().with_module("sensor").stopped();
    let d = Deployment::default();
    let status = compute_one(&ed, &[], Some(&d), T0);
    assert_eq!(status.modules[0].runtime_status, RuntimeStatus::Stopped);
    assert_eq!(cond(&status, READY).status, "True");
}

#[test]
fn crash_looping_container_is_backoff_with_exit_code_and_degrades() {
    let ed = EdgeDeployment::test().with_module("sensor");
    let mut pod = mk_running_pod("sensor", false, 3);
    let container = &mut pod
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0];
    container.state = Some(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some("CrashLoopBackOff".into()),
            message: None,
        }),
        ..Default::default()
    });
    container.last_state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 137,
            finished_at: Some(Time("2026-01-01T00:00:30Z".parse().unwrap())),
            ..Default::default()
        }),
        ..Default::default()
    });
    let status = compute_one(&ed, &[&pod], None, T0);
    let module = &status.modules[0];
    assert_eq!(module.runtime_status, RuntimeStatus::Backoff);
    assert_eq!(module.exit_code, Some(137));
    assert_eq!(
        module.last_exit_time.as_deref(),
        Some("2026-01-01T00:00:30Z")
    );
    assert_eq!(module.description.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(cond(&status, DEGRADED).status, "True");
    assert_eq!(cond(&status, DEGRADED).reason, REASON_MODULES_FAILING);
}

#[test]
fn terminated_containers_are_stopped_or_failed_by_exit_code() {
    let ed = EdgeDeployment::test().with_module("sensor");
    for (code, expected) in [(0, RuntimeStatus::Stopped), (2, RuntimeStatus::Failed)] {
        let mut pod = mk_running_pod("sensor", false, 0);
        pod.status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            compute_one(&ed, &[&pod], None, T0).modules[0].runtime_status,
            expected
        );
    }
}

#[test]
fn unscheduled_pod_is_unknown_not_failed() {
    let ed = EdgeDeployment::test().with_module("sensor");
    let mut pod = mk_running_pod("sensor", false, 0);
    let status = pod.status.as_mut().unwrap();
    status.phase = Some("Pending".into());
    status.container_statuses = None;
    status.conditions = Some(vec![PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        message: Some("0/0 nodes are available".into()),
        ..Default::default()
    }]);
    let computed = compute_one(&ed, &[&pod], None, T0);
    assert_eq!(computed.modules[0].runtime_status, RuntimeStatus::Unknown);
    assert!(
        computed.modules[0]
            .description
            .as_deref()
            .unwrap()
            .contains("not scheduled")
    );
    assert_eq!(cond(&computed, DEGRADED).status, "False");
}

#[test]
fn invalid_spec_degrades_and_keeps_the_last_module_statuses() {
    let mut ed = EdgeDeployment::test().with_module("sensor");
    let pod = mk_running_pod("sensor", true, 0);
    let d = available_deployment();
    ed.status = Some(compute_one(&ed, &[&pod], Some(&d), T0));
    let outcome = Outcome {
        error: Some(("InvalidCreateOptions".into(), "bad".into())),
        ..Outcome::default()
    };
    let status = compute(&ed, None, &BTreeMap::new(), &outcome, T1);
    assert_eq!(cond(&status, DEGRADED).status, "True");
    assert_eq!(cond(&status, DEGRADED).reason, "InvalidCreateOptions");
    assert_eq!(cond(&status, READY).status, "False");
    assert_eq!(status.modules, ed.status.unwrap().modules);
}

#[test]
fn gated_modules_report_waiting_for_startup_order() {
    let ed = EdgeDeployment::test().with_module("sensor");
    let desired = translate(&ed).unwrap();
    let outcome = Outcome {
        waiting: ["sensor".to_string()].into(),
        ..Outcome::default()
    };
    let status = compute(&ed, Some(&desired), &BTreeMap::new(), &outcome, T0);
    assert_eq!(cond(&status, PROGRESSING).reason, REASON_STARTUP_ORDER);
    assert_eq!(status.modules[0].runtime_status, RuntimeStatus::Unknown);
    assert_eq!(status.modules_ready.as_deref(), Some("0/1"));
}

#[test]
fn newest_live_pod_speaks_for_the_module() {
    let mut old = mk_running_pod("sensor", true, 0);
    old.metadata.name = Some("old".into());
    let mut new = mk_running_pod("sensor", false, 0);
    new.metadata.name = Some("new".into());
    new.metadata.creation_timestamp = Some(Time("2026-01-02T00:00:00Z".parse().unwrap()));
    assert_eq!(
        current_pod(&[&old, &new]).unwrap().metadata.name.as_deref(),
        Some("new")
    );
    new.metadata.deletion_timestamp = Some(Time("2026-01-03T00:00:00Z".parse().unwrap()));
    assert_eq!(
        current_pod(&[&old, &new]).unwrap().metadata.name.as_deref(),
        Some("old")
    );
}

fn system_pod(component: &str, container: &str, restarts: i32) -> Pod {
    let mut pod = mk_running_pod(container, true, restarts);
    pod.metadata.labels = Some(BTreeMap::from([(
        labels::COMPONENT.to_string(),
        component.to_string(),
    )]));
    pod
}

#[test]
fn system_modules_are_read_from_the_device_charts_pods() {
    let agent = system_pod("agent", "agent", 0);
    let mut hub = system_pod("edgehub", "edgehub", 3);
    // A failing sidecar listed first must not speak for the edge hub.
    if let Some(statuses) = hub
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut())
    {
        let mut sidecar = statuses[0].clone();
        sidecar.name = "sidecar".into();
        sidecar.state = Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        statuses.insert(0, sidecar);
    }
    let other = system_pod("network-policy", "x", 0);
    let status = system_modules(&[&agent, &hub, &other]);
    let agent = status.edge_agent.unwrap();
    assert_eq!(
        (agent.name.as_str(), agent.runtime_status),
        ("$edgeAgent", RuntimeStatus::Running)
    );
    let hub = status.edge_hub.unwrap();
    assert_eq!(
        (hub.name.as_str(), hub.runtime_status, hub.restart_count),
        ("$edgeHub", RuntimeStatus::Running, 3)
    );
}

#[test]
fn a_missing_system_pod_is_unknown_and_says_who_runs_it() {
    let agent = system_pod("agent", "agent", 0);
    let status = system_modules(&[&agent]);
    let hub = status.edge_hub.unwrap();
    assert_eq!(hub.runtime_status, RuntimeStatus::Unknown);
    assert!(
        hub.description.unwrap().contains("ironedge-device chart"),
        "the description names the remedy"
    );
}

#[test]
fn compute_keeps_the_system_modules_it_does_not_read() {
    let mut ed = EdgeDeployment::test().with_module("sensor");
    let agent = system_pod("agent", "agent", 0);
    let system = system_modules(&[&agent]);
    ed.status = Some(EdgeDeploymentStatus {
        system_modules: Some(system.clone()),
        ..Default::default()
    });
    let status = compute_one(&ed, &[], None, T0);
    assert_eq!(status.system_modules, Some(system));
}
