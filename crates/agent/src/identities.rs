//! Module identities: the agent creates, updates and deletes the hub identities of the modules it
//! runs, with keys it generates, and keeps those keys in Secrets of the device namespace.
//!
//! Every module of the deployment, plus `$edgeAgent` and `$edgeHub`, gets an identity managed by
//! the edge runtime (`managedBy: IotEdge`). Keys never leave the namespace: modules get SAS
//! signatures from the workload API, the edge hub gets the keys it must verify tokens with from
//! the [`EDGEHUB_IDENTITIES_SECRET`]. Only identities marked as edge-managed are ever deleted, so
//! identities someone created by hand for the device are left alone.
//!
//! Deciding what to do ([`plan`]) is pure; [`IdentityManager`] reads and writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use ironedge_controller::names;
use ironedge_protocol::KeyPair;
use ironedge_workload::{MemoryKeyStore, ModuleKeys};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::error::{Error, Result};
use crate::labels;
use crate::registry::{ModuleIdentity, RegistryClient, RegistryError, key_pair};

/// The agent's own identity.
pub const EDGE_AGENT: &str = "$edgeAgent";
/// The edge hub's identity.
pub const EDGE_HUB: &str = "$edgeHub";
/// Secret the edge hub mounts: every identity it authenticates (`identities.json`).
pub const EDGEHUB_IDENTITIES_SECRET: &str = "ironedge-edgehub-identities";
/// Key of the identities file in [`EDGEHUB_IDENTITIES_SECRET`].
pub const EDGEHUB_IDENTITIES_KEY: &str = "identities.json";

/// A module identity whose keys the agent holds.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredIdentity {
    /// Module id.
    pub module_id: String,
    /// Generation id in the hub (`IOTEDGE_MODULEGENERATIONID`).
    pub generation_id: String,
    /// The keys.
    pub keys: KeyPair,
}

impl std::fmt::Debug for StoredIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredIdentity")
            .field("module_id", &self.module_id)
            .field("generation_id", &self.generation_id)
            .finish_non_exhaustive()
    }
}

/// What to write for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Create it in the hub with fresh keys.
    Create,
    /// It exists in the hub without our keys (new to us, or keys changed): set fresh keys.
    Rekey,
    /// The hub lost it (deleted by hand): create it again with the stored keys.
    Recreate,
    /// Same keys, but the hub reports another generation: adopt it.
    Adopt(String),
}

/// What to do so that the hub and the Secrets hold exactly the desired identities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityPlan {
    /// Identities to write, by module id.
    pub put: Vec<(String, Put)>,
    /// Edge-managed identities to delete from the hub.
    pub delete_in_hub: Vec<String>,
    /// Stored keys to forget (Secret deleted).
    pub forget: Vec<String>,
}

impl IdentityPlan {
    /// True when nothing needs doing.
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete_in_hub.is_empty() && self.forget.is_empty()
    }
}

fn is_system(module_id: &str) -> bool {
    module_id == EDGE_AGENT || module_id == EDGE_HUB
}

/// Decides the writes. `hub` is `None` when the registry could not be listed (offline): then
/// only identities the agent has no keys for are created, and nothing is deleted in the hub.
pub fn plan(
    desired: &BTreeSet<String>,
    stored: &BTreeMap<String, StoredIdentity>,
    hub: Option<&[ModuleIdentity]>,
) -> IdentityPlan {
    let mut out = IdentityPlan::default();
    let wanted: BTreeSet<&str> = desired
        .iter()
        .map(String::as_str)
        .chain([EDGE_AGENT, EDGE_HUB])
        .collect();
    for id in &wanted {
        let mine = stored.get(*id);
        let Some(hub) = hub else {
            if mine.is_none() {
                out.put.push(((*id).to_string(), Put::Create));
            }
            continue;
        };
        let theirs = hub.iter().find(|m| m.module_id == *id);
        let action = match (mine, theirs) {
            (Some(s), Some(h)) if h.has_keys(&s.keys) => {
                (h.generation_id != s.generation_id).then(|| Put::Adopt(h.generation_id.clone()))
            }
            (Some(_), None) => Some(Put::Recreate),
            (_, Some(_)) => Some(Put::Rekey),
            (None, None) => Some(Put::Create),
        };
        if let Some(action) = action {
            out.put.push(((*id).to_string(), action));
        }
    }
    if let Some(hub) = hub {
        out.delete_in_hub = hub
            .iter()
            .filter(|m| m.is_edge_managed() && !is_system(&m.module_id))
            .filter(|m| !wanted.contains(m.module_id.as_str()))
            .map(|m| m.module_id.clone())
            .collect();
    }
    out.forget = stored
        .keys()
        .filter(|id| !wanted.contains(id.as_str()))
        .cloned()
        .collect();
    out
}

