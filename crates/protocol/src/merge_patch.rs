//! JSON merge patch (RFC 7396) as twins use it, with IoT Hub's validation rules (reference
//! iot-hub-protocols §3.3, iotedge-runtime §3.9): names ≤ 1 KiB without `.`, `$`, `#`, spaces or
//! control characters; depth ≤ 10; strings ≤ 4 KiB; integers within ±2^52; no `null` in arrays.

use crate::error::TwinError;
use serde_json::{Map, Value};

/// Maximum object nesting of a twin section.
pub const MAX_DEPTH: usize = 10;
/// Maximum property name length in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Maximum string value length in bytes.
pub const MAX_STRING_BYTES: usize = 4096;
/// Largest integer magnitude a twin may hold.
pub const MAX_SAFE_INTEGER: i64 = 4_503_599_627_370_495;

/// Recursively merges `patch` into `target`: objects merge, `null` deletes, anything else replaces.
pub fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(p) => {
                let entry = target
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(t) = entry {
                    merge(t, p);
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

/// [`merge`]s `patch` into `target` and keeps `metadata` (the `$metadata` mirror of `target`)
/// in step: every key the patch sets, and every object on its path, gets the `stamp` fields
/// (`$lastUpdated`, `$lastUpdatedVersion`), the top level too; deleted keys lose theirs.
pub fn merge_with_metadata(
    target: &mut Map<String, Value>,
    metadata: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    stamp: &Map<String, Value>,
) {
    merge(target, patch);
    touch_metadata(metadata, patch, stamp);
    metadata.extend(stamp.clone());
}

fn touch_metadata(
    meta: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    stamp: &Map<String, Value>,
) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                meta.remove(k);
            }
            Value::Object(child) => {
                let entry = meta
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(m) = entry {
                    touch_metadata(m, child, stamp);
                    m.extend(stamp.clone());
                }
            }
            _ => {
                meta.insert(k.clone(), Value::Object(stamp.clone()));
            }
        }
    }
}

/// Validates a patch (or a whole section) against the twin rules; `path` names the section.
pub fn validate(patch: &Map<String, Value>, path: &str) -> Result<(), TwinError> {
    validate_object(patch, path, 1)
}

fn validate_object(obj: &Map<String, Value>, path: &str, depth: usize) -> Result<(), TwinError> {
    if depth > MAX_DEPTH {
        return Err(TwinError::TooDeep {
            path: path.to_owned(),
            max: MAX_DEPTH,
        });
    }
    for (k, v) in obj {
        check_key(k, path)?;
        let child = format!("{path}.{k}");
        validate_value(v, &child, depth)?;
    }
    Ok(())
}

