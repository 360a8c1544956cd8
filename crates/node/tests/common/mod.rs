//! Harness for tests against a real kube-apiserver (the cluster named by `KUBECONFIG`; start the
//! project's with `export KUBECONFIG="$(scripts/k8s/start)"`): a fresh namespace per test, an
//! in-process node serving it, and condition waits with timeouts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ironedge_node::{BackoffSettings, ImageMap, NodeSettings, NodeStarted};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, Config};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long anything the node does may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

const HOW_TO_START: &str = "no Kubernetes cluster is reachable; start the project's control plane with \
     `export KUBECONFIG=\"$(scripts/k8s/start)\"` (or point KUBECONFIG at any cluster) and run the tests again";

/// A unique lower-case suffix.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A client for the test cluster; panics with how to start one otherwise.
pub async fn client() -> Client {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    ironedge_pki::install_default_provider();
    let config = Config::infer()
        .await
        .unwrap_or_else(|e| panic!("{HOW_TO_START} ({e})"));
    let client = Client::try_from(config).unwrap_or_else(|e| panic!("{HOW_TO_START} ({e})"));
    if let Err(e) = client.apiserver_version().await {
        panic!("{HOW_TO_START} ({e})");
    }
    client
}

/// Where the API server listens, from the kubeconfig.
pub async fn apiserver() -> std::net::SocketAddr {
    let config = Config::infer().await.unwrap();
    let host = config.cluster_url.host().unwrap().to_string();
    let port = config.cluster_url.port_u16().unwrap_or(443);
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .find(|a| a.is_ipv4())
        .unwrap()
}

/// Creates a namespace and waits until pods can be created in it (default ServiceAccount token).
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique(prefix);
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &name);
    eventually("default service account token", TIMEOUT, || {
        let secrets = secrets.clone();
        async move {
            let list = secrets.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|s| s.type_.as_deref() == Some("kubernetes.io/service-account-token"))
                .then_some(())
        }
    })
    .await;
    name
}

/// Deletes a namespace (best effort).
pub async fn delete_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// A node running in this process.
pub struct TestNode {
    pub started: NodeStarted,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<ironedge_node::Result<()>>>,
    pub state_dir: Option<tempfile::TempDir>,
}

impl TestNode {
    /// Stops the node and waits for its clean-up; returns its state directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("node stops in time")
            .expect("node task")
            .expect("node ran without error");
        self.state_dir.take().unwrap()
    }
}

impl Drop for TestNode {
    /// A failed test never reaches `stop`: remove the node's network by hand so that nothing is
    /// left on the machine (its processes die with this process through their death signal).
    fn drop(&mut self) {
        if self.task.is_none() {
            return;
        }
        let names = ironedge_node::names::HostNames::new(&self.started.name);
        for ns in netns_with_prefix(&names.netns_prefix()) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &ns])
                .status();
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &names.bridge()])
            .status();
    }
}

/// Image rules of the tests: `python:*` runs the host's python3.
pub fn test_image_map() -> ImageMap {
    let python = ImageMap::from_yaml(
        "images:\n- match: 'python:*'\n  entrypoint: [/usr/bin/python3]\n  commands: {python3: /usr/bin/python3, python: /usr/bin/python3}\n  env: {PYTHONUNBUFFERED: '1'}\n",
        "tests",
    )
    .unwrap();
    python.then(ImageMap::builtin(Path::new("/nonexistent/ironedge")))
}

/// Starts a node serving `namespaces` with short back-offs.
pub async fn start_node(client: &Client, namespaces: &[&str]) -> TestNode {
    start_node_with(client, namespaces, |_| {}).await
}

