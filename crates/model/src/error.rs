//! Validation errors and warnings: what is wrong, and where (a [`JsonPath`]).
//!
//! Validation never stops at the first problem: it returns a [`ValidationErrors`] list with every
//! error it found. Each [`ManifestError`] prints as `path: reason`. [`ValidationErrors::status_code`]
//! gives the HTTP-like code the agent reports upstream as `lastDesiredStatus.code`
//! (reference `iotedge-runtime.md` §4.1): 412 for an unsupported schema version, 417 for empty
//! desired properties, 400 for everything else.

use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::path::JsonPath;

/// `lastDesiredStatus.code` for a deployment that was rejected as malformed.
pub const STATUS_BAD_REQUEST: u16 = 400;
/// `lastDesiredStatus.code` for an unsupported `schemaVersion`.
pub const STATUS_UNSUPPORTED_SCHEMA: u16 = 412;
/// `lastDesiredStatus.code` for desired properties that hold no deployment at all.
pub const STATUS_CONFIG_EMPTY: u16 = 417;

/// What a JSON value turned out to be, with a short excerpt for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written.
    Number(String),
    /// A string (truncated to 40 characters for the message).
    String(String),
    /// An array.
    Array,
    /// An object.
    Object,
}

impl Found {
    /// Describes `value` for an error message.
    pub fn of(value: &Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => Self::Number(n.to_string()),
            Value::String(s) => Self::String(truncate(s)),
            Value::Array(_) => Self::Array,
            Value::Object(_) => Self::Object,
        }
    }
}

/// Shortens a quoted value so that one bad field cannot flood the output.
pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut short: String = s.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "boolean {b}"),
            Self::Number(n) => write!(f, "number {n}"),
            Self::String(s) => write!(f, "string {s:?}"),
            Self::Array => f.write_str("an array"),
            Self::Object => f.write_str("an object"),
        }
    }
}

/// Which naming rule a name broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Module names: `^[A-Za-z0-9_-]{1,128}$` (IoT Hub module identities, SchemaStore).
    Module,
    /// Environment variable names: no `+`, `#`, `$`, `.` or whitespace.
    EnvVar,
    /// Twin keys such as route names and registry credential ids: no `.`, `$`, `#` or space.
    TwinKey,
}

impl fmt::Display for NameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Module => {
                "module names are 1 to 128 characters of ASCII letters, digits, '-' and '_'"
            }
            Self::EnvVar => {
                "environment variable names must not be empty or contain '+', '#', '$', '.' or whitespace"
            }
            Self::TwinKey => "names must not be empty or contain '.', '$', '#' or a space",
        })
    }
}

/// What is wrong with a split `createOptions` (`createOptions`, `createOptions01`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkProblem {
    /// Numbered chunks exist but the unnumbered first chunk `createOptions` does not.
    MissingFirst,
    /// A chunk number is missing from the sequence.
    Gap {
        /// The chunk number that should be there.
        missing: usize,
    },
    /// Two keys name the same chunk (`createOptions01` and `CreateOptions1`).
    Duplicate {
        /// The other key naming the same chunk.
        other: String,
    },
    /// More than 100 chunks (IoT Edge reads at most `createOptions`..`createOptions99`).
    TooMany {
        /// How many chunks there are.
        count: usize,
    },
    /// A chunk of a split value is not a string.
    NotString {
        /// What the chunk is instead.
        found: Found,
    },
}

impl fmt::Display for ChunkProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingFirst => f.write_str(
                "numbered createOptions chunks need the first chunk under the key \"createOptions\"",
            ),
            Self::Gap { missing } => write!(
                f,
                "createOptions chunk {missing:02} is missing: chunks must be numbered 01, 02, … without gaps"
            ),
            Self::Duplicate { other } => write!(f, "names the same chunk as {other:?}"),
            Self::TooMany { count } => write!(
                f,
                "{count} createOptions chunks: at most 100 (createOptions..createOptions99) are read"
            ),
            Self::NotString { found } => write!(
                f,
                "a split createOptions must be made of strings, found {found}"
            ),
        }
    }
}

