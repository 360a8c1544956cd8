//! Shared harness for tests against a real kube-apiserver: the cluster named by `KUBECONFIG`
//! (start the project's with `export KUBECONFIG="$(scripts/k8s/start)"`), one random namespace per
//! test, an in-process controller, node play-acting for pods, and condition waits with timeouts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironedge_controller::controller::{self, Health, Metrics, Scope, Settings};
use ironedge_controller::crd::{self, EdgeDeployment};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use tokio::sync::{OnceCell, oneshot};

/// Default wait for anything the controller should do.
pub const TIMEOUT: Duration = Duration::from_secs(60);

const HOW_TO_START: &str = "no Kubernetes cluster is reachable; start the project's control plane with \
     `export KUBECONFIG=\"$(scripts/k8s/start)\"` (or point KUBECONFIG at any cluster) and run the tests again";

static CRD: OnceCell<()> = OnceCell::const_new();

/// The kubeconfig in use, for tests that restart the local control plane.
pub fn kubeconfig_path() -> Option<PathBuf> {
    std::env::var_os("KUBECONFIG").map(PathBuf::from)
}

/// Logs to the test output, filtered by `RUST_LOG`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A client for the test cluster with the CRD installed; panics with how to start one otherwise.
pub async fn client() -> Client {
    init_tracing();
    let config = Config::infer()
        .await
        .unwrap_or_else(|e| panic!("{HOW_TO_START} ({e})"));
    let client = Client::try_from(config).unwrap_or_else(|e| panic!("{HOW_TO_START} ({e})"));
    if let Err(e) = client.apiserver_version().await {
        panic!("{HOW_TO_START} ({e})");
    }
    CRD.get_or_init(|| install_crd(client.clone())).await;
    client
}

/// Installs (server-side applies) the CRD and waits until it is established.
pub async fn install_crd(client: Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    api.patch(
        "edgedeployments.ironedge.io",
        &PatchParams::apply("ironedge-tests").force(),
        &Patch::Apply(crd::crd()),
    )
    .await
    .expect("install the CRD");
    eventually("CRD established", TIMEOUT, || {
        let api = api.clone();
        async move {
            let crd = api.get("edgedeployments.ironedge.io").await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
}

/// A fresh namespace `it-<random>`, deleted by [`TestNamespace::delete`].
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(client: &Client) -> Self {
        let name = format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self {
            name,
            client: client.clone(),
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace; pods go at once (no kubelet will confirm their end).
    pub async fn delete(self) {
        let pods: Api<Pod> = self.api();
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for pod in list {
                let _ = pods
                    .delete(
                        &pod.name_any(),
                        &DeleteParams {
                            grace_period_seconds: Some(0),
                            ..Default::default()
                        },
                    )
                    .await;
            }
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let _ = api.delete(&self.name, &DeleteParams::background()).await;
    }
}

/// A controller running in this process until dropped.
pub struct RunningController {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<ironedge_controller::Result<()>>>,
}

impl RunningController {
    /// Starts a controller with `settings`, counting its writes.
    pub async fn start(settings: Settings) -> Self {
        let config = Config::infer().await.expect(HOW_TO_START);
        Self::start_with_config(config, settings).await
    }

    pub async fn start_with_config(config: Config, settings: Settings) -> Self {
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(Health::default());
        let client = controller::counting_client(config, metrics.clone()).expect("client");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(controller::run(
            client,
            settings,
            metrics.clone(),
            health.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            metrics,
            health,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A per-namespace controller with a fast resync.
    pub async fn namespaced(ns: &str) -> Self {
        let mut settings = Settings::new(Scope::Namespace(ns.to_string()));
        settings.resync = Duration::from_secs(60);
        Self::start(settings).await
    }

    /// Stops the controller and returns how it ended.
    pub async fn stop(mut self) -> ironedge_controller::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("controller stops")
            .expect("controller task")
    }

    /// Whether the controller task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Polls `check` until it yields a value, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        interval.tick().await;
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
    }
}

/// Creates an EdgeDeployment from JSON spec in `ns`.
pub async fn create_ed(ns: &TestNamespace, name: &str, spec: serde_json::Value) -> EdgeDeployment {
    let ed: EdgeDeployment = serde_json::from_value(json!({
        "apiVersion": "ironedge.io/v1",
        "kind": "EdgeDeployment",
        "metadata": {"name": name, "namespace": ns.name},
        "spec": spec,
    }))
    .unwrap();
    ns.api::<EdgeDeployment>()
        .create(&PostParams::default(), &ed)
        .await
        .expect("create EdgeDeployment")
}

/// Replaces the spec of EdgeDeployment `name` (merge patch of the whole spec).
pub async fn set_spec(ns: &TestNamespace, name: &str, spec: serde_json::Value) {
    ns.api::<EdgeDeployment>()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
        .expect("patch spec");
}

/// Replaces the spec wholesale (so removed list entries go), via JSON patch semantics of a PUT.
pub async fn replace_spec(ns: &TestNamespace, name: &str, spec: serde_json::Value) {
    let api = ns.api::<EdgeDeployment>();
    // The controller writes status concurrently; retry on a stale resourceVersion.
    for _ in 0..20 {
        let mut ed = api.get(name).await.unwrap();
        ed.spec = serde_json::from_value(spec.clone()).unwrap();
        match api.replace(name, &PostParams::default(), &ed).await {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => panic!("replace EdgeDeployment: {e}"),
        }
    }
    panic!("replace EdgeDeployment: conflicts kept happening");
}

/// When the controller's field manager last wrote `object`, and the object's generation.
pub fn our_write<K: kube::Resource>(object: &K) -> (Option<i64>, Option<String>) {
    let ours = object
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .find(|m| m.manager.as_deref() == Some("ironedge-controller"))
        .and_then(|m| m.time.as_ref().map(|t| t.0.to_string()));
    (object.meta().generation, ours)
}

/// Waits until condition `type_` of `name` has `status` for the current generation.
pub async fn wait_condition(
    ns: &TestNamespace,
    name: &str,
    type_: &str,
    status: &str,
) -> EdgeDeployment {
    let api = ns.api::<EdgeDeployment>();
    eventually(
        &format!("{name} condition {type_}={status}"),
        TIMEOUT,
        || {
            let api = api.clone();
            async move {
                let ed = api.get(name).await.ok()?;
                let s = ed.status.as_ref()?;
                let current = s.observed_generation == ed.metadata.generation;
                let hit = s
                    .conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == status);
                (current && hit).then_some(ed)
            }
        },
    )
    .await
}

/// Waits until object `name` exists (and returns it).
pub async fn wait_exists<K>(api: &Api<K>, name: &str) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} to exist"), TIMEOUT, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten() }
    })
    .await
}

