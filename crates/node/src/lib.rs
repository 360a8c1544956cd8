//! `ironedge node`: a development and test-only kubelet for machines without a container
//! runtime. It registers a Node, binds the Pending pods of the namespaces it serves, and runs each
//! container as a local process: the image is mapped to a local executable ([`image_map`]), the
//! process gets the pod's environment, arguments, volumes and in-cluster config, its own network
//! namespace with a pod IP, `/etc/hosts` entries for every Service and DNAT rules for their
//! ClusterIPs. Pod status is written as kubelet writes it, and container logs are served on the
//! kubelet port so that `kubectl logs` works. See the crate README for the design and for what is
//! not emulated.
//!
//! ```no_run
//! # async fn example() -> ironedge_node::Result<()> {
//! use ironedge_node::{ImageMap, NodeSettings};
//! let client = kube::Client::try_default().await?;
//! let map = ImageMap::builtin(std::path::Path::new("/usr/local/bin/ironedge"));
//! let settings = NodeSettings::new("dev-node", "127.0.0.1:6443".parse().unwrap(), map);
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! ironedge_node::run(client, settings, shutdown, None).await
//! # }
//! ```

pub mod backoff;
pub mod cidr;
pub mod command;
pub mod container;
pub mod context;
pub mod env;
pub mod error;
pub mod expand;
pub mod hosts;
pub mod image_map;
pub mod log_server;
pub mod logs;
pub mod names;
pub mod network;
pub mod nft;
pub mod node;
pub mod node_object;
pub mod ownership;
pub mod paths;
pub mod pod_worker;
pub mod process;
pub mod provisioner;
pub mod proxy;
pub mod sandbox;
pub mod service_table;
pub mod settings;
pub mod status;
pub mod volumes;

#[cfg(test)]
mod fixtures;

pub use backoff::BackoffSettings;
pub use cidr::Ipv4Cidr;
pub use error::{ConfigError, Error, Result};
pub use image_map::ImageMap;
pub use node::{NodeStarted, run};
pub use settings::NodeSettings;
