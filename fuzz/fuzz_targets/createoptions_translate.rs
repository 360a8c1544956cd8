//! The controller's createOptions translation (`ironedge_controller::translate`): Docker
//! `ContainerCreate` options (and the `k8s-experimental` section) of a module, parsed on their
//! own and translated with a whole EdgeDeployment into Kubernetes objects.
//!
//! Input: one byte chooses the form; even: the createOptions as JSON bytes (as they come out of
//! a manifest); odd: a JSON object drawn from the bytes with Docker's and Kubernetes' field names.
//!
//! Checks:
//! - nothing panics or overflows, whatever the values (integers at i64's edges included);
//! - an error names the module and the JSON path of the offending field;
//! - every unsupported field is reported: at the top level, in `HostConfig`, `k8s-experimental`,
//!   `Healthcheck`, each `Mounts`, `Devices` and `PortBindings` entry, a key the translation
//!   does not know whose value asks for something (not `null`, `false`, `0`, `""`, `[]`, `{}`)
//!   appears in `unsupported` under its own path;
//! - translating a deployment whose module has these options never panics, and the module's
//!   status notes keep every note the parse made; the objects serialise to YAML.
#![no_main]

#[path = "../common/json.rs"]
mod json;

use std::sync::LazyLock;

use arbitrary::Unstructured;
use ironedge_controller::from_manifest::{Identity, from_manifest};
use ironedge_controller::translate::create_options::{self, CreateOptions};
use ironedge_controller::translate::translate;
use ironedge_controller::{EdgeDeployment, EdgeDeploymentSpec, SpecError};
use ironedge_model::Manifest;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const KEYS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Hostname",
    "Tty",
    "OpenStdin",
    "Healthcheck",
    "StopTimeout",
    "Volumes",
    "HostConfig",
    "k8s-experimental",
    "Image",
    "Binds",
    "Mounts",
    "PortBindings",
    "Privileged",
    "CapAdd",
    "CapDrop",
    "NetworkMode",
    "IpcMode",
    "PidMode",
    "Memory",
    "MemoryReservation",
    "NanoCpus",
    "CpuQuota",
    "CpuPeriod",
    "CpuShares",
    "Devices",
    "ReadonlyRootfs",
    "ExtraHosts",
    "Dns",
    "DnsSearch",
    "DnsOptions",
    "ShmSize",
    "Tmpfs",
    "Sysctls",
    "RestartPolicy",
    "Test",
    "Interval",
    "Timeout",
    "Retries",
    "StartPeriod",
    "StartInterval",
    "Type",
    "Source",
    "Target",
    "ReadOnly",
    "PathOnHost",
    "PathInContainer",
    "CgroupPermissions",
    "HostIp",
    "HostPort",
    "nodeSelector",
    "tolerations",
    "resources",
    "volumes",
    "securityContext",
    "serviceOptions",
    "strategy",
    "limits",
    "requests",
    "cpu",
    "memory",
    "key",
    "operator",
    "value",
    "effect",
    "runAsUser",
    "type",
    "loadBalancerIP",
    "annotations",
    "rollingUpdate",
    "maxSurge",
    "volume",
    "volumeMounts",
    "name",
    "mountPath",
    "emptyDir",
    "hostPath",
    "path",
    "80/tcp",
    "53/udp",
    "443",
    "8883/tcp",
    "OomKillDisable",
    "LogConfig",
    "Ulimits",
    "Foo",
];

const STRINGS: &[&str] = &[
    "/data:/data",
    "vol:/data:ro",
    "vol:/data:rw,z",
    "/dev:/dev",
    "host",
    "bridge",
    "private",
    "CMD",
    "CMD-SHELL",
    "NONE",
    "NAME=value",
    "A",
    "1000:1000",
    "root",
    "bind",
    "volume",
    "tmpfs",
    "/dev/ttyUSB0",
    "rwm",
    "8080",
    "0",
    "0.0.0.0",
    "RollingUpdate",
    "Recreate",
    "LoadBalancer",
    "NodePort",
    "ClusterIP",
    "Exists",
    "Equal",
    "NoSchedule",
    "100m",
    "1Gi",
    "myhost:10.0.0.1",
    "always",
    "NET_ADMIN",
    "CAP_SYS_TIME",
    "/app",
    "80/tcp",
    "",
];

const DOCKER: json::JsonGen<'static> = json::JsonGen {
    keys: KEYS,
    strings: STRINGS,
    max_depth: 4,
};

fuzz_target!(|data: &[u8]| {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let options = if form % 2 == 0 {
        match serde_json::from_slice::<Value>(rest) {
            Ok(v) => v,
            Err(_) => return,
        }
    } else {
        match docker_object(&mut Unstructured::new(rest), TOP) {
            Ok(o) => Value::Object(o),
            Err(_) => return,
        }
    };
    let parsed = create_options::parse("sensor", Some(&options));
    match &parsed {
        Ok(o) => check_reported(&options, o),
        Err(SpecError::InvalidCreateOptions { module, path, .. }) => {
            assert_eq!(module, "sensor");
            assert!(path.is_empty() || path.starts_with('.'), "path {path:?}");
        }
        Err(e) => panic!("parse failed with an error that is not about createOptions: {e}"),
    }
    check_translate(&options, parsed.ok().as_ref());
});

