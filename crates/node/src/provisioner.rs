//! A local volume provisioner, as local clusters (kind, k3s) ship one: for every
//! PersistentVolumeClaim of the served namespaces that is Pending, unbound and asks for no
//! storage class, an empty class or [`STORAGE_CLASS`], the node creates a directory under its
//! state dir and a `local` PersistentVolume pointing at it, pre-bound to the claim and pinned to
//! this node; kube-controller-manager's PV binder completes the binding (claim `Bound`). When the
//! claim is deleted the binder marks the volume `Released`; with reclaim policy `Delete` the node
//! removes the directory and the volume, with `Retain` both stay, as with any provisioner.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::context::NodeContext;
use crate::error::{ConfigError, Error, Result};

/// The provisioner name in `pv.kubernetes.io/provisioned-by` (and for a StorageClass that wants
/// this node's volumes).
pub const PROVISIONER: &str = "ironedge.io/local-node";
/// The storage class name claims may ask for explicitly.
pub const STORAGE_CLASS: &str = "ironedge-local";
/// Label on every provisioned volume: the node that owns its directory.
pub const NODE_LABEL: &str = "ironedge.io/provisioned-on";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const DEFAULT_SIZE: &str = "1Gi";

/// The directory holding provisioned volumes.
pub fn volumes_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("persistent-volumes")
}

/// The volume name for a claim (`pvc-<claim uid>`, as dynamic provisioners name them).
pub fn volume_name(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.metadata.uid.as_ref().map(|uid| format!("pvc-{uid}"))
}

/// Whether this node provisions `pvc`: served namespace, Pending and unbound, not being
/// deleted, a file-system volume, and no storage class or one of `classes`.
pub fn wants_volume(
    pvc: &PersistentVolumeClaim,
    classes: &[String],
    serves: impl Fn(&str) -> bool,
) -> bool {
    let spec = pvc.spec.clone().unwrap_or_default();
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    let class_ok = spec
        .storage_class_name
        .as_deref()
        .is_none_or(|c| c.is_empty() || classes.iter().any(|k| k == c));
    serves(&pvc.namespace().unwrap_or_default())
        && phase == "Pending"
        && spec.volume_name.as_deref().unwrap_or_default().is_empty()
        && pvc.metadata.deletion_timestamp.is_none()
        && spec.volume_mode.as_deref().unwrap_or("Filesystem") == "Filesystem"
        && spec.selector.is_none()
        && spec.data_source.is_none()
        && class_ok
}

/// The PersistentVolume for `pvc` at `path` on node `node` with `reclaim_policy`.
pub fn persistent_volume(
    pvc: &PersistentVolumeClaim,
    node: &str,
    path: &Path,
    reclaim_policy: &str,
) -> Result<PersistentVolume, ConfigError> {
    let name = volume_name(pvc).ok_or_else(|| ConfigError::UnsupportedVolume {
        name: pvc.name_any(),
        reason: "the claim has no uid".into(),
    })?;
    let spec = pvc.spec.clone().unwrap_or_default();
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or_else(|| DEFAULT_SIZE.to_string(), |q| q.0.clone());
    let access_modes = spec
        .access_modes
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    let value = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "labels": {NODE_LABEL: node},
            "annotations": {PROVISIONED_BY: PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": size},
            "accessModes": access_modes,
            "persistentVolumeReclaimPolicy": reclaim_policy,
            "storageClassName": spec.storage_class_name.clone().unwrap_or_default(),
            "volumeMode": "Filesystem",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": pvc.namespace(),
                "name": pvc.name_any(),
                "uid": pvc.metadata.uid,
            },
            "local": {"path": path.display().to_string()},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
            ]}]}},
        },
    });
    serde_json::from_value(value).map_err(|e| ConfigError::UnsupportedVolume {
        name: pvc.name_any(),
        reason: format!("building its PersistentVolume: {e}"),
    })
}

/// The host directory of a bound volume (`local` or `hostPath`), if it has one.
pub fn host_path(pv: &PersistentVolume) -> Option<PathBuf> {
    let spec = pv.spec.as_ref()?;
    spec.local
        .as_ref()
        .map(|l| PathBuf::from(&l.path))
        .or_else(|| spec.host_path.as_ref().map(|h| PathBuf::from(&h.path)))
}

/// Whether a volume is this node's to delete now: provisioned here, Released, policy Delete.
pub fn should_delete(pv: &PersistentVolume, node: &str) -> bool {
    let ours = pv.labels().get(NODE_LABEL).map(String::as_str) == Some(node)
        && pv.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER);
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    ours && released && delete && pv.metadata.deletion_timestamp.is_none()
}

