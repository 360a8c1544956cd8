//! Telemetry: `devices/{d}/messages/events/{props}` and
//! `devices/{d}/modules/{m}/messages/events/{props}` (the edge hub's module outputs carry the
//! output name as `$.on`). Accepted forms: no trailing `/`, an empty bag, a `?` before the bag
//! and a `/` after it.

use super::{split_device, split_module};
use crate::error::TopicError;
use crate::identity::Identity;
use crate::message::Message;
use crate::property_bag::PropertyBag;
use std::fmt;

/// A telemetry topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryTopic {
    /// Sender named by the topic (must equal the authenticated identity).
    pub identity: Identity,
    /// The property bag.
    pub properties: PropertyBag,
}

impl TelemetryTopic {
    /// The telemetry topic for `message` sent by `identity`.
    pub fn for_message(identity: &Identity, message: &Message) -> Self {
        Self {
            identity: identity.clone(),
            properties: message.to_property_bag(),
        }
    }

    /// Parses a telemetry topic.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let (device, rest) = split_device(topic)?;
        let (identity, rest) = match split_module(topic, rest)? {
            Some((module, rest)) => (Identity::module(device, module), rest),
            None => (Identity::device(device), rest),
        };
        let tail = rest
            .strip_prefix("messages/events")
            .ok_or_else(|| TopicError::Unknown(topic.to_owned()))?;
        let bag = match tail {
            "" => "",
            t => t
                .strip_prefix('/')
                .ok_or_else(|| TopicError::Unknown(topic.to_owned()))?,
        };
        Ok(Self {
            identity,
            properties: PropertyBag::parse(bag),
        })
    }

    /// Turns the topic and a body into a [`Message`].
    pub fn into_message(self, body: impl Into<bytes::Bytes>) -> Message {
        Message::from_property_bag(body, self.properties)
    }
}

impl fmt::Display for TelemetryTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.identity.module_id {
            Some(m) => write!(
                f,
                "devices/{}/modules/{m}/messages/events/",
                self.identity.device_id
            )?,
            None => write!(f, "devices/{}/messages/events/", self.identity.device_id)?,
        }
        f.write_str(&self.properties.format())
    }
}
