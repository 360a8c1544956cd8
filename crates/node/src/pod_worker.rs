//! One task per pod bound to this node: it creates the sandbox, runs init containers one after
//! the other and then the app containers, turns what the runners report into the pod's status
//! (the only writer of that status), keeps hosts files, DNAT rules and volumes current, and on
//! deletion stops the containers (SIGTERM, grace period, SIGKILL), writes the final status and
//! deletes the pod with `gracePeriodSeconds=0`, as kubelet's status manager does.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff::RestartPolicy;
use crate::container::{Kind, RunEvent, Runner};
use crate::context::NodeContext;
use crate::sandbox::Sandbox;
use crate::status::{ContainerView, PodView, RunState, is_terminal, phase, pod_status, reasons};

/// Updates for a pod worker: the latest object, or `None` once it is gone from the API.
pub type PodUpdates = watch::Receiver<Option<Arc<Pod>>>;

/// Grace period for stopping a pod: the deletion's, else the spec's, else 30 s.
fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Restart counts carried over from the pod's status (the node was restarted).
fn previous_restarts(pod: &Pod, name: &str, init: bool) -> i32 {
    let status = pod.status.as_ref();
    let list = if init {
        status.and_then(|s| s.init_container_statuses.as_ref())
    } else {
        status.and_then(|s| s.container_statuses.as_ref())
    };
    list.and_then(|l| l.iter().find(|c| c.name == name))
        .map_or(0, |c| c.restart_count + i32::from(c.container_id.is_some()))
}

fn initial_view(ctx: &NodeContext, pod: &Pod) -> PodView {
    let spec = pod.spec.clone().unwrap_or_default();
    let has_init = spec.init_containers.as_ref().is_some_and(|v| !v.is_empty());
    let app_reason = if has_init {
        reasons::POD_INITIALIZING
    } else {
        reasons::CONTAINER_CREATING
    };
    let view_of =
        |c: &k8s_openapi::api::core::v1::Container, reason: &str, init: bool| ContainerView {
            restart_count: previous_restarts(pod, &c.name, init),
            ..ContainerView::waiting(&c.name, c.image.as_deref().unwrap_or_default(), reason)
        };
    PodView {
        pod_ip: None,
        host_ip: ctx.host_ip(),
        start_time: pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map_or_else(Timestamp::now, |t| t.0),
        restart_policy: RestartPolicy::from_spec(spec.restart_policy.as_deref()),
        init_containers: spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| view_of(c, reasons::POD_INITIALIZING, true))
            .collect(),
        containers: spec
            .containers
            .iter()
            .map(|c| view_of(c, app_reason, false))
            .collect(),
    }
}

/// Applies a runner's event to the view.
fn apply(view: &mut PodView, kind: Kind, index: usize, event: RunEvent) {
    let list = match kind {
        Kind::Init => &mut view.init_containers,
        Kind::App => &mut view.containers,
    };
    let Some(c) = list.get_mut(index) else { return };
    match event {
        RunEvent::Waiting { reason, message } => c.state = RunState::Waiting { reason, message },
        RunEvent::Started {
            started_at,
            container_id,
            restart_count,
            program,
        } => {
            if let RunState::Terminated(t) = &c.state {
                c.last = Some(t.clone());
            }
            c.restart_count = restart_count;
            c.program = Some(program);
            c.state = RunState::Running {
                started_at,
                container_id,
            };
        }
        RunEvent::Exited {
            termination,
            restart_in,
        } => match restart_in {
            Some(delay) if !delay.is_zero() => {
                let message = format!(
                    "back-off {}s restarting failed container={}",
                    delay.as_secs(),
                    c.name
                );
                c.last = Some(termination);
                c.state = RunState::Waiting {
                    reason: reasons::CRASH_LOOP_BACK_OFF.into(),
                    message: Some(message),
                };
            }
            _ => c.state = RunState::Terminated(termination),
        },
    }
}

/// Index of the next init container to run, `None` when all succeeded, `Some(usize::MAX)` when
/// one failed for good.
fn next_init(view: &PodView) -> Option<usize> {
    for (i, c) in view.init_containers.iter().enumerate() {
        match &c.state {
            RunState::Terminated(t) if t.exit_code == 0 => continue,
            RunState::Terminated(_) => return Some(usize::MAX),
            _ => return Some(i),
        }
    }
    None
}

