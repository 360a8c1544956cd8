//! The node's main loop: set up the pod network, the API server proxy and the kubelet endpoint,
//! register the Node, keep the Service table current, and dispatch pods: bind the unbound
//! Pending pods of the served namespaces, start a [`PodWorker`] for each pod bound here, and
//! forward every update (deletion included) to it. On shutdown every pod is stopped and
//! everything created on the host is removed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::PostParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cidr::Ipv4Cidr;
use crate::context::{NodeContext, ServiceSnapshot};
use crate::error::{Error, Result};
use crate::log_server;
use crate::logs::LogStore;
use crate::names::HostNames;
use crate::network::{IpAllocator, NodeNetwork};
use crate::node_object::{self, NodeInfo};
use crate::paths::CreatedPaths;
use crate::pod_worker::PodWorker;
use crate::process::{Tools, find_program};
use crate::service_table::{ApiServerRoute, ServiceTable};
use crate::settings::NodeSettings;
use crate::status::is_terminal;

/// What a started node tells its caller.
#[derive(Debug, Clone)]
pub struct NodeStarted {
    /// The node's name.
    pub name: String,
    /// The pod network.
    pub pod_cidr: Ipv4Cidr,
    /// The kubelet endpoint.
    pub kubelet_endpoint: SocketAddr,
}

/// Runs the node until `shutdown`, then stops every pod and cleans up. `started` receives the
/// node's facts once it is registered.
pub async fn run(
    client: kube::Client,
    settings: NodeSettings,
    shutdown: CancellationToken,
    started: Option<tokio::sync::oneshot::Sender<NodeStarted>>,
) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Err(Error::Invalid {
            what: "user",
            value: "non-root".into(),
            reason: "the node creates network namespaces and bind mounts: run it as root".into(),
        });
    }
    for tool in ["ip", "nft"] {
        find_program(tool)?;
    }
    let tools = Tools::find()?;
    let pods_dir = settings.state_dir.join("pods");
    let _ = std::fs::remove_dir_all(&pods_dir);
    std::fs::create_dir_all(&pods_dir).map_err(Error::io(&pods_dir))?;
    let names = HostNames::new(&settings.node_name);
    let network = NodeNetwork::create(names, settings.pod_cidr, &settings.lock_dir).await?;
    let result =
        run_with_network(client, settings, tools, network.clone(), shutdown, started).await;
    network.destroy().await;
    result
}

