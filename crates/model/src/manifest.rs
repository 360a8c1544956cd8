//! A whole deployment manifest: `$edgeAgent`, `$edgeHub` and the user modules' twins.
//!
//! Reference `iotedge-runtime.md` §1.1. Two forms are read:
//! - a deployment manifest, `{"modulesContent": {...}}`;
//! - an IoT Hub configuration (automatic deployment), `{"content": {"modulesContent": {...}}}`,
//!   whose other keys (`id`, `targetCondition`, `priority`, `labels`, `metrics`, …) are ignored.
//!
//! Under `modulesContent`, every key is a module twin: `{"properties.desired": {...}}`.
//! `$edgeAgent` and `$edgeHub` are required and validated; the other twins belong to the user
//! modules and are kept as JSON.

use std::str::FromStr;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::checker::{Checker, Fields};
use crate::edge_agent::{self, EdgeAgentDesired, check_name};
use crate::edge_hub::{self, EdgeHubDesired};
use crate::error::{Checked, ErrorKind, NameRule, ValidationErrors, WarningKind};
use crate::names::{EDGE_AGENT_IDENTITY, EDGE_HUB_IDENTITY};
use crate::path::JsonPath;

/// The key of a twin's desired properties inside `modulesContent.<module>`.
pub const PROPERTIES_DESIRED: &str = "properties.desired";

/// Keys of an IoT Hub configuration beside `content`, ignored without a warning.
const CONFIGURATION_KEYS: &[&str] = &[
    "id",
    "schemaVersion",
    "labels",
    "targetCondition",
    "priority",
    "metrics",
    "systemMetrics",
    "etag",
    "createdTimeUtc",
    "lastUpdatedTimeUtc",
    "contentType",
];

/// A validated deployment manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The `$edgeAgent` desired properties: runtime and modules.
    pub edge_agent: EdgeAgentDesired,
    /// The `$edgeHub` desired properties: routes and store-and-forward.
    pub edge_hub: EdgeHubDesired,
    /// Desired properties of user module twins (`modulesContent.<module>['properties.desired']`).
    pub module_twins: IndexMap<String, Map<String, Value>>,
}

impl Manifest {
    /// Validates a manifest file's bytes (UTF-8, an optional BOM is skipped).
    pub fn check_slice(bytes: &[u8]) -> Checked<Self> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => Self::check_value(&value),
            Err(err) => {
                let mut c = Checker::default();
                c.error(
                    &JsonPath::root(),
                    ErrorKind::Syntax {
                        message: crate::create_options::parser_message(&err),
                        line: err.line(),
                        column: err.column(),
                    },
                );
                c.finish(None)
            }
        }
    }

    /// Validates a manifest already parsed as JSON.
    pub fn check_value(value: &Value) -> Checked<Self> {
        let mut c = Checker::default();
        let manifest = check(&mut c, value);
        c.finish(manifest)
    }

    /// Validates the two system twins' desired properties as the agent receives them (one JSON
    /// object each), reporting errors with the same paths as a whole manifest
    /// (`$.modulesContent.$edgeAgent['properties.desired'].…`). User module twins are not part of
    /// the agent's view, so `module_twins` is empty.
    pub fn check_sections(edge_agent: &Value, edge_hub: &Value) -> Checked<Self> {
        let mut c = Checker::default();
        let base = JsonPath::root().key("modulesContent");
        let agent = edge_agent::check(
            &mut c,
            edge_agent,
            &base.key(EDGE_AGENT_IDENTITY).key(PROPERTIES_DESIRED),
        );
        let hub = edge_hub::check(
            &mut c,
            edge_hub,
            &base.key(EDGE_HUB_IDENTITY).key(PROPERTIES_DESIRED),
        );
        let manifest = match (agent, hub) {
            (Some(edge_agent), Some(edge_hub)) => Some(Manifest {
                edge_agent,
                edge_hub,
                module_twins: IndexMap::new(),
            }),
            _ => None,
        };
        c.finish(manifest)
    }

    /// Like [`Self::check_slice`], without the warnings.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ValidationErrors> {
        Self::check_slice(bytes).into_result()
    }

    /// Like [`Self::check_value`], without the warnings.
    pub fn from_value(value: &Value) -> Result<Self, ValidationErrors> {
        Self::check_value(value).into_result()
    }

    /// The `{"modulesContent": …}` JSON (inverse of [`Self::from_value`]), with createOptions
    /// split into twin-sized chunks as IoT Edge tooling writes them.
    pub fn to_value(&self) -> Value {
        let mut modules_content = Map::new();
        modules_content.insert(EDGE_AGENT_IDENTITY.into(), twin(self.edge_agent.to_value()));
        modules_content.insert(EDGE_HUB_IDENTITY.into(), twin(self.edge_hub.to_value()));
        for (name, desired) in &self.module_twins {
            modules_content.insert(name.clone(), twin(Value::Object(desired.clone())));
        }
        let mut root = Map::new();
        root.insert("modulesContent".into(), Value::Object(modules_content));
        Value::Object(root)
    }
}

