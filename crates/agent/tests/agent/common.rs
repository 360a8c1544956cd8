//! Harness for the agent's integration tests: the real control plane named by `KUBECONFIG`
//! (`export KUBECONFIG="$(scripts/k8s/start)"`; `scripts/test` starts one), one random namespace
//! per device, a real ironedge hub in this process, and the agent under test running in this
//! process with a namespaced ServiceAccount token (real RBAC, not the admin token). Tests that
//! need running or crashing pods play the node by writing pod status.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironedge_agent::provisioning::DeviceCredentials;
use ironedge_agent::settings::{
    AgentSettings, CertificateSettings, HubEndpoints, Timing, WorkloadSettings,
};
use ironedge_agent::{Handles, Listeners};
use ironedge_controller::crd::{self, EdgeDeployment};
use ironedge_hub::HubSettings;
use ironedge_hub::client::HubClient;
use ironedge_hub::server::{ServerSettings, Started, TlsSource};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// Default wait for anything the agent should do.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// The `iothubowner` key every test hub uses.
pub const OWNER_KEY: &str = "aXJvbmVkZ2UtYWdlbnQtdGVzdC1vd25lci1rZXktMzJi";
/// The hub name in connection strings and SAS audiences.
pub const HUB_NAME: &str = "agenthub.ironedge.local";
/// The image every test module uses (nothing pulls it: there is no kubelet).
pub const IMAGE: &str = "example.com/ironedge/test-module:1.0";

const HOW_TO_START: &str = "no Kubernetes cluster is reachable; start the project's control plane with \
     `export KUBECONFIG=\"$(scripts/k8s/start)\"` (or point KUBECONFIG at any cluster) and run the tests again";

static CRD: OnceCell<()> = OnceCell::const_new();

/// An admin client for the test cluster with the CRD installed; fails the test without a cluster.
pub async fn admin() -> Client {
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
    CRD.get_or_init(|| install_crd(client.clone())).await;
    client
}

