//! JSON paths that say where in a manifest an error is.
//!
//! The text form is the one IoT Edge users know from JSONPath:
//! `$.modulesContent.$edgeAgent['properties.desired'].modules.temp.settings.image`.
//! A key is written after a dot when it only holds ASCII letters, digits, `_`, `-` and `$`;
//! any other key (a dot, a space, a quote, an empty key) is bracket-quoted, `['properties.desired']`,
//! with `'` and `\` escaped by a backslash. Array items are `[3]`.

use std::fmt;

use serde::{Serialize, Serializer};

/// One step of a [`JsonPath`]: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A key of a JSON object.
    Key(String),
    /// An index into a JSON array.
    Index(usize),
}

/// The location of a value inside a JSON document, rooted at `$`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct JsonPath {
    segments: Vec<Segment>,
}

impl JsonPath {
    /// The document root, `$`.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by an object key.
    #[must_use]
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut segments = self.segments.clone();
        segments.push(Segment::Key(key.into()));
        Self { segments }
    }

    /// This path extended by an array index.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.segments.clone();
        segments.push(Segment::Index(index));
        Self { segments }
    }

    /// This path followed by every step of `rest` (rebases a section path under a manifest path).
    #[must_use]
    pub fn join(&self, rest: &JsonPath) -> Self {
        let mut segments = self.segments.clone();
        segments.extend(rest.segments.iter().cloned());
        Self { segments }
    }

    /// The steps from the root.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether this is the root path `$`.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }
}

/// Whether `key` can be written after a dot without quoting.
fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'$'))
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for segment in &self.segments {
            match segment {
                Segment::Key(key) if is_plain_key(key) => write!(f, ".{key}")?,
                Segment::Key(key) => {
                    f.write_str("['")?;
                    for c in key.chars() {
                        match c {
                            '\'' => f.write_str("\\'")?,
                            '\\' => f.write_str("\\\\")?,
                            '\n' => f.write_str("\\n")?,
                            '\r' => f.write_str("\\r")?,
                            '\t' => f.write_str("\\t")?,
                            c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                            c => write!(f, "{c}")?,
                        }
                    }
                    f.write_str("']")?;
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for JsonPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_prints_as_dollar() {
        assert_eq!(JsonPath::root().to_string(), "$");
        assert!(JsonPath::root().is_root());
    }

    #[test]
    fn keys_with_dots_are_bracket_quoted_and_dollar_keys_are_not() {
        let path = JsonPath::root()
            .key("modulesContent")
            .key("$edgeAgent")
            .key("properties.desired")
            .key("modules")
            .key("temp")
            .key("settings")
            .key("image");
        assert_eq!(
            path.to_string(),
            "$.modulesContent.$edgeAgent['properties.desired'].modules.temp.settings.image"
        );
    }

    #[test]
    fn hyphens_and_underscores_stay_plain() {
        let path = JsonPath::root().key("temp-sensor_2");
        assert_eq!(path.to_string(), "$.temp-sensor_2");
    }

    #[test]
    fn quotes_backslashes_spaces_and_empty_keys_are_escaped() {
        let path = JsonPath::root()
            .key("it's")
            .key(r"a\b")
            .key("with space")
            .key("")
            .key("tab\there");
        assert_eq!(
            path.to_string(),
            r"$['it\'s']['a\\b']['with space']['']['tab\there']"
        );
    }

    #[test]
    fn control_characters_are_printed_as_escapes() {
        let path = JsonPath::root().key("a\u{1}b");
        assert_eq!(path.to_string(), r"$['a\u{1}b']");
    }

    #[test]
    fn indices_print_in_brackets() {
        let path = JsonPath::root().key("bridges").index(3).key("endpoint");
        assert_eq!(path.to_string(), "$.bridges[3].endpoint");
    }

    #[test]
    fn join_rebases_a_section_path() {
        let base = JsonPath::root().key("modulesContent").key("$edgeHub");
        let rest = JsonPath::root().key("routes").key("r1");
        assert_eq!(
            base.join(&rest).to_string(),
            "$.modulesContent.$edgeHub.routes.r1"
        );
    }

    #[test]
    fn serializes_as_its_text() {
        let path = JsonPath::root().key("a.b");
        assert_eq!(
            serde_json::to_string(&path).ok().as_deref(),
            Some(r#""$['a.b']""#)
        );
    }
}
