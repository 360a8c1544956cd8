//! `/twins/{id}[/modules/{mid}]`: twins and direct methods; `/devices/query`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::extract::{Caller, Etag, JsonBody};
use crate::Hub;
use crate::auth::Right;
use crate::etag;
use crate::service::{MethodRequest, MethodResponse};
use crate::twin::ServicePatch;

type ApiResult<T> = Result<T, ApiError>;

fn with_etag(v: Value) -> Response {
    let tag = v.get("etag").and_then(Value::as_str).map(etag::quoted);
    let mut resp = Json(v).into_response();
    if let Some(h) = tag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert(axum::http::header::ETAG, h);
    }
    resp
}

/// `GET /twins/{id}`
pub(super) async fn get(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Right::ServiceConnect, None)?;
    Ok(with_etag(hub.get_twin(id, None).await?))
}

/// `PATCH /twins/{id}`
pub(super) async fn patch(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Etag(if_match): Etag,
    JsonBody(p): JsonBody<ServicePatch>,
) -> ApiResult<Response> {
    caller.require(Right::ServiceConnect, None)?;
    Ok(with_etag(hub.patch_twin(id, None, p, if_match).await?))
}

/// `PUT /twins/{id}`
pub(super) async fn put(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Etag(if_match): Etag,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    caller.require(Right::ServiceConnect, None)?;
    Ok(with_etag(hub.replace_twin(id, None, body, if_match).await?))
}

/// `GET /twins/{id}/modules/{mid}`
pub(super) async fn get_module(
    State(hub): State<Hub>,
    caller: Caller,
    Path((id, mid)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(Right::ServiceConnect, None)?;
    Ok(with_etag(hub.get_twin(id, Some(mid)).await?))
}

/// `PATCH /twins/{id}/modules/{mid}`
pub(super) async fn patch_module(
    State(hub): State<Hub>,
    caller: Caller,
    Path((id, mid)): Path<(String, String)>,
    Etag(if_match): Etag,
    JsonBody(p): JsonBody<ServicePatch>,
) -> ApiResult<Response> {
    caller.require(Right::ServiceConnect, None)?;
    Ok(with_etag(hub.patch_twin(id, Some(mid), p, if_match).await?))
}

/// `PUT /twins/{id}/modules/{mid}`
pub(super) async fn put_module(
    State(hub): State<Hub>,
    caller: Caller,
    Path((id, mid)): Path<(String, String)>,
    Etag(if_match): Etag,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    caller.require(Right::ServiceConnect, None)?;
    Ok(with_etag(
        hub.replace_twin(id, Some(mid), body, if_match).await?,
    ))
}

/// `POST /twins/{id}/methods`
pub(super) async fn invoke(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<MethodRequest>,
) -> ApiResult<Json<MethodResponse>> {
    caller.require(Right::ServiceConnect, None)?;
    Ok(Json(hub.invoke_method(id, None, req).await?))
}

/// `POST /twins/{id}/modules/{mid}/methods`
pub(super) async fn invoke_module(
    State(hub): State<Hub>,
    caller: Caller,
    Path((id, mid)): Path<(String, String)>,
    JsonBody(req): JsonBody<MethodRequest>,
) -> ApiResult<Json<MethodResponse>> {
    caller.require(Right::ServiceConnect, None)?;
    Ok(Json(hub.invoke_method(id, Some(mid), req).await?))
}

/// `POST /devices/query` body.
#[derive(Debug, Deserialize)]
pub(super) struct QuerySpec {
    /// The query text.
    pub(super) query: String,
}

/// `POST /devices/query` (paged with `x-ms-max-item-count` / `x-ms-continuation`)
pub(super) async fn query(
    State(hub): State<Hub>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(spec): JsonBody<QuerySpec>,
) -> ApiResult<Response> {
    caller.require(Right::RegistryRead, None)?;
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let max = header("x-ms-max-item-count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let page = hub
        .query(spec.query, header("x-ms-continuation"), max)
        .await?;
    let mut resp = Json(page.items).into_response();
    let h = resp.headers_mut();
    h.insert(
        "x-ms-item-type",
        HeaderValue::from_static(page.item_type.as_str()),
    );
    if let Some(c) = page
        .continuation
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        h.insert("x-ms-continuation", c);
    }
    Ok(resp)
}