async fn install_crd(client: Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    api.patch(
        "edgedeployments.ironedge.io",
        &PatchParams::apply("ironedge-tests").force(),
        &Patch::Apply(crd::crd()),
    )
    .await
    .expect("install the CRD");
    eventually("the CRD to be established", TIMEOUT, || {
        let api = api.clone();
        async move {
            let crd = api.get("edgedeployments.ironedge.io").await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
}

/// Polls `check` until it yields a value, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh namespace `ag-<random>` (one device), deleted by [`TestNamespace::delete`].
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(client: &Client) -> Self {
        let name = format!("ag-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
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
        // The agent's one cluster-scoped object, if a test installed its RBAC here.
        let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
            Api::all(self.client.clone());
        let name = format!(
            "{}:{}:auth-delegator",
            ironedge_agent::rbac::DEFAULT_NAME,
            self.name
        );
        let _ = bindings.delete(&name, &DeleteParams::default()).await;
    }
}

/// A real ironedge hub in this process, on loopback ports that survive a restart.
pub struct TestHub {
    pub dir: tempfile::TempDir,
    pub rest: SocketAddr,
    pub mqtt: SocketAddr,
    pub started: Option<Started>,
}

impl TestHub {
    fn settings(dir: &Path, rest: SocketAddr, mqtt: SocketAddr) -> ServerSettings {
        ServerSettings {
            database: dir.join("hub.db"),
            rest_addr: rest,
            mqtt_addr: mqtt,
            websocket_addr: None,
            tls: TlsSource::DevCa {
                dir: dir.join("tls"),
                names: vec!["127.0.0.1".into(), "localhost".into()],
            },
            hub: HubSettings {
                hub_names: vec![HUB_NAME.into(), "127.0.0.1".into(), rest.to_string()],
                owner_key: Some(OWNER_KEY.into()),
                ..HubSettings::default()
            },
        }
    }

    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let started = ironedge_hub::server::start(Self::settings(dir.path(), any, any))
            .await
            .expect("hub starts");
        Self {
            rest: started.rest_addr,
            mqtt: started.mqtt_addr,
            dir,
            started: Some(started),
        }
    }

    /// Stops the hub: the agent loses its link.
    pub async fn stop(&mut self) {
        if let Some(s) = self.started.take() {
            s.shutdown().await;
        }
    }

    /// Starts the hub on its data with the REST head only reachable (MQTT on another port), so
    /// the desired state can change while devices cannot connect.
    pub async fn start_rest_only(&mut self) {
        let other: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let started =
            ironedge_hub::server::start(Self::settings(self.dir.path(), self.rest, other))
                .await
                .expect("hub starts (REST only)");
        self.started = Some(started);
    }

    /// Starts the hub again on its usual addresses.
    pub async fn start_again(&mut self) {
        let started =
            ironedge_hub::server::start(Self::settings(self.dir.path(), self.rest, self.mqtt))
                .await
                .expect("hub restarts");
        self.started = Some(started);
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("tls").join("ca.pem")
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_path()).unwrap()
    }

    pub fn client(&self) -> HubClient {
        let cs = format!(
            "HostName={HUB_NAME};SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY}"
        );
        let url = format!("https://{}", self.rest);
        HubClient::new(&cs, Some(&url), &self.ca_pem()).unwrap()
    }

    /// Creates an edge device and returns its connection string.
    pub async fn edge_device(&self, id: &str) -> String {
        let device = self
            .client()
            .put(
                &format!("/devices/{id}"),
                &json!({"deviceId": id, "capabilities": {"iotEdge": true}}),
                false,
            )
            .await
            .expect("create edge device");
        let key = device["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap()
            .to_string();
        format!("HostName={HUB_NAME};DeviceId={id};SharedAccessKey={key}")
    }

    /// Sets a device's deployment (`applyConfigurationContent`).
    pub async fn set_modules(&self, device: &str, manifest: &Value) {
        self.client()
            .post(
                &format!("/devices/{device}/applyConfigurationContent"),
                manifest,
            )
            .await
            .expect("apply configuration content");
    }

    /// Replaces the desired properties of module twin `module` directly (no manifest
    /// validation on the way, unlike `applyConfigurationContent`).
    pub async fn set_desired(&self, device: &str, module: &str, desired: &Value) {
        let reply = self
            .client()
            .send(
                reqwest::Method::PUT,
                &format!("/twins/{device}/modules/{module}"),
                Some(&json!({"tags": {}, "properties": {"desired": desired}})),
                &[("If-Match", "\"*\"")],
            )
            .await
            .expect("replace module twin");
        assert!(
            reply.status.is_success(),
            "replace {module} twin: {:?}",
            reply.body
        );
    }

    /// Puts a whole manifest on the device's system twins without validation.
    pub async fn set_manifest_unchecked(&self, device: &str, manifest: &Value) {
        for module in ["$edgeHub", "$edgeAgent"] {
            let desired = &manifest["modulesContent"][module]["properties.desired"];
            self.set_desired(device, module, desired).await;
        }
    }

    /// The `$edgeAgent` module twin.
    pub async fn agent_twin(&self, device: &str) -> Value {
        self.client()
            .get(&format!("/twins/{device}/modules/$edgeAgent"))
            .await
            .expect("get the $edgeAgent twin")
    }

    /// A module identity, or `None`.
    pub async fn module(&self, device: &str, module: &str) -> Option<Value> {
        self.client()
            .get(&format!("/devices/{device}/modules/{module}"))
            .await
            .ok()
    }

    /// Invokes a direct method on `$edgeAgent`: `(status, payload)`.
    pub async fn invoke_agent(&self, device: &str, method: &str, payload: Value) -> (i64, Value) {
        let answer = self
            .client()
            .post(
                &format!("/twins/{device}/modules/$edgeAgent/methods"),
                &json!({"methodName": method, "payload": payload, "responseTimeoutInSeconds": 30}),
            )
            .await
            .expect("invoke method");
        (
            answer["status"].as_i64().unwrap(),
            answer["payload"].clone(),
        )
    }
}

/// A deployment manifest with `modules` (user modules) and `routes`.
pub fn manifest(modules: Value, routes: Value) -> Value {
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25",
                "registryCredentials": {"testacr": {"address": "example.com", "username": "puller", "password": "s3cr3t-pull"}}}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": IMAGE}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": IMAGE}}},
            "modules": modules}},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.1",
            "routes": routes,
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}}})
}

/// A running module with IoT Edge's defaults and `restartPolicy: always`.
pub fn module(status: &str) -> Value {
    json!({"type": "docker", "status": status, "restartPolicy": "always", "version": "1.0",
           "settings": {"image": IMAGE}})
}

/// The agent under test, running in this process as its own ServiceAccount.
pub struct RunningAgent {
    pub namespace: String,
    pub device_id: String,
    /// The agent's kube client (its ServiceAccount token).
    pub client: Client,
    pub workload_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    pub handles: Handles,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<ironedge_agent::Result<()>>>,
}

