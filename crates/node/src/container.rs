//! One container's life on the node: build its launch spec (image mapping, environment,
//! `$(VAR)`-expanded command, mounts, working directory, user), start it, copy its output into
//! the log file, and restart it per the pod's `restartPolicy` with CrashLoopBackOff delays. Each
//! transition is reported to the pod worker, which owns the pod's status.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::{Mutex, mpsc, watch};

use crate::backoff::{Backoff, RestartPolicy};
use crate::context::NodeContext;
use crate::env::{EnvInputs, container_env, service_env};
use crate::error::ConfigError;
use crate::expand::expand;
use crate::logs::{copy_stream, open_log};
use crate::process::{ContainerProcess, LaunchSpec, Mount, exit_code};
use crate::sandbox::Sandbox;
use crate::status::{Termination, reasons};

/// What a container runner tells its pod worker.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// Not running, for `reason`.
    Waiting {
        /// Reason.
        reason: String,
        /// Details.
        message: Option<String>,
    },
    /// A run started.
    Started {
        /// Start time.
        started_at: Timestamp,
        /// `ironedge://<pid>`.
        container_id: String,
        /// Restarts before this run.
        restart_count: i32,
        /// The local program.
        program: String,
    },
    /// A run ended; `restart_in` is the delay before the next one, `None` if there is none.
    Exited {
        /// How it ended.
        termination: Termination,
        /// Delay before the restart.
        restart_in: Option<Duration>,
    },
}

/// Whether a container is an init container (run to completion, only failures restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Init container.
    Init,
    /// App container.
    App,
}

/// A pod-level stop request: `Some(grace)` once the pod is being stopped.
pub type StopSignal = watch::Receiver<Option<Duration>>;

/// Builds the launch spec of `container`.
pub async fn prepare(
    ctx: &NodeContext,
    pod: &Pod,
    container: &Container,
    sandbox: &Sandbox,
) -> Result<(LaunchSpec, String), ConfigError> {
    let image = container.image.clone().unwrap_or_default();
    let resolved = ctx.settings.image_map.resolve(
        &image,
        container.command.as_deref().unwrap_or_default(),
        container.args.as_deref().unwrap_or_default(),
    )?;
    let (secrets, config_maps) = ctx.fetch_references(pod).await?;
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let services = ctx.services.borrow().services.clone();
    let inputs = EnvInputs {
        secrets,
        config_maps,
        service_env: service_env(&services, &ns, spec.enable_service_links.unwrap_or(true)),
        image_env: resolved.env.clone(),
        pod_ip: Some(sandbox.ip),
        host_ip: Some(ctx.host_ip()),
    };
    let env = container_env(pod, container, &inputs)?;
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let argv: Vec<String> = resolved
        .argv
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if i >= resolved.expand_from {
                expand(a, lookup)
            } else {
                a.clone()
            }
        })
        .collect();
    let program = argv.first().cloned().unwrap_or_default();
    let mut mounts = mounts(ctx, container, sandbox)?;
    let stage_roots = [
        ctx.settings.lock_dir.join("stage"),
        ctx.settings.state_dir.join("stage"),
    ];
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    stage_hidden_sources(&mut mounts, &stage_roots, &pod_uid, &container.name)?;
    let working_dir = container
        .working_dir
        .clone()
        .or(resolved.working_dir)
        .map(PathBuf::from);
    if let Some(dir) = &working_dir {
        let host = host_path_of(dir, &mounts);
        ctx.ensure_path(&host, true)
            .map_err(|e| bad_mount(&dir.display().to_string(), e))?;
    }
    let security = container.security_context.as_ref();
    let pod_security = spec.security_context.as_ref();
    let uid = security
        .and_then(|s| s.run_as_user)
        .or(pod_security.and_then(|s| s.run_as_user));
    let gid = security
        .and_then(|s| s.run_as_group)
        .or(pod_security.and_then(|s| s.run_as_group))
        .or(uid);
    let user = uid
        .zip(gid)
        .and_then(|(u, g)| Some((u32::try_from(u).ok()?, u32::try_from(g).ok()?)))
        .filter(|(u, _)| *u != 0);
    let groups = pod_security.map(supplementary_groups).unwrap_or_default();
    let hostname = sandbox.netns.is_some().then(|| {
        spec.hostname
            .clone()
            .or_else(|| pod.metadata.name.clone())
            .unwrap_or_default()
            .chars()
            .take(63)
            .collect()
    });
    Ok((
        LaunchSpec {
            argv,
            env,
            working_dir,
            mounts,
            netns: sandbox.netns_path(),
            hostname,
            user,
            groups,
        },
        program,
    ))
}

