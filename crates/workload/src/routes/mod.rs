//! The HTTP routes, one file per route group (edgelet-http-workload layout).

mod certificate;
mod sign;
mod trust_bundle;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};

use crate::api_version::ApiVersion;
use crate::{Caller, CallerPeer, Error, Workload};

/// The workload API as an axum router (serve it with [`crate::serve`] or any axum server).
pub fn router(workload: Workload) -> Router {
    Router::new()
        .route("/trust-bundle", get(trust_bundle::trust_bundle))
        .route(
            "/manifest-trust-bundle",
            get(trust_bundle::manifest_trust_bundle),
        )
        .route("/modules/{module}/genid/{genid}/sign", post(sign::sign))
        .route(
            "/modules/{module}/genid/{genid}/certificate/server",
            post(certificate::server),
        )
        .route(
            "/modules/{module}/genid/{genid}/certificate/identity",
            post(certificate::identity_with_genid),
        )
        .route(
            "/modules/{module}/certificate/identity",
            post(certificate::identity),
        )
        .with_state(workload)
}

/// Checks the `api-version` query parameter.
fn check_version(query: &HashMap<String, String>) -> crate::Result<ApiVersion> {
    Ok(ApiVersion::check(
        query.get("api-version").map(String::as_str),
    )?)
}

/// Extracts the [`Caller`] from the connection info and the `Authorization` header.
#[derive(Debug)]
struct CallerOf(Caller);

impl<S: Send + Sync> FromRequestParts<S> for CallerOf {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<CallerPeer>>().cloned();
        Ok(Self(caller(peer, &parts.headers)))
    }
}

/// Builds the caller from the connection info and headers.
fn caller(peer: Option<ConnectInfo<CallerPeer>>, headers: &HeaderMap) -> Caller {
    let bearer_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    Caller {
        peer: peer.map_or(
            CallerPeer::Unix {
                pid: None,
                uid: None,
            },
            |ConnectInfo(p)| p,
        ),
        bearer_token,
    }
}

/// Asks the caller authoriser whether `caller` may act as `module`.
async fn authorize(workload: &Workload, caller: &Caller, module: &str) -> crate::Result<()> {
    workload
        .auth
        .authorize(caller, module)
        .await
        .map_err(|denied| Error::Forbidden {
            module: module.to_owned(),
            reason: denied.0,
        })
}

/// Parses a JSON body, mapping failures to a 400 that names the problem.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> crate::Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(e.to_string()))
}

#[cfg(test)]
mod tests;
