//! A device-side twin document (`{desired, reported}`, each with `$version`) and the operations
//! the edge hub applies to it.

use ironedge_protocol::{merge, validate};
use serde_json::{Map, Value};

/// Largest reported patch accepted (32 KiB, `ReportedPropertiesValidator.cs`).
pub const MAX_REPORTED_PATCH_BYTES: usize = 32 * 1024;

const VERSION: &str = "$version";

/// Why a twin operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwinError {
    /// The patch is not a JSON object.
    #[error("reported patch is not a JSON object: {0}")]
    NotAnObject(String),
    /// The patch breaks a twin rule (depth, names, sizes).
    #[error("reported patch is invalid: {0}")]
    Invalid(String),
    /// The patch is larger than 32 KiB.
    #[error("reported patch of {size} bytes exceeds {max} bytes")]
    TooLarge {
        /// Patch size.
        size: usize,
        /// Limit.
        max: usize,
    },
}

/// The twin as a device sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TwinDoc {
    /// Desired properties including `$version`.
    pub desired: Map<String, Value>,
    /// Reported properties including `$version`.
    pub reported: Map<String, Value>,
}

impl TwinDoc {
    /// An empty twin at version 0 on both sides… the state before anything is known.
    pub fn empty() -> Self {
        let mut doc = Self::default();
        doc.desired.insert(VERSION.into(), Value::from(0));
        doc.reported.insert(VERSION.into(), Value::from(0));
        doc
    }

    /// Reads `{desired, reported}` (a twin GET response); missing sections are empty.
    pub fn from_json(value: &Value) -> Self {
        let section = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        Self {
            desired: section("desired"),
            reported: section("reported"),
        }
    }

    /// `{desired, reported}`, as a twin GET answers.
    pub fn to_json(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("desired".into(), Value::Object(self.desired.clone()));
        doc.insert("reported".into(), Value::Object(self.reported.clone()));
        Value::Object(doc)
    }

