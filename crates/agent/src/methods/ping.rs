//! `ping`: 200 with a null payload, proof the agent is connected and answering.

use serde_json::Value;

use super::MethodError;

/// Answers `ping`.
pub fn ping() -> Result<Value, MethodError> {
    Ok(Value::Null)
}
