//! The agent's errors, one variant per failure source, each with a metric label.

use crate::registry::RegistryError;
use crate::upstream::UpstreamError;

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API server failed.
    #[error("kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// A call to the hub's registry (module identities) failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The MQTT link to the hub failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Certificates could not be made or read.
    #[error("certificates: {0}")]
    Pki(#[from] ironedge_pki::Error),
    /// The controller failed.
    #[error("controller: {0}")]
    Controller(#[from] ironedge_controller::Error),
    /// The device's provisioning data is unusable.
    #[error("provisioning: {0}")]
    Provisioning(String),
    /// A stored object (Secret, ConfigMap) has unusable content.
    #[error("{kind} {name:?} is unusable: {reason}; delete it and the agent will make a new one")]
    Stored {
        /// Object kind.
        kind: &'static str,
        /// Object name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A listener could not be bound or served.
    #[error("cannot serve {what} on {addr}: {source}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// Address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// A short label for the `reason` dimension of the error counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.code == 409 => "kube_conflict",
            Self::Kube(kube::Error::Api(status)) if status.code == 403 => "kube_forbidden",
            Self::Kube(_) => "kube",
            Self::Registry(_) => "registry",
            Self::Upstream(_) => "upstream",
            Self::Pki(_) => "pki",
            Self::Controller(_) => "controller",
            Self::Provisioning(_) => "provisioning",
            Self::Stored { .. } => "stored_object",
            Self::Serve { .. } => "serve",
        }
    }
}

/// Result with the agent's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
