use serde_json::json;

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("fixture is an object"),
    }
}

fn base_content(image: &str) -> Value {
    json!({
        "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5"}}},
            "modules": {
            "sensor": {"type": "docker", "status": "running", "settings": {"image": image}}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {"up": "FROM /messages/* INTO $upstream"},
                     "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
        "sensor": {"properties.desired": {"SendData": true}}
    })
}

fn mk_config(id: &str, cond: &str, priority: i64, content: Value, now: &str) -> Configuration {
    let req = ConfigurationRequest {
        content: Some(ConfigurationContent {
            modules_content: Some(obj(content)),
            ..Default::default()
        }),
        target_condition: Some(cond.into()),
        priority: Some(priority),
        ..Default::default()
    };
    Configuration::apply_request(id, req, None, &IfMatch::Absent, now).unwrap()
}

fn edge_device(env: &str) -> Value {
    json!({"deviceId": "e1", "capabilities": {"iotEdge": true}, "tags": {"env": env}})
}

#[test]
fn highest_priority_base_wins_and_others_are_only_targeted() {
    let low = mk_config(
        "low",
        "tags.env='test'",
        1,
        base_content("img:1"),
        "2020-01-01T00:00:00.000Z",
    );
    let high = mk_config(
        "high",
        "tags.env='test'",
        5,
        base_content("img:2"),
        "2019-01-01T00:00:00.000Z",
    );
    let other = mk_config(
        "other",
        "tags.env='prod'",
        9,
        base_content("img:3"),
        "2021-01-01T00:00:00.000Z",
    );
    let a = assign_edge(&edge_device("test"), &[low, high, other]);
    assert_eq!(
        a.modules["$edgeAgent"]["modules"]["sensor"]["settings"]["image"],
        json!("img:2")
    );
    assert_eq!(a.statuses["high"].status, ConfigurationStatus::Applied);
    assert_eq!(a.statuses["low"].status, ConfigurationStatus::Targeted);
    assert!(!a.statuses.contains_key("other"));
}

#[test]
fn equal_priority_goes_to_the_newest() {
    let old = mk_config(
        "old",
        "*",
        1,
        base_content("img:old"),
        "2020-01-01T00:00:00.000Z",
    );
    let new = mk_config(
        "new",
        "*",
        1,
        base_content("img:new"),
        "2021-01-01T00:00:00.000Z",
    );
    let a = assign_edge(&edge_device("x"), &[new, old]);
    assert_eq!(
        a.modules["$edgeAgent"]["modules"]["sensor"]["settings"]["image"],
        json!("img:new")
    );
}

#[test]
fn layered_deployments_merge_paths_on_top_in_priority_order() {
    let base = mk_config("base", "*", 1, base_content("img:1"), "t1");
    let layer_a = mk_config(
        "layer-a",
        "tags.env='test'",
        10,
        json!({
            "$edgeAgent": {"properties.desired.modules.extra": {"type": "docker", "settings": {"image": "extra:1"}}},
            "$edgeHub": {"properties.desired.routes.extra": "FROM /messages/modules/extra/* INTO $upstream"},
            "extra": {"properties.desired": {"a": 1}}
        }),
        "t2",
    );
    let layer_b = mk_config(
        "layer-b",
        "tags.env='test'",
        20,
        json!({"$edgeAgent": {"properties.desired.modules.extra": {"type": "docker", "settings": {"image": "extra:2"}}},
               "sensor": {"properties.desired.layered": {"x": 1}}}),
        "t3",
    );
    assert!(layer_a.is_layered() && !base.is_layered());
    let a = assign_edge(&edge_device("test"), &[layer_b, base, layer_a]);
    let agent = &a.modules["$edgeAgent"];
    assert_eq!(
        agent["modules"]["sensor"]["settings"]["image"],
        json!("img:1")
    );
    assert_eq!(
        agent["modules"]["extra"]["settings"]["image"],
        json!("extra:2"),
        "higher layer wins"
    );
    assert_eq!(
        a.modules["$edgeHub"]["routes"]["extra"],
        json!("FROM /messages/modules/extra/* INTO $upstream")
    );
    assert_eq!(
        a.modules["$edgeHub"]["routes"]["up"],
        json!("FROM /messages/* INTO $upstream")
    );
    assert_eq!(
        a.modules["sensor"],
        obj(json!({"SendData": true, "layered": {"x": 1}}))
    );
    assert!(
        a.statuses
            .values()
            .all(|s| s.status == ConfigurationStatus::Applied)
    );
}

