//! Pod status from what the node observes: phase (kubelet's `getPhase`), container states with
//! exit codes and restart counts, and the four conditions. Pure; the pod worker writes the result.

use std::net::Ipv4Addr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::backoff::RestartPolicy;

/// Condition types and reasons, named once.
pub mod conditions {
    /// The pod is bound to a node.
    pub const POD_SCHEDULED: &str = "PodScheduled";
    /// All init containers succeeded.
    pub const INITIALIZED: &str = "Initialized";
    /// All containers are ready.
    pub const CONTAINERS_READY: &str = "ContainersReady";
    /// The pod can serve (no readiness gates here).
    pub const READY: &str = "Ready";
}

/// Reasons kubelet uses, named once.
pub mod reasons {
    /// Waiting for the first start.
    pub const CONTAINER_CREATING: &str = "ContainerCreating";
    /// Waiting for init containers.
    pub const POD_INITIALIZING: &str = "PodInitializing";
    /// Waiting out a restart back-off.
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    /// The container's config cannot be built (missing Secret, unmapped command…).
    pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
    /// The image has no local mapping.
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    /// The process could not be started.
    pub const RUN_CONTAINER_ERROR: &str = "RunContainerError";
    /// Exited with 0.
    pub const COMPLETED: &str = "Completed";
    /// Exited with non-zero.
    pub const ERROR: &str = "Error";
    /// Some containers are not ready.
    pub const CONTAINERS_NOT_READY: &str = "ContainersNotReady";
    /// Some init containers have not succeeded.
    pub const CONTAINERS_NOT_INITIALIZED: &str = "ContainersNotInitialized";
    /// The pod has terminated.
    pub const POD_COMPLETED: &str = "PodCompleted";
}

/// How one run of a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// Exit code; 128 + signal number when killed by a signal.
    pub exit_code: i32,
    /// The signal, when killed by one.
    pub signal: Option<i32>,
    /// `Completed`, `Error` or a node-specific reason.
    pub reason: String,
    /// Details.
    pub message: Option<String>,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// `ironedge://<pid>` of that run.
    pub container_id: Option<String>,
}

impl Termination {
    /// A termination with the reason kubelet gives for `exit_code`.
    pub fn exited(
        exit_code: i32,
        signal: Option<i32>,
        started_at: Timestamp,
        now: Timestamp,
    ) -> Self {
        let reason = if exit_code == 0 {
            reasons::COMPLETED
        } else {
            reasons::ERROR
        };
        Self {
            exit_code,
            signal,
            reason: reason.to_string(),
            message: None,
            started_at,
            finished_at: now,
            container_id: None,
        }
    }
}

/// The state of one container as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Not running; `reason` says why (`ContainerCreating`, `CrashLoopBackOff`, …).
    Waiting {
        /// Reason.
        reason: String,
        /// Details.
        message: Option<String>,
    },
    /// Running since `started_at`.
    Running {
        /// Start time.
        started_at: Timestamp,
        /// `ironedge://<pid>`.
        container_id: String,
    },
    /// Exited and will not be restarted.
    Terminated(Termination),
}

/// One container's status inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// Container name.
    pub name: String,
    /// Image as in the spec.
    pub image: String,
    /// The local program the image mapped to, if resolved.
    pub program: Option<String>,
    /// Current state.
    pub state: RunState,
    /// The previous run's end.
    pub last: Option<Termination>,
    /// Restarts so far.
    pub restart_count: i32,
}

impl ContainerView {
    /// A container that has not started yet.
    pub fn waiting(name: &str, image: &str, reason: &str) -> Self {
        Self {
            name: name.to_string(),
            image: image.to_string(),
            program: None,
            state: RunState::Waiting {
                reason: reason.to_string(),
                message: None,
            },
            last: None,
            restart_count: 0,
        }
    }

    fn is_running(&self) -> bool {
        matches!(self.state, RunState::Running { .. })
    }

    fn succeeded(&self) -> bool {
        matches!(&self.state, RunState::Terminated(t) if t.exit_code == 0)
    }
}

/// A pod's status inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// The pod's address.
    pub pod_ip: Option<Ipv4Addr>,
    /// The node's address.
    pub host_ip: Ipv4Addr,
    /// When the node accepted the pod.
    pub start_time: Timestamp,
    /// The pod's restart policy.
    pub restart_policy: RestartPolicy,
    /// Init containers in spec order.
    pub init_containers: Vec<ContainerView>,
    /// App containers in spec order.
    pub containers: Vec<ContainerView>,
}

