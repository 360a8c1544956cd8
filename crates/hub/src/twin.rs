//! Device and module twins: tags, desired and reported sections with per-section `$version`,
//! `$metadata` (`$lastUpdated` at every object level, `$lastUpdatedVersion` on desired), a
//! whole-twin version behind the etag, and the limits of `reference/iot-hub-protocols.md` §3.3.
//!
//! Every change is a JSON merge-patch (`null` deletes). Writes that replace a section (PUT twin,
//! configurations) are turned into the merge-patch from the old to the new content, so devices get
//! exactly what changed and metadata of untouched nodes stays as it was.

use std::collections::BTreeMap;

use ironedge_protocol::{merge, merge_with_metadata};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::etag;
use crate::registry::{AuthType, Device, IfMatch, Module};

/// Largest `tags` document, serialised.
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
/// Largest desired or reported section, serialised.
pub const MAX_SECTION_BYTES: usize = 32 * 1024;
/// Deepest object nesting below a section.
pub const MAX_DEPTH: usize = 10;
/// Longest key.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest string value.
pub const MAX_STRING_BYTES: usize = 4 * 1024;
/// Largest integer magnitude.
pub const MAX_INTEGER: i64 = 4_503_599_627_370_495;

/// Why a twin write was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TwinError {
    /// The patch breaks a twin rule at a JSON path.
    #[error("invalid twin patch at {path}: {reason}")]
    Invalid {
        /// Where, e.g. `properties.desired.a.b`.
        path: String,
        /// Which rule.
        reason: String,
    },
    /// A section would grow past its limit.
    #[error("{section} would be {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// `tags`, `properties.desired` or `properties.reported`.
        section: &'static str,
        /// Size after the change.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// `If-Match` named another version.
    #[error("etag mismatch: If-Match {given:?} but the twin's etag is {current:?}")]
    PreconditionFailed {
        /// What the client sent.
        given: String,
        /// The current etag.
        current: String,
    },
}

/// One of the two property sections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// The properties, without `$metadata`/`$version`.
    pub properties: Map<String, Value>,
    /// The `$metadata` tree.
    pub metadata: Map<String, Value>,
    /// `$version`, strictly increasing.
    pub version: u64,
}

/// Whether a configuration targets or has been applied to a twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConfigurationStatus {
    /// The target condition matches but another configuration won.
    Targeted,
    /// Its content is in the twin.
    Applied,
}

/// `configurations.{id}` in a twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigurationState {
    /// Targeted or applied.
    pub status: ConfigurationStatus,
}

/// A device or module twin as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Twin {
    /// Device id.
    pub device_id: String,
    /// Module id for module twins.
    pub module_id: Option<String>,
    /// Whole-twin version behind the etag.
    pub version: u64,
    /// Service-only tags.
    pub tags: Map<String, Value>,
    /// Desired properties.
    pub desired: Section,
    /// Reported properties.
    pub reported: Section,
    /// Configurations targeting this twin.
    #[serde(default)]
    pub configurations: BTreeMap<String, ConfigurationState>,
}

/// The body of `PATCH /twins/{id}`: tags and desired properties, unknown fields ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServicePatch {
    /// Merge-patch for tags.
    pub tags: Option<Map<String, Value>>,
    /// `properties.desired` merge-patch.
    pub properties: Option<ServicePatchProperties>,
}

/// `properties` of a [`ServicePatch`]; `reported` is the device's and ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServicePatchProperties {
    /// Merge-patch for desired properties.
    pub desired: Option<Map<String, Value>>,
}

/// What a write changed, for notifications.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TwinChange {
    /// The desired patch to push to the connected device, `$version` included.
    pub desired_patch: Option<Value>,
    /// The tags changed (configurations need re-evaluation).
    pub tags_changed: bool,
}

impl Section {
    fn new(now: &str) -> Self {
        let mut metadata = Map::new();
        metadata.insert("$lastUpdated".into(), json!(now));
        Self {
            properties: Map::new(),
            metadata,
            version: 1,
        }
    }

