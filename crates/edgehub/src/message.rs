//! The edge hub's message: what modules and leaf devices publish, enriched on ingestion, stored
//! once per message and routed without copying (it implements the routing crate's
//! [`RoutableMessage`]).
//!
//! Ingestion follows `reference/iotedge-runtime.md` §3.6: the hub adds `edgeMessageId`,
//! `edgeHubOriginInterface`, `connectionDeviceId`/`connectionModuleId` (taken from the
//! *authenticated* identity, never from the topic), `outputName` and `enqueuedTime`, then checks
//! the 256 KiB size rule, which counts UTF-16 code units of every property key and value plus the
//! body bytes, measured after enrichment.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ironedge_routing::{PropertyValue, RoutableMessage, SystemProperty, source_for};

/// Largest message the edge hub accepts (`Edge.Hub.Core/Constants.cs`, `MaxMessageSize`).
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// Edge names of the system properties the hub sets itself.
pub mod sysprop {
    /// `edgeMessageId`: the hub's unique id for a stored message.
    pub const EDGE_MESSAGE_ID: &str = "edgeMessageId";
    /// `edgeHubOriginInterface`: `internal` (this device's modules) or `downstream` (leaf devices).
    pub const ORIGIN_INTERFACE: &str = "edgeHubOriginInterface";
    /// `connectionDeviceId`: the sender's device id.
    pub const CONNECTION_DEVICE_ID: &str = "connectionDeviceId";
    /// `connectionModuleId`: the sender's module id.
    pub const CONNECTION_MODULE_ID: &str = "connectionModuleId";
    /// `outputName`: the module output the message was sent on.
    pub const OUTPUT_NAME: &str = "outputName";
    /// `inputName`: the module input it is delivered to.
    pub const INPUT_NAME: &str = "inputName";
    /// `enqueuedTime`: when the hub accepted the message (RFC 3339).
    pub const ENQUEUED_TIME: &str = "enqueuedTime";
    /// `messageType`: set to `twinChangeNotification` on routed reported patches.
    pub const MESSAGE_TYPE: &str = "messageType";
    /// `messageSchema`.
    pub const MESSAGE_SCHEMA: &str = "messageSchema";
    /// `modelId`: the Plug and Play model id given at connect time.
    pub const MODEL_ID: &str = "modelId";
    /// `contentType`.
    pub const CONTENT_TYPE: &str = "contentType";
    /// `contentEncoding`.
    pub const CONTENT_ENCODING: &str = "contentEncoding";
}

/// A message inside the edge hub.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EdgeMessage {
    /// Body bytes, opaque.
    pub body: Bytes,
    /// Application properties in arrival order; `None` is a null value (`key` without `=`).
    pub properties: Vec<(String, Option<String>)>,
    /// System properties by edge name (`messageId`, `cid`, `contentType`, …).
    pub system_properties: Vec<(String, String)>,
    /// The routing source, computed once from the system properties.
    source: String,
}

impl fmt::Debug for EdgeMessage {
    // Bodies and property values are user data: log shapes only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeMessage")
            .field("source", &self.source)
            .field("body_len", &self.body.len())
            .field("properties", &self.properties.len())
            .field("system_properties", &self.system_properties.len())
            .finish()
    }
}

