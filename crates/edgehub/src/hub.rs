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
use ironedge_protocol::{Identity, PropertyBag, SasVerifier};
use ironedge_routing::Endpoint;
use ironedge_store::{AppendError, NewMessage, StoreHandle, Target};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::authz::{
    Forbidden, PublishRequest, Subscription, authorize_publish, authorize_subscribe,
};
use crate::client_ops::{self, ClientOp};
use crate::config::{CompiledConfig, HubConfig};
use crate::identities::{AuthError, Authenticated, IdentityCache};
use crate::ingest::{MessageIds, Routing};
use crate::metrics::Metrics;
use crate::sessions::{ClientHandle, Outlet, Sessions};
use crate::twin::TwinDoc;
use crate::upstream::{UpstreamEvent, UpstreamLink, UpstreamSettings};
use crate::wire::{self, IngestError, Origin};
use crate::{methods, pump};

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
    /// Most messages a pump reads at once.
    pub batch_size: usize,
    /// Most messages a module input has in flight (delivered, not yet acknowledged by the
    /// module); the MQTT server's outbound window should be at least as large.
    pub delivery_window: usize,
    /// How often expired messages are removed from the store (IoT Edge's
    /// `MessageCleanupIntervalSecs`); every write also removes some as it goes.
    pub cleanup_interval: Duration,
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
            delivery_window: 256,
            cleanup_interval: Duration::from_secs(1800),
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
    pub(crate) routing: watch::Sender<Arc<Routing>>,
    /// True once a route configuration is in force (or the source said there is none).
    pub(crate) configured: watch::Sender<bool>,
    pub(crate) message_ids: MessageIds,
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
                routing: watch::channel(Arc::new(Routing::default())).0,
                configured: watch::channel(false).0,
                message_ids: MessageIds::default(),
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
        crate::twins::load_cache(&hub);
        tokio::spawn(methods::run_upstream_events(hub.clone(), events_rx));
        tokio::spawn(crate::twins::run_reported_sync(hub.clone()));
        tokio::spawn(purge_expired_periodically(hub.clone()));
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
        self.inner.routing.borrow().config.clone()
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
        let routing = Routing::new(
            Arc::new(compiled),
            &self.inner.metrics,
            &self.inner.settings.edge_device_id,
        );
        self.inner.routing.send_replace(Arc::new(routing));
        self.inner.configured.send_replace(true);
        tracing::info!(routes, "route configuration applied");
        Ok(())
    }

    /// Records that the configuration source has none to give (no `EdgeDeployment` yet): the
    /// empty route table is then the configuration in force.
    pub fn mark_configured(&self) {
        self.inner.configured.send_replace(true);
    }

    /// Follows whether a route configuration is in force. Until then a message would be routed
    /// by an empty table, acknowledged and dropped, so the runtime does not accept connections.
    pub fn configured(&self) -> watch::Receiver<bool> {
        self.inner.configured.subscribe()
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

    /// Handles a PUBLISH on the calling (connection) task. Telemetry is authorised, enriched,
    /// routed and handed to the store here and now, so the order of `publish` calls is the order
    /// in every queue; `done` then runs after the store commit, with `Ok` when the message may be
    /// acknowledged (on the store's writer thread: it must be quick). Twin and method requests
    /// are queued for the client's request task and `done` runs at once. A PUBLISH refused here
    /// (another identity's topic, too large) returns the error and `done` never runs.
    pub fn publish(
        &self,
        client: &Arc<ClientHandle>,
        topic: &str,
        payload: Bytes,
        done: impl FnOnce(Result<(), PublishError>) + Send + 'static,
    ) -> Result<(), PublishError> {
        let request = authorize_publish(&client.identity, topic).inspect_err(|e| {
            tracing::warn!(error = %e, "publish refused");
            self.inner.metrics.authorization_failures.inc();
        })?;
        let op = match request {
            PublishRequest::Telemetry { property_bag } => {
                match self.prepare(client, property_bag, payload)? {
                    Some(message) => self.append(message, done),
                    None => done(Ok(())),
                }
                return Ok(());
            }
            PublishRequest::TwinGet { query } => ClientOp::TwinGet { rid: rid(query) },
            PublishRequest::TwinReportedPatch { query } => ClientOp::TwinReportedPatch {
                rid: rid(query),
                body: payload,
            },
            PublishRequest::MethodResponse { status, query } => ClientOp::MethodResponse {
                status: status.to_owned(),
                rid: rid(query),
                body: payload,
            },
        };
        client_ops::submit(self, client, op);
        done(Ok(()));
        Ok(())
    }

    /// As [`Hub::publish`], waiting for the outcome.
    pub async fn publish_and_wait(
        &self,
        client: &Arc<ClientHandle>,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.publish(client, topic, payload, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await
            .unwrap_or(Err(PublishError::Store(AppendError::Storage(
                ironedge_store::StorageError::Closed,
            ))))
    }

    /// Hands a routed message to the store; `done` runs after its commit.
    fn append(
        &self,
        message: NewMessage,
        done: impl FnOnce(Result<(), PublishError>) + Send + 'static,
    ) {
        let hub = self.clone();
        self.inner.store.submit_append(message, move |result| {
            done(result.map(drop).map_err(|e| {
                tracing::error!(error = %e, "store append failed; message not acknowledged");
                hub.inner.metrics.dropped("store_error");
                PublishError::Store(e)
            }));
        });
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
        let id = self.inner.message_ids.next();
        let now = jiff::Timestamp::now().to_string();
        let msg = wire::ingest(&origin, property_bag, payload, id, now).inspect_err(|_| {
            self.inner.metrics.dropped("too_large");
        })?;
        self.inner.metrics.messages_received.inc();
        let routing = self.inner.routing.borrow().clone();
        let deliveries = routing.config.table.route(&msg);
        if deliveries.is_empty() {
            self.inner.metrics.dropped("no_route");
            return Ok(None);
        }
        let mut targets = Vec::with_capacity(deliveries.len());
        for d in &deliveries {
            routing.count(d);
            let Some(endpoint) = routing.endpoint_id(d) else {
                continue;
            };
            let target = Target::new(endpoint).with_priority(d.priority);
            targets.push(match routing.config.ttl(d.time_to_live_secs) {
                Some(ttl) => target.with_ttl(ttl),
                None => target,
            });
        }
        Ok(Some(NewMessage::new(msg.encode(), targets)))
    }

    /// Updates gauges that mirror the store and the upstream link (call before a scrape).
    pub fn refresh_metrics(&self) {
        let stats = self.inner.store.stats();
        let m = &self.inner.metrics;
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        m.store_bytes.set(as_i64(stats.bytes));
        m.store_blob_bytes.set(as_i64(stats.blob_bytes));
        let writer = self.inner.store.writer_stats();
        m.store_commits.set(as_i64(writer.commits_total));
        m.store_operations.set(as_i64(writer.operations_total));
        m.store_largest_batch.set(as_i64(writer.largest_batch));
        for (name, e) in &stats.endpoints {
            let label = crate::metrics::EndpointLabel {
                endpoint: name.clone(),
            };
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

/// Removes expired messages every `cleanup_interval`, so queues nobody reads (a module that is
/// gone, a cloud link that is down) do not keep them on disk until the next write sweeps them.
async fn purge_expired_periodically(hub: Hub) {
    let every = hub
        .inner
        .settings
        .cleanup_interval
        .max(Duration::from_secs(1));
    let shutdown = hub.inner.shutdown.clone();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match hub.inner.store.purge_expired().await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "expired messages removed"),
            Err(e) => tracing::warn!(error = %e, "removing expired messages failed"),
        }
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
