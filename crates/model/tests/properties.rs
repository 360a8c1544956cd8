//! Property tests: the validator never panics, whatever the input, and every valid manifest
//! round-trips (parse → write → parse gives equal data).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use indexmap::IndexMap;
use ironedge_model::{
    CreateOptions, DesiredStatus, EdgeAgentDesired, EdgeHubDesired, ImagePullPolicy, Manifest,
    Module, ModuleSettings, RegistryCredential, RestartPolicy, Route, RuntimeSettings,
    SchemaVersion, StoreAndForward, SystemModules, validate,
};
use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

/// Route texts that parse and compile.
const ROUTES: &[&str] = &[
    "FROM /messages/* INTO $upstream",
    "FROM /messages/modules/temp/outputs/temperatureOutput INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")",
    "FROM /messages/modules/filter/* WHERE $connectionModuleId = 'filter' INTO $upstream",
    "SELECT * FROM /messages/* WHERE as_number(temperature) > 20 INTO $upstream",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        ".{0,20}".prop_map(Value::String),
        // Long strings push createOptions over 512 characters, so it is written in chunks.
        "[a-zA-Z0-9 é€😀\"\\\\]{0,700}".prop_map(Value::String),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,12}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn arb_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((".{0,12}", arb_json()), 0..6).prop_map(|kv| kv.into_iter().collect())
}

fn module_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,24}".prop_filter("not reserved", |n| {
        !n.eq_ignore_ascii_case("edgeAgent") && !n.eq_ignore_ascii_case("edgeHub")
    })
}

fn image() -> impl Strategy<Value = String> {
    "([a-z0-9]{1,10}(\\.[a-z]{2,5}|:[1-9][0-9]{0,3})/)?([a-z0-9-]{1,10}/)?[a-z0-9-]{1,12}(:[a-z0-9.]{1,8})?"
}

fn env() -> impl Strategy<Value = IndexMap<String, String>> {
    prop::collection::vec(("[A-Za-z_][A-Za-z0-9_-]{0,12}", ".{0,30}"), 0..5)
        .prop_map(|kv| kv.into_iter().collect())
}

fn settings() -> impl Strategy<Value = ModuleSettings> {
    (
        image(),
        arb_object(),
        prop::option::of("sha256:[0-9a-f]{8}"),
    )
        .prop_map(|(image, options, digest)| ModuleSettings {
            image,
            create_options: CreateOptions::new(options),
            digest,
        })
}

fn module() -> impl Strategy<Value = Module> {
    (
        ".{0,10}",
        prop_oneof![Just(DesiredStatus::Running), Just(DesiredStatus::Stopped)],
        prop_oneof![
            Just(RestartPolicy::Never),
            Just(RestartPolicy::OnFailure),
            Just(RestartPolicy::OnUnhealthy),
            Just(RestartPolicy::Always)
        ],
        prop_oneof![
            Just(ImagePullPolicy::OnCreate),
            Just(ImagePullPolicy::Never)
        ],
        any::<u32>(),
        env(),
        settings(),
        prop::option::of("[a-z0-9-]{1,20}"),
    )
        .prop_map(
            |(
                version,
                status,
                restart_policy,
                image_pull_policy,
                startup_order,
                env,
                settings,
                configuration_id,
            )| Module {
                version,
                status,
                restart_policy,
                image_pull_policy,
                startup_order,
                env,
                settings,
                configuration_id,
            },
        )
}

fn edge_agent_module() -> impl Strategy<Value = Module> {
    module().prop_map(|m| Module {
        status: DesiredStatus::Running,
        restart_policy: RestartPolicy::Always,
        startup_order: 0,
        ..m
    })
}

fn runtime() -> impl Strategy<Value = RuntimeSettings> {
    let cred = ("[a-z0-9.]{1,20}", "[a-z0-9]{1,10}", "[ -~]{1,20}").prop_filter_map(
        "non-blank",
        |(address, username, password)| {
            (!password.trim().is_empty()).then_some(RegistryCredential {
                address,
                username,
                password,
            })
        },
    );
    (
        ".{0,10}",
        ".{0,30}",
        prop::collection::vec(("[a-zA-Z0-9_-]{1,12}", cred), 0..3),
    )
        .prop_map(
            |(min_docker_version, logging_options, creds)| RuntimeSettings {
                min_docker_version,
                logging_options,
                registry_credentials: creds.into_iter().collect(),
            },
        )
}

fn agent_schema() -> impl Strategy<Value = SchemaVersion> {
    prop_oneof![Just("1.0"), Just("1.1"), Just("1.1.0"), Just("1.0.3")]
        .prop_map(|s| s.parse().unwrap())
}

fn edge_agent() -> impl Strategy<Value = EdgeAgentDesired> {
    (
        agent_schema(),
        runtime(),
        edge_agent_module(),
        module(),
        prop::collection::vec((module_name(), module()), 0..4),
        prop::option::of(arb_object().prop_map(Value::Object)),
        prop::option::of(any::<i64>()),
    )
        .prop_map(
            |(schema_version, runtime, edge_agent, edge_hub, modules, integrity, twin_version)| {
                EdgeAgentDesired {
                    schema_version,
                    runtime,
                    system_modules: SystemModules {
                        edge_agent,
                        edge_hub,
                    },
                    modules: modules.into_iter().collect(),
                    integrity,
                    twin_version,
                }
            },
        )
}

