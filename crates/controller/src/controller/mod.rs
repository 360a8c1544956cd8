//! The controller: watches EdgeDeployments and everything they own, and reconciles them.
//!
//! One [`run`] serves either one namespace (a per-device controller, which needs only the
//! namespaced Role of [`crate::rbac::role`]) or every namespace (one process for many devices). It
//! reads the cluster through reflector caches and writes with server-side apply under one field
//! manager; see [`reconcile`] for the steps. With a Lease configured, only the holder runs the
//! controller, and losing the Lease stops it.

pub mod counting;
pub mod diff;
pub mod leader;
pub mod metrics;
pub mod observed;
pub mod plan;
pub mod readiness;
pub mod reconcile;
pub mod server;
pub mod slim;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service, ServiceAccount};
use kube::api::{Api, ListParams};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use self::slim::{slim_deployment, slim_meta, slim_pod};
use crate::crd::EdgeDeployment;
use crate::error::{Error, Result};
use crate::labels;
use crate::names;

pub use leader::LeaseSettings;
pub use metrics::Metrics;
pub use observed::Stores;
pub use readiness::CacheReadiness;
pub use reconcile::Context;
pub use server::Health;

/// Which EdgeDeployments one controller serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Only this namespace (per-device mode; a namespaced Role suffices).
    Namespace(String),
    /// Every namespace (cluster mode).
    All,
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespaces served.
    pub scope: Scope,
    /// Period of the safety-net reconcile of every EdgeDeployment.
    pub resync: Duration,
    /// Leader election; `None` runs without it (one replica only).
    pub lease: Option<LeaseSettings>,
    /// Name of this instance in Events (pod name).
    pub instance: Option<String>,
    /// Serve only EdgeDeployments matching this label selector (sharding several controllers).
    pub selector: Option<String>,
}

impl Settings {
    /// Defaults for `scope`: resync every 5 minutes, no leader election.
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            resync: Duration::from_secs(300),
            lease: None,
            instance: None,
            selector: None,
        }
    }
}

/// A kube client whose write requests are counted into `metrics`.
pub fn counting_client(config: kube::Config, metrics: Arc<Metrics>) -> Result<Client> {
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(builder
        .with_layer(&counting::CountWrites::new(metrics))
        .build())
}

/// Runs the controller until `shutdown` completes, or fails when the CRD is missing or the
/// leader Lease is lost.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    check_crd(&client, &settings.scope).await?;
    let shutdown = shutdown.boxed().shared();
    let mut elector = settings
        .lease
        .clone()
        .map(|lease| leader::LeaderElector::new(client.clone(), lease));
    if let Some(elector) = elector.as_mut() {
        tracing::info!("waiting for the leader lease");
        tokio::select! {
            acquired = elector.acquire() => acquired?,
            () = shutdown.clone() => return Ok(()),
        }
        tracing::info!("acquired the leader lease");
    }
    metrics.leader.set(1);
    let controller = run_controller(
        client,
        settings,
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    );
    let result = match elector.as_mut() {
        Some(elector) => tokio::select! {
            () = controller => Ok(()),
            lost = elector.hold() => Err(lost),
        },
        None => {
            controller.await;
            Ok(())
        }
    };
    health.set_ready(false);
    metrics.leader.set(0);
    if let (Some(elector), Ok(())) = (elector.as_mut(), &result) {
        elector.release().await;
    }
    result
}

/// Fails early, with the remedy, when the CRD is not installed.
async fn check_crd(client: &Client, scope: &Scope) -> Result<()> {
    let api: Api<EdgeDeployment> = scoped(client.clone(), scope);
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(Error::CrdMissing),
        Err(err) => Err(err.into()),
    }
}

fn scoped<K>(client: Client, scope: &Scope) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match scope {
        Scope::Namespace(ns) => Api::namespaced(client, ns),
        Scope::All => Api::all(client),
    }
}

/// Reconciles in flight at once. Unbounded, a burst of new EdgeDeployments ran all of them
/// together, each with its own API connection, buffers and JSON copies of its objects, and the
/// heap kept that peak resident: 100 new ones cost 20 MB of the load tool's 57 MB, for good.
const MAX_CONCURRENT_RECONCILES: u16 = 16;

/// A reflector stream of objects labelled as ours, stripped by `strip` (see [`slim`]) to save memory.
fn owned_stream<K>(
    client: &Client,
    scope: &Scope,
    strip: impl FnMut(&mut K) + Send + 'static,
    filled: (CacheReadiness, u32),
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    selected_stream(client, scope, labels::managed_selector(), strip, filled)
}

/// A reflector stream of the objects matching `selector`, stripped by `strip`.
fn selected_stream<K>(
    client: &Client,
    scope: &Scope,
    selector: String,
    strip: impl FnMut(&mut K) + Send + 'static,
    filled: (CacheReadiness, u32),
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().labels(&selector).any_semantic();
    let stream = watcher(scoped::<K>(client.clone(), scope), config)
        .default_backoff()
        .modify(strip)
        .reflect(writer)
        .inspect_ok(move |event| mark_when_filled(&filled, event))
        .touched_objects();
    (reader, stream)
}

/// Marks the cache filled once its list is in the store (the reflector applies `InitDone` first).
fn mark_when_filled<K>((readiness, index): &(CacheReadiness, u32), event: &watcher::Event<K>) {
    if matches!(event, watcher::Event::InitDone) {
        readiness.mark_filled(*index);
    }
}

