//! What the agent writes into the device namespace for a deployment: the EdgeDeployment (an
//! unchanged manifest writes nothing) and one `kubernetes.io/dockerconfigjson`
//! Secret per registry credential (owned by the EdgeDeployment; stale ones are removed).

use std::collections::{BTreeMap, BTreeSet};

use ironedge_controller::crd::{EdgeDeployment, EdgeDeploymentSpec};
use ironedge_controller::from_manifest::pull_secrets;
use ironedge_controller::translate::registry::RegistryCredential;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::error::Result;
use crate::labels;

const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";

/// Writes the device's EdgeDeployment and its pull Secrets.
#[derive(Clone)]
pub struct Cluster {
    eds: Api<EdgeDeployment>,
    secrets: Api<Secret>,
    name: String,
    device_id: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Writes EdgeDeployment `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str, device_id: &str) -> Self {
        Self {
            eds: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client, namespace),
            name: name.to_string(),
            device_id: device_id.to_string(),
        }
    }

    /// The EdgeDeployment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The EdgeDeployment as the cluster has it.
    pub async fn current(&self) -> Result<Option<EdgeDeployment>> {
        Ok(self.eds.get_opt(&self.name).await?)
    }

    /// Applies `spec` and the pull Secrets of `credentials`; removes pull Secrets no longer used.
    pub async fn apply(
        &self,
        spec: &EdgeDeploymentSpec,
        credentials: &[RegistryCredential],
    ) -> Result<EdgeDeployment> {
        let mut metadata_labels = labels::agent_labels("edge-deployment");
        metadata_labels.insert(
            ironedge_controller::labels::DEVICE.to_string(),
            ironedge_controller::names::label_value(&self.device_id),
        );
        let ed = self.write(spec, &metadata_labels).await?;
        let wanted = pull_secrets(&ed, credentials);
        let names: BTreeSet<String> = wanted.iter().map(ResourceExt::name_any).collect();
        for secret in &wanted {
            self.secrets
                .patch(
                    &secret.name_any(),
                    &PatchParams::apply(labels::FIELD_MANAGER).force(),
                    &Patch::Apply(secret),
                )
                .await?;
        }
        self.prune_pull_secrets(&ed, &names).await?;
        Ok(ed)
    }

    /// Creates or replaces the EdgeDeployment; an equal spec writes nothing. A replace (with the
    /// resourceVersion read, retried on conflict) rather than server-side apply: Kubernetes 1.20's
    /// apply turns a map or list it empties into null, which the schema refuses.
    async fn write(
        &self,
        spec: &EdgeDeploymentSpec,
        metadata_labels: &BTreeMap<String, String>,
    ) -> Result<EdgeDeployment> {
        for _ in 0..10 {
            let Some(mut current) = self.eds.get_opt(&self.name).await? else {
                let mut ed = EdgeDeployment::new(&self.name, spec.clone());
                ed.metadata.labels = Some(metadata_labels.clone());
                match self.eds.create(&PostParams::default(), &ed).await {
                    Ok(created) => return Ok(created),
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            let labels = current.metadata.labels.get_or_insert_with(BTreeMap::new);
            let labels_current = metadata_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v));
            if current.spec == *spec && labels_current {
                return Ok(current);
            }
            labels.extend(metadata_labels.clone());
            current.spec = spec.clone();
            current.metadata.managed_fields = None;
            match self
                .eds
                .replace(&self.name, &PostParams::default(), &current)
                .await
            {
                Ok(replaced) => return Ok(replaced),
                // The controller wrote status in between; read again.
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(crate::Error::Stored {
            kind: "EdgeDeployment",
            name: self.name.clone(),
            reason: "it kept changing while the agent wrote it".into(),
        })
    }

    /// Deletes dockerconfigjson Secrets owned by `ed` that are not in `keep`.
    async fn prune_pull_secrets(&self, ed: &EdgeDeployment, keep: &BTreeSet<String>) -> Result<()> {
        let Some(uid) = ed.uid() else {
            return Ok(());
        };
        let selector = format!(
            "{}={}",
            ironedge_controller::labels::INSTANCE,
            ironedge_controller::names::label_value(&self.name)
        );
        let list = self
            .secrets
            .list(&ListParams::default().labels(&selector))
            .await?;
        for secret in list {
            let owned = secret.owner_references().iter().any(|o| o.uid == uid);
            if owned
                && secret.type_.as_deref() == Some(DOCKER_CONFIG_JSON)
                && !keep.contains(&secret.name_any())
            {
                match self
                    .secrets
                    .delete(&secret.name_any(), &DeleteParams::default())
                    .await
                {
                    Ok(_) => {
                        tracing::info!(secret = %secret.name_any(), "removed an unused image pull Secret")
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

/// Module id → object name for the modules of `spec` (what the controller names them).
pub fn object_names(spec: &EdgeDeploymentSpec) -> BTreeMap<String, String> {
    ironedge_controller::names::unique_names(
        spec.modules.iter().map(|m| m.name.as_str()),
        ironedge_controller::names::module_object_name,
    )
    .unwrap_or_default()
}
