//! Docker mounts → pod volumes and container mounts; Docker named volumes → PersistentVolumeClaims.
//!
//! Host binds become `hostPath` volumes (`DirectoryOrCreate`), named volumes become claims named
//! after the volume and shared by every module that mounts it, anonymous volumes become `emptyDir`,
//! and tmpfs mounts (and `ShmSize` at `/dev/shm`) become in-memory `emptyDir`s. Claims are retained
//! when the EdgeDeployment goes away unless `spec.storage.deleteWithDeployment` is set: data is
//! never deleted by surprise.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, HostPathVolumeSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::create_options::{CreateOptions, MountSource};
use super::meta::Context;
use crate::error::SpecError;
use crate::labels;
use crate::names::{self, Rule};
use crate::quantity;

/// Default claim size when `spec.storage.size` is absent.
pub const DEFAULT_CLAIM_SIZE: &str = "1Gi";
/// Default claim access mode.
pub const DEFAULT_ACCESS_MODE: &str = "ReadWriteOnce";

/// A module's volumes and mounts.
#[derive(Debug, Default)]
pub struct PodVolumes {
    /// Pod volumes.
    pub volumes: Vec<Volume>,
    /// Mounts of the module's container.
    pub mounts: Vec<VolumeMount>,
    /// Claims mounted.
    pub claims: Vec<String>,
    /// Whether anything persistent or shared with the host is mounted (→ `Recreate` strategy).
    pub persistent: bool,
}

impl PodVolumes {
    /// Adds `volume` unless one of that name exists (the same source mounted twice); a read-write
    /// mount of a source wins over read-only ones.
    fn add(&mut self, volume: Volume, mount: VolumeMount) {
        if !self.volumes.iter().any(|v| v.name == volume.name) {
            self.volumes.push(volume);
        }
        self.mounts.push(mount);
    }
}

/// Claims for all named volumes of the EdgeDeployment (volume name → claim name).
pub fn claims(
    ctx: &Context<'_>,
    claim_names: &BTreeMap<String, String>,
) -> Result<Vec<PersistentVolumeClaim>, SpecError> {
    let storage = ctx.ed.spec.storage.clone().unwrap_or_default();
    let size = storage
        .size
        .clone()
        .unwrap_or_else(|| DEFAULT_CLAIM_SIZE.to_string());
    if quantity::parse(&size).is_none() {
        return Err(SpecError::InvalidQuantity {
            field: "spec.storage.size".to_string(),
            value: size,
        });
    }
    let access = storage
        .access_mode
        .clone()
        .unwrap_or_else(|| DEFAULT_ACCESS_MODE.to_string());
    let mut by_claim: BTreeMap<&str, &str> = BTreeMap::new();
    for (volume, claim) in claim_names {
        by_claim.insert(claim, volume);
    }
    Ok(by_claim
        .into_iter()
        .map(|(claim, volume)| {
            let annotations =
                BTreeMap::from([(labels::ORIGINAL_VOLUME.to_string(), volume.to_string())]);
            PersistentVolumeClaim {
                metadata: ctx.meta(
                    claim,
                    ctx.device_labels(),
                    annotations,
                    storage.delete_with_deployment,
                ),
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec![access.clone()]),
                    storage_class_name: storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity(size.clone()),
                        )])),
                        limits: None,
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                status: None,
            }
        })
        .collect())
}

/// Volumes and mounts of module `name`.
pub fn pod_volumes(options: &CreateOptions, claim_names: &BTreeMap<String, String>) -> PodVolumes {
    let mut out = PodVolumes::default();
    for (i, mount) in options.host.mounts.iter().enumerate() {
        let (volume, persistent) = match &mount.source {
            MountSource::HostPath(path) => (host_path(path, Some("DirectoryOrCreate")), true),
            MountSource::Volume(v) => {
                let claim = claim_names
                    .get(v)
                    .cloned()
                    .unwrap_or_else(|| names::dns_label(v, Rule::Dns1123));
                if !out.claims.contains(&claim) {
                    out.claims.push(claim.clone());
                }
                (claim_volume(&claim), true)
            }
            MountSource::Anonymous => (empty_dir(&format!("anonymous-{i}"), None), false),
            MountSource::Tmpfs => (empty_dir(&format!("tmpfs-{i}"), Some("Memory")), false),
        };
        out.persistent |= persistent;
        let mount = VolumeMount {
            name: volume.name.clone(),
            mount_path: mount.target.clone(),
            read_only: mount.read_only.then_some(true),
            ..VolumeMount::default()
        };
        out.add(volume, mount);
    }
    for (i, path) in options.anonymous_volumes.iter().enumerate() {
        let volume = empty_dir(&format!("volume-{i}"), None);
        out.add(volume.clone(), mount_at(&volume.name, path));
    }
    for (i, path) in options.host.tmpfs.iter().enumerate() {
        let volume = empty_dir(&format!("tmpfs-mount-{i}"), Some("Memory"));
        out.add(volume.clone(), mount_at(&volume.name, path));
    }
    if let Some(size) = options.host.shm_size {
        let mut volume = empty_dir("dshm", Some("Memory"));
        if let Some(dir) = volume.empty_dir.as_mut() {
            dir.size_limit = Some(quantity::bytes(size));
        }
        out.add(volume.clone(), mount_at(&volume.name, "/dev/shm"));
    }
    for (i, device) in options.host.devices.iter().enumerate() {
        let mut volume = host_path(&device.path_on_host, None);
        volume.name = format!("device-{i}");
        out.add(
            volume.clone(),
            mount_at(&volume.name, &device.path_in_container),
        );
    }
    for extra in &options.experimental.volumes {
        out.volumes.push(extra.volume.clone());
        out.mounts.extend(extra.volume_mounts.iter().cloned());
    }
    out
}

fn mount_at(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_string(),
        mount_path: path.to_string(),
        ..VolumeMount::default()
    }
}

/// Volume named after the host path, so two mounts of one path share it.
fn host_path(path: &str, type_: Option<&str>) -> Volume {
    Volume {
        name: names::dns_label(&format!("host{path}"), Rule::Dns1123),
        host_path: Some(HostPathVolumeSource {
            path: path.to_string(),
            type_: type_.map(str::to_string),
        }),
        ..Volume::default()
    }
}

fn claim_volume(claim: &str) -> Volume {
    Volume {
        name: claim.to_string(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_string(),
            read_only: None,
        }),
        ..Volume::default()
    }
}

fn empty_dir(name: &str, medium: Option<&str>) -> Volume {
    Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(str::to_string),
            size_limit: None,
        }),
        ..Volume::default()
    }
}
