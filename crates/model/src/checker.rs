//! The validation walk: reads a `serde_json::Value` field by field, records every error and
//! warning with its path, and keeps going so that one run reports everything.
//!
//! Each `check_*` function in the concept modules takes a [`Checker`] and returns `Option<T>`:
//! `None` means "this part is invalid, and the errors are recorded"; the caller carries on.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::error::{
    Checked, ErrorKind, Found, ManifestError, ManifestWarning, ValidationErrors, WarningKind,
};
use crate::path::JsonPath;

/// Collects errors and warnings during one validation.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    errors: Vec<ManifestError>,
    warnings: Vec<ManifestWarning>,
}

impl Checker {
    /// Records an error at `path`.
    pub(crate) fn error(&mut self, path: &JsonPath, kind: ErrorKind) {
        self.errors.push(ManifestError {
            path: path.clone(),
            kind,
        });
    }

    /// Records a warning at `path`.
    pub(crate) fn warn(&mut self, path: &JsonPath, kind: WarningKind) {
        self.warnings.push(ManifestWarning {
            path: path.clone(),
            kind,
        });
    }

    /// How many errors so far (to tell whether a sub-check added any).
    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Turns the walk's outcome into a [`Checked`].
    pub(crate) fn finish<T>(self, value: Option<T>) -> Checked<T> {
        let result = match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ if self.errors.is_empty() => {
                // A check returned None without saying why: a bug, but never a silent acceptance.
                Err(ValidationErrors::new(vec![ManifestError {
                    path: JsonPath::root(),
                    kind: ErrorKind::InvalidValue {
                        value: "document".into(),
                        expected: "a valid deployment manifest",
                    },
                }]))
            }
            _ => Err(ValidationErrors::new(self.errors)),
        };
        Checked {
            result,
            warnings: self.warnings,
        }
    }

    fn wrong_type(&mut self, path: &JsonPath, expected: &'static str, value: &Value) {
        self.error(
            path,
            ErrorKind::WrongType {
                expected,
                found: Found::of(value),
            },
        );
    }

    /// `value` as an object, or a type error.
    pub(crate) fn object<'a>(
        &mut self,
        value: &'a Value,
        path: &JsonPath,
    ) -> Option<&'a Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.wrong_type(path, "an object", other);
                None
            }
        }
    }

    /// `value` as a string, or a type error.
    pub(crate) fn string<'a>(&mut self, value: &'a Value, path: &JsonPath) -> Option<&'a str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(path, "a string", other);
                None
            }
        }
    }

    /// `value` as a string that is not empty or whitespace.
    pub(crate) fn non_blank<'a>(&mut self, value: &'a Value, path: &JsonPath) -> Option<&'a str> {
        let s = self.string(value, path)?;
        if s.trim().is_empty() {
            self.error(path, ErrorKind::Blank);
            None
        } else {
            Some(s)
        }
    }

    /// `value` as an integer in `min..=max`, or an error naming the range.
    pub(crate) fn integer(
        &mut self,
        value: &Value,
        path: &JsonPath,
        min: i64,
        max: i64,
        expected: &'static str,
    ) -> Option<i64> {
        let Value::Number(n) = value else {
            self.wrong_type(path, expected, value);
            return None;
        };
        let int = n.as_i64().or_else(|| integral_f64(n.as_f64()?));
        match int {
            Some(i) if (min..=max).contains(&i) => Some(i),
            _ => {
                self.error(
                    path,
                    ErrorKind::InvalidValue {
                        value: n.to_string(),
                        expected,
                    },
                );
                None
            }
        }
    }

    /// `value` as a `u32`.
    pub(crate) fn u32(&mut self, value: &Value, path: &JsonPath) -> Option<u32> {
        let i = self.integer(
            value,
            path,
            0,
            i64::from(u32::MAX),
            "an integer from 0 to 4294967295",
        )?;
        u32::try_from(i).ok()
    }
}

/// Reads the twin's `$version` (an integer the hub sets), if present.
pub(crate) fn twin_version(c: &mut Checker, f: &mut Fields<'_>) -> Option<i64> {
    let value = f.optional("$version")?;
    c.integer(
        value,
        &f.path_of("$version"),
        i64::MIN,
        i64::MAX,
        "an integer",
    )
}

/// An `f64` with no fractional part, as an `i64` (JSON writers sometimes emit `1.0`).
fn integral_f64(f: f64) -> Option<i64> {
    // Bounds are exact powers of two, so the comparison and the cast below are exact.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f) {
        #[allow(clippy::cast_possible_truncation)]
        Some(f as i64)
    } else {
        None
    }
}

/// The fields of one JSON object being read: remembers which keys were used, so that the rest
/// can be reported as unknown.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: JsonPath,
    used: HashSet<&'a str>,
}

impl<'a> Fields<'a> {
    /// Starts reading `map`, found at `path`.
    pub(crate) fn new(map: &'a Map<String, Value>, path: &JsonPath) -> Self {
        Self {
            map,
            path: path.clone(),
            used: HashSet::new(),
        }
    }

    /// The object's own path.
    pub(crate) fn path(&self) -> &JsonPath {
        &self.path
    }

    /// The path of `key` inside this object.
    pub(crate) fn path_of(&self, key: &str) -> JsonPath {
        self.path.key(key)
    }

