//! Configurations: automatic and layered IoT Edge deployments, and ADM device configurations.
//!
//! Semantics follow `reference/iot-hub-protocols.md` §3.3 "Configuration":
//! - a configuration targets the twins its `targetCondition` matches (edge deployments only
//!   edge devices);
//! - of the *base* (non-layered) edge deployments targeting a device, the highest `priority`
//!   wins, ties going to the newest `createdTimeUtc`;
//! - *layered* deployments (a module entry keyed `properties.desired.<path>`) with a higher
//!   priority than the base are merged on top in priority order: each entry replaces the value
//!   at its path, so on a module or route name collision the higher priority wins; a full
//!   `properties.desired` replaces the module's desired properties;
//! - the result becomes the desired properties of each module twin, and the `$edgeAgent` twin's
//!   `configurations.{id}.status` says `applied` or `targeted`.
//!
//! Everything here is pure: the service layer feeds in twins and stores what comes out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::etag;
use crate::query::{self, Expr, QueryError};
use crate::registry::{EDGE_AGENT, EDGE_HUB, IfMatch};
use crate::twin::{ConfigurationState, ConfigurationStatus};

/// Key of a module's full desired properties in `modulesContent`.
pub const DESIRED: &str = "properties.desired";
/// Prefix of a layered entry.
pub const DESIRED_PREFIX: &str = "properties.desired.";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigurationError {
    /// The id breaks the id rules.
    #[error("invalid configuration id {id:?}: {reason}")]
    InvalidId {
        /// The id.
        id: String,
        /// Which rule.
        reason: &'static str,
    },
    /// The body is inconsistent; `path` is a JSON path into it.
    #[error("invalid configuration at {path}: {reason}")]
    Invalid {
        /// Where.
        path: String,
        /// Why.
        reason: String,
    },
    /// The target condition does not parse.
    #[error("invalid targetCondition: {0}")]
    TargetCondition(QueryError),
    /// A metric query does not parse.
    #[error("invalid metric query {name:?}: {error}")]
    MetricQuery {
        /// Metric name.
        name: String,
        /// Parse error.
        error: QueryError,
    },
    /// The deployment manifest in `modulesContent` is invalid (every error, one per line).
    #[error("invalid deployment manifest:\n{0}")]
    Manifest(String),
    /// A create found an existing configuration.
    #[error("configuration {0:?} already exists; send If-Match: \"*\" or its etag to update it")]
    AlreadyExists(String),
    /// `If-Match` is not the current etag.
    #[error("etag mismatch: If-Match {given:?} but the current etag is {current:?}")]
    PreconditionFailed {
        /// What the client sent.
        given: String,
        /// The current etag.
        current: String,
    },
}

/// `content` of a configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationContent {
    /// IoT Edge deployment: module id → `{"properties.desired…": …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modules_content: Option<Map<String, Value>>,
    /// ADM device configuration: `{"properties.desired.x": …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_content: Option<Map<String, Value>>,
    /// ADM module configuration (stored and returned; not applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_content: Option<Map<String, Value>>,
}

/// `metrics` / `systemMetrics`: named queries and their counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Metrics {
    /// Name → query.
    #[serde(default)]
    pub queries: BTreeMap<String, String>,
    /// Name → number of rows.
    #[serde(default)]
    pub results: BTreeMap<String, u64>,
}

/// A configuration as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    /// Id (lower case).
    pub id: String,
    /// Always `1.0`.
    pub schema_version: String,
    /// Free labels.
    pub labels: BTreeMap<String, String>,
    /// What to apply.
    pub content: ConfigurationContent,
    /// Which twins.
    pub target_condition: String,
    /// Higher wins.
    pub priority: i64,
    /// Creation time (ISO).
    pub created_time_utc: String,
    /// Last update (ISO).
    pub last_updated_time_utc: String,
    /// Etag.
    pub etag: String,
    /// Update counter behind the etag.
    #[serde(default)]
    pub revision: u64,
    /// User metrics.
    pub metrics: Metrics,
    /// Hub metrics.
    pub system_metrics: Metrics,
}

