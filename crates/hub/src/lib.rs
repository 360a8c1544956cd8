//! Cloud hub: IoT-Hub-compatible registry, twins, deployments, telemetry, MQTT and REST heads.

pub mod auth;
pub mod configuration;
pub mod etag;
pub mod query;
pub mod registry;
pub mod storage;
pub mod time;
pub mod twin;
