//! The cloud hub's REST bodies where handling them is a pure function: device and module
//! identities (`PUT /devices/{id}[/modules/{mid}]`), configurations (`PUT /configurations/{id}`,
//! then edge assignment), twin writes (`PATCH`/`PUT /twins/{id}`, reported patches from
//! devices, configuration-driven desired properties) and `If-Match` headers.
//!
//! Input: one byte chooses the body kind; then the body (JSON bytes as a client sends them, up
//! to a NUL byte; with the high bit of the first byte set, JSON drawn from the bytes with the
//! REST field names instead), then bytes for ids and follow-up requests.
//!
//! Checks:
//! - nothing panics;
//! - identities: an accepted create has the path's id, revision 1 and usable keys, refuses a
//!   second create, accepts an update with its etag and refuses a stale one, and survives a
//!   serde round trip;
//! - configurations: an accepted one has a parseable target condition, and every metric query,
//!   including the hub's own system metrics built around the target condition, parses;
//!   assigning it to an edge twin never panics;
//! - twins: a refused write leaves the twin exactly as it was; an accepted one gives the
//!   RFC 7396 merge of what was sent, bumps the versions, stays within the twin rules and
//!   limits, and keeps `$metadata` for every property.
#![no_main]

#[path = "../common/json.rs"]
mod json;

use arbitrary::{Result, Unstructured};
use ironedge_hub::configuration::{Configuration, ConfigurationRequest, assign_edge};
use ironedge_hub::etag;
use ironedge_hub::query::parse_query;
use ironedge_hub::registry::{
    AuthType, Device, DeviceRequest, IfMatch, Module, ModuleRequest, RegistryError,
};
use ironedge_hub::twin::{MAX_SECTION_BYTES, MAX_TAGS_BYTES, ServicePatch, Twin, validate_patch};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const NOW: &str = "2026-03-30T16:24:48.789Z";

const KEYS: &[&str] = &[
    "deviceId",
    "moduleId",
    "status",
    "statusReason",
    "authentication",
    "type",
    "symmetricKey",
    "primaryKey",
    "secondaryKey",
    "x509Thumbprint",
    "primaryThumbprint",
    "capabilities",
    "iotEdge",
    "deviceScope",
    "parentScopes",
    "managedBy",
    "id",
    "labels",
    "content",
    "modulesContent",
    "deviceContent",
    "moduleContent",
    "targetCondition",
    "priority",
    "metrics",
    "queries",
    "$edgeAgent",
    "$edgeHub",
    "properties.desired",
    "properties.desired.modules.m",
    "properties.desired.routes.r",
    "tags",
    "properties",
    "desired",
    "reported",
    "$version",
    "$metadata",
    "a",
    "b",
    "a.b",
    "a b",
    "",
];

const STRINGS: &[&str] = &[
    "enabled",
    "disabled",
    "sas",
    "selfSigned",
    "certificateAuthority",
    "none",
    "AAAAAAAAAAAAAAAAAAAAAA==",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "not base64",
    "",
    "*",
    "tags.env = 'prod'",
    "deviceId = 'd1'",
    "capabilities.iotEdge = true AND tags.x IN ['a', 'b']",
    "SELECT deviceId FROM devices WHERE tags.x = 1",
    "SELECT COUNT() FROM devices.modules GROUP BY status",
    "NOT (",
    "a = 'x') OR (b = 'y'",
    "d1",
    "iotEdge",
];

const REST: json::JsonGen<'static> = json::JsonGen {
    keys: KEYS,
    strings: STRINGS,
    max_depth: 4,
};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let (body, rest) = if kind & 0x80 == 0 {
        match rest.iter().position(|b| *b == 0) {
            Some(i) => (rest[..i].to_vec(), &rest[i + 1..]),
            None => (rest.to_vec(), &[][..]),
        }
    } else {
        let mut u = Unstructured::new(rest);
        let body = REST.value(&mut u).unwrap_or(Value::Null);
        let used = rest.len() - u.len();
        (serde_json::to_vec(&body).unwrap_or_default(), &rest[used..])
    };
    let mut u = Unstructured::new(rest);
    let _ = match kind % 5 {
        0 => device(&body, &mut u),
        1 => module(&body, &mut u),
        2 => configuration(&body, &mut u),
        3 => twin(&body, &mut u),
        _ => if_match(&body),
    };
});

fn id(u: &mut Unstructured<'_>, default: &str) -> Result<String> {
    Ok(if u.ratio(1, 4)? {
        u.arbitrary()?
    } else {
        default.to_owned()
    })
}

fn check_keys(auth: &ironedge_hub::registry::Authentication) {
    if auth.kind == AuthType::Sas {
        let keys: Vec<&str> = auth.symmetric_key.keys().collect();
        assert_eq!(keys.len(), 2, "a SAS identity without both keys");
    }
}