/// `PUT /configurations/{id}` body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationRequest {
    /// Must equal the path id when present.
    pub id: Option<String>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Content.
    pub content: Option<ConfigurationContent>,
    /// Target condition.
    pub target_condition: Option<String>,
    /// Priority (default 0).
    pub priority: Option<i64>,
    /// User metrics (only `queries` are read).
    pub metrics: Option<Metrics>,
}

impl Configuration {
    /// Creates or updates configuration `id` from a request, honouring `If-Match`.
    ///
    /// Content cannot change after creation (as in IoT Hub): an update keeps the stored content
    /// and takes labels, target condition, priority and metrics from the request.
    pub fn apply_request(
        id: &str,
        req: ConfigurationRequest,
        existing: Option<&Configuration>,
        if_match: &IfMatch,
        now: &str,
    ) -> Result<Configuration, ConfigurationError> {
        validate_id(id)?;
        if let Some(body) = req.id.as_deref().filter(|b| !b.is_empty() && *b != id) {
            return Err(ConfigurationError::Invalid {
                path: "id".into(),
                reason: format!("{body:?} does not match the id in the path {id:?}"),
            });
        }
        match (existing, if_match) {
            (Some(_), IfMatch::Absent) => {
                return Err(ConfigurationError::AlreadyExists(id.to_owned()));
            }
            (Some(c), IfMatch::Etag(given)) if *given != c.etag => {
                return Err(ConfigurationError::PreconditionFailed {
                    given: given.clone(),
                    current: c.etag.clone(),
                });
            }
            _ => {}
        }
        let content = match existing {
            Some(c) => c.content.clone(),
            None => req.content.unwrap_or_default(),
        };
        validate_content(&content)?;
        let target_condition = req
            .target_condition
            .or_else(|| existing.map(|c| c.target_condition.clone()))
            .unwrap_or_default();
        query::parse_condition(&target_condition).map_err(ConfigurationError::TargetCondition)?;
        let priority = req.priority.or(existing.map(|c| c.priority)).unwrap_or(0);
        if priority < 0 {
            return Err(ConfigurationError::Invalid {
                path: "priority".into(),
                reason: format!("{priority} is negative; use 0 or more"),
            });
        }
        let metrics = Metrics {
            queries: req
                .metrics
                .map(|m| m.queries)
                .or_else(|| existing.map(|c| c.metrics.queries.clone()))
                .unwrap_or_default(),
            results: BTreeMap::new(),
        };
        for (name, q) in &metrics.queries {
            query::parse_query(q).map_err(|error| ConfigurationError::MetricQuery {
                name: name.clone(),
                error,
            })?;
        }
        let revision = existing.map_or(1, |c| c.revision + 1);
        let mut config = Configuration {
            id: id.to_owned(),
            schema_version: "1.0".into(),
            labels: req
                .labels
                .or_else(|| existing.map(|c| c.labels.clone()))
                .unwrap_or_default(),
            content,
            target_condition,
            priority,
            created_time_utc: existing
                .map_or_else(|| now.to_owned(), |c| c.created_time_utc.clone()),
            last_updated_time_utc: now.to_owned(),
            etag: etag::identity(revision),
            revision,
            metrics,
            system_metrics: Metrics::default(),
        };
        config.system_metrics.queries = config.system_metric_queries();
        Ok(config)
    }

    /// True for an IoT Edge deployment (`modulesContent`).
    pub fn is_edge(&self) -> bool {
        self.content.modules_content.is_some()
    }

    /// True for a layered edge deployment.
    pub fn is_layered(&self) -> bool {
        self.content.modules_content.as_ref().is_some_and(|mc| {
            mc.values().any(|m| {
                m.as_object()
                    .is_some_and(|o| o.keys().any(|k| k.starts_with(DESIRED_PREFIX)))
            })
        })
    }

