//! Twin documents (reference iot-hub-protocols §3.3): `tags`, and `desired`/`reported` sections
//! each with its own strictly increasing `$version` and a `$metadata` tree holding
//! `$lastUpdated` at every object level. The whole-twin `etag` changes on every write.
//! Patches are validated in full before anything changes, so a bad patch leaves the twin as it was.

use crate::error::TwinError;
use crate::merge_patch::{merge, merge_with_metadata, validate};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde_json::{Map, Value};

/// Size limit of `tags`.
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
/// Size limit of each of `desired` and `reported`.
pub const MAX_SECTION_BYTES: usize = 32 * 1024;

const LAST_UPDATED: &str = "$lastUpdated";
const LAST_UPDATED_VERSION: &str = "$lastUpdatedVersion";

/// Which property section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// `properties.desired`: written by the service.
    Desired,
    /// `properties.reported`: written by the device or module.
    Reported,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Desired => "desired",
            Section::Reported => "reported",
        }
    }
}

/// One property section with its version and metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct TwinSection {
    /// The properties, without `$version` and `$metadata`.
    pub properties: Map<String, Value>,
    /// `$version`, bumped by every change.
    pub version: u64,
    /// `$metadata` tree.
    pub metadata: Map<String, Value>,
    section: Section,
}

impl TwinSection {
    /// An empty section at version 1, as IoT Hub creates them.
    pub fn new(section: Section) -> Self {
        Self {
            properties: Map::new(),
            version: 1,
            metadata: Map::new(),
            section,
        }
    }

    /// Rebuilds a section from stored JSON (`{..., "$metadata": {...}, "$version": n}`).
    pub fn from_json(section: Section, value: &Value) -> Result<Self, TwinError> {
        let mut properties = as_object(value)?.clone();
        let version = properties
            .remove("$version")
            .and_then(|v| v.as_u64())
            .unwrap_or(1);
        let metadata = match properties.remove("$metadata") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        Ok(Self {
            properties,
            version,
            metadata,
            section,
        })
    }

    /// Merges `patch` (`null` deletes), bumps `$version` and updates `$metadata`; returns the
    /// new version. Top-level `$version`/`$metadata` keys in the patch are ignored.
    pub fn apply_patch(&mut self, patch: &Value, now: Timestamp) -> Result<u64, TwinError> {
        let patch = strip_reserved(as_object(patch)?);
        validate(&patch, &format!("properties.{}", self.section.name()))?;
        let mut next = self.clone();
        next.version += 1;
        let stamp = next.stamp(now);
        merge_with_metadata(&mut next.properties, &mut next.metadata, &patch, &stamp);
        check_size(self.section.name(), &next.properties, MAX_SECTION_BYTES)?;
        *self = next;
        Ok(self.version)
    }

    /// Replaces all properties (`PUT /twins`), bumps `$version` and rebuilds `$metadata`.
    pub fn replace(&mut self, doc: &Value, now: Timestamp) -> Result<u64, TwinError> {
        let doc = strip_reserved(as_object(doc)?);
        validate(&doc, &format!("properties.{}", self.section.name()))?;
        let mut next = self.clone();
        next.version += 1;
        let stamp = next.stamp(now);
        (next.properties, next.metadata) = (Map::new(), Map::new());
        merge_with_metadata(&mut next.properties, &mut next.metadata, &doc, &stamp);
        check_size(self.section.name(), &next.properties, MAX_SECTION_BYTES)?;
        *self = next;
        Ok(self.version)
    }

    /// The device view: properties plus `"$version"` (twin GET over MQTT).
    pub fn to_device_json(&self) -> Value {
        let mut m = self.properties.clone();
        m.insert("$version".into(), self.version.into());
        Value::Object(m)
    }

    /// The service view: properties, `"$metadata"` and `"$version"` (REST twin).
    pub fn to_service_json(&self) -> Value {
        let mut m = self.properties.clone();
        m.insert("$metadata".into(), Value::Object(self.metadata.clone()));
        m.insert("$version".into(), self.version.into());
        Value::Object(m)
    }

    fn stamp(&self, now: Timestamp) -> Map<String, Value> {
        let mut stamp = Map::new();
        stamp.insert(LAST_UPDATED.into(), format_timestamp(now).into());
        if self.section == Section::Desired {
            stamp.insert(LAST_UPDATED_VERSION.into(), self.version.into());
        }
        stamp
    }
}

/// The body of a desired-property notification: the patch plus `"$version"`.
pub fn desired_notification(patch: &Value, version: u64) -> Value {
    let mut m = match patch {
        Value::Object(o) => strip_reserved(o),
        _ => Map::new(),
    };
    m.insert("$version".into(), version.into());
    Value::Object(m)
}

/// Parses a patch body sent by a device or the service.
pub fn parse_patch(body: &[u8]) -> Result<Value, TwinError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| TwinError::InvalidJson(e.to_string()))?;
    as_object(&v)?;
    Ok(v)
}

