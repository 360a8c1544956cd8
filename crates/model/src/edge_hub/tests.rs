//! Tests for `$edgeHub` desired properties: schema dispatch, routes, store-and-forward.

use serde_json::json;

use super::*;
use crate::fixtures::{errors, hub_desired, warnings, with, without};

fn hub(value: &Value) -> EdgeHubDesired {
    let checked = EdgeHubDesired::check_value(value);
    assert_eq!(errors(&checked), Vec::<String>::new());
    checked.result.unwrap()
}

fn hub_errors(value: &Value) -> Vec<String> {
    errors(&EdgeHubDesired::check_value(value))
}

const UP: &str = "FROM /messages/* INTO $upstream";

#[test]
fn a_string_route_has_default_priority_and_ttl() {
    let h = hub(&hub_desired());
    assert_eq!(h.routes["up"], Route::new(UP));
    assert_eq!(h.routes["up"].priority, 2_000_000_000);
    assert_eq!(h.routes["up"].time_to_live_secs, 0);
    assert_eq!(
        h.store_and_forward,
        Some(StoreAndForward {
            time_to_live_secs: 7200,
            max_size_bytes: None
        })
    );
}

#[test]
fn object_routes_carry_priority_and_ttl() {
    let doc = with(
        hub_desired(),
        "/routes",
        json!({
            "a": {"route": UP, "priority": 0, "timeToLiveSecs": 86400},
            "b": {"route": UP},
            "c": {"route": UP, "priority": 9},
            "d": {"route": UP, "priority": 2_000_000_000},
        }),
    );
    let h = hub(&doc);
    assert_eq!(
        (h.routes["a"].priority, h.routes["a"].time_to_live_secs),
        (0, 86400)
    );
    assert_eq!(h.routes["b"], Route::new(UP));
    assert_eq!(h.routes["c"].priority, 9);
    assert_eq!(h.routes["d"].priority, Route::DEFAULT_PRIORITY);
}

#[test]
fn priorities_outside_0_to_9_are_rejected() {
    for (p, shown) in [(json!(10), "10"), (json!(-1), "-1"), (json!(1.5), "1.5")] {
        let doc = with(
            hub_desired(),
            "/routes/up",
            json!({"route": UP, "priority": p}),
        );
        assert_eq!(
            hub_errors(&doc),
            [format!(
                "$.routes.up.priority: invalid value {shown}: expected an integer priority from 0 (highest) to 9"
            )]
        );
    }
    let doc = with(
        hub_desired(),
        "/routes/up",
        json!({"route": UP, "priority": "high"}),
    );
    assert_eq!(
        hub_errors(&doc),
        [
            "$.routes.up.priority: expected an integer priority from 0 (highest) to 9, found string \"high\""
        ]
    );
}

#[test]
fn route_ttl_must_be_a_u32() {
    let doc = with(
        hub_desired(),
        "/routes/up",
        json!({"route": UP, "timeToLiveSecs": -5}),
    );
    assert_eq!(
        hub_errors(&doc),
        ["$.routes.up.timeToLiveSecs: invalid value -5: expected an integer from 0 to 4294967295"]
    );
}

#[test]
fn a_route_object_needs_a_non_blank_route() {
    assert_eq!(
        hub_errors(&with(hub_desired(), "/routes/up", json!({"priority": 1}))),
        ["$.routes.up.route: required field is missing"]
    );
    assert_eq!(
        hub_errors(&with(hub_desired(), "/routes/up", json!({"route": "  "}))),
        ["$.routes.up.route: must not be empty or whitespace"]
    );
}

#[test]
fn blank_string_routes_are_errors_from_schema_1_1() {
    assert_eq!(
        hub_errors(&with(hub_desired(), "/routes/up", json!(""))),
        ["$.routes.up: must not be empty or whitespace"]
    );
}

#[test]
fn route_values_must_be_strings_or_objects() {
    assert_eq!(
        hub_errors(&with(hub_desired(), "/routes/up", json!(["FROM"]))),
        [
            "$.routes.up: expected a route string or an object {route, priority, timeToLiveSecs}, found an array"
        ]
    );
}

#[test]
fn route_names_must_be_valid_twin_keys() {
    assert_eq!(
        hub_errors(&with(hub_desired(), "/routes/to cloud", json!(UP))),
        [
            "$.routes['to cloud']: invalid name \"to cloud\": names must not be empty or contain '.', '$', '#' or a space"
        ]
    );
}

#[test]
fn every_bad_route_is_reported_and_the_whole_config_is_rejected() {
    let doc = with(
        hub_desired(),
        "/routes",
        json!({"good": UP, "r1": {"route": UP, "priority": 11}, "r2": 5}),
    );
    let errs = hub_errors(&doc);
    assert_eq!(errs.len(), 2);
    assert!(errs[0].starts_with("$.routes.r1.priority: "));
    assert!(errs[1].starts_with("$.routes.r2: "));
}