/// The pod phase, as kubelet's `getPhase` computes it.
pub fn phase(view: &PodView) -> &'static str {
    let init_failed = view
        .init_containers
        .iter()
        .any(|c| matches!(&c.state, RunState::Terminated(t) if t.exit_code != 0));
    if init_failed {
        return "Failed";
    }
    if !view.init_containers.iter().all(ContainerView::succeeded) {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &view.containers {
        match &c.state {
            RunState::Running { .. } => running += 1,
            RunState::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            RunState::Waiting { .. } if c.last.is_some() => stopped += 1,
            RunState::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == 0 {
        return "Pending";
    }
    match view.restart_policy {
        RestartPolicy::Always => "Running",
        RestartPolicy::OnFailure if stopped == succeeded => "Succeeded",
        RestartPolicy::OnFailure => "Running",
        RestartPolicy::Never if stopped == succeeded => "Succeeded",
        RestartPolicy::Never => "Failed",
    }
}

/// Whether the pod reached a phase it never leaves.
pub fn is_terminal(phase: &str) -> bool {
    phase == "Succeeded" || phase == "Failed"
}

/// The full status to write; condition transition times are kept from `previous` while a
/// condition's status does not change.
pub fn pod_status(view: &PodView, previous: Option<&PodStatus>, now: Timestamp) -> PodStatus {
    let phase = phase(view);
    let initialized = view.init_containers.iter().all(ContainerView::succeeded);
    let not_ready: Vec<&str> = view
        .containers
        .iter()
        .filter(|c| !c.is_running())
        .map(|c| c.name.as_str())
        .collect();
    let incomplete: Vec<&str> = view
        .init_containers
        .iter()
        .filter(|c| !c.succeeded())
        .map(|c| c.name.as_str())
        .collect();
    let ready_reason = if is_terminal(phase) {
        Some(reasons::POD_COMPLETED)
    } else if not_ready.is_empty() {
        None
    } else {
        Some(reasons::CONTAINERS_NOT_READY)
    };
    let ready = ready_reason.is_none();
    let not_ready_message = (!ready && !is_terminal(phase))
        .then(|| format!("containers with unready status: [{}]", not_ready.join(" ")));
    let conds = vec![
        condition(
            conditions::INITIALIZED,
            initialized,
            (!initialized).then_some(reasons::CONTAINERS_NOT_INITIALIZED),
            (!initialized).then(|| {
                format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )
            }),
        ),
        condition(
            conditions::READY,
            ready,
            ready_reason,
            not_ready_message.clone(),
        ),
        condition(
            conditions::CONTAINERS_READY,
            ready,
            ready_reason,
            not_ready_message,
        ),
        condition(conditions::POD_SCHEDULED, true, None, None),
    ];
    let conds = conds
        .into_iter()
        .map(|c| keep_transition_time(c, previous, now))
        .collect();
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conds),
        host_ip: Some(view.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: view.host_ip.to_string(),
        }]),
        pod_ip: view.pod_ip.map(|i| i.to_string()),
        pod_ips: view.pod_ip.map(|i| vec![PodIP { ip: i.to_string() }]),
        start_time: Some(Time(view.start_time)),
        qos_class: previous.and_then(|p| p.qos_class.clone()),
        init_container_statuses: (!view.init_containers.is_empty())
            .then(|| view.init_containers.iter().map(container_status).collect()),
        container_statuses: Some(view.containers.iter().map(container_status).collect()),
        ..PodStatus::default()
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.map(str::to_string),
        message,
        ..PodCondition::default()
    }
}

fn keep_transition_time(
    mut c: PodCondition,
    previous: Option<&PodStatus>,
    now: Timestamp,
) -> PodCondition {
    let before = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|p| p.type_ == c.type_));
    c.last_transition_time = match before {
        Some(b) if b.status == c.status => b.last_transition_time.clone().or(Some(Time(now))),
        _ => Some(Time(now)),
    };
    c
}

fn terminated(t: &Termination) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: Some(Time(t.started_at)),
        finished_at: Some(Time(t.finished_at)),
        container_id: t.container_id.clone(),
    }
}

