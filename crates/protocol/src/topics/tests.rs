#![allow(clippy::unwrap_used)]
use super::*;
use crate::property_bag::PropertyBag;
use proptest::prelude::*;

fn telemetry(topic: &str) -> TelemetryTopic {
    match Topic::parse(topic).unwrap() {
        Topic::Telemetry(t) => t,
        other => panic!("not telemetry: {other:?}"),
    }
}

#[test]
fn device_telemetry_forms_all_parse() {
    for t in [
        "devices/dev1/messages/events",
        "devices/dev1/messages/events/",
        "devices/dev1/messages/events/a=1",
        "devices/dev1/messages/events/a=1/",
        "devices/dev1/messages/events/?a=1",
    ] {
        let parsed = telemetry(t);
        assert_eq!(parsed.identity, Identity::device("dev1"), "{t}");
    }
    assert_eq!(
        telemetry("devices/dev1/messages/events/?a=1/")
            .properties
            .get("a"),
        Some("1")
    );
}

#[test]
fn module_output_from_node_capture_parses() {
    let t =
        telemetry("devices/dev1/modules/mod1/messages/events/%24.on=out1&%24.mid=m&alert=yes%20x/");
    assert_eq!(t.identity, Identity::module("dev1", "mod1"));
    let msg = t.into_message(&b"{}"[..]);
    assert_eq!(msg.system.output_name.as_deref(), Some("out1"));
    assert_eq!(msg.property("alert"), Some("yes x"));
}

#[test]
fn c2d_topic_always_has_slash_after_devicebound() {
    let t = C2dTopic {
        device_id: "dev1".into(),
        properties: PropertyBag::default(),
    };
    assert_eq!(t.to_string(), "devices/dev1/messages/devicebound/");
    let mut bag = PropertyBag::default();
    bag.push("$.to", "/devices/dev1/messages/deviceBound");
    bag.push("$.mid", "m1");
    let t = C2dTopic {
        device_id: "dev1".into(),
        properties: bag,
    };
    assert_eq!(
        t.to_string(),
        "devices/dev1/messages/devicebound/%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&%24.mid=m1"
    );
    assert_eq!(Topic::parse(&t.to_string()).unwrap(), Topic::C2d(t));
}

#[test]
fn input_topic_matches_the_sdk_capture() {
    let t = InputTopic::parse(
        "devices/dev1/modules/mod1/inputs/input1/%24.mid=m1&%24.cdid=dev1&%24.cmid=other&prop1=v1",
    )
    .unwrap();
    assert_eq!(t.input, "input1");
    assert_eq!(t.properties.get("$.cmid"), Some("other"));
    let empty = InputTopic {
        input: "in".into(),
        properties: PropertyBag::default(),
        ..t
    };
    assert_eq!(empty.to_string(), "devices/dev1/modules/mod1/inputs/in/");
    assert!(InputTopic::parse("devices/d/modules/m/inputs//x").is_err());
}

#[test]
fn twin_topics_match_the_reference() {
    assert_eq!(
        TwinTopic::Get {
            rid: "9d3113cb".into()
        }
        .to_string(),
        "$iothub/twin/GET/?$rid=9d3113cb"
    );
    assert_eq!(
        TwinTopic::Response {
            status: 204,
            rid: "r".into(),
            version: Some(2)
        }
        .to_string(),
        "$iothub/twin/res/204/?$rid=r&$version=2"
    );
    assert_eq!(
        TwinTopic::DesiredPatch { version: 7 }.to_string(),
        "$iothub/twin/PATCH/properties/desired/?$version=7"
    );
    assert_eq!(
        TwinTopic::parse("$iothub/twin/PATCH/properties/reported/?$rid=1&$version=4").unwrap(),
        TwinTopic::ReportedPatch {
            rid: "1".into(),
            version: Some(4)
        }
    );
    assert_eq!(
        TwinTopic::parse("$iothub/twin/res/200/?$rid=f5b0").unwrap(),
        TwinTopic::Response {
            status: 200,
            rid: "f5b0".into(),
            version: None
        }
    );
}

#[test]
fn method_topics_match_the_reference() {
    let req = MethodTopic::Request {
        name: "ping".into(),
        rid: "1".into(),
    };
    assert_eq!(req.to_string(), "$iothub/methods/POST/ping/?$rid=1");
    assert_eq!(
        MethodTopic::parse("$iothub/methods/res/200/?$rid=1").unwrap(),
        MethodTopic::Response {
            status: 200,
            rid: "1".into()
        }
    );
    assert_eq!(
        MethodTopic::parse("$iothub/methods/res/-1/?$rid=x").unwrap(),
        MethodTopic::Response {
            status: -1,
            rid: "x".into()
        }
    );
}

#[test]
fn malformed_topics_say_what_is_wrong() {
    let cases = [
        ("$iothub/twin/GET/", "$rid"),
        ("$iothub/twin/res/abc/?$rid=1", "status"),
        (
            "$iothub/twin/PATCH/properties/desired/?$version=x",
            "$version",
        ),
        ("$iothub/methods/POST//?$rid=1", "method name"),
        ("devices//messages/events/", "device id"),
        ("devices/d/modules//messages/events/", "module id"),
    ];
    for (topic, needle) in cases {
        let err = Topic::parse(topic).unwrap_err();
        assert!(
            matches!(err, TopicError::Malformed { .. }),
            "{topic}: {err}"
        );
        assert!(err.to_string().contains(needle), "{topic}: {err}");
    }
    for topic in [
        "foo/bar",
        "devices/d/messages/eventsX",
        "devices/d",
        "$iothub/other",
        "devices/d/things",
    ] {
        assert!(
            matches!(Topic::parse(topic), Err(TopicError::Unknown(_))),
            "{topic}"
        );
    }
}