#[test]
fn schema_1_0_routes_are_strings_and_empty_ones_are_skipped() {
    let doc = json!({
        "schemaVersion": "1.0",
        "routes": {"up": UP, "empty": "", "none": null}
    });
    let checked = EdgeHubDesired::check_value(&doc);
    let h = checked.result.as_ref().unwrap();
    assert_eq!(h.routes.keys().collect::<Vec<_>>(), ["up"]);
    assert_eq!(h.store_and_forward, None);
    assert_eq!(
        warnings(&checked),
        [
            "$.routes.empty: empty route skipped (schema 1.0 ignores empty routes)",
            "$.routes.none: empty route skipped (schema 1.0 ignores empty routes)"
        ]
    );
}

#[test]
fn schema_1_0_needs_neither_routes_nor_store_and_forward() {
    let h = hub(&json!({"schemaVersion": "1.0"}));
    assert!(h.routes.is_empty());
    assert_eq!(h.store_and_forward, None);
}

#[test]
fn schema_1_0_rejects_route_objects() {
    let doc = json!({"schemaVersion": "1.0", "routes": {"up": {"route": UP, "priority": 1}}});
    assert_eq!(
        hub_errors(&doc),
        [
            "$.routes.up: schema 1.0 routes are plain strings; priority and timeToLiveSecs need schemaVersion 1.1 or later"
        ]
    );
}

#[test]
fn schema_1_1_and_later_require_routes_and_store_and_forward() {
    for v in ["1.1", "1.2", "1.3"] {
        let doc = json!({ "schemaVersion": v });
        assert_eq!(
            hub_errors(&doc),
            [
                "$.routes: required field is missing",
                "$.storeAndForwardConfiguration: required field is missing"
            ],
            "{v}"
        );
    }
}

#[test]
fn schema_versions_1_0_to_1_3_are_accepted_and_others_are_412() {
    for v in ["1.0", "1.1", "1.1.0", "1.2", "1.3", "1.2.5"] {
        let h = hub(&with(hub_desired(), "/schemaVersion", json!(v)));
        assert_eq!(h.schema_version.to_string(), v);
    }
    for v in ["1.4", "2.0", "x", "1"] {
        let errs = EdgeHubDesired::from_value(&with(hub_desired(), "/schemaVersion", json!(v)))
            .unwrap_err();
        assert_eq!(errs.status_code(), 412, "{v}");
        assert_eq!(
            errs.to_string(),
            format!(
                "$.schemaVersion: unsupported schema version {v:?}: supported are 1.0, 1.1, 1.2 and 1.3"
            )
        );
    }
    let errs = EdgeHubDesired::from_value(&without(hub_desired(), "/schemaVersion")).unwrap_err();
    assert_eq!(
        errs.to_string(),
        "$.schemaVersion: required field is missing"
    );
}

#[test]
fn store_and_forward_reads_ttl_and_store_limits() {
    let doc = with(
        hub_desired(),
        "/storeAndForwardConfiguration",
        json!({"timeToLiveSecs": -1, "storeLimits": {"maxSizeBytes": 1_048_576}}),
    );
    let sf = hub(&doc).store_and_forward.unwrap();
    assert_eq!(sf.time_to_live_secs, -1);
    assert_eq!(sf.time_to_live(), None);
    assert_eq!(sf.max_size_bytes, Some(1_048_576));
    let sf = hub(&hub_desired()).store_and_forward.unwrap();
    assert_eq!(
        sf.time_to_live(),
        Some(std::time::Duration::from_secs(7200))
    );
}

#[test]
fn store_and_forward_errors_name_the_field() {
    let doc = with(
        hub_desired(),
        "/storeAndForwardConfiguration",
        json!({"timeToLiveSecs": 3_000_000_000_u64, "storeLimits": {"maxSizeBytes": -1}}),
    );
    assert_eq!(
        hub_errors(&doc),
        [
            "$.storeAndForwardConfiguration.timeToLiveSecs: invalid value 3000000000: expected an integer number of seconds (negative means forever)",
            "$.storeAndForwardConfiguration.storeLimits.maxSizeBytes: invalid value -1: expected a non-negative number of bytes",
        ]
    );
    assert_eq!(
        hub_errors(&with(
            hub_desired(),
            "/storeAndForwardConfiguration",
            json!({})
        )),
        ["$.storeAndForwardConfiguration.timeToLiveSecs: required field is missing"]
    );
}