/// Why a value was rejected. Variants carry the offending data; `Display` gives the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The input is not JSON at all.
    #[error("not valid JSON: {message} at line {line} column {column}")]
    Syntax {
        /// What the JSON parser expected.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A required field is absent.
    #[error("required field is missing")]
    Missing,
    /// The value has the wrong JSON type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What was expected, e.g. "a string".
        expected: &'static str,
        /// What was there.
        found: Found,
    },
    /// The value has the right type but is not allowed.
    #[error("invalid value {value}: expected {expected}")]
    InvalidValue {
        /// The offending value (already quoted if it was a string).
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// A string that must hold something is empty or whitespace.
    #[error("must not be empty or whitespace")]
    Blank,
    /// The `schemaVersion` is not one this runtime understands (HTTP-like status 412).
    #[error("unsupported schema version {version:?}: supported are {supported}")]
    UnsupportedSchema {
        /// The `schemaVersion` as given.
        version: String,
        /// The versions that are accepted.
        supported: &'static str,
    },
    /// The `$edgeAgent` desired properties hold nothing but twin metadata (status 417).
    #[error("the desired properties are empty: no deployment has been applied to this device yet")]
    EmptyConfig,
    /// A name breaks a naming rule.
    #[error("invalid name {name:?}: {rule}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// The rule it breaks.
        rule: NameRule,
    },
    /// A user module uses a name reserved for a system module.
    #[error(
        "module name {name:?} is reserved for the system module; configure it under systemModules"
    )]
    ReservedName {
        /// The offending name.
        name: String,
    },
    /// `settings.image` is not an image reference IoT Edge accepts.
    #[error("invalid image {image:?}: {problem}")]
    InvalidImage {
        /// The image as given.
        image: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The reassembled `createOptions` text is not JSON.
    #[error("createOptions is not valid JSON: {message} (at character {offset} of {chunk})")]
    CreateOptionsSyntax {
        /// What the JSON parser expected.
        message: String,
        /// The chunk key the error is in (`createOptions`, `createOptions02`, …).
        chunk: String,
        /// 1-based character offset inside that chunk.
        offset: usize,
    },
    /// `createOptions` parsed, but is not a JSON object.
    #[error("createOptions must be a JSON object (Docker ContainerCreate body), found {found}")]
    CreateOptionsNotObject {
        /// What it is instead.
        found: Found,
    },
    /// The `createOptions` chunks do not form a valid sequence.
    #[error("{0}")]
    CreateOptionsChunks(ChunkProblem),
    /// A route does not parse or compile.
    #[error("invalid route at line {line} column {column}: {message}")]
    Route {
        /// The route compiler's message.
        message: String,
        /// 1-based line in the route text.
        line: usize,
        /// 1-based column in the route text.
        column: usize,
    },
    /// A route object (`{route, priority, timeToLiveSecs}`) under `$edgeHub` schema 1.0.
    #[error(
        "schema {schema} routes are plain strings; priority and timeToLiveSecs need schemaVersion 1.1 or later"
    )]
    RouteObjectNeedsSchema11 {
        /// The `$edgeHub` schema version in use.
        schema: String,
    },
    /// A layered-deployment fragment (`properties.desired.modules.x`) where a full manifest belongs.
    #[error(
        "layered deployment content ({key:?}) cannot be validated on its own: merge it into a base deployment first"
    )]
    LayeredDeployment {
        /// The dotted key that marks the fragment.
        key: String,
    },
}

impl ErrorKind {
    /// A stable snake_case name for the kind, for JSON output and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Syntax { .. } => "syntax",
            Self::Missing => "missing",
            Self::WrongType { .. } => "wrong_type",
            Self::InvalidValue { .. } => "invalid_value",
            Self::Blank => "blank",
            Self::UnsupportedSchema { .. } => "unsupported_schema",
            Self::EmptyConfig => "empty_config",
            Self::InvalidName { .. } => "invalid_name",
            Self::ReservedName { .. } => "reserved_name",
            Self::InvalidImage { .. } => "invalid_image",
            Self::CreateOptionsSyntax { .. } => "create_options_syntax",
            Self::CreateOptionsNotObject { .. } => "create_options_not_object",
            Self::CreateOptionsChunks(_) => "create_options_chunks",
            Self::Route { .. } => "route",
            Self::RouteObjectNeedsSchema11 { .. } => "route_object_needs_schema_1_1",
            Self::LayeredDeployment { .. } => "layered_deployment",
        }
    }

    /// The HTTP-like status the agent reports for this kind (412, 417 or 400).
    pub fn status_code(&self) -> u16 {
        match self {
            Self::UnsupportedSchema { .. } => STATUS_UNSUPPORTED_SCHEMA,
            Self::EmptyConfig => STATUS_CONFIG_EMPTY,
            _ => STATUS_BAD_REQUEST,
        }
    }
}

