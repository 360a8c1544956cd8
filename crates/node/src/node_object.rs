//! The Node object: registration (capacity, addresses, the kubelet endpoint, system info), status
//! heartbeats, the node Lease in `kube-node-lease`, and NotReady/removal on stop.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::error::Result;

/// Label every ironedge node carries.
pub const NODE_LABEL: &str = "ironedge.io/local-node";
/// Annotation with the node's pod network.
pub const POD_CIDR_ANNOTATION: &str = "ironedge.io/pod-cidr";
/// Namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Lease duration kubelet uses.
const LEASE_SECONDS: i32 = 40;

/// What the Node object says about this node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// InternalIP (where the API server reaches the kubelet endpoint).
    pub address: Ipv4Addr,
    /// Kubelet endpoint port.
    pub kubelet_port: u16,
    /// Pod network, as text.
    pub pod_cidr: String,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Maximum pods.
    pub max_pods: u32,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    read_trimmed("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn memory_bytes() -> u64 {
    read_trimmed("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Capacity (= allocatable: nothing is reserved).
fn capacity(max_pods: u32) -> BTreeMap<String, Quantity> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", memory_bytes() / 1024)),
        ),
        ("pods".to_string(), Quantity(max_pods.to_string())),
    ])
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> serde_json::Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastHeartbeatTime": Time(now), "lastTransitionTime": Time(now)})
}

/// The status the node reports while it runs (or, with `ready == false`, after it stopped).
fn node_status(info: &NodeInfo, ready: bool, now: Timestamp) -> serde_json::Value {
    let cap = capacity(info.max_pods);
    let (ready_status, ready_reason, ready_message) = if ready {
        (
            "True",
            "KubeletReady",
            "ironedge node is posting ready status",
        )
    } else {
        ("False", "KubeletNotReady", "ironedge node stopped")
    };
    json!({
        "capacity": cap,
        "allocatable": cap,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure tracking", now),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure tracking", now),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure tracking", now),
            condition("Ready", ready_status, ready_reason, ready_message, now),
        ],
        "addresses": [{"type": "InternalIP", "address": info.address.to_string()}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": info.kubelet_port}},
        "nodeInfo": {
            "machineID": read_trimmed("/etc/machine-id"),
            "systemUUID": read_trimmed("/etc/machine-id"),
            "bootID": read_trimmed("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": read_trimmed("/proc/sys/kernel/osrelease"),
            "osImage": os_image(),
            "containerRuntimeVersion": format!("ironedge-process://{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": format!("v1.20.0-ironedge.{}", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": format!("v1.20.0-ironedge.{}", env!("CARGO_PKG_VERSION")),
            "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        },
    })
}

fn labels(info: &NodeInfo) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), info.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            std::env::consts::ARCH.replace("x86_64", "amd64"),
        ),
        (NODE_LABEL.to_string(), "true".to_string()),
    ]);
    labels.extend(info.labels.clone());
    labels
}

/// Creates or updates the Node and reports it Ready.
pub async fn register(client: &kube::Client, info: &NodeInfo) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": info.name, "labels": labels(info),
                     "annotations": {POD_CIDR_ANNOTATION: info.pod_cidr}},
    }))
    .map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %info.name, "registered node"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({"metadata": {"labels": labels(info),
                                            "annotations": {POD_CIDR_ANNOTATION: info.pod_cidr}}});
            api.patch(&info.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::info!(node = %info.name, "node already registered; updated it");
        }
        Err(e) => return Err(e.into()),
    }
    heartbeat(client, info, true).await
}

/// Writes the node status (and renews the Lease when `kube-node-lease` exists).
pub async fn heartbeat(client: &kube::Client, info: &NodeInfo, ready: bool) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let now = Timestamp::now();
    let mut status = node_status(info, ready, now);
    // Keep transition times while a condition's status stays the same.
    if let Ok(current) = api.get_status(&info.name).await {
        let before = current
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default();
        if let Some(conds) = status.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for c in conds {
                let same = before.iter().find(|b| {
                    Some(b.type_.as_str()) == c["type"].as_str()
                        && Some(b.status.as_str()) == c["status"].as_str()
                });
                if let Some(t) = same.and_then(|b| b.last_transition_time.clone()) {
                    c["lastTransitionTime"] = json!(t);
                }
            }
        }
    }
    let node = api
        .patch_status(
            &info.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    if ready {
        renew_lease(client, info, &node, now).await;
    }
    Ok(node)
}

async fn renew_lease(client: &kube::Client, info: &NodeInfo, node: &Node, now: Timestamp) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces
        .get_opt(LEASE_NAMESPACE)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        return;
    }
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": info.name, "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": info.name,
                                 "uid": node.metadata.uid.clone().unwrap_or_default()}]},
        "spec": {"holderIdentity": info.name, "leaseDurationSeconds": LEASE_SECONDS,
                 "renewTime": MicroTime(now)},
    });
    let params = PatchParams::apply("ironedge-node").force();
    if let Err(e) = api.patch(&info.name, &params, &Patch::Apply(&lease)).await {
        tracing::warn!(error = %e, "renewing the node lease failed");
    }
}

/// Reports the node NotReady, or deletes it when `delete` is set.
pub async fn unregister(client: &kube::Client, info: &NodeInfo, delete: bool) -> Result<()> {
    if delete {
        let api: Api<Node> = Api::all(client.clone());
        match api.delete(&info.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
        let _ = leases.delete(&info.name, &DeleteParams::default()).await;
        tracing::info!(node = %info.name, "deleted node");
        return Ok(());
    }
    heartbeat(client, info, false).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_publishes_the_kubelet_endpoint_and_internal_ip_only() {
        let info = NodeInfo {
            name: "n1".into(),
            address: Ipv4Addr::LOCALHOST,
            kubelet_port: 10250,
            pod_cidr: "10.88.0.0/24".into(),
            labels: BTreeMap::new(),
            max_pods: 110,
        };
        let s = node_status(&info, true, Timestamp::UNIX_EPOCH);
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(
            s["addresses"],
            json!([{"type": "InternalIP", "address": "127.0.0.1"}])
        );
        assert_eq!(s["conditions"][3]["type"], "Ready");
        assert_eq!(s["capacity"]["pods"], "110");
        assert_eq!(labels(&info)[NODE_LABEL], "true");
    }
}
