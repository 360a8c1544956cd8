//! The hub's identity registry as the edge device itself may use it: create, update, read, list
//! and delete its own module identities (`/devices/{d}/modules[/{m}]`) with the *device's* SAS
//! token. This is the flow aziot-identity-service uses against Azure IoT Hub
//! (`reference/iot-hub-protocols.md` §3.2 item 2, §7), so it works against ours and Azure's.

use std::time::Duration;

use ironedge_protocol::{KeyPair, SymmetricKey, encode_component};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, IF_MATCH};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::provisioning::DeviceCredentials;

/// The api-version aziot-identity-service uses for device-scoped module CRUD.
pub const API_VERSION: &str = "2017-11-08-preview";
/// `managedBy` of module identities the edge runtime creates (`Constants.ModuleIdentityEdgeManagedByValue`).
pub const MANAGED_BY_EDGE: &str = "IotEdge";

/// A failed registry call.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request did not complete (hub unreachable, TLS failure).
    #[error("hub registry unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    /// The hub refused.
    #[error("hub registry answered {status} to {operation}: {message}")]
    Status {
        /// What was attempted.
        operation: String,
        /// HTTP status.
        status: StatusCode,
        /// The IoT Hub error message.
        message: String,
    },
    /// The answer is not the JSON expected.
    #[error("unexpected answer from the hub registry to {operation}: {reason}")]
    Decode {
        /// What was attempted.
        operation: String,
        /// What is wrong.
        reason: String,
    },
    /// The TLS set-up failed.
    #[error("TLS set-up for the hub registry failed: {0}")]
    Tls(String),
}

impl RegistryError {
    /// True when the hub could not be reached at all (retry later; the device is offline).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Transport(_))
            || matches!(self, Self::Status { status, .. } if status.is_server_error())
    }
}

/// A module identity as the registry returns it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleIdentity {
    /// Module id.
    pub module_id: String,
    /// Changes when the identity is deleted and created again.
    #[serde(default)]
    pub generation_id: String,
    /// Etag of the identity.
    #[serde(default)]
    pub etag: String,
    /// Who manages it (`IotEdge` for edge runtime modules).
    #[serde(default)]
    pub managed_by: Option<String>,
    /// Credentials.
    #[serde(default)]
    pub authentication: Authentication,
}

impl std::fmt::Debug for ModuleIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleIdentity")
            .field("module_id", &self.module_id)
            .field("generation_id", &self.generation_id)
            .field("managed_by", &self.managed_by)
            .field("auth_type", &self.authentication.kind)
            .finish_non_exhaustive()
    }
}

impl ModuleIdentity {
    /// True when the edge runtime manages this identity (case-insensitively `IotEdge`).
    pub fn is_edge_managed(&self) -> bool {
        self.managed_by
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(MANAGED_BY_EDGE))
    }

    /// True when the registry holds exactly `keys` as this identity's SAS keys.
    pub fn has_keys(&self, keys: &KeyPair) -> bool {
        let Some(sym) = &self.authentication.symmetric_key else {
            return false;
        };
        self.authentication.kind.eq_ignore_ascii_case("sas")
            && sym.primary_key.as_deref() == Some(&keys.primary.to_base64())
            && sym.secondary_key.as_deref() == Some(&keys.secondary.to_base64())
    }
}

/// `authentication` of an identity.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// `sas`, `selfSigned`, `certificateAuthority` or `none`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// SAS keys.
    #[serde(default)]
    pub symmetric_key: Option<SymmetricKeys>,
}

impl std::fmt::Debug for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authentication")
            .field("kind", &self.kind)
            .field(
                "symmetric_key",
                &self.symmetric_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl std::fmt::Debug for SymmetricKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKeys(<redacted>)")
    }
}

/// `authentication.symmetricKey`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeys {
    /// Base64 primary key.
    #[serde(default)]
    pub primary_key: Option<String>,
    /// Base64 secondary key.
    #[serde(default)]
    pub secondary_key: Option<String>,
}

/// A registry client acting as the edge device.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    device: DeviceCredentials,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base)
            .field("device", &self.device.device_id)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0)
}

impl RegistryClient {
    /// A client for the hub at `base_url` (`https://{HostName}` for IoT Hub) trusting `trust_pem`.
    pub fn new(
        base_url: &str,
        trust_pem: &str,
        device: DeviceCredentials,
    ) -> Result<Self, RegistryError> {
        ironedge_pki::install_default_provider();
        let tls = ironedge_pki::client_config(trust_pem, None)
            .map_err(|e| RegistryError::Tls(e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            device,
        })
    }

