//! Identifiers as IoT Hub allows them, drawn from the fuzzer's bytes, for round-trip checks that
//! only hold for well-formed names (free text is fuzzed separately, as raw input).

// Each target includes this file and uses only part of it.
#![allow(dead_code)]

use arbitrary::{Result, Unstructured};

/// Characters IoT Hub allows in device and module ids (besides ASCII letters and digits), minus
/// the MQTT wildcards `+` and `#`, which can never appear in a topic name.
const ID_PUNCTUATION: &[u8] = b"-.%_*?!(),:=@$'";

/// A non-empty device or module id of at most 32 characters.
pub fn id(u: &mut Unstructured<'_>) -> Result<String> {
    let len = u.int_in_range(1..=32)?;
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        let c = match u.int_in_range(0..=3)? {
            0 => *u.choose(ID_PUNCTUATION)?,
            1 => u.int_in_range(b'0'..=b'9')?,
            2 => u.int_in_range(b'A'..=b'Z')?,
            _ => u.int_in_range(b'a'..=b'z')?,
        };
        s.push(char::from(c));
    }
    Ok(s)
}

/// A host name such as `hub-1.azure-devices.net` (or with a `:port`).
pub fn host(u: &mut Unstructured<'_>) -> Result<String> {
    let labels = u.int_in_range(1..=3)?;
    let mut parts = Vec::with_capacity(labels);
    for _ in 0..labels {
        let len = u.int_in_range(1..=10)?;
        let mut label = String::with_capacity(len);
        for _ in 0..len {
            let c = match u.int_in_range(0..=2)? {
                0 => u.int_in_range(b'0'..=b'9')?,
                1 => u.int_in_range(b'A'..=b'Z')?,
                _ => u.int_in_range(b'a'..=b'z')?,
            };
            label.push(char::from(c));
        }
        parts.push(label);
    }
    let mut host = parts.join(".");
    if u.ratio(1, 4)? {
        host.push_str(&format!(":{}", u.int_in_range(1..=65_535u32)?));
    }
    Ok(host)
}
