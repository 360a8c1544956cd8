//! Tests for modules: every field, default and error, read through `$edgeAgent` desired properties.

use serde_json::json;

use super::*;
use crate::edge_agent::EdgeAgentDesired;
use crate::fixtures::{agent_desired, errors, warnings, with, without};

fn agent(value: &Value) -> EdgeAgentDesired {
    let checked = EdgeAgentDesired::check_value(value);
    assert_eq!(errors(&checked), Vec::<String>::new());
    checked.result.unwrap()
}

fn agent_errors(value: &Value) -> Vec<String> {
    errors(&EdgeAgentDesired::check_value(value))
}

fn temp(value: &Value) -> Module {
    agent(value).modules["temp"].clone()
}

const TEMP: &str = "/modules/temp";

fn temp_with(key: &str, value: Value) -> Value {
    with(agent_desired(), &format!("{TEMP}/{key}"), value)
}

#[test]
fn a_user_module_gets_iot_edge_defaults() {
    let m = temp(&agent_desired());
    assert_eq!(m.version, "");
    assert_eq!(m.status, DesiredStatus::Running);
    assert_eq!(m.restart_policy, RestartPolicy::OnUnhealthy);
    assert_eq!(m.image_pull_policy, ImagePullPolicy::OnCreate);
    assert_eq!(m.startup_order, DEFAULT_STARTUP_ORDER);
    assert_eq!(m.startup_order, 4_294_967_295);
    assert!(m.env.is_empty());
    assert!(m.settings.create_options.is_empty());
    assert_eq!(m.settings.digest, None);
    assert_eq!(m.configuration_id, None);
}

#[test]
fn every_user_module_field_is_read() {
    let body = json!({
        "version": "2.1",
        "type": "docker",
        "status": "stopped",
        "restartPolicy": "on-failure",
        "imagePullPolicy": "never",
        "startupOrder": 3,
        "env": {"A": {"value": "x"}, "B": {"value": 5}, "C": {"value": true}, "D": {"value": null}, "E": {}},
        "settings": {
            "image": "myacr.azurecr.io/temp:2.1",
            "createOptions": "{\"Env\":[\"X=1\"]}",
            "digest": "sha256:abc"
        },
        "configuration": {"id": "deployment-7"}
    });
    let m = temp(&with(agent_desired(), TEMP, body));
    assert_eq!(m.version, "2.1");
    assert_eq!(m.status, DesiredStatus::Stopped);
    assert_eq!(m.restart_policy, RestartPolicy::OnFailure);
    assert_eq!(m.image_pull_policy, ImagePullPolicy::Never);
    assert_eq!(m.startup_order, 3);
    let env: Vec<(&str, &str)> = m
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [("A", "x"), ("B", "5"), ("C", "true"), ("D", ""), ("E", "")]
    );
    assert_eq!(m.settings.image, "myacr.azurecr.io/temp:2.1");
    assert_eq!(m.settings.create_options.get("Env"), Some(&json!(["X=1"])));
    assert_eq!(m.settings.digest.as_deref(), Some("sha256:abc"));
    assert_eq!(m.configuration_id.as_deref(), Some("deployment-7"));
}

#[test]
fn every_restart_policy_is_read() {
    for (text, policy) in [
        ("never", RestartPolicy::Never),
        ("on-failure", RestartPolicy::OnFailure),
        ("on-unhealthy", RestartPolicy::OnUnhealthy),
        ("always", RestartPolicy::Always),
    ] {
        assert_eq!(
            temp(&temp_with("restartPolicy", json!(text))).restart_policy,
            policy
        );
        assert_eq!(policy.as_str(), text);
    }
}

#[test]
fn restart_policies_are_ordered_so_anything_above_never_restarts() {
    assert!(RestartPolicy::Never < RestartPolicy::OnFailure);
    assert!(RestartPolicy::OnFailure < RestartPolicy::OnUnhealthy);
    assert!(RestartPolicy::OnUnhealthy < RestartPolicy::Always);
}

#[test]
fn enums_accept_csharp_names_and_any_case() {
    assert_eq!(
        ImagePullPolicy::parse("OnCreate"),
        Some(ImagePullPolicy::OnCreate)
    );
    assert_eq!(
        ImagePullPolicy::parse("Never"),
        Some(ImagePullPolicy::Never)
    );
    assert_eq!(
        RestartPolicy::parse("OnUnhealthy"),
        Some(RestartPolicy::OnUnhealthy)
    );
    assert_eq!(
        RestartPolicy::parse("ON-FAILURE"),
        Some(RestartPolicy::OnFailure)
    );
    assert_eq!(
        DesiredStatus::parse("Running"),
        Some(DesiredStatus::Running)
    );
    assert_eq!(RestartPolicy::parse("on_failure"), None);
    assert_eq!(RestartPolicy::parse("on-fail-ure"), None);
    assert_eq!(RestartPolicy::parse(""), None);
}

