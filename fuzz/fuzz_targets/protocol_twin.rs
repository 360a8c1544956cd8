//! Twin documents and patches (`ironedge_protocol::Twin`): a sequence of desired, reported and
//! tags patches and replacements, raw patch bodies (`parse_patch`) and `If-Match` checks.
//!
//! Patches are JSON drawn with keys and values at the twin limits (names with `.`, `$`, `#`,
//! spaces or control characters, names over 1 KiB, strings over 4 KiB, integers past ±2^52,
//! nulls in arrays, nesting past 10 levels, sections past 32 KiB and tags past 8 KiB).
//!
//! Checks after every step:
//! - a refused patch leaves the whole twin exactly as it was;
//! - an accepted patch gives what an independent RFC 7396 merge gives, bumps the section's
//!   `$version` and the twin version by one, leaves a section that passes `validate` and is
//!   within its size limit, and `$metadata` holds `$lastUpdated` for every property;
//! - the desired notification is the patch plus the new `$version`;
//! - the current etag (bare or quoted) and `*` pass `If-Match`.
#![no_main]

#[path = "../common/json.rs"]
mod json;

use std::sync::LazyLock;

use arbitrary::{Result, Unstructured};
use ironedge_protocol::{
    MAX_SECTION_BYTES, MAX_TAGS_BYTES, Twin, TwinError, TwinSection, desired_notification,
    parse_patch, validate,
};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// Keys and strings at and past the twin limits.
static WORDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut words: Vec<String> = [
        "a",
        "b",
        "c",
        "temp",
        "nested",
        "$version",
        "$metadata",
        "$x",
        "a.b",
        "a b",
        "",
        "x#y",
        "tab\there",
        "\u{7f}",
        "é",
        "true",
        "null",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    words.push("k".repeat(1024));
    words.push("k".repeat(1025));
    words.push("v".repeat(4096));
    words.push("v".repeat(4097));
    words.push("w".repeat(3000));
    words
});

fuzz_target!(|data: &[u8]| {
    let words: Vec<&str> = WORDS.iter().map(String::as_str).collect();
    let generator = json::JsonGen {
        keys: &words,
        strings: &words,
        max_depth: 4,
    };
    let mut u = Unstructured::new(data);
    let mut twin = Twin::new();
    for _ in 0..u.int_in_range(1..=12).unwrap_or(1) {
        if step(&mut twin, &generator, &mut u).is_err() {
            break;
        }
    }
});

fn patch(generator: &json::JsonGen<'_>, u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0..=7)? {
        0 => generator.value(u)?,
        1 => {
            // A chain of objects around the limit of 10 levels.
            let mut v = generator.value(u)?;
            for _ in 0..u.int_in_range(8..=12)? {
                let mut m = Map::new();
                m.insert(generator.key(u)?, v);
                v = Value::Object(m);
            }
            v
        }
        _ => Value::Object(generator.object(u)?),
    })
}