/// Installs the agent's RBAC in `ns` exactly as `ironedge agent rbac` prints it, and returns a
/// client that authenticates as the agent's ServiceAccount.
pub async fn agent_client(admin: &Client, ns: &str) -> Client {
    let name = ironedge_agent::rbac::DEFAULT_NAME;
    let apply = PatchParams::apply("ironedge-tests").force();
    let sa = ironedge_agent::rbac::service_account(ns, name);
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .patch(name, &apply, &Patch::Apply(&sa))
        .await
        .unwrap();
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(admin.clone(), ns)
        .patch(
            name,
            &apply,
            &Patch::Apply(ironedge_agent::rbac::role(ns, name)),
        )
        .await
        .unwrap();
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin.clone(), ns)
        .patch(
            name,
            &apply,
            &Patch::Apply(ironedge_agent::rbac::role_binding(ns, name)),
        )
        .await
        .unwrap();
    let crb = ironedge_agent::rbac::auth_delegator_binding(ns, name);
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(admin.clone())
        .patch(&crb.name_any(), &apply, &Patch::Apply(&crb))
        .await
        .unwrap();
    let token = service_account_token(admin, ns, name, None, None).await;
    let mut config = Config::infer().await.unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..kube::config::AuthInfo::default()
    };
    Client::try_from(config).unwrap()
}

/// A token of ServiceAccount `ns/name` (TokenRequest), for `audience` (default: the API
/// server's), bound to `pod` when given — what the kubelet puts in a projected volume.
pub async fn service_account_token(
    admin: &Client,
    ns: &str,
    name: &str,
    audience: Option<&str>,
    pod: Option<&Pod>,
) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let mut spec = json!({"expirationSeconds": 3600});
    if let Some(a) = audience {
        spec["audiences"] = json!([a]);
    }
    if let Some(pod) = pod {
        spec["boundObjectRef"] = json!({"apiVersion": "v1", "kind": "Pod",
            "name": pod.name_any(), "uid": pod.uid()});
    }
    let request =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    let answer: TokenRequest = eventually("a ServiceAccount token", TIMEOUT, || {
        let accounts = accounts.clone();
        let request = request.clone();
        async move {
            accounts
                .create_subresource("token", name, &PostParams::default(), &request)
                .await
                .ok()
        }
    })
    .await;
    answer.status.unwrap().token
}

/// Knobs of one agent run.
#[derive(Clone)]
pub struct AgentOptions {
    pub proxy_image: Option<String>,
    pub gateway_host_name: Option<String>,
    pub edgehub_names: Vec<String>,
    pub certificates: Option<CertificateSettings>,
    /// Wait until the agent reports ready (false: it starts with the hub unreachable).
    pub wait_ready: bool,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            proxy_image: Some("example.com/ironedge:test".into()),
            gateway_host_name: None,
            edgehub_names: Vec::new(),
            certificates: None,
            wait_ready: true,
        }
    }
}

impl RunningAgent {
    pub async fn start(admin: &Client, ns: &str, hub: &TestHub, connection_string: &str) -> Self {
        Self::start_with(admin, ns, hub, connection_string, AgentOptions::default()).await
    }

