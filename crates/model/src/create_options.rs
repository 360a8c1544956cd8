//! `settings.createOptions`: the Docker `ContainerCreate` body of a module, kept as a JSON object.
//!
//! Reference `iotedge-runtime.md` §1.6. Twin string values are limited to 512 characters, so
//! tools split long createOptions over `createOptions`, `createOptions01`, `createOptions02`, …
//! Reading (`JsonEx.ChunkedValue`): keys match `createoptions[0-9]*` case-insensitively, the first
//! has no number, the k-th is numbered k, at most 100 are read, and the raw strings are joined
//! before parsing. An empty, whitespace or `"null"` value means `{}`. A value given as a JSON object
//! instead of a string is accepted too (IoT Edge stringifies whatever token it finds).
//! Writing ([`CreateOptions::to_twin_chunks`]) splits the compact JSON into 512-character chunks
//! named `createOptions`, `createOptions01`, … like the agent's reported properties.
//!
//! The typed meaning of the Docker fields (Env, HostConfig, …) belongs to the controller; this
//! module only guarantees that the value is a JSON object.

use serde_json::{Map, Value};

use crate::checker::{Checker, Fields};
use crate::error::{ChunkProblem, ErrorKind, Found};
use crate::path::JsonPath;

/// The twin key of the first chunk.
pub const CREATE_OPTIONS_KEY: &str = "createOptions";
/// Longest twin string value, in UTF-16 code units as IoT Hub counts them.
pub const TWIN_VALUE_MAX_SIZE: usize = 512;
/// Most chunks IoT Edge reads.
pub const TWIN_VALUE_MAX_CHUNKS: usize = 100;

/// A module's Docker create options: always a JSON object (`{}` when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions(Map<String, Value>);

impl CreateOptions {
    /// Wraps a JSON object.
    pub fn new(map: Map<String, Value>) -> Self {
        Self(map)
    }

    /// The options as a JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The options as a JSON object, by value.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// The options as a `serde_json::Value::Object`.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// Whether there are no options (`{}`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The top-level option `key` (`Env`, `HostConfig`, …), matched exactly.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The compact JSON text, as IoT Edge stores it in a twin.
    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }

    /// The twin form: `(key, chunk)` pairs `createOptions`, `createOptions01`, … of at most 512
    /// UTF-16 code units each. If more than 100 chunks would be needed (which IoT Edge could not
    /// read back), the whole text is returned as the single chunk `createOptions`.
    pub fn to_twin_chunks(&self) -> Vec<(String, String)> {
        let json = self.to_json();
        let chunks = split_utf16(&json, TWIN_VALUE_MAX_SIZE);
        if chunks.len() > TWIN_VALUE_MAX_CHUNKS {
            return vec![(CREATE_OPTIONS_KEY.to_owned(), json)];
        }
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| (chunk_key(i), chunk.to_owned()))
            .collect()
    }
}

impl From<Map<String, Value>> for CreateOptions {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

/// The key of chunk `i`: `createOptions`, then `createOptions01`, `createOptions02`, …
fn chunk_key(i: usize) -> String {
    if i == 0 {
        CREATE_OPTIONS_KEY.to_owned()
    } else {
        format!("{CREATE_OPTIONS_KEY}{i:02}")
    }
}

/// Splits `s` into pieces of at most `max` UTF-16 code units, never inside a character.
fn split_utf16(s: &str, max: usize) -> Vec<&str> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut units = 0;
    for (i, c) in s.char_indices() {
        let len = c.len_utf16();
        if units + len > max {
            chunks.push(&s[start..i]);
            start = i;
            units = 0;
        }
        units += len;
    }
    if start < s.len() || chunks.is_empty() {
        chunks.push(&s[start..]);
    }
    chunks
}

/// One key of `settings` that names a createOptions chunk.
#[derive(Debug)]
struct ChunkKey<'a> {
    key: &'a str,
    /// `None` for the unnumbered first chunk; `Some(n)` for a numbered one (saturating).
    number: Option<usize>,
    value: &'a Value,
}

/// Parses `key` as `createoptions[0-9]*`, case-insensitively.
fn chunk_number(key: &str) -> Option<Option<usize>> {
    let prefix = key.get(..CREATE_OPTIONS_KEY.len())?;
    if !prefix.eq_ignore_ascii_case(CREATE_OPTIONS_KEY) {
        return None;
    }
    let suffix = &key[CREATE_OPTIONS_KEY.len()..];
    if suffix.is_empty() {
        return Some(None);
    }
    if !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Some(suffix.parse().unwrap_or(usize::MAX)))
}