const TOP: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Hostname",
    "Tty",
    "OpenStdin",
    "Healthcheck",
    "StopTimeout",
    "Volumes",
    "HostConfig",
    "k8s-experimental",
    "Image",
];
const HOST: &[&str] = &[
    "Binds",
    "Mounts",
    "PortBindings",
    "Privileged",
    "CapAdd",
    "CapDrop",
    "NetworkMode",
    "IpcMode",
    "PidMode",
    "Memory",
    "MemoryReservation",
    "NanoCpus",
    "CpuQuota",
    "CpuPeriod",
    "CpuShares",
    "Devices",
    "ReadonlyRootfs",
    "ExtraHosts",
    "Dns",
    "DnsSearch",
    "DnsOptions",
    "ShmSize",
    "Tmpfs",
    "Sysctls",
    "RestartPolicy",
];
const HEALTHCHECK: &[&str] = &[
    "Test",
    "Interval",
    "Timeout",
    "Retries",
    "StartPeriod",
    "StartInterval",
];
const MOUNT: &[&str] = &["Type", "Source", "Target", "ReadOnly", "BindOptions"];
const DEVICE: &[&str] = &["PathOnHost", "PathInContainer", "CgroupPermissions"];
const BINDING: &[&str] = &["HostIp", "HostPort"];
const EXPERIMENTAL: &[&str] = &[
    "nodeSelector",
    "tolerations",
    "resources",
    "volumes",
    "securityContext",
    "serviceOptions",
    "strategy",
];

/// An object whose keys mostly come from `keys` (sometimes any other key) and whose values
/// have the shape the field expects (mostly), so the generator reaches deep fields.
fn docker_object(u: &mut Unstructured<'_>, keys: &[&str]) -> arbitrary::Result<Map<String, Value>> {
    let mut map = Map::new();
    for _ in 0..u.int_in_range(1..=6)? {
        let key = if u.ratio(7, 8)? {
            (*u.choose(keys)?).to_owned()
        } else {
            DOCKER.key(u)?
        };
        let value = if u.ratio(1, 8)? {
            DOCKER.value(u)?
        } else {
            shaped(u, &key)?
        };
        map.insert(key, value);
    }
    Ok(map)
}

fn list(
    u: &mut Unstructured<'_>,
    item: fn(&mut Unstructured<'_>) -> arbitrary::Result<Value>,
) -> arbitrary::Result<Value> {
    let mut items = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        items.push(item(u)?);
    }
    Ok(Value::Array(items))
}

fn shaped(u: &mut Unstructured<'_>, key: &str) -> arbitrary::Result<Value> {
    Ok(match key {
        "HostConfig" => Value::Object(docker_object(u, HOST)?),
        "Healthcheck" => Value::Object(docker_object(u, HEALTHCHECK)?),
        "k8s-experimental" => Value::Object(docker_object(u, EXPERIMENTAL)?),
        "Mounts" => list(u, |u| Ok(Value::Object(docker_object(u, MOUNT)?)))?,
        "Devices" => list(u, |u| Ok(Value::Object(docker_object(u, DEVICE)?)))?,
        "PortBindings" | "ExposedPorts" => {
            let mut ports = Map::new();
            for _ in 0..u.int_in_range(0..=2)? {
                let port = DOCKER.string(u)?;
                ports.insert(
                    port,
                    list(u, |u| Ok(Value::Object(docker_object(u, BINDING)?)))?,
                );
            }
            Value::Object(ports)
        }
        "Env" | "Cmd" | "Entrypoint" | "Binds" | "CapAdd" | "CapDrop" | "ExtraHosts" | "Dns"
        | "DnsSearch" | "DnsOptions" | "Test" => list(u, |u| Ok(Value::String(DOCKER.string(u)?)))?,
        "Memory" | "MemoryReservation" | "NanoCpus" | "CpuQuota" | "CpuPeriod" | "CpuShares"
        | "ShmSize" | "StopTimeout" | "Interval" | "Timeout" | "Retries" | "StartPeriod"
        | "HostPort" => DOCKER.number(u)?,
        _ => DOCKER.value(u)?,
    })
}

/// Whether a value asks for nothing (the module doc's definition of a zero value).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Every key of `object` outside `known` (case-insensitive) with a non-zero value is noted at
/// `createOptions{path}.{key}` (or a note covers a parent of it).
fn unknown_keys_noted(object: &Map<String, Value>, path: &str, known: &[&str], notes: &[String]) {
    for (key, value) in object {
        if is_zero(value) || known.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            continue;
        }
        let field = format!("createOptions{path}.{key}");
        assert!(
            notes.iter().any(|n| n.starts_with(&field)),
            "unsupported field {field} was not reported; notes: {notes:?}"
        );
    }
}

