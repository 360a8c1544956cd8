//! One module per top-level subcommand; each exposes its clap enum and a `run` function.

pub(crate) mod agent;
pub(crate) mod controller;
pub(crate) mod crd;
pub(crate) mod deploy;
pub(crate) mod deployment;
pub(crate) mod device;
pub(crate) mod down;
pub(crate) mod edgehub;
pub(crate) mod edgehub_bench;
pub(crate) mod hub;
pub(crate) mod manifest;
pub(crate) mod messages;
pub(crate) mod node;
pub(crate) mod render;
pub(crate) mod route;
pub(crate) mod twin;
pub(crate) mod up;
pub(crate) mod workload_proxy;