    /// `{…properties, "$metadata": …, "$version": N}`.
    pub fn to_json(&self) -> Value {
        let mut m = self.properties.clone();
        m.insert("$metadata".into(), Value::Object(self.metadata.clone()));
        m.insert("$version".into(), json!(self.version));
        Value::Object(m)
    }

    /// `{…properties, "$version": N}`, what a device's twin GET returns.
    pub fn to_device_json(&self) -> Value {
        let mut m = self.properties.clone();
        m.insert("$version".into(), json!(self.version));
        Value::Object(m)
    }
}

impl Twin {
    /// A fresh twin for a new identity.
    pub fn new(device_id: &str, module_id: Option<&str>, now: &str) -> Self {
        Self {
            device_id: device_id.to_owned(),
            module_id: module_id.map(str::to_owned),
            version: 1,
            tags: Map::new(),
            desired: Section::new(now),
            reported: Section::new(now),
            configurations: BTreeMap::new(),
        }
    }

    /// The twin's etag (without quotes).
    pub fn etag(&self) -> String {
        etag::twin(self.version)
    }

    /// Refuses a write whose `If-Match` is not this twin's etag.
    pub fn check_if_match(&self, if_match: &IfMatch) -> Result<(), TwinError> {
        match if_match {
            IfMatch::Etag(given) if *given != self.etag() => Err(TwinError::PreconditionFailed {
                given: given.clone(),
                current: self.etag(),
            }),
            _ => Ok(()),
        }
    }

    /// Applies a service merge-patch of tags and desired properties.
    pub fn patch(&mut self, patch: &ServicePatch, now: &str) -> Result<TwinChange, TwinError> {
        let mut next = self.clone();
        let mut change = TwinChange::default();
        if let Some(tags) = patch.tags.as_ref().filter(|t| !t.is_empty()) {
            validate_patch("tags", tags)?;
            merge(&mut next.tags, tags);
            check_size("tags", &next.tags, MAX_TAGS_BYTES)?;
            change.tags_changed = true;
        }
        if let Some(desired) = patch.properties.as_ref().and_then(|p| p.desired.as_ref()) {
            let desired = strip_system_keys(desired);
            if !desired.is_empty() {
                change.desired_patch = Some(next.patch_desired_section(&desired, now)?);
            }
        }
        next.version += 1;
        *self = next;
        Ok(change)
    }

    /// Replaces tags and desired properties (`PUT /twins/{id}`).
    pub fn replace(
        &mut self,
        tags: &Map<String, Value>,
        desired: &Map<String, Value>,
        now: &str,
    ) -> Result<TwinChange, TwinError> {
        let tags_patch = diff(&self.tags, &strip_nulls_map(tags));
        let desired_patch = diff(
            &self.desired.properties,
            &strip_nulls_map(&strip_system_keys(desired)),
        );
        let patch = ServicePatch {
            tags: Some(tags_patch),
            properties: Some(ServicePatchProperties {
                desired: Some(desired_patch),
            }),
        };
        self.patch(&patch, now)
    }

    /// Makes desired equal `desired` (configurations); `None` when nothing changed.
    pub fn set_desired(
        &mut self,
        desired: &Map<String, Value>,
        now: &str,
    ) -> Result<Option<Value>, TwinError> {
        let patch = diff(
            &self.desired.properties,
            &strip_nulls_map(&strip_system_keys(desired)),
        );
        if patch.is_empty() {
            return Ok(None);
        }
        let mut next = self.clone();
        let notification = next.patch_desired_section(&patch, now)?;
        next.version += 1;
        *self = next;
        Ok(Some(notification))
    }