/// Why a stored message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored message is corrupt: {0}")]
pub struct DecodeError(&'static str);

impl EdgeMessage {
    /// A message with a body and no properties.
    pub fn new(body: impl Into<Bytes>) -> Self {
        let mut m = Self {
            body: body.into(),
            ..Self::default()
        };
        m.refresh_source();
        m
    }

    /// A message from its parts; the routing source is computed once.
    pub fn from_parts(
        body: Bytes,
        properties: Vec<(String, Option<String>)>,
        system_properties: Vec<(String, String)>,
    ) -> Self {
        let mut m = Self {
            body,
            properties,
            system_properties,
            source: String::new(),
        };
        m.refresh_source();
        m
    }

    /// The system property `name` (edge name, case-insensitive).
    pub fn system(&self, name: &str) -> Option<&str> {
        self.system_properties
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets or replaces a system property.
    pub fn set_system(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .system_properties
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.system_properties.push((name.to_owned(), value)),
        }
        self.refresh_source();
    }

    /// Removes a system property.
    pub fn remove_system(&mut self, name: &str) {
        self.system_properties
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.refresh_source();
    }

    fn refresh_source(&mut self) {
        self.source = source_for(
            self.system(sysprop::MESSAGE_TYPE),
            self.system(sysprop::CONNECTION_MODULE_ID),
            self.system(sysprop::OUTPUT_NAME),
        );
    }

    /// The size IoT Edge measures (`Routing.Core/Message.Size()`): UTF-16 code units of all
    /// application and system property keys and values, plus the body bytes.
    pub fn size(&self) -> usize {
        let utf16 = |s: &str| s.encode_utf16().count();
        let props: usize = self
            .properties
            .iter()
            .map(|(k, v)| utf16(k) + v.as_deref().map_or(0, utf16))
            .sum();
        let sys: usize = self
            .system_properties
            .iter()
            .map(|(k, v)| utf16(k) + utf16(v))
            .sum();
        props + sys + self.body.len()
    }

    /// Encodes the message for the store: counts and length-prefixed fields.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        buf.put_u8(FORMAT_VERSION);
        buf.put_u32(len_u32(self.system_properties.len()));
        for (k, v) in &self.system_properties {
            put_str(&mut buf, k);
            put_str(&mut buf, v);
        }
        buf.put_u32(len_u32(self.properties.len()));
        for (k, v) in &self.properties {
            put_str(&mut buf, k);
            match v {
                Some(v) => {
                    buf.put_u8(1);
                    put_str(&mut buf, v);
                }
                None => buf.put_u8(0),
            }
        }
        buf.put_u32(len_u32(self.body.len()));
        buf.put_slice(&self.body);
        buf.freeze()
    }

    fn encoded_len(&self) -> usize {
        let sys: usize = self
            .system_properties
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum();
        let props: usize = self
            .properties
            .iter()
            .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, String::len))
            .sum();
        1 + 4 + sys + 4 + props + 4 + self.body.len()
    }

    /// Decodes what [`EdgeMessage::encode`] wrote; the body shares `bytes`' buffer.
    pub fn decode(mut bytes: Bytes) -> Result<Self, DecodeError> {
        if get_u8(&mut bytes)? != FORMAT_VERSION {
            return Err(DecodeError("unknown format version"));
        }
        let n = get_u32(&mut bytes)? as usize;
        let mut system_properties = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            system_properties.push((get_str(&mut bytes)?, get_str(&mut bytes)?));
        }
        let n = get_u32(&mut bytes)? as usize;
        let mut properties = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let k = get_str(&mut bytes)?;
            let v = match get_u8(&mut bytes)? {
                0 => None,
                1 => Some(get_str(&mut bytes)?),
                _ => return Err(DecodeError("bad null marker")),
            };
            properties.push((k, v));
        }
        let n = get_u32(&mut bytes)? as usize;
        if bytes.remaining() != n {
            return Err(DecodeError("body length mismatch"));
        }
        let mut m = Self {
            body: bytes,
            properties,
            system_properties,
            source: String::new(),
        };
        m.refresh_source();
        Ok(m)
    }
}

const FORMAT_VERSION: u8 = 1;

fn len_u32(n: usize) -> u32 {
    // Messages are limited to 256 KiB long before this could overflow.
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u32(len_u32(s.len()));
    buf.put_slice(s.as_bytes());
}

fn get_u8(b: &mut Bytes) -> Result<u8, DecodeError> {
    if b.remaining() < 1 {
        return Err(DecodeError("truncated"));
    }
    Ok(b.get_u8())
}

fn get_u32(b: &mut Bytes) -> Result<u32, DecodeError> {
    if b.remaining() < 4 {
        return Err(DecodeError("truncated"));
    }
    Ok(b.get_u32())
}

