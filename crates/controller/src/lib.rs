//! The `EdgeDeployment` custom resource, the pure translation of IoT Edge modules into Kubernetes
//! objects, and the controller that keeps a cluster equal to it.
//!
//! - [`crd`]: the resource types and the CRD (`ironedge crd`), fixed up for Kubernetes 1.20.
//! - [`translate`]: `EdgeDeployment` → Deployments/Jobs, Services, ServiceAccounts, claims; pure.
//! - [`status`]: pods and workloads → per-module runtime status and conditions; pure.
//! - [`controller`]: the kube-runtime controller, leader election, metrics and health.
//!
//! ```
//! use ironedge_controller::crd::{EdgeDeployment, EdgeDeploymentSpec};
//! use ironedge_controller::translate::translate;
//!
//! let spec: EdgeDeploymentSpec = serde_json::from_value(serde_json::json!({
//!     "deviceId": "dev1",
//!     "hubHostName": "hub.example.net",
//!     "modules": [{"name": "tempSensor", "image": "sensor:1.0", "restartPolicy": "always"}],
//! }))?;
//! let desired = translate(&EdgeDeployment::new("dev1", spec))?;
//! assert_eq!(desired.modules[0].name, "tempsensor");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod controller;
pub mod crd;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod from_manifest;
pub mod labels;
pub mod names;
pub mod quantity;
pub mod rbac;
pub mod status;
pub mod translate;

pub use crd::{EdgeDeployment, EdgeDeploymentSpec, EdgeDeploymentStatus};
pub use error::{Error, Result, SpecError};
