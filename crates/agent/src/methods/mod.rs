//! `$edgeAgent` direct methods (`reference/iotedge-runtime.md` §4.8): `ping`, `RestartModule`
//! and `GetModuleLogs`, matched case-insensitively. Every payload carries `schemaVersion` with
//! major version 1. Answers: 200 with the payload; 400 `{message}` for a bad request or an unknown
//! method; 500 `{message}` when something failed on the device.

pub mod get_module_logs;
pub mod logs;
pub mod ping;
pub mod restart_module;
pub mod time_filter;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::metrics::{MethodLabels, Metrics};

/// A method's failure: the status to answer and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MethodError {
    /// The request is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// The device could not do it (500).
    #[error("{0}")]
    Failed(String),
}

impl MethodError {
    /// The status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Failed(_) => 500,
        }
    }
}

/// A module as the methods address it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRef {
    /// Name in the manifest (`edgeHub`, `tempSensor`).
    pub name: String,
    /// Kubernetes object (and container) name.
    pub object: String,
}

/// What the methods need to know and reach.
#[derive(Debug, Clone)]
pub struct MethodContext {
    /// Pods of the device namespace.
    pub pods: Api<Pod>,
    /// The instance label of the device's objects (label-safe EdgeDeployment name).
    pub instance: String,
    /// Module name → module, for the current deployment (without `edgeAgent`).
    pub modules: Arc<RwLock<BTreeMap<String, ModuleRef>>>,
    /// The agent's own pod, when it runs in one.
    pub agent_pod: Option<String>,
    /// Hub name and device id, for JSON log records.
    pub hub_name: String,
    /// The device id.
    pub device_id: String,
}

impl MethodContext {
    /// The modules of the current deployment.
    pub fn modules(&self) -> BTreeMap<String, ModuleRef> {
        match self.modules.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The live pods of a module, newest first.
    pub async fn module_pods(&self, module: &ModuleRef) -> Result<Vec<Pod>, MethodError> {
        let selector = format!(
            "{}={},{}={}",
            ironedge_controller::labels::INSTANCE,
            self.instance,
            ironedge_controller::labels::MODULE,
            module.object
        );
        let mut pods: Vec<Pod> = self
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| MethodError::Failed(format!("listing the pods of {}: {e}", module.name)))?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        pods.sort_by(|a, b| {
            b.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&a.metadata.creation_timestamp.as_ref().map(|t| t.0))
        });
        Ok(pods)
    }
}

/// Checks a payload's `schemaVersion`: required, major 1 (a minor mismatch only warns).
pub fn check_schema_version(payload: &Value) -> Result<(), MethodError> {
    let version = payload
        .get("schemaVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| MethodError::BadRequest("schemaVersion is required (\"1.0\")".into()))?;
    let major = version.split('.').next().unwrap_or_default();
    if major != "1" {
        return Err(MethodError::BadRequest(format!(
            "schemaVersion {version:?} is not supported; use 1.x"
        )));
    }
    if version != "1.0" {
        tracing::warn!(version, "direct method with a newer minor schema version");
    }
    Ok(())
}

/// Answers one method call: `(status, payload)`.
pub async fn dispatch(
    ctx: &MethodContext,
    name: &str,
    payload: &[u8],
    metrics: &Metrics,
) -> (u16, Value) {
    let request = if payload.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Null)
    } else {
        serde_json::from_slice::<Value>(payload)
            .map_err(|e| MethodError::BadRequest(format!("the payload is not JSON: {e}")))
    };
    let result = match (name.to_ascii_lowercase().as_str(), request) {
        (_, Err(e)) => Err(e),
        ("ping", Ok(_)) => ping::ping(),
        ("restartmodule", Ok(p)) => restart_module::restart_module(ctx, &p).await,
        ("getmodulelogs", Ok(p)) => get_module_logs::get_module_logs(ctx, &p).await,
        (other, Ok(_)) => Err(MethodError::BadRequest(format!(
            "unknown method {other:?}; the agent answers ping, RestartModule and GetModuleLogs"
        ))),
    };
    let (status, body) = match result {
        Ok(body) => (200, body),
        Err(e) => {
            tracing::warn!(method = name, error = %e, "direct method failed");
            (e.status(), json!({ "message": e.to_string() }))
        }
    };
    metrics
        .methods
        .get_or_create(&MethodLabels {
            method: name.to_ascii_lowercase(),
            status: status.to_string(),
        })
        .inc();
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_versions_need_major_one() {
        assert!(check_schema_version(&json!({"schemaVersion": "1.0"})).is_ok());
        assert!(check_schema_version(&json!({"schemaVersion": "1.1"})).is_ok());
        assert!(check_schema_version(&json!({"schemaVersion": "2.0"})).is_err());
        assert!(check_schema_version(&json!({})).is_err());
    }
}
