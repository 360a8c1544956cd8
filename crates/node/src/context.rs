//! What every pod worker shares: the API client, settings, the pod network, the service table,
//! logs and the mount points created on the host; plus the API reads pods need (their Secrets,
//! ConfigMaps and service-account tokens) and events.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource};
use tokio::sync::watch;

use crate::env::references;
use crate::error::ConfigError;
use crate::logs::LogStore;
use crate::network::{IpAllocator, NodeNetwork};
use crate::paths::CreatedPaths;
use crate::process::Tools;
use crate::service_table::ServiceTable;
use crate::settings::NodeSettings;
use crate::volumes::{TokenSource, service_account};

/// The Services as last seen, for hosts files, DNAT rules and service link variables.
#[derive(Debug, Default)]
pub struct ServiceSnapshot {
    /// The resolved table.
    pub table: ServiceTable,
    /// The raw Services.
    pub services: Vec<Service>,
}

/// Shared by the node and all its pod workers.
pub struct NodeContext {
    /// API client (acting as the node).
    pub client: kube::Client,
    /// Settings.
    pub settings: NodeSettings,
    /// The pod network.
    pub network: NodeNetwork,
    /// Pod addresses in use.
    pub ips: Mutex<IpAllocator>,
    /// Host tools for launching containers.
    pub tools: Tools,
    /// Container logs.
    pub logs: Arc<LogStore>,
    /// Latest Services.
    pub services: watch::Receiver<Arc<ServiceSnapshot>>,
    /// Mount points created on the host (`None` once released at shutdown).
    pub paths: Mutex<Option<CreatedPaths>>,
    /// Event recorder.
    pub recorder: Recorder,
}

impl std::fmt::Debug for NodeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeContext")
            .field("node", &self.settings.node_name)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl NodeContext {
    /// The node's address as pods see it in `status.hostIP`.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.settings.address
    }

    /// Makes sure a mount point exists, recording it when the node had to create it.
    pub fn ensure_path(&self, path: &std::path::Path, dir: bool) -> std::io::Result<()> {
        let mut guard = self
            .paths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.as_mut() {
            Some(paths) => paths.ensure(path, dir),
            None => Err(std::io::Error::other("the node is stopping")),
        }
    }

    /// Locks the IP allocator.
    pub fn ips(&self) -> std::sync::MutexGuard<'_, IpAllocator> {
        self.ips
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes an event about `pod` (failures are only logged).
    pub async fn event(&self, pod: &Pod, warning: bool, reason: &str, note: String) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &pod.object_ref(&())).await {
            tracing::debug!(error = %e, reason, "publishing an event failed");
        }
    }

    /// The Secrets and ConfigMaps `pod` references (missing ones are simply absent).
    pub async fn fetch_references(
        &self,
        pod: &Pod,
    ) -> Result<(BTreeMap<String, Secret>, BTreeMap<String, ConfigMap>), ConfigError> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let refs = references(pod);
        let secrets_api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        let cms_api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
        let api_err = |what: String| {
            move |e: kube::Error| ConfigError::Api {
                what,
                reason: e.to_string(),
            }
        };
        let mut secrets = BTreeMap::new();
        for name in refs.secrets {
            if let Some(s) = secrets_api
                .get_opt(&name)
                .await
                .map_err(api_err(format!("secret {name:?}")))?
            {
                secrets.insert(name, s);
            }
        }
        let mut cms = BTreeMap::new();
        for name in refs.config_maps {
            if let Some(c) = cms_api
                .get_opt(&name)
                .await
                .map_err(api_err(format!("configmap {name:?}")))?
            {
                cms.insert(name, c);
            }
        }
        Ok((secrets, cms))
    }

    /// Requests a token for the pod's service account (TokenRequest, bound to the pod); returns it
    /// with its expiry.
    pub async fn request_token(
        &self,
        pod: &Pod,
        source: &TokenSource,
    ) -> Result<(String, Timestamp), ConfigError> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let sa = service_account(pod);
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &ns);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: source.audience.iter().cloned().collect(),
                expiration_seconds: Some(source.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..TokenRequest::default()
        };
        let answer: TokenRequest = api
            .create_subresource("token", &sa, &PostParams::default(), &request)
            .await
            .map_err(|e| ConfigError::Token {
                service_account: sa.clone(),
                reason: e.to_string(),
            })?;
        let status = answer.status.ok_or_else(|| ConfigError::Token {
            service_account: sa.clone(),
            reason: "the answer has no status".into(),
        })?;
        Ok((status.token, status.expiration_timestamp.0))
    }
}
