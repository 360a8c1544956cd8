//! A JSON tree for `$body` queries that borrows strings from the message body.
//!
//! Bodies are parsed once per message and queried by a handful of paths, so the tree keeps
//! objects as small vectors searched linearly (no hashing) and strings as slices of the body
//! where they need no unescaping. Duplicate keys resolve to the last one, as in JSON.NET.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(f64),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses `text`; strings without escapes borrow from it.
    pub(crate) fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// Parses `text` into a tree that owns its strings.
    pub(crate) fn parse_owned(text: &str) -> Option<Json<'static>> {
        Json::parse(text).map(Json::into_owned)
    }

    fn into_owned(self) -> Json<'static> {
        match self {
            Json::Null => Json::Null,
            Json::Bool(b) => Json::Bool(b),
            Json::Number(x) => Json::Number(x),
            Json::String(s) => Json::String(Cow::Owned(s.into_owned())),
            Json::Array(items) => Json::Array(items.into_iter().map(Json::into_owned).collect()),
            Json::Object(members) => Json::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                    .collect(),
            ),
        }
    }

    /// The member `key` of an object (the last one if repeated).
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Element `index` of an array.
    pub(crate) fn at(&self, index: usize) -> Option<&Json<'a>> {
        match self {
            Json::Array(items) => items.get(index),
            _ => None,
        }
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Number(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((Key(key), value)) = map.next_entry::<Key<'de>, Json<'de>>()? {
            members.push((key, value));
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_without_escapes_borrow_from_the_text() {
        let text = r#"{"plain":"abc","escaped":"a\"b","k\u0065y":1}"#;
        let json = Json::parse(text).unwrap();
        assert!(matches!(
            json.get("plain"),
            Some(Json::String(Cow::Borrowed("abc")))
        ));
        assert!(matches!(json.get("escaped"), Some(Json::String(Cow::Owned(s))) if s == "a\"b"));
        assert_eq!(json.get("key"), Some(&Json::Number(1.0)));
    }

    #[test]
    fn repeated_keys_resolve_to_the_last() {
        let json = Json::parse(r#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(json.get("a"), Some(&Json::Number(2.0)));
    }

    #[test]
    fn every_json_type_is_read() {
        let json =
            Json::parse_owned(r#"[null,true,-1,18446744073709551615,1.5e3,"s",[],{}]"#).unwrap();
        assert_eq!(json.at(0), Some(&Json::Null));
        assert_eq!(json.at(1), Some(&Json::Bool(true)));
        assert_eq!(json.at(2), Some(&Json::Number(-1.0)));
        assert_eq!(
            json.at(3),
            Some(&Json::Number(18_446_744_073_709_551_615.0))
        );
        assert_eq!(json.at(4), Some(&Json::Number(1500.0)));
        assert_eq!(json.at(5), Some(&Json::String("s".into())));
        assert_eq!(json.at(6), Some(&Json::Array(vec![])));
        assert_eq!(json.at(7), Some(&Json::Object(vec![])));
        assert_eq!(json.at(8), None);
    }

    #[test]
    fn invalid_or_too_deep_json_is_rejected() {
        assert!(Json::parse("{").is_none());
        assert!(Json::parse("not json").is_none());
        assert!(Json::parse(&"[".repeat(10_000)).is_none());
        assert!(Json::parse("1 2").is_none());
    }
}
