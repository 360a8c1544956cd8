//! Tests for whole manifests: both forms, module twins, paths, syntax errors, round trips.

use serde_json::json;

use super::*;
use crate::fixtures::{agent_desired, errors, hub_desired, manifest, warnings, with, without};

fn check(value: &Value) -> Checked<Manifest> {
    Manifest::check_value(value)
}

#[test]
fn the_modules_content_form_is_accepted() {
    let m = Manifest::from_value(&manifest()).unwrap();
    assert_eq!(m.edge_agent.modules.len(), 1);
    assert_eq!(m.edge_hub.routes.len(), 1);
    assert!(m.module_twins.is_empty());
}

#[test]
fn the_configuration_content_form_is_accepted_and_its_metadata_ignored() {
    let config = json!({
        "id": "temp-deployment",
        "schemaVersion": "1.0",
        "labels": {"env": "prod"},
        "targetCondition": "tags.environment='prod'",
        "priority": 10,
        "metrics": {"queries": {}},
        "etag": "*",
        "content": {"modulesContent": manifest()["modulesContent"].clone()}
    });
    let checked = check(&config);
    assert!(checked.is_valid(), "{:?}", errors(&checked));
    assert!(warnings(&checked).is_empty(), "{:?}", warnings(&checked));
}

#[test]
fn errors_in_the_content_form_have_content_paths() {
    let config = json!({"content": {"modulesContent": {
        "$edgeAgent": {"properties.desired": without(agent_desired(), "/modules/temp/settings/image")},
        "$edgeHub": {"properties.desired": hub_desired()}
    }}});
    assert_eq!(
        errors(&check(&config)),
        [
            "$.content.modulesContent.$edgeAgent['properties.desired'].modules.temp.settings.image: required field is missing"
        ]
    );
}

#[test]
fn errors_carry_the_full_manifest_path() {
    let doc = with(
        manifest(),
        "/modulesContent/$edgeAgent/properties.desired/modules/temp/settings/image",
        json!(""),
    );
    assert_eq!(
        errors(&check(&doc)),
        [
            "$.modulesContent.$edgeAgent['properties.desired'].modules.temp.settings.image: must not be empty or whitespace"
        ]
    );
}

#[test]
fn both_system_twins_are_required() {
    let doc = json!({"modulesContent": {}});
    assert_eq!(
        errors(&check(&doc)),
        [
            "$.modulesContent.$edgeAgent: required field is missing",
            "$.modulesContent.$edgeHub: required field is missing"
        ]
    );
    assert_eq!(
        errors(&check(
            &json!({"modulesContent": {"$edgeAgent": {}, "$edgeHub": {"properties.desired": hub_desired()}}})
        )),
        ["$.modulesContent.$edgeAgent['properties.desired']: required field is missing"]
    );
}

#[test]
fn a_document_without_modules_content_says_so() {
    assert_eq!(
        errors(&check(&json!({"modules": {}}))),
        ["$.modulesContent: required field is missing"]
    );
    assert_eq!(
        errors(&check(&json!({"content": {"deviceContent": {}}}))),
        ["$.content.modulesContent: required field is missing"]
    );
    assert_eq!(
        errors(&check(&json!("x"))),
        ["$: expected an object, found string \"x\""]
    );
}

#[test]
fn module_twins_are_kept_as_json() {
    let twin = json!({"TemperatureThreshold": 25, "nested": {"a": [1, 2]}});
    let doc = with(
        manifest(),
        "/modulesContent/temp",
        json!({"properties.desired": twin.clone()}),
    );
    let checked = check(&doc);
    let m = checked.result.as_ref().unwrap();
    assert_eq!(Value::Object(m.module_twins["temp"].clone()), twin);
    assert!(warnings(&checked).is_empty());
}

#[test]
fn a_twin_for_an_undeployed_module_is_a_warning() {
    let doc = with(
        manifest(),
        "/modulesContent/ghost",
        json!({"properties.desired": {}}),
    );
    let checked = check(&doc);
    assert!(checked.is_valid());
    assert_eq!(
        warnings(&checked),
        ["$.modulesContent.ghost: module twin for a module that $edgeAgent does not deploy"]
    );
}

#[test]
fn module_twins_need_valid_names_and_object_desired_properties() {
    let doc = with(
        with(
            manifest(),
            "/modulesContent/bad.name",
            json!({"properties.desired": {}}),
        ),
        "/modulesContent/temp",
        json!({"properties.desired": [1]}),
    );
    assert_eq!(
        errors(&check(&doc)),
        [
            "$.modulesContent['bad.name']: invalid name \"bad.name\": module names are 1 to 128 characters of ASCII letters, digits, '-' and '_'",
            "$.modulesContent.temp['properties.desired']: expected an object, found an array",
        ]
    );
}

