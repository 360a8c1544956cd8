//! `/devices/{id}` and `/devices/{id}/modules/{mid}`: identity CRUD, plus
//! `applyConfigurationContent` and `/statistics/devices`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Caller, Etag, JsonBody};
use crate::Hub;
use crate::auth::Right;
use crate::configuration::ConfigurationContent;
use crate::registry::{DeviceRequest, ModuleRequest};

type ApiResult<T> = Result<T, ApiError>;

/// `?top=N`.
#[derive(Debug, Deserialize)]
pub(super) struct Top {
    /// Most items to return.
    pub(super) top: Option<usize>,
}

/// `GET /devices`
pub(super) async fn list(
    State(hub): State<Hub>,
    caller: Caller,
    Query(q): Query<Top>,
) -> ApiResult<Json<Vec<Value>>> {
    caller.require(Right::RegistryRead, None)?;
    Ok(Json(hub.list_devices(q.top.unwrap_or(1000)).await?))
}

/// `PUT /devices/{id}`
pub(super) async fn put(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Etag(if_match): Etag,
    JsonBody(req): JsonBody<DeviceRequest>,
) -> ApiResult<Json<Value>> {
    caller.require(Right::RegistryWrite, None)?;
    Ok(Json(hub.put_device(id, req, if_match).await?))
}

/// `GET /devices/{id}` (also allowed to the device itself)
pub(super) async fn get(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Right::RegistryRead, Some(&id))?;
    Ok(Json(hub.get_device(id).await?))
}

/// `DELETE /devices/{id}`
pub(super) async fn delete(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Etag(if_match): Etag,
) -> ApiResult<StatusCode> {
    caller.require(Right::RegistryWrite, None)?;
    hub.delete_device(id, if_match).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /devices/{id}/modules` (also allowed to the device itself)
pub(super) async fn list_modules(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    caller.require(Right::RegistryRead, Some(&id))?;
    Ok(Json(hub.list_modules(id).await?))
}

/// `PUT /devices/{id}/modules/{mid}` (also allowed to the device itself)
pub(super) async fn put_module(
    State(hub): State<Hub>,
    caller: Caller,
    Path((id, mid)): Path<(String, String)>,
    Etag(if_match): Etag,
    JsonBody(req): JsonBody<ModuleRequest>,
) -> ApiResult<Json<Value>> {
    caller.require(Right::RegistryWrite, Some(&id))?;
    Ok(Json(hub.put_module(id, mid, req, if_match).await?))
}

/// `GET /devices/{id}/modules/{mid}` (also allowed to the device itself)
pub(super) async fn get_module(
    State(hub): State<Hub>,
    caller: Caller,
    Path((id, mid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Right::RegistryRead, Some(&id))?;
    Ok(Json(hub.get_module(id, mid).await?))
}

/// `DELETE /devices/{id}/modules/{mid}` (also allowed to the device itself)
pub(super) async fn delete_module(
    State(hub): State<Hub>,
    caller: Caller,
    Path((id, mid)): Path<(String, String)>,
    Etag(if_match): Etag,
) -> ApiResult<StatusCode> {
    caller.require(Right::RegistryWrite, Some(&id))?;
    hub.delete_module(id, mid, if_match).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /devices/{id}/applyConfigurationContent`
pub(super) async fn apply_content(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(content): JsonBody<ConfigurationContent>,
) -> ApiResult<StatusCode> {
    caller.require(Right::ServiceConnect, None)?;
    hub.apply_configuration_content(id, content).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /statistics/devices`
pub(super) async fn statistics(State(hub): State<Hub>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Right::RegistryRead, None)?;
    let (enabled, disabled) = hub.device_statistics().await?;
    Ok(Json(json!({
        "totalDeviceCount": enabled + disabled,
        "enabledDeviceCount": enabled,
        "disabledDeviceCount": disabled,
    })))
}
