//! A filter module, modelled on the IoT Edge tutorial's `FilterModule`: readings arriving on
//! input `input1` whose `machine.temperature` is above `TemperatureThreshold` are sent on output
//! `output1` with the application property `MessageType: Alert`; the others are dropped. The
//! threshold comes from the environment variable `TemperatureThreshold` (default 25) and is
//! overridden by the desired property of the same name; the module reports the threshold in use.
//!
//! ```
//! use ironedge_filter::{Decision, decide};
//! use ironedge_module_client::Message;
//!
//! let hot = Message::new(r#"{"machine": {"temperature": 30.5}}"#);
//! assert!(matches!(decide(&hot, 25.0), Decision::Forward(m) if m.property("MessageType") == Some("Alert")));
//! ```

use ironedge_module_client::Message;
use serde_json::Value;

/// The input readings arrive on.
pub const INPUT: &str = "input1";
/// The output alerts leave on.
pub const OUTPUT: &str = "output1";
/// The threshold when nothing sets one.
pub const DEFAULT_THRESHOLD: f64 = 25.0;
/// The environment variable and desired property holding the threshold.
pub const THRESHOLD_KEY: &str = "TemperatureThreshold";

/// A threshold that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{source_name} {THRESHOLD_KEY}={value} is invalid: expected a number")]
pub struct ThresholdError {
    /// `environment` or `desired property`.
    pub source_name: &'static str,
    /// The value as given.
    pub value: String,
}

/// The threshold from environment variables (pass `std::env::vars()`).
pub fn threshold_from_vars<I, K, V>(vars: I) -> Result<f64, ThresholdError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    for (k, v) in vars {
        if k.as_ref().eq_ignore_ascii_case(THRESHOLD_KEY) {
            let v = v.as_ref().trim();
            return v
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite())
                .ok_or_else(|| ThresholdError {
                    source_name: "environment",
                    value: v.to_owned(),
                });
        }
    }
    Ok(DEFAULT_THRESHOLD)
}

/// The threshold in desired properties (a full set or a patch), if they set one.
pub fn threshold_from_desired(desired: &Value) -> Result<Option<f64>, ThresholdError> {
    let Some(v) = desired.get(THRESHOLD_KEY).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let parsed = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed
        .filter(|t: &f64| t.is_finite())
        .map(Some)
        .ok_or_else(|| ThresholdError {
            source_name: "desired property",
            value: v.to_string(),
        })
}

/// What to do with one reading.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send this alert on [`OUTPUT`].
    Forward(Box<Message>),
    /// At or below the threshold.
    Drop {
        /// The machine temperature.
        temperature: f64,
    },
    /// Not a reading.
    Invalid(&'static str),
}

/// Decides about `message` with `threshold`. A forwarded alert keeps the body, the application
/// properties, the message id and the content type and encoding; the edge hub stamps the sender.
pub fn decide(message: &Message, threshold: f64) -> Decision {
    let Ok(body) = serde_json::from_slice::<Value>(&message.body) else {
        return Decision::Invalid("the body is not JSON");
    };
    let Some(temperature) = body
        .get("machine")
        .and_then(|m| m.get("temperature"))
        .and_then(Value::as_f64)
    else {
        return Decision::Invalid("the body has no number at machine.temperature");
    };
    if temperature <= threshold {
        return Decision::Drop { temperature };
    }
    let mut alert = Message::new(message.body.clone());
    alert.system.message_id = message.system.message_id.clone();
    alert.system.content_type = message.system.content_type.clone();
    alert.system.content_encoding = message.system.content_encoding.clone();
    alert.properties = message.properties.clone();
    alert.set_property("MessageType", "Alert");
    Decision::Forward(Box::new(alert))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reading(t: f64) -> Message {
        let mut m =
            Message::new(json!({"machine": {"temperature": t, "pressure": 1.0}}).to_string());
        m.system.message_id = Some("b-3".into());
        m.system.content_type = Some("application/json".into());
        m.system.content_encoding = Some("utf-8".into());
        m.system.connection_module_id = Some("sensor".into());
        m.set_property("sequenceNumber", "3");
        m
    }

    #[test]
    fn readings_above_the_threshold_become_alerts_with_their_properties() {
        let Decision::Forward(alert) = decide(&reading(25.5), 25.0) else {
            panic!("25.5 > 25 must be forwarded");
        };
        assert_eq!(alert.property("MessageType"), Some("Alert"));
        assert_eq!(alert.property("sequenceNumber"), Some("3"));
        assert_eq!(alert.system.message_id.as_deref(), Some("b-3"));
        assert_eq!(
            alert.system.content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(alert.system.connection_module_id, None);
        assert_eq!(alert.body, reading(25.5).body);
    }

    #[test]
    fn readings_at_or_below_the_threshold_are_dropped() {
        assert_eq!(
            decide(&reading(25.0), 25.0),
            Decision::Drop { temperature: 25.0 }
        );
        assert_eq!(
            decide(&reading(-3.0), 25.0),
            Decision::Drop { temperature: -3.0 }
        );
    }

    #[test]
    fn messages_that_are_not_readings_are_invalid() {
        assert!(matches!(
            decide(&Message::new("hello"), 25.0),
            Decision::Invalid(_)
        ));
        assert!(matches!(
            decide(
                &Message::new(r#"{"machine": {"temperature": "hot"}}"#),
                25.0
            ),
            Decision::Invalid(_)
        ));
    }

    #[test]
    fn the_threshold_comes_from_the_environment_then_the_desired_properties() {
        assert_eq!(
            threshold_from_vars(Vec::<(String, String)>::new()),
            Ok(25.0)
        );
        assert_eq!(
            threshold_from_vars([("temperaturethreshold", " 30.5 ")]),
            Ok(30.5)
        );
        let err = threshold_from_vars([("TemperatureThreshold", "warm")]).unwrap_err();
        assert!(err.to_string().contains("warm"), "{err}");
        assert_eq!(
            threshold_from_desired(&json!({"TemperatureThreshold": 27})),
            Ok(Some(27.0))
        );
        assert_eq!(
            threshold_from_desired(&json!({"TemperatureThreshold": "28"})),
            Ok(Some(28.0))
        );
        assert_eq!(threshold_from_desired(&json!({"$version": 2})), Ok(None));
        assert!(threshold_from_desired(&json!({"TemperatureThreshold": [1]})).is_err());
    }
}