/// One validation error: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ManifestError {
    /// Where the offending value is (or, for a missing field, where it should be).
    pub path: JsonPath,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl Serialize for ManifestError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ManifestError", 3)?;
        s.serialize_field("path", &self.path)?;
        s.serialize_field("kind", self.kind.code())?;
        s.serialize_field("reason", &self.kind.to_string())?;
        s.end()
    }
}

/// Every error found in one document (never empty when returned as an `Err`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors {
    errors: Vec<ManifestError>,
}

impl ValidationErrors {
    /// Wraps a list of errors.
    pub fn new(errors: Vec<ManifestError>) -> Self {
        Self { errors }
    }

    /// The errors, in document order.
    pub fn errors(&self) -> &[ManifestError] {
        &self.errors
    }

    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ManifestError> {
        self.errors.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The HTTP-like `lastDesiredStatus.code`: 412 if any schema version is unsupported, else 417
    /// if the desired properties are empty, else 400.
    pub fn status_code(&self) -> u16 {
        let codes = self.errors.iter().map(|e| e.kind.status_code());
        if codes.clone().any(|c| c == STATUS_UNSUPPORTED_SCHEMA) {
            STATUS_UNSUPPORTED_SCHEMA
        } else if codes.clone().any(|c| c == STATUS_CONFIG_EMPTY) {
            STATUS_CONFIG_EMPTY
        } else {
            STATUS_BAD_REQUEST
        }
    }

    /// Prefixes every path with `base` (a section validated on its own, placed into a manifest).
    #[must_use]
    pub fn rebased(self, base: &JsonPath) -> Self {
        let errors = self
            .errors
            .into_iter()
            .map(|e| ManifestError {
                path: base.join(&e.path),
                kind: e.kind,
            })
            .collect();
        Self { errors }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl IntoIterator for ValidationErrors {
    type Item = ManifestError;
    type IntoIter = std::vec::IntoIter<ManifestError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ValidationErrors {
    type Item = &'a ManifestError;
    type IntoIter = std::slice::Iter<'a, ManifestError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl Serialize for ValidationErrors {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.errors.serialize(serializer)
    }
}

/// Something accepted but worth telling the user about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarningKind {
    /// A key the schema does not define (often a typo); it is ignored.
    #[error("unknown field, ignored")]
    UnknownField,
    /// A field that this schema version or module ignores.
    #[error("ignored: {reason}")]
    Ignored {
        /// Why it has no effect.
        reason: &'static str,
    },
    /// An empty route under `$edgeHub` schema 1.0, which IoT Edge skips.
    #[error("empty route skipped (schema 1.0 ignores empty routes)")]
    EmptyRouteSkipped,
    /// Desired properties for a module the deployment does not define.
    #[error("module twin for a module that $edgeAgent does not deploy")]
    TwinWithoutModule,
    /// A route IoT Edge accepts but that probably does not do what was meant.
    #[error("route at line {line} column {column}: {message}")]
    Route {
        /// What looks wrong, from the route compiler.
        message: String,
        /// 1-based line in the route text.
        line: usize,
        /// 1-based column in the route text.
        column: usize,
    },
}

impl WarningKind {
    /// A stable snake_case name for the kind.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownField => "unknown_field",
            Self::Ignored { .. } => "ignored",
            Self::EmptyRouteSkipped => "empty_route_skipped",
            Self::TwinWithoutModule => "twin_without_module",
            Self::Route { .. } => "route",
        }
    }
}

