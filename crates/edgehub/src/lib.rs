//! Edge hub: MQTT broker for modules, route engine, store-and-forward, upstream link.

pub mod authz;
pub mod broker;
pub mod client;
pub mod config;
pub mod config_source;
pub mod http;
pub mod hub;
pub mod identities;
pub mod kube_watch;
pub mod message;
mod methods;
pub mod metrics;
mod pump;
pub mod runtime;
pub mod sessions;
pub mod twin;
mod twins;
pub mod upstream;
pub mod wire;
