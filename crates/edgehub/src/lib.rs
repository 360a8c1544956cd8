//! Edge hub: the per-device MQTT broker for modules and leaf devices, the IoT Edge route engine,
//! crash-safe store-and-forward, and the upstream link to the cloud hub.
//!
//! ```text
//!  module ──MQTT/TLS──► broker (crates/mqtt) ──hooks──► Hub::publish
//!                                                       │ authz (own topics only)
//!                                                       │ wire::ingest (system properties, 256 KiB)
//!                                                       │ RouteTable::route (crates/routing)
//!                                                       ▼
//!                                store.submit_append ──commit──► PUBACK
//!                                                       │
//!                         one pump per endpoint queue ◄─┘ (priority, then arrival order)
//!                          ├─ {edge}/{module}/{input} ──► connected + subscribed module, PUBACK ► ack
//!                          └─ iothub ──► UpstreamLink: one MQTT connection per sender identity,
//!                                        token minted from the cached key, cloud PUBACK ► ack
//! ```
//!
//! - [`hub::Hub`] is the core the broker calls ([`broker::EdgeHubHooks`]); it owns sessions,
//!   the route table (swapped whole by [`config_source`]: a JSON file or the device's
//!   `EdgeDeployment`, see [`kube_watch`]), the twin cache and the pumps.
//! - Pure parts are separate and unit-tested: [`authz`] (who may publish/subscribe what),
//!   [`client`] (who may connect), [`wire`] (property bags ↔ messages, enrichment, size rule),
//!   [`message`] (the stored form), [`twin`] (offline twin cache logic), [`config`].
//! - [`server_cert::ServerCertificate`] serves the TLS certificate and reloads it when the
//!   files change (the agent renews it in a Secret).
//! - [`runtime::run`] wires a whole edge hub and shuts it down without losing anything.
//!
//! ```
//! use ironedge_edgehub::config::HubConfig;
//!
//! let config: HubConfig = serde_json::from_str(r#"{
//!     "routes": {"up": "FROM /messages/* INTO $upstream"},
//!     "storeAndForward": {"timeToLiveSecs": 7200}
//! }"#)?;
//! let compiled = config.compile().map_err(|e| e.to_string())?;
//! assert_eq!(compiled.table.entries().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod authz;
pub mod broker;
pub mod client;
mod client_ops;
pub mod config;
pub mod config_source;
pub mod http;
pub mod hub;
pub mod identities;
mod ingest;
pub mod kube_watch;
pub mod message;
mod methods;
pub mod metrics;
mod pump;
pub mod registry;
pub mod runtime;
pub mod server_cert;
pub mod sessions;
pub mod twin;
mod twins;
pub mod upstream;
pub mod wire;
