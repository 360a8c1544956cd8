//! `$edgeHub` desired properties: routes and store-and-forward.
//!
//! Reference `iotedge-runtime.md` §1.9 (`EdgeHubConfigParser.cs`, `RouteSpec.cs`,
//! `RouteSpecConverter.cs`, `EdgeHubDesiredProperties_1_*.cs`):
//!
//! | schema | `routes` | `storeAndForwardConfiguration` | also |
//! |---|---|---|---|
//! | 1.0 | optional; strings only, empty ones skipped | optional | |
//! | 1.1 | required; strings or `{route, priority, timeToLiveSecs}` | required | |
//! | 1.2 | as 1.1 | required | `mqttBroker` (kept, not interpreted) |
//! | 1.3 | as 1.1 | required | `mqttBroker`, `integrity` (kept, not verified) |
//!
//! Every route must parse and compile; one bad route rejects the whole configuration, and each
//! bad route is reported at its own path (`$.routes.r1`, or `$.routes.r1.route` for the object form).

use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use crate::checker::{Checker, Fields};
use crate::edge_agent::check_name;
use crate::error::{Checked, ErrorKind, Found, NameRule, ValidationErrors, WarningKind};
use crate::path::JsonPath;
use crate::schema_version::{HUB_SUPPORTED, SchemaVersion};

/// The `$edgeHub` desired properties of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeHubDesired {
    /// `schemaVersion`: 1.0 to 1.3.
    pub schema_version: SchemaVersion,
    /// `routes`, by name, in manifest order.
    pub routes: IndexMap<String, Route>,
    /// `storeAndForwardConfiguration` (always present from schema 1.1 on).
    pub store_and_forward: Option<StoreAndForward>,
    /// `mqttBroker` (schema 1.2+), kept as given: nothing in IoT Edge consumes it any more.
    pub mqtt_broker: Option<Value>,
    /// `integrity` (schema 1.3), kept as given and not verified.
    pub integrity: Option<Value>,
    /// The twin's `$version`.
    pub twin_version: Option<i64>,
}

/// One route with its delivery priority and message time-to-live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The route text, `FROM … WHERE … INTO …`.
    pub route: String,
    /// 0 (highest) to 9, or [`Route::DEFAULT_PRIORITY`] when not given.
    pub priority: u32,
    /// Message TTL for this route; 0 means the store-and-forward TTL.
    pub time_to_live_secs: u32,
}

impl Route {
    /// The priority of a route that sets none (`RouteFactory.DefaultPriority`): below all of 0–9.
    pub const DEFAULT_PRIORITY: u32 = 2_000_000_000;

    /// A route with the default priority and TTL (what a plain string route means).
    pub fn new(route: impl Into<String>) -> Self {
        Self {
            route: route.into(),
            priority: Self::DEFAULT_PRIORITY,
            time_to_live_secs: 0,
        }
    }

    /// Whether priority and TTL are the defaults, so the route can be written as a plain string.
    pub fn is_plain(&self) -> bool {
        self.priority == Self::DEFAULT_PRIORITY && self.time_to_live_secs == 0
    }
}

/// `storeAndForwardConfiguration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreAndForward {
    /// How long undelivered messages are kept; negative means forever.
    pub time_to_live_secs: i32,
    /// `storeLimits.maxSizeBytes` (honoured by IoT Edge only for in-memory stores).
    pub max_size_bytes: Option<u64>,
}

impl StoreAndForward {
    /// The TTL as a duration, `None` for "forever".
    pub fn time_to_live(&self) -> Option<std::time::Duration> {
        u64::try_from(self.time_to_live_secs)
            .ok()
            .map(std::time::Duration::from_secs)
    }
}

impl EdgeHubDesired {
    /// Validates `$edgeHub` desired properties as received from the hub's twin; error paths are
    /// rooted at `$` (the desired-properties object).
    pub fn check_value(value: &Value) -> Checked<Self> {
        let mut c = Checker::default();
        let desired = check(&mut c, value, &JsonPath::root());
        c.finish(desired)
    }

    /// Like [`Self::check_value`], without the warnings.
    pub fn from_value(value: &Value) -> Result<Self, ValidationErrors> {
        Self::check_value(value).into_result()
    }

    /// The desired-properties JSON (inverse of [`Self::from_value`]).
    pub fn to_value(&self) -> Value {
        to_value(self)
    }
}

