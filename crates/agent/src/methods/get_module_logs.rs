//! `GetModuleLogs` `{schemaVersion, items:[{id:<regex>, filter:{tail,since,until,loglevel,regex}}],
//! encoding:"none"|"gzip", contentType:"json"|"text"}` → `[{id, payload | payloadBytes}]`, at
//! most 127 000 bytes (`doc/built-in-logs-pull.md`). Logs come from the Kubernetes `pods/log` API
//! of each matching module's newest pod (the older preview returned nothing).

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::LogParams;
use regex::Regex;
use serde_json::Value;

use super::logs::{self, ContentType, Encoding, Filter, Source};
use super::{MethodContext, MethodError, ModuleRef, check_schema_version, time_filter};

/// Largest answer IoT Edge sends.
pub const MAX_RESPONSE_BYTES: usize = 127_000;

/// One requested item.
#[derive(Debug, Clone)]
struct Item {
    id: Regex,
    filter: Filter,
}

fn bad(message: impl Into<String>) -> MethodError {
    MethodError::BadRequest(message.into())
}

fn parse_request(
    payload: &Value,
    now: Timestamp,
) -> Result<(Vec<Item>, ContentType, Encoding), MethodError> {
    check_schema_version(payload)?;
    let content_type = match payload.get("contentType").and_then(Value::as_str) {
        None => ContentType::Json,
        Some(v) if v.eq_ignore_ascii_case("json") => ContentType::Json,
        Some(v) if v.eq_ignore_ascii_case("text") => ContentType::Text,
        Some(v) => {
            return Err(bad(format!(
                "contentType {v:?} must be \"json\" or \"text\""
            )));
        }
    };
    let encoding = match payload.get("encoding").and_then(Value::as_str) {
        None => Encoding::None,
        Some(v) if v.eq_ignore_ascii_case("none") => Encoding::None,
        Some(v) if v.eq_ignore_ascii_case("gzip") => Encoding::Gzip,
        Some(v) => return Err(bad(format!("encoding {v:?} must be \"none\" or \"gzip\""))),
    };
    let items = payload
        .get("items")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("items must be a non-empty list of {id, filter}"))?;
    let items = items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_item(i, item, now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, content_type, encoding))
}

fn parse_item(i: usize, item: &Value, now: Timestamp) -> Result<Item, MethodError> {
    let id = item
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("items[{i}].id (a module name regex) is required")))?;
    let id = Regex::new(&format!("^(?:{id})$"))
        .map_err(|e| bad(format!("items[{i}].id is not a valid regex: {e}")))?;
    let f = item.get("filter").cloned().unwrap_or(Value::Null);
    let time = |key: &str| -> Result<Option<Timestamp>, MethodError> {
        match f.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => time_filter::parse(s, now)
                .map(Some)
                .map_err(|e| bad(format!("items[{i}].filter.{key}: {e}"))),
            Some(Value::Number(n)) => time_filter::parse(&n.to_string(), now)
                .map(Some)
                .map_err(|e| bad(format!("items[{i}].filter.{key}: {e}"))),
            Some(other) => Err(bad(format!(
                "items[{i}].filter.{key}: {other} is not a time"
            ))),
        }
    };
    let tail = match f.get("tail") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "items[{i}].filter.tail must be a non-negative number"
                    ))
                })?,
        ),
    };
    let level = match f.get("loglevel") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|l| *l <= 7)
                .and_then(|l| u8::try_from(l).ok())
                .ok_or_else(|| bad(format!("items[{i}].filter.loglevel must be 0 to 7")))?,
        ),
    };
    let regex = match f.get("regex").and_then(Value::as_str) {
        None => None,
        Some(r) => Some(
            Regex::new(r).map_err(|e| bad(format!("items[{i}].filter.regex is not valid: {e}")))?,
        ),
    };
    Ok(Item {
        id,
        filter: Filter {
            tail,
            since: time("since")?,
            until: time("until")?,
            level,
            regex,
        },
    })
}

