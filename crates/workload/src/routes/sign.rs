//! `POST /modules/{m}/genid/{g}/sign`: HMAC-SHA256 with the module's key.
//!
//! The SDK posts `{"keyId":"primary","algo":"HMACSHA256","data":base64("sr\nse")}` and builds its
//! SAS token from the returned `digest`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::{CallerOf, authorize, check_version, parse_body};
use crate::{Error, KeyError, KeyId, Result, Workload};

/// The sign request body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignRequest {
    key_id: Option<String>,
    algo: Option<String>,
    data: String,
}

/// `{digest}`, base64.
#[derive(Debug, Serialize)]
pub(super) struct SignResponse {
    digest: String,
}

/// Signs `data` as the module in the path, after checking the caller may act as it.
pub(super) async fn sign(
    State(workload): State<Workload>,
    Path((module, genid)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    CallerOf(caller): CallerOf,
    body: Bytes,
) -> Result<Json<SignResponse>> {
    check_version(&query)?;
    authorize(&workload, &caller, &module).await?;
    let request: SignRequest = parse_body(&body)?;
    if let Some(algo) = &request.algo
        && !algo.eq_ignore_ascii_case("HMACSHA256")
    {
        return Err(KeyError::UnsupportedAlgorithm(algo.clone()).into());
    }
    let key_id = KeyId::parse(request.key_id.as_deref())?;
    let data = STANDARD
        .decode(request.data.as_bytes())
        .map_err(|e| Error::BadRequest(format!("data is not base64: {e}")))?;
    let digest = workload.keys.sign(&module, &genid, key_id, &data).await?;
    tracing::debug!(module = %module, bytes = data.len(), "signed for module");
    Ok(Json(SignResponse {
        digest: STANDARD.encode(digest),
    }))
}