/// One warning: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ManifestWarning {
    /// Where the value is.
    pub path: JsonPath,
    /// What is worth knowing.
    pub kind: WarningKind,
}

impl ManifestWarning {
    /// Prefixes the path with `base`.
    #[must_use]
    pub fn rebased(self, base: &JsonPath) -> Self {
        Self {
            path: base.join(&self.path),
            kind: self.kind,
        }
    }
}

impl Serialize for ManifestWarning {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ManifestWarning", 3)?;
        s.serialize_field("path", &self.path)?;
        s.serialize_field("kind", self.kind.code())?;
        s.serialize_field("reason", &self.kind.to_string())?;
        s.end()
    }
}

/// The outcome of validating one document: the typed value or every error, plus warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked<T> {
    /// The typed value, or every error found.
    pub result: Result<T, ValidationErrors>,
    /// Things accepted but worth telling the user about (unknown keys, ignored fields).
    pub warnings: Vec<ManifestWarning>,
}

impl<T> Checked<T> {
    /// Drops the warnings.
    pub fn into_result(self) -> Result<T, ValidationErrors> {
        self.result
    }

    /// Whether the document is valid.
    pub fn is_valid(&self) -> bool {
        self.result.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: ErrorKind) -> ManifestError {
        ManifestError {
            path: JsonPath::root().key("schemaVersion"),
            kind,
        }
    }

    #[test]
    fn error_prints_path_then_reason() {
        let e = error(ErrorKind::Missing);
        assert_eq!(e.to_string(), "$.schemaVersion: required field is missing");
    }

    #[test]
    fn unsupported_schema_wins_the_status_code() {
        let errors = ValidationErrors::new(vec![
            error(ErrorKind::Missing),
            error(ErrorKind::UnsupportedSchema {
                version: "2.0".into(),
                supported: "1.0, 1.1",
            }),
            error(ErrorKind::EmptyConfig),
        ]);
        assert_eq!(errors.status_code(), 412);
    }

    #[test]
    fn empty_config_is_417_and_others_are_400() {
        assert_eq!(
            ValidationErrors::new(vec![error(ErrorKind::EmptyConfig)]).status_code(),
            417
        );
        assert_eq!(
            ValidationErrors::new(vec![error(ErrorKind::Blank)]).status_code(),
            400
        );
    }

    #[test]
    fn found_describes_values_with_a_short_excerpt() {
        assert_eq!(Found::of(&Value::Null).to_string(), "null");
        assert_eq!(Found::of(&serde_json::json!(3)).to_string(), "number 3");
        assert_eq!(
            Found::of(&serde_json::json!(true)).to_string(),
            "boolean true"
        );
        assert_eq!(Found::of(&serde_json::json!([1])).to_string(), "an array");
        assert_eq!(Found::of(&serde_json::json!({})).to_string(), "an object");
        let long = "x".repeat(100);
        assert_eq!(
            Found::of(&Value::String(long)).to_string(),
            format!("string \"{}…\"", "x".repeat(40))
        );
    }

    #[test]
    fn errors_serialize_with_path_kind_and_reason() {
        let errors = ValidationErrors::new(vec![error(ErrorKind::Blank)]);
        let json = serde_json::to_value(&errors).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "path": "$.schemaVersion",
                "kind": "blank",
                "reason": "must not be empty or whitespace"
            }])
        );
    }

    #[test]
    fn display_lists_one_error_per_line() {
        let errors =
            ValidationErrors::new(vec![error(ErrorKind::Missing), error(ErrorKind::Blank)]);
        assert_eq!(
            errors.to_string(),
            "$.schemaVersion: required field is missing\n$.schemaVersion: must not be empty or whitespace"
        );
    }

    #[test]
    fn rebasing_prefixes_every_path() {
        let base = JsonPath::root()
            .key("modulesContent")
            .key("$edgeAgent")
            .key("properties.desired");
        let errors = ValidationErrors::new(vec![error(ErrorKind::Missing)]).rebased(&base);
        assert_eq!(
            errors.errors()[0].path.to_string(),
            "$.modulesContent.$edgeAgent['properties.desired'].schemaVersion"
        );
    }
}
