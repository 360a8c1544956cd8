//! Pure computation of the EdgeDeployment status from what the controller observed.
//!
//! Module runtime status follows IoT Edge's terms (`reference/azure-iotedge-k8s.md` §7.2, with its
//! gaps fixed: restart counts are reported, a stopped module reports `stopped` instead of vanishing,
//! and an unscheduled pod is `unknown`, not `failed`):
//!
//! | observed | runtimeStatus |
//! |---|---|
//! | container running | `running` |
//! | container waiting (image pull, crash loop, creating) | `backoff` |
//! | container terminated with 0 / non-zero, pod Succeeded / Failed | `stopped` / `failed` |
//! | Job gave up (backoff limit) | `failed` |
//! | desired `stopped` and no pod | `stopped` |
//! | no pod yet, pod not scheduled, startupOrder gate closed | `unknown` |
//!
//! Conditions: `Ready` (every module is as desired: running and ready, or stopped), `Progressing`
//! (objects still being created or rolled out), `Degraded` (invalid spec, failed API writes, or
//! modules failing). A condition's `lastTransitionTime` changes only when its status changes, so an
//! unchanged world computes an identical status and the controller writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::crd::{
    Condition, DesiredStatus, EdgeDeployment, EdgeDeploymentStatus, ModuleStatus, RuntimeStatus,
    SystemModulesStatus,
};
use crate::labels;
use crate::translate::{Desired, EDGE_AGENT, EDGE_HUB};

/// Condition type: every module is as desired.
pub const READY: &str = "Ready";
/// Condition type: objects are being created or rolled out.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: the spec is invalid, writes fail, or modules fail.
pub const DEGRADED: &str = "Degraded";

/// Reason: every module is as desired.
pub const REASON_ALL_READY: &str = "AllModulesReady";
/// Reason: some modules are not ready.
pub const REASON_NOT_READY: &str = "ModulesNotReady";
/// Reason: nothing left to do.
pub const REASON_COMPLETE: &str = "Complete";
/// Reason: a workload is rolling out.
pub const REASON_ROLLOUT: &str = "RollingOut";
/// Reason: later startupOrder groups wait for earlier ones.
pub const REASON_STARTUP_ORDER: &str = "WaitingForStartupOrder";
/// Reason: nothing is wrong.
pub const REASON_AS_EXPECTED: &str = "AsExpected";
/// Reason: modules failed or are backing off.
pub const REASON_MODULES_FAILING: &str = "ModulesFailing";
/// Reason: writing objects failed.
pub const REASON_APPLY_FAILED: &str = "ApplyFailed";

/// What the cluster holds for one module (object name).
#[derive(Debug, Default, Clone, Copy)]
pub struct ObservedModule<'a> {
    /// Its Deployment, if it exists.
    pub deployment: Option<&'a Deployment>,
    /// Its Job, if it exists.
    pub job: Option<&'a Job>,
    /// Its pods.
    pub pods: &'a [&'a Pod],
}

/// How the last reconcile went, beyond what the objects show.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// The spec or the API server refused: `(reason, message)`.
    pub error: Option<(String, String)>,
    /// Modules not created yet because an earlier startupOrder group is not available.
    pub waiting: BTreeSet<String>,
}

