//! The `$body` query tables of IoT Edge's `BodyQueryTest.cs` and `MessageQueryTest.cs`, ported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ironedge_routing::{Message, RouteErrorKind, Truth, compile_condition};

const BODY: &str = r#"{
   "message": {
      "Weather": {
         "Temperature": 50,
         "FreezingTemperature": -50.4,
         "PreciseTemperature": 50.4,
         "Temperature_PropertyConflict": 50,
         "NullValue": null,
         "Time" : "2017-03-09T00:00:00.000Z",
         "PrevTemperatures" : [20, 30, 40 ],
         "IsEnabled": true,
         "IsDisabled": false,
         "Location": {
            "Street": "One Microsoft Way",
            "City": "Redmond",
            "State": "WA"
         },
         "HistoricalData": [
            { "Month": "Feb", "Temperature": 40 },
            { "Month": "Jan", "Temperature": 30 }
         ]
      }
   }
}"#;

/// `Message1` of the reference test: a JSON body plus properties that collide with body paths.
fn message1() -> Message {
    Message::new("/messages")
        .with_body(BODY)
        .with_property("City", "Redmond")
        .with_property("$State", "WA")
        .with_property("$body.message.Weather.Temperature_PropertyConflict", "100")
        .with_property("IntegerProperty", "110")
        .with_system_property("State", "CA")
        .with_system_property("$body.message.Weather.Location.State", "CA")
        .with_system_property("contentEncoding", "UTF-8")
        .with_system_property("contentType", "application/json")
}