/// Name of the Secret holding a module's keys.
pub fn secret_name(module_id: &str) -> String {
    format!("ironedge-identity-{}", names::module_object_name(module_id))
}

/// Reads and writes module identities in the hub and their keys in Secrets.
pub struct IdentityManager {
    secrets: Api<Secret>,
    registry: RegistryClient,
    device_id: String,
    keys: MemoryKeyStore,
    stored: Mutex<BTreeMap<String, StoredIdentity>>,
}

impl std::fmt::Debug for IdentityManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityManager")
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// What one [`IdentityManager::ensure`] changed, for events and logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IdentityChanges {
    /// Identities created or given new keys.
    pub written: Vec<String>,
    /// Identities deleted from the hub.
    pub deleted: Vec<String>,
}

impl IdentityManager {
    /// A manager writing Secrets through `secrets` (the device namespace) and signing with `keys`.
    pub fn new(
        secrets: Api<Secret>,
        registry: RegistryClient,
        device_id: String,
        keys: MemoryKeyStore,
    ) -> Self {
        Self {
            secrets,
            registry,
            device_id,
            keys,
            stored: Mutex::new(BTreeMap::new()),
        }
    }

    fn stored(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredIdentity>> {
        match self.stored.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Loads the stored identities from their Secrets (at start, before the hub is reachable).
    pub async fn load(&self) -> Result<usize> {
        let list = self
            .secrets
            .list(&ListParams::default().labels(&labels::identity_selector()))
            .await?;
        let mut loaded = 0;
        for secret in list {
            match parse_secret(&secret) {
                Some(identity) => {
                    self.remember(identity);
                    loaded += 1;
                }
                None => tracing::warn!(
                    secret = %secret.name_any(),
                    "identity Secret has unusable content; it will be replaced"
                ),
            }
        }
        Ok(loaded)
    }

    fn remember(&self, identity: StoredIdentity) {
        self.keys.insert(
            &identity.module_id,
            ModuleKeys::new(
                Some(identity.generation_id.clone()),
                identity.keys.primary.as_bytes().to_vec(),
                identity.keys.secondary.as_bytes().to_vec(),
            ),
        );
        self.stored().insert(identity.module_id.clone(), identity);
    }

    /// The keys of `module_id`, if the agent holds them.
    pub fn keys(&self, module_id: &str) -> Option<KeyPair> {
        self.stored().get(module_id).map(|s| s.keys.clone())
    }

    /// Module id → generation id of every identity held.
    pub fn generation_ids(&self) -> BTreeMap<String, String> {
        self.stored()
            .iter()
            .map(|(id, s)| (id.clone(), s.generation_id.clone()))
            .collect()
    }

    /// Makes the hub and the Secrets hold `desired` (plus the system identities); with `prune`,
    /// also removes edge-managed identities that are not desired. When the hub cannot be reached,
    /// identities already held are kept and the call succeeds unless a new one is needed.
    pub async fn ensure(&self, desired: &BTreeSet<String>, prune: bool) -> Result<IdentityChanges> {
        let hub = match self.registry.list_modules().await {
            Ok(list) => Some(list),
            Err(e) if e.is_unreachable() => {
                tracing::warn!(error = %e, "hub registry unreachable; keeping the identities held");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let snapshot = self.stored().clone();
        let mut plan = plan(desired, &snapshot, hub.as_deref());
        if !prune {
            plan.delete_in_hub.clear();
            plan.forget.clear();
        }
        let mut changes = IdentityChanges::default();
        for (id, action) in &plan.put {
            let exists = hub
                .as_ref()
                .is_none_or(|h| h.iter().any(|m| &m.module_id == id));
            let identity = match action {
                Put::Adopt(generation) => snapshot.get(id).map(|s| StoredIdentity {
                    generation_id: generation.clone(),
                    ..s.clone()
                }),
                Put::Recreate => match snapshot.get(id) {
                    Some(s) => Some(self.put(id, s.keys.clone(), false).await?),
                    None => None,
                },
                Put::Create | Put::Rekey => Some(
                    self.put(id, KeyPair::generate(), exists && hub.is_some())
                        .await?,
                ),
            };
            if let Some(identity) = identity {
                self.save(&identity).await?;
                self.remember(identity);
                changes.written.push(id.clone());
            }
        }
        for id in &plan.delete_in_hub {
            self.registry.delete_module(id).await?;
            changes.deleted.push(id.clone());
        }
        for id in &plan.forget {
            self.forget(id).await?;
        }
        if !plan.is_empty() {
            self.publish_edgehub_identities().await?;
        }
        Ok(changes)
    }

    /// Creates or re-keys `id` in the hub.
    async fn put(&self, id: &str, keys: KeyPair, exists: bool) -> Result<StoredIdentity> {
        let identity = match self.registry.put_module(id, &keys, exists).await {
            Ok(identity) => identity,
            // The identity appeared since the list (or the list was not available): update it.
            Err(RegistryError::Status { status, .. }) if status.as_u16() == 409 && !exists => {
                self.registry.put_module(id, &keys, true).await?
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(module = id, generation = %identity.generation_id, "module identity written to the hub");
        Ok(StoredIdentity {
            module_id: id.to_string(),
            generation_id: identity.generation_id,
            keys,
        })
    }

    async fn save(&self, identity: &StoredIdentity) -> Result<()> {
        let name = secret_name(&identity.module_id);
        let data = BTreeMap::from([
            (
                "moduleId".to_string(),
                ByteString(identity.module_id.clone().into_bytes()),
            ),
            (
                "generationId".to_string(),
                ByteString(identity.generation_id.clone().into_bytes()),
            ),
            (
                "primaryKey".to_string(),
                ByteString(identity.keys.primary.to_base64().into_bytes()),
            ),
            (
                "secondaryKey".to_string(),
                ByteString(identity.keys.secondary.to_base64().into_bytes()),
            ),
        ]);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels::identity_labels()),
                annotations: Some(BTreeMap::from([(
                    ironedge_controller::labels::ORIGINAL_MODULE.to_string(),
                    identity.module_id.clone(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_string()),
            data: Some(data),
            ..Secret::default()
        };
        self.secrets
            .patch(
                &name,
                &PatchParams::apply(labels::FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await?;
        Ok(())
    }

    async fn forget(&self, id: &str) -> Result<()> {
        match self
            .secrets
            .delete(&secret_name(id), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        self.keys.remove(id);
        self.stored().remove(id);
        Ok(())
    }

    /// Writes the identities the edge hub authenticates (every held identity but the agent's).
    pub async fn publish_edgehub_identities(&self) -> Result<()> {
        let entries: Vec<_> = self
            .stored()
            .values()
            .filter(|s| s.module_id != EDGE_AGENT)
            .map(|s| {
                json!({
                    "deviceId": self.device_id,
                    "moduleId": s.module_id,
                    "primaryKey": s.keys.primary.to_base64(),
                    "secondaryKey": s.keys.secondary.to_base64(),
                })
            })
            .collect();
        let body = serde_json::to_vec(&entries).map_err(|e| Error::Stored {
            kind: "Secret",
            name: EDGEHUB_IDENTITIES_SECRET.to_string(),
            reason: e.to_string(),
        })?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(EDGEHUB_IDENTITIES_SECRET.to_string()),
                labels: Some(labels::agent_labels("edgehub-identities")),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_string()),
            data: Some(BTreeMap::from([(
                EDGEHUB_IDENTITIES_KEY.to_string(),
                ByteString(body),
            )])),
            ..Secret::default()
        };
        self.secrets
            .patch(
                EDGEHUB_IDENTITIES_SECRET,
                &PatchParams::apply(labels::FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await?;
        Ok(())
    }
}

/// Reads an identity Secret; `None` when it is incomplete.
fn parse_secret(secret: &Secret) -> Option<StoredIdentity> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| String::from_utf8(data.get(k)?.0.clone()).ok();
    Some(StoredIdentity {
        module_id: text("moduleId")?,
        generation_id: text("generationId")?,
        keys: key_pair(&text("primaryKey")?, &text("secondaryKey")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_module(id: &str, keys: &KeyPair, generation: &str, managed: bool) -> ModuleIdentity {
        serde_json::from_value(json!({
            "moduleId": id, "generationId": generation, "etag": "x",
            "managedBy": if managed { Some("IotEdge") } else { None },
            "authentication": {"type": "sas", "symmetricKey": {
                "primaryKey": keys.primary.to_base64(), "secondaryKey": keys.secondary.to_base64()}}
        }))
        .unwrap()
    }

    fn stored(id: &str, keys: &KeyPair, generation: &str) -> (String, StoredIdentity) {
        (
            id.to_string(),
            StoredIdentity {
                module_id: id.to_string(),
                generation_id: generation.to_string(),
                keys: keys.clone(),
            },
        )
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_fresh_device_creates_every_identity_including_the_system_ones() {
        let p = plan(&set(&["sensor"]), &BTreeMap::new(), Some(&[]));
        let ids: Vec<_> = p
            .put
            .iter()
            .map(|(id, a)| (id.as_str(), a.clone()))
            .collect();
        assert_eq!(
            ids,
            [
                ("$edgeAgent", Put::Create),
                ("$edgeHub", Put::Create),
                ("sensor", Put::Create)
            ]
        );
        assert!(p.delete_in_hub.is_empty() && p.forget.is_empty());
    }

    #[test]
    fn identities_in_sync_need_nothing() {
        let k = KeyPair::generate();
        let hub: Vec<_> = ["$edgeAgent", "$edgeHub", "sensor"]
            .iter()
            .map(|id| hub_module(id, &k, "g1", true))
            .collect();
        let mine: BTreeMap<_, _> = ["$edgeAgent", "$edgeHub", "sensor"]
            .iter()
            .map(|id| stored(id, &k, "g1"))
            .collect();
        assert!(plan(&set(&["sensor"]), &mine, Some(&hub)).is_empty());
    }

    #[test]
    fn system_identities_without_our_keys_are_rekeyed_and_lost_ones_recreated() {
        let k = KeyPair::generate();
        // The hub made $edgeAgent/$edgeHub with auth none; the agent holds keys for sensor,
        // which someone deleted in the hub.
        let none: Vec<ModuleIdentity> = ["$edgeAgent", "$edgeHub"]
            .iter()
            .map(|id| {
                serde_json::from_value(json!({"moduleId": id, "managedBy": "iotEdge",
                    "authentication": {"type": "none"}}))
                .unwrap()
            })
            .collect();
        let mine = BTreeMap::from([stored("sensor", &k, "g1")]);
        let p = plan(&set(&["sensor"]), &mine, Some(&none));
        assert_eq!(
            p.put,
            [
                ("$edgeAgent".to_string(), Put::Rekey),
                ("$edgeHub".to_string(), Put::Rekey),
                ("sensor".to_string(), Put::Recreate)
            ]
        );
    }

    #[test]
    fn only_edge_managed_identities_that_left_the_deployment_are_deleted() {
        let k = KeyPair::generate();
        let hub = vec![
            hub_module("$edgeAgent", &k, "g", true),
            hub_module("$edgeHub", &k, "g", true),
            hub_module("old", &k, "g", true),
            hub_module("handmade", &k, "g", false),
        ];
        let mine: BTreeMap<_, _> = [
            stored("$edgeAgent", &k, "g"),
            stored("$edgeHub", &k, "g"),
            stored("old", &k, "g"),
        ]
        .into_iter()
        .collect();
        let p = plan(&set(&[]), &mine, Some(&hub));
        assert_eq!(p.delete_in_hub, ["old"]);
        assert_eq!(p.forget, ["old"]);
        assert!(p.put.is_empty());
    }

    #[test]
    fn offline_the_held_identities_are_kept_and_nothing_is_deleted() {
        let k = KeyPair::generate();
        let mine: BTreeMap<_, _> = [
            stored("$edgeAgent", &k, "g"),
            stored("$edgeHub", &k, "g"),
            stored("sensor", &k, "g"),
        ]
        .into_iter()
        .collect();
        let p = plan(&set(&["sensor", "new"]), &mine, None);
        assert_eq!(p.put, [("new".to_string(), Put::Create)]);
        assert!(p.delete_in_hub.is_empty());
    }

    #[test]
    fn same_keys_with_a_new_generation_are_adopted() {
        let k = KeyPair::generate();
        let hub = vec![
            hub_module("$edgeAgent", &k, "g2", true),
            hub_module("$edgeHub", &k, "g", true),
        ];
        let mine: BTreeMap<_, _> = [stored("$edgeAgent", &k, "g1"), stored("$edgeHub", &k, "g")]
            .into_iter()
            .collect();
        let p = plan(&set(&[]), &mine, Some(&hub));
        assert_eq!(p.put, [("$edgeAgent".to_string(), Put::Adopt("g2".into()))]);
    }
}
