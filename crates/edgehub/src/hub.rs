//! The edge hub core: what the broker calls for every CONNECT, SUBSCRIBE, PUBLISH and
//! disconnect, and the tasks that move messages on (endpoint pumps, upstream events, twin sync).
//!
//! One [`Hub`] per edge device. The broker shell (see [`crate::broker`]) is thin: it parses
//! packets, calls these hooks and writes what they return. A PUBLISH is acknowledged only when
//! [`Hub::publish`] returns, which for telemetry is after the store committed the message to
//! every endpoint it was routed to (`reference/iotedge-runtime.md` §3.6).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use ironedge_protocol::{Identity, PropertyBag, SasVerifier};
use ironedge_routing::Endpoint;
use ironedge_store::{AppendError, NewMessage, StoreHandle, Target};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::authz::{
    Forbidden, PublishRequest, Subscription, authorize_publish, authorize_subscribe,
};
use crate::config::{CompiledConfig, HubConfig};
use crate::identities::{AuthError, Authenticated, IdentityCache};
use crate::metrics::{Metrics, RouteLabel};
use crate::sessions::{ClientHandle, Outlet, Sessions};
use crate::twin::TwinDoc;
use crate::upstream::{UpstreamEvent, UpstreamLink, UpstreamSettings};
use crate::wire::{self, IngestError, Origin};
use crate::{methods, pump, twins};

/// Plain settings of the hub core (the CLI fills them in).
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// The edge device this hub serves.
    pub edge_device_id: String,
    /// The IoT Hub host name (SAS audiences, upstream usernames).
    pub hub_host_name: String,
    /// Further host names accepted in SAS audiences (the gateway host name, aliases).
    pub extra_audience_hosts: Vec<String>,
    /// Twin GETs refresh from the cloud when the cached copy is older than this.
    pub min_twin_sync: Duration,
    /// How often queued reported patches are pushed upstream.
    pub reported_sync_interval: Duration,
    /// Most messages a pump reads per batch.
    pub batch_size: usize,
    /// How long a module has to answer a direct method.
    pub method_timeout: Duration,
}