fn device(body: &[u8], u: &mut Unstructured<'_>) -> Result<()> {
    let Ok(req) = serde_json::from_slice::<DeviceRequest>(body) else {
        return Ok(());
    };
    let id = id(u, "d1")?;
    let created = match Device::apply_request(&id, req.clone(), None, &IfMatch::Absent, NOW) {
        Ok(d) => d,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return Ok(());
        }
    };
    assert_eq!(
        (created.device_id.as_str(), created.revision),
        (id.as_str(), 1)
    );
    assert_eq!(created.etag, etag::identity(1));
    check_keys(&created.authentication);
    let json = serde_json::to_value(&created).unwrap_or(Value::Null);
    assert_eq!(
        serde_json::from_value::<Device>(json).ok().as_ref(),
        Some(&created)
    );
    assert!(matches!(
        Device::apply_request(&id, req.clone(), Some(&created), &IfMatch::Absent, NOW),
        Err(RegistryError::AlreadyExists { .. })
    ));
    let stale = IfMatch::Etag(etag::identity(7));
    assert!(matches!(
        Device::apply_request(&id, req.clone(), Some(&created), &stale, NOW),
        Err(RegistryError::PreconditionFailed { .. })
    ));
    let update: DeviceRequest = serde_json::from_value(REST.value(u)?).unwrap_or_default();
    let current = IfMatch::Etag(created.etag.clone());
    if let Ok(updated) = Device::apply_request(&id, update, Some(&created), &current, NOW) {
        assert_eq!(updated.revision, 2);
        assert_eq!(updated.generation_id, created.generation_id);
        check_keys(&updated.authentication);
    }
    let modules = created.missing_edge_modules(|_| false);
    assert_eq!(
        modules.len(),
        if created.capabilities.iot_edge { 2 } else { 0 }
    );
    Ok(())
}

fn module(body: &[u8], u: &mut Unstructured<'_>) -> Result<()> {
    let Ok(req) = serde_json::from_slice::<ModuleRequest>(body) else {
        return Ok(());
    };
    let device_id = id(u, "d1")?;
    let module_id = id(u, "m1")?;
    let created =
        match Module::apply_request(&device_id, &module_id, req.clone(), None, &IfMatch::Absent) {
            Ok(m) => m,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return Ok(());
            }
        };
    assert_eq!(
        (created.module_id.as_str(), created.revision),
        (module_id.as_str(), 1)
    );
    check_keys(&created.authentication);
    let json = serde_json::to_value(&created).unwrap_or(Value::Null);
    assert_eq!(
        serde_json::from_value::<Module>(json).ok().as_ref(),
        Some(&created)
    );
    assert!(
        Module::apply_request(
            &device_id,
            &module_id,
            req.clone(),
            Some(&created),
            &IfMatch::Absent
        )
        .is_err()
    );
    let updated = Module::apply_request(&device_id, &module_id, req, Some(&created), &IfMatch::Any);
    if let Ok(updated) = updated {
        assert_eq!(updated.revision, 2);
    }
    Ok(())
}

fn configuration(body: &[u8], u: &mut Unstructured<'_>) -> Result<()> {
    let Ok(req) = serde_json::from_slice::<ConfigurationRequest>(body) else {
        return Ok(());
    };
    let id = id(u, "dep1")?;
    let config = match Configuration::apply_request(&id, req, None, &IfMatch::Absent, NOW) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return Ok(());
        }
    };
    assert!(
        config.condition().is_some(),
        "accepted target condition {:?} does not parse",
        config.target_condition
    );
    for (name, query) in config
        .metrics
        .queries
        .iter()
        .chain(&config.system_metrics.queries)
    {
        if let Err(e) = parse_query(query) {
            panic!(
                "metric {name:?} of configuration {id:?} with targetCondition {:?} does not parse: {query:?}: {e}",
                config.target_condition
            );
        }
    }
    let json = serde_json::to_value(&config).unwrap_or(Value::Null);
    assert_eq!(
        serde_json::from_value::<Configuration>(json).ok().as_ref(),
        Some(&config)
    );
    let mut twin = REST.object(u)?;
    let mut capabilities = Map::new();
    capabilities.insert("iotEdge".into(), Value::Bool(true));
    twin.insert("capabilities".into(), Value::Object(capabilities));
    let other = Configuration::apply_request(
        "layer",
        serde_json::from_value(REST.value(u)?).unwrap_or_default(),
        None,
        &IfMatch::Absent,
        NOW,
    );
    let mut configs = vec![config];
    configs.extend(other);
    let assignment = assign_edge(&Value::Object(twin), &configs);
    assert!(assignment.statuses.len() <= configs.len());
    Ok(())
}

fn if_match(body: &[u8]) -> Result<()> {
    let header = String::from_utf8_lossy(body);
    let parsed = IfMatch::parse(Some(&header));
    match &parsed {
        IfMatch::Absent => assert!(header.trim().is_empty()),
        IfMatch::Any => {}
        IfMatch::Etag(e) => assert_eq!(parsed.check(e), Ok(())),
    }
    Ok(())
}

// === Twins ===