/// Reads the createOptions chunks of a module's `settings` object.
pub(crate) fn check(c: &mut Checker, settings: &mut Fields<'_>) -> Option<CreateOptions> {
    let mut keys: Vec<ChunkKey<'_>> = Vec::new();
    for (key, value) in settings.map() {
        if let Some(number) = chunk_number(key) {
            settings.mark_used(key);
            keys.push(ChunkKey { key, number, value });
        }
    }
    if keys.is_empty() {
        return Some(CreateOptions::default());
    }
    let chunks = order_chunks(c, settings.path(), keys)?;
    let base_path = settings.path_of(chunks[0].key);
    let text = join_chunks(c, settings.path(), &chunks)?;
    parse_joined(c, settings.path(), &base_path, &chunks, &text)
}

/// Checks that the chunks are `createOptions`, then 1, 2, … without gaps, and orders them.
fn order_chunks<'a>(
    c: &mut Checker,
    settings_path: &JsonPath,
    mut keys: Vec<ChunkKey<'a>>,
) -> Option<Vec<ChunkKey<'a>>> {
    let before = c.error_count();
    // Unnumbered first, then by number; ties keep document order.
    keys.sort_by_key(|k| k.number.map_or(0, |n| n.saturating_add(1)));
    let first = keys.iter().position(|k| k.number.is_none());
    match first {
        None => c.error(
            &settings_path.key(keys[0].key),
            ErrorKind::CreateOptionsChunks(ChunkProblem::MissingFirst),
        ),
        Some(_) => {
            if let Some(dup) = keys.get(1).filter(|k| k.number.is_none()) {
                c.error(
                    &settings_path.key(dup.key),
                    ErrorKind::CreateOptionsChunks(ChunkProblem::Duplicate {
                        other: keys[0].key.to_owned(),
                    }),
                );
            }
        }
    }
    let numbered: Vec<&ChunkKey<'a>> = keys.iter().filter(|k| k.number.is_some()).collect();
    let mut expected = 1;
    for (i, k) in numbered.iter().enumerate() {
        let n = k.number.unwrap_or(usize::MAX);
        if i > 0 && numbered[i - 1].number == k.number {
            c.error(
                &settings_path.key(k.key),
                ErrorKind::CreateOptionsChunks(ChunkProblem::Duplicate {
                    other: numbered[i - 1].key.to_owned(),
                }),
            );
            continue;
        }
        if n != expected {
            c.error(
                &settings_path.key(k.key),
                ErrorKind::CreateOptionsChunks(ChunkProblem::Gap { missing: expected }),
            );
            break;
        }
        expected += 1;
    }
    if keys.len() > TWIN_VALUE_MAX_CHUNKS {
        c.error(
            settings_path,
            ErrorKind::CreateOptionsChunks(ChunkProblem::TooMany { count: keys.len() }),
        );
    }
    (c.error_count() == before).then_some(keys)
}

/// Concatenates the chunks' text. A lone chunk may be an object; split values must be strings.
fn join_chunks(
    c: &mut Checker,
    settings_path: &JsonPath,
    chunks: &[ChunkKey<'_>],
) -> Option<String> {
    if let [only] = chunks {
        return match only.value {
            Value::String(s) => Some(s.clone()),
            Value::Null => Some(String::new()),
            Value::Object(map) => Some(Value::Object(map.clone()).to_string()),
            other => {
                c.error(
                    &settings_path.key(only.key),
                    ErrorKind::WrongType {
                        expected: "a JSON string or object",
                        found: Found::of(other),
                    },
                );
                None
            }
        };
    }
    let mut text = String::new();
    let mut ok = true;
    for chunk in chunks {
        match chunk.value {
            Value::String(s) => text.push_str(s),
            Value::Null => {}
            other => {
                c.error(
                    &settings_path.key(chunk.key),
                    ErrorKind::CreateOptionsChunks(ChunkProblem::NotString {
                        found: Found::of(other),
                    }),
                );
                ok = false;
            }
        }
    }
    ok.then_some(text)
}

/// Parses the joined text into an object, mapping a syntax error back to its chunk.
fn parse_joined(
    c: &mut Checker,
    settings_path: &JsonPath,
    base_path: &JsonPath,
    chunks: &[ChunkKey<'_>],
    text: &str,
) -> Option<CreateOptions> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("null") {
        return Some(CreateOptions::default());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Some(CreateOptions(map)),
        Ok(other) => {
            c.error(
                base_path,
                ErrorKind::CreateOptionsNotObject {
                    found: Found::of(&other),
                },
            );
            None
        }
        Err(err) => {
            let offset = byte_offset(text, err.line(), err.column());
            let (key, offset) = locate(chunks, offset);
            c.error(
                &settings_path.key(key),
                ErrorKind::CreateOptionsSyntax {
                    message: parser_message(&err),
                    chunk: key.to_owned(),
                    offset,
                },
            );
            None
        }
    }
}

/// The parser's message without its " at line L column C" suffix (we give our own position).
pub(crate) fn parser_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
}

