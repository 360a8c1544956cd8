//! Wires a whole edge hub: store, identity cache, hub core, MQTT listeners, configuration source,
//! upstream link, operations endpoints; and shuts it down without losing anything.
//!
//! Shutdown order: stop accepting and let connections flush their pending PUBACKs (each acked
//! message is already committed), stop the pumps and the upstream link, then close the store,
//! which flushes the writer. A `kill -9` at any point loses nothing acknowledged either: the
//! store commits before every PUBACK.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ironedge_mqtt::{MqttConfig, MqttServer};
use ironedge_store::{IDENTITIES, StoreHandle, SystemClock};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::EdgeHubHooks;
use crate::config_source::ConfigSource;
use crate::hub::{Hub, HubSettings};
use crate::identities::{IdentityCache, IdentityEntry};
use crate::registry::{RegistrySettings, RegistrySync};
use crate::upstream::UpstreamSettings;

/// Everything a running edge hub needs, as plain values.
#[derive(Debug)]
pub struct EdgeHubOptions {
    /// Hub core settings.
    pub settings: HubSettings,
    /// The redb file.
    pub store_path: PathBuf,
    /// Store limits.
    pub store_config: ironedge_store::Config,
    /// Identities to add to the cache at start (local runs, tests, provisioning without a cloud).
    pub identities: Vec<IdentityEntry>,
    /// MQTT over TLS listener (8883).
    pub mqtt: TcpListener,
    /// Optional MQTT over WebSocket listener (`/$iothub/websocket`).
    pub websocket: Option<TcpListener>,
    /// Server TLS configuration.
    pub tls: Arc<rustls::ServerConfig>,
    /// Operations HTTP listener (`/healthz`, `/metrics`).
    pub http: Option<TcpListener>,
    /// The cloud, if any.
    pub upstream: Option<UpstreamSettings>,
    /// Where routes come from.
    pub config: ConfigSource,
    /// MQTT limits.
    pub mqtt_config: MqttConfig,
    /// The cloud registry to read module identities from, if any.
    pub registry: Option<RegistrySettings>,
}

/// How long start-up waits for the first registry read.
const REGISTRY_START_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Why the edge hub could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store file could not be opened.
    #[error("opening the store at {path}: {source}")]
    Store {
        /// File.
        path: PathBuf,
        /// Cause.
        source: ironedge_store::OpenError,
    },
    /// Identities could not be loaded or saved.
    #[error("identities: {0}")]
    Identities(String),
    /// A listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The MQTT server failed.
    #[error("mqtt: {0}")]
    Mqtt(#[from] ironedge_mqtt::Error),
}

/// The address MQTT clients reach, for logs and tests.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

/// Runs the edge hub until `shutdown` completes.
pub async fn run(
    options: EdgeHubOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with(options, shutdown, |_| {}).await
}