fn twin(body: &[u8], u: &mut Unstructured<'_>) -> Result<()> {
    let mut twin = Twin::new("d1", None, NOW);
    let first: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut next = Some(first);
    for _ in 0..u.int_in_range(1..=8)? {
        let value = match next.take() {
            Some(v) => v,
            None => REST.value(u)?,
        };
        let before = twin.clone();
        match u.int_in_range(0..=3)? {
            0 => {
                let Ok(patch) = serde_json::from_value::<ServicePatch>(value) else {
                    continue;
                };
                let result = twin.patch(&patch, NOW);
                if result.is_err() {
                    assert_eq!(twin, before, "a refused PATCH changed the twin");
                    continue;
                }
                let tags = patch.tags.as_ref().filter(|t| !t.is_empty());
                let expected_tags =
                    tags.map_or_else(|| before.tags.clone(), |t| rfc7396(&before.tags, t));
                assert_eq!(twin.tags, expected_tags);
                let desired = patch
                    .properties
                    .as_ref()
                    .and_then(|p| p.desired.as_ref())
                    .map(strip_system)
                    .filter(|d| !d.is_empty());
                let expected = desired.as_ref().map_or_else(
                    || before.desired.properties.clone(),
                    |d| rfc7396(&before.desired.properties, d),
                );
                assert_eq!(twin.desired.properties, expected);
                let bump = u64::from(desired.is_some());
                assert_eq!(twin.desired.version, before.desired.version + bump);
                assert_eq!(twin.version, before.version + 1);
            }
            1 => {
                let Value::Object(doc) = value else { continue };
                let tags = doc
                    .get("tags")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let desired = doc
                    .get("desired")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                if twin.replace(&tags, &desired, NOW).is_err() {
                    assert_eq!(twin, before, "a refused PUT changed the twin");
                    continue;
                }
                assert_eq!(twin.tags, rfc7396(&Map::new(), &tags));
                assert_eq!(
                    twin.desired.properties,
                    rfc7396(&Map::new(), &strip_system(&desired))
                );
            }
            2 => {
                if twin.patch_reported(&value, NOW).is_err() {
                    assert_eq!(twin, before, "a refused reported patch changed the twin");
                    continue;
                }
                let patch = strip_system(value.as_object().unwrap_or(&Map::new()));
                assert_eq!(
                    twin.reported.properties,
                    rfc7396(&before.reported.properties, &patch)
                );
                assert_eq!(twin.reported.version, before.reported.version + 1);
            }
            _ => {
                let Value::Object(desired) = value else {
                    continue;
                };
                match twin.set_desired(&desired, NOW) {
                    Err(_) => {
                        assert_eq!(
                            twin, before,
                            "a refused configuration write changed the twin"
                        );
                        continue;
                    }
                    Ok(None) => assert_eq!(twin, before),
                    Ok(Some(notification)) => {
                        assert_eq!(notification["$version"], Value::from(twin.desired.version));
                    }
                }
                assert_eq!(
                    twin.desired.properties,
                    rfc7396(&Map::new(), &strip_system(&desired))
                );
            }
        }
        check_twin(&twin);
        assert_eq!(twin.check_if_match(&IfMatch::Etag(twin.etag())), Ok(()));
    }
    Ok(())
}

fn check_twin(twin: &Twin) {
    assert_eq!(validate_patch("tags", &twin.tags), Ok(()));
    assert_eq!(
        validate_patch("properties.desired", &twin.desired.properties),
        Ok(())
    );
    assert_eq!(
        validate_patch("properties.reported", &twin.reported.properties),
        Ok(())
    );
    let size = |m: &Map<String, Value>| serde_json::to_vec(m).map_or(0, |b| b.len());
    assert!(size(&twin.tags) <= MAX_TAGS_BYTES);
    assert!(size(&twin.desired.properties) <= MAX_SECTION_BYTES);
    assert!(size(&twin.reported.properties) <= MAX_SECTION_BYTES);
    metadata_covers(&twin.desired.properties, &twin.desired.metadata);
    metadata_covers(&twin.reported.properties, &twin.reported.metadata);
}

fn metadata_covers(props: &Map<String, Value>, meta: &Map<String, Value>) {
    for (k, v) in props {
        let Some(Value::Object(m)) = meta.get(k) else {
            panic!("no $metadata for {k:?}");
        };
        assert!(m.contains_key("$lastUpdated"), "no $lastUpdated for {k:?}");
        if let Value::Object(child) = v {
            metadata_covers(child, m);
        }
    }
}

fn strip_system(m: &Map<String, Value>) -> Map<String, Value> {
    let mut m = m.clone();
    m.remove("$version");
    m.remove("$metadata");
    m
}

/// RFC 7396 MergePatch, written from the RFC's pseudo-code.
fn rfc7396(target: &Map<String, Value>, patch: &Map<String, Value>) -> Map<String, Value> {
    let mut out = target.clone();
    for (k, v) in patch {
        match v {
            Value::Null => {
                out.remove(k);
            }
            Value::Object(p) => {
                let base = match out.get(k) {
                    Some(Value::Object(t)) => t.clone(),
                    _ => Map::new(),
                };
                out.insert(k.clone(), Value::Object(rfc7396(&base, p)));
            }
            other => {
                out.insert(k.clone(), other.clone());
            }
        }
    }
    out
}