fn container_status(c: &ContainerView) -> ContainerStatus {
    let (state, container_id) = match &c.state {
        RunState::Waiting { reason, message } => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..ContainerState::default()
            },
            c.last.as_ref().and_then(|l| l.container_id.clone()),
        ),
        RunState::Running {
            started_at,
            container_id,
        } => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..ContainerState::default()
            },
            Some(container_id.clone()),
        ),
        RunState::Terminated(t) => (
            ContainerState {
                terminated: Some(terminated(t)),
                ..ContainerState::default()
            },
            t.container_id.clone(),
        ),
    };
    let running = c.is_running();
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c
            .program
            .as_ref()
            .map(|p| format!("local://{p}"))
            .unwrap_or_default(),
        container_id,
        ready: running,
        started: Some(running),
        restart_count: c.restart_count,
        state: Some(state),
        last_state: Some(match &c.last {
            Some(t) => ContainerState {
                terminated: Some(terminated(t)),
                ..ContainerState::default()
            },
            None => ContainerState::default(),
        }),
        ..ContainerStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn running(name: &str) -> ContainerView {
        ContainerView {
            state: RunState::Running {
                started_at: t0(),
                container_id: "ironedge://1".into(),
            },
            ..ContainerView::waiting(name, "busybox", reasons::CONTAINER_CREATING)
        }
    }

    fn exited(name: &str, code: i32) -> ContainerView {
        ContainerView {
            state: RunState::Terminated(Termination::exited(code, None, t0(), t0())),
            ..ContainerView::waiting(name, "busybox", "")
        }
    }

    fn view(policy: RestartPolicy, containers: Vec<ContainerView>) -> PodView {
        PodView {
            pod_ip: Some(Ipv4Addr::new(10, 88, 0, 2)),
            host_ip: Ipv4Addr::LOCALHOST,
            start_time: t0(),
            restart_policy: policy,
            init_containers: Vec::new(),
            containers,
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn running_containers_make_a_ready_running_pod() {
        let s = pod_status(
            &view(RestartPolicy::Always, vec![running("a"), running("b")]),
            None,
            t0(),
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "PodScheduled").status, "True");
        assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.2"));
        assert!(s.container_statuses.unwrap().iter().all(|c| c.ready));
    }

    #[test]
    fn a_crash_looping_container_keeps_the_pod_running_but_unready() {
        let mut c = ContainerView::waiting("a", "busybox", reasons::CRASH_LOOP_BACK_OFF);
        c.last = Some(Termination::exited(3, None, t0(), t0()));
        c.restart_count = 2;
        let s = pod_status(&view(RestartPolicy::Always, vec![c]), None, t0());
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let ready = cond(&s, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("ContainersNotReady"))
        );
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [a]")
        );
        let cs = &s.container_statuses.unwrap()[0];
        assert_eq!(cs.restart_count, 2);
        assert_eq!(
            cs.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            3
        );
    }

    #[test]
    fn phases_follow_restart_policy_and_exit_codes() {
        let p = |policy, cs| phase(&view(policy, cs));
        assert_eq!(p(RestartPolicy::Never, vec![exited("a", 0)]), "Succeeded");
        assert_eq!(
            p(RestartPolicy::Never, vec![exited("a", 0), exited("b", 1)]),
            "Failed"
        );
        assert_eq!(
            p(RestartPolicy::Never, vec![exited("a", 1), running("b")]),
            "Running"
        );
        assert_eq!(
            p(RestartPolicy::OnFailure, vec![exited("a", 0)]),
            "Succeeded"
        );
        assert_eq!(
            p(
                RestartPolicy::Always,
                vec![ContainerView::waiting("a", "i", "ContainerCreating")]
            ),
            "Pending"
        );
    }

    #[test]
    fn failed_init_containers_fail_the_pod_and_pending_ones_hold_it() {
        let mut v = view(
            RestartPolicy::Never,
            vec![ContainerView::waiting("a", "i", "PodInitializing")],
        );
        v.init_containers = vec![running("init")];
        let s = pod_status(&v, None, t0());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(cond(&s, "Initialized").status, "False");
        v.init_containers = vec![exited("init", 2)];
        assert_eq!(phase(&v), "Failed");
        v.init_containers = vec![exited("init", 0)];
        v.containers = vec![running("a")];
        assert_eq!(phase(&v), "Running");
    }

    #[test]
    fn completed_pods_report_pod_completed_and_terminated_states() {
        let s = pod_status(
            &view(RestartPolicy::Never, vec![exited("a", 0)]),
            None,
            t0(),
        );
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        let t = s.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    }

    #[test]
    fn transition_times_change_only_when_a_condition_changes() {
        let later = Timestamp::from_second(1_700_000_100).unwrap();
        let first = pod_status(&view(RestartPolicy::Always, vec![running("a")]), None, t0());
        let same = pod_status(
            &view(RestartPolicy::Always, vec![running("a")]),
            Some(&first),
            later,
        );
        assert_eq!(cond(&same, "Ready").last_transition_time, Some(Time(t0())));
        let crashed = ContainerView {
            last: Some(Termination::exited(1, None, t0(), later)),
            ..ContainerView::waiting("a", "busybox", reasons::CRASH_LOOP_BACK_OFF)
        };
        let changed = pod_status(
            &view(RestartPolicy::Always, vec![crashed]),
            Some(&first),
            later,
        );
        assert_eq!(
            cond(&changed, "Ready").last_transition_time,
            Some(Time(later))
        );
        assert_eq!(
            cond(&changed, "PodScheduled").last_transition_time,
            Some(Time(t0()))
        );
    }
}
