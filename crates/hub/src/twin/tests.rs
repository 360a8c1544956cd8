use proptest::prelude::*;
use serde_json::json;

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("test fixture is an object"),
    }
}

fn desired_patch(v: Value) -> ServicePatch {
    ServicePatch {
        tags: None,
        properties: Some(ServicePatchProperties {
            desired: Some(obj(v)),
        }),
    }
}

#[test]
fn desired_patch_bumps_versions_and_returns_the_notification() {
    let mut t = Twin::new("d", None, "t0");
    let change = t
        .patch(&desired_patch(json!({"a": {"b": 1}})), "t1")
        .unwrap();
    assert_eq!(t.desired.version, 2);
    assert_eq!(t.version, 2);
    assert_eq!(t.etag(), "AAAAAAAAAAI=");
    assert_eq!(
        change.desired_patch,
        Some(json!({"a": {"b": 1}, "$version": 2}))
    );
    assert_eq!(
        t.desired.metadata["a"]["b"]["$lastUpdatedVersion"],
        json!(2)
    );
    assert_eq!(t.desired.metadata["$lastUpdated"], json!("t1"));
}

#[test]
fn null_deletes_a_key_and_its_metadata() {
    let mut t = Twin::new("d", None, "t0");
    t.patch(&desired_patch(json!({"a": {"b": 1, "c": 2}})), "t1")
        .unwrap();
    t.patch(&desired_patch(json!({"a": {"b": null}})), "t2")
        .unwrap();
    assert_eq!(
        Value::Object(t.desired.properties.clone()),
        json!({"a": {"c": 2}})
    );
    assert!(t.desired.metadata["a"].get("b").is_none());
    assert_eq!(t.desired.metadata["a"]["$lastUpdated"], json!("t2"));
    assert_eq!(t.desired.metadata["a"]["c"]["$lastUpdated"], json!("t1"));
}

#[test]
fn tags_only_patch_does_not_touch_desired() {
    let mut t = Twin::new("d", None, "t0");
    let patch = ServicePatch {
        tags: Some(obj(json!({"env": "test"}))),
        properties: None,
    };
    let change = t.patch(&patch, "t1").unwrap();
    assert!(change.tags_changed);
    assert_eq!(change.desired_patch, None);
    assert_eq!(t.desired.version, 1);
    assert_eq!(t.tags["env"], json!("test"));
}

#[test]
fn reported_patch_returns_the_new_reported_version() {
    let mut t = Twin::new("d", None, "t0");
    assert_eq!(t.patch_reported(&json!({"battery": 55}), "t1").unwrap(), 2);
    assert_eq!(
        t.patch_reported(&json!({"battery": null}), "t2").unwrap(),
        3
    );
    assert!(t.reported.properties.is_empty());
    assert_eq!(
        t.device_document(),
        json!({"desired": {"$version": 1}, "reported": {"$version": 3}})
    );
}

#[test]
fn keys_with_dots_dollars_or_spaces_are_rejected_with_their_path() {
    let mut t = Twin::new("d", None, "t0");
    let err = t
        .patch(&desired_patch(json!({"a": {"b.c": 1}})), "t1")
        .unwrap_err();
    assert_eq!(
        err,
        TwinError::Invalid {
            path: "properties.desired.a.b.c".into(),
            reason: "keys may not contain '.', '$' or spaces".into()
        }
    );
    assert_eq!(t.version, 1, "a refused patch changes nothing");
}

#[test]
fn echoed_version_and_metadata_are_ignored() {
    let mut t = Twin::new("d", None, "t0");
    t.patch(
        &desired_patch(json!({"x": 1, "$version": 9, "$metadata": {}})),
        "t1",
    )
    .unwrap();
    assert_eq!(Value::Object(t.desired.properties.clone()), json!({"x": 1}));
}

#[test]
fn too_deep_too_big_and_huge_integers_are_refused() {
    let mut deep = json!(1);
    for _ in 0..11 {
        deep = json!({ "k": deep });
    }
    let mut t = Twin::new("d", None, "t0");
    assert!(matches!(
        t.patch(&desired_patch(deep), "t"),
        Err(TwinError::Invalid { .. })
    ));
    let big = "x".repeat(4000);
    let many: Map<String, Value> = (0..9).map(|i| (format!("k{i}"), json!(big))).collect();
    assert!(matches!(
        t.patch(&desired_patch(Value::Object(many)), "t"),
        Err(TwinError::TooLarge {
            section: "properties.desired",
            ..
        })
    ));
    assert!(
        t.patch(&desired_patch(json!({"n": 4_503_599_627_370_496_i64})), "t")
            .is_err()
    );
    assert!(
        t.patch(&desired_patch(json!({"n": 4_503_599_627_370_495_i64})), "t")
            .is_ok()
    );
}

#[test]
fn set_desired_sends_only_the_difference_and_skips_no_ops() {
    let mut t = Twin::new("d", None, "t0");
    t.set_desired(&obj(json!({"a": 1, "b": {"c": 1, "d": 2}})), "t1")
        .unwrap();
    let n = t
        .set_desired(&obj(json!({"b": {"c": 1, "d": 3}})), "t2")
        .unwrap();
    assert_eq!(n, Some(json!({"a": null, "b": {"d": 3}, "$version": 3})));
    assert_eq!(
        t.set_desired(&obj(json!({"b": {"c": 1, "d": 3}})), "t3")
            .unwrap(),
        None
    );
    assert_eq!(t.desired.version, 3);
}

#[test]
fn stale_if_match_is_refused() {
    let t = Twin::new("d", None, "t0");
    assert!(
        t.check_if_match(&IfMatch::Etag("AAAAAAAAAAE=".into()))
            .is_ok()
    );
    assert!(
        t.check_if_match(&IfMatch::Etag("AAAAAAAAAAI=".into()))
            .is_err()
    );
    assert!(t.check_if_match(&IfMatch::Any).is_ok());
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop::collection::btree_map("[a-c]", inner, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-d]", json_value(), 0..5).prop_map(|m| m.into_iter().collect())
}

proptest! {
    #[test]
    fn applying_the_diff_of_old_and_new_gives_new(old in json_object(), new in json_object()) {
        let mut merged = old.clone();
        merge(&mut merged, &diff(&old, &new));
        prop_assert_eq!(merged, new);
    }

    #[test]
    fn metadata_mirrors_every_object_key(a in json_object(), b in json_object()) {
        let mut t = Twin::new("d", None, "t0");
        t.set_desired(&a, "t1").unwrap();
        t.set_desired(&b, "t2").unwrap();
        fn mirrored(p: &Map<String, Value>, m: &Map<String, Value>) -> bool {
            p.iter().all(|(k, v)| match (v, m.get(k)) {
                (Value::Object(pv), Some(Value::Object(mv))) => mirrored(pv, mv),
                (_, Some(Value::Object(_))) => true,
                _ => false,
            }) && m.keys().filter(|k| !k.starts_with('$')).all(|k| p.contains_key(k))
        }
        prop_assert!(mirrored(&t.desired.properties, &t.desired.metadata));
        prop_assert_eq!(&t.desired.properties, &b);
    }
}