#[test]
fn layers_below_the_base_priority_are_not_applied() {
    let base = mk_config("base", "*", 10, base_content("img:1"), "t1");
    let layer = mk_config(
        "layer",
        "*",
        5,
        json!({"$edgeAgent": {"properties.desired.modules.extra": {"type": "docker"}}}),
        "t2",
    );
    let a = assign_edge(&edge_device("x"), &[base, layer]);
    assert!(a.modules["$edgeAgent"]["modules"].get("extra").is_none());
    assert_eq!(a.statuses["layer"].status, ConfigurationStatus::Targeted);
}

#[test]
fn non_edge_devices_are_never_targeted_by_edge_deployments() {
    let base = mk_config("base", "*", 1, base_content("img:1"), "t1");
    let a = assign_edge(
        &json!({"deviceId": "d", "capabilities": {"iotEdge": false}}),
        &[base],
    );
    assert!(a.modules.is_empty() && a.statuses.is_empty());
}

#[test]
fn invalid_content_names_the_path() {
    let req = |content: Value| ConfigurationRequest {
        content: Some(ConfigurationContent {
            modules_content: Some(obj(content)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = Configuration::apply_request(
        "d",
        req(json!({"$edgeAgent": {"properties.desired": {}}})),
        None,
        &IfMatch::Absent,
        "t",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration at content.modulesContent.$edgeHub: a deployment needs $edgeAgent and $edgeHub (or use properties.desired.<path> keys for a layered deployment)"
    );
    let err = Configuration::apply_request(
        "d",
        req(json!({"m": {"desired": {}}})),
        None,
        &IfMatch::Absent,
        "t",
    )
    .unwrap_err();
    assert!(err.to_string().contains("content.modulesContent.m.desired"));
    let err = Configuration::apply_request(
        "d",
        req(json!({"$edgeAgent": {"properties.desired.runtime.type": "docker"}})),
        None,
        &IfMatch::Absent,
        "t",
    )
    .unwrap_err();
    assert!(err.to_string().contains("runtime"));
    let mut bad = req(base_content("i"));
    bad.target_condition = Some("tags.env = ".into());
    assert!(matches!(
        Configuration::apply_request("d", bad, None, &IfMatch::Absent, "t"),
        Err(ConfigurationError::TargetCondition(_))
    ));
    assert!(matches!(
        Configuration::apply_request("Upper", req(base_content("i")), None, &IfMatch::Absent, "t"),
        Err(ConfigurationError::InvalidId { .. })
    ));
}

#[test]
fn a_manifest_the_agent_would_reject_is_refused_with_its_json_path() {
    let mut content = base_content("img:1");
    content["$edgeAgent"]["properties.desired"]["modules"]["sensor"]["status"] = json!("sleeping");
    let req = ConfigurationRequest {
        content: Some(ConfigurationContent {
            modules_content: Some(obj(content)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = Configuration::apply_request("d", req, None, &IfMatch::Absent, "t").unwrap_err();
    assert!(
        matches!(&err, ConfigurationError::Manifest(m) if m.contains("sensor") && m.contains("status")),
        "{err}"
    );
}

#[test]
fn updates_keep_content_and_need_if_match() {
    let c = mk_config("dep", "*", 1, base_content("img:1"), "t1");
    let update = ConfigurationRequest {
        priority: Some(7),
        ..Default::default()
    };
    assert!(matches!(
        Configuration::apply_request("dep", update.clone(), Some(&c), &IfMatch::Absent, "t2"),
        Err(ConfigurationError::AlreadyExists(_))
    ));
    let u = Configuration::apply_request("dep", update, Some(&c), &IfMatch::Any, "t2").unwrap();
    assert_eq!(u.priority, 7);
    assert_eq!(u.content, c.content);
    assert_eq!(u.etag, "Mg==");
    assert_eq!(u.created_time_utc, "t1");
}

#[test]
fn system_metrics_use_the_documented_queries() {
    let c = mk_config("dep1", "tags.env='test'", 1, base_content("i"), "t");
    assert_eq!(
        c.system_metrics.queries["targetedCount"],
        "select deviceId from devices where capabilities.iotEdge = true and (tags.env='test')"
    );
    for q in c.system_metrics.queries.values() {
        crate::query::parse_query(q).unwrap();
    }
}

#[test]
fn device_configurations_merge_paths_into_desired() {
    let req = ConfigurationRequest {
        content: Some(ConfigurationContent {
            device_content: Some(obj(json!({"properties.desired.fw.version": "2.0"}))),
            ..Default::default()
        }),
        target_condition: Some("tags.env='test'".into()),
        ..Default::default()
    };
    let c = Configuration::apply_request("fw", req, None, &IfMatch::Absent, "t").unwrap();
    let a = assign_device(&json!({"deviceId": "d", "tags": {"env": "test"}}), &[c]);
    assert_eq!(
        a.desired_patch,
        Some(obj(json!({"fw": {"version": "2.0"}})))
    );
    assert_eq!(a.statuses["fw"].status, ConfigurationStatus::Applied);
}