    /// The parsed target condition (validated at creation, so a failure means "matches nothing").
    pub fn condition(&self) -> Option<Expr> {
        query::parse_condition(&self.target_condition).ok()
    }

    /// The hub's own metric queries for this configuration.
    pub fn system_metric_queries(&self) -> BTreeMap<String, String> {
        let id = &self.id;
        let cond = self.target_condition.trim();
        let mut q = BTreeMap::new();
        if self.is_edge() {
            let targeted = if cond.is_empty() || cond == "*" {
                "select deviceId from devices where capabilities.iotEdge = true".to_owned()
            } else {
                format!(
                    "select deviceId from devices where capabilities.iotEdge = true and ({cond})"
                )
            };
            let applied = format!(
                "select deviceId from devices.modules where moduleId = '{EDGE_AGENT}' and configurations.[[{id}]].status = 'Applied'"
            );
            q.insert("targetedCount".into(), targeted);
            q.insert(
                "reportedSuccessfulCount".into(),
                format!("{applied} and properties.desired.$version = properties.reported.lastDesiredVersion and properties.reported.lastDesiredStatus.code = 200"),
            );
            q.insert(
                "reportedFailedCount".into(),
                format!("{applied} and properties.desired.$version = properties.reported.lastDesiredVersion and properties.reported.lastDesiredStatus.code != 200"),
            );
            q.insert("appliedCount".into(), applied);
        } else {
            let targeted = if cond.is_empty() || cond == "*" {
                "select deviceId from devices".to_owned()
            } else {
                format!("select deviceId from devices where {cond}")
            };
            q.insert("targetedCount".into(), targeted);
            q.insert(
                "appliedCount".into(),
                format!(
                    "select deviceId from devices where configurations.[[{id}]].status = 'Applied'"
                ),
            );
        }
        q
    }

    fn rank(&self) -> (i64, &str) {
        (self.priority, self.created_time_utc.as_str())
    }
}

fn validate_id(id: &str) -> Result<(), ConfigurationError> {
    let err = |reason| ConfigurationError::InvalidId {
        id: id.to_owned(),
        reason,
    };
    if id.is_empty() || id.len() > 128 {
        return Err(err("must be 1 to 128 characters"));
    }
    let ok =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-:+%_#*?!(),=@;$'".contains(c);
    if !id.chars().all(ok) {
        return Err(err(
            "only lower-case letters, digits and -:+%_#*?!(),=@;$' are allowed",
        ));
    }
    Ok(())
}

fn invalid(path: String, reason: impl Into<String>) -> ConfigurationError {
    ConfigurationError::Invalid {
        path,
        reason: reason.into(),
    }
}

/// Checks the shape of configuration content (the manifest itself is checked by the caller).
pub fn validate_content(content: &ConfigurationContent) -> Result<(), ConfigurationError> {
    let present = [
        content.modules_content.is_some(),
        content.device_content.is_some(),
        content.module_content.is_some(),
    ];
    if present.iter().filter(|p| **p).count() != 1 {
        return Err(invalid(
            "content".into(),
            "give exactly one of modulesContent, deviceContent or moduleContent",
        ));
    }
    if let Some(mc) = &content.modules_content {
        validate_modules_content(mc)?;
    }
    if let Some(dc) = &content.device_content {
        for k in dc.keys() {
            if !k.starts_with(DESIRED_PREFIX) {
                return Err(invalid(
                    format!("content.deviceContent.{k}"),
                    "keys must start with properties.desired.",
                ));
            }
        }
    }
    Ok(())
}

