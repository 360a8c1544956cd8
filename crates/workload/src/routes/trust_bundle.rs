//! `GET /trust-bundle` and `GET /manifest-trust-bundle`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use serde::Serialize;

use super::check_version;
use crate::{Result, Workload};

/// `{certificate}` with a PEM bundle.
#[derive(Debug, Serialize)]
pub(super) struct TrustBundleResponse {
    certificate: String,
}

/// The CA bundle modules trust for the edge hub.
pub(super) async fn trust_bundle(
    State(workload): State<Workload>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<TrustBundleResponse>> {
    check_version(&query)?;
    let certificate = workload.certs.trust_bundle().await?;
    Ok(Json(TrustBundleResponse { certificate }))
}

/// The bundle used to verify signed deployment manifests.
pub(super) async fn manifest_trust_bundle(
    State(workload): State<Workload>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<TrustBundleResponse>> {
    check_version(&query)?;
    let certificate = workload.certs.manifest_trust_bundle().await?;
    Ok(Json(TrustBundleResponse { certificate }))
}