/// Starts a node; `tune` adjusts its settings.
pub async fn start_node_with(
    client: &Client,
    namespaces: &[&str],
    tune: impl FnOnce(&mut NodeSettings),
) -> TestNode {
    let state_dir = tempfile::tempdir().unwrap();
    let mut settings = NodeSettings::new(&unique("test-node"), apiserver().await, test_image_map());
    settings.namespaces = namespaces.iter().map(|s| s.to_string()).collect();
    settings.state_dir = state_dir.path().to_path_buf();
    settings.kubelet_port = 0;
    settings.heartbeat = Duration::from_secs(2);
    settings.backoff = BackoffSettings {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(1),
    };
    settings.delete_node_on_exit = true;
    tune(&mut settings);
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(ironedge_node::run(
        client.clone(),
        settings,
        shutdown.clone(),
        Some(tx),
    ));
    let started = match tokio::time::timeout(TIMEOUT, rx).await {
        Ok(Ok(s)) => s,
        _ => {
            let result = task.await;
            panic!("node did not start: {result:?}");
        }
    };
    TestNode {
        started,
        shutdown,
        task: Some(task),
        state_dir: Some(state_dir),
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a pod from JSON.
pub async fn create_pod(client: &Client, ns: &str, pod: serde_json::Value) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap()
}

/// Waits (by watching) until `name` satisfies `cond`.
pub async fn wait_pod(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    cond: impl Fn(&Pod) -> bool,
) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let found = tokio::time::timeout(
        TIMEOUT,
        await_condition(api.clone(), name, move |p: Option<&Pod>| {
            p.is_some_and(&cond)
        }),
    )
    .await;
    match found {
        Ok(Ok(Some(pod))) => pod,
        other => {
            let now = api
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|p| p.status);
            panic!(
                "pod {ns}/{name}: timed out waiting for {what} ({other:?}); status now: {now:#?}"
            )
        }
    }
}

/// The pod's phase.
pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod's Ready condition is True.
pub fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the container's log (read through the `pods/log` API, i.e. the API server and
/// the node's kubelet endpoint, as `kubectl logs` does) contains `needle`; returns the log.
pub async fn wait_log(client: &Client, ns: &str, pod: &str, needle: &str) -> String {
    wait_container_log(client, ns, pod, None, needle).await
}

/// [`wait_log`] for one container of a pod with several.
pub async fn wait_container_log(
    client: &Client,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    needle: &str,
) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = LogParams {
        container: container.map(str::to_string),
        ..LogParams::default()
    };
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let last = match api.logs(pod, &params).await {
            Ok(log) if log.contains(needle) => return log,
            Ok(log) => log,
            Err(e) => format!("error: {e}"),
        };
        if Instant::now() > deadline {
            panic!("pod {ns}/{pod}: log never contained {needle:?}; last read: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A busybox-style pod running `script` with `/bin/sh -c`.
pub fn sh_pod(name: &str, script: &str, restart_policy: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["/bin/sh", "-c", script]}]
        }
    })
}

/// Network namespaces whose name starts with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Whether a network interface exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The pid from a container ID `ironedge://<pid>`.
pub fn container_pid(p: &Pod) -> u32 {
    let id = p
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .container_id
        .clone()
        .unwrap();
    id.strip_prefix("ironedge://").unwrap().parse().unwrap()
}

/// Whether a process is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/stat")))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|state| state != "Z"))
        .unwrap_or(false)
}

/// `kubectl logs -n NS POD ARGS…` with the test's kubeconfig (kubectl from PATH, else the
/// project's cached build); the real client through the API server's proxy to the node.
pub async fn kubectl_logs(ns: &str, pod: &str, args: &[&str]) -> String {
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/ironedge/k8s-1.20.2/bin/kubectl");
    let kubectl = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .or_else(|| cached.is_file().then_some(cached))
        .expect("kubectl on PATH or in ~/.cache/ironedge/k8s-1.20.2/bin (scripts/k8s/build)");
    // Asynchronous: the node serving the logs runs on this test's runtime.
    let out = tokio::process::Command::new(kubectl)
        .args(["logs", "-n", ns, pod])
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl logs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