/// Checks `modulesContent`: every module maps to `properties.desired` or layered paths.
pub fn validate_modules_content(mc: &Map<String, Value>) -> Result<(), ConfigurationError> {
    if mc.is_empty() {
        return Err(invalid(
            "content.modulesContent".into(),
            "must name at least one module",
        ));
    }
    let layered = mc.values().any(|m| {
        m.as_object()
            .is_some_and(|o| o.keys().any(|k| k.starts_with(DESIRED_PREFIX)))
    });
    for (module, entry) in mc {
        let path = format!("content.modulesContent.{module}");
        let Some(entry) = entry.as_object() else {
            return Err(invalid(
                path,
                "must be an object such as {\"properties.desired\": {…}}",
            ));
        };
        for (key, value) in entry {
            let kpath = format!("{path}.{key}");
            if key == DESIRED {
                if !value.is_object() {
                    return Err(invalid(kpath, "must be an object"));
                }
                if layered && (module == EDGE_AGENT || module == EDGE_HUB) {
                    return Err(invalid(
                        kpath,
                        "a layered deployment cannot replace the whole $edgeAgent/$edgeHub desired properties; set properties.desired.modules.<name> or properties.desired.routes.<name>",
                    ));
                }
            } else if let Some(sub) = key.strip_prefix(DESIRED_PREFIX) {
                if sub.split('.').any(str::is_empty) {
                    return Err(invalid(kpath, "has an empty path segment"));
                }
                let first = sub.split('.').next().unwrap_or_default();
                if module == EDGE_AGENT
                    && matches!(first, "runtime" | "systemModules" | "schemaVersion")
                {
                    return Err(invalid(
                        kpath,
                        "layered deployments cannot change the runtime or system modules",
                    ));
                }
            } else {
                return Err(invalid(
                    kpath,
                    "keys must be properties.desired or properties.desired.<path>",
                ));
            }
        }
    }
    if !layered {
        for required in [EDGE_AGENT, EDGE_HUB] {
            if !mc.contains_key(required) {
                return Err(invalid(
                    format!("content.modulesContent.{required}"),
                    "a deployment needs $edgeAgent and $edgeHub (or use properties.desired.<path> keys for a layered deployment)",
                ));
            }
        }
        validate_manifest(mc)?;
    }
    Ok(())
}

/// Validates a full `modulesContent` as the edge agent will (`ironedge_model`), so a deployment
/// that no agent would accept is refused up front.
pub fn validate_manifest(mc: &Map<String, Value>) -> Result<(), ConfigurationError> {
    let doc = serde_json::json!({ "modulesContent": mc });
    ironedge_model::Manifest::check_value(&doc)
        .into_result()
        .map(|_| ())
        .map_err(|errors| ConfigurationError::Manifest(errors.to_string()))
}

/// Module id → full desired properties, from `modulesContent` with only full entries
/// (`applyConfigurationContent`).
pub fn full_desired(
    mc: &Map<String, Value>,
) -> Result<BTreeMap<String, Map<String, Value>>, ConfigurationError> {
    let mut out = BTreeMap::new();
    for (module, entry) in mc {
        let path = format!("modulesContent.{module}");
        let desired = entry
            .get(DESIRED)
            .and_then(Value::as_object)
            .ok_or_else(|| invalid(format!("{path}.{DESIRED}"), "must be an object"))?;
        if let Some(k) = entry
            .as_object()
            .and_then(|o| o.keys().find(|k| k.as_str() != DESIRED))
        {
            return Err(invalid(
                format!("{path}.{k}"),
                "only properties.desired is allowed here",
            ));
        }
        out.insert(module.clone(), desired.clone());
    }
    Ok(out)
}

/// What the configurations targeting one edge device amount to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EdgeAssignment {
    /// Module id → desired properties to write, empty when no base or layer applies.
    pub modules: BTreeMap<String, Map<String, Value>>,
    /// Configuration id → status, for the `$edgeAgent` twin.
    pub statuses: BTreeMap<String, ConfigurationState>,
}

