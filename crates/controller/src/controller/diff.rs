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

use crate::labels::{APPLIED_HASH, TEMPLATE_HASH};
use crate::quantity;

/// `object` as JSON with [`APPLIED_HASH`] set to the hash of the rest of it.
pub fn with_applied_hash<T: Serialize>(object: &T) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(object)?;
    let hash = short_hash(&value);
    set_annotation(&mut value, APPLIED_HASH, hash);
    Ok(value)
}

/// Sets [`TEMPLATE_HASH`] on a Job body (from [`with_applied_hash`]) to the hash of its pod
/// template, which Kubernetes does not let change.
pub fn with_template_hash(body: &mut Value) {
    let hash = short_hash(template(body));
    set_annotation(body, TEMPLATE_HASH, hash);
}

/// Whether the live Job runs another pod template than `desired` (from [`with_template_hash`]):
/// it must then be replaced, since an apply would be refused. A template hash catches removed
/// fields too; Jobs from before the hash fall back to comparing the fields we set.
pub fn template_changed(desired: &Value, live: &Value) -> bool {
    match (
        annotation(desired, TEMPLATE_HASH),
        annotation(live, TEMPLATE_HASH),
    ) {
        (Some(want), Some(have)) => want != have,
        _ => !is_subset(template(desired), template(live)),
    }
}

fn template(body: &Value) -> &Value {
    body.pointer("/spec/template").unwrap_or(&Value::Null)
}

fn short_hash(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn set_annotation(value: &mut Value, key: &str, text: String) {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(map) = annotations.as_object_mut() {
            map.insert(key.to_string(), Value::String(text));
        }
    }
}

fn annotation<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.pointer(&format!("/metadata/annotations/{}", key.replace('/', "~1")))
}

/// Whether `desired` (from [`with_applied_hash`]) must be applied over `live`.
pub fn needs_apply(desired: &Value, live: Option<&Value>) -> bool {
    let Some(live) = live else {
        return true;
    };
    if annotation(desired, APPLIED_HASH) != annotation(live, APPLIED_HASH) {
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

    fn job(pod_labels: Value) -> Value {
        let mut body = with_applied_hash(&json!({
            "metadata": {"name": "batch", "annotations": {"a": "1"}},
            "spec": {"backoffLimit": 6, "template": {"metadata": {"labels": pod_labels},
                "spec": {"containers": [{"name": "batch", "image": "batch:1"}]}}}
        }))
        .unwrap();
        with_template_hash(&mut body);
        body
    }

    #[test]
    fn a_job_template_that_only_lost_a_field_counts_as_changed() {
        let live = job(json!({"a": "1", "b": "2"}));
        let desired = job(json!({"a": "1"}));
        // The fields we set are all still there: only the hash sees the removal.
        assert!(is_subset(
            desired.pointer("/spec/template").unwrap(),
            live.pointer("/spec/template").unwrap()
        ));
        assert!(template_changed(&desired, &live));
        assert!(!template_changed(&live, &live));
    }

    #[test]
    fn a_job_change_outside_its_template_is_not_a_template_change() {
        let live = job(json!({}));
        let mut desired = live.clone();
        desired["spec"]["backoffLimit"] = json!(2);
        desired["metadata"]["annotations"]["a"] = json!("2");
        assert!(!template_changed(&desired, &live));
    }

    #[test]
    fn a_job_from_before_the_template_hash_is_compared_by_its_fields() {
        let desired = job(json!({"a": "1"}));
        let mut legacy = desired.clone();
        legacy["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(TEMPLATE_HASH);
        assert!(!template_changed(&desired, &legacy));
        legacy["spec"]["template"]["spec"]["containers"][0]["image"] = json!("batch:0");
        assert!(template_changed(&desired, &legacy));
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