fn validate_value(v: &Value, path: &str, depth: usize) -> Result<(), TwinError> {
    match v {
        Value::Object(o) => validate_object(o, path, depth + 1),
        Value::String(s) if s.len() > MAX_STRING_BYTES => Err(TwinError::BadValue {
            path: path.to_owned(),
            reason: "strings may be at most 4096 bytes",
        }),
        Value::Number(n) if !number_in_range(n) => Err(TwinError::BadValue {
            path: path.to_owned(),
            reason: "integers must lie within ±4503599627370495",
        }),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                if item.is_null() {
                    return Err(TwinError::BadValue {
                        path: p,
                        reason: "arrays may not contain null",
                    });
                }
                validate_value(item, &p, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn number_in_range(n: &serde_json::Number) -> bool {
    if let Some(i) = n.as_i64() {
        return (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i);
    }
    // u64 beyond i64 is out of range; floats are fine.
    n.as_u64().is_none()
}

fn check_key(k: &str, path: &str) -> Result<(), TwinError> {
    let bad = |reason| TwinError::BadKey {
        path: path.to_owned(),
        key: k.chars().take(64).collect(),
        reason,
    };
    if k.is_empty() {
        return Err(bad("names must not be empty"));
    }
    if k.len() > MAX_KEY_BYTES {
        return Err(bad("names may be at most 1024 bytes"));
    }
    if k.contains(['.', '$', '#']) {
        return Err(bad("names may not contain '.', '$' or '#'"));
    }
    if k.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("names may not contain spaces or control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => Map::new(),
        }
    }

    #[test]
    fn merge_is_recursive_and_null_deletes() {
        let mut t = obj(json!({"a": {"b": 1, "c": 2}, "d": 3, "e": "x"}));
        merge(
            &mut t,
            &obj(json!({"a": {"b": null, "f": {"g": 1}}, "d": null, "e": {"h": true}})),
        );
        assert_eq!(
            Value::Object(t),
            json!({"a": {"c": 2, "f": {"g": 1}}, "e": {"h": true}})
        );
    }

    #[test]
    fn metadata_follows_the_merge_and_untouched_keys_keep_their_stamp() {
        let old = obj(json!({"$lastUpdated": "t1"}));
        let new = obj(json!({"$lastUpdated": "t2", "$lastUpdatedVersion": 3}));
        let mut props = obj(json!({"a": {"b": 1, "c": 2}, "d": 3}));
        let mut meta = obj(json!({
            "$lastUpdated": "t1",
            "a": {"$lastUpdated": "t1", "b": {"$lastUpdated": "t1"}, "c": {"$lastUpdated": "t1"}},
            "d": {"$lastUpdated": "t1"}
        }));
        let patch = obj(json!({"a": {"b": null, "e": {"f": 1, "g": null}}, "d": null, "h": 5}));
        merge_with_metadata(&mut props, &mut meta, &patch, &new);
        assert_eq!(
            Value::Object(props),
            json!({"a": {"c": 2, "e": {"f": 1}}, "h": 5})
        );
        let stamp = Value::Object(new.clone());
        let mut a = new.clone();
        a.insert("c".into(), Value::Object(old.clone()));
        let mut e = new.clone();
        e.insert("f".into(), stamp.clone());
        a.insert("e".into(), Value::Object(e));
        let mut want = new.clone();
        want.insert("a".into(), Value::Object(a));
        want.insert("h".into(), stamp);
        assert_eq!(meta, want);
    }

    #[test]
    fn validation_rejects_what_iot_hub_rejects() {
        let cases = [
            (json!({"a.b": 1}), "'.'"),
            (json!({"a": {"$x": 1}}), "'$'"),
            (json!({"a b": 1}), "spaces"),
            (json!({"a": "x".repeat(4097)}), "4096"),
            (json!({"a": 4_503_599_627_370_496_i64}), "±"),
            (json!({"a": [1, null]}), "null"),
            (json!({"": 1}), "empty"),
        ];
        for (patch, needle) in cases {
            let e = validate(&obj(patch.clone()), "properties.desired").unwrap_err();
            assert!(e.to_string().contains(needle), "{patch}: {e}");
        }
        let mut deep = json!(1);
        for _ in 0..11 {
            deep = json!({ "k": deep });
        }
        assert!(matches!(
            validate(&obj(deep), "p"),
            Err(TwinError::TooDeep { .. })
        ));
        assert!(validate(&obj(json!({"a": {"b": [1, 2.5, "s", {"c": false}]}, "n": -4_503_599_627_370_495_i64})), "p").is_ok());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            "[a-z]{0,5}".prop_map(Value::from)
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            proptest::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    proptest! {
        #[test]
        fn merging_a_patch_twice_is_idempotent(base in json_value(), patch in json_value()) {
            let (mut once, patch) = (obj(base), obj(patch));
            merge(&mut once, &patch);
            let mut twice = once.clone();
            merge(&mut twice, &patch);
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn merged_documents_never_contain_null_from_object_patches(base in json_value(), patch in json_value()) {
            fn strip(m: &mut Map<String, Value>) {
                m.retain(|_, v| !v.is_null());
                m.values_mut().for_each(|v| if let Value::Object(o) = v { strip(o) });
            }
            fn no_null(m: &Map<String, Value>) -> bool {
                m.values().all(|v| match v { Value::Null => false, Value::Object(o) => no_null(o), _ => true })
            }
            let mut doc = obj(base);
            strip(&mut doc);
            merge(&mut doc, &obj(patch));
            prop_assert!(no_null(&doc));
        }
    }
}
