//! Checks shared by the manifest targets: what `ironedge_model::validate` returns must be usable.

// Each target includes this file and uses only part of it.
#![allow(dead_code)]

use ironedge_model::{Manifest, Segment, ValidationErrors, validate};
use serde_json::Value;

/// Validates `bytes` (and, when they are JSON, the parsed value) and checks the outcome.
pub fn check_bytes(bytes: &[u8]) {
    let checked = validate(bytes);
    let doc = serde_json::from_slice::<Value>(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes));
    if let Ok(doc) = &doc {
        // Bytes and the value they parse to are one manifest: same outcome either way.
        assert_eq!(
            Manifest::check_value(doc).result,
            checked.result,
            "validating bytes and their parsed JSON disagree"
        );
    }
    match checked.result {
        Ok(manifest) => check_valid(&manifest),
        Err(errors) => check_errors(&errors, doc.as_ref().ok()),
    }
}

/// Validates a JSON document and checks the outcome, including through its serialised bytes.
pub fn check_value(doc: &Value) {
    let checked = Manifest::check_value(doc);
    let bytes = serde_json::to_vec(doc).unwrap_or_default();
    assert_eq!(
        validate(&bytes).result,
        checked.result,
        "validating a value and its serialisation disagree"
    );
    match checked.result {
        Ok(manifest) => check_valid(&manifest),
        Err(errors) => check_errors(&errors, Some(doc)),
    }
}

/// A valid manifest writes out to JSON that validates to an equal manifest.
fn check_valid(manifest: &Manifest) {
    let written = manifest.to_value();
    match Manifest::from_value(&written) {
        Ok(again) => assert_eq!(
            &again, manifest,
            "to_value → from_value changed the manifest"
        ),
        Err(errors) => panic!("to_value wrote a manifest that does not validate: {errors:?}"),
    }
}

/// Errors exist, print as `path: reason`, carry a known status code, and point into the
/// document: every step of the path exists, except a final missing key or index (a required
/// field that is absent), or steps below a string (JSON embedded in a string, like createOptions).
fn check_errors(errors: &ValidationErrors, doc: Option<&Value>) {
    assert!(!errors.is_empty(), "an Err with no errors");
    assert!(matches!(errors.status_code(), 400 | 412 | 417));
    for e in errors.iter() {
        let printed = e.to_string();
        let path = e.path.to_string();
        assert!(
            printed.starts_with(&path),
            "{printed:?} does not start with {path:?}"
        );
        assert!(printed.len() > path.len() + 2, "{printed:?} has no reason");
        if let Some(doc) = doc {
            assert!(
                grounded(doc, e.path.segments()),
                "{printed:?} points outside the document"
            );
        }
    }
}

fn grounded(doc: &Value, segments: &[Segment]) -> bool {
    let mut node = doc;
    for (i, segment) in segments.iter().enumerate() {
        let next = match (segment, node) {
            (Segment::Key(k), Value::Object(o)) => o.get(k),
            (Segment::Index(n), Value::Array(a)) => a.get(*n),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return i + 1 == segments.len() || node.is_string(),
        }
    }
    true
}