impl FromStr for Manifest {
    type Err = ValidationErrors;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_slice(s.as_bytes())
    }
}

/// `{"properties.desired": desired}`.
fn twin(desired: Value) -> Value {
    let mut out = Map::new();
    out.insert(PROPERTIES_DESIRED.into(), desired);
    Value::Object(out)
}

/// Reads a manifest in either form.
fn check(c: &mut Checker, value: &Value) -> Option<Manifest> {
    let root = JsonPath::root();
    let map = c.object(value, &root)?;
    let mut f = Fields::new(map, &root);
    let manifest = if f.raw("content").is_some() {
        for key in CONFIGURATION_KEYS {
            f.raw(key);
        }
        let content_path = root.key("content");
        f.required(c, "content")
            .and_then(|v| c.object(v, &content_path))
            .and_then(|content| {
                let mut cf = Fields::new(content, &content_path);
                // A configuration may also carry device-twin content; it is not ours to check.
                cf.raw("deviceContent");
                let m = cf
                    .required(c, "modulesContent")
                    .and_then(|v| check_modules_content(c, v, &content_path.key("modulesContent")));
                cf.finish(c);
                m
            })
    } else {
        f.required(c, "modulesContent")
            .and_then(|v| check_modules_content(c, v, &root.key("modulesContent")))
    };
    f.finish(c);
    manifest
}

/// Reads `modulesContent`.
fn check_modules_content(c: &mut Checker, value: &Value, path: &JsonPath) -> Option<Manifest> {
    let map = c.object(value, path)?;
    let before = c.error_count();
    let mut edge_agent = None;
    let mut edge_hub = None;
    let mut module_twins = IndexMap::new();
    for (name, twin_value) in map {
        let twin_path = path.key(name.as_str());
        let desired = twin_desired(c, twin_value, &twin_path);
        let desired_path = twin_path.key(PROPERTIES_DESIRED);
        match name.as_str() {
            EDGE_AGENT_IDENTITY => {
                edge_agent = desired.and_then(|d| edge_agent::check(c, d, &desired_path));
            }
            EDGE_HUB_IDENTITY => {
                edge_hub = desired.and_then(|d| edge_hub::check(c, d, &desired_path));
            }
            _ => {
                check_name(c, name, NameRule::Module, &twin_path);
                if let Some(d) = desired.and_then(|d| c.object(d, &desired_path)) {
                    module_twins.insert(name.clone(), d.clone());
                }
            }
        }
    }
    for required in [EDGE_AGENT_IDENTITY, EDGE_HUB_IDENTITY] {
        if !map.contains_key(required) {
            c.error(&path.key(required), ErrorKind::Missing);
        }
    }
    if let Some(agent) = &edge_agent {
        for name in module_twins.keys() {
            if agent.module(name).is_none() {
                c.warn(&path.key(name.as_str()), WarningKind::TwinWithoutModule);
            }
        }
    }
    if c.error_count() != before {
        return None;
    }
    Some(Manifest {
        edge_agent: edge_agent?,
        edge_hub: edge_hub?,
        module_twins,
    })
}

/// The `properties.desired` value of one twin entry.
fn twin_desired<'a>(c: &mut Checker, value: &'a Value, path: &JsonPath) -> Option<&'a Value> {
    let map = c.object(value, path)?;
    if let Some(layered) = map.keys().find(|k| k.starts_with("properties.desired.")) {
        c.error(
            &path.key(layered.as_str()),
            ErrorKind::LayeredDeployment {
                key: layered.clone(),
            },
        );
        return None;
    }
    let mut f = Fields::new(map, path);
    let desired = f.required(c, PROPERTIES_DESIRED);
    f.finish(c);
    desired
}

#[cfg(test)]
mod tests;
