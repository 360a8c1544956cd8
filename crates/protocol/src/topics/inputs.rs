//! Module inputs: the edge hub delivers routed messages on
//! `devices/{d}/modules/{m}/inputs/{input}/{props}`, always with a `/` after the input name
//! (Node's matcher is `^devices/.*/modules/.*/inputs/.*/.*$`).

use super::{split_device, split_module};
use crate::error::TopicError;
use crate::identity::Identity;
use crate::message::Message;
use crate::property_bag::PropertyBag;
use std::fmt;

/// A module input delivery topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputTopic {
    /// The receiving module.
    pub identity: Identity,
    /// The input name.
    pub input: String,
    /// The property bag (the edge hub always adds `$.cdid` and `$.cmid`).
    pub properties: PropertyBag,
}

impl InputTopic {
    /// The delivery topic for `message` to `input` of module `identity`.
    pub fn for_message(identity: &Identity, input: &str, message: &Message) -> Self {
        Self {
            identity: identity.clone(),
            input: input.to_owned(),
            properties: message.to_property_bag(),
        }
    }

    /// Parses an input delivery topic.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let (device, rest) = split_device(topic)?;
        let (module, rest) =
            split_module(topic, rest)?.ok_or_else(|| TopicError::Unknown(topic.to_owned()))?;
        let rest = rest
            .strip_prefix("inputs/")
            .ok_or_else(|| TopicError::Unknown(topic.to_owned()))?;
        let (input, bag) = rest.split_once('/').unwrap_or((rest, ""));
        if input.is_empty() || input.contains(['+', '#']) {
            return Err(TopicError::malformed(
                topic,
                "the input name must be a non-empty name",
            ));
        }
        Ok(Self {
            identity: Identity::module(device, module),
            input: input.to_owned(),
            properties: PropertyBag::parse(bag),
        })
    }
}

impl fmt::Display for InputTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let module = self.identity.module_id.as_deref().unwrap_or_default();
        write!(
            f,
            "devices/{}/modules/{module}/inputs/{}/{}",
            self.identity.device_id,
            self.input,
            self.properties.format()
        )
    }
}
