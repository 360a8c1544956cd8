//! The hub service: the pure core wired to storage, live connections and background tasks.
//!
//! Every operation reads from [`Storage`], runs the pure logic (registry, twins, configurations)
//! and writes back with compare-and-swap, retrying when another writer got there first. Storage
//! calls run on blocking threads. Both heads (REST and MQTT) call into [`Hub`].

mod connections;
mod deployments;
mod identities;
mod messaging;
mod methods;
mod twins;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use connections::{ConnectionId, Connections, DeviceLink, identity_key};
pub use identities::{device_json, module_json};
pub use messaging::{C2dRequest, c2d_json, telemetry_json};
pub use methods::{DEFAULT_TIMEOUT_SECS, MAX_TIMEOUT_SECS, MethodRequest, MethodResponse};
pub use twins::QueryPage;

use crate::auth::{Authenticator, Right};
use crate::error::{Error, Result};
use crate::metrics::HubMetrics;
use crate::registry::generate_key;
use crate::storage::{Policy, Storage, StorageError};

/// Tunables of the service (not of the listeners).
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Names the hub answers to in SAS tokens and usernames (`host`, `host:port`, aliases).
    pub hub_names: Vec<String>,
    /// Keep at most this many telemetry messages.
    pub telemetry_max_count: u64,
    /// Drop telemetry older than this.
    pub telemetry_max_age: Duration,
    /// Largest telemetry batch written in one transaction.
    pub telemetry_batch: usize,
    /// Default time-to-live of C2D messages.
    pub c2d_ttl: Duration,
    /// Most C2D messages waiting per device.
    pub c2d_max_queue: usize,
    /// Key of the `iothubowner` policy on first start (random when absent).
    pub owner_key: Option<String>,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            hub_names: vec!["localhost".into()],
            telemetry_max_count: 1_000_000,
            telemetry_max_age: Duration::from_secs(7 * 24 * 3600),
            telemetry_batch: 2048,
            c2d_ttl: Duration::from_secs(3600),
            c2d_max_queue: 50,
            owner_key: None,
        }
    }
}

/// The running hub service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Storage>,
    settings: HubSettings,
    auth: Authenticator,
    connections: Arc<Connections>,
    methods: methods::Methods,
    telemetry: messaging::TelemetrySink,
    c2d_inflight: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// (device, message id) of every C2D message the device completed.
    c2d_completed: tokio::sync::broadcast::Sender<(String, String)>,
    metrics: Arc<HubMetrics>,
    policies: RwLock<Vec<Policy>>,
    /// Serialises configuration re-evaluation so two passes never interleave their writes.
    evaluation: tokio::sync::Mutex<()>,
    shutdown: CancellationToken,
    background: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The formatted current time.
pub fn now_iso() -> String {
    crate::time::iso(Timestamp::now())
}

pub(crate) fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

pub(crate) fn now_secs() -> u64 {
    u64::try_from(Timestamp::now().as_second()).unwrap_or(0)
}

/// Re-runs `op` while it loses compare-and-swap races.
pub(crate) fn retry<T>(what: &str, mut op: impl FnMut() -> Result<T>) -> Result<T> {
    for _ in 0..16 {
        match op() {
            Err(Error::Storage(StorageError::Conflict(_))) => continue,
            other => return other,
        }
    }
    Err(Error::Busy(what.to_owned()))
}