    pub async fn start_with(
        admin: &Client,
        ns: &str,
        hub: &TestHub,
        connection_string: &str,
        options: AgentOptions,
    ) -> Self {
        let client = agent_client(admin, ns).await;
        let device = DeviceCredentials::from_connection_string(connection_string).unwrap();
        let workload = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let workload_addr = workload.local_addr().unwrap();
        let ops_addr = ops.local_addr().unwrap();
        let mut workload_settings = WorkloadSettings::for_namespace(ns);
        workload_settings.listen = workload_addr;
        workload_settings.proxy_image = options.proxy_image;
        workload_settings.agent_url = format!("https://{workload_addr}");
        workload_settings.server_names = vec!["localhost".into()];
        let device_id = device.device_id.clone();
        let wait_ready = options.wait_ready;
        let settings = AgentSettings {
            namespace: ns.to_string(),
            hub: HubEndpoints {
                mqtt_host: "127.0.0.1".into(),
                mqtt_port: hub.mqtt.port(),
                rest_url: format!("https://{}", hub.rest),
                trust_pem: hub.ca_pem(),
            },
            edge_deployment: device_id.clone(),
            device,
            workload: workload_settings,
            certificates: CertificateSettings {
                edgehub_names: options.edgehub_names,
                ..options.certificates.unwrap_or_default()
            },
            gateway_host_name: options.gateway_host_name,
            timing: Timing {
                backoff_min: Duration::from_millis(200),
                backoff_max: Duration::from_secs(2),
                desired_debounce: Duration::from_millis(200),
                report_debounce: Duration::from_millis(300),
                operation_timeout: Duration::from_secs(10),
                ..Timing::default()
            },
            run_controller: true,
            controller_resync: Duration::from_secs(60),
            pod_name: None,
        };
        let handles = Handles {
            metrics: Arc::default(),
            readiness: Arc::default(),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ironedge_agent::run(
            client.clone(),
            settings,
            Listeners {
                workload,
                ops: Some(ops),
            },
            handles.clone(),
            shutdown.clone(),
        ));
        let agent = Self {
            namespace: ns.to_string(),
            device_id,
            client,
            workload_addr,
            ops_addr,
            handles,
            shutdown,
            task: Some(task),
        };
        if wait_ready {
            agent.wait_ready().await;
        }
        agent
    }

    /// Waits until start-up finished (identities, certificates, controller caches).
    pub async fn wait_ready(&self) {
        let readiness = self.handles.readiness.clone();
        eventually("the agent to start", TIMEOUT, || {
            let r = readiness.clone();
            async move { r.is_ready().then_some(()) }
        })
        .await;
    }

    /// The status code and body of `GET {path}` on the operations endpoint, or `None` while it
    /// does not answer.
    pub async fn ops_get(&self, path: &str) -> Option<(u16, String)> {
        let response = reqwest::get(format!("http://{}{path}", self.ops_addr))
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    /// `/metrics` as text.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.ops_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the agent and returns how it ended.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("agent stops")
                .expect("agent task")
                .expect("agent ends cleanly");
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The EdgeDeployment of the device, once it exists and satisfies `check`.
pub async fn wait_ed(
    admin: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&EdgeDeployment) -> bool,
) -> EdgeDeployment {
    let api: Api<EdgeDeployment> = Api::namespaced(admin.clone(), ns);
    eventually(what, TIMEOUT, || {
        let api = api.clone();
        let check = &check;
        async move {
            api.get_opt(name)
                .await
                .ok()
                .flatten()
                .filter(|ed| check(ed))
        }
    })
    .await
}

/// Waits until the `$edgeAgent` reported properties satisfy `check`.
pub async fn wait_reported(
    hub: &TestHub,
    device: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, TIMEOUT, || {
        let check = &check;
        async move {
            let twin = hub.agent_twin(device).await;
            let reported = twin["properties"]["reported"].clone();
            check(&reported).then_some(reported)
        }
    })
    .await
}

const NODE: &str = "ironedge-agent-test-node";

/// The newest live pod of module object `module` in `ns`.
pub async fn module_pod(admin: &Client, ns: &str, module: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let selector = format!("ironedge.io/module={module}");
    eventually(&format!("a pod of {module}"), TIMEOUT, || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            pods.list(&ListParams::default().labels(&selector))
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0))
        }
    })
    .await
}

/// Binds `pod` to node `node` (what the scheduler does).
pub async fn bind(admin: &Client, pod: &Pod, node: &str) {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
    {
        return;
    }
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &pod.namespace().unwrap());
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod.name_any()},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let _: Value = pods
        .create_subresource("binding", &pod.name_any(), &PostParams::default(), &binding)
        .await
        .expect("bind pod");
}

/// Plays the kubelet for `pod`: binds it and writes `state` as its module container's status
/// (`{"running": {...}}`, `{"waiting": {...}}`, …), with `last_state` and `restarts`.
pub async fn set_container_state(
    admin: &Client,
    pod: &Pod,
    state: Value,
    last_state: Value,
    restarts: i32,
) {
    ensure_node(admin, NODE, None).await;
    bind(admin, pod, NODE).await;
    let now = Timestamp::now().to_string();
    let spec = pod.spec.as_ref().unwrap();
    let running = state.get("running").is_some();
    let statuses: Vec<Value> = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                json!({"name": c.name, "ready": running, "restartCount": restarts,
                   "image": c.image, "imageID": "docker-pullable://sha256:00",
                   "state": state, "lastState": last_state})
            } else {
                json!({"name": c.name, "ready": true, "restartCount": 0, "image": c.image,
                   "imageID": "docker-pullable://sha256:01", "state": {"running": {"startedAt": now}}})
            }
        })
        .collect();
    let ready = if running { "True" } else { "False" };
    let status = json!({"status": {
        "phase": "Running",
        "podIP": "10.244.0.10",
        "startTime": now,
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": ready, "lastTransitionTime": now},
            {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
        "containerStatuses": statuses,
    }});
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &pod.namespace().unwrap());
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(status),
    )
    .await
    .expect("pod status");
}

