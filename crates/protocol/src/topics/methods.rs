//! Direct method topics: requests on `$iothub/methods/POST/{name}/?$rid={rid}` (hub → client,
//! QoS 0) and responses on `$iothub/methods/res/{status}/?$rid={rid}` (client → hub).

use super::{Query, encode_rid};
use crate::encoding::{decode_component, encode_component};
use crate::error::TopicError;
use std::fmt;

const POST: &str = "$iothub/methods/POST/";
const RES: &str = "$iothub/methods/res/";

/// Subscription filter for method requests.
pub(crate) const REQUEST_FILTER: &str = "$iothub/methods/POST/#";

/// A direct method topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MethodTopic {
    /// A method call to the client.
    Request {
        /// Method name.
        name: String,
        /// Request id to echo in the response.
        rid: String,
    },
    /// The client's answer.
    Response {
        /// Status chosen by the device.
        status: i32,
        /// Request id of the call answered.
        rid: String,
    },
}

impl MethodTopic {
    /// Parses a method topic.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        if let Some(rest) = topic.strip_prefix(POST) {
            let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
            if name.is_empty() {
                return Err(TopicError::malformed(topic, "the method name is empty"));
            }
            let name = decode_component(name).into_owned();
            return Ok(Self::Request {
                name,
                rid: Query::parse(tail).rid(topic)?,
            });
        }
        if let Some(rest) = topic.strip_prefix(RES) {
            let (status, tail) = rest.split_once('/').unwrap_or((rest, ""));
            let status = status
                .parse()
                .map_err(|_| TopicError::malformed(topic, "the status is not a number"))?;
            return Ok(Self::Response {
                status,
                rid: Query::parse(tail).rid(topic)?,
            });
        }
        Err(TopicError::Unknown(topic.to_owned()))
    }
}

impl fmt::Display for MethodTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request { name, rid } => write!(
                f,
                "{POST}{}/?$rid={}",
                encode_component(name),
                encode_rid(rid)
            ),
            Self::Response { status, rid } => write!(f, "{RES}{status}/?$rid={}", encode_rid(rid)),
        }
    }
}
