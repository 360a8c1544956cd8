//! `POST …/certificate/server` and `…/certificate/identity`: certificates from the edge CA.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{CallerOf, authorize, check_version, parse_body};
use crate::{CertError, CertKind, CertificateRequest, Error, IssuedCertificate, Result, Workload};

/// How long a certificate lives when the request names no expiry.
const DEFAULT_VALIDITY: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 90);

/// `{commonName, expiration, subjectAltNames?}`; `subjectAltNames` is an ironedge extension for
/// callers that need more names than the common name (the edge hub's service names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertRequestBody {
    common_name: Option<String>,
    expiration: Option<String>,
    #[serde(default)]
    subject_alt_names: Vec<String>,
}

/// The private key part of the response.
#[derive(Debug, Serialize)]
struct PrivateKey {
    #[serde(rename = "type")]
    kind: &'static str,
    bytes: String,
}

/// `{privateKey:{type:"key",bytes}, certificate, expiration}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CertificateResponse {
    private_key: PrivateKey,
    certificate: String,
    expiration: String,
}

impl From<IssuedCertificate> for CertificateResponse {
    fn from(issued: IssuedCertificate) -> Self {
        Self {
            private_key: PrivateKey {
                kind: "key",
                bytes: issued.private_key_pem,
            },
            certificate: issued.certificate_pem,
            expiration: issued.not_after.to_string(),
        }
    }
}

type Created = (StatusCode, Json<CertificateResponse>);

/// A TLS server certificate for the module (the edge hub asks for its own).
pub(super) async fn server(
    State(workload): State<Workload>,
    Path((module, _genid)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    CallerOf(caller): CallerOf,
    body: Bytes,
) -> Result<Created> {
    check_version(&query)?;
    authorize(&workload, &caller, &module).await?;
    let body: CertRequestBody = parse_body(&body)?;
    let common_name = body
        .common_name
        .clone()
        .filter(|cn| !cn.trim().is_empty())
        .ok_or_else(|| Error::BadRequest("commonName is required".into()))?;
    issue(&workload, CertKind::Server, module, common_name, body).await
}

/// A client identity certificate for the module.
pub(super) async fn identity(
    State(workload): State<Workload>,
    Path(module): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    CallerOf(caller): CallerOf,
    body: Bytes,
) -> Result<Created> {
    check_version(&query)?;
    authorize(&workload, &caller, &module).await?;
    let body: CertRequestBody = if body.is_empty() {
        CertRequestBody::default()
    } else {
        parse_body(&body)?
    };
    let common_name = module.clone();
    issue(&workload, CertKind::Identity, module, common_name, body).await
}

/// The same as [`identity`], for clients that put the generation id in the path.
pub(super) async fn identity_with_genid(
    state: State<Workload>,
    Path((module, _genid)): Path<(String, String)>,
    query: Query<HashMap<String, String>>,
    caller: CallerOf,
    body: Bytes,
) -> Result<Created> {
    identity(state, Path(module), query, caller, body).await
}

async fn issue(
    workload: &Workload,
    kind: CertKind,
    module_id: String,
    common_name: String,
    body: CertRequestBody,
) -> Result<Created> {
    let not_after = expiry(body.expiration.as_deref())?;
    let mut subject_alt_names = body.subject_alt_names;
    if kind == CertKind::Server && !subject_alt_names.contains(&common_name) {
        subject_alt_names.insert(0, common_name.clone());
    }
    let request = CertificateRequest {
        kind,
        module_id,
        common_name,
        subject_alt_names,
        not_after,
    };
    let issued = workload.certs.issue(request).await?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

/// Parses an RFC 3339 expiry that must lie in the future; absent means the default validity.
fn expiry(value: Option<&str>) -> Result<jiff::Timestamp> {
    let now = jiff::Timestamp::now();
    let Some(raw) = value else {
        return now
            .checked_add(DEFAULT_VALIDITY)
            .map_err(|e| CertError::Invalid(e.to_string()).into());
    };
    let at: jiff::Timestamp = raw
        .parse()
        .map_err(|e| Error::BadRequest(format!("expiration {raw:?} is not RFC 3339: {e}")))?;
    if at <= now {
        return Err(CertError::Invalid(format!("expiration {raw:?} is in the past")).into());
    }
    Ok(at)
}
