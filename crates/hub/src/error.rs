//! The service's error type: every failure of a hub operation, by source.

use crate::auth::AuthError;
use crate::configuration::ConfigurationError;
use crate::query::QueryError;
use crate::registry::RegistryError;
use crate::storage::StorageError;
use crate::twin::TwinError;

/// A failed hub operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Identity rules.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Twin rules.
    #[error(transparent)]
    Twin(#[from] TwinError),
    /// Configuration rules.
    #[error(transparent)]
    Configuration(#[from] ConfigurationError),
    /// Query syntax.
    #[error("invalid query: {0}")]
    Query(#[from] QueryError),
    /// Storage.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Authentication or authorisation.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// No such device.
    #[error("device {0:?} not found")]
    DeviceNotFound(String),
    /// No such module.
    #[error("module {module:?} of device {device:?} not found")]
    ModuleNotFound {
        /// Device id.
        device: String,
        /// Module id.
        module: String,
    },
    /// No such configuration.
    #[error("configuration {0:?} not found")]
    ConfigurationNotFound(String),
    /// No such C2D message.
    #[error("cloud-to-device message {message_id:?} of device {device:?} not found")]
    MessageNotFound {
        /// Device id.
        device: String,
        /// Message id.
        message_id: String,
    },
    /// The target of a direct method is not connected (or not listening for methods).
    #[error("{0} is not online (not connected or not subscribed to direct methods)")]
    DeviceNotOnline(String),
    /// The device did not answer a direct method in time.
    #[error("{identity} did not answer method {method:?} within {secs} s")]
    MethodTimeout {
        /// Target identity.
        identity: String,
        /// Method name.
        method: String,
        /// Timeout used.
        secs: u64,
    },
    /// Too many C2D messages wait for a device.
    #[error(
        "device {device:?} already has {limit} cloud-to-device messages waiting; wait until it receives them"
    )]
    QueueFull {
        /// Device id.
        device: String,
        /// Queue limit.
        limit: usize,
    },
    /// A request is malformed in a way no more specific error covers.
    #[error("{0}")]
    BadRequest(String),
    /// Concurrent writers kept winning; the client may retry.
    #[error("too many concurrent updates of {0}; retry")]
    Busy(String),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with the hub [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short stable label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Registry(_) => "registry",
            Self::Twin(_) => "twin",
            Self::Configuration(_) => "configuration",
            Self::Query(_) => "query",
            Self::Storage(_) => "storage",
            Self::Auth(_) => "auth",
            Self::DeviceNotFound(_)
            | Self::ModuleNotFound { .. }
            | Self::ConfigurationNotFound(_) => "not_found",
            Self::MessageNotFound { .. } => "not_found",
            Self::DeviceNotOnline(_) => "not_online",
            Self::MethodTimeout { .. } => "timeout",
            Self::QueueFull { .. } => "queue_full",
            Self::BadRequest(_) => "bad_request",
            Self::Busy(_) => "busy",
            Self::Internal(_) => "internal",
        }
    }
}
