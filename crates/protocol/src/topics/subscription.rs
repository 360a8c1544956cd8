//! Subscription filters a device or module may use, and whether an identity may use them.

use super::methods::REQUEST_FILTER;
use super::twin::{DESIRED_FILTER, RESPONSE_FILTER};
use super::{split_device, split_module};
use crate::error::TopicError;
use crate::identity::Identity;
use std::fmt;

/// What a SUBSCRIBE filter asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// `devices/{d}/messages/devicebound/#`
    C2d {
        /// The device.
        device_id: String,
    },
    /// `devices/{d}/modules/{m}/inputs/#` or `devices/{d}/modules/{m}/#`
    ModuleInputs {
        /// The module.
        identity: Identity,
    },
    /// `$iothub/methods/POST/#`
    MethodRequests,
    /// `$iothub/twin/res/#`
    TwinResponses,
    /// `$iothub/twin/PATCH/properties/desired/#`
    DesiredPatches,
}

impl Subscription {
    /// Parses a filter; anything IoT Hub does not document is an error.
    pub fn parse(filter: &str) -> Result<Self, TopicError> {
        match filter {
            REQUEST_FILTER => return Ok(Self::MethodRequests),
            RESPONSE_FILTER => return Ok(Self::TwinResponses),
            DESIRED_FILTER => return Ok(Self::DesiredPatches),
            _ => {}
        }
        let (device, rest) = split_device(filter)?;
        if rest == "messages/devicebound/#" {
            return Ok(Self::C2d {
                device_id: device.to_owned(),
            });
        }
        match split_module(filter, rest)? {
            Some((module, "inputs/#" | "#")) => Ok(Self::ModuleInputs {
                identity: Identity::module(device, module),
            }),
            _ => Err(TopicError::Unknown(filter.to_owned())),
        }
    }

    /// True when `identity` may hold this subscription: C2D only for the device itself (modules
    /// have no C2D), inputs only for the module itself, `$iothub` filters for anyone (they
    /// deliver the connection's own traffic).
    pub fn allowed_for(&self, identity: &Identity) -> bool {
        match self {
            Self::C2d { device_id } => {
                identity.module_id.is_none() && *device_id == identity.device_id
            }
            Self::ModuleInputs { identity: target } => target == identity,
            Self::MethodRequests | Self::TwinResponses | Self::DesiredPatches => true,
        }
    }
}

impl fmt::Display for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::C2d { device_id } => write!(f, "devices/{device_id}/messages/devicebound/#"),
            Self::ModuleInputs { identity } => write!(
                f,
                "devices/{}/modules/{}/inputs/#",
                identity.device_id,
                identity.module_id.as_deref().unwrap_or_default()
            ),
            Self::MethodRequests => f.write_str(REQUEST_FILTER),
            Self::TwinResponses => f.write_str(RESPONSE_FILTER),
            Self::DesiredPatches => f.write_str(DESIRED_FILTER),
        }
    }
}
