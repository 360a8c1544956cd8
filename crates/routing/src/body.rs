//! `$body.<path>` queries (reference §2.5): the JSONPath subset, the content-type rules, and the
//! per-message cache that parses a body at most once.
//!
//! A query is answered only when `contentType` is `application/json` and `contentEncoding` is
//! `utf-8`, `utf-16` or `utf-32` (ASCII case-insensitive); otherwise, and when the body is not
//! JSON, the value is undefined. A path that is not found is `null`; an object or array leaf is
//! undefined; so is a string JSON.NET would have read as a date (kept for compatibility, §2.5).

use std::borrow::Cow;
use std::cell::OnceCell;

use crate::json::Json;
use crate::message::{RoutableMessage, SystemProperty};
use crate::value::Value;

/// One step of a body path: `name` or `name[index]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    key: Box<str>,
    index: Option<usize>,
}

/// A validated body path, e.g. `message.Weather.PrevTemperatures[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyPath {
    steps: Box<[Step]>,
}

impl BodyPath {
    /// Parses the text after `$body.` following `JsonPath.g4`: dotted names, each optionally
    /// followed by one `[integer]`. Names are case-sensitive.
    pub(crate) fn parse(query: &str) -> Result<Self, String> {
        if query.is_empty() {
            return Err("the path after $body. is empty".to_owned());
        }
        let steps = query
            .split('.')
            .map(parse_step)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            steps: steps.into_boxed_slice(),
        })
    }

    /// Looks the path up in a parsed body.
    pub(crate) fn lookup<'j>(&self, root: &'j Json<'_>) -> Value<'j> {
        self.find(root).map_or(Value::Null, leaf)
    }

    fn find<'j, 'a>(&self, root: &'j Json<'a>) -> Option<&'j Json<'a>> {
        let mut node = root;
        for step in &self.steps {
            node = node.get(&step.key)?;
            if let Some(index) = step.index {
                node = node.at(index)?;
            }
        }
        Some(node)
    }

    /// True when the path is present in the body, for `twin_change_includes`: found and not null.
    pub(crate) fn is_present(&self, root: &Json<'_>) -> bool {
        self.find(root).is_some_and(|node| *node != Json::Null)
    }
}

fn parse_step(text: &str) -> Result<Step, String> {
    let (key, index) = match text.find('[') {
        None => (text, None),
        Some(open) => {
            let rest = &text[open + 1..];
            let digits = rest
                .strip_suffix(']')
                .ok_or_else(|| format!("'{text}' must end with ']' after an index"))?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "'{text}': only a non-negative integer index such as [0] is supported"
                ));
            }
            let index = digits
                .parse::<usize>()
                .map_err(|_| format!("'{text}': index too large"))?;
            (&text[..open], Some(index))
        }
    };
    if key.is_empty() {
        return Err("empty name between dots".to_owned());
    }
    if let Some(bad) = key.chars().find(|c| is_excluded(*c)) {
        return Err(format!(
            "character '{bad}' is not allowed in a name ('{key}')"
        ));
    }
    Ok(Step {
        key: key.into(),
        index,
    })
}

/// `JsonPath.g4` IDENTIFIER excludes these characters.
fn is_excluded(c: char) -> bool {
    matches!(
        c,
        '(' | ')'
            | '<'
            | '>'
            | '@'
            | ','
            | ';'
            | ':'
            | '\\'
            | '"'
            | '/'
            | '['
            | ']'
            | '?'
            | '='
            | '{'
            | '}'
            | '.'
    ) || c.is_whitespace()
}

fn leaf<'j>(node: &'j Json<'_>) -> Value<'j> {
    match node {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(x) => Value::number(*x),
        Json::String(s) if looks_like_json_net_date(s) => Value::Undefined,
        Json::String(s) => Value::Str(Cow::Borrowed(s)),
        Json::Array(_) | Json::Object(_) => Value::Undefined,
    }
}

