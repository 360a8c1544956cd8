//! Whole routes: IoT Edge's `RouteFactoryTest.cs` tables, sources, sinks, errors and warnings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ironedge_routing::{Endpoint, Message, RouteErrorKind, Truth, compile};

fn module_input(module: &str, input: &str) -> Endpoint {
    Endpoint::ModuleInput {
        module: module.into(),
        input: input.into(),
    }
}

#[test]
fn reference_function_endpoint_routes_parse_into_source_condition_and_sink() {
    let rows: &[(&str, &str, &str, Endpoint)] = &[
        (
            r#"FROM /* INTO brokeredEndpoint("/modules/alertLogic/inputs/in")"#,
            "/",
            "true",
            module_input("alertLogic", "in"),
        ),
        (
            "FROM /* INTO brokeredEndpoint('/modules/alertLogic/inputs/in')",
            "/",
            "true",
            module_input("alertLogic", "in"),
        ),
        (
            r#"FROM /* INTO brokeredEndpoint('/modules/alert"Logic/inputs/in')"#,
            "/",
            "true",
            module_input("alert\"Logic", "in"),
        ),
        (
            r#"FROM /* INTO brokeredEndpoint("/modules/alert'Logic/inputs/in")"#,
            "/",
            "true",
            module_input("alert'Logic", "in"),
        ),
        (
            r#"FROM /messages/modules/adapter INTO brokeredEndpoint("/modules/alertLogic/inputs/in")"#,
            "/messages/modules/adapter/",
            "true",
            module_input("alertLogic", "in"),
        ),
        (
            r#"FROM /messages/modules WHERE messageType = "alert" INTO brokeredEndpoint("/modules/alertLogic/inputs/in")"#,
            "/messages/modules/",
            r#"messageType = "alert""#,
            module_input("alertLogic", "in"),
        ),
        (
            r#"   FROM /messages/modules/adapter WHERE messageType = "alert" AND alert = "imp" INTO brokeredEndpoint("/a/b/c/d")   "#,
            "/messages/modules/adapter/",
            r#"messageType = "alert" AND alert = "imp""#,
            module_input("b", "d"),
        ),
        (
            r#"FROM /messages/modules/alertLogic/outputs/commands WHERE messageType = "alert" AND ( as_number(temp) > 100 OR as_number(humidity) = 50 OR place = "basement") INTO brokeredEndpoint("/modules/adapter/inputs/write")"#,
            "/messages/modules/alertLogic/outputs/commands/",
            r#"messageType = "alert" AND ( as_number(temp) > 100 OR as_number(humidity) = 50 OR place = "basement")"#,
            module_input("adapter", "write"),
        ),
        (
            r#" SELECT * FROM /messages WHERE    messageType = "alert" AND humidity = 'high' INTO $upstream"#,
            "/messages/",
            r#"messageType = "alert" AND humidity = 'high'"#,
            Endpoint::Upstream,
        ),
        (
            "FROM /messages/modules/adapter INTO $upstream",
            "/messages/modules/adapter/",
            "true",
            Endpoint::Upstream,
        ),
        (
            "from /messages into $UPSTREAM",
            "/messages/",
            "true",
            Endpoint::Upstream,
        ),
    ];
    for (text, source, condition, endpoint) in rows {
        let route = compile(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(route.source().prefix(), *source, "{text}");
        assert_eq!(route.condition().text(), *condition, "{text}");
        assert_eq!(route.endpoint(), endpoint, "{text}");
    }
}

#[test]
fn reference_invalid_routes_are_rejected_with_a_position() {
    let rows = [
        r#"FORM /messages/modules/adapter INTO brokeredEndpoint("/modules/alertLogic/inputs/in")"#,
        r#"SELECT FROM /messages/modules/adapter INTO brokeredEndpoint("/modules/alertLogic/inputs/in")"#,
        r#"FROM INTO brokeredEndpoint("/modules/alertLogic/inputs/in")"#,
        r#"FROM /* INTO brokeredEndpoint("/modules/alertLogic/inputs/in')"#,
        r#"FROM /* INTO brokeredEndpoint('/modules/alertLogic/inputs/in")"#,
        r#"FROM /* INTO brokeredEndpoint(""/modules/alertLogic/inputs/in"")"#,
        "FROM /* INTO brokeredEndpoint(''/modules/alertLogic/inputs/in'')",
        r#"FROM /* INTO brokeredEndpoint('"/modules/alertLogic/inputs/in'")"#,
        r#"FROM /* INTO brokeredEndpoint("'/modules/alertLogic/inputs/in"')"#,
        r#"FROM /messages WHERE temp == 100 INTO brokeredEndpoint("/modules/alertLogic/inputs/in")"#,
        r#"FROM /messages WHERE INTO brokeredEndpoint("/modules/alertLogic/inputs/in")"#,
        "FROM /messages WHERE temp = 'high' INTO",
        r#"FROM /messages INTO brokeredEndpoint("/modules/alertLogic/inputs/in""#,
        r#"FROM /messages INTO brokeredEndpoint("/modules/alertLogic/inputs/in)"#,
        r#"FROM /messages INTO brokeredEndpoint "/modules/alertLogic/inputs/in")"#,
        r#"FROM /messages INTO brokeredEndpoint(/modules/alertLogic/inputs/in")"#,
        r#"FROM /messages INTO "/modules/alertLogic/inputs/in""#,
        "FROM /messages INTO /modules/alertLogic/inputs/in",
        "FROM /messages INTO upstream",
        "",
        "FROM /messages",
        "FROM /messages INTO $upstream extra",
    ];
    for text in rows {
        let err = compile(text)
            .err()
            .unwrap_or_else(|| panic!("{text:?} compiled"));
        assert!(err.line >= 1 && err.column >= 1, "{text}");
        assert!(
            err.column <= text.chars().count() + 1,
            "{text}: column {}",
            err.column
        );
    }
}

#[test]
fn syntax_errors_say_where_and_what_was_expected() {
    let err = compile("FROM /messages INTO upstream").unwrap_err();
    assert_eq!((err.line, err.column), (1, 21));
    assert!(
        err.to_string().contains("expected a sink ($upstream"),
        "{err}"
    );

    let err = compile("FROM /messages\nWHERE temp == 100\nINTO $upstream").unwrap_err();
    assert_eq!((err.line, err.column), (2, 13));
    assert!(err.to_string().contains("found '='"), "{err}");

    let err = compile("FROM /messages WHERE INTO $upstream").unwrap_err();
    assert_eq!((err.line, err.column), (1, 22));
    assert!(err.to_string().contains("expected a condition"), "{err}");

    let err = compile("FORM /messages INTO $upstream").unwrap_err();
    assert_eq!((err.line, err.column), (1, 1));
    assert!(err.to_string().contains("FROM <source>"), "{err}");
}

#[test]
fn an_unterminated_string_is_reported_at_its_opening_quote() {
    let err = compile("FROM /messages WHERE alert = 'high INTO $upstream").unwrap_err();
    assert_eq!(err.kind, RouteErrorKind::UnterminatedString);
    assert_eq!(err.column, 30);
    let err = compile(r#"FROM /messages WHERE alert = "a\nb" INTO $upstream"#).unwrap_err();
    assert_eq!(err.kind, RouteErrorKind::UnterminatedString);
}

#[test]
fn type_errors_point_at_the_operation_and_say_how_to_fix_it() {
    let err = compile("FROM /messages/* WHERE temp > 30 INTO $upstream").unwrap_err();
    assert_eq!((err.line, err.column), (1, 24));
    let message = err.to_string();
    assert!(
        message.contains("operator '>' cannot be applied to string, number"),
        "{message}"
    );
    assert!(message.contains("as_number"), "{message}");

    let err = compile("FROM /messages WHERE nosuch(1) INTO $upstream").unwrap_err();
    assert!(matches!(err.kind, RouteErrorKind::UnknownFunction { .. }));
    assert_eq!(err.column, 22);

    let err = compile("FROM /messages WHERE upper(1) = 'A' INTO $upstream").unwrap_err();
    assert!(
        err.to_string().contains("expected (string) -> string"),
        "{err}"
    );
}

#[test]
fn sinks_are_checked() {
    let err = compile("FROM /messages INTO $twin").unwrap_err();
    assert!(matches!(
        err.kind,
        RouteErrorKind::UnsupportedSystemEndpoint { .. }
    ));
    assert_eq!(err.column, 21);
    let err = compile(r#"FROM /messages INTO EventHub("x")"#).unwrap_err();
    assert!(matches!(
        err.kind,
        RouteErrorKind::UnsupportedFunctionEndpoint { .. }
    ));
    let err = compile(r#"FROM /messages INTO BrokeredEndpoint("/modules/m/inputs")"#).unwrap_err();
    assert!(matches!(
        err.kind,
        RouteErrorKind::BrokeredEndpointAddress { .. }
    ));
}

#[test]
fn unchecked_brokered_endpoint_segments_are_accepted_with_a_warning() {
    let route = compile(r#"FROM /messages INTO BrokeredEndpoint("/a/b/c/d")"#).unwrap();
    assert_eq!(route.endpoint(), &module_input("b", "d"));
    assert_eq!(route.warnings().len(), 1);
    assert!(
        route.warnings()[0]
            .message
            .contains("module 'b', input 'd'")
    );
}

#[test]
fn messages_events_compiles_with_a_warning_and_matches_nothing() {
    let route = compile("FROM /messages/events INTO $upstream").unwrap();
    assert!(
        route.warnings()[0]
            .message
            .contains("matches nothing on IoT Edge")
    );
    assert!(!route.matches(&Message::new("/messages")));
    assert!(!route.matches(&Message::new("/messages/modules/m/outputs/o")));
}

#[test]
fn hub_only_system_properties_are_undefined_with_a_warning() {
    let message = Message::new("/messages")
        .with_system_property("cid", "c1")
        .with_system_property("dt-subject", "thermostat1")
        .with_system_property("connectionAuthMethod", "{}");
    for (text, hint) in [
        (
            "FROM /messages WHERE $correlationId = 'c1' INTO $upstream",
            "$cid",
        ),
        (
            "FROM /messages WHERE $componentName = 'thermostat1' INTO $upstream",
            "$dt-subject",
        ),
        (
            "FROM /messages WHERE $connectionAuthMethod = '{}' INTO $upstream",
            "only by IoT Hub",
        ),
    ] {
        let route = compile(text).unwrap();
        assert_eq!(
            route.evaluate(&message).condition,
            Truth::Undefined,
            "{text}"
        );
        assert!(
            route.warnings().iter().any(|w| w.message.contains(hint)),
            "{text}"
        );
    }
    let cid = compile("FROM /messages WHERE $cid = 'c1' INTO $upstream").unwrap();
    assert!(cid.matches(&message));
    assert!(cid.warnings().is_empty());
    let subject =
        compile("FROM /messages WHERE $dt-subject = 'thermostat1' INTO $upstream").unwrap();
    assert!(subject.matches(&message));
}

#[test]
fn a_bare_system_property_name_warns_that_it_is_an_application_property() {
    let route = compile("FROM /messages WHERE connectionModuleId = 'm' INTO $upstream").unwrap();
    assert!(route.warnings()[0].message.contains("$connectionModuleId"));
    let message = Message::new("/messages").with_system_property("connectionModuleId", "m");
    assert!(!route.matches(&message));
}

#[test]
fn a_condition_that_is_not_boolean_warns_that_it_is_never_true() {
    let route = compile("FROM /messages WHERE 'yes' INTO $upstream").unwrap();
    assert!(route.warnings()[0].message.contains("never true"));
    assert!(!route.matches(&Message::new("/messages")));
}

#[test]
fn system_properties_use_the_edge_names() {
    let message = Message::new("/messages/modules/m1/outputs/o1")
        .with_system_property("connectionDeviceId", "dev")
        .with_system_property("connectionModuleId", "m1")
        .with_system_property("outputName", "o1")
        .with_system_property("edgeHubOriginInterface", "internal")
        .with_system_property("messageId", "id-1")
        .with_system_property("absolute-expiry-time", "x")
        .with_system_property("iothub-interface-id", "urn:x");
    for condition in [
        "$connectionDeviceId = 'dev'",
        "$connectionModuleId = 'm1'",
        "$outputName = 'o1'",
        "$edgeHubOriginInterface = 'internal'",
        "$messageId = 'id-1'",
        "$MESSAGEID = 'id-1'",
        "$absolute-expiry-time = 'x'",
        "$iothub-interface-id = 'urn:x'",
        "{$connectionModuleId} = 'm1'",
    ] {
        let route = compile(&format!(
            "FROM /messages/* WHERE {condition} INTO $upstream"
        ))
        .unwrap();
        assert!(route.matches(&message), "{condition}");
    }
}

#[test]
fn a_dollar_application_property_wins_over_the_system_property_unless_escaped() {
    let message = Message::new("/messages")
        .with_property("$messageId", "app")
        .with_system_property("messageId", "sys");
    assert!(
        compile("FROM /* WHERE $messageId = 'app' INTO $upstream")
            .unwrap()
            .matches(&message)
    );
    assert!(
        compile("FROM /* WHERE {$messageId} = 'sys' INTO $upstream")
            .unwrap()
            .matches(&message)
    );
}

#[test]
fn twin_change_includes_only_in_twin_change_routes() {
    let twin = Message::new("/twinChangeNotifications").with_json_body(
        r#"{"properties":{"reported":{"temperature":21,"gone":null}},"tags":{"site":"a"}}"#,
    );
    let includes = |path: &str| {
        compile(&format!(
            "FROM /twinChangeNotifications WHERE twin_change_includes({path}) INTO $upstream"
        ))
        .unwrap()
        .evaluate(&twin)
        .condition
    };
    assert_eq!(includes("properties.reported.temperature"), Truth::True);
    assert_eq!(
        includes("PROPERTIES.REPORTED.temperature"),
        Truth::False,
        "paths are case-sensitive"
    );
    assert_eq!(includes("properties.reported.gone"), Truth::False);
    assert_eq!(includes("properties.desired.x"), Truth::False);
    assert_eq!(includes("tags.site"), Truth::True);

    let err =
        compile("FROM /messages WHERE twin_change_includes(properties.reported.x) INTO $upstream")
            .unwrap_err();
    assert!(
        err.to_string().contains("FROM /twinChangeNotifications"),
        "{err}"
    );
    let err =
        compile("FROM /twinChangeNotifications WHERE twin_change_includes(version) INTO $upstream")
            .unwrap_err();
    assert!(
        err.to_string()
            .contains("must start with properties.reported."),
        "{err}"
    );
    let err =
        compile("FROM /twinChangeNotifications WHERE twin_change_includes('x') INTO $upstream")
            .unwrap_err();
    assert!(matches!(
        err.kind,
        RouteErrorKind::TwinChangeIncludes { .. }
    ));
}

#[test]
fn a_route_without_where_matches_every_message_of_its_source() {
    let route = compile("FROM /messages/modules/sensor/* INTO $upstream").unwrap();
    assert_eq!(route.condition().text(), "true");
    assert!(route.matches(&Message::new(
        "/messages/modules/sensor/outputs/temperature"
    )));
    assert!(!route.matches(&Message::new("/messages/modules/other/outputs/temperature")));
    let outcome = route.evaluate(&Message::new("/messages"));
    assert!(!outcome.source_matched);
}

#[test]
fn comments_and_line_breaks_are_allowed_between_tokens() {
    let route = compile("FROM /messages/* /* all telemetry */\n  WHERE alert = 'high' /* only alerts */\n  INTO $upstream").unwrap();
    assert!(route.matches(&Message::new("/messages").with_property("alert", "high")));
}