#[test]
fn status_is_required_for_user_modules() {
    assert_eq!(
        agent_errors(&without(agent_desired(), "/modules/temp/status")),
        ["$.modules.temp.status: required field is missing"]
    );
}

#[test]
fn runtime_only_statuses_are_rejected() {
    assert_eq!(
        agent_errors(&temp_with("status", json!("backoff"))),
        ["$.modules.temp.status: invalid value \"backoff\": expected \"running\" or \"stopped\""]
    );
}

#[test]
fn bad_enum_values_name_the_allowed_ones() {
    assert_eq!(
        agent_errors(&temp_with("restartPolicy", json!("sometimes"))),
        [
            "$.modules.temp.restartPolicy: invalid value \"sometimes\": expected one of \"never\", \"on-failure\", \"on-unhealthy\", \"always\""
        ]
    );
    assert_eq!(
        agent_errors(&temp_with("imagePullPolicy", json!("always"))),
        [
            "$.modules.temp.imagePullPolicy: invalid value \"always\": expected \"on-create\" or \"never\""
        ]
    );
    assert_eq!(
        agent_errors(&temp_with("status", json!(1))),
        ["$.modules.temp.status: expected a string, found number 1"]
    );
}

#[test]
fn null_restart_policy_and_startup_order_are_rejected_like_iot_edge() {
    assert_eq!(
        agent_errors(&temp_with("restartPolicy", Value::Null)),
        ["$.modules.temp.restartPolicy: expected a string, found null"]
    );
    assert_eq!(
        agent_errors(&temp_with("startupOrder", Value::Null)),
        ["$.modules.temp.startupOrder: expected an integer from 0 to 4294967295, found null"]
    );
}

#[test]
fn null_optional_fields_take_their_defaults() {
    let mut doc = temp_with("imagePullPolicy", Value::Null);
    crate::fixtures::set(&mut doc, "/modules/temp/env", Value::Null);
    crate::fixtures::set(&mut doc, "/modules/temp/version", Value::Null);
    let m = temp(&doc);
    assert_eq!(m.image_pull_policy, ImagePullPolicy::OnCreate);
    assert!(m.env.is_empty());
    assert_eq!(m.version, "");
}

#[test]
fn startup_order_must_be_a_u32() {
    for (value, shown) in [
        (json!(-1), "invalid value -1"),
        (json!(4_294_967_296_u64), "invalid value 4294967296"),
        (json!(1.5), "invalid value 1.5"),
        (
            json!("1"),
            "expected an integer from 0 to 4294967295, found string \"1\"",
        ),
    ] {
        let errs = agent_errors(&temp_with("startupOrder", value));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("$.modules.temp.startupOrder: "),
            "{errs:?}"
        );
        assert!(errs[0].contains(shown), "{errs:?}");
    }
    assert_eq!(temp(&temp_with("startupOrder", json!(0))).startup_order, 0);
    assert_eq!(
        temp(&temp_with("startupOrder", json!(4_294_967_295_u32))).startup_order,
        u32::MAX
    );
}

#[test]
fn type_must_be_docker_exactly() {
    assert_eq!(
        agent_errors(&temp_with("type", json!("Docker"))),
        ["$.modules.temp.type: invalid value \"Docker\": expected \"docker\""]
    );
    assert_eq!(
        agent_errors(&without(agent_desired(), "/modules/temp/type")),
        ["$.modules.temp.type: required field is missing"]
    );
}

#[test]
fn version_must_be_a_string() {
    assert_eq!(
        agent_errors(&temp_with("version", json!(1.0))),
        ["$.modules.temp.version: expected a string, found number 1.0"]
    );
}

#[test]
fn settings_and_image_are_required() {
    assert_eq!(
        agent_errors(&without(agent_desired(), "/modules/temp/settings")),
        ["$.modules.temp.settings: required field is missing"]
    );
    assert_eq!(
        agent_errors(&without(agent_desired(), "/modules/temp/settings/image")),
        ["$.modules.temp.settings.image: required field is missing"]
    );
    assert_eq!(
        agent_errors(&temp_with("settings", json!("image: x"))),
        ["$.modules.temp.settings: expected an object, found string \"image: x\""]
    );
}

#[test]
fn image_is_trimmed_and_checked() {
    let doc = with(
        agent_desired(),
        "/modules/temp/settings/image",
        json!("  nginx:1.25  "),
    );
    assert_eq!(temp(&doc).settings.image, "nginx:1.25");
    assert_eq!(
        agent_errors(&with(
            agent_desired(),
            "/modules/temp/settings/image",
            json!(" ")
        )),
        ["$.modules.temp.settings.image: must not be empty or whitespace"]
    );
    assert_eq!(
        agent_errors(&with(
            agent_desired(),
            "/modules/temp/settings/image",
            json!("my img")
        )),
        [
            "$.modules.temp.settings.image: invalid image \"my img\": an image reference cannot contain whitespace"
        ]
    );
    assert_eq!(
        agent_errors(&with(
            agent_desired(),
            "/modules/temp/settings/image",
            json!(["a"])
        )),
        ["$.modules.temp.settings.image: expected a string, found an array"]
    );
}

