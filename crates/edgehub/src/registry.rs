//! Module identities from the cloud registry, fetched with the edge device's own credentials
//! (`GET /devices/{edge}/modules`, which IoT Hub and the ironedge hub allow to the device itself)
//! and written to the durable identity cache, so authentication keeps working offline.
//!
//! The registry is read at start, every refresh period, and soon after a client connects with an
//! identity the cache does not know (a module deployed since the last read), at most once per
//! [`MIN_GAP`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ironedge_protocol::{Identity, SasToken, SymmetricKey};
use ironedge_store::{CachedIdentity, IDENTITIES, IdentityCredentials, StoreHandle, Timestamp};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::identities::IdentityCache;

/// Shortest time between two registry reads triggered by unknown identities.
pub const MIN_GAP: Duration = Duration::from_secs(10);
/// The api-version sent to the registry.
const API_VERSION: &str = "2021-04-12";

/// Where the registry is and who asks.
#[derive(Clone)]
pub struct RegistrySettings {
    /// REST base URL of the cloud hub (`https://host[:port]`).
    pub base_url: String,
    /// IoT Hub host name (SAS audience).
    pub hub_host_name: String,
    /// The edge device.
    pub edge_device_id: String,
    /// The edge device's symmetric key.
    pub device_key: SymmetricKey,
    /// TLS trust for the REST endpoint.
    pub tls: Arc<rustls::ClientConfig>,
    /// How often to re-read the registry.
    pub refresh: Duration,
}

impl std::fmt::Debug for RegistrySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySettings")
            .field("base_url", &self.base_url)
            .field("edge_device_id", &self.edge_device_id)
            .field("device_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Why a registry read failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The HTTP request failed.
    #[error("registry request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The registry answered with an error status.
    #[error("registry answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Body, for the log.
        body: String,
    },
    /// Writing the cache failed.
    #[error("storing identities: {0}")]
    Store(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleJson {
    module_id: String,
    device_id: String,
    #[serde(default)]
    generation_id: Option<String>,
    #[serde(default)]
    authentication: Option<AuthJson>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthJson {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    symmetric_key: Option<KeysJson>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeysJson {
    #[serde(default)]
    primary_key: Option<String>,
    #[serde(default)]
    secondary_key: Option<String>,
}

fn now() -> (u64, Timestamp) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs, Timestamp::from_unix_millis(secs * 1000))
}

/// Turns registry module JSON into cache records (symmetric-key modules only).
fn records(modules: Vec<ModuleJson>, fetched_at: Timestamp) -> Vec<CachedIdentity> {
    modules
        .into_iter()
        .filter_map(|m| {
            let auth = m.authentication?;
            if !auth.kind.eq_ignore_ascii_case("sas") {
                return None;
            }
            let keys = auth.symmetric_key?;
            let primary = keys.primary_key.filter(|k| !k.is_empty())?;
            let secondary = keys
                .secondary_key
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| primary.clone());
            Some(CachedIdentity {
                device_id: m.device_id,
                module_id: Some(m.module_id),
                generation_id: m.generation_id,
                credentials: IdentityCredentials::SymmetricKey {
                    primary_key: primary,
                    secondary_key: secondary,
                },
                fetched_at,
            })
        })
        .collect()
}

/// Keeps the identity cache in step with the cloud registry.
#[derive(Debug)]
pub struct RegistrySync {
    settings: RegistrySettings,
    http: reqwest::Client,
    identities: IdentityCache,
    store: StoreHandle,
    wanted: Notify,
}

impl RegistrySync {
    /// A sync for `settings` writing into `identities` and the store.
    pub fn new(
        settings: RegistrySettings,
        identities: IdentityCache,
        store: StoreHandle,
    ) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*settings.tls).clone())
            .timeout(Duration::from_secs(20))
            .build()?;
        Ok(Self {
            settings,
            http,
            identities,
            store,
            wanted: Notify::new(),
        })
    }

    /// Asks for a read soon (an unknown identity tried to connect).
    pub fn request_refresh(&self) {
        self.wanted.notify_one();
    }

    /// Reads the registry once; returns how many identities were cached.
    pub async fn refresh(&self) -> Result<usize, RegistryError> {
        let s = &self.settings;
        let (secs, fetched_at) = now();
        let device = Identity::device(s.edge_device_id.clone());
        let token = SasToken::build(
            &device.resource_uri(&s.hub_host_name),
            &s.device_key,
            secs + 300,
            None,
        );
        let url = format!(
            "{}/devices/{}/modules?api-version={API_VERSION}",
            s.base_url.trim_end_matches('/'),
            s.edge_device_id
        );
        let response = self
            .http
            .get(url)
            .header("Authorization", token.to_string())
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(RegistryError::Status {
                status: status.as_u16(),
                body,
            });
        }
        let modules: Vec<ModuleJson> = response.json().await?;
        let records = records(modules, fetched_at);
        self.identities.load_cached(&records);
        let mut writes = Vec::with_capacity(records.len());
        for r in &records {
            let key = format!(
                "{}/{}",
                r.device_id,
                r.module_id.as_deref().unwrap_or_default()
            );
            writes.push(
                IDENTITIES
                    .put(key, r)
                    .map_err(|e| RegistryError::Store(e.to_string()))?,
            );
        }
        if !writes.is_empty() {
            self.store
                .kv(writes)
                .await
                .map_err(|e| RegistryError::Store(e.to_string()))?;
        }
        Ok(records.len())
    }

    /// Reads once and logs the outcome.
    pub async fn refresh_logged(&self) {
        match self.refresh().await {
            Ok(n) => tracing::info!(identities = n, "identity cache refreshed from the registry"),
            Err(e) => {
                tracing::warn!(error = %e, "reading the registry failed; using the cached identities")
            }
        }
    }

    /// Re-reads every refresh period or on request, until `stop` (the first read is the
    /// caller's, before it starts serving).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.settings.refresh) => {}
                () = self.wanted.notified() => {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(MIN_GAP) => {}
                    }
                }
            }
            self.refresh_logged().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_symmetric_key_modules_become_cached_identities() {
        let json = serde_json::json!([
            {"moduleId": "sensor", "deviceId": "edge", "generationId": "g1",
             "authentication": {"type": "sas", "symmetricKey": {"primaryKey": "cA==", "secondaryKey": "cw=="}}},
            {"moduleId": "$edgeAgent", "deviceId": "edge", "authentication": {"type": "none", "symmetricKey": {}}},
            {"moduleId": "x509", "deviceId": "edge", "authentication": {"type": "selfSigned"}}
        ]);
        let modules: Vec<ModuleJson> = serde_json::from_value(json).unwrap();
        let records = records(modules, Timestamp::from_unix_millis(0));
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].module_id.as_deref(), Some("sensor"));
        assert_eq!(records[0].generation_id.as_deref(), Some("g1"));
    }
}
