//! Device-to-cloud (and hub-to-device) messages: body bytes, system properties and application
//! properties, with the wire names of reference §1.4. Shared by the cloud hub and the edge hub.

use crate::property_bag::PropertyBag;
use bytes::Bytes;
use std::fmt;

/// System properties with their IoT Hub meaning. Each maps to one wire key (`$.mid`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemProperties {
    /// `$.mid`
    pub message_id: Option<String>,
    /// `$.cid`
    pub correlation_id: Option<String>,
    /// `$.uid`
    pub user_id: Option<String>,
    /// `$.to` (C2D: `/devices/{d}/messages/deviceBound`)
    pub to: Option<String>,
    /// `$.ct`
    pub content_type: Option<String>,
    /// `$.ce`
    pub content_encoding: Option<String>,
    /// `$.exp`: absolute expiry (ISO-8601)
    pub expiry_time_utc: Option<String>,
    /// `$.on`: output name of module telemetry
    pub output_name: Option<String>,
    /// `$.cdid`: device id of the original sender
    pub connection_device_id: Option<String>,
    /// `$.cmid`: module id of the original sender
    pub connection_module_id: Option<String>,
    /// `$.schema`
    pub message_schema: Option<String>,
    /// `$.ctime`
    pub creation_time_utc: Option<String>,
    /// `$.ifid`
    pub interface_id: Option<String>,
    /// `$.sub`: component (`dt-subject`)
    pub component_name: Option<String>,
    /// `iothub-ack`: C2D feedback request
    pub ack: Option<String>,
    /// `iothub-operation`
    pub operation: Option<String>,
}

/// Wire keys of the system properties, in the order they are written.
pub const SYSTEM_PROPERTY_KEYS: [&str; 16] = [
    "$.mid",
    "$.cid",
    "$.uid",
    "$.to",
    "$.ct",
    "$.ce",
    "$.exp",
    "$.on",
    "$.cdid",
    "$.cmid",
    "$.schema",
    "$.ctime",
    "$.ifid",
    "$.sub",
    "iothub-ack",
    "iothub-operation",
];

impl SystemProperties {
    fn slot_mut(&mut self, wire_key: &str) -> Option<&mut Option<String>> {
        Some(match wire_key {
            "$.mid" => &mut self.message_id,
            "$.cid" => &mut self.correlation_id,
            "$.uid" => &mut self.user_id,
            "$.to" => &mut self.to,
            "$.ct" => &mut self.content_type,
            "$.ce" => &mut self.content_encoding,
            "$.exp" => &mut self.expiry_time_utc,
            "$.on" => &mut self.output_name,
            "$.cdid" => &mut self.connection_device_id,
            "$.cmid" => &mut self.connection_module_id,
            "$.schema" => &mut self.message_schema,
            "$.ctime" => &mut self.creation_time_utc,
            "$.ifid" => &mut self.interface_id,
            "$.sub" => &mut self.component_name,
            "iothub-ack" => &mut self.ack,
            "iothub-operation" => &mut self.operation,
            _ => return None,
        })
    }

    /// The value for a wire key such as `$.mid`; `None` for unknown keys or unset values.
    pub fn get(&self, wire_key: &str) -> Option<&str> {
        let v = match wire_key {
            "$.mid" => &self.message_id,
            "$.cid" => &self.correlation_id,
            "$.uid" => &self.user_id,
            "$.to" => &self.to,
            "$.ct" => &self.content_type,
            "$.ce" => &self.content_encoding,
            "$.exp" => &self.expiry_time_utc,
            "$.on" => &self.output_name,
            "$.cdid" => &self.connection_device_id,
            "$.cmid" => &self.connection_module_id,
            "$.schema" => &self.message_schema,
            "$.ctime" => &self.creation_time_utc,
            "$.ifid" => &self.interface_id,
            "$.sub" => &self.component_name,
            "iothub-ack" => &self.ack,
            "iothub-operation" => &self.operation,
            _ => return None,
        };
        v.as_deref()
    }

