//! What the edge hub sends a module: input messages, desired-property patches, direct method
//! calls, and the connection's ups and downs.

use bytes::Bytes;
use ironedge_protocol::Message;
use rumqttc::{AsyncClient, Publish, QoS};
use serde_json::Value;

use crate::client::ModuleClient;
use crate::error::{Error, Result};

/// One thing that happened.
#[derive(Debug)]
pub enum ModuleEvent {
    /// Connected (again) to the edge hub. Desired patches sent while the module was away are
    /// not replayed: read the twin again if they matter.
    Connected,
    /// The connection was lost; the client reconnects by itself.
    Disconnected {
        /// Why, for the log.
        reason: String,
    },
    /// A message arrived on an input.
    Input(Box<InputMessage>),
    /// The desired properties changed; the patch carries `$version`.
    DesiredProperties(Value),
    /// A direct method was called.
    Method(MethodRequest),
}

/// A message routed to one of the module's inputs. Acknowledge it with [`InputMessage::ack`]
/// once it is handled: the edge hub keeps it queued until then and delivers it again after a
/// reconnect if the acknowledgement never arrives (at-least-once).
pub struct InputMessage {
    /// The input name.
    pub input: String,
    /// The message, with the edge hub's `$.cdid`/`$.cmid` naming the sender.
    pub message: Message,
    ack: Option<(AsyncClient, Publish)>,
}

impl std::fmt::Debug for InputMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputMessage")
            .field("input", &self.input)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl InputMessage {
    pub(crate) fn new(
        input: String,
        message: Message,
        client: AsyncClient,
        publish: Publish,
    ) -> Self {
        let ack = (publish.qos != QoS::AtMostOnce).then_some((client, publish));
        Self {
            input,
            message,
            ack,
        }
    }

    /// The body as JSON.
    pub fn body_json(&self) -> Result<Value> {
        serde_json::from_slice(&self.message.body).map_err(|source| Error::Json {
            what: "the input message body",
            source,
        })
    }

    /// Acknowledges the message to the edge hub. After a reconnect the old connection's
    /// acknowledgement means nothing; the message then comes again.
    pub async fn ack(mut self) -> Result<()> {
        if let Some((client, publish)) = self.ack.take() {
            client
                .ack(&publish)
                .await
                .map_err(|_| Error::ConnectionLost {
                    operation: "input acknowledgement",
                })?;
        }
        Ok(())
    }
}

/// A direct method call; answer it with [`MethodRequest::respond`].
pub struct MethodRequest {
    /// The method name.
    pub name: String,
    /// The request payload (JSON by convention).
    pub payload: Bytes,
    rid: String,
    client: ModuleClient,
}

impl std::fmt::Debug for MethodRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodRequest")
            .field("name", &self.name)
            .field("payload_bytes", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl MethodRequest {
    pub(crate) fn new(name: String, payload: Bytes, rid: String, client: ModuleClient) -> Self {
        Self {
            name,
            payload,
            rid,
            client,
        }
    }

    /// The payload as JSON (`null` when empty).
    pub fn payload_json(&self) -> Result<Value> {
        if self.payload.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.payload).map_err(|source| Error::Json {
            what: "the method payload",
            source,
        })
    }

    /// Answers the call with `status` and a JSON payload.
    pub async fn respond(self, status: i32, payload: &Value) -> Result<()> {
        self.client
            .method_response(&self.rid, status, payload)
            .await
    }
}