/// The groups kubelet adds to every container process: `fsGroup`, then `supplementalGroups`.
fn supplementary_groups(security: &k8s_openapi::api::core::v1::PodSecurityContext) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    let ids = security
        .fs_group
        .iter()
        .chain(security.supplemental_groups.iter().flatten());
    for id in ids.filter_map(|g| u32::try_from(*g).ok()) {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

fn bad_mount(path: &str, e: std::io::Error) -> ConfigError {
    ConfigError::UnsupportedVolume {
        name: path.to_string(),
        reason: format!("mount point: {e}"),
    }
}

/// Indexes of the mounts whose source an earlier mount's target hides inside the container.
fn hidden_sources(mounts: &[Mount]) -> Vec<usize> {
    (0..mounts.len())
        .filter(|&i| {
            mounts[..i]
                .iter()
                .any(|m| mounts[i].source.starts_with(&m.target))
        })
        .collect()
}

/// The first staging root no mount target covers.
fn stage_root<'a>(roots: &'a [PathBuf], mounts: &[Mount]) -> Option<&'a PathBuf> {
    roots
        .iter()
        .find(|r| !mounts.iter().any(|m| r.starts_with(&m.target)))
}

/// Gives every mount whose source would be hidden a staging mount point
/// (`<root>/<pod uid>/<container>/<index>`), created empty on the host like its source.
fn stage_hidden_sources(
    mounts: &mut [Mount],
    roots: &[PathBuf],
    pod_uid: &str,
    container: &str,
) -> Result<(), ConfigError> {
    let hidden = hidden_sources(mounts);
    if hidden.is_empty() {
        return Ok(());
    }
    let Some(root) = stage_root(roots, mounts) else {
        let listed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        return Err(ConfigError::UnsupportedVolume {
            name: mounts[hidden[0]].target.display().to_string(),
            reason: format!(
                "its source {} is hidden by another of the pod's mounts and so is every staging directory ({}); run the node with a --state-dir outside the paths the pod mounts",
                mounts[hidden[0]].source.display(),
                listed.join(", ")
            ),
        });
    };
    let dir = root.join(pod_uid).join(container);
    for i in hidden {
        let stage = dir.join(i.to_string());
        let m = &mut mounts[i];
        let made = if m.source.is_dir() {
            std::fs::create_dir_all(&stage)
        } else {
            std::fs::create_dir_all(&dir).and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&stage)
                    .map(drop)
            })
        };
        made.map_err(|e| bad_mount(&stage.display().to_string(), e))?;
        m.stage = Some(stage);
    }
    Ok(())
}

/// The staging directories of a pod, removed with its sandbox.
pub fn stage_dirs(ctx: &NodeContext, pod_uid: &str) -> [PathBuf; 2] {
    [
        ctx.settings.lock_dir.join("stage").join(pod_uid),
        ctx.settings.state_dir.join("stage").join(pod_uid),
    ]
}

/// Where a path inside the container lives on the host, given the mounts before it.
fn host_path_of(target: &Path, mounts: &[Mount]) -> PathBuf {
    mounts
        .iter()
        .rev()
        .find_map(|m| {
            let rest = target.strip_prefix(&m.target).ok()?;
            Some(m.source.join(rest))
        })
        .unwrap_or_else(|| target.to_path_buf())
}

