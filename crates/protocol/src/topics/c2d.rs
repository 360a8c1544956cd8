//! Cloud-to-device messages: delivered on `devices/{d}/messages/devicebound/{props}`, always
//! with the `/` after `devicebound` (the Python SDK reads the bag from segment 4).

use super::split_device;
use crate::error::TopicError;
use crate::message::Message;
use crate::property_bag::PropertyBag;
use std::fmt;

/// A C2D delivery topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct C2dTopic {
    /// The receiving device.
    pub device_id: String,
    /// The property bag.
    pub properties: PropertyBag,
}

impl C2dTopic {
    /// The delivery topic for `message` to `device_id`.
    pub fn for_message(device_id: &str, message: &Message) -> Self {
        Self {
            device_id: device_id.to_owned(),
            properties: message.to_property_bag(),
        }
    }

    /// The subscription filter a device uses: `devices/{d}/messages/devicebound/#`.
    pub fn filter(device_id: &str) -> String {
        format!("devices/{device_id}/messages/devicebound/#")
    }

    /// Parses a C2D delivery topic.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let (device, rest) = split_device(topic)?;
        let tail = rest
            .strip_prefix("messages/devicebound")
            .ok_or_else(|| TopicError::Unknown(topic.to_owned()))?;
        let bag = match tail {
            "" => "",
            t => t
                .strip_prefix('/')
                .ok_or_else(|| TopicError::Unknown(topic.to_owned()))?,
        };
        Ok(Self {
            device_id: device.to_owned(),
            properties: PropertyBag::parse(bag),
        })
    }
}

impl fmt::Display for C2dTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "devices/{}/messages/devicebound/{}",
            self.device_id,
            self.properties.format()
        )
    }
}
