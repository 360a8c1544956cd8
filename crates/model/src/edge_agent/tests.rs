//! Tests for `$edgeAgent` desired properties: schema versions, runtime, system modules, modules.

use serde_json::json;

use super::*;
use crate::fixtures::{agent_desired, errors, warnings, with, without};

fn agent(value: &Value) -> EdgeAgentDesired {
    let checked = EdgeAgentDesired::check_value(value);
    assert_eq!(errors(&checked), Vec::<String>::new());
    checked.result.unwrap()
}

fn agent_errors(value: &Value) -> Vec<String> {
    errors(&EdgeAgentDesired::check_value(value))
}

#[test]
fn minimal_desired_properties_are_valid() {
    let a = agent(&agent_desired());
    assert_eq!(a.schema_version.to_string(), "1.1");
    assert_eq!(a.runtime.min_docker_version, "v1.25");
    assert_eq!(a.runtime.logging_options, "");
    assert!(a.runtime.registry_credentials.is_empty());
    assert_eq!(a.modules.len(), 1);
    assert_eq!(a.integrity, None);
    assert_eq!(a.twin_version, None);
}

#[test]
fn schema_versions_1_0_and_1_1_are_accepted() {
    for v in ["1.0", "1.0.3", "1.1", "1.1.0"] {
        let a = agent(&with(agent_desired(), "/schemaVersion", json!(v)));
        assert_eq!(a.schema_version.to_string(), v);
    }
}

#[test]
fn other_schema_versions_are_unsupported_with_status_412() {
    for v in ["1.1.1", "1.2", "2.0", "1", "one", ""] {
        let checked =
            EdgeAgentDesired::check_value(&with(agent_desired(), "/schemaVersion", json!(v)));
        let errs = checked.result.unwrap_err();
        assert_eq!(errs.len(), 1, "{v}: {errs}");
        assert_eq!(errs.status_code(), 412, "{v}");
        assert_eq!(
            errs.to_string(),
            format!(
                "$.schemaVersion: unsupported schema version {v:?}: supported are 1.0 and 1.1 (\"1.0\", \"1.0.x\", \"1.1\", \"1.1.0\")"
            )
        );
    }
}

#[test]
fn a_missing_schema_version_is_a_400() {
    let errs =
        EdgeAgentDesired::from_value(&without(agent_desired(), "/schemaVersion")).unwrap_err();
    assert_eq!(
        errs.to_string(),
        "$.schemaVersion: required field is missing"
    );
    assert_eq!(errs.status_code(), 400);
}

#[test]
fn unsupported_schema_still_reports_the_other_errors_but_answers_412() {
    let doc = without(
        with(agent_desired(), "/schemaVersion", json!("2.0")),
        "/runtime",
    );
    let errs = EdgeAgentDesired::from_value(&doc).unwrap_err();
    assert_eq!(errs.len(), 2);
    assert_eq!(errs.status_code(), 412);
}

#[test]
fn empty_desired_properties_are_a_417() {
    for doc in [
        json!({}),
        json!({"$version": 1, "$metadata": {"$lastUpdated": "2024-01-01"}}),
    ] {
        let errs = EdgeAgentDesired::from_value(&doc).unwrap_err();
        assert_eq!(errs.status_code(), 417);
        assert_eq!(
            errs.to_string(),
            "$: the desired properties are empty: no deployment has been applied to this device yet"
        );
    }
}

#[test]
fn twin_version_is_kept_for_last_desired_version() {
    let a = agent(&with(agent_desired(), "/$version", json!(42)));
    assert_eq!(a.twin_version, Some(42));
    assert_eq!(
        agent_errors(&with(agent_desired(), "/$version", json!("42"))),
        ["$.$version: expected an integer, found string \"42\""]
    );
}

#[test]
fn twin_metadata_does_not_warn() {
    let doc = with(agent_desired(), "/$metadata", json!({"$lastUpdated": "x"}));
    assert!(warnings(&EdgeAgentDesired::check_value(&doc)).is_empty());
}

#[test]
fn runtime_and_system_modules_are_required() {
    assert_eq!(
        agent_errors(&without(
            without(agent_desired(), "/runtime"),
            "/systemModules"
        )),
        [
            "$.runtime: required field is missing",
            "$.systemModules: required field is missing"
        ]
    );
    assert_eq!(
        agent_errors(&without(agent_desired(), "/systemModules/edgeHub")),
        ["$.systemModules.edgeHub: required field is missing"]
    );
    assert_eq!(
        agent_errors(&without(agent_desired(), "/systemModules/edgeAgent")),
        ["$.systemModules.edgeAgent: required field is missing"]
    );
}

#[test]
fn modules_are_optional() {
    let a = agent(&without(agent_desired(), "/modules"));
    assert!(a.modules.is_empty());
    assert_eq!(a.all_modules().count(), 2);
}