    /// Applies a device's reported-properties merge-patch; returns the new reported `$version`.
    pub fn patch_reported(&mut self, patch: &Value, now: &str) -> Result<u64, TwinError> {
        let Value::Object(patch) = patch else {
            return Err(TwinError::Invalid {
                path: "properties.reported".into(),
                reason: "the patch must be a JSON object".into(),
            });
        };
        let patch = strip_system_keys(patch);
        validate_patch("properties.reported", &patch)?;
        let mut next = self.clone();
        next.reported.version += 1;
        merge_with_metadata(
            &mut next.reported.properties,
            &mut next.reported.metadata,
            &patch,
            &stamp(now, None),
        );
        check_size(
            "properties.reported",
            &next.reported.properties,
            MAX_SECTION_BYTES,
        )?;
        next.version += 1;
        *self = next;
        Ok(self.reported.version)
    }

    fn patch_desired_section(
        &mut self,
        patch: &Map<String, Value>,
        now: &str,
    ) -> Result<Value, TwinError> {
        validate_patch("properties.desired", patch)?;
        self.desired.version += 1;
        let version = self.desired.version;
        merge_with_metadata(
            &mut self.desired.properties,
            &mut self.desired.metadata,
            patch,
            &stamp(now, Some(version)),
        );
        check_size(
            "properties.desired",
            &self.desired.properties,
            MAX_SECTION_BYTES,
        )?;
        let mut notification = patch.clone();
        notification.insert("$version".into(), json!(version));
        Ok(Value::Object(notification))
    }

    /// Sets the configuration statuses; true when they changed.
    pub fn set_configurations(&mut self, statuses: BTreeMap<String, ConfigurationState>) -> bool {
        if self.configurations == statuses {
            return false;
        }
        self.configurations = statuses;
        self.version += 1;
        true
    }

    /// What a device's twin GET returns: `{"desired":{…,"$version"},"reported":{…,"$version"}}`.
    pub fn device_document(&self) -> Value {
        json!({"desired": self.desired.to_device_json(), "reported": self.reported.to_device_json()})
    }
}

/// Connection facts shown in twins and identities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    /// Connected now.
    pub connected: bool,
    /// When it last connected or disconnected.
    pub state_updated: Option<String>,
    /// Last message or operation.
    pub last_activity: Option<String>,
    /// C2D messages waiting.
    pub c2d_pending: u64,
}

impl Presence {
    /// `Connected` or `Disconnected`.
    pub fn state(&self) -> &'static str {
        if self.connected {
            "Connected"
        } else {
            "Disconnected"
        }
    }
}

/// The REST (and query) form of a twin, combining the twin with its identity and presence.
pub fn view(twin: &Twin, device: &Device, module: Option<&Module>, presence: &Presence) -> Value {
    let auth = module.map_or(&device.authentication, |m| &m.authentication);
    let auth_type = match auth.kind {
        AuthType::Sas => "sas",
        AuthType::SelfSigned => "selfSigned",
        AuthType::CertificateAuthority => "certificateAuthority",
        AuthType::None => "none",
    };
    let mut v = Map::new();
    v.insert("deviceId".into(), json!(twin.device_id));
    if let Some(m) = &twin.module_id {
        v.insert("moduleId".into(), json!(m));
    }
    v.insert("etag".into(), json!(twin.etag()));
    v.insert("deviceEtag".into(), json!(device.etag));
    v.insert("version".into(), json!(twin.version));
    v.insert("status".into(), json!(device.status));
    v.insert("statusReason".into(), json!(device.status_reason));
    v.insert("statusUpdateTime".into(), json!(device.status_updated_time));
    v.insert("connectionState".into(), json!(presence.state()));
    v.insert(
        "lastActivityTime".into(),
        json!(
            presence
                .last_activity
                .as_deref()
                .unwrap_or(crate::time::NEVER)
        ),
    );
    v.insert(
        "cloudToDeviceMessageCount".into(),
        json!(presence.c2d_pending),
    );
    v.insert("authenticationType".into(), json!(auth_type));
    v.insert("x509Thumbprint".into(), json!(auth.x509_thumbprint));
    v.insert("modelId".into(), json!(""));
    if module.is_none() {
        v.insert("capabilities".into(), json!(device.capabilities));
        v.insert("deviceScope".into(), json!(device.device_scope));
        v.insert("parentScopes".into(), json!(device.parent_scopes));
    }
    v.insert("tags".into(), Value::Object(twin.tags.clone()));
    v.insert(
        "properties".into(),
        json!({"desired": twin.desired.to_json(), "reported": twin.reported.to_json()}),
    );
    if !twin.configurations.is_empty() {
        v.insert("configurations".into(), json!(twin.configurations));
    }
    Value::Object(v)
}