/// Where a pod's claim lives on the host: the bound volume's directory. An unbound claim is an
/// error the pod worker retries (the provisioner or an administrator binds it meanwhile).
pub async fn claim_path(ctx: &NodeContext, ns: &str, claim: &str) -> Result<PathBuf, ConfigError> {
    let err = |reason: String| ConfigError::UnsupportedVolume {
        name: claim.to_string(),
        reason,
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let pvc = claims
        .get_opt(claim)
        .await
        .map_err(|e| err(format!("reading the PersistentVolumeClaim: {e}")))?
        .ok_or_else(|| err(format!("persistentvolumeclaim {claim:?} not found")))?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let Some(volume) = volume.filter(|_| bound) else {
        return Err(err(format!(
            "persistentvolumeclaim {claim:?} is not bound yet (this node provisions claims with no storage class or a class given with --storage-class; others need their provisioner or a PersistentVolume)"
        )));
    };
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv = volumes
        .get(&volume)
        .await
        .map_err(|e| err(format!("reading PersistentVolume {volume:?}: {e}")))?;
    let path = host_path(&pv).ok_or_else(|| {
        err(format!(
            "PersistentVolume {volume:?} is neither a local nor a hostPath volume"
        ))
    })?;
    if !path.is_dir() {
        return Err(err(format!(
            "PersistentVolume {volume:?}: directory {} does not exist on this machine",
            path.display()
        )));
    }
    Ok(path)
}

/// Runs the provisioner until `stop`.
pub async fn run(ctx: Arc<NodeContext>, stop: CancellationToken) {
    let claims = claim_stream(&ctx);
    let selector = format!("{NODE_LABEL}={}", ctx.settings.node_name);
    let volumes = watcher::watcher(
        Api::<PersistentVolume>::all(ctx.client.clone()),
        watcher::Config::default().labels(&selector),
    )
    .filter_map(|ev| async move {
        match ev {
            Ok(ev) => applied(ev).map(|v| Ok(Item::Volume(Box::new(v)))),
            Err(e) => Some(Err(e)),
        }
    })
    .boxed();
    let mut events = futures::stream::select(claims, volumes);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            ev = events.next() => match ev {
                Some(Ok(Item::Claim(pvc))) => {
                    if wants_volume(&pvc, &ctx.settings.storage_classes, |ns| ctx.settings.serves(ns)) {
                        provision(&ctx, &pvc).await;
                    }
                }
                Some(Ok(Item::Volume(pv))) => {
                    if should_delete(&pv, &ctx.settings.node_name) {
                        delete_volume(&ctx, &pv).await;
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "watching claims or volumes failed; retrying"),
                None => return,
            }
        }
    }
}

enum Item {
    Claim(Box<PersistentVolumeClaim>),
    Volume(Box<PersistentVolume>),
}

type Items = futures::stream::BoxStream<'static, Result<Item, watcher::Error>>;

fn applied<K>(ev: Event<K>) -> Option<K> {
    match ev {
        Event::Apply(k) | Event::InitApply(k) => Some(k),
        _ => None,
    }
}

fn claim_stream(ctx: &NodeContext) -> Items {
    let apis: Vec<Api<PersistentVolumeClaim>> = if ctx.settings.namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        ctx.settings
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.client.clone(), ns))
            .collect()
    };
    futures::stream::select_all(
        apis.into_iter()
            .map(|api| watcher::watcher(api, watcher::Config::default()).boxed()),
    )
    .filter_map(|ev| async move {
        match ev {
            Ok(ev) => applied(ev).map(|c| Ok(Item::Claim(Box::new(c)))),
            Err(e) => Some(Err(e)),
        }
    })
    .boxed()
}

/// The reclaim policy for `pvc`: its StorageClass's, else `Delete` (dynamic provisioning's).
async fn reclaim_policy(ctx: &NodeContext, pvc: &PersistentVolumeClaim) -> String {
    let class = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .filter(|c| !c.is_empty());
    let Some(class) = class else {
        return "Delete".into();
    };
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    match classes.get_opt(&class).await {
        Ok(Some(sc)) => sc.reclaim_policy.unwrap_or_else(|| "Delete".into()),
        _ => "Delete".into(),
    }
}

async fn provision(ctx: &NodeContext, pvc: &PersistentVolumeClaim) {
    let key = format!("{}/{}", pvc.namespace().unwrap_or_default(), pvc.name_any());
    let Some(name) = volume_name(pvc) else {
        return;
    };
    let dir = volumes_dir(&ctx.settings.state_dir).join(&name);
    if let Err(e) = make_dir(&dir) {
        tracing::warn!(claim = %key, error = %e, "could not create the volume directory");
        return;
    }
    let policy = reclaim_policy(ctx, pvc).await;
    let pv = match persistent_volume(pvc, &ctx.settings.node_name, &dir, &policy) {
        Ok(pv) => pv,
        Err(e) => {
            tracing::warn!(claim = %key, error = %e, "not provisioned");
            return;
        }
    };
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => {
            tracing::info!(claim = %key, volume = %name, dir = %dir.display(), "provisioned a local volume");
            let note = format!(
                "Successfully provisioned volume {name} at {}",
                dir.display()
            );
            claim_event(ctx, pvc, false, "ProvisioningSucceeded", note).await;
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => {
            let _ = std::fs::remove_dir(&dir);
            let forbidden = matches!(&e, kube::Error::Api(a) if a.code == 403);
            let hint = if forbidden {
                "give the node's kubeconfig create/delete on persistentvolumes, or bind the claim to a PersistentVolume yourself"
            } else {
                "retried on the next change of the claim"
            };
            tracing::warn!(claim = %key, error = %e, hint, "creating the PersistentVolume failed");
            let note = format!("creating PersistentVolume {name} failed: {e}; {hint}");
            claim_event(ctx, pvc, true, "ProvisioningFailed", note).await;
        }
    }
}