    /// Sets a wire key; returns `false` (and changes nothing) when the key is not a system property.
    pub fn set(&mut self, wire_key: &str, value: impl Into<String>) -> bool {
        match self.slot_mut(wire_key) {
            Some(slot) => {
                *slot = Some(value.into());
                true
            }
            None => false,
        }
    }

    /// Set properties as `(wire key, value)` pairs in [`SYSTEM_PROPERTY_KEYS`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        SYSTEM_PROPERTY_KEYS
            .iter()
            .filter_map(|k| self.get(k).map(|v| (*k, v)))
    }
}

/// A message with its body and properties. `Debug` prints sizes, never the body or values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The body, opaque bytes.
    pub body: Bytes,
    /// System properties.
    pub system: SystemProperties,
    /// Application properties in wire order (unknown keys of the bag land here).
    pub properties: Vec<(String, String)>,
}

impl Message {
    /// A message with a body and no properties.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// Builds a message from a topic's property bag: known `$.` keys become system properties,
    /// everything else application properties.
    pub fn from_property_bag(body: impl Into<Bytes>, bag: PropertyBag) -> Self {
        let mut msg = Self::new(body);
        for (k, v) in bag.0 {
            if let Some(slot) = msg.system.slot_mut(&k) {
                *slot = Some(v);
            } else {
                msg.properties.push((k, v));
            }
        }
        msg
    }

    /// The property bag to put on an outbound topic: system properties first, then application ones.
    pub fn to_property_bag(&self) -> PropertyBag {
        let mut bag = PropertyBag(Vec::with_capacity(self.properties.len() + 4));
        for (k, v) in self.system.iter() {
            bag.push(k, v);
        }
        bag.0.extend(self.properties.iter().cloned());
        bag
    }

    /// The last application property named `key`.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets an application property, replacing an existing one of that name.
    pub fn set_property(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.properties.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.properties.push((key, value)),
        }
    }

    /// Size as edgeHub counts it against the 256 KiB limit: body plus property keys and values.
    pub fn size(&self) -> usize {
        let sys: usize = self.system.iter().map(|(k, v)| k.len() + v.len()).sum();
        let app: usize = self.properties.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.body.len() + sys + app
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.system.iter().map(|(k, _)| k).collect();
        f.debug_struct("Message")
            .field("body_len", &self.body.len())
            .field("message_id", &self.system.message_id)
            .field("system_keys", &keys)
            .field("app_properties", &self.properties.len())
            .field("size", &self.size())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bag_maps_system_and_app_properties_both_ways() {
        let bag = PropertyBag::parse(
            "%24.on=out1&%24.mid=mid-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=yes%20x&iothub-ack=full",
        );
        let msg = Message::from_property_bag(&b"{}"[..], bag);
        assert_eq!(msg.system.output_name.as_deref(), Some("out1"));
        assert_eq!(msg.system.message_id.as_deref(), Some("mid-1"));
        assert_eq!(msg.system.content_type.as_deref(), Some("application/json"));
        assert_eq!(msg.system.ack.as_deref(), Some("full"));
        assert_eq!(
            msg.properties,
            vec![("alert".to_owned(), "yes x".to_owned())]
        );
        let back = Message::from_property_bag(
            msg.body.clone(),
            PropertyBag::parse(&msg.to_property_bag().format()),
        );
        assert_eq!(back, msg);
    }

    #[test]
    fn debug_prints_sizes_not_payloads() {
        let mut msg = Message::new(&b"secret-body"[..]);
        msg.set_property("token", "secret-value");
        let s = format!("{msg:?}");
        assert!(!s.contains("secret"), "{s}");
        assert!(s.contains("body_len: 11"), "{s}");
    }

    #[test]
    fn set_property_replaces_and_unknown_system_key_is_refused() {
        let mut msg = Message::default();
        msg.set_property("a", "1");
        msg.set_property("a", "2");
        assert_eq!(msg.properties.len(), 1);
        assert_eq!(msg.property("a"), Some("2"));
        assert!(!msg.system.set("$.nope", "x"));
        assert!(msg.system.set("$.cdid", "dev1"));
        assert_eq!(msg.system.get("$.cdid"), Some("dev1"));
    }
}