/// JSON.NET reads ISO 8601 date-times (`2017-03-09T00:00:00.000Z`) as dates, which body queries
/// report as undefined (Q: `BodyQuery_NotSupportedJTokenTime`; kept so routes behave as on IoT Edge).
pub(crate) fn looks_like_json_net_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let two = |at: usize| -> Option<u32> {
        digits(at..at + 2).then(|| u32::from(b[at] - b'0') * 10 + u32::from(b[at + 1] - b'0'))
    };
    if b.len() < 19
        || !digits(0..4)
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let (Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (two(5), two(8), two(11), two(14), two(17))
    else {
        return false;
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if n == 0 || n > 7 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        [] | [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// The body of one message, parsed on first use and shared by every route evaluated on it.
#[derive(Debug, Default)]
pub(crate) struct BodyCache<'m> {
    parsed: OnceCell<Option<Json<'m>>>,
}

impl<'m> BodyCache<'m> {
    /// The parsed body, or `None` when `$body` queries do not apply to this message.
    pub(crate) fn get<M: RoutableMessage + ?Sized>(&self, message: &'m M) -> Option<&Json<'m>> {
        self.parsed.get_or_init(|| parse_body(message)).as_ref()
    }
}

fn parse_body<M: RoutableMessage + ?Sized>(message: &M) -> Option<Json<'_>> {
    let content_type = message.system_property(SystemProperty::ContentType)?;
    if !content_type.eq_ignore_ascii_case("application/json") {
        return None;
    }
    let encoding = Encoding::from_name(message.system_property(SystemProperty::ContentEncoding)?)?;
    match encoding.decode(message.body())? {
        Cow::Borrowed(text) => Json::parse(text),
        Cow::Owned(text) => Json::parse_owned(&text),
    }
}

/// The encodings `$body` queries accept (`Routing.Core/Constants.cs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Utf8,
    Utf16,
    Utf32,
}

impl Encoding {
    fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("utf-8") {
            Some(Self::Utf8)
        } else if name.eq_ignore_ascii_case("utf-16") {
            Some(Self::Utf16)
        } else if name.eq_ignore_ascii_case("utf-32") {
            Some(Self::Utf32)
        } else {
            None
        }
    }

    /// Decodes strictly; a byte-order mark picks the byte order, little-endian otherwise (as .NET's
    /// `Encoding.Unicode` and `Encoding.UTF32`).
    fn decode(self, bytes: &[u8]) -> Option<Cow<'_, str>> {
        match self {
            Encoding::Utf8 => {
                let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
                std::str::from_utf8(bytes).ok().map(Cow::Borrowed)
            }
            Encoding::Utf16 => {
                let (big_endian, bytes) = match bytes {
                    [0xFE, 0xFF, rest @ ..] => (true, rest),
                    [0xFF, 0xFE, rest @ ..] => (false, rest),
                    _ => (false, bytes),
                };
                if bytes.len() % 2 != 0 {
                    return None;
                }
                let units = bytes.chunks_exact(2).map(|c| {
                    let pair = [c[0], c[1]];
                    if big_endian {
                        u16::from_be_bytes(pair)
                    } else {
                        u16::from_le_bytes(pair)
                    }
                });
                char::decode_utf16(units)
                    .collect::<Result<String, _>>()
                    .ok()
                    .map(Cow::Owned)
            }
            Encoding::Utf32 => {
                let (big_endian, bytes) = match bytes {
                    [0x00, 0x00, 0xFE, 0xFF, rest @ ..] => (true, rest),
                    [0xFF, 0xFE, 0x00, 0x00, rest @ ..] => (false, rest),
                    _ => (false, bytes),
                };
                if bytes.len() % 4 != 0 {
                    return None;
                }
                bytes
                    .chunks_exact(4)
                    .map(|c| {
                        let quad = [c[0], c[1], c[2], c[3]];
                        char::from_u32(if big_endian {
                            u32::from_be_bytes(quad)
                        } else {
                            u32::from_le_bytes(quad)
                        })
                    })
                    .collect::<Option<String>>()
                    .map(Cow::Owned)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn json(text: &str) -> Json<'_> {
        Json::parse(text).unwrap()
    }

    #[test]
    fn paths_are_dotted_names_with_optional_index() {
        assert!(BodyPath::parse("a.b[0].c").is_ok());
        assert!(BodyPath::parse("a").is_ok());
        for bad in [
            "", "a.", ".a", "a[]", "a[1:2]", "a[-1]", "a[0]b", "a b", "a[x]", "a;@",
        ] {
            assert!(BodyPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookups_follow_names_and_indexes() {
        let body = json(r#"{"a":{"b":[10,{"c":"x"}],"n":null,"t":true}}"#);
        let get = |p: &str| BodyPath::parse(p).unwrap().lookup(&body).to_static();
        assert_eq!(get("a.b[0]"), Value::Number(10.0));
        assert_eq!(get("a.b[1].c"), Value::Str("x".into()));
        assert_eq!(get("a.t"), Value::Bool(true));
        assert_eq!(get("a.n"), Value::Null);
    }

    #[test]
    fn a_missing_path_is_null_and_a_container_leaf_is_undefined() {
        let body = json(r#"{"a":{"b":[1,2]}}"#);
        let get = |p: &str| BodyPath::parse(p).unwrap().lookup(&body).to_static();
        assert_eq!(get("a.missing"), Value::Null);
        assert_eq!(get("a.b[9]"), Value::Null);
        assert_eq!(get("a.b[0].x"), Value::Null);
        assert_eq!(get("A"), Value::Null, "names are case-sensitive");
        assert_eq!(get("a"), Value::Undefined);
        assert_eq!(get("a.b"), Value::Undefined);
    }

    #[test]
    fn iso_dates_are_recognised_like_json_net() {
        for date in [
            "2017-03-09T00:00:00.000Z",
            "2017-03-09T00:00:00",
            "2017-03-09T10:11:12+02:00",
            "2017-03-09T10:11:12.1234567-05:30",
        ] {
            assert!(looks_like_json_net_date(date), "{date}");
        }
        for not_date in [
            "2017-03-09",
            "2017-13-09T00:00:00",
            "hello",
            "2017-03-09T00:00:00.Z",
            "2017-03-09 00:00:00",
        ] {
            assert!(!looks_like_json_net_date(not_date), "{not_date}");
        }
    }

    #[test]
    fn bodies_need_json_content_type_and_utf_encoding() {
        let ok = Message::new("/messages").with_json_body(r#"{"a":1}"#);
        assert!(BodyCache::default().get(&ok).is_some());
        let no_type = Message::new("/messages")
            .with_body(r#"{"a":1}"#)
            .with_system_property("contentEncoding", "utf-8");
        assert!(BodyCache::default().get(&no_type).is_none());
        let no_encoding = Message::new("/messages")
            .with_body(r#"{"a":1}"#)
            .with_system_property("contentType", "application/json");
        assert!(BodyCache::default().get(&no_encoding).is_none());
        let params = ok
            .clone()
            .with_system_property("contentType", "application/json; charset=utf-8");
        assert!(BodyCache::default().get(&params).is_none());
        let ascii = ok.clone().with_system_property("contentEncoding", "ascii");
        assert!(BodyCache::default().get(&ascii).is_none());
        let upper = ok
            .clone()
            .with_system_property("contentType", "Application/JSON")
            .with_system_property("contentEncoding", "UTF-8");
        assert!(BodyCache::default().get(&upper).is_some());
        let invalid = ok.with_body("not json");
        assert!(BodyCache::default().get(&invalid).is_none());
    }

    #[test]
    fn utf16_and_utf32_bodies_are_decoded() {
        let text = r#"{"a":"é"}"#;
        let utf16le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let utf16be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        let utf32le: Vec<u8> = text
            .chars()
            .flat_map(|c| u32::from(c).to_le_bytes())
            .collect();
        for (encoding, body) in [
            ("utf-16", utf16le),
            ("UTF-16", utf16be),
            ("utf-32", utf32le),
        ] {
            let m = Message::new("/messages")
                .with_body(body)
                .with_system_property("contentType", "application/json")
                .with_system_property("contentEncoding", encoding);
            let cache = BodyCache::default();
            let parsed = cache.get(&m).unwrap_or_else(|| panic!("{encoding}"));
            assert_eq!(
                BodyPath::parse("a").unwrap().lookup(parsed).to_static(),
                Value::Str("é".into())
            );
        }
    }

    #[test]
    fn presence_for_twin_changes_is_found_and_not_null() {
        let body = json(r#"{"properties":{"reported":{"x":1,"n":null,"o":{}}}}"#);
        let present = |p: &str| BodyPath::parse(p).unwrap().is_present(&body);
        assert!(present("properties.reported.x"));
        assert!(present("properties.reported.o"));
        assert!(!present("properties.reported.n"));
        assert!(!present("properties.reported.y"));
    }
}