fn get_str(b: &mut Bytes) -> Result<String, DecodeError> {
    let n = get_u32(b)? as usize;
    if b.remaining() < n {
        return Err(DecodeError("truncated string"));
    }
    let s = b.split_to(n);
    String::from_utf8(s.to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
}

impl RoutableMessage for EdgeMessage {
    fn source(&self) -> &str {
        &self.source
    }

    fn body(&self) -> &[u8] {
        &self.body
    }

    fn application_property(&self, name: &str) -> PropertyValue<'_> {
        match self
            .properties
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            None => PropertyValue::Missing,
            Some((_, None)) => PropertyValue::Null,
            Some((_, Some(v))) => PropertyValue::Value(v),
        }
    }

    fn system_property(&self, property: SystemProperty<'_>) -> Option<&str> {
        self.system(property.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> EdgeMessage {
        let mut m = EdgeMessage::new(&b"{\"temp\":20}"[..]);
        m.properties.push(("alert".into(), Some("yes x".into())));
        m.properties.push(("flag".into(), None));
        m.set_system(sysprop::CONNECTION_DEVICE_ID, "dev1");
        m.set_system(sysprop::CONNECTION_MODULE_ID, "sensor");
        m.set_system(sysprop::OUTPUT_NAME, "out1");
        m
    }

    #[test]
    fn the_source_follows_the_sender_and_output() {
        let mut m = sample();
        assert_eq!(m.source(), "/messages/modules/sensor/outputs/out1");
        m.remove_system(sysprop::OUTPUT_NAME);
        assert_eq!(m.source(), "/messages/modules/sensor");
        m.remove_system(sysprop::CONNECTION_MODULE_ID);
        assert_eq!(m.source(), "/messages");
        m.set_system(sysprop::MESSAGE_TYPE, "twinChangeNotification");
        assert_eq!(m.source(), "/twinChangeNotifications");
    }

    #[test]
    fn size_counts_utf16_units_of_properties_plus_body_bytes() {
        let mut m = EdgeMessage::new(vec![0u8; 10]);
        m.properties.push(("ké".into(), Some("😀".into())));
        m.set_system("messageId", "a");
        // "ké" = 2 units, "😀" = 2 units (surrogate pair), "messageId" 9 + "a" 1, body 10.
        assert_eq!(m.size(), 2 + 2 + 9 + 1 + 10);
    }

    #[test]
    fn encode_then_decode_gives_the_same_message() {
        let m = sample();
        let back = EdgeMessage::decode(m.encode()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.source(), m.source());
    }

    #[test]
    fn truncated_or_foreign_bytes_are_an_error_not_a_panic() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(
                EdgeMessage::decode(bytes.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        assert!(EdgeMessage::decode(Bytes::from_static(&[9, 0, 0])).is_err());
    }

    #[test]
    fn property_lookup_is_case_insensitive_and_knows_nulls() {
        let m = sample();
        assert_eq!(
            m.application_property("ALERT"),
            PropertyValue::Value("yes x")
        );
        assert_eq!(m.application_property("flag"), PropertyValue::Null);
        assert_eq!(m.application_property("nope"), PropertyValue::Missing);
        assert_eq!(
            m.system_property(SystemProperty::ConnectionModuleId),
            Some("sensor")
        );
    }

    #[test]
    fn debug_shows_no_payload() {
        let dbg = format!("{:?}", sample());
        assert!(!dbg.contains("temp") && !dbg.contains("yes x"));
    }

    proptest! {
        #[test]
        fn any_message_round_trips(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            props in proptest::collection::vec((".{0,8}", proptest::option::of(".{0,8}")), 0..5),
            sys in proptest::collection::vec(("[a-zA-Z]{1,8}", ".{0,8}"), 0..5),
        ) {
            let m = EdgeMessage { body: body.into(), properties: props, system_properties: sys, source: String::new() };
            let mut m2 = EdgeMessage::decode(m.encode()).unwrap();
            m2.source.clear();
            prop_assert_eq!(m2, m);
        }

        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = EdgeMessage::decode(bytes.into());
        }
    }
}