/// The full status; `now` (RFC 3339) is used only for conditions whose status changed.
pub fn compute(
    ed: &EdgeDeployment,
    desired: Option<&Desired>,
    observed: &BTreeMap<String, ObservedModule<'_>>,
    outcome: &Outcome,
    now: &str,
) -> EdgeDeploymentStatus {
    let previous = ed.status.clone().unwrap_or_default();
    let generation = ed.metadata.generation;
    let Some(desired) = desired else {
        // Invalid spec: module statuses stay as last known, only the conditions change.
        let (reason, message) = outcome.error.clone().unwrap_or_default();
        let conditions = vec![
            condition(&previous, READY, false, &reason, &message, generation, now),
            condition(
                &previous,
                PROGRESSING,
                false,
                &reason,
                &message,
                generation,
                now,
            ),
            condition(
                &previous, DEGRADED, true, &reason, &message, generation, now,
            ),
        ];
        return EdgeDeploymentStatus {
            observed_generation: generation,
            conditions,
            ..previous
        };
    };

    let mut modules = Vec::with_capacity(desired.modules.len());
    let mut not_ready = Vec::new();
    let mut failing = Vec::new();
    let mut rolling = Vec::new();
    for module in &desired.modules {
        let seen = observed.get(&module.name).copied().unwrap_or_default();
        let waiting = outcome.waiting.contains(&module.name);
        let mut status = module_status(&module.id, &module.name, module.status, &seen, waiting);
        status.unsupported.clone_from(&module.unsupported);
        if !is_ready(module.status, &status, &seen) {
            not_ready.push(format!(
                "{} ({})",
                module.id,
                status.runtime_status.as_str()
            ));
        }
        if matches!(
            status.runtime_status,
            RuntimeStatus::Failed | RuntimeStatus::Backoff
        ) {
            failing.push(format!(
                "{} ({})",
                module.id,
                status.runtime_status.as_str()
            ));
        }
        if is_rolling_out(&seen) {
            rolling.push(module.id.clone());
        }
        modules.push(status);
    }
    let ready_count = desired.modules.len() - not_ready.len();

    let ready = if not_ready.is_empty() {
        condition(
            &previous,
            READY,
            true,
            REASON_ALL_READY,
            "all modules are as desired",
            generation,
            now,
        )
    } else {
        let message = format!("not ready: {}", not_ready.join(", "));
        condition(
            &previous,
            READY,
            false,
            REASON_NOT_READY,
            &message,
            generation,
            now,
        )
    };
    let progressing = if !outcome.waiting.is_empty() {
        let waiting: Vec<&str> = outcome.waiting.iter().map(String::as_str).collect();
        let message = format!(
            "waiting for earlier startupOrder groups before creating {}",
            waiting.join(", ")
        );
        condition(
            &previous,
            PROGRESSING,
            true,
            REASON_STARTUP_ORDER,
            &message,
            generation,
            now,
        )
    } else if !rolling.is_empty() {
        let message = format!("rolling out {}", rolling.join(", "));
        condition(
            &previous,
            PROGRESSING,
            true,
            REASON_ROLLOUT,
            &message,
            generation,
            now,
        )
    } else {
        condition(
            &previous,
            PROGRESSING,
            false,
            REASON_COMPLETE,
            "every object is up to date",
            generation,
            now,
        )
    };
    let degraded = match (&outcome.error, failing.is_empty()) {
        (Some((reason, message)), _) => {
            condition(&previous, DEGRADED, true, reason, message, generation, now)
        }
        (None, false) => {
            let message = format!("failing: {}", failing.join(", "));
            condition(
                &previous,
                DEGRADED,
                true,
                REASON_MODULES_FAILING,
                &message,
                generation,
                now,
            )
        }
        (None, true) => condition(
            &previous,
            DEGRADED,
            false,
            REASON_AS_EXPECTED,
            "",
            generation,
            now,
        ),
    };
    EdgeDeploymentStatus {
        observed_generation: generation,
        conditions: vec![ready, progressing, degraded],
        modules,
        modules_ready: Some(format!("{ready_count}/{}", desired.modules.len())),
        // Read from the device chart's pods by the caller ([`system_modules`]), not from the spec.
        system_modules: previous.system_modules,
    }
}

/// `$edgeAgent` and `$edgeHub` from the device chart's pods in the namespace (any
/// [`labels::COMPONENT`] other than the two is ignored).
pub fn system_modules(pods: &[&Pod]) -> SystemModulesStatus {
    let of = |component: &str| -> Vec<&Pod> {
        pods.iter()
            .copied()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(labels::COMPONENT))
                    .is_some_and(|c| c == component)
            })
            .collect()
    };
    SystemModulesStatus {
        edge_agent: Some(system_module(
            EDGE_AGENT,
            labels::COMPONENT_AGENT,
            &of(labels::COMPONENT_AGENT),
        )),
        edge_hub: Some(system_module(
            EDGE_HUB,
            labels::COMPONENT_EDGE_HUB,
            &of(labels::COMPONENT_EDGE_HUB),
        )),
    }
}

