//! Makes a kube-derive CRD acceptable to Kubernetes 1.20 (`reference/kube5-on-k8s-1.20.md` §2–3).
//!
//! 1.20 rejects `null` inside `enum` lists (which schemars emits for `Option<Enum>`) and turns `""`
//! inside a `default` into null, rejecting the CRD. Both are removed; the values still validate in
//! the controller.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// Strips `null` from every schema `enum` and drops `default`s that contain an empty string.
pub fn fix_crd_for_1_20(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let Ok(mut json) = serde_json::to_value(&crd) else {
        return crd;
    };
    if let Some(Value::Array(versions)) = json.pointer_mut("/spec/versions") {
        for version in versions {
            if let Some(schema) = version.get_mut("schema") {
                fix_schema(schema);
            }
        }
    }
    serde_json::from_value(json).unwrap_or(crd)
}

fn fix_schema(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if let Some(Value::Array(items)) = map.get_mut("enum") {
                items.retain(|item| !item.is_null());
            }
            if map.get("default").is_some_and(contains_empty_string) {
                map.remove("default");
            }
            for (key, value) in map.iter_mut() {
                // Values of these keywords are data, not schemas.
                if !matches!(key.as_str(), "default" | "example" | "enum") {
                    fix_schema(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(fix_schema),
        _ => {}
    }
}

fn contains_empty_string(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.iter().any(contains_empty_string),
        Value::Object(map) => map.values().any(contains_empty_string),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_is_removed_from_enums_and_empty_string_defaults_are_dropped() {
        let mut schema = json!({
            "properties": {
                "a": {"enum": ["x", null], "nullable": true},
                "b": {"type": "string", "default": ""},
                "c": {"type": "object", "default": {"k": ["", "v"]}},
                "d": {"type": "integer", "default": 3},
                "e": {"enum": [null], "default": {"enum": [null]}}
            }
        });
        fix_schema(&mut schema);
        assert_eq!(schema["properties"]["a"]["enum"], json!(["x"]));
        assert!(schema["properties"]["b"].get("default").is_none());
        assert!(schema["properties"]["c"].get("default").is_none());
        assert_eq!(schema["properties"]["d"]["default"], 3);
        // Data under `default` is left as it is.
        assert_eq!(
            schema["properties"]["e"]["default"],
            json!({"enum": [null]})
        );
    }
}