#[test]
fn mqtt_broker_is_kept_from_1_2_and_ignored_before() {
    let broker = json!({"authorizations": [{"identities": ["{{iot:identity}}"],
        "allow": [{"operations": ["mqtt:connect"]}]}], "bridges": []});
    let doc = with(
        with(hub_desired(), "/schemaVersion", json!("1.2")),
        "/mqttBroker",
        broker.clone(),
    );
    assert_eq!(hub(&doc).mqtt_broker, Some(broker.clone()));
    let checked = EdgeHubDesired::check_value(&with(hub_desired(), "/mqttBroker", broker));
    assert_eq!(checked.result.as_ref().unwrap().mqtt_broker, None);
    assert_eq!(
        warnings(&checked),
        ["$.mqttBroker: ignored: mqttBroker needs $edgeHub schemaVersion 1.2 or later"]
    );
}

#[test]
fn integrity_is_kept_from_1_3() {
    let integrity = json!({"header": {}, "signature": {}});
    let doc = with(
        with(hub_desired(), "/schemaVersion", json!("1.3")),
        "/integrity",
        integrity.clone(),
    );
    assert_eq!(hub(&doc).integrity, Some(integrity));
    let doc = with(
        with(hub_desired(), "/schemaVersion", json!("1.3")),
        "/integrity",
        json!(1),
    );
    assert_eq!(
        hub_errors(&doc),
        ["$.integrity: expected an object, found number 1"]
    );
}

#[test]
fn twin_version_is_kept() {
    assert_eq!(
        hub(&with(hub_desired(), "/$version", json!(9))).twin_version,
        Some(9)
    );
}

#[test]
fn route_order_is_kept() {
    let doc = with(hub_desired(), "/routes", json!({"z": UP, "a": UP, "m": UP}));
    assert_eq!(hub(&doc).routes.keys().collect::<Vec<_>>(), ["z", "a", "m"]);
}

#[test]
fn routes_serialise_as_strings_when_plain_and_objects_otherwise() {
    assert_eq!(route_to_value(&Route::new(UP)), json!(UP));
    let r = Route {
        route: UP.into(),
        priority: 1,
        time_to_live_secs: 0,
    };
    assert_eq!(route_to_value(&r), json!({"route": UP, "priority": 1}));
    let r = Route {
        route: UP.into(),
        priority: Route::DEFAULT_PRIORITY,
        time_to_live_secs: 60,
    };
    assert_eq!(
        route_to_value(&r),
        json!({"route": UP, "timeToLiveSecs": 60})
    );
}

#[test]
fn to_value_round_trips() {
    let doc = with(
        with(
            hub_desired(),
            "/routes/p",
            json!({"route": UP, "priority": 3, "timeToLiveSecs": 5}),
        ),
        "/storeAndForwardConfiguration/storeLimits",
        json!({"maxSizeBytes": 10}),
    );
    let h = hub(&doc);
    assert_eq!(EdgeHubDesired::from_value(&h.to_value()).unwrap(), h);
}

#[test]
fn a_route_that_does_not_parse_is_reported_at_its_path_with_line_and_column() {
    let doc = with(hub_desired(), "/routes/r1", json!("FROM /messages/* INTO"));
    let errs = hub_errors(&doc);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("$.routes.r1: invalid route at line 1 column "),
        "{errs:?}"
    );
}

#[test]
fn a_route_object_with_a_bad_condition_is_reported_at_its_route_field() {
    let doc = with(
        hub_desired(),
        "/routes/r1",
        json!({"route": "FROM /messages/* WHERE temperature > 20 INTO $upstream", "priority": 1}),
    );
    let errs = hub_errors(&doc);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("$.routes.r1.route: invalid route at line 1 column 24: "),
        "{errs:?}"
    );
}

#[test]
fn a_single_bad_route_rejects_the_whole_configuration() {
    let doc = with(
        hub_desired(),
        "/routes/bad",
        json!("FROM /messages/* INTO $nowhere"),
    );
    let errs = EdgeHubDesired::from_value(&doc).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs.errors()[0].path.to_string(), "$.routes.bad");
    assert_eq!(errs.errors()[0].kind.code(), "route");
}

#[test]
fn multi_line_routes_report_the_line_of_the_error() {
    let doc = with(
        hub_desired(),
        "/routes/r1",
        json!("FROM /messages/*\nWHERE $connectionModuleId = \nINTO $upstream"),
    );
    let errs = hub_errors(&doc);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("invalid route at line 3 column 1"),
        "{errs:?}"
    );
}

#[test]
fn route_compiler_warnings_become_manifest_warnings() {
    let doc = with(
        hub_desired(),
        "/routes/r1",
        json!("FROM /messages/* INTO BrokeredEndpoint(\"/modules/filter/outputs/alerts\")"),
    );
    let checked = EdgeHubDesired::check_value(&doc);
    assert!(checked.is_valid(), "{:?}", errors(&checked));
    let w = warnings(&checked);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("$.routes.r1: route at line 1 column 23: "),
        "{w:?}"
    );
    assert_eq!(checked.warnings[0].kind.code(), "route");
}
