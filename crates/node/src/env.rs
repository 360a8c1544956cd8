//! A container's environment, built the way kubelet builds it (`makeEnvironmentVariables`):
//! service variables first, then `envFrom`, then `env` in order, each `env` value `$(VAR)`-expanded
//! against everything defined before it; the image's ENV sits underneath and loses to all of them.
//! Pure: the Secrets and ConfigMaps it reads are fetched by the caller.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use indexmap::IndexMap;
use k8s_openapi::api::core::v1::{ConfigMap, Container, ObjectFieldSelector, Pod, Secret, Service};

use crate::error::ConfigError;
use crate::expand::expand;

/// Everything outside the container spec that its environment may read.
#[derive(Debug, Default)]
pub struct EnvInputs {
    /// Secrets of the pod's namespace, by name (only those the spec references are needed).
    pub secrets: BTreeMap<String, Secret>,
    /// ConfigMaps of the pod's namespace, by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Service link variables (`NAME_SERVICE_HOST`, …), see [`service_env`].
    pub service_env: Vec<(String, String)>,
    /// The image's ENV.
    pub image_env: BTreeMap<String, String>,
    /// `status.podIP`.
    pub pod_ip: Option<Ipv4Addr>,
    /// `status.hostIP`.
    pub host_ip: Option<Ipv4Addr>,
}

/// Secrets and ConfigMaps a pod's containers and volumes reference (names in the pod's namespace).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct References {
    /// Secret names.
    pub secrets: BTreeSet<String>,
    /// ConfigMap names.
    pub config_maps: BTreeSet<String>,
}

/// Every Secret and ConfigMap `pod` reads in env, envFrom or volumes.
pub fn references(pod: &Pod) -> References {
    let mut refs = References::default();
    let Some(spec) = &pod.spec else { return refs };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for from in c.env_from.iter().flatten() {
            if let Some(s) = &from.secret_ref {
                refs.secrets.insert(s.name.clone());
            }
            if let Some(m) = &from.config_map_ref {
                refs.config_maps.insert(m.name.clone());
            }
        }
        for var in c.env.iter().flatten() {
            let Some(from) = &var.value_from else {
                continue;
            };
            if let Some(s) = &from.secret_key_ref {
                refs.secrets.insert(s.name.clone());
            }
            if let Some(m) = &from.config_map_key_ref {
                refs.config_maps.insert(m.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            refs.secrets.insert(s);
        }
        if let Some(m) = &v.config_map {
            refs.config_maps.insert(m.name.clone());
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &source.secret {
                refs.secrets.insert(s.name.clone());
            }
            if let Some(m) = &source.config_map {
                refs.config_maps.insert(m.name.clone());
            }
        }
    }
    refs
}

/// The environment of `container` in `pod`, in kubelet's order.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    inputs: &EnvInputs,
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars: IndexMap<String, String> = IndexMap::new();
    for (k, v) in &inputs.service_env {
        vars.insert(k.clone(), v.clone());
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match inputs.config_maps.get(&r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        vars.insert(format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            match inputs.secrets.get(&r.name) {
                Some(secret) => {
                    for (k, v) in secret.data.iter().flatten() {
                        vars.insert(format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError::SecretNotFound(r.name.clone())),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => Some(expand(v, |name| vars.get(name).cloned())),
            (None, Some(from)) => value_from(pod, container, &namespace, from, inputs)?,
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            vars.insert(var.name.clone(), value);
        }
    }
    let mut env: IndexMap<String, String> = inputs
        .image_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in vars {
        env.insert(k, v);
    }
    Ok(env.into_iter().collect())
}

/// One `valueFrom`; `None` for a missing optional reference (the variable is then not set).
fn value_from(
    pod: &Pod,
    container: &Container,
    namespace: &str,
    from: &k8s_openapi::api::core::v1::EnvVarSource,
    inputs: &EnvInputs,
) -> Result<Option<String>, ConfigError> {
    if let Some(field) = &from.field_ref {
        return field_value(pod, field, inputs).map(Some);
    }
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional == Some(true);
        let Some(secret) = inputs.secrets.get(&r.name) else {
            return if optional {
                Ok(None)
            } else {
                Err(ConfigError::SecretNotFound(r.name.clone()))
            };
        };
        return match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
            Some(v) => Ok(Some(String::from_utf8_lossy(&v.0).into_owned())),
            None if optional => Ok(None),
            None => Err(ConfigError::KeyNotFound {
                kind: "Secret",
                namespace: namespace.to_string(),
                name: r.name.clone(),
                key: r.key.clone(),
            }),
        };
    }
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional == Some(true);
        let Some(cm) = inputs.config_maps.get(&r.name) else {
            return if optional {
                Ok(None)
            } else {
                Err(ConfigError::ConfigMapNotFound(r.name.clone()))
            };
        };
        let value = cm
            .data
            .as_ref()
            .and_then(|d| d.get(&r.key))
            .cloned()
            .or_else(|| {
                cm.binary_data
                    .as_ref()
                    .and_then(|d| d.get(&r.key))
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            });
        return match value {
            Some(v) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(ConfigError::KeyNotFound {
                kind: "ConfigMap",
                namespace: namespace.to_string(),
                name: r.name.clone(),
                key: r.key.clone(),
            }),
        };
    }
    if let Some(r) = &from.resource_field_ref {
        let resources = container.resources.as_ref();
        let (section, name) = r
            .resource
            .split_once('.')
            .unwrap_or(("", r.resource.as_str()));
        let quantity = match section {
            "limits" => resources
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get(name)),
            "requests" => resources
                .and_then(|r| r.requests.as_ref())
                .and_then(|l| l.get(name)),
            _ => None,
        };
        // Without a limit kubelet reports the node's allocatable; this node reports "0" so a
        // process can tell that no limit applies.
        return Ok(Some(
            quantity.map(|q| q.0.clone()).unwrap_or_else(|| "0".into()),
        ));
    }
    Ok(None)
}