fn assert_all(conditions: &[&str], expected: Truth) {
    let message = message1();
    let failures: Vec<String> = conditions
        .iter()
        .filter_map(|c| match compile_condition(c) {
            Ok(compiled) => {
                let got = compiled.evaluate(&message);
                (got != expected).then(|| format!("{c:?}: expected {expected}, got {got}"))
            }
            Err(e) => Some(format!("{c:?}: did not compile: {e}")),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unsupported_json_paths_are_compile_errors() {
    for c in [
        "$body.properties[]",
        "$body.properties[1:2]",
        "$body;@",
        "$body.",
        "$body.a..b",
    ] {
        assert!(compile_condition(c).is_err(), "{c}");
    }
    let err = compile_condition("$body.properties[x] = 1").unwrap_err();
    assert!(
        matches!(err.kind, RouteErrorKind::BodyQuery { .. }),
        "{err}"
    );
}

#[test]
fn numeric_body_queries_that_hold() {
    assert_all(
        &[
            "50 >= $body.message.Weather.Temperature",
            "$BODY.message.Weather.Temperature >= 50",
            "$bODy.message.Weather.Temperature <= 50",
            "$bODY.message.Weather.Temperature = 50",
            "$BoDY.message.Weather.Temperature != 60",
            "$body.message.Weather.Temperature <> 500",
            "$body.message.Weather.Temperature = 40 + 10",
            "$body.message.Weather.Temperature >= $body.message.Weather.PrevTemperatures[0]",
            "$body.message.Weather.Temperature >= $body.message.Weather.PrevTemperatures[0] + $body.message.Weather.PrevTemperatures[1] ",
            "$body.message.Weather.PrevTemperatures[0] + $body.message.Weather.PrevTemperatures[1]= 50 ",
            "$body.message.Weather.PrevTemperatures[1] * $body.message.Weather.PrevTemperatures[2] = 1200",
            "$body.message.Weather.PrevTemperatures[1] / $body.message.Weather.PrevTemperatures[0] = 1.5",
            "$body.message.Weather.HistoricalData[0].Temperature - 10 = $body.message.Weather.HistoricalData[1].Temperature",
            "$body.message.Weather.HistoricalData[0].Month = 'Feb'",
        ],
        Truth::True,
    );
}

#[test]
fn numeric_body_queries_that_do_not_hold_and_no_implicit_conversion() {
    assert_all(
        &[
            "10 >= $body.message.Weather.Temperature",
            "$body.message.Weather.Temperature < 50",
            "$body.message.Weather.Temperature = '50'",
            "$body.message.Weather.Temperature != 50",
            "$body.message.Weather.Temperature = 60",
            "$body.message.Weather.Temperature <> 40 + 10",
            "$body.message.Weather.Temperature <= $body.message.Weather.PrevTemperatures[0]",
            "$body.message.Weather.Temperature < $body.message.Weather.PrevTemperatures[0] + $body.message.Weather.PrevTemperatures[1]",
            "$body.message.Weather.PrevTemperatures[0] + $body.message.Weather.PrevTemperatures[1] <> 50 ",
            "$body.message.Weather.PrevTemperatures[0] * $body.message.Weather.PrevTemperatures[1] = 610",
            "$body.message.Weather.PrevTemperatures[1] / $body.message.Weather.PrevTemperatures[0] = 3/3",
            "$body.message.Weather.HistoricalData[0].Temperature + 10 = $body.message.Weather.HistoricalData[1].Temperature",
        ],
        Truth::False,
    );
}

#[test]
fn string_body_queries() {
    assert_all(
        &[
            "$body.message.Weather.Temperature <> '100'",
            "$body.message.Weather.Location.City = City",
            "$body.message.Weather.Location.State = $State",
            "$body.message.Weather.Location.State <> $body.message.Weather.Location.City",
        ],
        Truth::True,
    );
    assert_all(
        &[
            "$body.message.Weather.Temperature ='100'",
            "$body.message.Weather.Temperature ='150'",
            "$body.message.Weather.Location.City != City",
            "$body.message.Weather.Location.State != $State",
            "$body.message.Weather.Location.State = City",
            "$body.message.Weather.Location.State = $body.message.Weather.Location.City",
        ],
        Truth::False,
    );
}

#[test]
fn boolean_and_logical_body_queries() {
    assert_all(
        &[
            "$body.message.Weather.IsEnabled",
            "$body.message.Weather.IsEnabled = true",
            "$body.message.Weather.IsDisabled = false",
            "$body.message.Weather.IsDisabled <> true",
            "NOT $body.message.Weather.IsDisabled",
            "$body.message.Weather.InvalidKey <> '100'",
            "$body.message.Weather.IsEnabled AND $body.message.Weather.IsEnabled",
            "$body.message.Weather.IsEnabled OR $body.message.Weather.IsDisabled",
            "$body.message.Weather.IsDisabled OR NOT($body.message.Weather.IsDisabled)",
        ],
        Truth::True,
    );
}

#[test]
fn undefined_body_queries() {
    assert_all(
        &[
            "$body",
            "$body.message.Weather.HistoricalData[0].Temperature.InvalidKey",
            "$City <> $body.message.Weather.InvalidKey",
            // Dates (JSON.NET reads them as dates) and object leaves are undefined.
            "$body.message.Weather.Time <> '100'",
            "$body.message.Weather <> null",
        ],
        Truth::Undefined,
    );
}

#[test]
fn application_properties_win_over_body_queries_unless_escaped() {
    assert_all(
        &[
            "$body.message.Weather.Temperature_PropertyConflict = '100'",
            "as_number($body.message.Weather.Temperature_PropertyConflict) = 100",
            "{$body.message.Weather.Temperature_PropertyConflict} <> 100",
            "$body.message.Weather.Location.State = 'WA'",
            "{$body.message.Weather.Location.State} <> 'CA'",
        ],
        Truth::True,
    );
}

#[test]
fn missing_paths_are_null() {
    assert_all(
        &[
            "$body.message.Weather.NullValue = null",
            "$body.message.Temperature = null",
            "$body.message.Weather.Temperature != null",
            "$body.message.Weather.Location.State <> null",
            "$body.message.Weather.InvalidProperty = null",
            "NOT ($body.message.Weather.InvalidProperty != null)",
        ],
        Truth::True,
    );
}

#[test]
fn built_in_functions_accept_body_values() {
    assert_all(
        &[
            "abs($body.message.Weather.FreezingTemperature) = 50.4",
            "ceiling(as_number($body.message.Weather.PreciseTemperature)) = 51",
            "concat($body.message.Weather.Location.Street, ', ', $body.message.Weather.Location.City, ', ', $body.message.Weather.Location.State) = 'One Microsoft Way, Redmond, WA'",
            "contains($body.message.Weather.Location.Street, 'Microsoft')",
            "ends_with($body.message.Weather.Location.Street, 'Way')",
            "exp(($body.message.Weather.Temperature - 49)) < ($body.message.Weather.Temperature - 47)",
            "index_of($body.message.Weather.Location.Street, 'Way') > 6",
            "is_defined($body.message.Weather.Location.Street)",
            "is_null($body.message.Weather.NullValue)",
            "is_string($body.message.Weather.Location.Street)",
            "length($body.message.Weather.Location.State) = 2",
            "lower($body.message.Weather.Location.State) = 'wa'",
            "power($body.message.Weather.Temperature, 2) = 2500.0",
            "power($body.message.Weather.Temperature, length($body.message.Weather.Location.State)) = 2500.0",
            "sign($body.message.Weather.FreezingTemperature) = -1",
            "square($body.message.Weather.Temperature) = 2500",
            "power($body.message.Weather.Temperature, length($body.message.Weather.Location.State)) = square($body.message.Weather.Temperature)",
            "starts_with($body.message.Weather.Location.Street, 'One')",
            "substring($body.message.Weather.Location.Street, length($body.message.Weather.Location.Street) - 3) = 'Way'",
            "substring($body.message.Weather.Location.Street, 4, length('Microsoft')) = 'Microsoft'",
            "upper($body.message.Weather.Location.Street) = 'ONE MICROSOFT WAY'",
        ],
        Truth::True,
    );
}

fn weather(encoding: &str, body: Vec<u8>) -> Message {
    Message::new("/messages")
        .with_body(body)
        .with_system_property("contentType", "application/json")
        .with_system_property("contentEncoding", encoding)
}

#[test]
fn utf8_utf16_and_utf32_bodies_are_queried() {
    let text = r#"{"message":{"Weather":{"Temperature":50}}}"#;
    let condition = compile_condition("$body.message.Weather.Temperature = 50").unwrap();
    let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let utf32: Vec<u8> = text
        .chars()
        .flat_map(|c| u32::from(c).to_le_bytes())
        .collect();
    assert_eq!(
        condition.evaluate(&weather("UTF-8", text.into())),
        Truth::True
    );
    assert_eq!(condition.evaluate(&weather("UTf-16", utf16)), Truth::True);
    assert_eq!(condition.evaluate(&weather("utf-32", utf32)), Truth::True);
}

#[test]
fn invalid_json_or_encoding_or_missing_content_properties_make_body_queries_undefined() {
    let condition = compile_condition("$body.message.Weather.Temperature = 50").unwrap();
    let text = r#"{"message":{"Weather":{"Temperature":50}}}"#;
    assert_eq!(
        condition.evaluate(&weather("UTF-8", b"Invalid Json".to_vec())),
        Truth::Undefined
    );
    assert_eq!(
        condition.evaluate(&weather("UTF-8", vec![1, 2, 3])),
        Truth::Undefined
    );
    let no_encoding = Message::new("/messages")
        .with_body(text)
        .with_system_property("contentType", "application/json");
    assert_eq!(condition.evaluate(&no_encoding), Truth::Undefined);
    let no_type = Message::new("/messages")
        .with_body(text)
        .with_system_property("contentEncoding", "Utf-8");
    assert_eq!(condition.evaluate(&no_type), Truth::Undefined);
    let mismatched = weather("utf-16", text.into());
    assert_eq!(condition.evaluate(&mismatched), Truth::Undefined);
}