#[test]
fn subscriptions_parse_and_authorise_per_identity() {
    let dev = Identity::device("dev1");
    let module = Identity::module("dev1", "mod1");
    let c2d = Subscription::parse("devices/dev1/messages/devicebound/#").unwrap();
    assert!(c2d.allowed_for(&dev));
    assert!(!c2d.allowed_for(&module), "modules have no C2D");
    assert!(!c2d.allowed_for(&Identity::device("dev2")));
    let inputs = Subscription::parse("devices/dev1/modules/mod1/inputs/#").unwrap();
    assert_eq!(
        Subscription::parse("devices/dev1/modules/mod1/#").unwrap(),
        inputs
    );
    assert!(inputs.allowed_for(&module));
    assert!(!inputs.allowed_for(&Identity::module("dev1", "mod2")));
    assert!(!inputs.allowed_for(&dev));
    for f in [
        "$iothub/methods/POST/#",
        "$iothub/twin/res/#",
        "$iothub/twin/PATCH/properties/desired/#",
    ] {
        let s = Subscription::parse(f).unwrap();
        assert!(s.allowed_for(&module));
        assert_eq!(s.to_string(), f);
    }
    for f in [
        "#",
        "devices/+/messages/devicebound/#",
        "devices/dev1/messages/events/#",
        "$iothub/#",
    ] {
        assert!(Subscription::parse(f).is_err(), "{f}");
    }
}

fn id_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9\\-:.%_*!(),=@$']{1,24}"
}

fn bag_strategy() -> impl Strategy<Value = PropertyBag> {
    proptest::collection::vec(("\\PC{1,12}", "\\PC{0,12}"), 0..5).prop_map(PropertyBag)
}

fn rid_strategy() -> impl Strategy<Value = String> {
    "\\PC{1,24}"
}

fn topic_strategy() -> impl Strategy<Value = Topic> {
    prop_oneof![
        (
            id_strategy(),
            proptest::option::of(id_strategy()),
            bag_strategy()
        )
            .prop_map(|(d, m, properties)| Topic::Telemetry(TelemetryTopic {
                identity: Identity {
                    device_id: d,
                    module_id: m
                },
                properties
            })),
        (id_strategy(), bag_strategy()).prop_map(|(device_id, properties)| Topic::C2d(C2dTopic {
            device_id,
            properties
        })),
        (id_strategy(), id_strategy(), id_strategy(), bag_strategy()).prop_map(
            |(d, m, input, properties)| {
                Topic::Input(InputTopic {
                    identity: Identity::module(d, m),
                    input,
                    properties,
                })
            }
        ),
        rid_strategy().prop_map(|rid| Topic::Twin(TwinTopic::Get { rid })),
        (rid_strategy(), proptest::option::of(any::<u64>()))
            .prop_map(|(rid, version)| Topic::Twin(TwinTopic::ReportedPatch { rid, version })),
        (
            any::<u16>(),
            rid_strategy(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(status, rid, version)| Topic::Twin(TwinTopic::Response {
                status,
                rid,
                version
            })),
        any::<u64>().prop_map(|version| Topic::Twin(TwinTopic::DesiredPatch { version })),
        ("\\PC{1,20}", rid_strategy())
            .prop_map(|(name, rid)| Topic::Method(MethodTopic::Request { name, rid })),
        (any::<i32>(), rid_strategy())
            .prop_map(|(status, rid)| Topic::Method(MethodTopic::Response { status, rid })),
    ]
}

proptest! {
    #[test]
    fn format_then_parse_round_trips(topic in topic_strategy()) {
        let s = topic.to_string();
        prop_assert_eq!(Topic::parse(&s).unwrap(), topic);
    }

    #[test]
    fn subscription_format_then_parse_round_trips(d in id_strategy(), m in id_strategy()) {
        for s in [Subscription::C2d { device_id: d.clone() }, Subscription::ModuleInputs { identity: Identity::module(d.clone(), m.clone()) }] {
            prop_assert_eq!(Subscription::parse(&s.to_string()).unwrap(), s);
        }
    }

    #[test]
    fn parsing_arbitrary_topics_never_panics(s in "\\PC{0,120}") {
        let _ = Topic::parse(&s).map(|t| t.to_string());
        let _ = Subscription::parse(&s);
    }

    #[test]
    fn parsing_topic_like_text_never_panics(
        prefix in prop_oneof![Just("devices/"), Just("$iothub/twin/"), Just("$iothub/methods/"), Just("devices/d/modules/")],
        tail in "[a-z/?&=$%.#+0-9]{0,60}",
    ) {
        let _ = Topic::parse(&format!("{prefix}{tail}"));
        let _ = Subscription::parse(&format!("{prefix}{tail}"));
    }
}