#[test]
fn settings_keys_are_matched_case_insensitively_like_iot_edge() {
    let doc = with(
        agent_desired(),
        "/modules/temp/settings",
        json!({"Image": "nginx", "CreateOptions": "{\"User\":\"1000\"}", "Digest": "sha256:1"}),
    );
    let m = temp(&doc);
    assert_eq!(m.settings.image, "nginx");
    assert_eq!(m.settings.pull_image(), "nginx:latest");
    assert_eq!(m.settings.create_options.get("User"), Some(&json!("1000")));
    assert_eq!(m.settings.digest.as_deref(), Some("sha256:1"));
    let errs = agent_errors(&with(
        agent_desired(),
        "/modules/temp/settings/IMAGE",
        json!(""),
    ));
    assert!(errs.is_empty(), "the exact key wins: {errs:?}");
}

#[test]
fn registry_of_the_image_is_exposed() {
    let doc = with(
        agent_desired(),
        "/modules/temp/settings/image",
        json!("myacr.azurecr.io/t:1"),
    );
    assert_eq!(temp(&doc).settings.registry(), Some("myacr.azurecr.io"));
}

#[test]
fn create_options_errors_carry_the_settings_path() {
    let doc = with(
        agent_desired(),
        "/modules/temp/settings/createOptions",
        json!("[]"),
    );
    assert_eq!(
        agent_errors(&doc),
        [
            "$.modules.temp.settings.createOptions: createOptions must be a JSON object (Docker ContainerCreate body), found an array"
        ]
    );
}

#[test]
fn env_entries_need_valid_names_and_value_objects() {
    let doc = temp_with(
        "env",
        json!({"OK": {"value": "1"}, "BAD.NAME": {"value": "2"}, "PLAIN": "3", "ARR": {"value": [1]}}),
    );
    assert_eq!(
        agent_errors(&doc),
        [
            "$.modules.temp.env['BAD.NAME']: invalid name \"BAD.NAME\": environment variable names must not be empty or contain '+', '#', '$', '.' or whitespace",
            "$.modules.temp.env.PLAIN: expected an object, found string \"3\"",
            "$.modules.temp.env.ARR.value: expected a string, number or boolean, found an array",
        ]
    );
    assert_eq!(
        agent_errors(&temp_with("env", json!(["A=1"]))),
        ["$.modules.temp.env: expected an object, found an array"]
    );
}

#[test]
fn env_order_is_kept() {
    let doc = temp_with(
        "env",
        json!({"Z": {"value": "1"}, "A": {"value": "2"}, "M": {"value": "3"}}),
    );
    let keys: Vec<String> = temp(&doc).env.keys().cloned().collect();
    assert_eq!(keys, ["Z", "A", "M"]);
}

#[test]
fn unknown_module_fields_are_warnings_not_errors() {
    let mut doc = temp_with("stauts", json!("running"));
    crate::fixtures::set(&mut doc, "/modules/temp/settings/cmd", json!("x"));
    let checked = EdgeAgentDesired::check_value(&doc);
    assert!(checked.is_valid());
    assert_eq!(
        warnings(&checked),
        [
            "$.modules.temp.settings.cmd: unknown field, ignored",
            "$.modules.temp.stauts: unknown field, ignored",
        ]
    );
}

#[test]
fn module_names_follow_iot_hub_rules() {
    let body = agent_desired()["modules"]["temp"].clone();
    let doc = with(
        with(agent_desired(), "/modules/temp.sensor", body.clone()),
        &format!("/modules/{}", "a".repeat(129)),
        body,
    );
    let errs = agent_errors(&doc);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "$.modules['temp.sensor']: invalid name \"temp.sensor\": module names are"
        )
    );
    assert!(errs[1].contains("module names are 1 to 128 characters"));
}

#[test]
fn system_module_names_are_reserved_for_user_modules() {
    let body = agent_desired()["modules"]["temp"].clone();
    let doc = with(
        with(agent_desired(), "/modules/edgeHub", body.clone()),
        "/modules/EdgeAgent",
        body,
    );
    assert_eq!(
        agent_errors(&doc),
        [
            "$.modules.edgeHub: module name \"edgeHub\" is reserved for the system module; configure it under systemModules",
            "$.modules.EdgeAgent: module name \"EdgeAgent\" is reserved for the system module; configure it under systemModules",
        ]
    );
}