/// The container's bind mounts: hosts and resolv.conf (own network only), then its volume
/// mounts shallowest first; their mount points are created where the container will see them.
fn mounts(
    ctx: &NodeContext,
    container: &Container,
    sandbox: &Sandbox,
) -> Result<Vec<Mount>, ConfigError> {
    let mut out = Vec::new();
    if sandbox.netns.is_some() {
        out.push(Mount {
            source: sandbox.hosts_file.clone(),
            target: "/etc/hosts".into(),
            read_only: true,
            stage: None,
        });
        out.push(Mount {
            source: sandbox.resolv_file.clone(),
            target: "/etc/resolv.conf".into(),
            read_only: true,
            stage: None,
        });
    }
    let mut vms = container.volume_mounts.clone().unwrap_or_default();
    vms.sort_by_key(|m| Path::new(&m.mount_path).components().count());
    for vm in vms {
        let volume = sandbox
            .volumes
            .get(&vm.name)
            .ok_or_else(|| ConfigError::VolumeNotFound(vm.name.clone()))?;
        let mut source = volume.path.clone();
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let ok = Path::new(sub)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
            if !ok {
                return Err(ConfigError::BadSubPath(sub.to_string()));
            }
            source = source.join(sub);
            if !source.exists() {
                std::fs::create_dir_all(&source).map_err(|e| bad_mount(sub, e))?;
            }
        }
        let target = PathBuf::from(&vm.mount_path);
        let is_dir = std::fs::metadata(&source)
            .map(|m| m.is_dir())
            .unwrap_or(true);
        let host = host_path_of(&target, &out);
        ctx.ensure_path(&host, is_dir)
            .map_err(|e| bad_mount(&vm.mount_path, e))?;
        out.push(Mount {
            source,
            target,
            read_only: vm.read_only.unwrap_or(false) || volume.generated,
            stage: None,
        });
    }
    Ok(out)
}

/// Everything a runner needs.
#[derive(Debug, Clone)]
pub struct Runner {
    /// Shared node state.
    pub ctx: Arc<NodeContext>,
    /// The pod.
    pub pod: Arc<Pod>,
    /// The sandbox (read-only while containers run, except for service updates).
    pub sandbox: Arc<Mutex<Sandbox>>,
    /// Index in the spec's container list.
    pub index: usize,
    /// Init or app container.
    pub kind: Kind,
    /// Restarts before the runner starts (from the pod's status when the node restarted).
    pub restart_count: i32,
}