#[test]
fn runtime_type_must_be_docker() {
    assert_eq!(
        agent_errors(&with(agent_desired(), "/runtime/type", json!("kubernetes"))),
        ["$.runtime.type: invalid value \"kubernetes\": expected \"docker\""]
    );
    assert_eq!(
        agent_errors(&without(agent_desired(), "/runtime/type")),
        ["$.runtime.type: required field is missing"]
    );
}

#[test]
fn runtime_settings_are_optional_but_need_min_docker_version_when_present() {
    let a = agent(&without(agent_desired(), "/runtime/settings"));
    assert_eq!(a.runtime, RuntimeSettings::default());
    assert_eq!(
        agent_errors(&without(
            agent_desired(),
            "/runtime/settings/minDockerVersion"
        )),
        ["$.runtime.settings.minDockerVersion: required field is missing"]
    );
}

#[test]
fn runtime_settings_read_logging_options_and_registry_credentials() {
    let doc = with(
        agent_desired(),
        "/runtime/settings",
        json!({
            "minDockerVersion": "v1.25",
            "loggingOptions": "{\"max-size\":\"10m\"}",
            "registryCredentials": {
                "myacr": {"username": "u", "password": "p", "address": "myacr.azurecr.io"},
                "other": {"username": "u2", "password": "p2", "address": "https://reg.example.com/"}
            }
        }),
    );
    let a = agent(&doc);
    assert_eq!(a.runtime.logging_options, "{\"max-size\":\"10m\"}");
    let cred = &a.runtime.registry_credentials["myacr"];
    assert_eq!(
        (
            cred.address.as_str(),
            cred.username.as_str(),
            cred.password.as_str()
        ),
        ("myacr.azurecr.io", "u", "p")
    );
    assert_eq!(
        a.runtime
            .credential_for("myacr.azurecr.io/filter:1")
            .map(|(id, _)| id),
        Some("myacr")
    );
    assert_eq!(
        a.runtime
            .credential_for("REG.example.com/x/y:2")
            .map(|(id, _)| id),
        Some("other")
    );
    assert_eq!(
        a.runtime
            .credential_for("myacr.azurecr.io.evil.com/filter:1"),
        None
    );
    assert_eq!(a.runtime.credential_for("nginx"), None);
}

#[test]
fn registry_credentials_need_every_field_and_a_valid_id() {
    let doc = with(
        agent_desired(),
        "/runtime/settings/registryCredentials",
        json!({
            "my.acr": {"username": "u", "password": "p", "address": "a"},
            "blank": {"username": " ", "password": "p", "address": "a"},
            "partial": {"address": "a"},
            "scalar": "u:p@a"
        }),
    );
    assert_eq!(
        agent_errors(&doc),
        [
            "$.runtime.settings.registryCredentials['my.acr']: invalid name \"my.acr\": names must not be empty or contain '.', '$', '#' or a space",
            "$.runtime.settings.registryCredentials.blank.username: must not be empty or whitespace",
            "$.runtime.settings.registryCredentials.partial.username: required field is missing",
            "$.runtime.settings.registryCredentials.partial.password: required field is missing",
            "$.runtime.settings.registryCredentials.scalar: expected an object, found string \"u:p@a\"",
        ]
    );
}

#[test]
fn registry_passwords_are_redacted_in_debug_output() {
    let cred = RegistryCredential {
        address: "a".into(),
        username: "u".into(),
        password: "s3cret".into(),
    };
    let debug = format!("{cred:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("<redacted>"));
}

#[test]
fn integrity_is_kept_as_given() {
    let integrity =
        json!({"header": {"signercert": ["a"]}, "signature": {"bytes": "x", "algorithm": "ES256"}});
    let a = agent(&with(agent_desired(), "/integrity", integrity.clone()));
    assert_eq!(a.integrity, Some(integrity));
    assert_eq!(
        agent_errors(&with(agent_desired(), "/integrity", json!("x"))),
        ["$.integrity: expected an object, found string \"x\""]
    );
}

#[test]
fn all_modules_lists_system_modules_first_and_module_finds_by_name() {
    let body = agent_desired()["modules"]["temp"].clone();
    let a = agent(&with(agent_desired(), "/modules/filter", body));
    let names: Vec<&str> = a.all_modules().map(|(n, _)| n).collect();
    assert_eq!(names, ["edgeAgent", "edgeHub", "temp", "filter"]);
    assert!(a.module("edgeHub").is_some());
    assert!(a.module("filter").is_some());
    assert!(a.module("nope").is_none());
}

#[test]
fn not_an_object_is_rejected() {
    assert_eq!(
        agent_errors(&json!([1])),
        ["$: expected an object, found an array"]
    );
}

#[test]
fn to_value_round_trips() {
    let doc = with(agent_desired(), "/$version", json!(3));
    let a = agent(&doc);
    assert_eq!(EdgeAgentDesired::from_value(&a.to_value()).unwrap(), a);
}
