//! Percent-encoding as the IoT Hub SDKs use it: RFC 3986 unreserved characters stay, everything
//! else is `%XX`; decoding never turns `+` into a space (the Python SDK avoids `quote_plus`).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::borrow::Cow;

/// Characters that are escaped: everything except `A-Z a-z 0-9 - _ . ~` (Python `quote(s, safe="")`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one URI component (`/`, `$`, `=`, `&` and `%` included).
pub fn encode_component(s: &str) -> Cow<'_, str> {
    utf8_percent_encode(s, COMPONENT).into()
}

/// Percent-decodes leniently: malformed escapes stay as they are, `+` stays `+`, and invalid UTF-8
/// is replaced rather than rejected, because the input comes from clients we do not control.
pub fn decode_component(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    match percent_decode_str(s).decode_utf8_lossy() {
        Cow::Borrowed(b) => Cow::Owned(b.to_owned()),
        Cow::Owned(o) => Cow::Owned(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_escapes_everything_but_unreserved() {
        assert_eq!(
            encode_component("a/b c$.on=x&y~_-"),
            "a%2Fb%20c%24.on%3Dx%26y~_-"
        );
    }

    #[test]
    fn decoding_keeps_plus_and_bad_escapes() {
        assert_eq!(decode_component("a+b%20c%2"), "a+b c%2");
        assert_eq!(decode_component("%zz"), "%zz");
    }
}