async fn run_with_network(
    client: kube::Client,
    settings: NodeSettings,
    tools: Tools,
    network: NodeNetwork,
    shutdown: CancellationToken,
    started: Option<tokio::sync::oneshot::Sender<NodeStarted>>,
) -> Result<()> {
    let tasks = shutdown.child_token();
    // The API server proxy on the gateway: what the `kubernetes` Service leads to.
    let api_listener = TcpListener::bind((network.gateway(), 0))
        .await
        .map_err(Error::net(format!(
            "binding the API server proxy on {}",
            network.gateway()
        )))?;
    let api_port = api_listener
        .local_addr()
        .map_err(Error::net("API proxy address"))?
        .port();
    tokio::spawn(crate::proxy::forward(
        api_listener,
        settings.apiserver,
        tasks.clone(),
    ));
    let api_route = ApiServerRoute {
        address: network.gateway(),
        port: api_port,
    };

    let logs = LogStore::new();
    let kubelet_listener = TcpListener::bind((settings.address, settings.kubelet_port))
        .await
        .map_err(Error::net(format!(
            "binding the kubelet endpoint {}:{}",
            settings.address, settings.kubelet_port
        )))?;
    let kubelet_endpoint = kubelet_listener
        .local_addr()
        .map_err(Error::net("kubelet endpoint address"))?;
    let address = settings.address.to_string();
    let tls = log_server::tls_config(
        &[&address, &settings.node_name, "localhost"],
        settings.kubelet_client_ca.as_deref(),
    )?;
    if settings.kubelet_client_ca.is_none() {
        tracing::warn!(%kubelet_endpoint, "kubelet endpoint accepts clients without certificates (development only; pass --kubelet-client-ca to require them)");
    }
    tokio::spawn(log_server::serve(
        kubelet_listener,
        tls,
        log_server::app(logs.clone()),
        tasks.clone(),
    ));

    let info = NodeInfo {
        name: settings.node_name.clone(),
        address: settings.address,
        kubelet_port: kubelet_endpoint.port(),
        pod_cidr: network.cidr.to_string(),
        labels: settings.labels.clone(),
        max_pods: settings.max_pods,
    };
    node_object::register(&client, &info).await?;
    let heartbeat = tokio::spawn(heartbeat_loop(
        client.clone(),
        info.clone(),
        settings.heartbeat,
        tasks.clone(),
    ));

    let (services_tx, services_rx) = watch::channel(Arc::new(ServiceSnapshot::default()));
    let services_task = tokio::spawn(watch_services(
        client.clone(),
        api_route,
        services_tx,
        tasks.clone(),
    ));

    let paths = CreatedPaths::open(&settings.mount_registry)?;
    let reporter = Reporter {
        controller: "ironedge-node".into(),
        instance: Some(settings.node_name.clone()),
    };
    let ctx = Arc::new(NodeContext {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        ips: Mutex::new(IpAllocator::new(network.cidr)),
        network,
        tools,
        logs,
        services: services_rx.clone(),
        paths: Mutex::new(Some(paths)),
        settings,
    });
    let provisioner = tokio::spawn(crate::provisioner::run(ctx.clone(), tasks.clone()));
    // Pods start with the Service table loaded (their service variables are read once).
    let mut ready = services_rx.clone();
    let _ = ready.wait_for(|s| !s.services.is_empty()).await;
    tracing::info!(node = %info.name, pod_network = %ctx.network.cidr, %kubelet_endpoint, "node ready");
    if let Some(tx) = started {
        let _ = tx.send(NodeStarted {
            name: info.name.clone(),
            pod_cidr: ctx.network.cidr,
            kubelet_endpoint,
        });
    }
    let dispatched = dispatch_pods(ctx.clone(), shutdown.clone()).await;
    tasks.cancel();
    let _ = heartbeat.await;
    let _ = services_task.await;
    let _ = provisioner.await;
    if let Some(paths) = ctx
        .paths
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        paths.release();
    }
    if let Err(e) = node_object::unregister(&client, &info, ctx.settings.delete_node_on_exit).await
    {
        tracing::warn!(error = %e, "could not mark the node stopped");
    }
    tracing::info!(node = %info.name, "node stopped");
    dispatched
}

async fn heartbeat_loop(
    client: kube::Client,
    info: NodeInfo,
    period: std::time::Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = node_object::heartbeat(&client, &info, true).await {
                    tracing::warn!(error = %e, "node heartbeat failed");
                }
            }
        }
    }
}

/// Keeps `tx` equal to the Services and Endpoints in the cluster.
async fn watch_services(
    client: kube::Client,
    api: ApiServerRoute,
    tx: watch::Sender<Arc<ServiceSnapshot>>,
    stop: CancellationToken,
) {
    let (svc_reader, svc_writer) = reflector::store::<Service>();
    let (ep_reader, ep_writer) = reflector::store::<Endpoints>();
    let services = reflector::reflector(
        svc_writer,
        watcher::watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .map_ok(|_| ())
    .boxed();
    let endpoints = reflector::reflector(
        ep_writer,
        watcher::watcher(Api::<Endpoints>::all(client), watcher::Config::default()),
    )
    .map_ok(|_| ())
    .boxed();
    let mut events = futures::stream::select(services, endpoints);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            ev = events.next() => match ev {
                Some(Ok(())) => publish(&svc_reader, &ep_reader, api, &tx),
                Some(Err(e)) => tracing::warn!(error = %e, "watching services failed; retrying"),
                None => return,
            }
        }
    }
}

fn publish(
    svcs: &Store<Service>,
    eps: &Store<Endpoints>,
    api: ApiServerRoute,
    tx: &watch::Sender<Arc<ServiceSnapshot>>,
) {
    let services: Vec<Service> = svcs.state().iter().map(|s| (**s).clone()).collect();
    let endpoints: Vec<Endpoints> = eps.state().iter().map(|e| (**e).clone()).collect();
    let table = ServiceTable::build(&services, &endpoints, Some(api));
    let changed = {
        let current = tx.borrow();
        current.table != table || current.services.len() != services.len()
    };
    if changed {
        let _ = tx.send(Arc::new(ServiceSnapshot { table, services }));
    }
}

