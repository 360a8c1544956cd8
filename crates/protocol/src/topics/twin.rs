//! Twin topics: GET and reported PATCH from the client, responses with `$rid` (and `$version`
//! for reported patches), desired-property notifications with `$version`. Every query pair
//! has an `=` because the Python SDK indexes `pair[1]`.

use super::{Query, encode_rid};
use crate::error::TopicError;
use std::fmt;

const GET: &str = "$iothub/twin/GET/";
const REPORTED: &str = "$iothub/twin/PATCH/properties/reported/";
const DESIRED: &str = "$iothub/twin/PATCH/properties/desired/";
const RES: &str = "$iothub/twin/res/";

/// A twin topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TwinTopic {
    /// `$iothub/twin/GET/?$rid={rid}` (client → hub).
    Get {
        /// Request id.
        rid: String,
    },
    /// `$iothub/twin/PATCH/properties/reported/?$rid={rid}[&$version={v}]` (client → hub).
    ReportedPatch {
        /// Request id.
        rid: String,
        /// Optional version the client based its patch on (Node documents it).
        version: Option<u64>,
    },
    /// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]` (hub → client).
    Response {
        /// HTTP-like status: 200 for GET, 204 for PATCH, 4xx/5xx for errors.
        status: u16,
        /// Request id of the request answered.
        rid: String,
        /// New reported version after a PATCH.
        version: Option<u64>,
    },
    /// `$iothub/twin/PATCH/properties/desired/?$version={v}` (hub → client).
    DesiredPatch {
        /// New desired version.
        version: u64,
    },
}

/// Subscription filter for twin responses.
pub(crate) const RESPONSE_FILTER: &str = "$iothub/twin/res/#";
/// Subscription filter for desired-property notifications.
pub(crate) const DESIRED_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";

impl TwinTopic {
    /// Parses a twin topic.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        if let Some(tail) = topic.strip_prefix(GET) {
            return Ok(Self::Get {
                rid: Query::parse(tail).rid(topic)?,
            });
        }
        if let Some(tail) = topic.strip_prefix(REPORTED) {
            let q = Query::parse(tail);
            return Ok(Self::ReportedPatch {
                rid: q.rid(topic)?,
                version: q.version(topic)?,
            });
        }
        if let Some(tail) = topic.strip_prefix(DESIRED) {
            let version = Query::parse(tail)
                .version(topic)?
                .ok_or_else(|| TopicError::malformed(topic, "$version is missing"))?;
            return Ok(Self::DesiredPatch { version });
        }
        if let Some(rest) = topic.strip_prefix(RES) {
            let (status, tail) = rest.split_once('/').unwrap_or((rest, ""));
            let status = status
                .parse()
                .map_err(|_| TopicError::malformed(topic, "the status is not a number"))?;
            let q = Query::parse(tail);
            return Ok(Self::Response {
                status,
                rid: q.rid(topic)?,
                version: q.version(topic)?,
            });
        }
        Err(TopicError::Unknown(topic.to_owned()))
    }
}

impl fmt::Display for TwinTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Get { rid } => write!(f, "{GET}?$rid={}", encode_rid(rid)),
            Self::ReportedPatch { rid, version } => {
                write!(f, "{REPORTED}?$rid={}", encode_rid(rid))?;
                version.map_or(Ok(()), |v| write!(f, "&$version={v}"))
            }
            Self::Response {
                status,
                rid,
                version,
            } => {
                write!(f, "{RES}{status}/?$rid={}", encode_rid(rid))?;
                version.map_or(Ok(()), |v| write!(f, "&$version={v}"))
            }
            Self::DesiredPatch { version } => write!(f, "{DESIRED}?$version={version}"),
        }
    }
}
