//! The REST extension under `/_ext/` (not part of Azure's API; see README "Cloud hub"):
//! telemetry read-out (paged long-poll list and an NDJSON stream) and C2D send with completion.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::Caller;
use crate::Hub;
use crate::auth::Right;
use crate::error::Error;
use crate::service::{C2dRequest, c2d_json, telemetry_json};
use crate::storage::{C2dState, TelemetryFilter};

type ApiResult<T> = Result<T, ApiError>;

/// Filters of the telemetry read-out.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventsQuery {
    /// Only this device.
    pub(super) device_id: Option<String>,
    /// Only this module.
    pub(super) module_id: Option<String>,
    /// First `seq` (default 1 for the list, the next new message for the stream).
    pub(super) from: Option<u64>,
    /// Enqueued at or after (ISO-8601 or ms since the epoch).
    pub(super) since: Option<String>,
    /// Enqueued before (ISO-8601 or ms since the epoch).
    pub(super) until: Option<String>,
    /// Page size (default 100, at most 1000).
    pub(super) max: Option<usize>,
    /// Seconds to wait for a first message when none matches yet (default 0, at most 60).
    pub(super) wait_secs: Option<u64>,
}

fn parse_time(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(Some(ms));
    }
    v.parse::<jiff::Timestamp>()
        .map(|t| Some(t.as_millisecond()))
        .map_err(|e| {
            ApiError(Error::BadRequest(format!(
                "{name}={v:?} is neither ISO-8601 nor milliseconds: {e}"
            )))
        })
}

fn filter_of(q: &EventsQuery, default_from: u64) -> Result<TelemetryFilter, ApiError> {
    if q.module_id.is_some() && q.device_id.is_none() {
        return Err(ApiError(Error::BadRequest(
            "moduleId needs deviceId".into(),
        )));
    }
    Ok(TelemetryFilter {
        device_id: q.device_id.clone(),
        module_id: q.module_id.clone(),
        from_seq: q.from.unwrap_or(default_from),
        since_ms: parse_time("since", q.since.as_deref())?,
        until_ms: parse_time("until", q.until.as_deref())?,
    })
}

/// `GET /_ext/messages/events`: `{"messages":[…],"next":seq}`.
pub(super) async fn list(
    State(hub): State<Hub>,
    caller: Caller,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Right::ServiceConnect, None)?;
    let filter = filter_of(&q, 1)?;
    let max = q.max.unwrap_or(100).clamp(1, 1000);
    let wait = Duration::from_secs(q.wait_secs.unwrap_or(0).min(60));
    let from = filter.from_seq;
    let msgs = hub.read_telemetry(filter, max, wait).await?;
    let next = msgs.last().map_or(from, |m| m.seq + 1);
    Ok(Json(
        json!({"messages": msgs.iter().map(telemetry_json).collect::<Vec<_>>(), "next": next}),
    ))
}

