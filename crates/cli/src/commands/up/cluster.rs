//! The cluster side of `ironedge up`: the local control plane of `scripts/k8s` (built the first
//! time), a Kubernetes client for it or for a user's cluster, and the waits on cluster state.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};

use super::progress::Progress;

/// Where `scripts/k8s/build` keeps the Kubernetes binaries.
pub(crate) fn k8s_bin() -> PathBuf {
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from("/root"), PathBuf::from)
        .join(".cache/ironedge/k8s-1.20.2/bin")
}

/// Builds Kubernetes the first time, then starts (or finds running) the control plane in `dir`;
/// returns its kubeconfig.
pub(crate) fn start_local(
    progress: &Progress,
    source: &Path,
    dir: &Path,
    logs: &Path,
) -> Result<PathBuf> {
    let built = k8s_bin().join("kube-apiserver").is_file();
    let title = if built {
        "Kubernetes 1.20.2 binaries (cached)"
    } else {
        "building Kubernetes 1.20.2 from Debian's source (first run only: 8-15 min)"
    };
    let step = progress.step(title);
    step.run(
        &mut Command::new(source.join("scripts/k8s/build")),
        &logs.join("k8s-build.log"),
    )?;
    step.done("");
    let step = progress.step("local control plane (etcd, kube-apiserver, kube-controller-manager)");
    let out = step.run(
        Command::new(source.join("scripts/k8s/start"))
            .args(["--state-dir".as_ref(), dir.as_os_str()]),
        &logs.join("k8s-start.log"),
    )?;
    let kubeconfig = PathBuf::from(out.trim());
    if !kubeconfig.is_file() {
        bail!("scripts/k8s/start printed no kubeconfig path (got {out:?})");
    }
    step.done(&kubeconfig.display().to_string());
    Ok(kubeconfig)
}

/// Stops the local control plane in `dir` (`--delete` removes its data too).
pub(crate) fn stop_local(
    progress: &Progress,
    source: &Path,
    dir: &Path,
    delete: bool,
    logs: &Path,
) -> Result<()> {
    let step = progress.step("stopping the local control plane");
    let mut cmd = Command::new(source.join("scripts/k8s/stop"));
    cmd.args(["--state-dir".as_ref(), dir.as_os_str()]);
    if delete {
        cmd.arg("--delete");
    }
    step.run(&mut cmd, &logs.join("k8s-stop.log"))?;
    step.done("");
    Ok(())
}

/// A client for the cluster of `kubeconfig`.
pub(crate) async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    ironedge_pki::install_default_provider();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("using kubeconfig {}", kubeconfig.display()))?;
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    client
        .apiserver_version()
        .await
        .with_context(|| format!("the cluster of {} does not answer", kubeconfig.display()))?;
    Ok(client)
}

/// Polls `check` every 500 ms until it yields a value, for at most `timeout`; the error says what
/// was awaited and the last state seen.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("nothing yet");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(state) => last = state,
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "timed out after {}s waiting for {what} (last: {last})",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates `name` unless it exists; returns whether it was created.
pub(crate) async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<bool> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        return Ok(false);
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "ironedge-up".to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(true)
}

/// Waits until the Node `name` reports Ready.
pub(crate) async fn wait_node_ready(
    client: &kube::Client,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    wait_for(&format!("Node {name} to be Ready"), timeout, || {
        let api = api.clone();
        async move {
            let node = api.get_opt(name).await.map_err(|e| e.to_string())?;
            let ready = node
                .and_then(|n| n.status)
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            Ok(ready.then_some(()))
        }
    })
    .await
}

/// One pod's state in a line: `Running`, `CrashLoopBackOff`, `Pending`, …
pub(crate) fn pod_state(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| {
            cs.iter().find_map(|c| {
                c.state
                    .as_ref()
                    .and_then(|st| st.waiting.as_ref())
                    .and_then(|w| w.reason.clone())
            })
        });
    if pod.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    waiting.unwrap_or_else(|| {
        status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".into())
    })
}

/// Restarts summed over a pod's containers.
pub(crate) fn pod_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

/// Pods of `namespace`, sorted by name.
pub(crate) async fn pods(client: &kube::Client, namespace: &str) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut list = api.list(&ListParams::default()).await?.items;
    list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(list)
}

/// Waits until every pod of `namespace` whose name starts with one of `prefixes` runs.
pub(crate) async fn wait_pods_running(
    client: &kube::Client,
    namespace: &str,
    prefixes: &[&str],
    timeout: Duration,
    on_state: impl Fn(&str),
) -> Result<()> {
    wait_for("the pods to run", timeout, || {
        let client = client.clone();
        let on_state = &on_state;
        async move {
            let pods = pods(&client, namespace).await.map_err(|e| e.to_string())?;
            let mut summary = Vec::new();
            let mut all = true;
            for prefix in prefixes {
                let state = pods
                    .iter()
                    .filter(|p| {
                        p.metadata
                            .name
                            .as_deref()
                            .is_some_and(|n| n.starts_with(&format!("{prefix}-")))
                    })
                    .map(pod_state)
                    .next()
                    .unwrap_or_else(|| "no pod".into());
                all &= state == "Running";
                summary.push(format!("{prefix}: {state}"));
            }
            let summary = summary.join(", ");
            on_state(&summary);
            if all { Ok(Some(())) } else { Err(summary) }
        }
    })
    .await
}
