//! The message view routes are evaluated on, and a simple owned message.
//!
//! The edge hub routes its own message type through [`RoutableMessage`] without copying it.
//! [`Message`] is the owned implementation used by the CLI and tests.

use std::fmt;

/// The value of an application property as a message holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyValue<'a> {
    /// The message has no property of that name: the reference is undefined.
    Missing,
    /// The property is present with a null value (`is_null` is true, `is_defined` is true).
    Null,
    /// The property's string value.
    Value(&'a str),
}

/// A system property, by the name the edge hub stores it under (reference §2.10).
///
/// Conditions name system properties as `$name`; names are matched case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemProperty<'a> {
    /// `messageId`
    MessageId,
    /// `to`
    To,
    /// `userId`
    UserId,
    /// `ack`
    Ack,
    /// `cid`: the correlation id. On the edge `$correlationId` is always undefined (reference §2.10).
    CorrelationId,
    /// `contentType`
    ContentType,
    /// `contentEncoding`
    ContentEncoding,
    /// `messageSchema`
    MessageSchema,
    /// `creationTime`
    CreationTime,
    /// `absolute-expiry-time`
    AbsoluteExpiryTime,
    /// `operation`
    Operation,
    /// `outputName`
    OutputName,
    /// `inputName`
    InputName,
    /// `connectionDeviceId`
    ConnectionDeviceId,
    /// `connectionModuleId`
    ConnectionModuleId,
    /// `edgeMessageId`
    EdgeMessageId,
    /// `edgeHubOriginInterface`: `internal` or `downstream`.
    EdgeHubOriginInterface,
    /// `messageType`, e.g. `twinChangeNotification`.
    MessageType,
    /// `enqueuedTime`
    EnqueuedTime,
    /// `iothub-interface-id`
    InterfaceId,
    /// `dt-subject`: the component name. On the edge `$componentName` is always undefined.
    ComponentName,
    /// `modelId`
    ModelId,
    /// Any other name; the edge hub never sets one, other message sources may.
    Other(&'a str),
}

/// Every named system property, for lookups by name.
const KNOWN: [SystemProperty<'static>; 22] = [
    SystemProperty::MessageId,
    SystemProperty::To,
    SystemProperty::UserId,
    SystemProperty::Ack,
    SystemProperty::CorrelationId,
    SystemProperty::ContentType,
    SystemProperty::ContentEncoding,
    SystemProperty::MessageSchema,
    SystemProperty::CreationTime,
    SystemProperty::AbsoluteExpiryTime,
    SystemProperty::Operation,
    SystemProperty::OutputName,
    SystemProperty::InputName,
    SystemProperty::ConnectionDeviceId,
    SystemProperty::ConnectionModuleId,
    SystemProperty::EdgeMessageId,
    SystemProperty::EdgeHubOriginInterface,
    SystemProperty::MessageType,
    SystemProperty::EnqueuedTime,
    SystemProperty::InterfaceId,
    SystemProperty::ComponentName,
    SystemProperty::ModelId,
];

impl SystemProperty<'static> {
    /// The named property the edge hub sets under `name` (case-insensitive), if any.
    pub fn known(name: &str) -> Option<Self> {
        KNOWN
            .iter()
            .copied()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

impl<'a> SystemProperty<'a> {
    /// The property for an edge name (case-insensitive); unknown names give [`SystemProperty::Other`].
    pub fn from_name(name: &'a str) -> Self {
        SystemProperty::known(name).unwrap_or(SystemProperty::Other(name))
    }

    /// The name the edge hub stores this property under.
    pub fn name(&self) -> &'a str {
        match self {
            SystemProperty::MessageId => "messageId",
            SystemProperty::To => "to",
            SystemProperty::UserId => "userId",
            SystemProperty::Ack => "ack",
            SystemProperty::CorrelationId => "cid",
            SystemProperty::ContentType => "contentType",
            SystemProperty::ContentEncoding => "contentEncoding",
            SystemProperty::MessageSchema => "messageSchema",
            SystemProperty::CreationTime => "creationTime",
            SystemProperty::AbsoluteExpiryTime => "absolute-expiry-time",
            SystemProperty::Operation => "operation",
            SystemProperty::OutputName => "outputName",
            SystemProperty::InputName => "inputName",
            SystemProperty::ConnectionDeviceId => "connectionDeviceId",
            SystemProperty::ConnectionModuleId => "connectionModuleId",
            SystemProperty::EdgeMessageId => "edgeMessageId",
            SystemProperty::EdgeHubOriginInterface => "edgeHubOriginInterface",
            SystemProperty::MessageType => "messageType",
            SystemProperty::EnqueuedTime => "enqueuedTime",
            SystemProperty::InterfaceId => "iothub-interface-id",
            SystemProperty::ComponentName => "dt-subject",
            SystemProperty::ModelId => "modelId",
            SystemProperty::Other(name) => name,
        }
    }
}

