//! Deciding, without calling the API server, whether an object needs a server-side apply.
//!
//! An apply is needed when the object is missing, when the desired object changed since the last
//! apply (its hash, kept in an annotation, differs: this catches fields we stopped setting, which
//! server-side apply then removes), or when a field we set was edited by someone else (drift: every
//! desired field must be present in the live object with the same value). Fields others added are
//! theirs and are left alone, as server-side apply does. Zero values we send (`false`, `""`, `[]`)
//! may be absent from the live object, since the API server omits them, and quantities compare by
//! amount (`1024Mi` = `1Gi`), since the API server rewrites them.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::labels::APPLIED_HASH;
use crate::quantity;

/// `object` as JSON with [`APPLIED_HASH`] set to the hash of the rest of it.
pub fn with_applied_hash<T: Serialize>(object: &T) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(object)?;
    let digest = Sha256::digest(value.to_string().as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(map) = annotations.as_object_mut() {
            map.insert(APPLIED_HASH.to_string(), Value::String(hash));
        }
    }
    Ok(value)
}

/// Whether `desired` (from [`with_applied_hash`]) must be applied over `live`.
pub fn needs_apply(desired: &Value, live: Option<&Value>) -> bool {
    let Some(live) = live else {
        return true;
    };
    let hash = |v: &Value| {
        v.pointer(&format!(
            "/metadata/annotations/{}",
            APPLIED_HASH.replace('/', "~1")
        ))
        .cloned()
    };
    if hash(desired) != hash(live) {
        return true;
    }
    let mut desired = desired.clone();
    if let Some(map) = desired.as_object_mut() {
        map.remove("status");
    }
    !is_subset(&desired, live)
}

/// Whether every field of `desired` has the same value in `live`.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(key, value)| match l.get(key) {
            Some(live_value) => is_subset(value, live_value),
            None => is_zero(value),
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(a, b)| is_subset(a, b))
        }
        (Value::String(d), Value::String(l)) => {
            d == l || (quantity::parse(d).is_some() && quantity::same(d, l))
        }
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (d, Value::Null) => is_zero(d),
        (d, l) => d == l,
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_added_by_the_server_are_not_drift() {
        let desired = json!({"spec": {"replicas": 1, "template": {"containers": [{"name": "a", "image": "x"}]}}});
        let live = json!({"spec": {"replicas": 1, "progressDeadlineSeconds": 600,
            "template": {"containers": [{"name": "a", "image": "x", "terminationMessagePath": "/dev/termination-log"}]}}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn edited_or_removed_managed_fields_are_drift() {
        let desired = json!({"spec": {"replicas": 1, "ports": [{"port": 80}]}});
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 2, "ports": [{"port": 80}]}})
        ));
        assert!(!is_subset(&desired, &json!({"spec": {"replicas": 1}})));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 1, "ports": [{"port": 80}, {"port": 81}]}})
        ));
    }

    #[test]
    fn zero_values_match_omitted_fields_and_quantities_match_by_amount() {
        assert!(is_subset(
            &json!({"readOnly": false, "value": "", "x": {}}),
            &json!({})
        ));
        assert!(!is_subset(&json!({"readOnly": true}), &json!({})));
        assert!(is_subset(
            &json!({"memory": "1024Mi"}),
            &json!({"memory": "1Gi"})
        ));
        assert!(!is_subset(
            &json!({"image": "a:1"}),
            &json!({"image": "a:2"})
        ));
    }

    #[test]
    fn a_changed_hash_forces_an_apply_even_when_fields_were_only_removed() {
        let v1 =
            with_applied_hash(&json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}}))
                .unwrap();
        let v2 =
            with_applied_hash(&json!({"metadata": {"name": "a", "labels": {"x": "1"}}})).unwrap();
        assert!(is_subset(
            &v2["metadata"]["labels"],
            &v1["metadata"]["labels"]
        ));
        assert!(needs_apply(&v2, Some(&v1)));
        assert!(!needs_apply(&v1, Some(&v1)));
        assert!(needs_apply(&v1, None));
    }
}