impl Runner {
    fn container(&self) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        match self.kind {
            Kind::Init => spec.init_containers.as_ref()?.get(self.index).cloned(),
            Kind::App => spec.containers.get(self.index).cloned(),
        }
    }

    /// Runs the container until it finishes for good or the pod stops.
    pub async fn run(
        self,
        tagged: mpsc::UnboundedSender<(Kind, usize, RunEvent)>,
        mut stop: StopSignal,
    ) {
        let (events, mut rx) = mpsc::unbounded_channel::<RunEvent>();
        let (kind, index) = (self.kind, self.index);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if tagged.send((kind, index, ev)).is_err() {
                    return;
                }
            }
        });
        let Some(container) = self.container() else {
            return;
        };
        let policy = RestartPolicy::from_spec(
            self.pod
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.as_deref()),
        );
        let mut backoff = Backoff::new(self.ctx.settings.backoff);
        let mut restarts = self.restart_count;
        let mut config_retry = Duration::from_secs(1);
        loop {
            if stop.borrow().is_some() {
                return;
            }
            let prepared = {
                let sandbox = self.sandbox.lock().await;
                prepare(&self.ctx, &self.pod, &container, &sandbox).await
            };
            let (spec, program) = match prepared {
                Ok(p) => p,
                Err(e) => {
                    let reason = match e {
                        ConfigError::ImageNotMapped(_) => reasons::ERR_IMAGE_PULL,
                        _ => reasons::CREATE_CONTAINER_CONFIG_ERROR,
                    };
                    self.ctx
                        .event(&self.pod, true, "Failed", format!("Error: {e}"))
                        .await;
                    let _ = events.send(RunEvent::Waiting {
                        reason: reason.into(),
                        message: Some(e.to_string()),
                    });
                    if wait_or_stop(&mut stop, config_retry).await {
                        return;
                    }
                    config_retry = (config_retry * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            let (termination, stopped, ran_for) = match self
                .run_once(
                    &container.name,
                    &spec,
                    &program,
                    restarts,
                    &events,
                    &mut stop,
                )
                .await
            {
                Some(r) => r,
                None => {
                    // Could not start: kubelet's RunContainerError, retried with back-off.
                    let delay = backoff
                        .next_delay(Duration::ZERO)
                        .max(Duration::from_secs(1));
                    if wait_or_stop(&mut stop, delay).await {
                        return;
                    }
                    continue;
                }
            };
            let restart = !stopped
                && match self.kind {
                    Kind::App => policy.restarts(termination.exit_code),
                    Kind::Init => termination.exit_code != 0 && policy != RestartPolicy::Never,
                };
            if !restart {
                let _ = events.send(RunEvent::Exited {
                    termination,
                    restart_in: None,
                });
                return;
            }
            let delay = backoff.next_delay(ran_for);
            let _ = events.send(RunEvent::Exited {
                termination,
                restart_in: Some(delay),
            });
            if !delay.is_zero() {
                self.ctx
                    .event(
                        &self.pod,
                        true,
                        "BackOff",
                        format!("Back-off restarting failed container {}", container.name),
                    )
                    .await;
            }
            if wait_or_stop(&mut stop, delay).await {
                return;
            }
            restarts += 1;
        }
    }

    /// One run: start, copy output, wait for exit or stop. `None` when the process did not start.
    async fn run_once(
        &self,
        name: &str,
        spec: &LaunchSpec,
        program: &str,
        restarts: i32,
        events: &mpsc::UnboundedSender<RunEvent>,
        stop: &mut StopSignal,
    ) -> Option<(Termination, bool, Duration)> {
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let pod_name = self.pod.metadata.name.clone().unwrap_or_default();
        let log_dir = self.sandbox.lock().await.dir.join("logs").join(name);
        let run = u32::try_from(restarts).unwrap_or(0);
        let log_path = self.ctx.logs.start_run(&ns, &pod_name, name, &log_dir, run);
        let file = match open_log(&log_path).await {
            Ok(f) => Arc::new(Mutex::new(f)),
            Err(e) => {
                self.ctx.logs.end_run(&ns, &pod_name, name);
                let _ = events.send(RunEvent::Waiting {
                    reason: reasons::RUN_CONTAINER_ERROR.into(),
                    message: Some(e.to_string()),
                });
                return None;
            }
        };
        let (mut process, pipes) = match ContainerProcess::spawn(&self.ctx.tools, spec) {
            Ok(p) => p,
            Err(e) => {
                self.ctx.logs.end_run(&ns, &pod_name, name);
                self.ctx
                    .event(&self.pod, true, "Failed", format!("Error: {e}"))
                    .await;
                let _ = events.send(RunEvent::Waiting {
                    reason: reasons::RUN_CONTAINER_ERROR.into(),
                    message: Some(e.to_string()),
                });
                return None;
            }
        };
        let started_at = Timestamp::now();
        let started = Instant::now();
        let container_id = format!("ironedge://{}", process.pid());
        tracing::info!(pod = %format!("{ns}/{pod_name}"), container = name, pid = process.pid(), program, "container started");
        let _ = events.send(RunEvent::Started {
            started_at,
            container_id: container_id.clone(),
            restart_count: restarts,
            program: program.to_string(),
        });
        self.ctx
            .event(
                &self.pod,
                false,
                "Started",
                format!("Started container {name}"),
            )
            .await;
        let notify = self
            .ctx
            .logs
            .handle(&ns, &pod_name, name, false)
            .map(|h| h.notify)
            .unwrap_or_default();
        let mut copiers = Vec::new();
        if let Some(out) = pipes.stdout {
            copiers.push(tokio::spawn(copy_stream(
                out,
                "stdout",
                file.clone(),
                notify.clone(),
            )));
        }
        if let Some(err) = pipes.stderr {
            copiers.push(tokio::spawn(copy_stream(
                err,
                "stderr",
                file.clone(),
                notify.clone(),
            )));
        }
        let (status, stopped) = tokio::select! {
            s = process.wait() => (s, false),
            grace = wait_for_stop(stop) => {
                self.ctx.event(&self.pod, false, "Killing", format!("Stopping container {name}")).await;
                (process.stop(grace).await, true)
            }
        };
        for c in copiers {
            // Output of leftover grandchildren could keep a pipe open; do not wait for ever.
            let _ = tokio::time::timeout(Duration::from_secs(2), c).await;
        }
        self.ctx.logs.end_run(&ns, &pod_name, name);
        let (code, signal) = match status {
            Ok(s) => exit_code(s),
            Err(e) => {
                tracing::warn!(error = %e, "waiting for a container failed");
                (255, None)
            }
        };
        let mut termination = Termination::exited(code, signal, started_at, Timestamp::now());
        termination.container_id = Some(container_id);
        tracing::info!(pod = %format!("{ns}/{pod_name}"), container = name, exit_code = code, "container exited");
        Some((termination, stopped, started.elapsed()))
    }
}

/// Resolves with the grace period once a stop is requested.
async fn wait_for_stop(stop: &mut StopSignal) -> Duration {
    loop {
        if let Some(grace) = *stop.borrow_and_update() {
            return grace;
        }
        if stop.changed().await.is_err() {
            return Duration::ZERO;
        }
    }
}

/// Waits `delay`; true when a stop came first.
async fn wait_or_stop(stop: &mut StopSignal, delay: Duration) -> bool {
    if stop.borrow().is_some() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = wait_for_stop(stop) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(source: &str, target: &str) -> Mount {
        Mount {
            source: source.into(),
            target: target.into(),
            read_only: false,
            stage: None,
        }
    }

    #[test]
    fn sources_hidden_by_an_earlier_mount_are_staged_outside_every_target() {
        let state = tempfile::tempdir().unwrap();
        let src = |v: &str| {
            let p = state.path().join(v);
            std::fs::create_dir_all(&p).unwrap();
            p.display().to_string()
        };
        // As a pod mounting /tmp over a state dir in /tmp would.
        let tmp_target = state.path().display().to_string();
        let mut mounts = vec![
            mount(&src("tmp"), &tmp_target),
            mount(&src("config"), "/config"),
            mount("/etc/hostname", "/etc/hostname"),
        ];
        assert_eq!(hidden_sources(&mounts), [1]);
        let stage = tempfile::tempdir().unwrap();
        let roots = [state.path().join("stage"), stage.path().join("stage")];
        stage_hidden_sources(&mut mounts, &roots, "uid1", "main").unwrap();
        let staged = mounts[1].stage.clone().unwrap();
        assert_eq!(
            staged,
            stage.path().join("stage/uid1/main/1"),
            "first root is hidden"
        );
        assert!(staged.is_dir());
        assert_eq!(mounts[0].stage, None);
        assert_eq!(mounts[2].stage, None);
    }

    #[test]
    fn hidden_sources_without_a_visible_staging_root_are_a_clear_error() {
        let mut mounts = vec![mount("/x", "/"), mount("/x/a", "/a")];
        let err = stage_hidden_sources(&mut mounts, &[PathBuf::from("/run/s")], "u", "c")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--state-dir outside"), "{err}");
    }

    #[test]
    fn nested_mount_points_live_inside_the_outer_volume() {
        let mounts = vec![Mount {
            source: "/state/v/data".into(),
            target: "/data".into(),
            read_only: false,
            stage: None,
        }];
        assert_eq!(
            host_path_of(Path::new("/data/sub/x"), &mounts),
            PathBuf::from("/state/v/data/sub/x")
        );
        assert_eq!(
            host_path_of(Path::new("/other"), &mounts),
            PathBuf::from("/other")
        );
    }
}