/// The pod worker.
#[derive(Debug)]
pub struct PodWorker {
    ctx: Arc<NodeContext>,
    pod: Arc<Pod>,
    api: Api<Pod>,
    view: PodView,
    written: Option<PodStatus>,
    gone: bool,
}

impl PodWorker {
    /// A worker for `pod`.
    pub fn new(ctx: Arc<NodeContext>, pod: Arc<Pod>) -> Self {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let api = Api::namespaced(ctx.client.clone(), &ns);
        let view = initial_view(&ctx, &pod);
        Self {
            written: None,
            ctx,
            pod,
            api,
            view,
            gone: false,
        }
    }

    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    /// Writes the status when it changed.
    async fn write_status(&mut self) {
        if self.gone {
            return;
        }
        let previous = self.written.as_ref().or(self.pod.status.as_ref());
        let mut status = pod_status(&self.view, previous, Timestamp::now());
        if let Some(prev) = self.pod.status.as_ref() {
            status.qos_class = prev.qos_class.clone();
        }
        if self.written.as_ref() == Some(&status) {
            return;
        }
        let patch = json!({"metadata": {"uid": self.pod.metadata.uid}, "status": status});
        match self
            .api
            .patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.written = Some(status),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                tracing::info!(pod = %self.name(), "pod is gone; not writing its status");
                self.gone = true;
            }
            Err(e) => tracing::warn!(pod = %self.name(), error = %e, "writing pod status failed"),
        }
    }

    /// Runs the pod until it is deleted or the node stops.
    pub async fn run(mut self, mut updates: PodUpdates, shutdown: CancellationToken) {
        self.write_status().await;
        let Some(sandbox) = self.create_sandbox(&mut updates, &shutdown).await else {
            self.finish(None, &updates).await;
            return;
        };
        self.view.pod_ip = Some(sandbox.ip);
        let sandbox = Arc::new(Mutex::new(sandbox));
        if !self.write_volumes(&sandbox, &mut updates, &shutdown).await {
            self.finish(Some(sandbox), &updates).await;
            return;
        }
        let (stop_tx, stop_rx) = watch::channel(None::<Duration>);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let mut runners = JoinSet::new();
        let (ctx, pod) = (self.ctx.clone(), self.pod.clone());
        let sandbox_for_runners = sandbox.clone();
        let spawn = move |kind: Kind, index: usize, view: &PodView, runners: &mut JoinSet<()>| {
            let list = if kind == Kind::Init {
                &view.init_containers
            } else {
                &view.containers
            };
            let restart_count = list.get(index).map_or(0, |c| c.restart_count);
            let runner = Runner {
                ctx: ctx.clone(),
                pod: pod.clone(),
                sandbox: sandbox_for_runners.clone(),
                index,
                kind,
                restart_count,
            };
            runners.spawn(runner.run(ev_tx.clone(), stop_rx.clone()));
        };
        let mut apps_started = false;
        match next_init(&self.view) {
            Some(i) if i != usize::MAX => spawn(Kind::Init, i, &self.view, &mut runners),
            _ => {
                for i in 0..self.view.containers.len() {
                    spawn(Kind::App, i, &self.view, &mut runners);
                }
                apps_started = true;
            }
        }
        self.write_status().await;
        let mut services = self.ctx.services.clone();
        let mut network_released = false;
        let resync = self.ctx.settings.volume_resync;
        let mut next_resync = tokio::time::Instant::now() + resync;
        loop {
            let token_at = sandbox.lock().await.token_refresh;
            let refresh_at = token_at
                .map(|t| {
                    let d = t.duration_since(Timestamp::now()).unsigned_abs();
                    tokio::time::Instant::now() + d
                })
                .map_or(next_resync, |t| t.min(next_resync));
            tokio::select! {
                Some((kind, index, event)) = ev_rx.recv() => {
                    let init_done = kind == Kind::Init && matches!(event, RunEvent::Exited { restart_in: None, .. });
                    apply(&mut self.view, kind, index, event);
                    if init_done && !apps_started {
                        match next_init(&self.view) {
                            Some(usize::MAX) => {}
                            Some(i) => spawn(Kind::Init, i, &self.view, &mut runners),
                            None => {
                                for i in 0..self.view.containers.len() {
                                    spawn(Kind::App, i, &self.view, &mut runners);
                                }
                                apps_started = true;
                            }
                        }
                    }
                    self.write_status().await;
                    if is_terminal(phase(&self.view)) && !network_released {
                        // kubelet tears the sandbox down once a pod is finished for good.
                        network_released = true;
                        sandbox.lock().await.destroy(&self.ctx, &self.pod, false).await;
                    }
                }
                changed = updates.changed() => {
                    if changed.is_err() {
                        // The dispatcher is gone: the node is stopping.
                        let grace = grace_period(&self.pod).min(Duration::from_secs(10));
                        self.stop(grace, &stop_tx, &mut runners, &mut ev_rx).await;
                        self.finish(Some(sandbox), &updates).await;
                        return;
                    }
                    let current = updates.borrow().clone();
                    match current {
                        Some(p) if p.metadata.deletion_timestamp.is_none() => {
                            self.pod = p;
                        }
                        Some(p) => {
                            let grace = grace_period(&p);
                            self.pod = p;
                            self.stop(grace, &stop_tx, &mut runners, &mut ev_rx).await;
                            self.finish(Some(sandbox), &updates).await;
                            return;
                        }
                        None => {
                            self.gone = true;
                            self.stop(grace_period(&self.pod), &stop_tx, &mut runners, &mut ev_rx).await;
                            self.finish(Some(sandbox), &updates).await;
                            return;
                        }
                    }
                }
                _ = services.changed() => {
                    if !network_released {
                        let mut sb = sandbox.lock().await;
                        if let Err(e) = sb.update_services(&self.ctx, &self.pod).await {
                            tracing::warn!(pod = %self.name(), error = %e, "updating service routes failed");
                        }
                    }
                }
                () = tokio::time::sleep_until(refresh_at), if !network_released => {
                    next_resync = tokio::time::Instant::now() + resync;
                    let result = sandbox.lock().await.write_volumes(&self.ctx, &self.pod).await;
                    if let Err(e) = result {
                        tracing::warn!(pod = %self.name(), error = %e, "refreshing volumes failed");
                    }
                }
                () = shutdown.cancelled() => {
                    let grace = grace_period(&self.pod).min(Duration::from_secs(10));
                    self.stop(grace, &stop_tx, &mut runners, &mut ev_rx).await;
                    self.finish(Some(sandbox), &updates).await;
                    return;
                }
            }
        }
    }

    /// Creates the sandbox, retrying with back-off; `None` when the pod went away first.
    async fn create_sandbox(
        &mut self,
        updates: &mut PodUpdates,
        shutdown: &CancellationToken,
    ) -> Option<Sandbox> {
        let mut delay = Duration::from_secs(1);
        loop {
            match Sandbox::create(&self.ctx, &self.pod).await {
                Ok(s) => return Some(s),
                Err(e) => {
                    tracing::warn!(pod = %self.name(), error = %e, "creating the pod sandbox failed");
                    self.ctx
                        .event(&self.pod, true, "FailedCreatePodSandBox", e.to_string())
                        .await;
                    self.set_all_waiting(reasons::CONTAINER_CREATING, &e.to_string());
                    self.write_status().await;
                }
            }
            if wait_for_pod_change(updates, shutdown, delay).await {
                return None;
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// Writes the volumes, retrying with back-off; false when the pod went away first.
    async fn write_volumes(
        &mut self,
        sandbox: &Arc<Mutex<Sandbox>>,
        updates: &mut PodUpdates,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut delay = Duration::from_secs(1);
        loop {
            let result = sandbox
                .lock()
                .await
                .write_volumes(&self.ctx, &self.pod)
                .await;
            match result {
                Ok(()) => return true,
                Err(e) => {
                    self.ctx
                        .event(&self.pod, true, "FailedMount", e.to_string())
                        .await;
                    self.set_all_waiting(reasons::CONTAINER_CREATING, &format!("FailedMount: {e}"));
                    self.write_status().await;
                }
            }
            if wait_for_pod_change(updates, shutdown, delay).await {
                return false;
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    fn set_all_waiting(&mut self, reason: &str, message: &str) {
        for c in self
            .view
            .init_containers
            .iter_mut()
            .chain(self.view.containers.iter_mut())
        {
            if !matches!(c.state, RunState::Running { .. }) {
                c.state = RunState::Waiting {
                    reason: reason.into(),
                    message: Some(message.into()),
                };
            }
        }
    }

    /// Stops every runner and folds their last events into the view.
    async fn stop(
        &mut self,
        grace: Duration,
        stop_tx: &watch::Sender<Option<Duration>>,
        runners: &mut JoinSet<()>,
        events: &mut mpsc::UnboundedReceiver<(Kind, usize, RunEvent)>,
    ) {
        tracing::info!(pod = %self.name(), grace_seconds = grace.as_secs(), "stopping pod");
        let _ = stop_tx.send(Some(grace));
        while runners.join_next().await.is_some() {}
        while let Ok((kind, index, event)) = events.try_recv() {
            apply(&mut self.view, kind, index, event);
        }
    }

    /// After the containers stopped: sandbox removal, and when the pod was being deleted (not
    /// when the node stops) its final status and the deletion of the pod object.
    async fn finish(&mut self, sandbox: Option<Arc<Mutex<Sandbox>>>, updates: &PodUpdates) {
        let deleting = self.gone
            || updates
                .borrow()
                .as_ref()
                .is_some_and(|p| p.metadata.deletion_timestamp.is_some());
        if deleting {
            self.write_status().await;
        }
        if let Some(sandbox) = sandbox {
            sandbox
                .lock()
                .await
                .destroy(&self.ctx, &self.pod, true)
                .await;
        }
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        self.ctx.logs.remove_pod(&ns, &self.name());
        if self.gone || !deleting {
            return;
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(&self.name(), &params).await {
            Ok(_) => {
                tracing::info!(pod = %format!("{ns}/{}", self.name()), "pod stopped and deleted")
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %self.name(), error = %e, "deleting the stopped pod failed")
            }
        }
    }
}

/// Waits `delay`; true when the pod was deleted (or the node stops) first.
async fn wait_for_pod_change(
    updates: &mut PodUpdates,
    shutdown: &CancellationToken,
    delay: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return false,
            () = shutdown.cancelled() => return true,
            changed = updates.changed() => {
                let gone = changed.is_err()
                    || updates.borrow().as_ref().is_none_or(|p| p.metadata.deletion_timestamp.is_some());
                if gone {
                    return true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Termination;

    fn view() -> PodView {
        PodView {
            pod_ip: None,
            host_ip: std::net::Ipv4Addr::LOCALHOST,
            start_time: Timestamp::UNIX_EPOCH,
            restart_policy: RestartPolicy::Always,
            init_containers: vec![
                ContainerView::waiting("i1", "busybox", reasons::POD_INITIALIZING),
                ContainerView::waiting("i2", "busybox", reasons::POD_INITIALIZING),
            ],
            containers: vec![ContainerView::waiting(
                "a",
                "busybox",
                reasons::POD_INITIALIZING,
            )],
        }
    }

    fn exit(code: i32, restart_in: Option<Duration>) -> RunEvent {
        RunEvent::Exited {
            termination: Termination::exited(
                code,
                None,
                Timestamp::UNIX_EPOCH,
                Timestamp::UNIX_EPOCH,
            ),
            restart_in,
        }
    }

    #[test]
    fn init_containers_run_in_order_and_a_final_failure_stops_them() {
        let mut v = view();
        assert_eq!(next_init(&v), Some(0));
        apply(&mut v, Kind::Init, 0, exit(0, None));
        assert_eq!(next_init(&v), Some(1));
        apply(&mut v, Kind::Init, 1, exit(0, None));
        assert_eq!(next_init(&v), None);
        let mut v = view();
        apply(&mut v, Kind::Init, 0, exit(2, None));
        assert_eq!(next_init(&v), Some(usize::MAX));
    }

    #[test]
    fn restarts_move_the_exit_into_last_state() {
        let mut v = view();
        let started = |n| RunEvent::Started {
            started_at: Timestamp::UNIX_EPOCH,
            container_id: "ironedge://1".into(),
            restart_count: n,
            program: "/bin/sh".into(),
        };
        apply(&mut v, Kind::App, 0, started(0));
        apply(&mut v, Kind::App, 0, exit(3, Some(Duration::ZERO)));
        assert!(matches!(v.containers[0].state, RunState::Terminated(_)));
        apply(&mut v, Kind::App, 0, started(1));
        assert_eq!(v.containers[0].last.as_ref().unwrap().exit_code, 3);
        apply(&mut v, Kind::App, 0, exit(4, Some(Duration::from_secs(10))));
        assert!(
            matches!(&v.containers[0].state, RunState::Waiting { reason, .. } if reason == "CrashLoopBackOff")
        );
        assert_eq!(v.containers[0].last.as_ref().unwrap().exit_code, 4);
        assert_eq!(v.containers[0].restart_count, 1);
    }
}
