//! IoT Hub MQTT topics, one file per family (reference iot-hub-protocols §1.3,
//! iotedge-runtime §3.3). Every type parses and formats symmetrically: `T::parse(&t.to_string())`
//! gives `t` back. Parsing is lenient where the SDKs differ (trailing `/`, leading `?`).

mod c2d;
mod inputs;
mod methods;
mod subscription;
mod telemetry;
mod twin;

pub use c2d::C2dTopic;
pub use inputs::InputTopic;
pub use methods::MethodTopic;
pub use subscription::Subscription;
pub use telemetry::TelemetryTopic;
pub use twin::TwinTopic;

use crate::encoding::{decode_component, encode_component};
use crate::error::TopicError;
use crate::identity::Identity;
use std::fmt;

/// Any IoT Hub topic, in either direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topic {
    /// Device or module telemetry (client → hub).
    Telemetry(TelemetryTopic),
    /// Cloud-to-device message (hub → device).
    C2d(C2dTopic),
    /// Module input message (edge hub → module).
    Input(InputTopic),
    /// Twin request, response or notification.
    Twin(TwinTopic),
    /// Direct method request or response.
    Method(MethodTopic),
}

impl Topic {
    /// Parses any IoT Hub topic name.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        if topic.starts_with("$iothub/twin/") {
            return TwinTopic::parse(topic).map(Self::Twin);
        }
        if topic.starts_with("$iothub/methods/") {
            return MethodTopic::parse(topic).map(Self::Method);
        }
        let Some(rest) = topic.strip_prefix("devices/") else {
            return Err(TopicError::Unknown(topic.to_owned()));
        };
        let after_device = rest.split_once('/').map(|(_, r)| r).unwrap_or_default();
        if after_device.starts_with("messages/devicebound") {
            return C2dTopic::parse(topic).map(Self::C2d);
        }
        let after_module = after_device
            .strip_prefix("modules/")
            .and_then(|r| r.split_once('/'))
            .map(|(_, r)| r);
        match after_module {
            Some(r) if r.starts_with("inputs/") => InputTopic::parse(topic).map(Self::Input),
            _ => TelemetryTopic::parse(topic).map(Self::Telemetry),
        }
    }

    /// The device/module a `devices/...` topic names; `None` for `$iothub/...` topics, which
    /// always belong to the connection's own identity.
    pub fn identity(&self) -> Option<Identity> {
        match self {
            Topic::Telemetry(t) => Some(t.identity.clone()),
            Topic::C2d(t) => Some(Identity::device(t.device_id.clone())),
            Topic::Input(t) => Some(t.identity.clone()),
            Topic::Twin(_) | Topic::Method(_) => None,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Telemetry(t) => t.fmt(f),
            Topic::C2d(t) => t.fmt(f),
            Topic::Input(t) => t.fmt(f),
            Topic::Twin(t) => t.fmt(f),
            Topic::Method(t) => t.fmt(f),
        }
    }
}

/// Splits `devices/{d}/rest` into `(d, rest)`; the device id must not be empty.
fn split_device(topic: &str) -> Result<(&str, &str), TopicError> {
    let rest = topic
        .strip_prefix("devices/")
        .ok_or_else(|| TopicError::Unknown(topic.to_owned()))?;
    let (device, rest) = rest
        .split_once('/')
        .ok_or_else(|| TopicError::Unknown(topic.to_owned()))?;
    if device.is_empty() || device.contains(['+', '#']) {
        return Err(TopicError::malformed(
            topic,
            "the device id must be a non-empty name",
        ));
    }
    Ok((device, rest))
}

/// Splits `modules/{m}/rest` into `(m, rest)`.
fn split_module<'a>(
    topic: &'a str,
    rest: &'a str,
) -> Result<Option<(&'a str, &'a str)>, TopicError> {
    let Some(rest) = rest.strip_prefix("modules/") else {
        return Ok(None);
    };
    let (module, rest) = rest
        .split_once('/')
        .ok_or_else(|| TopicError::Unknown(topic.to_owned()))?;
    if module.is_empty() || module.contains(['+', '#']) {
        return Err(TopicError::malformed(
            topic,
            "the module id must be a non-empty name",
        ));
    }
    Ok(Some((module, rest)))
}

/// Parameters of a `$iothub` topic tail such as `?$rid=1&$version=2` (leading `?` optional).
#[derive(Default)]
struct Query {
    rid: Option<String>,
    version: Option<String>,
}

impl Query {
    fn parse(tail: &str) -> Self {
        let tail = tail.strip_prefix('?').unwrap_or(tail);
        let mut q = Self::default();
        for pair in tail.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match decode_component(k).as_ref() {
                "$rid" => q.rid = Some(decode_component(v).into_owned()),
                "$version" => q.version = Some(v.to_owned()),
                _ => {}
            }
        }
        q
    }

    fn rid(&self, topic: &str) -> Result<String, TopicError> {
        self.rid
            .clone()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| TopicError::malformed(topic, "the request id ($rid) is missing"))
    }

    fn version(&self, topic: &str) -> Result<Option<u64>, TopicError> {
        self.version
            .as_deref()
            .map(|v| {
                v.parse()
                    .map_err(|_| TopicError::malformed(topic, "$version is not a number"))
            })
            .transpose()
    }
}

/// Encodes a request id for a topic tail (ids are opaque; UUIDs and hex counters pass unchanged).
fn encode_rid(rid: &str) -> std::borrow::Cow<'_, str> {
    encode_component(rid)
}

#[cfg(test)]
mod tests;