    /// The desired `$version`.
    pub fn desired_version(&self) -> u64 {
        self.desired
            .get(VERSION)
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// The reported `$version`.
    pub fn reported_version(&self) -> u64 {
        self.reported
            .get(VERSION)
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// Validates and merges a reported patch locally; returns the local reported version.
    pub fn apply_reported(&mut self, patch: &Map<String, Value>) -> u64 {
        merge(&mut self.reported, &strip_version(patch));
        let version = self.reported_version() + 1;
        self.reported.insert(VERSION.into(), Value::from(version));
        version
    }

    /// Merges a desired patch from the cloud; its `$version` becomes the desired version.
    pub fn apply_desired(&mut self, patch: &Map<String, Value>) {
        let version = patch.get(VERSION).cloned();
        merge(&mut self.desired, &strip_version(patch));
        if let Some(v) = version {
            self.desired.insert(VERSION.into(), v);
        }
    }

    /// Replaces the cache with a fresh twin from the cloud. When the desired version moved, returns
    /// the patch (with the new `$version`) that turns the old desired section into the new one, for
    /// pushing to a subscribed module.
    pub fn refresh(&mut self, fresh: TwinDoc) -> Option<Map<String, Value>> {
        let moved = fresh.desired_version() != self.desired_version();
        let patch = moved.then(|| {
            let mut p = diff(
                &strip_version(&self.desired),
                &strip_version(&fresh.desired),
            );
            p.insert(VERSION.into(), Value::from(fresh.desired_version()));
            p
        });
        *self = fresh;
        patch
    }
}

/// Parses and validates a reported patch body from a module.
pub fn parse_reported_patch(body: &[u8]) -> Result<Map<String, Value>, TwinError> {
    if body.len() > MAX_REPORTED_PATCH_BYTES {
        return Err(TwinError::TooLarge {
            size: body.len(),
            max: MAX_REPORTED_PATCH_BYTES,
        });
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| TwinError::NotAnObject(e.to_string()))?;
    let Value::Object(patch) = value else {
        return Err(TwinError::NotAnObject(format!("got {}", kind(&value))));
    };
    validate(&strip_version(&patch), "reported").map_err(|e| TwinError::Invalid(e.to_string()))?;
    Ok(patch)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn strip_version(section: &Map<String, Value>) -> Map<String, Value> {
    let mut s = section.clone();
    s.remove(VERSION);
    s
}

/// The merge patch that turns `old` into `new` (`null` for removed keys).
pub fn diff(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for (k, v_old) in old {
        match new.get(k) {
            None => {
                patch.insert(k.clone(), Value::Null);
            }
            Some(v_new) if v_new == v_old => {}
            Some(Value::Object(n)) => match v_old {
                Value::Object(o) => {
                    patch.insert(k.clone(), Value::Object(diff(o, n)));
                }
                _ => {
                    patch.insert(k.clone(), Value::Object(n.clone()));
                }
            },
            Some(v_new) => {
                patch.insert(k.clone(), v_new.clone());
            }
        }
    }
    for (k, v) in new {
        if !old.contains_key(k) {
            patch.insert(k.clone(), v.clone());
        }
    }
    patch
}

/// Composes two merge patches into one with the same effect as applying `first` then `second`:
/// this is how reported patches queued while offline coalesce. Unlike [`merge`], `null`s are kept.
pub fn compose_patches(first: &mut Map<String, Value>, second: &Map<String, Value>) {
    for (k, v) in second {
        match (first.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => compose_patches(a, b),
            _ => {
                first.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_reported_patch_merges_locally_and_bumps_the_version() {
        let mut twin = TwinDoc::empty();
        assert_eq!(twin.apply_reported(&obj(json!({"a": 1, "b": {"c": 2}}))), 1);
        assert_eq!(
            twin.apply_reported(&obj(json!({"b": {"c": null, "d": 3}}))),
            2
        );
        assert_eq!(
            twin.reported,
            obj(json!({"a": 1, "b": {"d": 3}, "$version": 2}))
        );
    }

    #[test]
    fn invalid_reported_patches_are_refused_with_the_reason() {
        assert!(matches!(
            parse_reported_patch(b"[1]"),
            Err(TwinError::NotAnObject(_))
        ));
        assert!(matches!(
            parse_reported_patch(b"{oops"),
            Err(TwinError::NotAnObject(_))
        ));
        assert!(matches!(
            parse_reported_patch(br#"{"a.b": 1}"#),
            Err(TwinError::Invalid(_))
        ));
        let deep = format!("{}1{}", r#"{"a":"#.repeat(12), "}".repeat(12));
        assert!(matches!(
            parse_reported_patch(deep.as_bytes()),
            Err(TwinError::Invalid(_))
        ));
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(40 * 1024));
        assert!(matches!(
            parse_reported_patch(big.as_bytes()),
            Err(TwinError::TooLarge { .. })
        ));
        assert!(parse_reported_patch(br#"{"status": "ok", "n": [1, 2]}"#).is_ok());
    }

    #[test]
    fn a_desired_patch_takes_the_cloud_version() {
        let mut twin = TwinDoc::empty();
        twin.apply_desired(&obj(json!({"x": 1, "$version": 7})));
        assert_eq!(twin.desired_version(), 7);
        assert_eq!(twin.desired["x"], 1);
    }

    #[test]
    fn refreshing_after_an_outage_synthesises_the_missed_desired_patch() {
        let mut twin = TwinDoc::from_json(&json!({
            "desired": {"a": 1, "b": {"c": 1, "d": 2}, "gone": true, "$version": 3},
            "reported": {"$version": 1}
        }));
        let fresh = TwinDoc::from_json(&json!({
            "desired": {"a": 1, "b": {"c": 5, "d": 2}, "new": "x", "$version": 6},
            "reported": {"$version": 1}
        }));
        let patch = twin.refresh(fresh).unwrap();
        assert_eq!(
            Value::Object(patch),
            json!({"b": {"c": 5}, "gone": null, "new": "x", "$version": 6})
        );
        assert_eq!(twin.desired_version(), 6);
    }

    #[test]
    fn refreshing_with_the_same_desired_version_pushes_nothing() {
        let mut twin = TwinDoc::from_json(&json!({"desired": {"$version": 3}, "reported": {}}));
        let fresh = TwinDoc::from_json(&json!({"desired": {"$version": 3}, "reported": {"r": 1}}));
        assert_eq!(twin.refresh(fresh), None);
        assert_eq!(twin.reported["r"], 1);
    }

    #[test]
    fn queued_patches_compose_to_the_same_effect_as_applying_them_in_order() {
        let p1 = obj(json!({"a": 1, "b": {"c": 1, "d": 1}, "e": 1}));
        let p2 = obj(json!({"a": null, "b": {"c": 2}, "e": {"f": 1}}));
        let mut composed = p1.clone();
        compose_patches(&mut composed, &p2);
        let base = obj(json!({"a": 0, "z": 9}));
        let mut one_by_one = base.clone();
        merge(&mut one_by_one, &p1);
        merge(&mut one_by_one, &p2);
        let mut at_once = base;
        merge(&mut at_once, &composed);
        assert_eq!(one_by_one, at_once);
        assert_eq!(composed["a"], Value::Null);
    }
}