impl Hub {
    /// Starts the service on `store`: ensures the default policies, starts the telemetry writer
    /// and the retention/expiry ticker. Must run inside a tokio runtime.
    pub async fn start(store: Arc<dyn Storage>, settings: HubSettings) -> Result<Self> {
        let policies = {
            let store = store.clone();
            let owner_key = settings.owner_key.clone();
            tokio::task::spawn_blocking(move || ensure_policies(&*store, owner_key))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??
        };
        let metrics = Arc::new(HubMetrics::default());
        let shutdown = CancellationToken::new();
        let last_seq = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.last_telemetry_seq())
                .await
                .map_err(|e| Error::Internal(e.to_string()))??
        };
        let (telemetry, writer) = messaging::TelemetrySink::start(
            store.clone(),
            settings.telemetry_batch,
            watch::channel(last_seq).0,
            metrics.clone(),
            shutdown.clone(),
        );
        let inner = Arc::new(Inner {
            auth: Authenticator::new(&settings.hub_names),
            store,
            settings,
            connections: Arc::new(Connections::default()),
            methods: methods::Methods::default(),
            telemetry,
            c2d_inflight: std::sync::Mutex::default(),
            c2d_completed: tokio::sync::broadcast::channel(1024).0,
            metrics,
            policies: RwLock::new(policies),
            evaluation: tokio::sync::Mutex::new(()),
            shutdown,
            background: std::sync::Mutex::new(vec![writer]),
        });
        let hub = Self { inner };
        let ticker = tokio::spawn(hub.clone().housekeeping());
        hub.inner
            .background
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ticker);
        Ok(hub)
    }

    /// Stops background work after flushing accepted telemetry.
    pub async fn close(&self) {
        self.inner.shutdown.cancel();
        let tasks: Vec<_> = std::mem::take(
            &mut *self
                .inner
                .background
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for t in tasks {
            let _ = t.await;
        }
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &HubMetrics {
        &self.inner.metrics
    }

    /// The settings.
    pub fn settings(&self) -> &HubSettings {
        &self.inner.settings
    }

    /// The token checker.
    pub fn authenticator(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// Live connections.
    pub fn connections(&self) -> &Connections {
        &self.inner.connections
    }

    /// Shared access policies.
    pub fn policies(&self) -> Vec<Policy> {
        self.inner
            .policies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The `iothubowner` connection string for `host` (what the CLI and SDKs use).
    pub fn owner_connection_string(&self, host: &str) -> Option<String> {
        self.policies()
            .into_iter()
            .find(|p| p.key_name == "iothubowner")
            .map(|p| {
                format!(
                    "HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={}",
                    p.primary_key
                )
            })
    }

    /// Runs `f` against the store on a blocking thread.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Storage) -> Result<T> + Send + 'static,
    {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Retention, C2D expiry: once a minute until shutdown.
    async fn housekeeping(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let max_count = self.inner.settings.telemetry_max_count;
            let max_age = i64::try_from(self.inner.settings.telemetry_max_age.as_millis())
                .unwrap_or(i64::MAX);
            let res = self
                .run(move |s| {
                    let pruned = s.prune_telemetry(max_count, now_ms().saturating_sub(max_age))?;
                    let expired = s.expire_c2d(now_ms())?;
                    Ok((pruned, expired))
                })
                .await;
            match res {
                Ok((pruned, expired)) => {
                    self.inner.metrics.telemetry_pruned.inc_by(pruned);
                    if pruned + expired > 0 {
                        tracing::debug!(pruned, expired, "retention pass");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "retention pass failed"),
            }
        }
    }
}

/// Creates IoT Hub's default policies on first start; returns all policies.
fn ensure_policies(store: &dyn Storage, owner_key: Option<String>) -> Result<Vec<Policy>> {
    let existing = store.list_policies()?;
    let defaults: [(&str, &[Right]); 5] = [
        ("iothubowner", &Right::ALL),
        ("service", &[Right::ServiceConnect]),
        ("device", &[Right::DeviceConnect]),
        ("registryRead", &[Right::RegistryRead]),
        (
            "registryReadWrite",
            &[Right::RegistryRead, Right::RegistryWrite],
        ),
    ];
    for (name, rights) in defaults {
        let current = existing.iter().find(|p| p.key_name == name);
        let wanted_key = (name == "iothubowner").then(|| owner_key.clone()).flatten();
        let needs_write = match (current, &wanted_key) {
            (None, _) => true,
            (Some(p), Some(k)) => p.primary_key != *k,
            (Some(_), None) => false,
        };
        if needs_write {
            if let Some(k) = &wanted_key {
                ironedge_protocol::SymmetricKey::from_base64(k).map_err(|e| {
                    Error::BadRequest(format!("the iothubowner key is unusable: {e}"))
                })?;
            }
            store.put_policy(&Policy {
                key_name: name.to_owned(),
                primary_key: wanted_key.unwrap_or_else(generate_key),
                secondary_key: current.map_or_else(generate_key, |p| p.secondary_key.clone()),
                rights: rights.to_vec(),
            })?;
        }
    }
    Ok(store.list_policies()?)
}

impl Hub {
    /// Authenticates a REST `Authorization` header (policy or device token).
    pub async fn authenticate_rest(
        &self,
        header: Option<String>,
    ) -> Result<crate::auth::Principal> {
        let device = header
            .as_deref()
            .and_then(|h| ironedge_protocol::SasToken::parse(h.trim()).ok())
            .and_then(|t| crate::auth::device_of_token(&t));
        let record = match device {
            Some(id) => self.device(id).await?.map(|d| crate::auth::IdentityRecord {
                keys: crate::auth::IdentityKeys::from_authentication(&d.authentication),
                status: d.status,
            }),
            None => None,
        };
        let policies = self.policies();
        let res =
            self.inner
                .auth
                .authenticate_rest(header.as_deref(), &policies, |_| record, now_secs());
        if res.is_err() {
            self.inner.metrics.auth_failure("rest");
        }
        Ok(res?)
    }

    /// Authenticates an MQTT client: its identity's (or a `DeviceConnect` policy's) SAS token.
    /// Returns the token expiry in Unix seconds.
    pub async fn authenticate_device(
        &self,
        device_id: String,
        module_id: Option<String>,
        password: String,
    ) -> Result<u64> {
        let resource = match &module_id {
            Some(m) => format!("devices/{device_id}/modules/{m}"),
            None => format!("devices/{device_id}"),
        };
        let record = self
            .run(move |s| {
                let Some(d) = s.get_device(&device_id)? else {
                    return Ok(None);
                };
                let auth = match &module_id {
                    Some(m) => match s.get_module(&device_id, m)? {
                        Some(m) => m.authentication,
                        None => return Ok(None),
                    },
                    None => d.authentication,
                };
                Ok(Some(crate::auth::IdentityRecord {
                    keys: crate::auth::IdentityKeys::from_authentication(&auth),
                    status: d.status,
                }))
            })
            .await?;
        let policies = self.policies();
        let res = self.inner.auth.authenticate_device(
            &password,
            &resource,
            record,
            &policies,
            now_secs(),
        );
        if res.is_err() {
            self.inner.metrics.auth_failure("mqtt");
        }
        Ok(res?)
    }
}
