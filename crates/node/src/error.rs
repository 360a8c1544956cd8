//! Errors of the node, split by what the caller does with them.

use std::path::PathBuf;

/// Failures of the node itself (start-up, network, API server).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An external tool (`ip`, `nft`, `nsenter`, …) failed.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr or the spawn error.
        reason: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A socket could not be bound or used.
    #[error("{what}: {source}")]
    Net {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The image map is malformed.
    #[error("image map {origin}: {reason}")]
    ImageMap {
        /// File name or "built-in".
        origin: String,
        /// What is wrong, with the entry's position.
        reason: String,
    },
    /// A setting has an invalid value.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// Which setting.
        what: &'static str,
        /// The offending value.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Every candidate pod network is taken.
    #[error("no free pod network in {range}: pass --pod-cidr with an unused /24")]
    NoFreeNetwork {
        /// The range that was searched.
        range: String,
    },
    /// TLS set-up for the kubelet endpoint failed.
    #[error("kubelet endpoint TLS: {0}")]
    Tls(String),
}

/// Result of node operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    /// An [`Error::Net`] for `what`.
    pub(crate) fn net(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Net { what, source }
    }
}

/// Why a container cannot be created from its spec (kubelet's `CreateContainerConfigError`):
/// missing Secrets, ConfigMaps or keys, unmapped images, bad references.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A referenced Secret does not exist.
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    /// A referenced ConfigMap does not exist.
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    /// A referenced key is missing from a Secret or ConfigMap.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyNotFound {
        /// "Secret" or "ConfigMap".
        kind: &'static str,
        /// Namespace of the object.
        namespace: String,
        /// Name of the object.
        name: String,
        /// The missing key.
        key: String,
    },
    /// A `fieldRef` names an unsupported field.
    #[error("unsupported fieldRef {0:?}")]
    UnsupportedField(String),
    /// A `volumeMount` names a volume the pod does not have.
    #[error("volume {0:?} not found in the pod spec")]
    VolumeNotFound(String),
    /// A volume type this node cannot provide.
    #[error("volume {name:?}: {reason}")]
    UnsupportedVolume {
        /// The volume.
        name: String,
        /// Why.
        reason: String,
    },
    /// A `subPath` tries to leave its volume.
    #[error("subPath {0:?} must be a relative path inside the volume")]
    BadSubPath(String),
    /// The image has no local executable.
    #[error(
        "image {0:?} has no local mapping: add a rule to the node's image map (--image-map or --map-image)"
    )]
    ImageNotMapped(String),
    /// The container's command is not known for its image.
    #[error(
        "command {command:?} of image {image:?} is not mapped: add it under `commands` of the image's rule"
    )]
    CommandNotMapped {
        /// The image.
        image: String,
        /// The command.
        command: String,
    },
    /// Neither the container nor the image map gives a command.
    #[error(
        "no command to run for image {0:?}: set the container's command or the rule's entrypoint"
    )]
    NoCommand(String),
    /// A service-account token could not be requested.
    #[error("service account token for {service_account:?}: {reason}")]
    Token {
        /// The service account.
        service_account: String,
        /// The API error.
        reason: String,
    },
    /// The API server failed while reading a referenced object.
    #[error("reading {what}: {reason}")]
    Api {
        /// The object.
        what: String,
        /// The API error.
        reason: String,
    },
}