async fn claim_event(
    ctx: &NodeContext,
    pvc: &PersistentVolumeClaim,
    warning: bool,
    reason: &str,
    note: String,
) {
    use kube::runtime::events::{Event as KubeEvent, EventType};
    let ev = KubeEvent {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: "Provisioning".into(),
        secondary: None,
    };
    if let Err(e) = ctx
        .recorder
        .publish(&ev, &kube::Resource::object_ref(pvc, &()))
        .await
    {
        tracing::debug!(error = %e, reason, "publishing an event failed");
    }
}

fn make_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    // Like local-path-provisioner: writable by any user; fsGroup narrows ownership per pod.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(Error::io(dir))
}

async fn delete_volume(ctx: &NodeContext, pv: &PersistentVolume) {
    let name = pv.name_any();
    let root = volumes_dir(&ctx.settings.state_dir);
    // Only directories this node made: never follow a volume object somewhere else.
    if let Some(dir) = host_path(pv).filter(|d| d.parent() == Some(root.as_path()))
        && let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(volume = %name, error = %e, "could not remove the volume directory");
        return;
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pv.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => tracing::info!(volume = %name, "deleted a released volume"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(volume = %name, error = %e, "deleting a released volume failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(spec: serde_json::Value, phase: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "store", "namespace": "dev1", "uid": "u-1"},
            "spec": spec,
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn only_unbound_claims_of_served_namespaces_and_known_classes_are_provisioned() {
        let classes = vec![STORAGE_CLASS.to_string(), "local-path".to_string()];
        let serves = |ns: &str| ns == "dev1";
        let wants = |spec, phase| wants_volume(&claim(spec, phase), &classes, serves);
        assert!(wants(json!({}), "Pending"));
        assert!(wants(json!({"storageClassName": ""}), "Pending"));
        assert!(wants(json!({"storageClassName": "local-path"}), "Pending"));
        assert!(!wants(json!({"storageClassName": "gp2"}), "Pending"));
        assert!(!wants(json!({"volumeName": "pv-1"}), "Pending"));
        assert!(!wants(json!({}), "Bound"));
        assert!(!wants(json!({"volumeMode": "Block"}), "Pending"));
        assert!(!wants(
            json!({"selector": {"matchLabels": {"a": "b"}}}),
            "Pending"
        ));
        assert!(!wants_volume(
            &claim(json!({}), "Pending"),
            &classes,
            |_| false
        ));
    }

    #[test]
    fn the_volume_is_local_pinned_to_the_node_and_pre_bound_to_the_claim() {
        let pvc = claim(
            json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}),
            "Pending",
        );
        let pv = persistent_volume(
            &pvc,
            "node-a",
            Path::new("/s/persistent-volumes/pvc-u-1"),
            "Retain",
        )
        .unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u-1"));
        let spec = pv.spec.clone().unwrap();
        assert_eq!(spec.capacity.unwrap()["storage"].0, "2Gi");
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some(""));
        let claim_ref = spec.claim_ref.unwrap();
        assert_eq!(
            (
                claim_ref.namespace.as_deref(),
                claim_ref.name.as_deref(),
                claim_ref.uid.as_deref()
            ),
            (Some("dev1"), Some("store"), Some("u-1"))
        );
        let term = &spec
            .node_affinity
            .unwrap()
            .required
            .unwrap()
            .node_selector_terms[0];
        assert_eq!(
            term.match_expressions.as_ref().unwrap()[0].values,
            Some(vec!["node-a".to_string()])
        );
        assert_eq!(
            host_path(&pv),
            Some(PathBuf::from("/s/persistent-volumes/pvc-u-1"))
        );
    }

    #[test]
    fn only_released_volumes_of_this_node_with_policy_delete_are_deleted() {
        let pvc = claim(json!({}), "Pending");
        let mut pv = persistent_volume(&pvc, "node-a", Path::new("/d"), "Delete").unwrap();
        assert!(!should_delete(&pv, "node-a"), "not released yet");
        pv.status = Some(serde_json::from_value(json!({"phase": "Released"})).unwrap());
        assert!(should_delete(&pv, "node-a"));
        assert!(!should_delete(&pv, "node-b"));
        let mut retained = pv.clone();
        retained
            .spec
            .as_mut()
            .unwrap()
            .persistent_volume_reclaim_policy = Some("Retain".into());
        assert!(!should_delete(&retained, "node-a"));
    }
}
