//! Object constructors for unit tests.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod, Secret, Service};

/// A pod with one busybox container `main` and the label `app: demo`.
pub(crate) fn mk_pod(ns: &str, name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}"),
                     "labels": {"app": "demo"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}
    }))
    .unwrap()
}

/// A Secret with `data`.
pub(crate) fn mk_secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: meta(ns, name),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    }
}

/// A ConfigMap with `data`.
pub(crate) fn mk_config_map(ns: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: meta(ns, name),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

/// A Service with a ClusterIP (or "None") and named TCP ports.
pub(crate) fn mk_service(ns: &str, name: &str, ip: &str, ports: &[(&str, i32)]) -> Service {
    let ports: Vec<_> = ports
        .iter()
        .map(|(n, p)| serde_json::json!({"name": n, "port": p, "protocol": "TCP"}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"clusterIP": ip, "ports": ports}
    }))
    .unwrap()
}

/// Endpoints with one subset of ready addresses and named ports.
pub(crate) fn mk_endpoints(ns: &str, name: &str, ips: &[&str], ports: &[(&str, i32)]) -> Endpoints {
    let addresses: Vec<_> = ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
    let ports: Vec<_> = ports
        .iter()
        .map(|(n, p)| serde_json::json!({"name": n, "port": p, "protocol": "TCP"}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": ns, "name": name},
        "subsets": [{"addresses": addresses, "ports": ports}]
    }))
    .unwrap()
}

fn meta(ns: &str, name: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}