/// The value of a downward-API field (`metadata.name`, `status.podIP`, …).
pub fn field_value(
    pod: &Pod,
    field: &ObjectFieldSelector,
    inputs: &EnvInputs,
) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = field.field_path.as_str();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => {
            inputs.host_ip.map(|i| i.to_string()).unwrap_or_default()
        }
        "status.podIP" | "status.podIPs" => {
            inputs.pod_ip.map(|i| i.to_string()).unwrap_or_default()
        }
        "metadata.labels" => render_map(meta.labels.as_ref()),
        "metadata.annotations" => render_map(meta.annotations.as_ref()),
        _ => keyed("metadata.labels['", meta.labels.as_ref())
            .or_else(|| keyed("metadata.annotations['", meta.annotations.as_ref()))
            .ok_or_else(|| ConfigError::UnsupportedField(path.to_string()))?,
    };
    Ok(value)
}

/// `key="value"` lines, as the downward API writes label and annotation files.
fn render_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Docker-link style service variables for the Services of the pod's namespace (kubelet adds them
/// unless `enableServiceLinks: false`; the `kubernetes` Service of `default` always).
pub fn service_env(
    services: &[Service],
    namespace: &str,
    enable_links: bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let svc_ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let is_master = svc_ns == "default" && name == "kubernetes";
        if !(is_master || (enable_links && svc_ns == namespace)) {
            continue;
        }
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = name.to_uppercase().replace('-', "_");
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in ports {
            if let Some(pname) = &p.name {
                let pname = pname.to_uppercase().replace('-', "_");
                out.push((format!("{prefix}_SERVICE_PORT_{pname}"), p.port.to_string()));
            }
        }
        let proto = first.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        out.push((
            format!("{prefix}_PORT"),
            format!("{proto}://{ip}:{}", first.port),
        ));
        for p in ports {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            let base = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((
                base.clone(),
                format!("{}://{ip}:{}", proto.to_lowercase(), p.port),
            ));
            out.push((format!("{base}_PROTO"), proto.to_lowercase()));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mk_config_map, mk_pod, mk_secret, mk_service};

    fn pod_with_env(env: serde_json::Value) -> Pod {
        let mut pod = mk_pod("ns1", "p1");
        let spec = pod.spec.as_mut().unwrap();
        spec.containers[0].env = Some(serde_json::from_value(env).unwrap());
        pod
    }

    fn env_of(pod: &Pod, inputs: &EnvInputs) -> Result<Vec<(String, String)>, ConfigError> {
        container_env(pod, &pod.spec.as_ref().unwrap().containers[0], inputs)
    }

    #[test]
    fn secret_configmap_and_field_refs_resolve_and_later_values_expand_earlier_ones() {
        let secrets =
            BTreeMap::from([("s".to_string(), mk_secret("ns1", "s", &[("pw", "hunter2")]))]);
        let cms = BTreeMap::from([(
            "c".to_string(),
            mk_config_map("ns1", "c", &[("mode", "fast")]),
        )]);
        let pod = pod_with_env(serde_json::json!([
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "mode"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "URL", "value": "$(POD).$(MODE):$(PW)/$(NOPE)/$$(POD)"},
        ]));
        let inputs = EnvInputs {
            secrets: secrets.clone(),
            config_maps: cms.clone(),
            pod_ip: Some(Ipv4Addr::new(10, 88, 0, 5)),
            image_env: BTreeMap::from([
                ("MODE".into(), "image".into()),
                ("IMG".into(), "1".into()),
            ]),
            ..Default::default()
        };
        let env: BTreeMap<_, _> = env_of(&pod, &inputs).unwrap().into_iter().collect();
        assert_eq!(env["PW"], "hunter2");
        assert_eq!(env["MODE"], "fast");
        assert_eq!(env["IMG"], "1");
        assert_eq!(env["IP"], "10.88.0.5");
        assert_eq!(env["APP"], "demo");
        assert_eq!(env["URL"], "p1.fast:hunter2/$(NOPE)/$(POD)");
    }

    #[test]
    fn missing_references_fail_unless_optional() {
        let empty = BTreeMap::new();
        let cms = BTreeMap::new();
        let inputs = EnvInputs {
            secrets: empty.clone(),
            config_maps: cms.clone(),
            ..Default::default()
        };
        let pod = pod_with_env(serde_json::json!([
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]));
        assert_eq!(
            env_of(&pod, &inputs).unwrap_err(),
            ConfigError::SecretNotFound("gone".into())
        );
        let pod = pod_with_env(serde_json::json!([
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}}]));
        assert!(env_of(&pod, &inputs).unwrap().iter().all(|(k, _)| k != "A"));
        let secrets = BTreeMap::from([("s".to_string(), mk_secret("ns1", "s", &[]))]);
        let inputs = EnvInputs {
            secrets: secrets.clone(),
            config_maps: cms.clone(),
            ..Default::default()
        };
        let pod = pod_with_env(serde_json::json!([
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]));
        let err = env_of(&pod, &inputs).unwrap_err().to_string();
        assert!(err.contains("key k in Secret ns1/s"), "{err}");
    }

    #[test]
    fn env_from_applies_prefixes() {
        let cms = BTreeMap::from([("c".to_string(), mk_config_map("ns1", "c", &[("a", "1")]))]);
        let secrets = BTreeMap::new();
        let mut pod = mk_pod("ns1", "p1");
        pod.spec.as_mut().unwrap().containers[0].env_from = Some(
            serde_json::from_value(
                serde_json::json!([{"prefix": "X_", "configMapRef": {"name": "c"}}]),
            )
            .unwrap(),
        );
        let inputs = EnvInputs {
            secrets: secrets.clone(),
            config_maps: cms.clone(),
            ..Default::default()
        };
        assert_eq!(
            env_of(&pod, &inputs).unwrap(),
            vec![("X_a".to_string(), "1".to_string())]
        );
    }

    #[test]
    fn service_links_cover_the_namespace_and_the_master_service() {
        let services = vec![
            mk_service("ns1", "edge-hub", "10.0.0.7", &[("mqtt", 8883)]),
            mk_service("other", "x", "10.0.0.8", &[("a", 1)]),
            mk_service("default", "kubernetes", "10.0.0.1", &[("https", 443)]),
        ];
        let env: BTreeMap<_, _> = service_env(&services, "ns1", true).into_iter().collect();
        assert_eq!(env["EDGE_HUB_SERVICE_HOST"], "10.0.0.7");
        assert_eq!(env["EDGE_HUB_SERVICE_PORT_MQTT"], "8883");
        assert_eq!(env["EDGE_HUB_PORT_8883_TCP_ADDR"], "10.0.0.7");
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.0.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert!(!env.contains_key("X_SERVICE_HOST"));
        let env: BTreeMap<_, _> = service_env(&services, "ns1", false).into_iter().collect();
        assert!(
            !env.contains_key("EDGE_HUB_SERVICE_HOST")
                && env.contains_key("KUBERNETES_SERVICE_HOST")
        );
    }

    #[test]
    fn references_collect_env_and_volume_objects() {
        let mut pod = pod_with_env(serde_json::json!([
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}}]));
        pod.spec.as_mut().unwrap().volumes = Some(
            serde_json::from_value(serde_json::json!([
                {"name": "v", "configMap": {"name": "c1"}},
                {"name": "w", "projected": {"sources": [{"secret": {"name": "s2"}}]}}]))
            .unwrap(),
        );
        let refs = references(&pod);
        assert_eq!(
            refs.secrets,
            BTreeSet::from(["s1".to_string(), "s2".to_string()])
        );
        assert_eq!(refs.config_maps, BTreeSet::from(["c1".to_string()]));
    }
}