/// Watches all pods and hands each bound here to its worker.
async fn dispatch_pods(ctx: Arc<NodeContext>, shutdown: CancellationToken) -> Result<()> {
    let node = ctx.settings.node_name.clone();
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let mut stream = watcher::watcher(pods, watcher::Config::default()).boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut running: JoinSet<String> = JoinSet::new();
    let mut relisted: Option<Vec<String>> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(done) = running.join_next() => {
                if let Ok(uid) = done {
                    workers.remove(&uid);
                }
            }
            ev = stream.next() => match ev {
                Some(Ok(Event::Init)) => relisted = Some(Vec::new()),
                Some(Ok(Event::InitApply(pod))) => {
                    if let Some(seen) = relisted.as_mut() {
                        seen.push(pod.uid().unwrap_or_default());
                    }
                    handle_pod(&ctx, &node, pod, &mut workers, &mut running, &shutdown);
                }
                Some(Ok(Event::InitDone)) => {
                    // Pods deleted while the watch was down.
                    if let Some(seen) = relisted.take() {
                        for (uid, tx) in &workers {
                            if !seen.contains(uid) {
                                let _ = tx.send(None);
                            }
                        }
                    }
                }
                Some(Ok(Event::Apply(pod))) => handle_pod(&ctx, &node, pod, &mut workers, &mut running, &shutdown),
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(tx) = workers.get(&pod.uid().unwrap_or_default()) {
                        let _ = tx.send(None);
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "watching pods failed; retrying"),
                None => break,
            }
        }
    }
    drop(workers);
    while running.join_next().await.is_some() {}
    Ok(())
}

fn handle_pod(
    ctx: &Arc<NodeContext>,
    node: &str,
    pod: Pod,
    workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
    running: &mut JoinSet<String>,
    shutdown: &CancellationToken,
) {
    let uid = pod.uid().unwrap_or_default();
    let bound_to = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    if bound_to.is_empty() {
        if should_bind(ctx, &pod) {
            tokio::spawn(bind(ctx.clone(), pod));
        }
        return;
    }
    if bound_to != node {
        return;
    }
    if let Some(tx) = workers.get(&uid) {
        let _ = tx.send(Some(Arc::new(pod)));
        return;
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let deleting = pod.metadata.deletion_timestamp.is_some();
    if deleting || is_terminal(&phase) {
        if deleting {
            // Nothing of it runs here (finished, or from before a node restart): release it.
            tokio::spawn(delete_now(ctx.clone(), pod));
        }
        return;
    }
    let pod = Arc::new(pod);
    let (tx, rx) = watch::channel(Some(pod.clone()));
    workers.insert(uid.clone(), tx);
    let worker = PodWorker::new(ctx.clone(), pod);
    let token = shutdown.clone();
    running.spawn(async move {
        worker.run(rx, token).await;
        uid
    });
}

/// Whether an unbound pod is ours to bind: served namespace, Pending, not being deleted, and a
/// nodeSelector our labels satisfy.
fn should_bind(ctx: &NodeContext, pod: &Pod) -> bool {
    let ns = pod.namespace().unwrap_or_default();
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    if !ctx.settings.serves(&ns) || phase != "Pending" || pod.metadata.deletion_timestamp.is_some()
    {
        return false;
    }
    let selector = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.clone())
        .unwrap_or_default();
    let mut labels = ctx.settings.labels.clone();
    labels.insert(
        "kubernetes.io/hostname".into(),
        ctx.settings.node_name.clone(),
    );
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert(crate::node_object::NODE_LABEL.into(), "true".into());
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

async fn bind(ctx: Arc<NodeContext>, pod: Pod) {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.uid()},
        "target": {"apiVersion": "v1", "kind": "Node", "name": ctx.settings.node_name},
    });
    let result: Result<serde_json::Value, kube::Error> = api
        .create_subresource("binding", &name, &PostParams::default(), &binding)
        .await;
    match result {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), "bound pod");
            let note = format!(
                "Successfully assigned {ns}/{name} to {}",
                ctx.settings.node_name
            );
            ctx.event(&pod, false, "Scheduled", note).await;
        }
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
            tracing::debug!(pod = %format!("{ns}/{name}"), reason = %e.message, "pod not bound (taken or gone)");
        }
        Err(e) => tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "binding failed"),
    }
}

async fn delete_now(ctx: Arc<NodeContext>, pod: Pod) {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let params = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    if let Err(e) = api.delete(&pod.name_any(), &params).await {
        tracing::debug!(pod = %pod.name_any(), error = %e, "deleting a finished pod failed");
    }
}
