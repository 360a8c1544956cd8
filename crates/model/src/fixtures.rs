//! Test fixtures: minimal valid desired properties and helpers to edit them by JSON pointer.

use serde_json::{Value, json};

use crate::error::Checked;

/// Minimal valid `$edgeAgent` desired properties (schema 1.1) with one user module `temp`.
pub(crate) fn agent_desired() -> Value {
    json!({
        "schemaVersion": "1.1",
        "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
        "systemModules": {
            "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
            "edgeHub": {"type": "docker", "status": "running",
                        "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5"}}
        },
        "modules": {
            "temp": {"type": "docker", "status": "running",
                     "settings": {"image": "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5"}}
        }
    })
}

/// Minimal valid `$edgeHub` desired properties (schema 1.1) with one route `up`.
pub(crate) fn hub_desired() -> Value {
    json!({
        "schemaVersion": "1.1",
        "routes": {"up": "FROM /messages/* INTO $upstream"},
        "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}
    })
}

/// A minimal valid manifest built from [`agent_desired`] and [`hub_desired`].
pub(crate) fn manifest() -> Value {
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": agent_desired()},
        "$edgeHub": {"properties.desired": hub_desired()}
    }})
}

/// Sets the value at a JSON pointer (`/modules/temp/status`), creating the last key if needed.
pub(crate) fn set(doc: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a '/'");
    let key = key.replace("~1", "/").replace("~0", "~");
    let target = doc.pointer_mut(parent).expect("parent exists");
    target
        .as_object_mut()
        .expect("parent is an object")
        .insert(key, new);
}

/// Removes the key at a JSON pointer.
pub(crate) fn remove(doc: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a '/'");
    doc.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("parent is an object")
        .shift_remove(key);
}

/// `base` with `pointer` set to `new`.
pub(crate) fn with(mut base: Value, pointer: &str, new: Value) -> Value {
    set(&mut base, pointer, new);
    base
}

/// `base` without `pointer`.
pub(crate) fn without(mut base: Value, pointer: &str) -> Value {
    remove(&mut base, pointer);
    base
}

/// The errors of a check as `path: reason` lines (empty when valid).
pub(crate) fn errors<T>(checked: &Checked<T>) -> Vec<String> {
    match &checked.result {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

/// The warnings of a check as `path: reason` lines.
pub(crate) fn warnings<T>(checked: &Checked<T>) -> Vec<String> {
    checked.warnings.iter().map(ToString::to_string).collect()
}