fn stamp(now: &str, version: Option<u64>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("$lastUpdated".into(), json!(now));
    if let Some(v) = version {
        m.insert("$lastUpdatedVersion".into(), json!(v));
    }
    m
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_nulls_map(m)),
        other => other.clone(),
    }
}

fn strip_nulls_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), strip_nulls(v)))
        .collect()
}

/// Drops `$version`/`$metadata` that clients echo back from a twin they read.
fn strip_system_keys(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| k.as_str() != "$version" && k.as_str() != "$metadata")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The merge-patch that turns `old` into `new` (neither holds nulls).
pub fn diff(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for k in old.keys() {
        if !new.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
        }
    }
    for (k, nv) in new {
        match (old.get(k), nv) {
            (Some(ov), nv) if ov == nv => {}
            (Some(Value::Object(o)), Value::Object(n)) => {
                patch.insert(k.clone(), Value::Object(diff(o, n)));
            }
            _ => {
                patch.insert(k.clone(), nv.clone());
            }
        }
    }
    patch
}

fn check_size(
    section: &'static str,
    m: &Map<String, Value>,
    limit: usize,
) -> Result<(), TwinError> {
    let size = serde_json::to_vec(m).map_or(usize::MAX, |b| b.len());
    if size > limit {
        return Err(TwinError::TooLarge {
            section,
            size,
            limit,
        });
    }
    Ok(())
}

/// Checks keys, depth, integers and strings of a patch; errors name the JSON path.
pub fn validate_patch(root: &str, patch: &Map<String, Value>) -> Result<(), TwinError> {
    validate_object(root, patch, 1)
}

fn validate_object(path: &str, obj: &Map<String, Value>, depth: usize) -> Result<(), TwinError> {
    if depth > MAX_DEPTH {
        return Err(TwinError::Invalid {
            path: path.to_owned(),
            reason: format!("nesting is deeper than {MAX_DEPTH} levels"),
        });
    }
    for (k, v) in obj {
        let child = format!("{path}.{k}");
        if let Some(reason) = key_problem(k) {
            return Err(TwinError::Invalid {
                path: child,
                reason: reason.into(),
            });
        }
        validate_value(&child, v, depth)?;
    }
    Ok(())
}

fn validate_value(path: &str, v: &Value, depth: usize) -> Result<(), TwinError> {
    let bad = |reason: String| {
        Err(TwinError::Invalid {
            path: path.to_owned(),
            reason,
        })
    };
    match v {
        Value::Object(m) => validate_object(path, m, depth + 1),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                validate_value(&format!("{path}[{i}]"), item, depth + 1)?;
            }
            Ok(())
        }
        Value::String(s) if s.len() > MAX_STRING_BYTES => bad(format!(
            "string is {} bytes, more than {MAX_STRING_BYTES}",
            s.len()
        )),
        Value::Number(n) => {
            let too_big = n
                .as_i64()
                .map(|i| i.unsigned_abs() > MAX_INTEGER.unsigned_abs())
                .or_else(|| n.as_u64().map(|u| u > MAX_INTEGER.unsigned_abs()))
                .unwrap_or(false);
            if too_big {
                bad(format!("integer {n} is outside ±{MAX_INTEGER}"))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

fn key_problem(k: &str) -> Option<&'static str> {
    if k.is_empty() {
        Some("empty keys are not allowed")
    } else if k.len() > MAX_KEY_BYTES {
        Some("key is longer than 1 KB")
    } else if k.contains(['.', '$', ' ']) {
        Some("keys may not contain '.', '$' or spaces")
    } else if k.chars().any(char::is_control) {
        Some("keys may not contain control characters")
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