fn route(minor: u32) -> impl Strategy<Value = Route> {
    let text = prop::sample::select(ROUTES).prop_map(str::to_owned);
    if minor == 0 {
        text.prop_map(Route::new).boxed()
    } else {
        (
            text,
            prop_oneof![Just(Route::DEFAULT_PRIORITY), 0_u32..=9],
            prop_oneof![Just(0_u32), any::<u32>()],
        )
            .prop_map(|(route, priority, time_to_live_secs)| Route {
                route,
                priority,
                time_to_live_secs,
            })
            .boxed()
    }
}

fn edge_hub() -> impl Strategy<Value = EdgeHubDesired> {
    (0_u32..=3).prop_flat_map(|minor| {
        let sf = (any::<i32>(), prop::option::of(0_u64..=i64::MAX as u64)).prop_map(
            |(time_to_live_secs, max_size_bytes)| StoreAndForward {
                time_to_live_secs,
                max_size_bytes,
            },
        );
        let sf = if minor == 0 {
            prop::option::of(sf).boxed()
        } else {
            sf.prop_map(Some).boxed()
        };
        let extra = |since: u32| {
            if minor >= since {
                prop::option::of(arb_object().prop_map(Value::Object)).boxed()
            } else {
                Just(None).boxed()
            }
        };
        (
            prop::collection::vec(("[a-zA-Z0-9_-]{1,12}", route(minor)), 0..5),
            sf,
            extra(2),
            extra(3),
            prop::option::of(any::<i64>()),
        )
            .prop_map(
                move |(routes, store_and_forward, mqtt_broker, integrity, twin_version)| {
                    EdgeHubDesired {
                        schema_version: SchemaVersion::new(1, minor),
                        routes: routes.into_iter().collect(),
                        store_and_forward,
                        mqtt_broker,
                        integrity,
                        twin_version,
                    }
                },
            )
    })
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        edge_agent(),
        edge_hub(),
        prop::collection::vec((module_name(), arb_object()), 0..3),
    )
        .prop_map(|(edge_agent, edge_hub, twins)| Manifest {
            edge_agent,
            edge_hub,
            module_twins: twins.into_iter().collect(),
        })
}

/// Every JSON pointer inside `value`, the root included.
fn pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(
                    v,
                    format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{prefix}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(prefix);
}

/// Asserts the validator's contract on any input: an `Err` lists at least one error, and an
/// `Ok` round-trips.
fn assert_contract(checked: ironedge_model::Checked<Manifest>) {
    match checked.result {
        Ok(m) => {
            let again = Manifest::from_value(&m.to_value()).expect("a written manifest is valid");
            assert_eq!(again, m);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(e.path.to_string().starts_with('$'));
                assert!(!e.kind.to_string().is_empty());
            }
            assert!([400, 412, 417].contains(&errors.status_code()));
        }
    }
}

/// `PROPTEST_CASES` when set (for a deeper run), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// Generating whole manifests is expensive in debug builds: 64 cases per run here; the cheap
// input-fuzzing properties below run 512. PROPTEST_CASES overrides both.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn any_generated_manifest_round_trips(m in manifest()) {
        let value = m.to_value();
        let checked = Manifest::check_value(&value);
        prop_assert!(checked.warnings.iter().all(|w| w.kind.code() == "twin_without_module"),
            "unexpected warnings: {:?}", checked.warnings);
        let parsed = checked.result.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&parsed, &m);
        // And through text, as a file on disk would go.
        let text = serde_json::to_vec_pretty(&value).unwrap();
        prop_assert_eq!(validate(&text).into_result().unwrap(), m);
    }

    #[test]
    fn sections_round_trip_on_their_own(agent in edge_agent(), hub in edge_hub()) {
        prop_assert_eq!(EdgeAgentDesired::from_value(&agent.to_value()).unwrap(), agent);
        prop_assert_eq!(EdgeHubDesired::from_value(&hub.to_value()).unwrap(), hub);
    }

    #[test]
    fn a_valid_manifest_with_parts_replaced_never_panics(
        m in manifest(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), arb_json()), 1..16),
    ) {
        let original = m.to_value();
        let mut all = Vec::new();
        pointers(&original, String::new(), &mut all);
        for (pick, replacement) in edits {
            let mut doc = original.clone();
            let target = pick.get(&all);
            if target.is_empty() {
                doc = replacement;
            } else if let Some(slot) = doc.pointer_mut(target) {
                *slot = replacement;
            }
            assert_contract(Manifest::check_value(&doc));
        }
    }

}

// Exhaustive over the keys of each manifest (hundreds of validations per case), so fewer cases.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(16)))]

    #[test]
    fn a_valid_manifest_with_any_one_key_removed_never_panics(m in manifest()) {
        let original = m.to_value();
        let mut all = Vec::new();
        pointers(&original, String::new(), &mut all);
        for target in &all {
            let Some((parent, key)) = target.rsplit_once('/') else { continue };
            let mut doc = original.clone();
            let key = key.replace("~1", "/").replace("~0", "~");
            if let Some(Value::Object(map)) = doc.pointer_mut(parent) {
                map.shift_remove(&key);
            }
            assert_contract(Manifest::check_value(&doc));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        assert_contract(validate(&bytes));
    }

    #[test]
    fn arbitrary_strings_never_panic(text in ".{0,256}") {
        assert_contract(validate(text.as_bytes()));
    }

    #[test]
    fn arbitrary_json_never_panics(value in arb_json()) {
        assert_contract(Manifest::check_value(&value));
        let _ = EdgeAgentDesired::check_value(&value);
        let _ = EdgeHubDesired::check_value(&value);
    }

    #[test]
    fn create_options_survive_twin_chunking(options in arb_object()) {
        let options = CreateOptions::new(options);
        let chunks = options.to_twin_chunks();
        let joined: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
        let back: Value = serde_json::from_str(&joined).unwrap();
        prop_assert_eq!(back, options.to_value());
    }
}