/// `GET /_ext/messages/events/stream`: one JSON message per line, as they arrive.
pub(super) async fn stream(
    State(hub): State<Hub>,
    caller: Caller,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Response> {
    caller.require(Right::ServiceConnect, None)?;
    let start = *hub.telemetry_watch().borrow() + 1;
    let filter = filter_of(&q, start)?;
    let body = futures::stream::unfold((hub, filter), |(hub, mut filter)| async move {
        if hub.is_shutting_down() {
            return None;
        }
        match hub
            .read_telemetry(filter.clone(), 500, Duration::from_secs(25))
            .await
        {
            // A blank keep-alive line lets clients and proxies see the stream is alive.
            Ok(msgs) if msgs.is_empty() => Some((
                Ok::<_, std::io::Error>(Bytes::from_static(b"\n")),
                (hub, filter),
            )),
            Ok(msgs) => {
                let mut out = Vec::new();
                for m in &msgs {
                    out.extend(serde_json::to_vec(&telemetry_json(m)).unwrap_or_default());
                    out.push(b'\n');
                }
                filter.from_seq = msgs.last().map_or(filter.from_seq, |m| m.seq + 1);
                Some((Ok(Bytes::from(out)), (hub, filter)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "telemetry stream read failed");
                None
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

/// Options of a C2D send.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct SendQuery {
    /// Wait up to this many seconds for the device to complete the message (at most 60).
    pub(super) wait_secs: Option<u64>,
    /// Time to live in seconds (default: the hub's C2D TTL).
    pub(super) ttl_secs: Option<u64>,
}

fn c2d_request(headers: &HeaderMap, body: Bytes, ttl_secs: Option<u64>) -> C2dRequest {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut properties = BTreeMap::new();
    for (name, value) in headers {
        if let (Some(key), Ok(v)) = (name.as_str().strip_prefix("iothub-app-"), value.to_str()) {
            properties.insert(key.to_owned(), v.to_owned());
        }
    }
    C2dRequest {
        message_id: get("iothub-messageid"),
        correlation_id: get("iothub-correlationid"),
        ack: get("iothub-ack"),
        content_type: get("iothub-contenttype").or_else(|| get("content-type")),
        content_encoding: get("iothub-contentencoding"),
        properties,
        ttl: ttl_secs.map(Duration::from_secs),
        body: body.to_vec(),
    }
}

/// `POST /_ext/devices/{id}/messages/devicebound`: 202 with the message status, or 200 once
/// completed when `waitSecs` is given and the device completes it in time.
pub(super) async fn send_c2d(
    State(hub): State<Hub>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<SendQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require(Right::ServiceConnect, None)?;
    if body.len() > 64 * 1024 {
        return Err(ApiError(Error::BadRequest(format!(
            "the body is {} bytes; C2D messages hold at most 65536",
            body.len()
        ))));
    }
    let mut completions = hub.c2d_completions();
    let msg = hub
        .send_c2d(id.clone(), c2d_request(&headers, body, q.ttl_secs))
        .await?;
    let wait = Duration::from_secs(q.wait_secs.unwrap_or(0).min(60));
    let key = (id.clone(), msg.message_id.clone());
    let completed = !wait.is_zero()
        && tokio::time::timeout(wait, async {
            // Already done (delivered to a connected device before we got here)?
            if hub
                .c2d_status(id.clone(), msg.message_id.clone())
                .await
                .is_ok_and(|m| m.state == C2dState::Completed)
            {
                return true;
            }
            while let Ok(done) = completions.recv().await {
                if done == key {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
    let status = hub.c2d_status(id, msg.message_id).await?;
    let code = if completed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(c2d_json(&status))).into_response())
}

/// `GET /_ext/devices/{id}/messages/devicebound/{mid}`: the message status.
pub(super) async fn c2d_status(
    State(hub): State<Hub>,
    caller: Caller,
    Path((id, mid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Right::ServiceConnect, None)?;
    Ok(Json(c2d_json(&hub.c2d_status(id, mid).await?)))
}

/// Feedback page options.
#[derive(Debug, Deserialize, Default)]
pub(super) struct FeedbackQuery {
    /// Records changed after this (ms since the epoch).
    pub(super) after: Option<i64>,
    /// Page size (default 100).
    pub(super) max: Option<usize>,
}

/// `GET /_ext/messages/feedback`: completed and expired C2D messages.
pub(super) async fn feedback(
    State(hub): State<Hub>,
    caller: Caller,
    Query(q): Query<FeedbackQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Right::ServiceConnect, None)?;
    let after = q.after.unwrap_or(0);
    let records = hub
        .c2d_feedback(after, q.max.unwrap_or(100).clamp(1, 1000))
        .await?;
    let next = records.last().map_or(after, |m| m.updated_ms);
    Ok(Json(
        json!({"records": records.iter().map(c2d_json).collect::<Vec<_>>(), "next": next}),
    ))
}
