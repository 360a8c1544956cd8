//! Edge agent: makes a Kubernetes namespace an IoT Edge device (`ironedge agent`).
//!
//! Contracts: `reference/iotedge-runtime.md` §4–5, `iot-hub-protocols.md` §1–4 and §7,
//! `azure-iotedge-k8s.md` §4–5 and §7 (the older preview, whose gaps this fixes).
//!
//! ```text
//!             hub (ours or Azure IoT Hub)
//!   MQTT/TLS as $edgeAgent, $edgeHub │ ▲ reported properties (diffs)   REST: module identities
//!        desired (GET + patches)     ▼ │                                 (device SAS token)
//!   ┌──────────────────────── agent (one per device namespace) ─────────────────────────────┐
//!   │ sync: validate (model) → identities → EdgeDeployment + pull Secrets   reporter ◄─ status │
//!   │ controller (per-namespace) → Deployments, Services, …   methods: ping/RestartModule/Logs │
//!   │ edge CA → trust bundle ConfigMap, edge hub TLS Secret    workload API (TLS, TokenReview) │
//!   └─────────────────────────────────────────────────────────────────────────────────────────┘
//!                                        ▲ HTTPS + Bearer (pod's projected SA token)
//!                        module pod: SDK ─unix socket─► workload-proxy sidecar
//! ```
//!
//! - [`agent::run`] wires everything; [`sync`] owns the desired state; [`reporter`] sends
//!   reported properties; [`identities`] manages module identities through [`registry`];
//!   [`caller_auth`] authenticates workload callers; [`edge_ca`] and [`certificates`] own the
//!   device CA; [`methods`] answers direct methods; [`workload::proxy`] is the sidecar.
//! - Pure parts (unit-tested without servers): [`twin_sync`], [`reported`], [`identities::plan`],
//!   [`edge_ca::NamePolicy`], [`methods::logs`], [`methods::time_filter`], [`caller_auth::check_user`].
//!
//! ```
//! use ironedge_agent::reported::diff;
//! use serde_json::json;
//!
//! let before = json!({"modules": {"sensor": {"runtimeStatus": "running"}}, "lastDesiredVersion": 3});
//! let after = json!({"modules": {"sensor": {"runtimeStatus": "backoff"}}, "lastDesiredVersion": 3});
//! assert_eq!(diff(&before, &after), Some(json!({"modules": {"sensor": {"runtimeStatus": "backoff"}}})));
//! ```

pub mod agent;
pub mod caller_auth;
pub mod certificates;
pub mod cluster;
pub mod edge_ca;
mod error;
pub mod events;
pub mod identities;
pub mod labels;
pub mod methods;
pub mod metrics;
pub mod provisioning;
pub mod rbac;
pub mod registry;
pub mod reported;
pub mod reporter;
pub mod server;
pub mod settings;
pub mod sync;
pub mod tls;
pub mod twin_sync;
pub mod upstream;
pub mod workload;

pub use agent::{Handles, Listeners, run};
pub use error::{Error, Result};
pub use settings::AgentSettings;
