//! What the application holds: a handle to send to a connection, and per-publish ack tokens.

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;
use std::fmt;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A message to deliver to a client.
pub struct OutboundMessage {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS 0 or 1 (2 is sent as 1).
    pub qos: QoS,
    /// Completed when the client PUBACKs (QoS 1) or the message is written (QoS 0).
    pub on_delivered: Option<oneshot::Sender<()>>,
}

impl OutboundMessage {
    /// A message without delivery notification.
    pub fn new(topic: String, payload: Bytes, qos: QoS) -> Self {
        let qos = if qos == QoS::ExactlyOnce {
            QoS::AtLeastOnce
        } else {
            qos
        };
        Self {
            topic,
            payload,
            qos,
            on_delivered: None,
        }
    }

    /// A message whose delivery is reported on the returned receiver (C2D completion).
    pub fn with_receipt(topic: String, payload: Bytes, qos: QoS) -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut msg = Self::new(topic, payload, qos);
        msg.on_delivered = Some(tx);
        (msg, rx)
    }

    pub(crate) fn delivered(self) {
        if let Some(tx) = self.on_delivered {
            let _ = tx.send(());
        }
    }
}

impl fmt::Debug for OutboundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .field("qos", &self.qos)
            .finish()
    }
}

/// Events the application sends into a connection's loop.
#[derive(Debug)]
pub(crate) enum Control {
    Acked(u64),
    Rejected(String),
    Kick(crate::DisconnectReason),
}

/// The outbound queue is full or the connection is gone.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The queue is full; retry later or use [`ConnectionHandle::send`].
    #[error("outbound queue of the connection is full")]
    Full(OutboundMessage),
    /// The connection has closed.
    #[error("connection closed")]
    Closed(OutboundMessage),
}

/// A cloneable handle to one authenticated connection.
pub struct ConnectionHandle<I> {
    inner: Arc<HandleInner<I>>,
}

struct HandleInner<I> {
    identity: I,
    id: u64,
    clean_session: bool,
    outbound: mpsc::Sender<OutboundMessage>,
    control: mpsc::UnboundedSender<Control>,
}

impl<I> Clone for ConnectionHandle<I> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<I: fmt::Debug> fmt::Debug for ConnectionHandle<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("identity", &self.inner.identity)
            .field("id", &self.inner.id)
            .finish()
    }
}

impl<I> ConnectionHandle<I> {
    pub(crate) fn new(
        identity: I,
        id: u64,
        clean_session: bool,
        outbound: mpsc::Sender<OutboundMessage>,
        control: mpsc::UnboundedSender<Control>,
    ) -> Self {
        Self {
            inner: Arc::new(HandleInner {
                identity,
                id,
                clean_session,
                outbound,
                control,
            }),
        }
    }

    /// The authenticated identity.
    pub fn identity(&self) -> &I {
        &self.inner.identity
    }

    /// A process-unique id of this connection (identities reconnect; ids do not repeat).
    pub fn connection_id(&self) -> u64 {
        self.inner.id
    }

    /// True when the client asked for a clean session.
    pub fn clean_session(&self) -> bool {
        self.inner.clean_session
    }

    /// Queues a message without waiting; fails when the queue is full (backpressure).
    pub fn try_send(&self, message: OutboundMessage) -> Result<(), SendError> {
        self.inner.outbound.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) => SendError::Full(m),
            mpsc::error::TrySendError::Closed(m) => SendError::Closed(m),
        })
    }

    /// Queues a message, waiting while the queue is full.
    pub async fn send(&self, message: OutboundMessage) -> Result<(), SendError> {
        self.inner
            .outbound
            .send(message)
            .await
            .map_err(|e| SendError::Closed(e.0))
    }

    /// Closes the connection.
    pub fn disconnect(&self, reason: impl Into<String>) {
        let _ = self
            .inner
            .control
            .send(Control::Kick(crate::DisconnectReason::Kicked(
                reason.into(),
            )));
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.outbound.is_closed()
    }

    pub(crate) fn kick(&self, reason: crate::DisconnectReason) {
        let _ = self.inner.control.send(Control::Kick(reason));
    }
}

/// The application's acknowledgement of one inbound PUBLISH. Call [`PublishAck::accept`] once
/// the message is safe (e.g. committed to the store); the PUBACK goes out then, in order.
/// Dropping it without accepting, or calling [`PublishAck::reject`], closes the connection
/// so the client redelivers the message after reconnecting.
pub struct PublishAck {
    inner: Option<(u64, mpsc::UnboundedSender<Control>)>,
}

impl fmt::Debug for PublishAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishAck")
            .field("seq", &self.inner.as_ref().map(|(s, _)| *s))
            .finish()
    }
}

impl PublishAck {
    pub(crate) fn qos1(seq: u64, control: mpsc::UnboundedSender<Control>) -> Self {
        Self {
            inner: Some((seq, control)),
        }
    }

    /// An ack for a QoS 0 publish: accepting or dropping it does nothing.
    pub fn none() -> Self {
        Self { inner: None }
    }

    /// True when a PUBACK is owed (QoS 1).
    pub fn is_required(&self) -> bool {
        self.inner.is_some()
    }

    /// Accepts the message: the PUBACK is sent.
    pub fn accept(mut self) {
        if let Some((seq, tx)) = self.inner.take() {
            let _ = tx.send(Control::Acked(seq));
        }
    }

    /// Refuses the message: no PUBACK, the connection closes.
    pub fn reject(mut self, reason: impl Into<String>) {
        if let Some((_, tx)) = self.inner.take() {
            let _ = tx.send(Control::Rejected(reason.into()));
        }
    }
}

impl Drop for PublishAck {
    fn drop(&mut self) {
        if let Some((_, tx)) = self.inner.take() {
            let _ = tx.send(Control::Rejected("publish dropped without an ack".into()));
        }
    }
}
