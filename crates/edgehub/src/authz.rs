//! Per-topic authorisation: every PUBLISH and SUBSCRIBE is checked against the authenticated
//! identity, so a module can never publish as, or read the inputs of, another module.
//!
//! Topics are those of `reference/iotedge-runtime.md` §3.3 and `iot-hub-protocols.md` §1.3. Ids in
//! topics are compared with the authenticated ids exactly (ordinal), which the C# edge hub did not
//! do (§3.2, implementation note).

use ironedge_protocol::Identity;

/// What an authorised PUBLISH asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishRequest<'t> {
    /// Telemetry or a module output; `property_bag` is the raw text after `messages/events/`.
    Telemetry {
        /// Raw, still percent-encoded property bag (may be empty).
        property_bag: &'t str,
    },
    /// `$iothub/twin/GET/?$rid=…`.
    TwinGet {
        /// Query text after `?` (holds `$rid`).
        query: &'t str,
    },
    /// `$iothub/twin/PATCH/properties/reported/?$rid=…`.
    TwinReportedPatch {
        /// Query text after `?`.
        query: &'t str,
    },
    /// `$iothub/methods/res/{status}/?$rid=…`.
    MethodResponse {
        /// Status segment as sent.
        status: &'t str,
        /// Query text after `?`.
        query: &'t str,
    },
}

/// What an authorised SUBSCRIBE filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subscription {
    /// Module inputs (`devices/{d}/modules/{m}/#` or `…/inputs/#`).
    ModuleInputs,
    /// C2D for a leaf device.
    CloudToDevice,
    /// `$iothub/twin/res/#`.
    TwinResponses,
    /// `$iothub/twin/PATCH/properties/desired/#`.
    DesiredPatches,
    /// `$iothub/methods/POST/#`.
    Methods,
}

/// A refused PUBLISH or SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{identity} may not {action} {topic:?}")]
pub struct Forbidden {
    /// The authenticated identity.
    pub identity: String,
    /// `publish to` or `subscribe to`.
    pub action: &'static str,
    /// The topic or filter.
    pub topic: String,
}

/// Authorises a PUBLISH from `who` to `topic`.
pub fn authorize_publish<'t>(
    who: &Identity,
    topic: &'t str,
) -> Result<PublishRequest<'t>, Forbidden> {
    let deny = || Forbidden {
        identity: who.to_string(),
        action: "publish to",
        topic: topic.to_owned(),
    };
    if let Some(rest) = topic.strip_prefix("$iothub/") {
        return iothub_publish(rest).ok_or_else(deny);
    }
    let rest = strip_own_prefix(who, topic).ok_or_else(deny)?;
    let bag = rest
        .strip_prefix("messages/events")
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .ok_or_else(deny)?;
    let bag = bag.strip_prefix('/').unwrap_or(bag);
    Ok(PublishRequest::Telemetry { property_bag: bag })
}

/// `$iothub/…` publishes, which act on the publisher's own twin and methods.
fn iothub_publish(rest: &str) -> Option<PublishRequest<'_>> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = path.trim_end_matches('/');
    if path == "twin/GET" {
        return Some(PublishRequest::TwinGet { query });
    }
    if path == "twin/PATCH/properties/reported" {
        return Some(PublishRequest::TwinReportedPatch { query });
    }
    let status = path.strip_prefix("methods/res/")?;
    (!status.is_empty() && !status.contains('/'))
        .then_some(PublishRequest::MethodResponse { status, query })
}

/// Strips `devices/{d}/` (leaf device) or `devices/{d}/modules/{m}/` (module) when they name `who`.
fn strip_own_prefix<'t>(who: &Identity, topic: &'t str) -> Option<&'t str> {
    let rest = topic.strip_prefix("devices/")?;
    let rest = rest
        .strip_prefix(who.device_id.as_str())?
        .strip_prefix('/')?;
    match &who.module_id {
        Some(m) => rest
            .strip_prefix("modules/")?
            .strip_prefix(m.as_str())?
            .strip_prefix('/'),
        None => (!rest.starts_with("modules/")).then_some(rest),
    }
}

