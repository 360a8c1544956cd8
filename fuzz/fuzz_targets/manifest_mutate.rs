//! Structure-aware manifest fuzzing: start from one of the model crate's valid fixture manifests
//! (`crates/model/tests/manifests/valid/*.json`) and apply a few mutations at existing paths
//! (replace a value with another JSON value, delete it, add a key, swap in a value the model
//! gives a meaning to, copy a sibling under a new name). Most results are almost valid, which
//! reaches the checks deep inside modules, routes, createOptions and registry credentials.
//!
//! Checks are those of `manifest_validate` (see `common/manifest.rs`), on the mutated document
//! and on its serialisation.
#![no_main]

#[path = "../common/json.rs"]
mod json;
#[path = "../common/manifest.rs"]
mod manifest;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const FIXTURES: &[&str] = &[
    include_str!(
        "../../crates/model/tests/manifests/valid/automatic-deployment-configuration.json"
    ),
    include_str!("../../crates/model/tests/manifests/valid/filter-pipeline-with-priorities.json"),
    include_str!("../../crates/model/tests/manifests/valid/nested-edge-hub-1.3-twin-dump.json"),
    include_str!("../../crates/model/tests/manifests/valid/opc-publisher-hub-1.2-mqtt-broker.json"),
    include_str!("../../crates/model/tests/manifests/valid/quickstart-temperature-sensor.json"),
];

const KEYS: &[&str] = &[
    "modulesContent",
    "content",
    "$edgeAgent",
    "$edgeHub",
    "properties.desired",
    "schemaVersion",
    "runtime",
    "type",
    "settings",
    "minDockerVersion",
    "loggingOptions",
    "registryCredentials",
    "username",
    "password",
    "address",
    "systemModules",
    "edgeAgent",
    "edgeHub",
    "modules",
    "version",
    "status",
    "restartPolicy",
    "imagePullPolicy",
    "startupOrder",
    "image",
    "digest",
    "createOptions",
    "createOptions01",
    "createOptions02",
    "env",
    "value",
    "routes",
    "route",
    "priority",
    "timeToLiveSecs",
    "storeAndForwardConfiguration",
    "mqttBroker",
    "authorizations",
    "bridges",
    "identities",
    "allow",
    "operations",
    "HostConfig",
    "Env",
    "$version",
    "$metadata",
];

const STRINGS: &[&str] = &[
    "1.0",
    "1.1",
    "1.2",
    "1.3",
    "1.4",
    "2.0",
    "docker",
    "running",
    "stopped",
    "always",
    "never",
    "on-failure",
    "on-unhealthy",
    "on-create",
    "",
    "v1.25",
    "mcr.microsoft.com/azureiotedge-hub:1.5",
    "myacr.azurecr.io/filter:latest",
    "nginx",
    "FROM /messages/* INTO $upstream",
    "FROM /messages/modules/a/* WHERE $body.t > 30 INTO BrokeredEndpoint(\"/modules/b/inputs/in\")",
    "FROM /messages/* WHERE temp > 3 INTO $upstream",
    "FROM /messages/* INTO BrokeredEndpoint(\"/modules//inputs/in\")",
    "{}",
    "{",
    "{\"HostConfig\":{\"Binds\":[\"/data:/data\"],\"PortBindings\":{\"80/tcp\":[{\"HostPort\":\"8080\"}]}}}",
    "{\"Env\":[\"A=1\"],\"k8s-experimental\":{\"nodeSelector\":{\"a\":\"b\"}}}",
    "sha256:0123456789abcdef",
    "ES256",
];

const MODEL: json::JsonGen<'static> = json::JsonGen {
    keys: KEYS,
    strings: STRINGS,
    max_depth: 3,
};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(mut doc) = fixture(&mut u) else { return };
    for _ in 0..u.int_in_range(1..=4).unwrap_or(1) {
        if mutate(&mut doc, &mut u).is_err() {
            break;
        }
    }
    manifest::check_value(&doc);
});

fn fixture(u: &mut Unstructured<'_>) -> Result<Value> {
    let text = u.choose(FIXTURES)?;
    // The fixtures are the model crate's own valid manifests: always JSON.
    Ok(serde_json::from_str(text).unwrap_or(Value::Null))
}

/// One step into the document.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn paths(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(o) => {
            for (k, v) in o {
                prefix.push(Step::Key(k.clone()));
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                prefix.push(Step::Index(i));
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at<'v>(doc: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(doc, |node, step| match step {
        Step::Key(k) => node.get_mut(k.as_str()),
        Step::Index(i) => node.get_mut(*i),
    })
}

fn mutate(doc: &mut Value, u: &mut Unstructured<'_>) -> Result<()> {
    let mut all = Vec::new();
    paths(doc, &mut Vec::new(), &mut all);
    let path = u.choose(&all)?.clone();
    let op = u.int_in_range(0..=5)?;
    let new_value = match op {
        0 => MODEL.value(u)?,
        1 => Value::String(MODEL.string(u)?),
        2 => MODEL.number(u)?,
        _ => Value::Null,
    };
    let new_key = MODEL.key(u)?;
    match op {
        0..=2 => {
            if let Some(node) = at(doc, &path) {
                *node = new_value;
            }
        }
        3 => {
            // Delete the value at the path from its parent.
            let Some((last, parent)) = path.split_last() else {
                return Ok(());
            };
            match (at(doc, parent), last) {
                (Some(Value::Object(o)), Step::Key(k)) => {
                    o.shift_remove(k);
                }
                (Some(Value::Array(a)), Step::Index(i)) if *i < a.len() => {
                    a.remove(*i);
                }
                _ => {}
            }
        }
        4 => {
            // Add a key to an object.
            let value = MODEL.value(u)?;
            if let Some(Value::Object(o)) = at(doc, &path) {
                o.insert(new_key, value);
            }
        }
        _ => {
            // Copy the value under a new name beside it (a second module, route or twin).
            let Some((Step::Key(_), parent)) = path.split_last() else {
                return Ok(());
            };
            let copy = at(doc, &path).map(|v| v.clone());
            if let (Some(copy), Some(Value::Object(o))) = (copy, at(doc, parent)) {
                o.insert(new_key, copy);
            }
        }
    }
    Ok(())
}