/// A whole twin: tags, desired and reported, and the etag counter.
#[derive(Clone, Debug, PartialEq)]
pub struct Twin {
    /// `tags` (service only).
    pub tags: Map<String, Value>,
    /// `properties.desired`.
    pub desired: TwinSection,
    /// `properties.reported`.
    pub reported: TwinSection,
    /// Twin `version`; the etag encodes it and every write bumps it.
    pub version: u64,
}

impl Default for Twin {
    fn default() -> Self {
        Self::new()
    }
}

impl Twin {
    /// An empty twin (version 1, sections at `$version` 1).
    pub fn new() -> Self {
        Self {
            tags: Map::new(),
            desired: TwinSection::new(Section::Desired),
            reported: TwinSection::new(Section::Reported),
            version: 1,
        }
    }

    /// The etag (without quotes): base64 of the 8-byte big-endian twin version, e.g. `AAAAAAAAAAE=`.
    pub fn etag(&self) -> String {
        STANDARD.encode(self.version.to_be_bytes())
    }

    /// Checks an `If-Match` header value: absent, `*`, or the current etag (quoted or not).
    pub fn check_etag(&self, if_match: Option<&str>) -> Result<(), TwinError> {
        let Some(given) = if_match.map(|s| s.trim().trim_matches('"')) else {
            return Ok(());
        };
        if given == "*" || given == self.etag() {
            return Ok(());
        }
        Err(TwinError::EtagMismatch {
            given: given.to_owned(),
            current: self.etag(),
        })
    }

    /// Applies a desired patch; returns the notification body to push to the device.
    pub fn patch_desired(&mut self, patch: &Value, now: Timestamp) -> Result<Value, TwinError> {
        let version = self.desired.apply_patch(patch, now)?;
        self.version += 1;
        Ok(desired_notification(patch, version))
    }

    /// Applies a reported patch; returns the new reported `$version` (for the 204 topic).
    pub fn patch_reported(&mut self, patch: &Value, now: Timestamp) -> Result<u64, TwinError> {
        let version = self.reported.apply_patch(patch, now)?;
        self.version += 1;
        Ok(version)
    }

    /// Merge-patches `tags`.
    pub fn patch_tags(&mut self, patch: &Value) -> Result<(), TwinError> {
        let patch = as_object(patch)?;
        validate(patch, "tags")?;
        let mut merged = self.tags.clone();
        merge(&mut merged, patch);
        check_size("tags", &merged, MAX_TAGS_BYTES)?;
        self.tags = merged;
        self.version += 1;
        Ok(())
    }

    /// Replaces `tags` (`PUT /twins`).
    pub fn replace_tags(&mut self, tags: &Value) -> Result<(), TwinError> {
        let tags = as_object(tags)?;
        validate(tags, "tags")?;
        let mut fresh = Map::new();
        merge(&mut fresh, tags);
        check_size("tags", &fresh, MAX_TAGS_BYTES)?;
        self.tags = fresh;
        self.version += 1;
        Ok(())
    }

    /// What a device gets for twin GET: `{"desired":{...,"$version":n},"reported":{...}}`.
    pub fn device_properties(&self) -> Value {
        serde_json::json!({ "desired": self.desired.to_device_json(), "reported": self.reported.to_device_json() })
    }

    /// The `properties` object of the REST twin, with `$metadata`.
    pub fn service_properties(&self) -> Value {
        serde_json::json!({ "desired": self.desired.to_service_json(), "reported": self.reported.to_service_json() })
    }
}