fn get_ci<'v>(map: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn check_reported(options: &Value, parsed: &CreateOptions) {
    let Value::Object(top) = options else { return };
    let notes = &parsed.unsupported;
    unknown_keys_noted(
        top,
        "",
        &[
            "Env",
            "Cmd",
            "Entrypoint",
            "WorkingDir",
            "User",
            "Labels",
            "ExposedPorts",
            "Hostname",
            "Tty",
            "OpenStdin",
            "Healthcheck",
            "StopTimeout",
            "Volumes",
            "HostConfig",
            "k8s-experimental",
        ],
        notes,
    );
    for (key, value) in top {
        let path = format!(".{key}");
        let Value::Object(inner) = value else {
            continue;
        };
        match key.to_ascii_lowercase().as_str() {
            "hostconfig" => host_config(inner, &path, notes),
            "k8s-experimental" => unknown_keys_noted(
                inner,
                &path,
                &[
                    "nodeSelector",
                    "tolerations",
                    "resources",
                    "volumes",
                    "securityContext",
                    "serviceOptions",
                    "strategy",
                ],
                notes,
            ),
            "healthcheck" if get_ci(inner, "Test").is_some_and(|t| !t.is_null()) => {
                unknown_keys_noted(
                    inner,
                    &path,
                    &["Test", "Interval", "Timeout", "Retries", "StartPeriod"],
                    notes,
                );
            }
            _ => {}
        }
    }
}

fn host_config(host: &Map<String, Value>, path: &str, notes: &[String]) {
    unknown_keys_noted(
        host,
        path,
        &[
            "Binds",
            "Mounts",
            "PortBindings",
            "Privileged",
            "CapAdd",
            "CapDrop",
            "NetworkMode",
            "IpcMode",
            "PidMode",
            "Memory",
            "MemoryReservation",
            "NanoCpus",
            "CpuQuota",
            "CpuPeriod",
            "CpuShares",
            "Devices",
            "ReadonlyRootfs",
            "ExtraHosts",
            "Dns",
            "DnsSearch",
            "DnsOptions",
            "ShmSize",
            "Tmpfs",
            "Sysctls",
            "RestartPolicy",
        ],
        notes,
    );
    for (key, value) in host {
        let path = format!("{path}.{key}");
        match (key.to_ascii_lowercase().as_str(), value) {
            ("mounts", Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    // A mount of an unsupported type is reported (and skipped) as a whole.
                    let skipped = notes
                        .iter()
                        .any(|n| n.starts_with(&format!("createOptions{item_path}:")));
                    if let (Value::Object(m), false) = (item, skipped) {
                        unknown_keys_noted(
                            m,
                            &item_path,
                            &["Type", "Source", "Target", "ReadOnly"],
                            notes,
                        );
                    }
                }
            }
            ("devices", Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Object(m) = item {
                        unknown_keys_noted(
                            m,
                            &format!("{path}[{i}]"),
                            &["PathOnHost", "PathInContainer", "CgroupPermissions"],
                            notes,
                        );
                    }
                }
            }
            ("portbindings", Value::Object(ports)) => {
                for (port, hosts) in ports {
                    let Value::Array(hosts) = hosts else { continue };
                    for (i, h) in hosts.iter().enumerate() {
                        if let Value::Object(m) = h {
                            unknown_keys_noted(
                                m,
                                &format!("{path}[{port:?}][{i}]"),
                                &["HostPort"],
                                notes,
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// The quickstart manifest's EdgeDeployment spec (built once: the fixture is always valid).
static QUICKSTART: LazyLock<Option<EdgeDeploymentSpec>> = LazyLock::new(|| {
    let manifest: Manifest =
        include_str!("../../crates/model/tests/manifests/valid/quickstart-temperature-sensor.json")
            .parse()
            .ok()?;
    let identity = Identity {
        device_id: "dev1".into(),
        hub_host_name: "hub.example.net".into(),
        ..Identity::default()
    };
    Some(from_manifest(&manifest, &identity).spec)
});

/// The quickstart deployment with the fuzzed options on its sensor module.
fn check_translate(options: &Value, parsed: Option<&CreateOptions>) {
    let Some(mut spec) = QUICKSTART.clone() else {
        return;
    };
    let Some(module) = spec.modules.iter_mut().find(|m| m.name != "$edgeHub") else {
        return;
    };
    module.create_options = Some(options.clone());
    let name = module.name.clone();
    let mut ed = EdgeDeployment::new("dev1", spec);
    ed.metadata.namespace = Some("dev1".into());
    ed.metadata.uid = Some("0a1b2c3d-0000-4000-8000-000000000001".into());
    match translate(&ed) {
        Ok(desired) => {
            let Some(parsed) = parsed else {
                panic!("translation accepted options that do not parse");
            };
            let Some(translated) = desired.modules.iter().find(|m| m.id == name) else {
                panic!("module {name} missing from the translation");
            };
            for note in &parsed.unsupported {
                assert!(
                    translated.unsupported.contains(note),
                    "note {note:?} lost in translation"
                );
            }
            let _ = desired.to_yaml();
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