async fn run_controller(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let scope = &settings.scope;
    let readiness = CacheReadiness::new(8);
    let filled = |index: u32| (readiness.clone(), index);
    let (eds, ed_writer) = reflector::store::<EdgeDeployment>();
    let mut ed_config = watcher::Config::default().any_semantic();
    if let Some(selector) = &settings.selector {
        ed_config = ed_config.labels(selector);
    }
    let ed_filled = filled(0);
    let ed_stream = watcher(scoped::<EdgeDeployment>(client.clone(), scope), ed_config)
        .default_backoff()
        .modify(slim_meta)
        .reflect(ed_writer)
        .inspect_ok(move |event| mark_when_filled(&ed_filled, event))
        .applied_objects();
    let (deployments, deployment_stream) =
        owned_stream::<Deployment>(&client, scope, slim_deployment, filled(1));
    let (jobs, job_stream) = owned_stream::<Job>(&client, scope, slim_meta, filled(2));
    let (services, service_stream) = owned_stream::<Service>(&client, scope, slim_meta, filled(3));
    let (accounts, account_stream) =
        owned_stream::<ServiceAccount>(&client, scope, slim_meta, filled(4));
    let (claims, claim_stream) =
        owned_stream::<PersistentVolumeClaim>(&client, scope, slim_meta, filled(5));
    let (pods, pod_stream) = owned_stream::<Pod>(&client, scope, slim_pod, filled(6));
    // The device chart's agent and edge hub pods are not labelled as ours: a second, equally
    // narrow watch (two pods per namespace) instead of caching every pod.
    let (system_pods, system_pod_stream) = selected_stream::<Pod>(
        &client,
        scope,
        labels::system_pod_selector(),
        slim_pod,
        filled(7),
    );
    let stores = Stores {
        edge_deployments: eds.clone(),
        deployments,
        jobs,
        services,
        service_accounts: accounts,
        claims,
        pods,
        system_pods,
        readiness: readiness.clone(),
    };

    let ready_health = health.clone();
    let mark_ready = tokio::spawn(async move {
        readiness.wait().await;
        tracing::info!("caches filled; ready");
        ready_health.set_ready(true);
    });

    let reporter = Reporter {
        controller: labels::MANAGED_BY_VALUE.to_string(),
        instance: settings.instance.clone(),
    };
    let context = Arc::new(Context::new(
        client.clone(),
        stores,
        metrics,
        Recorder::new(client, reporter),
        settings.resync,
    ));
    let (claim_map, pod_map) = (by_instance(eds.clone()), by_instance(eds.clone()));
    let system_map = in_namespace(eds.clone());
    Controller::for_stream(ed_stream, eds)
        .owns_stream(deployment_stream)
        .owns_stream(job_stream)
        .owns_stream(service_stream)
        .owns_stream(account_stream)
        .watches_stream(claim_stream, move |claim: PersistentVolumeClaim| {
            claim_map(&claim)
        })
        .watches_stream(pod_stream, move |pod: Pod| pod_map(&pod))
        .watches_stream(system_pod_stream, move |pod: Pod| system_map(&pod))
        .with_config(controller::Config::default().concurrency(MAX_CONCURRENT_RECONCILES))
        .trigger_backoff(EachWatchBacksOffAlone)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %err, "controller event");
            }
        })
        .await;
    // A controller that stops before its caches fill must not turn ready afterwards.
    mark_ready.abort();
}

/// Turns off kube's shared trigger backoff. It sleeps the merged stream of all watches after an
/// error from any one of them, so during an API server restart every watch waits, each wake-up
/// delivers one more (stale) error, and the sleep grew to 30-60 s: changes reached the controller
/// minutes late. Each watch stream already backs off on its own (`default_backoff`). `Some(ZERO)`,
/// not `None`: `None` would end the trigger stream.
#[derive(Debug, Clone, Copy)]
struct EachWatchBacksOffAlone;

impl Iterator for EachWatchBacksOffAlone {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for EachWatchBacksOffAlone {
    fn reset(&mut self) {}
}

/// Maps an object to the EdgeDeployment of its namespace whose label-safe name is the object's
/// instance label (pods and retained claims carry no owner reference to it).
fn by_instance<K: Resource>(
    eds: Store<EdgeDeployment>,
) -> impl Fn(&K) -> Option<ObjectRef<EdgeDeployment>> + Send + Sync + 'static {
    move |object: &K| {
        let namespace = object.meta().namespace.clone()?;
        let instance = object
            .meta()
            .labels
            .as_ref()?
            .get(labels::INSTANCE)?
            .clone();
        eds.state()
            .into_iter()
            .find(|ed| {
                ed.namespace().as_deref() == Some(namespace.as_str())
                    && names::label_value(&ed.name_any()) == instance
            })
            .map(|ed| ObjectRef::from_obj(&*ed))
    }
}

/// Maps an object to every EdgeDeployment of its namespace (the device chart's system pods belong
/// to the device, not to one EdgeDeployment).
fn in_namespace<K: Resource>(
    eds: Store<EdgeDeployment>,
) -> impl Fn(&K) -> Vec<ObjectRef<EdgeDeployment>> + Send + Sync + 'static {
    move |object: &K| {
        let Some(namespace) = object.meta().namespace.as_deref() else {
            return Vec::new();
        };
        eds.state()
            .into_iter()
            .filter(|ed| ed.namespace().as_deref() == Some(namespace))
            .map(|ed| ObjectRef::from_obj(&*ed))
            .collect()
    }
}
