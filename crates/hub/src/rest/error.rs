//! One error type for the REST head: IoT-Hub-shaped bodies
//! (`{"Message":"ErrorCode:X;text","ExceptionMessage":"Tracking ID:…"}`), internals logged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;
use crate::configuration::ConfigurationError;
use crate::error::Error;
use crate::registry::RegistryError;
use crate::twin::TwinError;

/// A failed REST request.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

/// HTTP status and IoT Hub error code of a hub error.
pub fn classify(e: &Error) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match e {
        Error::Registry(RegistryError::AlreadyExists { kind: "module", .. }) => {
            (S::CONFLICT, "ModuleAlreadyExistsOnDevice")
        }
        Error::Registry(RegistryError::AlreadyExists { .. }) => {
            (S::CONFLICT, "DeviceAlreadyExists")
        }
        Error::Registry(RegistryError::PreconditionFailed { .. })
        | Error::Twin(TwinError::PreconditionFailed { .. })
        | Error::Configuration(ConfigurationError::PreconditionFailed { .. }) => {
            (S::PRECONDITION_FAILED, "PreconditionFailed")
        }
        Error::Configuration(ConfigurationError::AlreadyExists(_)) => {
            (S::CONFLICT, "ConfigurationAlreadyExists")
        }
        Error::Registry(_)
        | Error::Twin(_)
        | Error::Configuration(_)
        | Error::Query(_)
        | Error::BadRequest(_) => (S::BAD_REQUEST, "ArgumentInvalid"),
        Error::Auth(AuthError::Forbidden { .. }) => (S::FORBIDDEN, "IotHubUnauthorizedAccess"),
        Error::Auth(_) => (S::UNAUTHORIZED, "IotHubUnauthorizedAccess"),
        Error::DeviceNotFound(_) => (S::NOT_FOUND, "DeviceNotFound"),
        Error::ModuleNotFound { .. } => (S::NOT_FOUND, "ModuleNotFound"),
        Error::ConfigurationNotFound(_) => (S::NOT_FOUND, "ConfigurationNotFound"),
        Error::MessageNotFound { .. } => (S::NOT_FOUND, "DeviceMessageNotFound"),
        Error::DeviceNotOnline(_) => (S::NOT_FOUND, "DeviceNotOnline"),
        Error::MethodTimeout { .. } => (S::GATEWAY_TIMEOUT, "GatewayTimeout"),
        Error::QueueFull { .. } => (S::FORBIDDEN, "DeviceMaximumQueueDepthExceeded"),
        Error::Busy(_) => (S::SERVICE_UNAVAILABLE, "ServerBusy"),
        Error::Storage(_) | Error::Internal(_) => (S::INTERNAL_SERVER_ERROR, "ServerError"),
    }
}

/// The IoT Hub error body.
pub fn body(code: &str, message: &str) -> serde_json::Value {
    let tracking = uuid::Uuid::new_v4().simple().to_string();
    json!({
        "Message": format!("ErrorCode:{code};{message}"),
        "ExceptionMessage": format!("Tracking ID:{tracking}-TimeStamp:{}", crate::service::now_iso()),
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = classify(&self.0);
        let message = if status.is_server_error()
            && status != StatusCode::GATEWAY_TIMEOUT
            && status != StatusCode::SERVICE_UNAVAILABLE
        {
            tracing::error!(error = %self.0, "request failed");
            "internal error; the hub log has the details".to_owned()
        } else {
            tracing::debug!(error = %self.0, status = status.as_u16(), "request refused");
            self.0.to_string()
        };
        (status, axum::Json(body(code, &message))).into_response()
    }
}
