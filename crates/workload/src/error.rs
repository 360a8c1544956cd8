//! One error type for the workload routes, answered as `{message}` bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api_version::VersionError;
use crate::{CertError, KeyError};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a workload request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `api-version` parameter is missing, malformed or too old.
    #[error(transparent)]
    ApiVersion(#[from] VersionError),
    /// The request body is not what the route expects.
    #[error("invalid request body: {0}")]
    BadRequest(String),
    /// The caller may not act as the module in the path; the reason is only logged.
    #[error("caller is not authorised for module {module:?}: {reason}")]
    Forbidden {
        /// Module named in the path.
        module: String,
        /// Why, for the log.
        reason: String,
    },
    /// Signing failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Certificate issuing failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Binding or serving the listener failed.
    #[error("workload API i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Self::ApiVersion(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::Key(KeyError::UnknownModule { .. } | KeyError::GenerationMismatch { .. }) => {
                StatusCode::NOT_FOUND
            }
            Self::Key(KeyError::UnsupportedAlgorithm(_) | KeyError::UnknownKeyId(_)) => {
                StatusCode::BAD_REQUEST
            }
            Self::Cert(CertError::Invalid(_)) => StatusCode::BAD_REQUEST,
            Self::Key(KeyError::Backend(_)) | Self::Cert(CertError::Backend(_)) | Self::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        match status {
            // Say nothing about why: a probing caller learns only "no".
            StatusCode::FORBIDDEN => {
                tracing::warn!(error = %self, "workload request refused");
                status.into_response()
            }
            StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(error = %self, "workload request failed");
                let body = serde_json::json!({ "message": "internal error" });
                (status, axum::Json(body)).into_response()
            }
            _ => {
                let body = serde_json::json!({ "message": self.to_string() });
                (status, axum::Json(body)).into_response()
            }
        }
    }
}