/// Runtime status of one system module from its pods; its container is the one named after the
/// component, or else the pod's first.
fn system_module(id: &str, component: &str, pods: &[&Pod]) -> ModuleStatus {
    let Some(pod) = current_pod(pods) else {
        return ModuleStatus {
            name: id.to_string(),
            runtime_status: RuntimeStatus::Unknown,
            description: Some(format!(
                "no pod labelled {}={component} in the namespace (the ironedge-device chart runs it)",
                labels::COMPONENT
            )),
            exit_code: None,
            restart_count: 0,
            last_start_time: None,
            last_exit_time: None,
            unsupported: Vec::new(),
        };
    };
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let container = statuses
        .iter()
        .find(|c| c.name == component)
        .or_else(|| statuses.first())
        .map_or(component, |c| c.name.as_str());
    let seen = ObservedModule {
        deployment: None,
        job: None,
        pods: &[pod],
    };
    module_status(id, container, DesiredStatus::Running, &seen, false)
}

/// A condition that keeps the previous `lastTransitionTime` unless its status flips.
fn condition(
    previous: &EdgeDeploymentStatus,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &str,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let since = previous
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.to_string(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: since,
        observed_generation: generation,
    }
}

fn is_ready(desired: DesiredStatus, status: &ModuleStatus, seen: &ObservedModule<'_>) -> bool {
    match desired {
        DesiredStatus::Stopped => status.runtime_status == RuntimeStatus::Stopped,
        DesiredStatus::Running => {
            status.runtime_status == RuntimeStatus::Running
                && current_pod(seen.pods).is_some_and(pod_ready)
                || job_succeeded(seen.job)
        }
    }
}

/// Whether the module counts as available for the startupOrder gate of later groups.
pub fn is_available(desired: DesiredStatus, seen: &ObservedModule<'_>) -> bool {
    if desired == DesiredStatus::Stopped {
        return seen.deployment.is_some() || seen.job.is_some();
    }
    if let Some(deployment) = seen.deployment {
        return deployment
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
            >= 1;
    }
    if let Some(job) = seen.job {
        let status = job.status.as_ref();
        let finished = status.and_then(|s| s.succeeded).unwrap_or(0) > 0
            || status.and_then(|s| s.failed).unwrap_or(0) > 0;
        return finished || current_pod(seen.pods).is_some_and(pod_ready);
    }
    false
}

fn is_rolling_out(seen: &ObservedModule<'_>) -> bool {
    let Some(deployment) = seen.deployment else {
        return false;
    };
    let Some(status) = &deployment.status else {
        return true;
    };
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    status.observed_generation < deployment.metadata.generation
        || status.updated_replicas.unwrap_or(0) < wanted
        || status.replicas.unwrap_or(0) > wanted
}

/// Runtime status of one module.
pub fn module_status(
    id: &str,
    name: &str,
    desired: DesiredStatus,
    seen: &ObservedModule<'_>,
    waiting: bool,
) -> ModuleStatus {
    let mut status = ModuleStatus {
        name: id.to_string(),
        runtime_status: RuntimeStatus::Unknown,
        description: None,
        exit_code: None,
        restart_count: 0,
        last_start_time: None,
        last_exit_time: None,
        unsupported: Vec::new(),
    };
    if waiting {
        status.description =
            Some("waiting for earlier startupOrder groups to be available".to_string());
        return status;
    }
    let job_failure = job_failed(seen.job);
    let Some(pod) = current_pod(seen.pods) else {
        (status.runtime_status, status.description) = if let Some(message) = job_failure {
            (RuntimeStatus::Failed, Some(message))
        } else if job_succeeded(seen.job) {
            (
                RuntimeStatus::Stopped,
                Some("exited successfully".to_string()),
            )
        } else if desired == DesiredStatus::Stopped {
            (
                RuntimeStatus::Stopped,
                Some("stopped as desired".to_string()),
            )
        } else if seen.deployment.is_none() && seen.job.is_none() {
            (RuntimeStatus::Unknown, Some("not created yet".to_string()))
        } else {
            (RuntimeStatus::Unknown, Some("no pod yet".to_string()))
        };
        return status;
    };
    let container = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|list| list.iter().find(|c| c.name == name));
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Unknown");
    if let Some(c) = container {
        fill_from_container(&mut status, c);
    }
    let (runtime, description) = match (phase, container) {
        (_, _) if job_failure.is_some() => (RuntimeStatus::Failed, job_failure),
        ("Succeeded", _) => (
            RuntimeStatus::Stopped,
            Some("exited successfully".to_string()),
        ),
        ("Failed", _) => (
            RuntimeStatus::Failed,
            pod_reason(pod).or(Some("pod failed".to_string())),
        ),
        (_, Some(c)) => from_container_state(c),
        ("Pending", None) => (RuntimeStatus::Unknown, Some(pending_reason(pod))),
        (_, None) => (
            RuntimeStatus::Unknown,
            Some(format!("pod {phase} without container status")),
        ),
    };
    status.runtime_status = runtime;
    status.description = description;
    status
}