/// Registers (or refreshes) a Ready node; with `kubelet`, its address and kubelet port, so that
/// the API server proxies `pods/log` there.
pub async fn ensure_node(admin: &Client, name: &str, kubelet: Option<SocketAddr>) {
    let nodes: Api<Node> = Api::all(admin.clone());
    if nodes.get_opt(name).await.unwrap().is_none() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        let _ = nodes.create(&PostParams::default(), &node).await;
    }
    let now = Timestamp::now().to_string();
    let mut status = json!({"conditions": [{"type": "Ready", "status": "True",
        "lastHeartbeatTime": now, "lastTransitionTime": now, "reason": "KubeletReady", "message": "test node"}]});
    if let Some(addr) = kubelet {
        status["addresses"] = json!([{"type": "InternalIP", "address": addr.ip().to_string()}]);
        status["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": addr.port()}});
    }
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .expect("node status");
}

/// The venv python with the Azure SDKs (`scripts/python-env`); a missing venv fails the test.
pub fn python() -> PathBuf {
    let p = std::env::var_os("IRONEDGE_PYTHON").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/ironedge/venv/bin/python"),
        PathBuf::from,
    );
    assert!(
        p.exists(),
        "the Python SDK environment is missing ({}); run scripts/python-env (scripts/test does)",
        p.display()
    );
    p
}

/// Runs `tests/python/{script}` with `env`; fails the test (with its output) unless it exits 0.
/// Returns the JSON object printed on the last line starting with `{`.
pub async fn run_python(script: &str, env: &[(&str, String)]) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(&path).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 120 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{script} printed no JSON result:\n{stdout}\n{stderr}"));
    serde_json::from_str(line).unwrap()
}

/// One HTTP/1.1 request over a unix socket (what the SDKs do with `IOTEDGE_WORKLOADURI`):
/// `(status, body)`.
pub async fn unix_http(
    socket: &Path,
    method: &str,
    uri: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    unix_http_with(socket, method, uri, body, "").await
}

/// [`unix_http`] with extra header lines (`"Name: value\r\n"`).
pub async fn unix_http_with(
    socket: &Path,
    method: &str,
    uri: &str,
    body: Option<&Value>,
    headers: &str,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {uri} HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(payload)
    } else {
        payload.to_string()
    };
    (
        status,
        serde_json::from_str(&payload).unwrap_or(Value::Null),
    )
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A workload proxy sidecar for one pod, run in this process: serves `dir/workload.sock` and
/// forwards to the agent with the token in `dir/token`.
pub struct Sidecar {
    pub dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Sidecar {
    pub async fn start(agent: &RunningAgent, admin: &Client, token: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), token).unwrap();
        let bundle: k8s_openapi::api::core::v1::ConfigMap =
            Api::namespaced(admin.clone(), &agent.namespace)
                .get("ironedge-trust-bundle")
                .await
                .unwrap();
        std::fs::write(
            dir.path().join("trust-bundle.pem"),
            &bundle.data.unwrap()["trust-bundle.pem"],
        )
        .unwrap();
        let settings = ironedge_agent::workload::proxy::ProxySettings {
            listen: format!("unix://{}", dir.path().join("workload.sock").display()),
            agent_url: format!("https://{}", agent.workload_addr),
            token_file: dir.path().join("token"),
            trust_bundle: dir.path().join("trust-bundle.pem"),
            timeout: Duration::from_secs(30),
        };
        let stop = CancellationToken::new();
        tokio::spawn(ironedge_agent::workload::proxy::run(settings, stop.clone()));
        let socket = dir.path().join("workload.sock");
        eventually("the sidecar socket", TIMEOUT, || {
            let s = socket.clone();
            async move { s.exists().then_some(()) }
        })
        .await;
        Self { dir, stop }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("workload.sock")
    }

    pub fn uri(&self) -> String {
        format!("unix://{}", self.socket().display())
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