/// Answers `GetModuleLogs`.
pub async fn get_module_logs(ctx: &MethodContext, payload: &Value) -> Result<Value, MethodError> {
    let now = Timestamp::now();
    let (items, content_type, encoding) = parse_request(payload, now)?;
    let mut modules: Vec<ModuleRef> = ctx.modules().into_values().collect();
    if let Some(pod) = &ctx.agent_pod {
        modules.push(ModuleRef {
            name: ironedge_model::EDGE_AGENT.to_string(),
            object: pod.clone(),
        });
    }
    let mut contents: Vec<(String, Vec<logs::LogLine>)> = Vec::new();
    for item in &items {
        for module in modules.iter().filter(|m| item.id.is_match(&m.name)) {
            if contents.iter().any(|(name, _)| name == &module.name) {
                continue;
            }
            let lines = fetch(ctx, module, &item.filter).await?;
            contents.push((module.name.clone(), item.filter.apply(lines)));
        }
    }
    // Drop the oldest lines until the whole answer fits.
    loop {
        let answer: Vec<Value> = contents
            .iter()
            .map(|(name, lines)| {
                let s = Source {
                    iothub: &ctx.hub_name,
                    device: &ctx.device_id,
                    module: name,
                };
                logs::item(name, &logs::render(lines, content_type, s), encoding)
            })
            .collect();
        let answer = Value::Array(answer);
        let size = answer.to_string().len();
        if size <= MAX_RESPONSE_BYTES || contents.iter().all(|(_, l)| l.is_empty()) {
            return Ok(answer);
        }
        for (_, lines) in &mut contents {
            let drop = lines.len().div_ceil(10);
            lines.drain(..drop.min(lines.len()));
        }
    }
}

/// Reads a module's log through `pods/log` (with timestamps, so `until` and ordering work).
async fn fetch(
    ctx: &MethodContext,
    module: &ModuleRef,
    filter: &Filter,
) -> Result<Vec<logs::LogLine>, MethodError> {
    let (pod, container) = if module.name == ironedge_model::EDGE_AGENT {
        (module.object.clone(), None)
    } else {
        let pods = ctx.module_pods(module).await?;
        let Some(pod) = pods.first() else {
            return Ok(Vec::new());
        };
        (pod.name_any(), Some(module.object.clone()))
    };
    // Tail can be left to the API server only when no later filter drops lines.
    let server_tail = (filter.until.is_none() && filter.level.is_none() && filter.regex.is_none())
        .then_some(filter.tail)
        .flatten()
        .and_then(|t| i64::try_from(t).ok());
    let params = LogParams {
        container,
        timestamps: true,
        tail_lines: server_tail,
        since_time: filter.since,
        ..LogParams::default()
    };
    match ctx.pods.logs(&pod, &params).await {
        Ok(text) => Ok(logs::parse_kube_log(&text)),
        // A pod that has not started has no log yet.
        Err(kube::Error::Api(status)) if status.code == 400 => {
            tracing::debug!(pod, message = %status.message, "no log for the pod yet");
            Ok(Vec::new())
        }
        Err(e) => Err(MethodError::Failed(format!(
            "reading the log of {}: {e}",
            module.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_request_is_read_and_bad_fields_are_named() {
        let now: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let (items, ct, enc) = parse_request(
            &json!({"schemaVersion": "1.0", "encoding": "gzip", "contentType": "text",
                    "items": [{"id": "edge.*", "filter": {"tail": 10, "since": "1d", "loglevel": 3, "regex": "err"}}]}),
            now,
        )
        .unwrap();
        assert_eq!((ct, enc), (ContentType::Text, Encoding::Gzip));
        assert!(items[0].id.is_match("edgeHub"));
        assert!(!items[0].id.is_match("myedgeHub"));
        assert_eq!(items[0].filter.tail, Some(10));
        assert_eq!(
            items[0].filter.since,
            Some("2026-01-01T00:00:00Z".parse().unwrap())
        );
        for (payload, needle) in [
            (json!({"schemaVersion": "1.0", "items": []}), "items"),
            (
                json!({"schemaVersion": "1.0", "items": [{"id": "("}]}),
                "items[0].id",
            ),
            (
                json!({"schemaVersion": "1.0", "items": [{"id": "a", "filter": {"loglevel": 9}}]}),
                "loglevel",
            ),
            (
                json!({"schemaVersion": "1.0", "items": [{"id": "a", "filter": {"since": "soon"}}]}),
                "since",
            ),
            (
                json!({"schemaVersion": "1.0", "encoding": "zip", "items": [{"id": "a"}]}),
                "encoding",
            ),
            (json!({"items": [{"id": "a"}]}), "schemaVersion"),
        ] {
            let err = parse_request(&payload, now).unwrap_err();
            assert!(err.to_string().contains(needle), "{payload}: {err}");
            assert_eq!(err.status(), 400);
        }
    }
}
