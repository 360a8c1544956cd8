//! Pod volumes on the host: Secret, ConfigMap, downward API and projected volumes (including
//! service-account tokens) become directories written atomically the way kubelet's atomic writer
//! does (`..data` → `..<generation>`, user-visible names are symlinks through `..data`, so a
//! refresh is seen all at once through bind mounts); emptyDir is a per-pod directory, hostPath
//! the host path, and a PersistentVolumeClaim a node-local directory per claim that outlives the
//! pod.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret, Volume};

use crate::env::{EnvInputs, field_value};
use crate::error::{ConfigError, Error, Result};

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFile {
    /// Path relative to the volume root.
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// What a volume is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// Generated files (Secret, ConfigMap, downward API, projected).
    Files(Vec<VolumeFile>),
    /// A scratch directory of the pod.
    EmptyDir,
    /// A host path, created when `create` says so (`Directory`/`File`) .
    HostPath {
        /// The path.
        path: PathBuf,
        /// `DirectoryOrCreate` → Some(true), `FileOrCreate` → Some(false).
        create_dir: Option<bool>,
    },
    /// A claim's node-local directory.
    Claim(String),
}

/// A service-account token for a projected volume source, requested by the caller.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenSource {
    /// The volume.
    pub volume: String,
    /// Path inside the volume.
    pub path: String,
    /// Requested audience; `None` is the API server's.
    pub audience: Option<String>,
    /// Requested lifetime in seconds.
    pub expiration_seconds: i64,
}

/// Every projected service-account token `pod` needs.
pub fn token_sources(pod: &Pod) -> Vec<TokenSource> {
    let mut out = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(t) = &source.service_account_token {
                out.push(TokenSource {
                    volume: v.name.clone(),
                    path: t.path.clone(),
                    audience: t.audience.clone().filter(|a| !a.is_empty()),
                    expiration_seconds: t.expiration_seconds.unwrap_or(3600).max(600),
                });
            }
        }
    }
    out
}

/// The source of volume `v`; `tokens` holds the requested service-account tokens by
/// (volume, path).
pub fn volume_source(
    pod: &Pod,
    v: &Volume,
    inputs: &EnvInputs,
    tokens: &BTreeMap<(String, String), String>,
) -> Result<VolumeSource, ConfigError> {
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.map_or(0o644, mode_bits);
        return match inputs.secrets.get(&name) {
            Some(secret) => Ok(VolumeSource::Files(secret_files(
                secret,
                s.items.as_deref(),
                mode,
                &name,
            )?)),
            None if s.optional == Some(true) => Ok(VolumeSource::Files(Vec::new())),
            None => Err(ConfigError::SecretNotFound(name)),
        };
    }
    if let Some(c) = &v.config_map {
        let mode = c.default_mode.map_or(0o644, mode_bits);
        return match inputs.config_maps.get(&c.name) {
            Some(cm) => Ok(VolumeSource::Files(config_map_files(
                cm,
                c.items.as_deref(),
                mode,
                &c.name,
            )?)),
            None if c.optional == Some(true) => Ok(VolumeSource::Files(Vec::new())),
            None => Err(ConfigError::ConfigMapNotFound(c.name.clone())),
        };
    }
    if let Some(d) = &v.downward_api {
        let mode = d.default_mode.map_or(0o644, mode_bits);
        return downward_files(pod, d.items.as_deref().unwrap_or_default(), mode, inputs)
            .map(VolumeSource::Files);
    }
    if let Some(p) = &v.projected {
        let mode = p.default_mode.map_or(0o644, mode_bits);
        let mut files = Vec::new();
        for source in p.sources.iter().flatten() {
            if let Some(s) = &source.secret {
                match inputs.secrets.get(&s.name) {
                    Some(secret) => {
                        files.extend(secret_files(secret, s.items.as_deref(), mode, &s.name)?)
                    }
                    None if s.optional == Some(true) => {}
                    None => return Err(ConfigError::SecretNotFound(s.name.clone())),
                }
            }
            if let Some(c) = &source.config_map {
                match inputs.config_maps.get(&c.name) {
                    Some(cm) => {
                        files.extend(config_map_files(cm, c.items.as_deref(), mode, &c.name)?)
                    }
                    None if c.optional == Some(true) => {}
                    None => return Err(ConfigError::ConfigMapNotFound(c.name.clone())),
                }
            }
            if let Some(d) = &source.downward_api {
                files.extend(downward_files(
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                    inputs,
                )?);
            }
            if let Some(t) = &source.service_account_token {
                let token = tokens
                    .get(&(v.name.clone(), t.path.clone()))
                    .ok_or_else(|| ConfigError::Token {
                        service_account: service_account(pod),
                        reason: "token was not requested".into(),
                    })?;
                files.push(VolumeFile {
                    path: checked(&t.path)?,
                    data: token.as_bytes().to_vec(),
                    mode,
                });
            }
        }
        return Ok(VolumeSource::Files(files));
    }
    if v.empty_dir.is_some() {
        return Ok(VolumeSource::EmptyDir);
    }
    if let Some(h) = &v.host_path {
        let create_dir = match h.type_.as_deref() {
            Some("DirectoryOrCreate") => Some(true),
            Some("FileOrCreate") => Some(false),
            _ => None,
        };
        return Ok(VolumeSource::HostPath {
            path: PathBuf::from(&h.path),
            create_dir,
        });
    }
    if let Some(c) = &v.persistent_volume_claim {
        return Ok(VolumeSource::Claim(c.claim_name.clone()));
    }
    Err(ConfigError::UnsupportedVolume {
        name: v.name.clone(),
        reason: "only secret, configMap, downwardAPI, projected, emptyDir, hostPath and persistentVolumeClaim volumes are supported".into(),
    })
}