fn now(u: &mut Unstructured<'_>) -> Result<Timestamp> {
    let secs = u.int_in_range(0..=4_102_444_800)?;
    Ok(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn step(twin: &mut Twin, generator: &json::JsonGen<'_>, u: &mut Unstructured<'_>) -> Result<()> {
    let before = twin.clone();
    let now = now(u)?;
    match u.int_in_range(0..=6)? {
        0 => {
            let p = patch(generator, u)?;
            let result = twin.patch_desired(&p, now);
            check_section(
                &before,
                twin,
                &before.desired,
                &twin.desired,
                &p,
                result.is_ok(),
            );
            if let Ok(notification) = result {
                assert_eq!(notification, desired_notification(&p, twin.desired.version));
                assert_eq!(notification["$version"], Value::from(twin.desired.version));
            }
        }
        1 => {
            let p = patch(generator, u)?;
            let result = twin.patch_reported(&p, now);
            check_section(
                &before,
                twin,
                &before.reported,
                &twin.reported,
                &p,
                result.is_ok(),
            );
            if let Ok(version) = result {
                assert_eq!(version, twin.reported.version);
            }
        }
        2 => {
            let p = patch(generator, u)?;
            let result = twin.patch_tags(&p);
            check_tags(&before, twin, &p, false, result);
        }
        3 => {
            let p = patch(generator, u)?;
            let result = twin.replace_tags(&p);
            check_tags(&before, twin, &p, true, result);
        }
        4 => {
            let p = patch(generator, u)?;
            let section = if u.arbitrary()? {
                &mut twin.desired
            } else {
                &mut twin.reported
            };
            let old = section.clone();
            let result = section.replace(&p, now);
            if result.is_ok() {
                let expected = rfc7396(&Map::new(), &strip(&p));
                assert_eq!(section.properties, expected);
                assert_eq!(section.version, old.version + 1);
                check_valid_section(section, MAX_SECTION_BYTES);
            } else {
                assert_eq!(*section, old, "a refused replace changed the section");
            }
        }
        5 => {
            let body: Vec<u8> = u.arbitrary()?;
            if let Ok(p) = parse_patch(&body) {
                assert!(p.is_object());
                let result = twin.patch_reported(&p, now);
                check_section(
                    &before,
                    twin,
                    &before.reported,
                    &twin.reported,
                    &p,
                    result.is_ok(),
                );
            }
        }
        _ => {
            let etag = twin.etag();
            assert_eq!(twin.check_etag(Some(&etag)), Ok(()));
            assert_eq!(twin.check_etag(Some(&format!("\"{etag}\""))), Ok(()));
            assert_eq!(twin.check_etag(Some("*")), Ok(()));
            assert_eq!(twin.check_etag(None), Ok(()));
            let other: String = u.arbitrary()?;
            let trimmed = other.trim().trim_matches('"');
            if trimmed != etag && trimmed != "*" {
                assert!(matches!(
                    twin.check_etag(Some(&other)),
                    Err(TwinError::EtagMismatch { .. })
                ));
            }
        }
    }
    Ok(())
}

fn check_section(
    before: &Twin,
    after: &Twin,
    old: &TwinSection,
    new: &TwinSection,
    patch: &Value,
    accepted: bool,
) {
    if !accepted {
        assert_eq!(after, before, "a refused patch changed the twin");
        return;
    }
    assert_eq!(
        new.properties,
        rfc7396(&old.properties, &strip(patch)),
        "merge differs from RFC 7396"
    );
    assert_eq!(new.version, old.version + 1);
    assert_eq!(after.version, before.version + 1);
    assert_ne!(after.etag(), before.etag());
    check_valid_section(new, MAX_SECTION_BYTES);
}

fn check_tags(
    before: &Twin,
    after: &Twin,
    patch: &Value,
    replace: bool,
    result: std::result::Result<(), TwinError>,
) {
    if result.is_err() {
        assert_eq!(after, before, "a refused tags patch changed the twin");
        return;
    }
    let Value::Object(p) = patch else {
        panic!("a non-object tags patch was accepted");
    };
    let base = if replace {
        Map::new()
    } else {
        before.tags.clone()
    };
    assert_eq!(after.tags, rfc7396(&base, p));
    assert_eq!(after.version, before.version + 1);
    assert_eq!(validate(&after.tags, "tags"), Ok(()));
    assert!(serde_json::to_vec(&after.tags).map_or(0, |b| b.len()) <= MAX_TAGS_BYTES);
}

fn check_valid_section(section: &TwinSection, max: usize) {
    assert_eq!(validate(&section.properties, "section"), Ok(()));
    assert!(serde_json::to_vec(&section.properties).map_or(0, |b| b.len()) <= max);
    metadata_covers(&section.properties, &section.metadata);
    let json = section.to_service_json();
    assert_eq!(json["$version"], Value::from(section.version));
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

/// The patch without the top-level keys a twin section ignores.
fn strip(patch: &Value) -> Map<String, Value> {
    let mut p = patch.as_object().cloned().unwrap_or_default();
    p.remove("$version");
    p.remove("$metadata");
    p
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
