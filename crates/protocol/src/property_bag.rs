//! Property bags: the `k1=v1&k2=v2` tail of telemetry, C2D and input topics (reference §1.4).
//!
//! Parsing is lenient the way real SDKs need: keys and values are percent-decoded (never `+` →
//! space), a leading `?` and one trailing `/` are tolerated, `key` alone is an empty value and
//! empty pairs are skipped. Formatting encodes everything but unreserved characters, so `$`
//! becomes `%24` and a `/` inside a value can never split the topic.

use crate::encoding::{decode_component, encode_component};

/// Decoded `key=value` pairs in wire order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PropertyBag(pub Vec<(String, String)>);

impl PropertyBag {
    /// Parses a property bag; never fails.
    pub fn parse(s: &str) -> Self {
        let s = s.strip_prefix('?').unwrap_or(s);
        let s = s.strip_suffix('/').unwrap_or(s);
        let pairs = s
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let k = decode_component(k);
                (!k.is_empty()).then(|| (k.into_owned(), decode_component(v).into_owned()))
            })
            .collect();
        Self(pairs)
    }

    /// Appends the encoded bag (no leading or trailing separator) to `out`.
    pub fn write_to(&self, out: &mut String) {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(&encode_component(k));
            out.push('=');
            out.push_str(&encode_component(v));
        }
    }

    /// The encoded bag as a string.
    pub fn format(&self) -> String {
        let mut out = String::new();
        self.write_to(&mut out);
        out
    }

    /// The last value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Appends a pair.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.push((key.into(), value.into()));
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sdk_capture_parses() {
        let bag = PropertyBag::parse(
            "%24.on=out1&%24.mid=mid-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=yes%20x/",
        );
        assert_eq!(bag.get("$.on"), Some("out1"));
        assert_eq!(bag.get("$.ct"), Some("application/json"));
        assert_eq!(bag.get("alert"), Some("yes x"));
        assert_eq!(bag.0.len(), 5);
    }

    #[test]
    fn plus_is_not_a_space_and_leading_question_mark_is_tolerated() {
        let bag = PropertyBag::parse("?food=a+b&empty=&flag&&=x");
        assert_eq!(bag.get("food"), Some("a+b"));
        assert_eq!(bag.get("empty"), Some(""));
        assert_eq!(bag.get("flag"), Some(""));
        assert_eq!(bag.0.len(), 3);
    }

    #[test]
    fn format_escapes_dollar_slash_and_separators() {
        let mut bag = PropertyBag::default();
        bag.push("$.to", "/devices/d/messages/deviceBound");
        bag.push("a&b", "c=d e");
        assert_eq!(
            bag.format(),
            "%24.to=%2Fdevices%2Fd%2Fmessages%2FdeviceBound&a%26b=c%3Dd%20e"
        );
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(pairs in proptest::collection::vec(("\\PC{1,20}", "\\PC{0,20}"), 0..8)) {
            let bag = PropertyBag(pairs);
            let formatted = bag.format();
            prop_assert!(!formatted.contains('/'));
            prop_assert_eq!(PropertyBag::parse(&formatted), bag.clone());
            prop_assert_eq!(PropertyBag::parse(&format!("{formatted}/")), bag);
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = PropertyBag::parse(&s).format();
        }
    }
}