impl HubSettings {
    /// Settings with IoT Edge's defaults for `edge_device_id` on `hub_host_name`.
    pub fn new(edge_device_id: impl Into<String>, hub_host_name: impl Into<String>) -> Self {
        Self {
            edge_device_id: edge_device_id.into(),
            hub_host_name: hub_host_name.into(),
            extra_audience_hosts: Vec::new(),
            min_twin_sync: Duration::from_secs(120),
            reported_sync_interval: Duration::from_secs(5),
            batch_size: 1024,
            method_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a PUBLISH was not acknowledged; the broker closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The topic is not the client's own.
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// Over 256 KiB.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The store refused or failed; the client will retry.
    #[error("store: {0}")]
    Store(#[from] AppendError),
}

/// Why a configuration was not applied (the running one stays).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A route does not compile.
    #[error(transparent)]
    Route(#[from] Box<ironedge_routing::RouteTableError>),
    /// The store could not create an endpoint queue.
    #[error("store: {0}")]
    Store(#[from] ironedge_store::EndpointError),
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The edge hub core; cheap to clone.
#[derive(Clone, Debug)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) settings: HubSettings,
    pub(crate) store: StoreHandle,
    pub(crate) config: watch::Sender<Arc<CompiledConfig>>,
    pub(crate) identities: IdentityCache,
    pub(crate) verifier: SasVerifier,
    pub(crate) sessions: Sessions,
    pub(crate) upstream: Option<UpstreamLink>,
    pub(crate) twins: Mutex<HashMap<Identity, (TwinDoc, u64)>>,
    pub(crate) methods: methods::Pending,
    pub(crate) metrics: Metrics,
    pub(crate) pumps: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    pub(crate) reported_changed: Notify,
    pub(crate) shutdown: CancellationToken,
    pub(crate) registry: std::sync::OnceLock<Arc<crate::registry::RegistrySync>>,
}

impl Hub {
    /// Starts the hub core on an opened store; with `upstream` it also connects to the cloud.
    pub fn start(
        settings: HubSettings,
        store: StoreHandle,
        identities: IdentityCache,
        upstream: Option<UpstreamSettings>,
        shutdown: CancellationToken,
    ) -> Self {
        let mut hosts = vec![settings.hub_host_name.clone()];
        hosts.extend(settings.extra_audience_hosts.iter().cloned());
        let verifier = SasVerifier::new(hosts).with_skew(60);
        let (events_tx, events_rx) = mpsc::channel(1024);
        let upstream = upstream.map(|u| {
            UpstreamLink::new(u, Arc::new(identities.clone()), events_tx, shutdown.clone())
        });
        let metrics = Metrics::default();
        metrics
            .upstream_configured
            .set(i64::from(upstream.is_some()));
        let hub = Self {
            inner: Arc::new(Inner {
                settings,
                store,
                config: watch::channel(Arc::new(CompiledConfig::default())).0,
                identities,
                verifier,
                sessions: Sessions::default(),
                upstream,
                twins: Mutex::new(HashMap::new()),
                methods: methods::Pending::default(),
                metrics,
                pumps: Mutex::new(HashMap::new()),
                reported_changed: Notify::new(),
                shutdown,
                registry: std::sync::OnceLock::new(),
            }),
        };
        twins::load_cache(&hub);
        tokio::spawn(methods::run_upstream_events(hub.clone(), events_rx));
        tokio::spawn(twins::run_reported_sync(hub.clone()));
        hub.start_pumps_for_stored_endpoints();
        hub
    }

    /// The metrics, to register with a Prometheus registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Lets unknown identities trigger a registry read.
    pub fn set_registry(&self, registry: Arc<crate::registry::RegistrySync>) {
        let _ = self.inner.registry.set(registry);
    }

    /// The identity cache.
    pub fn identities(&self) -> &IdentityCache {
        &self.inner.identities
    }

    /// The store.
    pub fn store(&self) -> &StoreHandle {
        &self.inner.store
    }

    /// The settings.
    pub fn settings(&self) -> &HubSettings {
        &self.inner.settings
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<CompiledConfig> {
        self.inner.config.borrow().clone()
    }

    /// Compiles and applies a configuration: endpoints are created in the store, their pumps
    /// started, then the route table is swapped in one step. Connections are not touched.
    pub async fn apply_config(&self, config: &HubConfig) -> Result<(), ConfigError> {
        let compiled = config.compile()?;
        for endpoint in compiled.table.endpoints() {
            let id = endpoint.id(&self.inner.settings.edge_device_id);
            self.inner.store.add_endpoint(id.clone()).await?;
            self.ensure_pump(&id, endpoint.clone());
        }
        let routes = compiled.table.entries().len();
        self.inner.config.send_replace(Arc::new(compiled));
        tracing::info!(routes, "route configuration applied");
        Ok(())
    }

    /// Pumps for endpoints that already hold messages from an earlier run (routes may not have
    /// been loaded yet, but queued messages must still flow).
    fn start_pumps_for_stored_endpoints(&self) {
        let Ok(names) = self.inner.store.reader().endpoints() else {
            return;
        };
        for id in names {
            if let Some(endpoint) = endpoint_from_id(&self.inner.settings.edge_device_id, &id) {
                self.ensure_pump(&id, endpoint);
            }
        }
    }

    fn ensure_pump(&self, id: &str, endpoint: Endpoint) {
        let mut pumps = lock(&self.inner.pumps);
        if pumps.get(id).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let task = tokio::spawn(pump::run(self.clone(), id.to_owned(), endpoint));
        pumps.insert(id.to_owned(), task);
    }

    // === broker hooks ===

    /// Authenticates a CONNECT; failures are counted by reason.
    pub fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Authenticated, AuthError> {
        let result = self.inner.identities.authenticate(
            &self.inner.settings.edge_device_id,
            &self.inner.verifier,
            client_id,
            username,
            password,
            unix_now(),
        );
        if let Err(e) = &result {
            tracing::warn!(client_id, error = %e, "connection refused");
            if matches!(e, AuthError::UnknownIdentity(_))
                && let Some(registry) = self.inner.registry.get()
            {
                registry.request_refresh();
            }
            self.inner
                .metrics
                .auth_failures
                .get_or_create(&crate::metrics::ReasonLabel {
                    reason: e.metric_label().to_owned(),
                })
                .inc();
        }
        result
    }

    /// Registers an authenticated connection whose outbound messages go to `tx`.
    pub fn connected(
        &self,
        auth: &Authenticated,
        tx: Arc<dyn Outlet>,
        clean_session: bool,
    ) -> Arc<ClientHandle> {
        let handle = self.inner.sessions.connect(
            auth.identity.clone(),
            auth.kind.clone(),
            tx,
            clean_session,
        );
        self.inner
            .metrics
            .connections
            .set(self.inner.sessions.len() as i64);
        tracing::info!(identity = %auth.identity, "client connected");
        for s in handle.subscriptions() {
            self.upstream_subscribe(&handle.identity, s);
        }
        handle
    }

    /// Records a connection's end.
    pub fn disconnected(&self, client: &ClientHandle) {
        self.inner.sessions.disconnect(client);
        self.inner
            .metrics
            .connections
            .set(self.inner.sessions.len() as i64);
        tracing::info!(identity = %client.identity, "client disconnected");
    }

    /// Authorises and records a SUBSCRIBE filter.
    pub fn subscribe(
        &self,
        client: &ClientHandle,
        filter: &str,
    ) -> Result<Subscription, Forbidden> {
        let s = authorize_subscribe(&client.identity, filter).inspect_err(|e| {
            tracing::warn!(error = %e, "subscription refused");
            self.inner.metrics.authorization_failures.inc();
        })?;
        self.inner.sessions.subscribe(client, s);
        self.upstream_subscribe(&client.identity, s);
        Ok(s)
    }

    /// Cloud-side subscriptions follow the client's (methods, desired patches, C2D).
    fn upstream_subscribe(&self, identity: &Identity, s: Subscription) {
        let Some(link) = &self.inner.upstream else {
            return;
        };
        let filter = match s {
            Subscription::Methods => "$iothub/methods/POST/#".to_owned(),
            Subscription::DesiredPatches => "$iothub/twin/PATCH/properties/desired/#".to_owned(),
            Subscription::CloudToDevice => {
                format!("devices/{}/messages/devicebound/#", identity.device_id)
            }
            Subscription::ModuleInputs | Subscription::TwinResponses => return,
        };
        let conn = link.connection(identity);
        tokio::spawn(async move { conn.ensure_subscribed(&filter).await });
    }

    /// Handles a PUBLISH; returns once it may be acknowledged.
    pub async fn publish(
        &self,
        client: &Arc<ClientHandle>,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        self.publish_future(client, topic, payload).await
    }

    /// Does the synchronous part of a PUBLISH now (authorisation, enrichment, routing, handing
    /// the message to the store) and returns a future that resolves when it may be acknowledged.
    /// Calling this in arrival order keeps a client's messages in order in every queue, while
    /// their commits are awaited concurrently (group commit).
    pub fn publish_future(
        &self,
        client: &Arc<ClientHandle>,
        topic: &str,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<(), PublishError>> {
        let request = match authorize_publish(&client.identity, topic) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "publish refused");
                self.inner.metrics.authorization_failures.inc();
                return Box::pin(futures::future::ready(Err(e.into())));
            }
        };
        let hub = self.clone();
        let client = client.clone();
        match request {
            PublishRequest::Telemetry { property_bag } => {
                match self.prepare(&client, property_bag, payload) {
                    Ok(None) => Box::pin(futures::future::ready(Ok(()))),
                    Ok(Some(message)) => {
                        let store = self.inner.store.clone();
                        Box::pin(async move {
                            store.append(message).await.map_err(|e| {
                            tracing::error!(error = %e, "store append failed; message not acknowledged");
                            hub.inner.metrics.dropped("store_error");
                            PublishError::Store(e)
                        })?;
                            Ok(())
                        })
                    }
                    Err(e) => Box::pin(futures::future::ready(Err(e))),
                }
            }
            PublishRequest::TwinGet { query } => {
                let rid = rid(query);
                Box::pin(async move {
                    twins::get(&hub, &client, rid).await;
                    Ok(())
                })
            }
            PublishRequest::TwinReportedPatch { query } => {
                let rid = rid(query);
                Box::pin(async move {
                    twins::patch_reported(&hub, &client, rid, &payload).await;
                    Ok(())
                })
            }
            PublishRequest::MethodResponse { status, query } => {
                let rid = rid(query);
                let status = status.to_owned();
                Box::pin(async move {
                    methods::module_responded(&hub, &client, &status, &rid, payload).await;
                    Ok(())
                })
            }
        }
    }

    /// Enriches and routes telemetry; `None` when no route matched (dropped, still acknowledged).
    fn prepare(
        &self,
        client: &ClientHandle,
        property_bag: &str,
        payload: Bytes,
    ) -> Result<Option<NewMessage>, PublishError> {
        let origin = Origin {
            identity: &client.identity,
            edge_device_id: &self.inner.settings.edge_device_id,
            model_id: None,
        };
        let id = uuid::Uuid::new_v4().to_string();
        let now = jiff::Timestamp::now().to_string();
        let msg = wire::ingest(&origin, property_bag, payload, id, now).inspect_err(|_| {
            self.inner.metrics.dropped("too_large");
        })?;
        self.inner.metrics.messages_received.inc();
        let config = self.config();
        let deliveries = config.table.route(&msg);
        if deliveries.is_empty() {
            self.inner.metrics.dropped("no_route");
            return Ok(None);
        }
        let edge = &self.inner.settings.edge_device_id;
        let targets: Vec<Target> = deliveries
            .iter()
            .map(|d| {
                self.inner
                    .metrics
                    .messages_routed
                    .get_or_create(&RouteLabel {
                        route: d.route.to_owned(),
                    })
                    .inc();
                let target = Target::new(d.endpoint.id(edge)).with_priority(d.priority);
                match config.ttl(d.time_to_live_secs) {
                    Some(ttl) => target.with_ttl(ttl),
                    None => target,
                }
            })
            .collect();
        Ok(Some(NewMessage::new(msg.encode(), targets)))
    }

    /// Updates gauges that mirror the store and the upstream link (call before a scrape).
    pub fn refresh_metrics(&self) {
        let stats = self.inner.store.stats();
        let m = &self.inner.metrics;
        m.store_bytes
            .set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
        for (name, e) in &stats.endpoints {
            let label = crate::metrics::EndpointLabel {
                endpoint: name.clone(),
            };
            let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            m.queue_length.get_or_create(&label).set(as_i64(e.len));
            m.messages_expired
                .get_or_create(&label)
                .set(as_i64(e.expired_total));
            m.messages_evicted
                .get_or_create(&label)
                .set(as_i64(e.evicted_total));
        }
        if let Some(link) = &self.inner.upstream {
            m.upstream_connected
                .set(i64::try_from(link.connected_count()).unwrap_or(i64::MAX));
        }
    }

    /// True when the hub serves (the store is open and not shutting down).
    pub fn is_healthy(&self) -> bool {
        !self.inner.shutdown.is_cancelled()
    }
}

/// The `$rid` of a `?$rid=…` query.
fn rid(query: &str) -> String {
    PropertyBag::parse(query)
        .get("$rid")
        .unwrap_or_default()
        .to_owned()
}

/// The endpoint behind a stored endpoint id.
pub(crate) fn endpoint_from_id(edge_device_id: &str, id: &str) -> Option<Endpoint> {
    if id == ironedge_routing::UPSTREAM_ENDPOINT_ID {
        return Some(Endpoint::Upstream);
    }
    let rest = id.strip_prefix(edge_device_id)?.strip_prefix('/')?;
    let (module, input) = rest.split_once('/')?;
    Some(Endpoint::ModuleInput {
        module: module.to_owned(),
        input: input.to_owned(),
    })
}

/// Outcome kinds of an upstream event loop, for logs.
pub(crate) type Events = mpsc::Receiver<UpstreamEvent>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_endpoint_ids_map_back_to_endpoints() {
        assert_eq!(endpoint_from_id("edge", "iothub"), Some(Endpoint::Upstream));
        assert_eq!(
            endpoint_from_id("edge", "edge/filter/in1"),
            Some(Endpoint::ModuleInput {
                module: "filter".into(),
                input: "in1".into()
            })
        );
        assert_eq!(endpoint_from_id("edge", "other/filter/in1"), None);
        assert_eq!(rid("$rid=42&$version=3"), "42");
    }
}