/// Reads the `$edgeHub` desired properties at `path`.
pub(crate) fn check(c: &mut Checker, value: &Value, path: &JsonPath) -> Option<EdgeHubDesired> {
    let map = c.object(value, path)?;
    let before = c.error_count();
    let mut f = Fields::new(map, path);
    let schema_version = check_schema_version(c, &mut f);
    // With an unknown version, check the rest by the newest rules to report everything at once.
    let schema = schema_version.unwrap_or(SchemaVersion::new(1, 3));
    let routes = match f.optional("routes") {
        None if schema.at_least(1, 1) => {
            c.error(&path.key("routes"), ErrorKind::Missing);
            None
        }
        None => Some(IndexMap::new()),
        Some(v) => check_routes(c, v, &path.key("routes"), schema),
    };
    let store_and_forward = match f.optional("storeAndForwardConfiguration") {
        None if schema.at_least(1, 1) => {
            c.error(
                &path.key("storeAndForwardConfiguration"),
                ErrorKind::Missing,
            );
            None
        }
        None => Some(None),
        Some(v) => {
            check_store_and_forward(c, v, &path.key("storeAndForwardConfiguration")).map(Some)
        }
    };
    let mqtt_broker = kept_object(
        c,
        &mut f,
        "mqttBroker",
        schema.at_least(1, 2),
        "mqttBroker needs $edgeHub schemaVersion 1.2 or later",
    );
    let integrity = kept_object(
        c,
        &mut f,
        "integrity",
        schema.at_least(1, 3),
        "integrity needs $edgeHub schemaVersion 1.3",
    );
    let twin_version = crate::checker::twin_version(c, &mut f);
    f.finish(c);
    if c.error_count() != before {
        return None;
    }
    Some(EdgeHubDesired {
        schema_version: schema_version?,
        routes: routes?,
        store_and_forward: store_and_forward?,
        mqtt_broker,
        integrity,
        twin_version,
    })
}

/// Reads `schemaVersion` and applies the hub's version rule.
fn check_schema_version(c: &mut Checker, f: &mut Fields<'_>) -> Option<SchemaVersion> {
    let text = f.required_string(c, "schemaVersion")?;
    match text.parse::<SchemaVersion>() {
        Ok(v) if v.is_supported_by_hub() => Some(v),
        _ => {
            c.error(
                &f.path_of("schemaVersion"),
                ErrorKind::UnsupportedSchema {
                    version: crate::error::truncate(text),
                    supported: HUB_SUPPORTED,
                },
            );
            None
        }
    }
}

/// An object section kept as raw JSON when the schema has it, ignored (with a warning) otherwise.
fn kept_object(
    c: &mut Checker,
    f: &mut Fields<'_>,
    key: &str,
    supported: bool,
    reason: &'static str,
) -> Option<Value> {
    let value = f.optional(key)?;
    let path = f.path_of(key);
    if !supported {
        c.warn(&path, WarningKind::Ignored { reason });
        return None;
    }
    c.object(value, &path).map(|m| Value::Object(m.clone()))
}

/// Reads `routes`.
fn check_routes(
    c: &mut Checker,
    value: &Value,
    path: &JsonPath,
    schema: SchemaVersion,
) -> Option<IndexMap<String, Route>> {
    let map = c.object(value, path)?;
    let before = c.error_count();
    let mut out = IndexMap::with_capacity(map.len());
    for (name, spec) in map {
        let route_path = path.key(name.as_str());
        check_name(c, name, NameRule::TwinKey, &route_path);
        if let Some(route) = check_route(c, spec, &route_path, schema) {
            out.insert(name.clone(), route);
        }
    }
    (c.error_count() == before).then_some(out)
}

/// Reads one route: a string, or (schema 1.1+) `{route, priority, timeToLiveSecs}`.
/// `None` without an error means "skipped" (an empty schema 1.0 route).
fn check_route(
    c: &mut Checker,
    spec: &Value,
    path: &JsonPath,
    schema: SchemaVersion,
) -> Option<Route> {
    match spec {
        Value::String(text) if text.trim().is_empty() && !schema.at_least(1, 1) => {
            c.warn(path, WarningKind::EmptyRouteSkipped);
            None
        }
        Value::Null if !schema.at_least(1, 1) => {
            c.warn(path, WarningKind::EmptyRouteSkipped);
            None
        }
        Value::String(text) => {
            let text = c.non_blank(spec, path).map(|_| text)?;
            check_route_text(c, text, path)?;
            Some(Route::new(text.clone()))
        }
        Value::Object(_) if !schema.at_least(1, 1) => {
            c.error(
                path,
                ErrorKind::RouteObjectNeedsSchema11 {
                    schema: schema.to_string(),
                },
            );
            None
        }
        Value::Object(map) => check_route_spec(c, map, path),
        other => {
            let expected = if schema.at_least(1, 1) {
                "a route string or an object {route, priority, timeToLiveSecs}"
            } else {
                "a route string"
            };
            c.error(
                path,
                ErrorKind::WrongType {
                    expected,
                    found: Found::of(other),
                },
            );
            None
        }
    }
}

/// Reads the object form of a route.
fn check_route_spec(c: &mut Checker, map: &Map<String, Value>, path: &JsonPath) -> Option<Route> {
    let before = c.error_count();
    let mut f = Fields::new(map, path);
    let text = f.required_non_blank(c, "route");
    if let Some(text) = text {
        check_route_text(c, text, &path.key("route"));
    }
    let priority = match f.optional("priority") {
        None => Some(Route::DEFAULT_PRIORITY),
        Some(v) => check_priority(c, v, &path.key("priority")),
    };
    let ttl = match f.optional("timeToLiveSecs") {
        None => Some(0),
        Some(v) => c.u32(v, &path.key("timeToLiveSecs")),
    };
    f.finish(c);
    if c.error_count() != before {
        return None;
    }
    Some(Route {
        route: text?.to_owned(),
        priority: priority?,
        time_to_live_secs: ttl?,
    })
}

