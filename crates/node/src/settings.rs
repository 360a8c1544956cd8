//! The node's settings: plain values, parsed once by the CLI.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::BackoffSettings;
use crate::cidr::Ipv4Cidr;
use crate::image_map::ImageMap;

/// Host name every pod resolves to the node (its pod-network gateway).
pub const HOST_ALIAS: &str = "host.ironedge.internal";

/// Everything the node needs to run.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Node name.
    pub node_name: String,
    /// Namespaces whose unbound pods the node binds; empty means all.
    pub namespaces: Vec<String>,
    /// Where pod directories, logs and claim data live.
    pub state_dir: PathBuf,
    /// Image → executable rules.
    pub image_map: ImageMap,
    /// Pod network; `None` picks a free /24 of 10.88.0.0/16.
    pub pod_cidr: Option<Ipv4Cidr>,
    /// The node's InternalIP and the kubelet endpoint's bind address.
    pub address: Ipv4Addr,
    /// Kubelet endpoint port (0 picks a free one).
    pub kubelet_port: u16,
    /// CA (PEM) whose client certificates the kubelet endpoint requires; `None` accepts
    /// anonymous clients.
    pub kubelet_client_ca: Option<String>,
    /// Host loopback ports that pods reach on their own loopback.
    pub host_ports: Vec<u16>,
    /// Where the API server listens (target of the in-cluster `kubernetes` Service).
    pub apiserver: SocketAddr,
    /// Node status and Lease period.
    pub heartbeat: Duration,
    /// Restart back-off.
    pub backoff: BackoffSettings,
    /// How often Secret, ConfigMap and downward-API volumes are rewritten.
    pub volume_resync: Duration,
    /// Cluster DNS domain.
    pub cluster_domain: String,
    /// Delete the Node object on exit instead of reporting it NotReady.
    pub delete_node_on_exit: bool,
    /// Extra Node labels.
    pub labels: BTreeMap<String, String>,
    /// Pod capacity.
    pub max_pods: u32,
    /// Storage classes whose claims the node provisions, besides claims without a class.
    pub storage_classes: Vec<String>,
    /// Directory for machine-wide locks (pod network allocation, running nodes).
    pub lock_dir: PathBuf,
    /// Directory of the machine-wide registry of created mount points (see [`crate::paths`]).
    pub mount_registry: PathBuf,
}

impl NodeSettings {
    /// Settings with kubelet's defaults for `node_name`, talking to `apiserver`.
    pub fn new(node_name: &str, apiserver: SocketAddr, image_map: ImageMap) -> Self {
        Self {
            node_name: node_name.to_string(),
            namespaces: Vec::new(),
            state_dir: PathBuf::from("/var/lib/ironedge-node").join(node_name),
            image_map,
            pod_cidr: None,
            address: Ipv4Addr::LOCALHOST,
            kubelet_port: 10250,
            kubelet_client_ca: None,
            host_ports: Vec::new(),
            apiserver,
            heartbeat: Duration::from_secs(10),
            backoff: BackoffSettings::default(),
            volume_resync: Duration::from_secs(60),
            cluster_domain: "cluster.local".into(),
            delete_node_on_exit: false,
            labels: BTreeMap::new(),
            max_pods: 110,
            storage_classes: vec![crate::provisioner::STORAGE_CLASS.to_string()],
            lock_dir: PathBuf::from("/run/ironedge-node"),
            mount_registry: PathBuf::from("/run/ironedge-node"),
        }
    }

    /// Whether unbound pods of `namespace` are this node's to bind.
    pub fn serves(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }
}
