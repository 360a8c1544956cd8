//! Request extractors: the authenticated caller, `If-Match`, and JSON bodies whose errors are
//! IoT-Hub-shaped 400s that say where the JSON broke.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, IF_MATCH};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::Hub;
use crate::auth::{self, Principal, Requirement, Right};
use crate::error::Error;
use crate::registry::IfMatch;

/// The authenticated caller.
#[derive(Debug)]
pub(super) struct Caller(pub(super) Principal);

impl Caller {
    /// Refuses the request unless the caller has `right` (device tokens: only for `own_device`).
    pub(super) fn require(&self, right: Right, own_device: Option<&str>) -> Result<(), ApiError> {
        auth::authorize(&self.0, Requirement { right, own_device }).map_err(|e| ApiError(e.into()))
    }
}

impl FromRequestParts<Hub> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Self(hub.authenticate_rest(header).await?))
    }
}

/// The `If-Match` header.
#[derive(Debug)]
pub(super) struct Etag(pub(super) IfMatch);

impl<S: Send + Sync> FromRequestParts<S> for Etag {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let v = parts.headers.get(IF_MATCH).and_then(|v| v.to_str().ok());
        Ok(Self(IfMatch::parse(v)))
    }
}

/// A JSON body; malformed JSON is a 400 naming line and column.
#[derive(Debug)]
pub(super) struct JsonBody<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError(Error::BadRequest(format!(
                "cannot read the request body: {e}"
            )))
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError(Error::BadRequest(
                "the request body is empty; send a JSON document".into(),
            )));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| ApiError(Error::BadRequest(format!("invalid JSON body: {e}"))))
    }
}