/// Works out the modules' desired properties for the edge device whose twin view is `device`.
pub fn assign_edge(device: &Value, configs: &[Configuration]) -> EdgeAssignment {
    let is_edge = device
        .pointer("/capabilities/iotEdge")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut out = EdgeAssignment::default();
    if !is_edge {
        return out;
    }
    let targeted: Vec<&Configuration> = configs
        .iter()
        .filter(|c| c.is_edge() && c.condition().is_some_and(|e| query::matches(&e, device)))
        .collect();
    let base = targeted
        .iter()
        .filter(|c| !c.is_layered())
        .max_by(|a, b| a.rank().cmp(&b.rank()));
    let mut layers: Vec<&&Configuration> = targeted
        .iter()
        .filter(|c| c.is_layered() && base.is_none_or(|b| c.priority > b.priority))
        .collect();
    layers.sort_by(|a, b| a.rank().cmp(&b.rank()));
    let mut applied: Vec<&str> = Vec::new();
    if let Some(b) = base {
        if let Some(mc) = &b.content.modules_content {
            for (module, entry) in mc {
                if let Some(d) = entry.get(DESIRED).and_then(Value::as_object) {
                    out.modules.insert(module.clone(), d.clone());
                }
            }
        }
        applied.push(&b.id);
    }
    for layer in layers {
        if let Some(mc) = &layer.content.modules_content {
            apply_layer(&mut out.modules, mc);
        }
        applied.push(&layer.id);
    }
    for c in &targeted {
        let status = if applied.contains(&c.id.as_str()) {
            ConfigurationStatus::Applied
        } else {
            ConfigurationStatus::Targeted
        };
        out.statuses
            .insert(c.id.clone(), ConfigurationState { status });
    }
    out
}

fn apply_layer(modules: &mut BTreeMap<String, Map<String, Value>>, mc: &Map<String, Value>) {
    for (module, entry) in mc {
        let Some(entry) = entry.as_object() else {
            continue;
        };
        let desired = modules.entry(module.clone()).or_default();
        for (key, value) in entry {
            if key == DESIRED {
                if let Some(d) = value.as_object() {
                    *desired = d.clone();
                }
            } else if let Some(path) = key.strip_prefix(DESIRED_PREFIX) {
                set_path(desired, &path.split('.').collect::<Vec<_>>(), value.clone());
            }
        }
    }
}

/// Sets `value` at `path` below `target`, creating (or replacing non-object) parents.
fn set_path(target: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = target;
    for seg in parents {
        let slot = cur
            .entry((*seg).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        cur = next;
    }
    cur.insert((*last).to_owned(), value);
}

/// What the ADM device configurations targeting one device amount to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceAssignment {
    /// Desired merge-patch from the winning configuration, if any.
    pub desired_patch: Option<Map<String, Value>>,
    /// Configuration id → status, for the device twin.
    pub statuses: BTreeMap<String, ConfigurationState>,
}

/// The highest-priority ADM device configuration targeting `device` wins and is merged into its desired properties.
pub fn assign_device(device: &Value, configs: &[Configuration]) -> DeviceAssignment {
    let targeted: Vec<&Configuration> = configs
        .iter()
        .filter(|c| {
            c.content.device_content.is_some()
                && c.condition().is_some_and(|e| query::matches(&e, device))
        })
        .collect();
    let winner = targeted.iter().max_by(|a, b| a.rank().cmp(&b.rank()));
    let mut out = DeviceAssignment::default();
    if let Some(w) = winner
        && let Some(dc) = &w.content.device_content
    {
        let mut patch = Map::new();
        for (key, value) in dc {
            if let Some(path) = key.strip_prefix(DESIRED_PREFIX) {
                set_path(
                    &mut patch,
                    &path.split('.').collect::<Vec<_>>(),
                    value.clone(),
                );
            }
        }
        out.desired_patch = Some(patch);
    }
    for c in &targeted {
        let status = if winner.is_some_and(|w| w.id == c.id) {
            ConfigurationStatus::Applied
        } else {
            ConfigurationStatus::Targeted
        };
        out.statuses
            .insert(c.id.clone(), ConfigurationState { status });
    }
    out
}

#[cfg(test)]
mod tests;