/// Formats a timestamp as IoT Hub does: ISO-8601, milliseconds, `Z`.
pub fn format_timestamp(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn as_object(v: &Value) -> Result<&Map<String, Value>, TwinError> {
    match v {
        Value::Object(o) => Ok(o),
        Value::Null => Err(TwinError::NotAnObject("null")),
        Value::Bool(_) => Err(TwinError::NotAnObject("a boolean")),
        Value::Number(_) => Err(TwinError::NotAnObject("a number")),
        Value::String(_) => Err(TwinError::NotAnObject("a string")),
        Value::Array(_) => Err(TwinError::NotAnObject("an array")),
    }
}

fn strip_reserved(patch: &Map<String, Value>) -> Map<String, Value> {
    let mut p = patch.clone();
    p.remove("$version");
    p.remove("$metadata");
    p
}

fn check_size(
    section: &'static str,
    props: &Map<String, Value>,
    max: usize,
) -> Result<(), TwinError> {
    let size = serde_json::to_vec(props)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max {
        return Err(TwinError::TooLarge { section, size, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn t0() -> Timestamp {
        "2026-03-30T16:24:48.789Z".parse().unwrap()
    }

    #[test]
    fn reported_patch_bumps_version_and_keeps_metadata() {
        let mut twin = Twin::new();
        let etag0 = twin.etag();
        assert_eq!(etag0, "AAAAAAAAAAE=");
        let v = twin
            .patch_reported(&json!({"status": "ok", "nested": {"a": 1}}), t0())
            .unwrap();
        assert_eq!(v, 2);
        assert_ne!(twin.etag(), etag0);
        let svc = twin.reported.to_service_json();
        assert_eq!(
            svc["$metadata"]["status"]["$lastUpdated"],
            "2026-03-30T16:24:48.789Z"
        );
        assert_eq!(
            svc["$metadata"]["nested"]["a"]["$lastUpdated"],
            "2026-03-30T16:24:48.789Z"
        );
        assert_eq!(svc["$metadata"]["$lastUpdated"], "2026-03-30T16:24:48.789Z");
        twin.patch_reported(&json!({"nested": null}), t0()).unwrap();
        let svc = twin.reported.to_service_json();
        assert!(svc["$metadata"].get("nested").is_none());
        assert_eq!(
            twin.device_properties(),
            json!({"desired": {"$version": 1}, "reported": {"status": "ok", "$version": 3}})
        );
    }

    #[test]
    fn desired_patch_returns_notification_with_version() {
        let mut twin = Twin::new();
        let note = twin
            .patch_desired(&json!({"a": 1, "$version": 99}), t0())
            .unwrap();
        assert_eq!(note, json!({"a": 1, "$version": 2}));
        assert_eq!(twin.desired.metadata["$lastUpdatedVersion"], 2);
    }

    #[test]
    fn bad_patch_changes_nothing() {
        let mut twin = Twin::new();
        twin.patch_reported(&json!({"keep": 1}), t0()).unwrap();
        let before = twin.clone();
        assert!(
            twin.patch_reported(&json!({"ok": 1, "bad.key": 2}), t0())
                .is_err()
        );
        assert!(twin.patch_reported(&json!({"big": "x".repeat(4000), "b2": "x".repeat(4000), "b3": {"c": "x".repeat(4000)}, "b4": "x".repeat(4000), "b5": "x".repeat(4000), "b6": "x".repeat(4000), "b7": "x".repeat(4000), "b8": "x".repeat(4000), "b9": "x".repeat(4000)}), t0()).is_err());
        assert!(twin.patch_reported(&json!([1]), t0()).is_err());
        assert_eq!(twin, before);
    }

    #[test]
    fn section_size_limit_is_enforced() {
        let mut twin = Twin::new();
        let mut patch = Map::new();
        for i in 0..9 {
            patch.insert(format!("k{i}"), "x".repeat(4000).into());
        }
        let e = twin.patch_desired(&Value::Object(patch), t0()).unwrap_err();
        assert!(
            matches!(
                e,
                TwinError::TooLarge {
                    section: "desired",
                    max: 32768,
                    ..
                }
            ),
            "{e}"
        );
        let e = twin
            .patch_tags(
                &json!({"a": "x".repeat(4000), "b": "x".repeat(4000), "c": "x".repeat(400)}),
            )
            .unwrap_err();
        assert!(
            matches!(
                e,
                TwinError::TooLarge {
                    section: "tags",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn etag_checks_accept_star_quotes_and_reject_stale() {
        let mut twin = Twin::new();
        let old = format!("\"{}\"", twin.etag());
        twin.patch_tags(&json!({"env": "test"})).unwrap();
        assert!(twin.check_etag(None).is_ok());
        assert!(twin.check_etag(Some("\"*\"")).is_ok());
        assert!(
            twin.check_etag(Some(&format!("\"{}\"", twin.etag())))
                .is_ok()
        );
        assert!(matches!(
            twin.check_etag(Some(&old)),
            Err(TwinError::EtagMismatch { .. })
        ));
    }

    #[test]
    fn replace_rebuilds_properties_and_metadata() {
        let mut twin = Twin::new();
        twin.patch_desired(&json!({"a": 1, "b": {"c": 2}}), t0())
            .unwrap();
        twin.desired.replace(&json!({"z": true}), t0()).unwrap();
        assert_eq!(
            twin.desired.to_device_json(),
            json!({"z": true, "$version": 3})
        );
        assert!(twin.desired.metadata.get("a").is_none());
        assert!(twin.desired.metadata.get("z").is_some());
    }

    #[test]
    fn stored_sections_round_trip() {
        let mut twin = Twin::new();
        twin.patch_reported(&json!({"a": {"b": 1}}), t0()).unwrap();
        let back =
            TwinSection::from_json(Section::Reported, &twin.reported.to_service_json()).unwrap();
        assert_eq!(back, twin.reported);
    }

    #[test]
    fn device_patch_bodies_are_parsed_with_clear_errors() {
        assert!(parse_patch(br#"{"a":1}"#).is_ok());
        assert!(matches!(
            parse_patch(b"{nope"),
            Err(TwinError::InvalidJson(_))
        ));
        assert_eq!(parse_patch(b"[1]"), Err(TwinError::NotAnObject("an array")));
    }
}