impl fmt::Display for SystemProperty<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A read-only view of a message, enough to route it.
///
/// Implement it on the edge hub's own message type so routing borrows instead of copying.
/// Lookups must not allocate; they run once per property reference per route.
pub trait RoutableMessage {
    /// The source path the hub assigned, e.g. `/messages/modules/m1/outputs/o1` (see [`crate::message_source`]).
    fn source(&self) -> &str;

    /// The body bytes. Routing calls this at most once per message, however many routes read `$body`.
    fn body(&self) -> &[u8];

    /// The application property `name`, matched case-insensitively (ASCII).
    fn application_property(&self, name: &str) -> PropertyValue<'_>;

    /// The system property, or `None` when the message does not have it.
    fn system_property(&self, property: SystemProperty<'_>) -> Option<&str>;
}

impl<M: RoutableMessage + ?Sized> RoutableMessage for &M {
    fn source(&self) -> &str {
        (**self).source()
    }

    fn body(&self) -> &[u8] {
        (**self).body()
    }

    fn application_property(&self, name: &str) -> PropertyValue<'_> {
        (**self).application_property(name)
    }

    fn system_property(&self, property: SystemProperty<'_>) -> Option<&str> {
        (**self).system_property(property)
    }
}

/// An owned message for the CLI and tests.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The source path, e.g. `/messages/modules/m1/outputs/o1`.
    pub source: String,
    /// The body bytes.
    pub body: Vec<u8>,
    /// Application properties in order; `None` is a null value.
    pub properties: Vec<(String, Option<String>)>,
    /// System properties by edge name (see [`SystemProperty::name`]).
    pub system_properties: Vec<(String, String)>,
}

impl fmt::Debug for Message {
    // Sizes only: bodies and property values may hold user data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("source", &self.source)
            .field("body_len", &self.body.len())
            .field("properties", &self.properties.len())
            .field("system_properties", &self.system_properties.len())
            .finish()
    }
}

impl Message {
    /// An empty message from `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ..Self::default()
        }
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds an application property.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((name.into(), Some(value.into())));
        self
    }

    /// Adds an application property with a null value.
    pub fn with_null_property(mut self, name: impl Into<String>) -> Self {
        self.properties.push((name.into(), None));
        self
    }

    /// Sets a system property by its edge name (`contentType`, `cid`, …).
    pub fn with_system_property(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        let name = name.into();
        self.system_properties
            .retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.system_properties.push((name, value.into()));
        self
    }

    /// Marks the body as UTF-8 JSON (`contentType` and `contentEncoding`), as `$body` queries need.
    pub fn with_json_body(self, json: impl Into<String>) -> Self {
        self.with_body(json.into().into_bytes())
            .with_system_property("contentType", "application/json")
            .with_system_property("contentEncoding", "utf-8")
    }
}

impl RoutableMessage for Message {
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
            Some((_, Some(value))) => PropertyValue::Value(value),
        }
    }

    fn system_property(&self, property: SystemProperty<'_>) -> Option<&str> {
        let name = property.name();
        self.system_properties
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_property_names_round_trip_case_insensitively() {
        for p in KNOWN {
            assert_eq!(SystemProperty::from_name(p.name()), p);
            assert_eq!(SystemProperty::from_name(&p.name().to_uppercase()), p);
        }
        assert_eq!(
            SystemProperty::from_name("sys1"),
            SystemProperty::Other("sys1")
        );
    }

    #[test]
    fn the_correlation_id_is_stored_as_cid() {
        assert_eq!(
            SystemProperty::from_name("cid"),
            SystemProperty::CorrelationId
        );
        assert_eq!(
            SystemProperty::from_name("correlationId"),
            SystemProperty::Other("correlationId")
        );
        assert_eq!(
            SystemProperty::from_name("dt-subject"),
            SystemProperty::ComponentName
        );
    }

    #[test]
    fn application_properties_are_found_case_insensitively() {
        let m = Message::new("/messages")
            .with_property("Alert", "high")
            .with_null_property("n");
        assert_eq!(
            m.application_property("alert"),
            PropertyValue::Value("high")
        );
        assert_eq!(m.application_property("N"), PropertyValue::Null);
        assert_eq!(m.application_property("x"), PropertyValue::Missing);
    }

    #[test]
    fn system_properties_are_found_by_edge_name() {
        let m = Message::new("/messages").with_system_property("CID", "c1");
        assert_eq!(m.system_property(SystemProperty::CorrelationId), Some("c1"));
        assert_eq!(m.system_property(SystemProperty::MessageId), None);
    }

    #[test]
    fn debug_shows_sizes_not_contents() {
        let m = Message::new("/messages")
            .with_body("secret")
            .with_property("k", "secret");
        let debug = format!("{m:?}");
        assert!(!debug.contains("secret"));
        assert!(debug.contains("body_len: 6"));
    }
}
