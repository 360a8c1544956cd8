//! Watches the device's `EdgeDeployment` (`ironedge.io/v1`) and applies its `spec.routes` and
//! `spec.storeAndForward`. The agent writes that resource from the `$edgeHub` desired properties,
//! so routes change here without a cloud connection and without dropping MQTT connections.
//!
//! The resource is read as a dynamic object: only the two spec fields the edge hub needs are
//! decoded, so a newer controller schema with more fields never breaks the hub.

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::config_source::apply;
use crate::hub::Hub;

/// Which `EdgeDeployment` to watch.
#[derive(Clone)]
pub struct KubeSource {
    /// A client for the cluster.
    pub client: kube::Client,
    /// The device namespace.
    pub namespace: String,
    /// The resource name; `None` takes the (single) one in the namespace.
    pub name: Option<String>,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The `EdgeDeployment` kind.
pub fn edge_deployment_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "ironedge.io",
        "v1",
        "EdgeDeployment",
    ))
}

/// The routing part of an `EdgeDeployment` spec.
pub fn hub_config_from(object: &DynamicObject) -> Result<HubConfig, serde_json::Error> {
    let spec = object
        .data
        .get("spec")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    serde_json::from_value(spec)
}

impl KubeSource {
    /// Applies every version of the resource until `stop`.
    pub async fn run(self, hub: Hub, stop: CancellationToken) {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &edge_deployment_resource(),
        );
        let mut config = watcher::Config::default();
        if let Some(name) = &self.name {
            config = config.fields(&format!("metadata.name={name}"));
        }
        let stream = watcher::watcher(api, config).default_backoff();
        futures::pin_mut!(stream);
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(Event::Apply(object) | Event::InitApply(object))) => {
                    let name = object.metadata.name.clone().unwrap_or_default();
                    match hub_config_from(&object) {
                        Ok(config) => {
                            let origin = format!("EdgeDeployment {}/{name}", self.namespace);
                            apply(&hub, &config, &origin).await;
                        }
                        Err(e) => {
                            tracing::error!(name, error = %e, "EdgeDeployment routes are malformed; keeping the running routes")
                        }
                    }
                }
                Some(Ok(Event::Delete(object))) => {
                    tracing::warn!(
                        name = object.metadata.name.as_deref().unwrap_or(""),
                        "EdgeDeployment deleted; keeping the last routes"
                    );
                }
                Some(Ok(Event::Init)) => {}
                // The initial list is complete: without an EdgeDeployment, no routes is the truth.
                Some(Ok(Event::InitDone)) => hub.mark_configured(),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching EdgeDeployments failed; retrying")
                }
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_store_settings_are_read_from_the_spec() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "ironedge.io/v1",
            "kind": "EdgeDeployment",
            "metadata": {"name": "dev1", "namespace": "dev1"},
            "spec": {
                "deviceId": "dev1",
                "hubHostName": "hub",
                "modules": [],
                "routes": {"r1": {"route": "FROM /* INTO $upstream", "priority": 1, "timeToLiveSecs": 30}},
                "storeAndForward": {"timeToLiveSecs": 7200}
            }
        }))
        .unwrap();
        let config = hub_config_from(&object).unwrap();
        assert_eq!(config.routes.len(), 1);
        assert_eq!(config.store_and_forward.unwrap().time_to_live_secs, 7200);
        assert!(config.compile().is_ok());
    }
}
