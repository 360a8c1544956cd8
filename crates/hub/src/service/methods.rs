//! Direct methods: a REST call becomes an MQTT request to the connected identity, and the
//! identity's `$iothub/methods/res/{status}/?$rid=` answer becomes the REST response.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{Hub, identity_key};
use crate::error::{Error, Result};

/// Longest allowed response timeout.
pub const MAX_TIMEOUT_SECS: u64 = 3600;
/// Timeout when the caller names none.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// `POST /twins/{id}[/modules/{m}]/methods` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodRequest {
    /// Method name.
    pub method_name: String,
    /// JSON payload (absent means `null`).
    #[serde(default)]
    pub payload: Value,
    /// Seconds to wait for the answer.
    pub response_timeout_in_seconds: Option<u64>,
    /// Seconds to wait for the device to connect (accepted; the hub does not wait for connects).
    pub connect_timeout_in_seconds: Option<u64>,
}

/// The answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MethodResponse {
    /// Status chosen by the device.
    pub status: i64,
    /// Its payload (JSON, or the raw text when it was not JSON).
    pub payload: Value,
}

#[derive(Debug)]
struct Pending {
    target: String,
    reply: oneshot::Sender<MethodResponse>,
}

/// Requests waiting for their answer.
#[derive(Debug, Default)]
pub(crate) struct Methods {
    pending: Mutex<HashMap<String, Pending>>,
    next: AtomicU64,
}

impl Methods {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn parse_payload(bytes: &[u8]) -> Value {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

impl Hub {
    /// Invokes a method on a connected device or module and waits for its answer.
    pub async fn invoke_method(
        &self,
        device_id: String,
        module_id: Option<String>,
        req: MethodRequest,
    ) -> Result<MethodResponse> {
        if req.method_name.trim().is_empty() || req.method_name.contains(['/', '?', '#', '+']) {
            return Err(Error::BadRequest(format!(
                "invalid methodName {:?}: it must be non-empty and contain no '/', '?', '#' or '+'",
                req.method_name
            )));
        }
        let secs = req
            .response_timeout_in_seconds
            .unwrap_or(DEFAULT_TIMEOUT_SECS);
        if !(1..=MAX_TIMEOUT_SECS).contains(&secs) {
            return Err(Error::BadRequest(format!(
                "responseTimeoutInSeconds {secs} is outside 1..{MAX_TIMEOUT_SECS}"
            )));
        }
        let key = identity_key(&device_id, module_id.as_deref());
        // 404 DeviceNotFound before DeviceNotOnline, as IoT Hub does.
        let (d, m) = (device_id.clone(), module_id.clone());
        self.run(move |s| {
            if s.get_device(&d)?.is_none() {
                return Err(Error::DeviceNotFound(d));
            }
            if let Some(m) = m
                && s.get_module(&d, &m)?.is_none()
            {
                return Err(Error::ModuleNotFound {
                    device: d,
                    module: m,
                });
            }
            Ok(())
        })
        .await?;
        let link = self
            .connections()
            .link(&key)
            .ok_or_else(|| Error::DeviceNotOnline(key.clone()))?;
        let rid = format!(
            "{:x}",
            self.inner.methods.next.fetch_add(1, Ordering::Relaxed) + 1
        );
        let (tx, rx) = oneshot::channel();
        self.inner.methods.lock().insert(
            rid.clone(),
            Pending {
                target: key.clone(),
                reply: tx,
            },
        );
        let payload = serde_json::to_vec(&req.payload).unwrap_or_else(|_| b"null".to_vec());
        if !link.send_method_request(&req.method_name, &rid, &payload) {
            self.inner.methods.lock().remove(&rid);
            self.metrics().method("not_online");
            return Err(Error::DeviceNotOnline(key));
        }
        self.metrics().sent("method_request");
        match tokio::time::timeout(Duration::from_secs(secs), rx).await {
            Ok(Ok(resp)) => {
                self.metrics().method("ok");
                Ok(resp)
            }
            _ => {
                self.inner.methods.lock().remove(&rid);
                self.metrics().method("timeout");
                Err(Error::MethodTimeout {
                    identity: key,
                    method: req.method_name,
                    secs,
                })
            }
        }
    }

    /// Delivers an identity's answer; answers to requests that were not sent to `key` are dropped.
    pub fn method_response(&self, key: &str, rid: &str, status: i64, payload: &[u8]) -> bool {
        let mut pending = self.inner.methods.lock();
        match pending.get(rid) {
            Some(p) if p.target == key => {}
            _ => return false,
        }
        let Some(p) = pending.remove(rid) else {
            return false;
        };
        p.reply
            .send(MethodResponse {
                status,
                payload: parse_payload(payload),
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_or_text_and_empty_is_null() {
        assert_eq!(parse_payload(b" "), Value::Null);
        assert_eq!(parse_payload(br#"{"a":1}"#), serde_json::json!({"a": 1}));
        assert_eq!(parse_payload(b"not json"), Value::String("not json".into()));
    }
}
