//! What `ironedge up` started, kept in `<state-dir>/up.json` so that `ironedge down` (and the next
//! `up`) stop or reuse exactly those things and nothing else.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The record file's name inside the state directory.
const STATE_FILE: &str = "up.json";

/// A process `up` started: its pid and its start time (clock ticks since boot, field 22 of
/// `/proc/<pid>/stat`), so a recycled pid is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessId {
    /// The pid.
    pub(crate) pid: u32,
    /// Its start time.
    pub(crate) start_time: u64,
}

/// Which cluster the device runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "camelCase")]
pub(crate) enum ClusterRecord {
    /// The local control plane of `scripts/k8s`, in `<state>/cluster`.
    Local {
        /// Its state directory.
        dir: PathBuf,
    },
    /// A cluster the user gave with `--kubeconfig`; only what `up` created there is removed.
    External {
        /// The kubeconfig.
        kubeconfig: PathBuf,
    },
}

/// The hub `up` runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HubRecord {
    /// The process, while it runs.
    pub(crate) process: Option<ProcessId>,
    /// REST (HTTPS) port on 127.0.0.1.
    pub(crate) rest_port: u16,
    /// MQTT (TLS) port on 127.0.0.1.
    pub(crate) mqtt_port: u16,
}

/// The local node `up` runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NodeRecord {
    /// The process, while it runs.
    pub(crate) process: Option<ProcessId>,
    /// The Node's name.
    pub(crate) name: String,
}

/// The device `up` installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceRecord {
    /// Device id in the hub.
    pub(crate) id: String,
    /// Its namespace.
    pub(crate) namespace: String,
    /// Whether `up` created the namespace (then `down` deletes it on an external cluster).
    pub(crate) created_namespace: bool,
    /// The Helm release of the device chart.
    pub(crate) release: String,
    /// Whether `up` installed the CRD chart (release `ironedge-crds` in `ironedge-system`).
    pub(crate) installed_crds: bool,
    /// Whether `up` created the `ironedge-system` namespace for that release.
    #[serde(default)]
    pub(crate) created_crds_namespace: bool,
}

/// Everything `up` started or created.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpState {
    /// The cluster.
    pub(crate) cluster: Option<ClusterRecord>,
    /// The hub.
    pub(crate) hub: Option<HubRecord>,
    /// The node.
    pub(crate) node: Option<NodeRecord>,
    /// The device.
    pub(crate) device: Option<DeviceRecord>,
}

impl UpState {
    /// Reads the record; a missing file is an empty record.
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is damaged; stop what it lists by hand or remove it",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the record atomically (temporary file, then rename).
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self)?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// True when nothing is recorded.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// An exclusive lock on the state directory for the life of the value, so two `up`/`down`
/// never work on one directory at once.
#[derive(Debug)]
pub(crate) struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// Takes the lock, failing at once with a clear message when another command holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("up.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .with_context(|| {
                format!(
                    "another `ironedge up` or `ironedge down` is working on {} (lock {})",
                    dir.display(),
                    path.display()
                )
            })?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(UpState::load(dir.path()).unwrap().is_empty());
        let state = UpState {
            cluster: Some(ClusterRecord::External {
                kubeconfig: "/k".into(),
            }),
            hub: Some(HubRecord {
                process: Some(ProcessId {
                    pid: 7,
                    start_time: 99,
                }),
                rest_port: 21000,
                mqtt_port: 21001,
            }),
            node: None,
            device: Some(DeviceRecord {
                id: "demo-edge".into(),
                namespace: "demo-edge".into(),
                created_namespace: true,
                release: "demo-edge".into(),
                installed_crds: false,
                created_crds_namespace: false,
            }),
        };
        state.save(dir.path()).unwrap();
        assert_eq!(UpState::load(dir.path()).unwrap(), state);
    }

    #[test]
    fn a_damaged_record_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let err = UpState::load(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("damaged"), "{err:#}");
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("another"), "{err:#}");
    }
}
