//! `/configurations/{id}`: automatic and layered deployments, ADM configurations.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::devices::Top;
use super::error::ApiError;
use super::extract::{Caller, Etag, JsonBody};
use crate::Hub;
use crate::auth::Right;
use crate::configuration::ConfigurationRequest;
use crate::query;

type ApiResult<T> = Result<T, ApiError>;

/// `GET /configurations`
pub(super) async fn list(
    State(hub): State<Hub>,
    caller: Caller,
    Query(q): Query<Top>,
) -> ApiResult<Json<Vec<Value>>> {
    caller.require(Right::RegistryRead, None)?;
    Ok(Json(hub.list_configurations(q.top.unwrap_or(1000)).await?))
}

/// `PUT /configurations/{id}`
pub(super) async fn put(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Etag(if_match): Etag,
    JsonBody(req): JsonBody<ConfigurationRequest>,
) -> ApiResult<Json<Value>> {
    caller.require(Right::RegistryWrite, None)?;
    Ok(Json(hub.put_configuration(id, req, if_match).await?))
}

/// `GET /configurations/{id}`
pub(super) async fn get(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Right::RegistryRead, None)?;
    Ok(Json(hub.get_configuration(id).await?))
}

/// `DELETE /configurations/{id}`
pub(super) async fn delete(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Etag(if_match): Etag,
) -> ApiResult<StatusCode> {
    caller.require(Right::RegistryWrite, None)?;
    hub.delete_configuration(id, if_match).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /configurations/testQueries` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TestQueries {
    /// A target condition to check.
    pub(super) target_condition: Option<String>,
    /// Metric queries to check.
    #[serde(default)]
    pub(super) custom_metric_queries: std::collections::BTreeMap<String, String>,
}

/// `POST /configurations/testQueries`: syntax check without storing anything.
pub(super) async fn test_queries(
    caller: Caller,
    JsonBody(req): JsonBody<TestQueries>,
) -> ApiResult<Json<Value>> {
    caller.require(Right::RegistryRead, None)?;
    let target = req
        .target_condition
        .as_deref()
        .map(|c| {
            query::parse_condition(c)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let metrics: serde_json::Map<String, Value> = req
        .custom_metric_queries
        .iter()
        .map(|(k, q)| {
            (
                k.clone(),
                json!(
                    query::parse_query(q)
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                ),
            )
        })
        .collect();
    Ok(Json(
        json!({"targetConditionError": target, "customMetricQueryErrors": metrics}),
    ))
}
