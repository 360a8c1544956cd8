//! The Message JSON format of `ironedge route test` and `ironedge route eval`.
//!
//! ```json
//! {
//!   "body": "{\"temperature\": 31}",
//!   "properties": {"alert": "high", "unset": null},
//!   "systemProperties": {"contentType": "application/json", "contentEncoding": "utf-8",
//!                        "connectionModuleId": "sensor", "outputName": "out"},
//!   "source": "/messages/modules/sensor/outputs/out"
//! }
//! ```
//!
//! - `body` is UTF-8 text; `bodyBase64` gives raw bytes instead. Neither means an empty body.
//! - `properties` are application properties: strings, or `null` for a property without value.
//!   Numbers and booleans are taken as their JSON text (`31` is the string `"31"`).
//! - `systemProperties` are keyed by the names conditions use, without the `$`. IoT Hub's names
//!   for the two the edge stores differently are accepted and stored under the edge names:
//!   `correlationId` as `cid`, `componentName` as `dt-subject`; conditions must then use
//!   `$cid` and `$dt-subject`, exactly as on IoT Edge.
//! - `source` defaults to what the edge hub would assign from `messageType`,
//!   `connectionModuleId` and `outputName`.

use base64::Engine as _;
use serde_json::Value as Json;

use crate::message::Message;
use crate::source::source_for;

/// A Message JSON document that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageJsonError {
    /// The text is not JSON.
    #[error("message is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not an object.
    #[error("message must be a JSON object with body, properties, systemProperties and source")]
    NotAnObject,
    /// A member the format does not have (usually a typo).
    #[error(
        "unknown message field '{0}'; expected body, bodyBase64, properties, systemProperties or source"
    )]
    UnknownField(String),
    /// Both `body` and `bodyBase64`.
    #[error("give either body or bodyBase64, not both")]
    TwoBodies,
    /// A member of the wrong JSON type.
    #[error("'{field}' must be {expected}")]
    WrongType {
        /// The member, as a path (`properties.alert`).
        field: String,
        /// What it must be.
        expected: &'static str,
    },
    /// `bodyBase64` is not base64.
    #[error("bodyBase64 is not valid base64: {0}")]
    Base64(String),
}

/// System property names IoT Hub uses that the edge stores under another name.
const ALIASES: [(&str, &str); 2] = [("correlationId", "cid"), ("componentName", "dt-subject")];

impl Message {
    /// Parses a Message JSON document (see [`crate::message_json`] for the format).
    pub fn from_json(text: &str) -> Result<Self, MessageJsonError> {
        let json: Json =
            serde_json::from_str(text).map_err(|e| MessageJsonError::Json(e.to_string()))?;
        Self::from_json_value(&json)
    }

    /// Builds a message from an already parsed Message JSON value.
    pub fn from_json_value(json: &Json) -> Result<Self, MessageJsonError> {
        let object = json.as_object().ok_or(MessageJsonError::NotAnObject)?;
        if let Some(unknown) = object.keys().find(|k| {
            !matches!(
                k.as_str(),
                "body" | "bodyBase64" | "properties" | "systemProperties" | "source"
            )
        }) {
            return Err(MessageJsonError::UnknownField(unknown.clone()));
        }
        let mut message = Message {
            body: body(object.get("body"), object.get("bodyBase64"))?,
            ..Message::default()
        };
        if let Some(properties) = object.get("properties") {
            for (name, value) in members(properties, "properties")? {
                let value = scalar(value).ok_or_else(|| MessageJsonError::WrongType {
                    field: format!("properties.{name}"),
                    expected: "a string or null",
                })?;
                message.properties.push((name.clone(), value));
            }
        }
        if let Some(system) = object.get("systemProperties") {
            for (name, value) in members(system, "systemProperties")? {
                let Some(Some(value)) = scalar(value) else {
                    return Err(MessageJsonError::WrongType {
                        field: format!("systemProperties.{name}"),
                        expected: "a string",
                    });
                };
                let name = name.strip_prefix('$').unwrap_or(name);
                let name = ALIASES
                    .iter()
                    .find(|(hub, _)| hub.eq_ignore_ascii_case(name))
                    .map_or(name, |(_, edge)| *edge);
                message = message.with_system_property(name, value);
            }
        }
        message.source = match object.get("source") {
            Some(Json::String(source)) => source.clone(),
            Some(_) => {
                return Err(MessageJsonError::WrongType {
                    field: "source".into(),
                    expected: "a string",
                });
            }
            None => source_for(
                message.system("messageType"),
                message.system("connectionModuleId"),
                message.system("outputName"),
            ),
        };
        Ok(message)
    }