/// The pod's service account (`default` when unset).
pub fn service_account(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

fn mode_bits(mode: i32) -> u32 {
    u32::try_from(mode).unwrap_or(0o644) & 0o777
}

/// A relative path that stays inside its volume.
fn checked(path: &str) -> Result<String, ConfigError> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !path.starts_with("..");
    if ok {
        Ok(path.to_string())
    } else {
        Err(ConfigError::BadSubPath(path.to_string()))
    }
}

fn keyed_files(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    missing: impl Fn(&str) -> ConfigError,
) -> Result<Vec<VolumeFile>, ConfigError> {
    match items {
        None => data
            .into_iter()
            .map(|(k, v)| {
                Ok(VolumeFile {
                    path: checked(&k)?,
                    data: v,
                    mode,
                })
            })
            .collect(),
        Some(items) => items
            .iter()
            .map(|item| {
                let value = data
                    .get(&item.key)
                    .cloned()
                    .ok_or_else(|| missing(&item.key))?;
                Ok(VolumeFile {
                    path: checked(&item.path)?,
                    data: value,
                    mode: item.mode.map_or(mode, mode_bits),
                })
            })
            .collect(),
    }
}

fn secret_files(
    secret: &Secret,
    items: Option<&[KeyToPath]>,
    mode: u32,
    name: &str,
) -> Result<Vec<VolumeFile>, ConfigError> {
    let data = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    let ns = secret.metadata.namespace.clone().unwrap_or_default();
    keyed_files(data, items, mode, |key| ConfigError::KeyNotFound {
        kind: "Secret",
        namespace: ns.clone(),
        name: name.to_string(),
        key: key.to_string(),
    })
}

fn config_map_files(
    cm: &ConfigMap,
    items: Option<&[KeyToPath]>,
    mode: u32,
    name: &str,
) -> Result<Vec<VolumeFile>, ConfigError> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    data.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    let ns = cm.metadata.namespace.clone().unwrap_or_default();
    keyed_files(data, items, mode, |key| ConfigError::KeyNotFound {
        kind: "ConfigMap",
        namespace: ns.clone(),
        name: name.to_string(),
        key: key.to_string(),
    })
}

fn downward_files(
    pod: &Pod,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    mode: u32,
    inputs: &EnvInputs,
) -> Result<Vec<VolumeFile>, ConfigError> {
    items
        .iter()
        .map(|item| {
            let value = match &item.field_ref {
                Some(f) => field_value(pod, f, inputs)?,
                None => "0".to_string(),
            };
            Ok(VolumeFile {
                path: checked(&item.path)?,
                data: value.into_bytes(),
                mode: item.mode.map_or(mode, mode_bits),
            })
        })
        .collect()
}