/// Waits until object `name` is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} to be deleted"), TIMEOUT, || {
        let api = api.clone();
        async move { matches!(api.get_opt(name).await, Ok(None)).then_some(()) }
    })
    .await;
}

/// Serves the controller's `/metrics`, `/healthz` and `/readyz` on a free loopback port.
pub async fn serve_health(controller: &RunningController) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(controller::server::serve(
        listener,
        controller.metrics.clone(),
        controller.health.clone(),
        std::future::pending(),
    ));
    addr
}

/// The status code and body of a plain HTTP GET.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    Some((code, body.to_string()))
}

const NODE: &str = "ironedge-test-node";

/// Plays the kubelet for the newest pod of `module` in `ns`: binds it to a fake node and reports
/// its container running and ready.
pub async fn run_module_pod(client: &Client, ns: &TestNamespace, module: &str) -> Pod {
    run_pod_selected(client, ns, &format!("ironedge.io/module={module}")).await
}

/// A pod as the ironedge-device chart makes it for `component` (`agent`, `edgehub`): labelled by
/// Helm, not by the controller, with one container named after the component.
pub async fn create_chart_pod(ns: &TestNamespace, component: &str) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("ironedge-{component}-0"), "labels": {
            "app.kubernetes.io/name": format!("ironedge-{component}"),
            "app.kubernetes.io/instance": "ironedge",
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "ironedge",
            "app.kubernetes.io/managed-by": "Helm"}},
        "spec": {"containers": [{"name": component, "image": format!("ironedge/{component}:1")}]}
    }))
    .unwrap();
    // A brand-new namespace refuses pods until its default ServiceAccount exists.
    eventually("chart pod created", TIMEOUT, || {
        let (pods, pod) = (ns.api::<Pod>(), pod.clone());
        async move { pods.create(&PostParams::default(), &pod).await.ok() }
    })
    .await
}

/// Plays the kubelet for the newest pod matching `selector`, as [`run_module_pod`] does.
pub async fn run_pod_selected(client: &Client, ns: &TestNamespace, selector: &str) -> Pod {
    ensure_node(client).await;
    let pods: Api<Pod> = ns.api();
    let selector = selector.to_string();
    let pod = eventually(&format!("a pod {selector}"), TIMEOUT, || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            list.items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0))
        }
    })
    .await;
    let name = pod.name_any();
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_none()
    {
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
        let _: serde_json::Value = pods
            .create_subresource("binding", &name, &PostParams::default(), &binding)
            .await
            .expect("bind pod");
    }
    let now = Timestamp::now().to_string();
    let container = pod.spec.as_ref().unwrap().containers[0].clone();
    let status = json!({"status": {
        "phase": "Running",
        "podIP": "10.244.0.10",
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
        "containerStatuses": [{"name": container.name, "ready": true, "restartCount": 0,
            "image": container.image, "imageID": "docker-pullable://sha256:00",
            "state": {"running": {"startedAt": now}}}],
    }});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("pod status")
}

async fn ensure_node(client: &Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    if nodes.get_opt(NODE).await.unwrap().is_none() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": NODE}})).unwrap();
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => panic!("create node: {e}"),
        }
    }
    let now = Timestamp::now().to_string();
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "lastHeartbeatTime": now, "lastTransitionTime": now, "reason": "KubeletReady", "message": "test node"}]}});
    nodes
        .patch_status(NODE, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("node status");
}