    fn url(&self, module_id: Option<&str>) -> String {
        let device = encode_component(&self.device.device_id);
        match module_id {
            Some(m) => format!(
                "{}/devices/{device}/modules/{}?api-version={API_VERSION}",
                self.base,
                encode_component(m)
            ),
            None => format!(
                "{}/devices/{device}/modules?api-version={API_VERSION}",
                self.base
            ),
        }
    }

    fn token(&self) -> String {
        self.device.token(unix_now() + 300)
    }

    async fn check(
        operation: String,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, RegistryError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("Message")
                    .or_else(|| v.get("message"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or(body);
        Err(RegistryError::Status {
            operation,
            status,
            message,
        })
    }

    async fn decode<T: serde::de::DeserializeOwned>(
        operation: String,
        response: reqwest::Response,
    ) -> Result<T, RegistryError> {
        let bytes = response.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Decode {
            operation,
            reason: e.to_string(),
        })
    }

    /// The device's module identities.
    pub async fn list_modules(&self) -> Result<Vec<ModuleIdentity>, RegistryError> {
        let operation = "list modules".to_string();
        let response = self
            .http
            .get(self.url(None))
            .header(AUTHORIZATION, self.token())
            .send()
            .await?;
        let response = Self::check(operation.clone(), response).await?;
        Self::decode(operation, response).await
    }

    /// One module identity, `None` when it does not exist.
    pub async fn get_module(
        &self,
        module_id: &str,
    ) -> Result<Option<ModuleIdentity>, RegistryError> {
        let operation = format!("get module {module_id}");
        let response = self
            .http
            .get(self.url(Some(module_id)))
            .header(AUTHORIZATION, self.token())
            .send()
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = Self::check(operation.clone(), response).await?;
        Self::decode(operation, response).await.map(Some)
    }

    /// Creates module `module_id` with `keys`, or (when `exists`) replaces its credentials
    /// unconditionally (`If-Match: *`), marking it managed by the edge runtime.
    pub async fn put_module(
        &self,
        module_id: &str,
        keys: &KeyPair,
        exists: bool,
    ) -> Result<ModuleIdentity, RegistryError> {
        let operation = format!("put module {module_id}");
        let body = json!({
            "moduleId": module_id,
            "deviceId": self.device.device_id,
            "managedBy": MANAGED_BY_EDGE,
            "authentication": {
                "type": "sas",
                "symmetricKey": {
                    "primaryKey": keys.primary.to_base64(),
                    "secondaryKey": keys.secondary.to_base64(),
                },
            },
        });
        let mut request = self
            .http
            .put(self.url(Some(module_id)))
            .header(AUTHORIZATION, self.token())
            .json(&body);
        if exists {
            request = request.header(IF_MATCH, "\"*\"");
        }
        let response = Self::check(operation.clone(), request.send().await?).await?;
        Self::decode(operation, response).await
    }

    /// Deletes a module identity; a missing one is not an error.
    pub async fn delete_module(&self, module_id: &str) -> Result<(), RegistryError> {
        let operation = format!("delete module {module_id}");
        let response = self
            .http
            .delete(self.url(Some(module_id)))
            .header(AUTHORIZATION, self.token())
            .header(IF_MATCH, "\"*\"")
            .send()
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Self::check(operation, response).await.map(|_| ())
    }
}

/// Parses a stored base64 key pair.
pub fn key_pair(primary: &str, secondary: &str) -> Option<KeyPair> {
    Some(KeyPair {
        primary: SymmetricKey::from_base64(primary).ok()?,
        secondary: SymmetricKey::from_base64(secondary).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_managed_identities_are_recognised_in_any_case() {
        let mut m: ModuleIdentity = serde_json::from_value(json!({
            "moduleId": "sensor", "generationId": "g", "etag": "e", "managedBy": "iotEdge",
            "authentication": {"type": "none"}
        }))
        .unwrap();
        assert!(m.is_edge_managed());
        m.managed_by = Some("someone-else".into());
        assert!(!m.is_edge_managed());
        m.managed_by = None;
        assert!(!m.is_edge_managed());
    }

    #[test]
    fn keys_match_only_when_both_are_the_ones_given() {
        let keys = KeyPair::generate();
        let m: ModuleIdentity = serde_json::from_value(json!({
            "moduleId": "sensor",
            "authentication": {"type": "sas", "symmetricKey": {
                "primaryKey": keys.primary.to_base64(), "secondaryKey": keys.secondary.to_base64()}}
        }))
        .unwrap();
        assert!(m.has_keys(&keys));
        assert!(!m.has_keys(&KeyPair::generate()));
        assert!(!format!("{m:?}").contains(&keys.primary.to_base64()));
    }
}