/// Writes `files` into `dir` atomically (kubelet's atomic writer layout).
pub fn write_atomically(dir: &Path, files: &[VolumeFile]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let generation = format!("..{}", jiff::Timestamp::now().as_nanosecond());
    let staging = dir.join(&generation);
    for f in files {
        let path = staging.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        std::fs::write(&path, &f.data).map_err(Error::io(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
            .map_err(Error::io(&path))?;
    }
    std::fs::create_dir_all(&staging).map_err(Error::io(&staging))?;
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&generation, &tmp_link).map_err(Error::io(&tmp_link))?;
    let data_link = dir.join("..data");
    std::fs::rename(&tmp_link, &data_link).map_err(Error::io(&data_link))?;
    let top: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.path.split('/').next().map(str::to_string))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)
                .map_err(Error::io(&link))?;
        }
    }
    let entries = std::fs::read_dir(dir).map_err(Error::io(dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale_generation = name.starts_with("..") && name != "..data" && name != generation;
        let stale_link = !name.starts_with("..") && !top.contains(&name);
        if stale_generation {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if stale_link {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mk_config_map, mk_pod, mk_secret};

    fn with_volumes(json: serde_json::Value) -> Pod {
        let mut pod = mk_pod("ns1", "p1");
        pod.spec.as_mut().unwrap().volumes = Some(serde_json::from_value(json).unwrap());
        pod
    }

    fn inputs() -> EnvInputs {
        EnvInputs {
            secrets: BTreeMap::from([(
                "s".into(),
                mk_secret("ns1", "s", &[("tls.crt", "CERT"), ("tls.key", "KEY")]),
            )]),
            config_maps: BTreeMap::from([(
                "c".into(),
                mk_config_map("ns1", "c", &[("a.json", "{}")]),
            )]),
            ..Default::default()
        }
    }

    fn files(
        pod: &Pod,
        i: usize,
        tokens: &BTreeMap<(String, String), String>,
    ) -> Result<VolumeSource, ConfigError> {
        let v = &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[i];
        volume_source(pod, v, &inputs(), tokens)
    }

    #[test]
    fn secret_items_choose_keys_paths_and_modes() {
        let pod = with_volumes(serde_json::json!([
            {"name": "all", "secret": {"secretName": "s", "defaultMode": 0o400}},
            {"name": "one", "secret": {"secretName": "s", "items": [{"key": "tls.key", "path": "k/key.pem", "mode": 0o600}]}},
            {"name": "bad", "secret": {"secretName": "s", "items": [{"key": "nope", "path": "x"}]}},
            {"name": "gone", "secret": {"secretName": "gone", "optional": true}},
        ]));
        let none = BTreeMap::new();
        let VolumeSource::Files(all) = files(&pod, 0, &none).unwrap() else {
            panic!()
        };
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|f| f.mode == 0o400));
        let VolumeSource::Files(one) = files(&pod, 1, &none).unwrap() else {
            panic!()
        };
        assert_eq!(
            one,
            vec![VolumeFile {
                path: "k/key.pem".into(),
                data: b"KEY".to_vec(),
                mode: 0o600
            }]
        );
        assert!(
            files(&pod, 2, &none)
                .unwrap_err()
                .to_string()
                .contains("couldn't find key nope")
        );
        assert_eq!(
            files(&pod, 3, &none).unwrap(),
            VolumeSource::Files(Vec::new())
        );
    }

    #[test]
    fn projected_volumes_combine_sources_and_tokens() {
        let pod = with_volumes(serde_json::json!([
            {"name": "p", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "audience": "ironedge", "expirationSeconds": 7200}},
                {"configMap": {"name": "c"}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
        ]));
        let sources = token_sources(&pod);
        assert_eq!(
            sources,
            vec![TokenSource {
                volume: "p".into(),
                path: "token".into(),
                audience: Some("ironedge".into()),
                expiration_seconds: 7200
            }]
        );
        let tokens = BTreeMap::from([(("p".to_string(), "token".to_string()), "jwt".to_string())]);
        let VolumeSource::Files(f) = files(&pod, 0, &tokens).unwrap() else {
            panic!()
        };
        let paths: Vec<_> = f.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["token", "a.json", "ns"]);
        assert_eq!(f[2].data, b"ns1");
    }

    #[test]
    fn paths_may_not_leave_the_volume() {
        let pod = with_volumes(serde_json::json!([
            {"name": "x", "configMap": {"name": "c", "items": [{"key": "a.json", "path": "../../etc/passwd"}]}}]));
        assert_eq!(
            files(&pod, 0, &BTreeMap::new()).unwrap_err(),
            ConfigError::BadSubPath("../../etc/passwd".into())
        );
    }

    #[test]
    fn atomic_writes_replace_contents_and_drop_stale_names() {
        let dir = tempfile::tempdir().unwrap();
        let f = |p: &str, d: &str| VolumeFile {
            path: p.into(),
            data: d.as_bytes().to_vec(),
            mode: 0o644,
        };
        write_atomically(dir.path(), &[f("a", "1"), f("sub/b", "2")]).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/b")).unwrap(),
            "2"
        );
        write_atomically(dir.path(), &[f("a", "3")]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "3");
        assert!(!dir.path().join("sub").exists());
        let generations = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("..")
            })
            .count();
        assert_eq!(generations, 2, "..data and one generation");
    }

    #[test]
    fn unsupported_volumes_are_named() {
        let pod =
            with_volumes(serde_json::json!([{"name": "n", "nfs": {"server": "x", "path": "/"}}]));
        assert!(
            files(&pod, 0, &BTreeMap::new())
                .unwrap_err()
                .to_string()
                .contains("volume \"n\"")
        );
    }
}
