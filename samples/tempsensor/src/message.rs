//! The message format: SimulatedTemperatureSensor's JSON body, UTF-8 JSON content type, and the
//! application properties `sequenceNumber` and `batchId` (one batch per process start).

use ironedge_module_client::Message;
use serde_json::json;

use crate::simulator::Reading;

/// The output readings are sent on.
pub const OUTPUT: &str = "temperatureOutput";

/// The message for `reading`, the `sequence`-th of batch `batch_id`, created at `now`.
pub fn to_message(
    reading: &Reading,
    sequence: u64,
    batch_id: &str,
    now: jiff::Timestamp,
) -> Message {
    let body = json!({
        "machine": reading.machine,
        "ambient": reading.ambient,
        "timeCreated": now.to_string(),
    });
    let mut message = Message::new(body.to_string());
    message.system.content_type = Some("application/json".into());
    message.system.content_encoding = Some("utf-8".into());
    message.system.message_id = Some(format!("{batch_id}-{sequence}"));
    message.set_property("sequenceNumber", sequence.to_string());
    message.set_property("batchId", batch_id);
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::{Ambient, Machine};

    #[test]
    fn a_reading_becomes_json_with_its_sequence_and_batch() {
        let reading = Reading {
            machine: Machine {
                temperature: 30.5,
                pressure: 2.25,
            },
            ambient: Ambient {
                temperature: 20.75,
                humidity: 25,
            },
        };
        let now: jiff::Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let m = to_message(&reading, 7, "b1", now);
        let body: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(
            body,
            json!({"machine": {"temperature": 30.5, "pressure": 2.25},
                   "ambient": {"temperature": 20.75, "humidity": 25},
                   "timeCreated": "2026-01-02T03:04:05Z"})
        );
        assert_eq!(m.system.content_type.as_deref(), Some("application/json"));
        assert_eq!(m.system.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(m.property("sequenceNumber"), Some("7"));
        assert_eq!(m.property("batchId"), Some("b1"));
        assert_eq!(m.system.message_id.as_deref(), Some("b1-7"));
    }
}
