//! The route language: `parse_route`, `parse_condition`, `compile`, `compile_condition` and a
//! one-route `RouteTable` on any text (invalid UTF-8 is read lossily, as a manifest reader would
//! have to).
//!
//! Input: the route text, then a NUL byte, then bytes that build the message it is evaluated on
//! (source, application and system properties, a `$body` JSON document whose keys are words of
//! the route, so body queries find something).
//!
//! Checks:
//! - nothing panics or overflows;
//! - an error points inside the text (line and column of its span start) and says something;
//! - a parsed route or condition prints canonically and parses back to the same tree (trees, not
//!   text, are compared, as mqtt3-fuzz compares packets);
//! - a compiled route's canonical text compiles too, to the same endpoint, and evaluates to the
//!   same truth on the message: printing never changes what a route means;
//! - the route table delivers to the route's endpoint exactly when the route matches.
#![no_main]

#[path = "../common/json.rs"]
mod json;

use arbitrary::{Result, Unstructured};
use ironedge_routing::{
    Message, RouteError, RouteSpec, RouteTable, compile, compile_condition, line_column,
    parse_condition, parse_route,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let message = message(&text, &mut Unstructured::new(rest)).unwrap_or_default();
    check_syntax(&text);
    check_route(&text, &message);
    check_condition(&text, &message);
    // The CLI's Message JSON reader gets the same text.
    let _ = Message::from_json(&text);
});

fn check_syntax(text: &str) {
    match parse_route(text) {
        Ok(route) => {
            let printed = route.to_string();
            // `/*` right after FROM opens a comment when a `*/` follows (a quirk of the reference
            // lexer that the routing crate keeps), so such a printed source cannot round-trip.
            if !printed.contains("*/") {
                let again = parse_route(&printed)
                    .unwrap_or_else(|e| panic!("printed route {printed:?} does not parse: {e}"));
                assert_eq!(again, route, "route {text:?} printed as {printed:?}");
            }
        }
        Err(e) => check_error(text, &e),
    }
    match parse_condition(text) {
        Ok(Some(condition)) => {
            let printed = condition.to_string();
            let again = parse_condition(&printed)
                .unwrap_or_else(|e| panic!("printed condition {printed:?} does not parse: {e}"))
                .unwrap_or_else(|| panic!("printed condition {printed:?} is empty"));
            assert_eq!(
                again, condition,
                "condition {text:?} printed as {printed:?}"
            );
        }
        Ok(None) => {}
        Err(e) => check_error(text, &e),
    }
}

fn check_route(text: &str, message: &Message) {
    let route = match compile(text) {
        Ok(route) => route,
        Err(e) => return check_error(text, &e),
    };
    let outcome = route.evaluate(message);
    let printed = route.ast().to_string();
    if !printed.contains("*/") {
        let again = compile(&printed)
            .unwrap_or_else(|e| panic!("canonical {printed:?} of {text:?} does not compile: {e}"));
        assert_eq!(again.endpoint(), route.endpoint(), "{printed:?}");
        assert_eq!(
            again.evaluate(message),
            outcome,
            "{text:?} and its canonical {printed:?} disagree"
        );
    }
    let table = RouteTable::compile([RouteSpec::new("r", text)])
        .unwrap_or_else(|e| panic!("a route that compiles alone fails in a table: {e}"));
    let deliveries = table.route(message);
    assert_eq!(deliveries.len(), usize::from(outcome.matched()), "{text:?}");
}

fn check_condition(text: &str, message: &Message) {
    match compile_condition(text) {
        Ok(condition) => {
            condition.evaluate(message);
        }
        Err(e) => check_error(text, &e),
    }
}

fn check_error(text: &str, e: &RouteError) {
    assert!(
        e.span.start <= e.span.end && e.span.end <= text.len(),
        "{e:?}"
    );
    assert_eq!((e.line, e.column), line_column(text, e.span.start), "{e:?}");
    assert!(!e.kind.to_string().is_empty());
    let _ = e.render(text);
}

/// The words of the route text: property names, body keys and values the route may test.
fn words(text: &str) -> Vec<&str> {
    let mut words: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty() && w.len() <= 32)
        .collect();
    words.sort_unstable();
    words.dedup();
    words.truncate(32);
    words
}

const SOURCES: &[&str] = &[
    "/messages/modules/sensor/outputs/out",
    "/messages/modules/m/outputs/o",
    "/messages/events",
    "/messages",
    "/twinChangeNotifications",
    "/messages/modules/filter/outputs/alert",
    "",
];

const SYSTEM: &[&str] = &[
    "messageId",
    "to",
    "userId",
    "cid",
    "contentType",
    "contentEncoding",
    "messageSchema",
    "creationTime",
    "absolute-expiry-time",
    "outputName",
    "inputName",
    "connectionDeviceId",
    "connectionModuleId",
    "messageType",
    "enqueuedTime",
    "dt-subject",
    "modelId",
];

fn message(text: &str, u: &mut Unstructured<'_>) -> Result<Message> {
    let words = words(text);
    let mut message = Message::new(json::pick_or_arbitrary(u, SOURCES)?);
    for _ in 0..u.int_in_range(0..=4)? {
        let name = json::pick_or_arbitrary(u, &words)?;
        if u.ratio(1, 6)? {
            message = message.with_null_property(name);
        } else {
            let value = if u.arbitrary()? {
                json::pick_or_arbitrary(u, &["1", "-3.5", "31", "true", "", "1e308", "NaN"])?
            } else {
                json::pick_or_arbitrary(u, &words)?
            };
            message = message.with_property(name, value);
        }
    }
    for _ in 0..u.int_in_range(0..=3)? {
        let name = json::pick_or_arbitrary(u, SYSTEM)?;
        let value = json::pick_or_arbitrary(u, &words)?;
        message = message.with_system_property(name, value);
    }
    let body = json::JsonGen {
        keys: &words,
        strings: &words,
        max_depth: 4,
    };
    Ok(match u.int_in_range(0..=3)? {
        0 => message.with_body(u.arbitrary::<Vec<u8>>()?),
        1 => message
            .with_body(u.arbitrary::<Vec<u8>>()?)
            .with_system_property("contentType", "application/json")
            .with_system_property(
                "contentEncoding",
                json::pick_or_arbitrary(u, &["utf-16", "utf-32", "UTF-8"])?,
            ),
        _ => message.with_json_body(body.value(u)?.to_string()),
    })
}