/// The byte offset of a 1-based line and (byte) column in `text`, clamped to the text.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split('\n').enumerate() {
        if i + 1 == line {
            offset += column.saturating_sub(1);
            break;
        }
        offset += l.len() + 1;
    }
    let mut offset = offset.min(text.len().saturating_sub(1));
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The chunk holding byte `offset` of the joined text, and the 1-based character offset in it.
fn locate<'a>(chunks: &[ChunkKey<'a>], offset: usize) -> (&'a str, usize) {
    let mut start = 0;
    let mut last = ("", 1);
    for chunk in chunks {
        let text = chunk.value.as_str().unwrap_or_default();
        let end = start + text.len();
        let local = offset.saturating_sub(start).min(text.len());
        let chars = text.get(..local).map_or(0, |s| s.chars().count());
        last = (chunk.key, chars + 1);
        if offset < end {
            return last;
        }
        start = end;
    }
    last
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ManifestError;

    fn run(settings: &Value) -> Result<CreateOptions, Vec<String>> {
        let mut c = Checker::default();
        let path = JsonPath::root().key("settings");
        let mut fields = Fields::new(settings.as_object().unwrap(), &path);
        let value = check(&mut c, &mut fields);
        c.finish(value)
            .result
            .map_err(|e| e.iter().map(ManifestError::to_string).collect())
    }

    #[test]
    fn missing_create_options_is_an_empty_object() {
        assert_eq!(run(&json!({"image": "a"})), Ok(CreateOptions::default()));
    }

    #[test]
    fn string_create_options_is_parsed() {
        let got = run(&json!({"createOptions": "{\"Env\":[\"A=1\"]}"})).unwrap();
        assert_eq!(got.to_value(), json!({"Env": ["A=1"]}));
    }

    #[test]
    fn object_create_options_is_taken_as_is() {
        let got = run(&json!({"createOptions": {"HostConfig": {"Privileged": true}}})).unwrap();
        assert_eq!(got.get("HostConfig"), Some(&json!({"Privileged": true})));
    }

    #[test]
    fn empty_whitespace_and_null_mean_empty_object() {
        for v in [
            json!(""),
            json!("  "),
            json!("null"),
            json!("NULL"),
            json!(null),
        ] {
            assert_eq!(
                run(&json!({ "createOptions": v })),
                Ok(CreateOptions::default())
            );
        }
    }

    #[test]
    fn split_chunks_are_reassembled_in_numeric_order() {
        let settings = json!({
            "createOptions02": "\"B=2\"]}",
            "createOptions": "{\"Env\":",
            "createOptions01": "[\"A=1\",",
        });
        let got = run(&settings).unwrap();
        assert_eq!(got.to_value(), json!({"Env": ["A=1", "B=2"]}));
    }

    #[test]
    fn chunk_keys_match_case_insensitively_and_without_padding() {
        let settings = json!({"CreateOptions": "{\"a\":", "createoptions1": "1}"});
        assert_eq!(run(&settings).unwrap().to_value(), json!({"a": 1}));
    }

    #[test]
    fn more_than_ten_unpadded_chunks_are_ordered_by_number() {
        let text = "{\"k\":\"0123456789abc\"}";
        let mut settings = Map::new();
        for (i, c) in text.chars().enumerate() {
            let key = if i == 0 {
                "createOptions".to_owned()
            } else {
                format!("createOptions{i}")
            };
            settings.insert(key, Value::String(c.to_string()));
        }
        let got = run(&Value::Object(settings)).unwrap();
        assert_eq!(got.to_value(), json!({"k": "0123456789abc"}));
    }

    #[test]
    fn a_gap_in_the_chunks_is_reported_at_the_chunk_after_it() {
        let settings = json!({"createOptions": "{", "createOptions01": "", "createOptions03": "}"});
        assert_eq!(
            run(&settings),
            Err(vec![
                "$.settings.createOptions03: createOptions chunk 02 is missing: chunks must be numbered 01, 02, … without gaps".to_owned()
            ])
        );
    }

    #[test]
    fn numbered_chunks_without_the_first_are_rejected() {
        let err = run(&json!({"createOptions01": "{}"})).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0].starts_with("$.settings.createOptions01: numbered createOptions chunks need")
        );
    }

    #[test]
    fn two_keys_for_one_chunk_are_rejected() {
        let err = run(&json!({"createOptions": "{", "CREATEOPTIONS": "}"})).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].contains("names the same chunk as"), "{err:?}");
        let err =
            run(&json!({"createOptions": "{", "createOptions01": "}", "createOptions1": "}"}))
                .unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0].contains("names the same chunk as \"createOptions01\""),
            "{err:?}"
        );
    }

    #[test]
    fn more_than_one_hundred_chunks_are_rejected() {
        let mut settings = Map::new();
        settings.insert("createOptions".into(), json!("{"));
        for i in 1..=100 {
            settings.insert(format!("createOptions{i:02}"), json!(" "));
        }
        let err = run(&Value::Object(settings)).unwrap_err();
        assert_eq!(
            err,
            [
                "$.settings: 101 createOptions chunks: at most 100 (createOptions..createOptions99) are read"
            ]
        );
    }

    #[test]
    fn a_non_string_chunk_of_a_split_value_is_rejected() {
        let err = run(&json!({"createOptions": "{", "createOptions01": {"a": 1}})).unwrap_err();
        assert_eq!(
            err,
            [
                "$.settings.createOptions01: a split createOptions must be made of strings, found an object"
            ]
        );
    }

    #[test]
    fn a_lone_chunk_of_the_wrong_type_is_rejected() {
        let err = run(&json!({"createOptions": 5})).unwrap_err();
        assert_eq!(
            err,
            ["$.settings.createOptions: expected a JSON string or object, found number 5"]
        );
    }

    #[test]
    fn non_object_json_is_rejected_with_what_it_is() {
        let err = run(&json!({"createOptions": "[1,2]"})).unwrap_err();
        assert_eq!(
            err,
            [
                "$.settings.createOptions: createOptions must be a JSON object (Docker ContainerCreate body), found an array"
            ]
        );
    }

    #[test]
    fn a_syntax_error_names_the_chunk_and_character_it_is_in() {
        let settings = json!({
            "createOptions": "{\"Env\": [\"A=1\",",
            "createOptions01": " \"B=2\",, ]}",
        });
        let err = run(&settings).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0].starts_with("$.settings.createOptions01: createOptions is not valid JSON: "),
            "{err:?}"
        );
        assert!(
            err[0].ends_with("(at character 8 of createOptions01)"),
            "{err:?}"
        );
    }

    #[test]
    fn a_syntax_error_on_a_later_line_is_located() {
        let settings = json!({"createOptions": "{\n  \"a\": 1,\n  \"b\" 2\n}"});
        let err = run(&settings).unwrap_err();
        // Line 3 is `  "b" 2`; the parser stops at the `2` (character 19 of the chunk).
        assert!(
            err[0].ends_with("(at character 19 of createOptions)"),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_json_points_at_the_end_of_the_last_chunk() {
        let settings = json!({"createOptions": "{\"a\":", "createOptions01": "[1"});
        let err = run(&settings).unwrap_err();
        assert!(
            err[0].starts_with("$.settings.createOptions01: "),
            "{err:?}"
        );
        assert!(err[0].contains("EOF"), "{err:?}");
    }

    #[test]
    fn twin_chunks_are_at_most_512_utf16_units_and_rejoin_to_the_json() {
        let big: String = "é€😀x".repeat(300);
        let options =
            CreateOptions::new(json!({"Labels": {"big": big}}).as_object().unwrap().clone());
        let chunks = options.to_twin_chunks();
        assert!(chunks.len() > 1);
        assert_eq!(chunks[0].0, "createOptions");
        assert_eq!(chunks[1].0, "createOptions01");
        for (_, chunk) in &chunks {
            assert!(chunk.encode_utf16().count() <= TWIN_VALUE_MAX_SIZE);
        }
        let joined: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(joined, options.to_json());
    }

    #[test]
    fn empty_options_are_one_chunk_of_braces() {
        assert_eq!(
            CreateOptions::default().to_twin_chunks(),
            [("createOptions".to_owned(), "{}".to_owned())]
        );
    }

    #[test]
    fn options_too_big_for_100_chunks_are_written_as_one_string() {
        let big = "x".repeat(TWIN_VALUE_MAX_SIZE * TWIN_VALUE_MAX_CHUNKS);
        let options = CreateOptions::new(json!({"a": big}).as_object().unwrap().clone());
        let chunks = options.to_twin_chunks();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].1, options.to_json());
    }
}