#[test]
fn layered_deployment_fragments_are_explained() {
    let doc = json!({"content": {"modulesContent": {
        "$edgeAgent": {"properties.desired.modules.temp": {"type": "docker"}},
        "$edgeHub": {"properties.desired.routes.up": "FROM /messages/* INTO $upstream"}
    }}});
    let errs = errors(&check(&doc));
    assert_eq!(errs.len(), 2);
    assert!(errs[0].starts_with(
        "$.content.modulesContent.$edgeAgent['properties.desired.modules.temp']: layered deployment content"
    ));
}

#[test]
fn errors_in_both_sections_are_reported_together() {
    let mut doc = with(
        manifest(),
        "/modulesContent/$edgeAgent/properties.desired/modules/temp/status",
        json!("paused"),
    );
    crate::fixtures::set(
        &mut doc,
        "/modulesContent/$edgeHub/properties.desired/routes/up",
        json!({"route": "FROM /messages/* INTO $upstream", "priority": 12}),
    );
    let errs = errors(&check(&doc));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0]
            .starts_with("$.modulesContent.$edgeAgent['properties.desired'].modules.temp.status: ")
    );
    assert!(
        errs[1].starts_with("$.modulesContent.$edgeHub['properties.desired'].routes.up.priority: ")
    );
}

#[test]
fn json_syntax_errors_give_line_and_column() {
    let checked = Manifest::check_slice(b"{\n  \"modulesContent\": {\n    \"$edgeAgent\": ,\n}");
    let errs = errors(&checked);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("$: not valid JSON: expected value at line 3 column 19"),
        "{errs:?}"
    );
}

#[test]
fn empty_and_non_utf8_input_is_a_syntax_error() {
    assert!(errors(&Manifest::check_slice(b""))[0].starts_with("$: not valid JSON: EOF"));
    let errs = errors(&Manifest::check_slice(b"{\"a\": \"\xff\"}"));
    assert!(errs[0].starts_with("$: not valid JSON: "), "{errs:?}");
}

#[test]
fn a_utf8_bom_is_skipped() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(manifest().to_string().as_bytes());
    assert!(Manifest::check_slice(&bytes).is_valid());
}

#[test]
fn deeply_nested_input_is_an_error_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let errs = errors(&Manifest::check_slice(deep.as_bytes()));
    assert!(errs[0].contains("recursion limit exceeded"), "{errs:?}");
}

#[test]
fn from_str_parses_text() {
    let m: Manifest = manifest().to_string().parse().unwrap();
    assert_eq!(m.edge_agent.modules.len(), 1);
}

#[test]
fn to_value_writes_the_modules_content_form_and_round_trips() {
    let doc = with(
        manifest(),
        "/modulesContent/temp",
        json!({"properties.desired": {"k": 1}}),
    );
    let m = Manifest::from_value(&doc).unwrap();
    let v = m.to_value();
    assert!(v["modulesContent"]["$edgeAgent"]["properties.desired"].is_object());
    assert_eq!(
        v["modulesContent"]["temp"]["properties.desired"],
        json!({"k": 1})
    );
    assert_eq!(Manifest::from_value(&v).unwrap(), m);
}

#[test]
fn serde_serialises_and_deserialises_by_validating() {
    let m = Manifest::from_value(&manifest()).unwrap();
    let text = serde_json::to_string(&m).unwrap();
    let back: Manifest = serde_json::from_str(&text).unwrap();
    assert_eq!(back, m);
    let err = serde_json::from_value::<Manifest>(json!({"modulesContent": {}})).unwrap_err();
    assert!(
        err.to_string()
            .contains("$.modulesContent.$edgeAgent: required field is missing")
    );
}

#[test]
fn status_code_maps_the_worst_section_error() {
    let doc = with(
        manifest(),
        "/modulesContent/$edgeHub/properties.desired/schemaVersion",
        json!("9.9"),
    );
    let errs = Manifest::from_value(&doc).unwrap_err();
    assert_eq!(errs.status_code(), 412);
    let doc = with(
        manifest(),
        "/modulesContent/$edgeAgent/properties.desired",
        json!({"$version": 1}),
    );
    assert_eq!(Manifest::from_value(&doc).unwrap_err().status_code(), 417);
}

#[test]
fn sections_from_two_twins_validate_with_manifest_paths() {
    let m = Manifest::check_sections(&agent_desired(), &hub_desired())
        .into_result()
        .unwrap();
    assert_eq!(m, Manifest::from_value(&manifest()).unwrap());
    let checked = Manifest::check_sections(
        &without(agent_desired(), "/modules/temp/status"),
        &with(hub_desired(), "/schemaVersion", json!("3.0")),
    );
    let errs = checked.result.unwrap_err();
    assert_eq!(errs.status_code(), 412);
    assert_eq!(
        errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "$.modulesContent.$edgeAgent['properties.desired'].modules.temp.status: required field is missing",
            "$.modulesContent.$edgeHub['properties.desired'].schemaVersion: unsupported schema version \"3.0\": supported are 1.0, 1.1, 1.2 and 1.3",
        ]
    );
}
