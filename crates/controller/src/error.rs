//! Errors of translation (a bad spec) and of the controller (talking to the API server).

use crate::names::NameCollision;

/// A spec that cannot be turned into Kubernetes objects. The controller reports it as `Degraded`
/// and touches nothing until the spec is fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Two modules (or volumes) map to the same Kubernetes name.
    #[error(
        "{what}s {:?} and {:?} would both be named {:?} in Kubernetes; rename one of them",
        collision.first, collision.second, collision.name
    )]
    NameCollision {
        /// `module` or `volume`.
        what: &'static str,
        /// The two originals and the shared name.
        collision: NameCollision,
    },
    /// The same module id appears twice.
    #[error("module {name:?} appears more than once in spec.modules")]
    DuplicateModule {
        /// The repeated module id.
        name: String,
    },
    /// A module has no image.
    #[error("module {module:?} has an empty image")]
    EmptyImage {
        /// The module id.
        module: String,
    },
    /// A createOptions field has the wrong type or an impossible value.
    #[error("module {module:?}: createOptions{path}: expected {expected}, found {found}")]
    InvalidCreateOptions {
        /// The module id.
        module: String,
        /// JSON path inside createOptions, e.g. `.HostConfig.Binds[1]`.
        path: String,
        /// What the field must be.
        expected: &'static str,
        /// What it was (truncated JSON).
        found: String,
    },
    /// An environment variable name Kubernetes rejects.
    #[error(
        "module {module:?}: environment variable name {name:?} is not allowed by Kubernetes \
         (use letters, digits, '_', '-' and '.', not starting with a digit)"
    )]
    InvalidEnvName {
        /// The module id.
        module: String,
        /// The offending name.
        name: String,
    },
    /// A size or quantity that Kubernetes cannot parse.
    #[error("{field}: {value:?} is not a Kubernetes quantity (e.g. 1Gi, 500Mi)")]
    InvalidQuantity {
        /// Where the value came from.
        field: String,
        /// The value.
        value: String,
    },
    /// The workload proxy needs a `unix://` workload URI (the socket it serves in the pod).
    #[error(
        "spec.workload.uri {uri:?} must be a unix:// socket path when spec.workload.proxy is set"
    )]
    WorkloadProxyUri {
        /// The URI given.
        uri: String,
    },
    /// An object the spec needs already exists and belongs to something else.
    #[error(
        "{kind} {name:?} already exists and is not managed by this EdgeDeployment ({owner}); \
         delete or rename it"
    )]
    ObjectConflict {
        /// Object kind.
        kind: &'static str,
        /// Object name.
        name: String,
        /// Who manages it.
        owner: String,
    },
}

impl SpecError {
    /// A CamelCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NameCollision { .. } => "NameCollision",
            Self::DuplicateModule { .. } => "DuplicateModule",
            Self::EmptyImage { .. } => "EmptyImage",
            Self::InvalidCreateOptions { .. } => "InvalidCreateOptions",
            Self::InvalidEnvName { .. } => "InvalidEnvName",
            Self::InvalidQuantity { .. } => "InvalidQuantity",
            Self::WorkloadProxyUri { .. } => "WorkloadProxyUri",
            Self::ObjectConflict { .. } => "ObjectConflict",
        }
    }
}

/// Errors of the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The spec cannot be translated.
    #[error("invalid EdgeDeployment spec: {0}")]
    Spec(#[from] SpecError),
    /// A request got no answer in time (for example while the API server restarts).
    #[error("no answer from the API server within {0:?}; will retry")]
    Timeout(std::time::Duration),
    /// The EdgeDeployment CRD is not installed.
    #[error(
        "the EdgeDeployment CRD (edgedeployments.ironedge.io) is not installed; install it with \
         `ironedge crd | kubectl apply -f -`"
    )]
    CrdMissing,
    /// An object could not be (de)serialised.
    #[error("cannot serialise {what}: {source}")]
    Serialization {
        /// What was being serialised.
        what: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// The object handed to reconcile has no namespace or name.
    #[error("EdgeDeployment has no {0}")]
    MissingMetadata(&'static str),
    /// Leadership was lost while reconciling.
    #[error("lost the leader lease {0:?}; another controller instance took over")]
    LeadershipLost(String),
    /// The metrics and health server could not start.
    #[error("cannot serve metrics and health on {addr}: {source}")]
    Serve {
        /// Address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// A short label for the `error` dimension of the error counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Self::Kube(kube::Error::Api(status)) if status.code >= 500 => "apiserver",
            Self::Kube(kube::Error::Api(_)) => "api_rejected",
            Self::Kube(_) => "transport",
            Self::Spec(_) => "invalid_spec",
            Self::Timeout(_) => "timeout",
            Self::CrdMissing => "crd_missing",
            Self::Serialization { .. } => "serialization",
            Self::MissingMetadata(_) => "missing_metadata",
            Self::LeadershipLost(_) => "leadership_lost",
            Self::Serve { .. } => "serve",
        }
    }
}

/// Result with the controller's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