    fn system(&self, name: &str) -> Option<&str> {
        self.system_properties
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn body(text: Option<&Json>, base64: Option<&Json>) -> Result<Vec<u8>, MessageJsonError> {
    match (text, base64) {
        (Some(_), Some(_)) => Err(MessageJsonError::TwoBodies),
        (Some(Json::String(text)), None) => Ok(text.clone().into_bytes()),
        (Some(_), None) => Err(MessageJsonError::WrongType {
            field: "body".into(),
            expected: "a string",
        }),
        (None, Some(Json::String(encoded))) => base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| MessageJsonError::Base64(e.to_string())),
        (None, Some(_)) => Err(MessageJsonError::WrongType {
            field: "bodyBase64".into(),
            expected: "a base64 string",
        }),
        (None, None) => Ok(Vec::new()),
    }
}

fn members<'j>(
    json: &'j Json,
    field: &str,
) -> Result<&'j serde_json::Map<String, Json>, MessageJsonError> {
    json.as_object().ok_or_else(|| MessageJsonError::WrongType {
        field: field.to_owned(),
        expected: "an object",
    })
}

/// A property value: strings as they are, numbers and booleans as their JSON text, null as `None`.
fn scalar(value: &Json) -> Option<Option<String>> {
    match value {
        Json::Null => Some(None),
        Json::String(s) => Some(Some(s.clone())),
        Json::Number(_) | Json::Bool(_) => Some(Some(value.to_string())),
        Json::Array(_) | Json::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{PropertyValue, RoutableMessage, SystemProperty};

    #[test]
    fn a_full_message_is_read() {
        let m = Message::from_json(
            r#"{"body":"{\"t\":1}","properties":{"alert":"high","n":null,"temp":31,"on":true},
               "systemProperties":{"contentType":"application/json","correlationId":"c1","$messageId":"m1"},
               "source":"/messages/modules/a/outputs/b"}"#,
        )
        .unwrap();
        assert_eq!(m.body, br#"{"t":1}"#);
        assert_eq!(
            m.application_property("alert"),
            PropertyValue::Value("high")
        );
        assert_eq!(m.application_property("n"), PropertyValue::Null);
        assert_eq!(m.application_property("temp"), PropertyValue::Value("31"));
        assert_eq!(m.application_property("on"), PropertyValue::Value("true"));
        assert_eq!(m.system_property(SystemProperty::CorrelationId), Some("c1"));
        assert_eq!(m.system_property(SystemProperty::MessageId), Some("m1"));
        assert_eq!(m.source(), "/messages/modules/a/outputs/b");
    }

    #[test]
    fn the_source_defaults_to_what_the_edge_hub_assigns() {
        let m = Message::from_json(
            r#"{"systemProperties":{"connectionModuleId":"a","outputName":"b"}}"#,
        )
        .unwrap();
        assert_eq!(m.source(), "/messages/modules/a/outputs/b");
        let m = Message::from_json("{}").unwrap();
        assert_eq!(m.source(), "/messages");
        let m =
            Message::from_json(r#"{"systemProperties":{"messageType":"twinChangeNotification"}}"#)
                .unwrap();
        assert_eq!(m.source(), "/twinChangeNotifications");
    }

    #[test]
    fn base64_bodies_are_decoded() {
        let m = Message::from_json(r#"{"bodyBase64":"AAEC/w=="}"#).unwrap();
        assert_eq!(m.body, vec![0, 1, 2, 255]);
        let err = Message::from_json(r#"{"bodyBase64":"***"}"#).unwrap_err();
        assert!(matches!(err, MessageJsonError::Base64(_)));
    }

    #[test]
    fn mistakes_are_reported_by_field() {
        let cases = [
            ("[]", "must be a JSON object"),
            ("{", "not valid JSON"),
            (r#"{"property":{}}"#, "unknown message field 'property'"),
            (r#"{"body":"a","bodyBase64":"YQ=="}"#, "not both"),
            (r#"{"body":1}"#, "'body' must be a string"),
            (
                r#"{"properties":{"a":[1]}}"#,
                "'properties.a' must be a string or null",
            ),
            (
                r#"{"systemProperties":{"contentType":null}}"#,
                "'systemProperties.contentType' must be a string",
            ),
            (r#"{"source":5}"#, "'source' must be a string"),
        ];
        for (json, expected) in cases {
            let err = Message::from_json(json).unwrap_err().to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }
}
