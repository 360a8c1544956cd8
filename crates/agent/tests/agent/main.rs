//! The edge agent's integration tests, in one binary (one link, shared set-up code): the real
//! control plane named by `KUBECONFIG`, a real ironedge hub, the agent with a namespaced
//! ServiceAccount, the Azure IoT SDK from `scripts/python-env`. Without a cluster they fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

mod certificates;
mod common;
mod deployment;
mod invalid;
mod isolation;
mod methods;
mod offline;
mod provisioning;
mod status;
mod workload;