fn from_container_state(c: &ContainerStatus) -> (RuntimeStatus, Option<String>) {
    let state = c.state.as_ref();
    if let Some(running) = state.and_then(|s| s.running.as_ref()) {
        let since = running
            .started_at
            .as_ref()
            .map(|t| format!("started at {}", t.0));
        return (RuntimeStatus::Running, since);
    }
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = waiting
            .reason
            .clone()
            .unwrap_or_else(|| "Waiting".to_string());
        let message = match &waiting.message {
            Some(m) => format!("{reason}: {m}"),
            None => reason,
        };
        return (RuntimeStatus::Backoff, Some(message));
    }
    if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
        let reason = terminated
            .reason
            .clone()
            .unwrap_or_else(|| "Terminated".to_string());
        let description = format!("{reason} with exit code {}", terminated.exit_code);
        let runtime = if terminated.exit_code == 0 {
            RuntimeStatus::Stopped
        } else {
            RuntimeStatus::Failed
        };
        return (runtime, Some(description));
    }
    (RuntimeStatus::Unknown, None)
}

fn fill_from_container(status: &mut ModuleStatus, c: &ContainerStatus) {
    status.restart_count = c.restart_count;
    let state = c.state.as_ref();
    let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let terminated = state.and_then(|s| s.terminated.as_ref()).or(last);
    status.exit_code = terminated.map(|t| t.exit_code);
    status.last_exit_time = terminated
        .and_then(|t| t.finished_at.as_ref())
        .map(|t| t.0.to_string());
    status.last_start_time = state
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.as_ref())
        .or_else(|| terminated.and_then(|t| t.started_at.as_ref()))
        .map(|t| t.0.to_string());
}

/// The pod that speaks for the module: the newest one not being deleted, else the newest.
pub fn current_pod<'a>(pods: &[&'a Pod]) -> Option<&'a Pod> {
    let newest = |live: bool| {
        pods.iter()
            .copied()
            .filter(|p| !live || p.metadata.deletion_timestamp.is_none())
            .max_by(|a, b| {
                let key = |p: &Pod| {
                    (
                        p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                        p.metadata.name.clone(),
                    )
                };
                key(a).cmp(&key(b))
            })
    };
    newest(true).or_else(|| newest(false))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conds| {
            conds
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

fn pod_reason(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    match (&status.reason, &status.message) {
        (Some(r), Some(m)) => Some(format!("{r}: {m}")),
        (Some(r), None) => Some(r.clone()),
        (None, Some(m)) => Some(m.clone()),
        (None, None) => None,
    }
}

fn pending_reason(pod: &Pod) -> String {
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conds| conds.iter().find(|c| c.type_ == "PodScheduled"));
    match scheduled {
        Some(c) if c.status == "False" => format!(
            "pod not scheduled: {}",
            c.message
                .clone()
                .or_else(|| c.reason.clone())
                .unwrap_or_default()
        ),
        _ if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_none() =>
        {
            "pod waiting to be scheduled".to_string()
        }
        _ => "pod pending".to_string(),
    }
}

fn job_failed(job: Option<&Job>) -> Option<String> {
    let conditions = job?.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .map(|c| {
            let reason = c.reason.clone().unwrap_or_else(|| "Failed".to_string());
            match &c.message {
                Some(m) => format!("{reason}: {m}"),
                None => reason,
            }
        })
}

fn job_succeeded(job: Option<&Job>) -> bool {
    job.and_then(|j| j.status.as_ref())
        .and_then(|s| s.succeeded)
        .unwrap_or(0)
        > 0
}

#[cfg(test)]
mod tests;
