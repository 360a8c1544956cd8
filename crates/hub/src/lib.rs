//! Cloud hub: IoT-Hub-compatible registry, twins, deployments, telemetry, MQTT and REST heads.
//!
//! Pure core: [`registry`] (identities, keys, edge system modules), [`twin`] (versions,
//! `$metadata`, etags, merge-patches, limits), [`query`] (the IoT Hub query language),
//! [`configuration`] (automatic and layered deployments), [`auth`] (policies and SAS checks).
//! Shell: [`storage`] (the `Storage` trait, SQLite), [`service`] (the [`Hub`]: CAS writes,
//! re-evaluation, telemetry writer, C2D, methods, connections), [`rest`] (HTTPS API),
//! [`device_api`] (MQTT hooks), [`server`] (everything wired, graceful shutdown) and [`client`].
//!
//! ```
//! use ironedge_hub::query::{matches, parse_condition};
//! use ironedge_hub::twin::{ServicePatch, Twin};
//!
//! let mut twin = Twin::new("dev1", None, "2026-01-01T00:00:00.000Z");
//! let patch: ServicePatch = serde_json::from_str(r#"{"tags": {"env": "prod"}}"#)?;
//! twin.patch(&patch, "2026-01-01T00:00:01.000Z")?;
//! let doc = serde_json::json!({"deviceId": "dev1", "tags": twin.tags});
//! assert!(matches(&parse_condition("tags.env = 'prod'")?, &doc));
//! assert_eq!(twin.etag(), "AAAAAAAAAAI=");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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