    /// The raw map (for keys matched by pattern, like createOptions chunks).
    pub(crate) fn map(&self) -> &'a Map<String, Value> {
        self.map
    }

    /// Marks `key` as known.
    pub(crate) fn mark_used(&mut self, key: &'a str) {
        self.used.insert(key);
    }

    /// The value of `key`, including an explicit `null`; marks the key as known.
    pub(crate) fn raw(&mut self, key: &str) -> Option<&'a Value> {
        let (k, v) = self.map.get_key_value(key)?;
        self.used.insert(k.as_str());
        Some(v)
    }

    /// The value of `key`; absent and `null` both read as `None` (IoT Edge treats them alike).
    pub(crate) fn optional(&mut self, key: &str) -> Option<&'a Value> {
        self.raw(key).filter(|v| !v.is_null())
    }

    /// The value of `key` matched case-insensitively (for keys IoT Edge reads that way).
    pub(crate) fn optional_ci(&mut self, key: &str) -> Option<(&'a str, &'a Value)> {
        let (k, v) = self
            .map
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .or_else(|| self.map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))?;
        self.used.insert(k.as_str());
        (!v.is_null()).then_some((k.as_str(), v))
    }

    /// The value of a required `key`; records `Missing` when it is absent. `null` is returned as
    /// is, so that the typed read reports "expected …, found null".
    pub(crate) fn required(&mut self, c: &mut Checker, key: &str) -> Option<&'a Value> {
        let value = self.raw(key);
        if value.is_none() {
            c.error(&self.path_of(key), ErrorKind::Missing);
        }
        value
    }

    /// A required string field.
    pub(crate) fn required_string(&mut self, c: &mut Checker, key: &str) -> Option<&'a str> {
        let value = self.required(c, key)?;
        c.string(value, &self.path_of(key))
    }

    /// A required string field that must not be blank.
    pub(crate) fn required_non_blank(&mut self, c: &mut Checker, key: &str) -> Option<&'a str> {
        let value = self.required(c, key)?;
        c.non_blank(value, &self.path_of(key))
    }

    /// An optional string field; `Err(())` when present but not a string (error recorded).
    pub(crate) fn optional_string(
        &mut self,
        c: &mut Checker,
        key: &str,
    ) -> Result<Option<&'a str>, ()> {
        match self.optional(key) {
            None => Ok(None),
            Some(v) => c.string(v, &self.path_of(key)).map(Some).ok_or(()),
        }
    }

    /// Warns about every key not read, except twin metadata (`$version`, `$metadata`, …).
    pub(crate) fn finish(self, c: &mut Checker) {
        for key in self.map.keys() {
            if !self.used.contains(key.as_str()) && !key.starts_with('$') {
                c.warn(&self.path.key(key.as_str()), WarningKind::UnknownField);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn integers_accept_integral_floats_and_reject_fractions_and_ranges() {
        let mut c = Checker::default();
        let p = JsonPath::root();
        assert_eq!(c.u32(&json!(7), &p), Some(7));
        assert_eq!(c.u32(&json!(7.0), &p), Some(7));
        assert_eq!(c.u32(&json!(4_294_967_295_u64), &p), Some(u32::MAX));
        assert_eq!(c.u32(&json!(7.5), &p), None);
        assert_eq!(c.u32(&json!(-1), &p), None);
        assert_eq!(c.u32(&json!(4_294_967_296_u64), &p), None);
        assert_eq!(c.u32(&json!(1e300), &p), None);
        assert_eq!(c.u32(&json!("7"), &p), None);
        assert_eq!(c.error_count(), 5);
    }

    #[test]
    fn unknown_keys_warn_but_twin_metadata_does_not() {
        let map = json!({"known": 1, "typo": 2, "$metadata": {}});
        let mut c = Checker::default();
        let mut fields = Fields::new(map.as_object().unwrap(), &JsonPath::root());
        assert!(fields.optional("known").is_some());
        fields.finish(&mut c);
        let checked = c.finish(Some(()));
        assert_eq!(checked.warnings.len(), 1);
        assert_eq!(
            checked.warnings[0].to_string(),
            "$.typo: unknown field, ignored"
        );
    }

    #[test]
    fn null_optional_fields_read_as_absent_but_required_null_is_a_type_error() {
        let map = json!({"a": null});
        let mut c = Checker::default();
        let mut fields = Fields::new(map.as_object().unwrap(), &JsonPath::root());
        assert!(fields.optional("a").is_none());
        assert!(fields.required_string(&mut c, "a").is_none());
        assert!(fields.required_string(&mut c, "b").is_none());
        let errors = c.finish(Some(())).result.unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "$.a: expected a string, found null",
                "$.b: required field is missing"
            ]
        );
    }

    #[test]
    fn case_insensitive_lookup_prefers_the_exact_key() {
        let map = json!({"Image": "a", "image": "b"});
        let mut fields = Fields::new(map.as_object().unwrap(), &JsonPath::root());
        assert_eq!(fields.optional_ci("image").map(|(k, _)| k), Some("image"));
        let map = json!({"IMAGE": "a"});
        let mut fields = Fields::new(map.as_object().unwrap(), &JsonPath::root());
        assert_eq!(fields.optional_ci("image").map(|(k, _)| k), Some("IMAGE"));
    }
}