#[test]
fn edge_agent_runs_always_restarts_and_starts_first_whatever_is_written() {
    let doc = with(
        with(
            with(
                agent_desired(),
                "/systemModules/edgeAgent/status",
                json!("stopped"),
            ),
            "/systemModules/edgeAgent/restartPolicy",
            json!("never"),
        ),
        "/systemModules/edgeAgent/startupOrder",
        json!(5),
    );
    let checked = EdgeAgentDesired::check_value(&doc);
    let a = checked
        .result
        .as_ref()
        .unwrap()
        .system_modules
        .edge_agent
        .clone();
    assert_eq!(a.status, DesiredStatus::Running);
    assert_eq!(a.restart_policy, RestartPolicy::Always);
    assert_eq!(a.startup_order, 0);
    assert_eq!(
        warnings(&checked),
        [
            "$.systemModules.edgeAgent.status: ignored: edgeAgent always runs",
            "$.systemModules.edgeAgent.restartPolicy: ignored: edgeAgent is always restarted",
            "$.systemModules.edgeAgent.startupOrder: ignored: edgeAgent always starts first",
        ]
    );
}

#[test]
fn edge_agent_fields_that_match_the_fixed_values_do_not_warn() {
    let doc = with(
        with(
            agent_desired(),
            "/systemModules/edgeAgent/status",
            json!("running"),
        ),
        "/systemModules/edgeAgent/startupOrder",
        json!(0),
    );
    assert!(warnings(&EdgeAgentDesired::check_value(&doc)).is_empty());
}

#[test]
fn edge_agent_reads_env_pull_policy_version_and_create_options() {
    let doc = with(
        agent_desired(),
        "/systemModules/edgeAgent",
        json!({
            "type": "docker", "version": "1.5", "imagePullPolicy": "never",
            "env": {"UpstreamProtocol": {"value": "MqttWs"}},
            "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": "{\"User\":\"root\"}"}
        }),
    );
    let a = agent(&doc).system_modules.edge_agent;
    assert_eq!(a.version, "1.5");
    assert_eq!(a.image_pull_policy, ImagePullPolicy::Never);
    assert_eq!(a.env["UpstreamProtocol"], "MqttWs");
    assert_eq!(a.settings.create_options.get("User"), Some(&json!("root")));
}

#[test]
fn edge_hub_restarts_always_by_default_and_needs_a_status() {
    let hub = agent(&agent_desired()).system_modules.edge_hub;
    assert_eq!(hub.restart_policy, RestartPolicy::Always);
    assert_eq!(hub.startup_order, DEFAULT_STARTUP_ORDER);
    assert_eq!(
        agent_errors(&without(agent_desired(), "/systemModules/edgeHub/status")),
        ["$.systemModules.edgeHub.status: required field is missing"]
    );
    let doc = with(
        agent_desired(),
        "/systemModules/edgeHub/startupOrder",
        json!(0),
    );
    assert_eq!(agent(&doc).system_modules.edge_hub.startup_order, 0);
}

#[test]
fn every_error_in_a_module_is_reported_at_once() {
    let doc = with(
        agent_desired(),
        TEMP,
        json!({"type": "rkt", "status": "paused", "restartPolicy": 3, "startupOrder": -2,
               "env": {"a b": {"value": 1}}, "settings": {"image": "", "createOptions": "{"}}),
    );
    let errs = agent_errors(&doc);
    let paths: Vec<&str> = errs.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "$.modules.temp.type",
            "$.modules.temp.status",
            "$.modules.temp.restartPolicy",
            "$.modules.temp.startupOrder",
            "$.modules.temp.env['a b']",
            "$.modules.temp.settings.image",
            "$.modules.temp.settings.createOptions",
        ]
    );
}

#[test]
fn a_module_that_is_not_an_object_is_rejected() {
    assert_eq!(
        agent_errors(&with(agent_desired(), TEMP, json!("nginx"))),
        ["$.modules.temp: expected an object, found string \"nginx\""]
    );
}

#[test]
fn serialisation_writes_the_manifest_spelling_and_omits_defaults() {
    let m = temp(&agent_desired());
    assert_eq!(
        to_value(&m, ModuleRole::User),
        json!({"type": "docker", "status": "running", "restartPolicy": "on-unhealthy",
               "settings": {"image": "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5",
                            "createOptions": "{}"}})
    );
    let a = agent(&agent_desired()).system_modules.edge_agent;
    let v = to_value(&a, ModuleRole::EdgeAgent);
    assert!(v.get("status").is_none() && v.get("restartPolicy").is_none());
}

#[test]
fn module_new_uses_the_defaults() {
    let m = Module::new("nginx");
    assert_eq!(m.restart_policy, RestartPolicy::OnUnhealthy);
    assert_eq!(m.startup_order, DEFAULT_STARTUP_ORDER);
    assert_eq!(m.settings.image, "nginx");
}
