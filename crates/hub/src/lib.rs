//! Cloud hub: IoT-Hub-compatible registry, twins, deployments, telemetry, MQTT and REST heads.

pub mod auth;
pub mod client;
pub mod configuration;
pub mod device_api;
mod error;
pub mod etag;
pub mod metrics;
pub mod query;
pub mod registry;
pub mod rest;
pub mod server;
pub mod service;
pub mod storage;
pub mod time;
pub mod twin;

pub use error::{Error, Result};
pub use service::{Hub, HubSettings};