/// A priority is 0–9 (or the default value written out).
fn check_priority(c: &mut Checker, value: &Value, path: &JsonPath) -> Option<u32> {
    const EXPECTED: &str = "an integer priority from 0 (highest) to 9";
    let p = c.integer(value, path, 0, i64::from(u32::MAX), EXPECTED)?;
    let p = u32::try_from(p).ok()?;
    if p <= 9 || p == Route::DEFAULT_PRIORITY {
        Some(p)
    } else {
        c.error(
            path,
            ErrorKind::InvalidValue {
                value: p.to_string(),
                expected: EXPECTED,
            },
        );
        None
    }
}

/// Checks that a route's text parses and compiles (with the `routing` crate, so the hub and the
/// validator agree). Compiler warnings become manifest warnings. `None` (error recorded) if not.
fn check_route_text(c: &mut Checker, text: &str, path: &JsonPath) -> Option<()> {
    match ironedge_routing::compile(text) {
        Ok(compiled) => {
            for warning in compiled.warnings() {
                c.warn(
                    path,
                    WarningKind::Route {
                        message: warning.message.clone(),
                        line: warning.line,
                        column: warning.column,
                    },
                );
            }
            Some(())
        }
        Err(err) => {
            c.error(
                path,
                ErrorKind::Route {
                    message: err.kind.to_string(),
                    line: err.line,
                    column: err.column,
                },
            );
            None
        }
    }
}

/// Reads `storeAndForwardConfiguration`.
fn check_store_and_forward(
    c: &mut Checker,
    value: &Value,
    path: &JsonPath,
) -> Option<StoreAndForward> {
    let map = c.object(value, path)?;
    let before = c.error_count();
    let mut f = Fields::new(map, path);
    let ttl = f.required(c, "timeToLiveSecs").and_then(|v| {
        c.integer(
            v,
            &path.key("timeToLiveSecs"),
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            "an integer number of seconds (negative means forever)",
        )
    });
    let max_size_bytes = match f.optional("storeLimits") {
        None => None,
        Some(v) => check_store_limits(c, v, &path.key("storeLimits")),
    };
    f.finish(c);
    if c.error_count() != before {
        return None;
    }
    Some(StoreAndForward {
        time_to_live_secs: i32::try_from(ttl?).ok()?,
        max_size_bytes,
    })
}

/// Reads `storeLimits` and returns `maxSizeBytes`.
fn check_store_limits(c: &mut Checker, value: &Value, path: &JsonPath) -> Option<u64> {
    let map = c.object(value, path)?;
    let mut f = Fields::new(map, path);
    let max = f.optional("maxSizeBytes").and_then(|v| {
        c.integer(
            v,
            &path.key("maxSizeBytes"),
            0,
            i64::MAX,
            "a non-negative number of bytes",
        )
    });
    f.finish(c);
    max.and_then(|m| u64::try_from(m).ok())
}

/// The desired-properties JSON of `desired`.
fn to_value(desired: &EdgeHubDesired) -> Value {
    let mut out = Map::new();
    out.insert(
        "schemaVersion".into(),
        json!(desired.schema_version.to_string()),
    );
    let routes: Map<String, Value> = desired
        .routes
        .iter()
        .map(|(name, r)| (name.clone(), route_to_value(r)))
        .collect();
    out.insert("routes".into(), Value::Object(routes));
    if let Some(sf) = &desired.store_and_forward {
        let mut sf_out = Map::new();
        sf_out.insert("timeToLiveSecs".into(), json!(sf.time_to_live_secs));
        if let Some(max) = sf.max_size_bytes {
            sf_out.insert("storeLimits".into(), json!({ "maxSizeBytes": max }));
        }
        out.insert("storeAndForwardConfiguration".into(), Value::Object(sf_out));
    }
    if let Some(broker) = &desired.mqtt_broker {
        out.insert("mqttBroker".into(), broker.clone());
    }
    if let Some(integrity) = &desired.integrity {
        out.insert("integrity".into(), integrity.clone());
    }
    if let Some(version) = desired.twin_version {
        out.insert("$version".into(), json!(version));
    }
    Value::Object(out)
}

/// A plain string when priority and TTL are defaults, else the object form.
fn route_to_value(route: &Route) -> Value {
    if route.is_plain() {
        return json!(route.route);
    }
    let mut out = Map::new();
    out.insert("route".into(), json!(route.route));
    if route.priority != Route::DEFAULT_PRIORITY {
        out.insert("priority".into(), json!(route.priority));
    }
    if route.time_to_live_secs != 0 {
        out.insert("timeToLiveSecs".into(), json!(route.time_to_live_secs));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;