/// Authorises a SUBSCRIBE from `who` with `filter`.
pub fn authorize_subscribe(who: &Identity, filter: &str) -> Result<Subscription, Forbidden> {
    let deny = || Forbidden {
        identity: who.to_string(),
        action: "subscribe to",
        topic: filter.to_owned(),
    };
    match filter {
        "$iothub/twin/res/#" => return Ok(Subscription::TwinResponses),
        "$iothub/twin/PATCH/properties/desired/#" => return Ok(Subscription::DesiredPatches),
        "$iothub/methods/POST/#" => return Ok(Subscription::Methods),
        _ => {}
    }
    let rest = strip_own_prefix(who, filter).ok_or_else(deny)?;
    match (&who.module_id, rest) {
        (Some(_), "#" | "inputs/#") => Ok(Subscription::ModuleInputs),
        (None, "messages/devicebound/#") => Ok(Subscription::CloudToDevice),
        _ => Err(deny()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensor() -> Identity {
        Identity::module("edge", "sensor")
    }

    #[test]
    fn a_module_may_publish_its_own_outputs_with_or_without_a_property_bag() {
        for (topic, bag) in [
            (
                "devices/edge/modules/sensor/messages/events/%24.on=out1&a=b",
                "%24.on=out1&a=b",
            ),
            (
                "devices/edge/modules/sensor/messages/events/%24.on=out1/",
                "%24.on=out1/",
            ),
            ("devices/edge/modules/sensor/messages/events/", ""),
            ("devices/edge/modules/sensor/messages/events", ""),
        ] {
            assert_eq!(
                authorize_publish(&sensor(), topic),
                Ok(PublishRequest::Telemetry { property_bag: bag }),
                "{topic}"
            );
        }
    }

    #[test]
    fn a_module_may_not_publish_as_another_module_or_as_a_device() {
        for topic in [
            "devices/edge/modules/filter/messages/events/%24.on=out1",
            "devices/edge/modules/sensorX/messages/events/",
            "devices/edge/modules/sens/messages/events/",
            "devices/other/modules/sensor/messages/events/",
            "devices/edge/messages/events/",
            "devices/edge/modules/sensor/inputs/in1/",
            "devices/edge/modules/sensor/messages/eventsX",
            "random/topic",
            "$iothub/unknown",
        ] {
            assert!(authorize_publish(&sensor(), topic).is_err(), "{topic}");
        }
    }

    #[test]
    fn a_leaf_device_may_publish_only_its_own_telemetry() {
        let leaf = Identity::device("leaf");
        assert!(authorize_publish(&leaf, "devices/leaf/messages/events/a=1").is_ok());
        assert!(authorize_publish(&leaf, "devices/leaf2/messages/events/").is_err());
        assert!(authorize_publish(&leaf, "devices/leaf/modules/m/messages/events/").is_err());
    }

    #[test]
    fn twin_and_method_topics_are_recognised() {
        let w = sensor();
        assert_eq!(
            authorize_publish(&w, "$iothub/twin/GET/?$rid=1"),
            Ok(PublishRequest::TwinGet { query: "$rid=1" })
        );
        assert_eq!(
            authorize_publish(&w, "$iothub/twin/PATCH/properties/reported/?$rid=2"),
            Ok(PublishRequest::TwinReportedPatch { query: "$rid=2" })
        );
        assert_eq!(
            authorize_publish(&w, "$iothub/methods/res/200/?$rid=3"),
            Ok(PublishRequest::MethodResponse {
                status: "200",
                query: "$rid=3"
            })
        );
        assert!(authorize_publish(&w, "$iothub/methods/res//?$rid=3").is_err());
    }

    #[test]
    fn a_module_may_subscribe_only_to_its_own_inputs() {
        let w = sensor();
        assert_eq!(
            authorize_subscribe(&w, "devices/edge/modules/sensor/inputs/#"),
            Ok(Subscription::ModuleInputs)
        );
        assert_eq!(
            authorize_subscribe(&w, "devices/edge/modules/sensor/#"),
            Ok(Subscription::ModuleInputs)
        );
        for filter in [
            "devices/edge/modules/filter/inputs/#",
            "devices/edge/modules/+/inputs/#",
            "devices/+/modules/sensor/inputs/#",
            "devices/edge/modules/sensor/inputs/in1",
            "#",
            "devices/#",
            "devices/edge/messages/devicebound/#",
        ] {
            assert!(authorize_subscribe(&w, filter).is_err(), "{filter}");
        }
    }

    #[test]
    fn leaf_devices_subscribe_to_their_own_c2d_only() {
        let leaf = Identity::device("leaf");
        assert_eq!(
            authorize_subscribe(&leaf, "devices/leaf/messages/devicebound/#"),
            Ok(Subscription::CloudToDevice)
        );
        assert!(authorize_subscribe(&leaf, "devices/leaf2/messages/devicebound/#").is_err());
        assert!(authorize_subscribe(&leaf, "devices/leaf/#").is_err());
    }

    #[test]
    fn everyone_may_subscribe_to_their_twin_and_methods() {
        for who in [sensor(), Identity::device("leaf")] {
            assert_eq!(
                authorize_subscribe(&who, "$iothub/methods/POST/#"),
                Ok(Subscription::Methods)
            );
            assert_eq!(
                authorize_subscribe(&who, "$iothub/twin/res/#"),
                Ok(Subscription::TwinResponses)
            );
            assert_eq!(
                authorize_subscribe(&who, "$iothub/twin/PATCH/properties/desired/#"),
                Ok(Subscription::DesiredPatches)
            );
            assert!(authorize_subscribe(&who, "$iothub/#").is_err());
        }
    }
}