/// As [`run`], calling `started` with the hub core once it is up (tests and tools read its
/// metrics and store through it).
pub async fn run_with(
    options: EdgeHubOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    started: impl FnOnce(&Hub),
) -> Result<(), RunError> {
    let store = StoreHandle::open(
        &options.store_path,
        options.store_config.clone(),
        Arc::new(SystemClock),
    )
    .map_err(|source| RunError::Store {
        path: options.store_path.clone(),
        source,
    })?;
    let identities = load_identities(&store, &options.identities).await?;
    let token = CancellationToken::new();
    let hub = Hub::start(
        options.settings.clone(),
        store.clone(),
        identities,
        options.upstream.clone(),
        token.clone(),
    );
    if let Some(settings) = options.registry.clone() {
        let sync = RegistrySync::new(settings, hub.identities().clone(), store.clone())
            .map_err(|e| RunError::Identities(e.to_string()))?;
        let sync = Arc::new(sync);
        // One read before serving, so modules deployed while the hub was down are known; a
        // cloud that does not answer leaves the durable cache in charge.
        if tokio::time::timeout(REGISTRY_START_WAIT, sync.refresh_logged())
            .await
            .is_err()
        {
            tracing::warn!("the registry did not answer at start; using the cached identities");
        }
        hub.set_registry(sync.clone());
        tokio::spawn(sync.run(token.clone()));
    }
    started(&hub);
    let hooks = Arc::new(EdgeHubHooks::new(hub.clone()));
    let server = MqttServer::new(options.mqtt_config.clone(), hooks);

    let mut registry = Registry::default();
    hub.metrics().register(&mut registry);
    server
        .metrics()
        .register(registry.sub_registry_with_prefix("ironedge_edgehub_mqtt"));
    let registry = Arc::new(registry);

    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.cancel();
        });
    }
    let config_task = tokio::spawn(options.config.run(hub.clone(), token.clone()));

    let http_task = options.http.map(|listener| {
        let app = crate::http::router(hub.clone(), registry.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        })
    });
    // A PUBLISH accepted before the routes are known would be acknowledged and dropped (no
    // route): modules connect once the first configuration is in force, and retry until then.
    // Health and metrics are served meanwhile.
    let result = if wait_configured(&hub, &stop).await {
        serve_modules(
            &server,
            options.mqtt,
            options.websocket,
            &options.tls,
            &stop,
        )
        .await
    } else {
        Ok(())
    };
    tracing::info!("MQTT stopped; stopping pumps and the upstream link");
    token.cancel();
    let _ = config_task.await;
    if let Some(t) = http_task {
        let _ = t.await;
    }
    if let Err(e) = store.close().await {
        tracing::error!(error = %e, "closing the store failed");
    }
    tracing::info!("edge hub stopped");
    result.map_err(RunError::from)
}

/// Serves MQTT (and MQTT over WebSocket) until `stop`.
async fn serve_modules(
    server: &MqttServer<EdgeHubHooks>,
    mqtt: TcpListener,
    websocket: Option<TcpListener>,
    tls: &Arc<rustls::ServerConfig>,
    stop: &CancellationToken,
) -> ironedge_mqtt::Result<()> {
    let ws_task = websocket.map(|listener| {
        let server = server.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            server
                .serve_websocket(listener, Some(tls), async move { stop.cancelled().await })
                .await
        })
    });
    let stop_mqtt = stop.clone();
    let result = server
        .serve(mqtt, Some(tls.clone()), async move {
            stop_mqtt.cancelled().await;
        })
        .await;
    stop.cancel();
    if let Some(t) = ws_task {
        let _ = t.await;
    }
    result
}

/// Waits for the first route configuration; false if the hub is stopped first.
async fn wait_configured(hub: &Hub, stop: &CancellationToken) -> bool {
    let mut configured = hub.configured();
    if *configured.borrow() {
        return true;
    }
    tracing::info!("waiting for the route configuration before accepting connections");
    tokio::select! {
        ready = configured.wait_for(|c| *c) => ready.is_ok(),
        () = stop.cancelled() => false,
    }
}

/// Loads the durable identity cache and adds (and persists) the configured identities.
async fn load_identities(
    store: &StoreHandle,
    entries: &[IdentityEntry],
) -> Result<IdentityCache, RunError> {
    let cache = IdentityCache::default();
    let cached = store
        .reader()
        .list(&IDENTITIES)
        .map_err(|e| RunError::Identities(e.to_string()))?;
    let records: Vec<_> = cached.into_iter().map(|(_, r)| r).collect();
    cache.load_cached(&records);
    let fresh = cache.load_entries(entries).map_err(RunError::Identities)?;
    let mut writes = Vec::with_capacity(fresh.len());
    for r in &fresh {
        let key = match &r.module_id {
            Some(m) => format!("{}/{m}", r.device_id),
            None => r.device_id.clone(),
        };
        writes.push(
            IDENTITIES
                .put(key, r)
                .map_err(|e| RunError::Identities(e.to_string()))?,
        );
    }
    if !writes.is_empty() {
        store
            .kv(writes)
            .await
            .map_err(|e| RunError::Identities(e.to_string()))?;
    }
    tracing::info!(identities = cache.len(), "identity cache loaded");
    Ok(cache)
}
