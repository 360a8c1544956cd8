//! MQTT topics of every family (telemetry, C2D, module inputs, twin, methods), subscription
//! filters and property bags.
//!
//! Input: a topic or filter text, a NUL byte, then bytes for the structured part.
//!
//! Checks:
//! - any text: nothing panics; whatever parses (`Topic`, each family's own `parse`,
//!   `Subscription`) prints and parses back to an equal value (values, not text, are compared:
//!   several spellings are accepted, one is written); a family's parse and `Topic::parse` agree;
//!   a property bag round-trips through `format` and the message built from it survives being
//!   put back on a topic;
//! - topics built from parts (IoT Hub ids, any property bag, request id, method name, status,
//!   version) print and parse back to themselves, through `Topic::parse` too.
#![no_main]

#[path = "../common/ids.rs"]
mod ids;

use std::fmt::Display;

use arbitrary::{Result, Unstructured};
use ironedge_protocol::{
    C2dTopic, Identity, InputTopic, Message, MethodTopic, PropertyBag, Subscription,
    TelemetryTopic, Topic, TopicError, TwinTopic,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    free_text(&text);
    let _ = built(&mut Unstructured::new(rest));
});

/// `parse(print(t)) == t` for a parsed value.
fn round_trip<T: Display + PartialEq + std::fmt::Debug>(
    text: &str,
    parsed: &T,
    parse: fn(&str) -> std::result::Result<T, TopicError>,
) {
    let printed = parsed.to_string();
    let again = parse(&printed)
        .unwrap_or_else(|e| panic!("{text:?} parsed to {parsed:?}, printed as {printed:?}: {e}"));
    assert_eq!(&again, parsed, "{text:?} printed as {printed:?}");
}

fn free_text(text: &str) {
    let topic = Topic::parse(text);
    match &topic {
        Ok(t) => {
            round_trip(text, t, Topic::parse);
            let _ = t.identity();
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(t) = TelemetryTopic::parse(text) {
        round_trip(text, &t, TelemetryTopic::parse);
        assert_eq!(
            topic.as_ref().ok(),
            Some(&Topic::Telemetry(t.clone())),
            "{text:?}"
        );
        let message = t.into_message(Vec::new());
        let bag = message.to_property_bag();
        assert_eq!(
            Message::from_property_bag(Vec::new(), bag),
            message,
            "{text:?}"
        );
    }
    if let Ok(t) = C2dTopic::parse(text) {
        round_trip(text, &t, C2dTopic::parse);
        assert_eq!(topic.as_ref().ok(), Some(&Topic::C2d(t)), "{text:?}");
    }
    if let Ok(t) = InputTopic::parse(text) {
        round_trip(text, &t, InputTopic::parse);
        assert_eq!(topic.as_ref().ok(), Some(&Topic::Input(t)), "{text:?}");
    }
    if let Ok(t) = TwinTopic::parse(text) {
        round_trip(text, &t, TwinTopic::parse);
        assert_eq!(topic.as_ref().ok(), Some(&Topic::Twin(t)), "{text:?}");
    }
    if let Ok(t) = MethodTopic::parse(text) {
        round_trip(text, &t, MethodTopic::parse);
        assert_eq!(topic.as_ref().ok(), Some(&Topic::Method(t)), "{text:?}");
    }
    if let Ok(s) = Subscription::parse(text) {
        round_trip(text, &s, Subscription::parse);
        let _ = s.allowed_for(&Identity::device("d"));
    }
    let bag = PropertyBag::parse(text);
    let formatted = bag.format();
    assert!(
        !formatted.contains('/'),
        "a formatted bag splits a topic: {formatted:?}"
    );
    assert_eq!(
        PropertyBag::parse(&formatted),
        bag,
        "{text:?} formatted as {formatted:?}"
    );
    let message = Message::from_property_bag(Vec::new(), bag);
    assert_eq!(
        Message::from_property_bag(Vec::new(), message.to_property_bag()),
        message
    );
}

fn bag(u: &mut Unstructured<'_>) -> Result<PropertyBag> {
    let mut bag = PropertyBag::default();
    for _ in 0..u.int_in_range(0..=4)? {
        let key = match u.int_in_range(0..=2)? {
            0 => (*u.choose(&[
                "$.mid",
                "$.cid",
                "$.ct",
                "$.ce",
                "$.on",
                "$.to",
                "iothub-ack",
            ])?)
            .to_owned(),
            _ => u.arbitrary()?,
        };
        if !key.is_empty() {
            bag.push(key, u.arbitrary::<String>()?);
        }
    }
    Ok(bag)
}

fn identity(u: &mut Unstructured<'_>) -> Result<Identity> {
    Ok(if u.arbitrary()? {
        Identity::module(ids::id(u)?, ids::id(u)?)
    } else {
        Identity::device(ids::id(u)?)
    })
}

fn rid(u: &mut Unstructured<'_>) -> Result<String> {
    let rid: String = u.arbitrary()?;
    Ok(if rid.is_empty() { "1".to_owned() } else { rid })
}

fn built(u: &mut Unstructured<'_>) -> Result<()> {
    let topic = match u.int_in_range(0..=8)? {
        0 => Topic::Telemetry(TelemetryTopic {
            identity: identity(u)?,
            properties: bag(u)?,
        }),
        1 => Topic::C2d(C2dTopic {
            device_id: ids::id(u)?,
            properties: bag(u)?,
        }),
        2 => Topic::Input(InputTopic {
            identity: Identity::module(ids::id(u)?, ids::id(u)?),
            input: ids::id(u)?,
            properties: bag(u)?,
        }),
        3 => Topic::Twin(TwinTopic::Get { rid: rid(u)? }),
        4 => Topic::Twin(TwinTopic::ReportedPatch {
            rid: rid(u)?,
            version: u.arbitrary()?,
        }),
        5 => Topic::Twin(TwinTopic::Response {
            status: u.arbitrary()?,
            rid: rid(u)?,
            version: u.arbitrary()?,
        }),
        6 => Topic::Twin(TwinTopic::DesiredPatch {
            version: u.arbitrary()?,
        }),
        7 => {
            let name: String = u.arbitrary()?;
            Topic::Method(MethodTopic::Request {
                name: if name.is_empty() {
                    "m".to_owned()
                } else {
                    name
                },
                rid: rid(u)?,
            })
        }
        _ => Topic::Method(MethodTopic::Response {
            status: u.arbitrary()?,
            rid: rid(u)?,
        }),
    };
    let printed = topic.to_string();
    let again = Topic::parse(&printed)
        .unwrap_or_else(|e| panic!("{topic:?} printed as {printed:?} does not parse: {e}"));
    assert_eq!(again, topic, "printed as {printed:?}");
    let filter = match u.int_in_range(0..=2)? {
        0 => Subscription::C2d {
            device_id: ids::id(u)?,
        },
        1 => Subscription::ModuleInputs {
            identity: Identity::module(ids::id(u)?, ids::id(u)?),
        },
        _ => Subscription::DesiredPatches,
    };
    let printed = filter.to_string();
    assert_eq!(Subscription::parse(&printed), Ok(filter), "{printed:?}");
    Ok(())
}
