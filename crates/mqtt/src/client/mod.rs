//! An MQTT 3.1.1 client for links where throughput matters (the edge hub's and the agent's
//! upstream connections to IoT Hub).
//!
//! rumqttc's event loop writes and flushes every request on its own, so each PUBLISH costs a TLS
//! record, a system call and a wake-up of the peer; a backlog draining after an outage was bound
//! by that. Here one task owns the connection: it takes every request that is waiting (up to
//! the window of unacknowledged packets and a write batch), encodes them into one buffer and
//! writes it at once, and decodes whatever arrived in one read. Packets are encoded with the
//! same code as the server side ([`crate::wire`]) and decoded with rumqttc's v4 codec.
//!
//! [`connect`] performs the CONNECT/CONNACK exchange on a [`Transport`] the caller opened (TCP,
//! TLS or WebSocket) and returns a cloneable [`Client`] to send with and a [`Connection`] that
//! yields incoming PUBLISHes and, last, why the connection ended. Incoming QoS 1 PUBLISHes are
//! acknowledged once handed to the application. Sessions are clean: after a reconnect the
//! application sends again what was not acknowledged.

mod session;
mod slots;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Login, Packet, Publish};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::transport::Transport;

/// Requests waiting for the connection task.
const REQUEST_CAPACITY: usize = 1024;
/// Incoming PUBLISHes waiting for the application; beyond this the task stops reading.
const INCOMING_CAPACITY: usize = 256;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The MQTT client id.
    pub client_id: String,
    /// User name, if any.
    pub username: Option<String>,
    /// Password (a SAS token for IoT Hub), if any.
    pub password: Option<String>,
    /// Keepalive announced in CONNECT; a PINGREQ goes out at this interval (zero: none).
    pub keep_alive: Duration,
    /// Largest packet accepted from the server.
    pub max_packet: usize,
    /// Unacknowledged QoS 1 PUBLISHes and SUBSCRIBEs allowed at once.
    pub inflight: u16,
}

impl ClientOptions {
    /// Options for `client_id` with a 60 s keepalive, 256 KiB packets and a window of 100.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(60),
            max_packet: 256 * 1024,
            inflight: 100,
        }
    }
}

/// Why a client connection failed or ended.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ClientError {
    /// Reading or writing the transport failed.
    #[error("I/O error: {0}")]
    Io(String),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The server refused the CONNECT.
    #[error("connection refused by the server: {0:?}")]
    Refused(ConnectReturnCode),
    /// The server sent bytes that are not MQTT 3.1.1.
    #[error("malformed packet from the server: {0}")]
    Malformed(String),
    /// The server sent a packet a client may not receive here.
    #[error("protocol violation by the server: {0}")]
    Protocol(&'static str),
    /// No PINGRESP arrived within a keepalive interval.
    #[error("no PINGRESP within the keepalive of {0:?}")]
    KeepAliveTimeout(Duration),
    /// This side ended the connection (DISCONNECT, or every [`Client`] dropped).
    #[error("disconnected by this client")]
    Disconnected,
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}

impl ClientError {
    fn from_codec(e: CodecError) -> Self {
        Self::Malformed(format!("{e:?}"))
    }
}

/// What the application asks of the connection task.
#[derive(Debug)]
enum Request {
    Publish {
        topic: String,
        payload: Bytes,
        /// `Some` for QoS 1: completed by the PUBACK.
        ack: Option<oneshot::Sender<()>>,
    },
    Subscribe {
        filters: Vec<(String, QoS)>,
        granted: oneshot::Sender<Vec<Option<QoS>>>,
    },
    Disconnect,
}

/// Sends on a connection; cheap to clone. Every method fails with
/// [`ClientError::Disconnected`] once the connection has ended.
#[derive(Debug, Clone)]
pub struct Client {
    requests: mpsc::Sender<Request>,
}

impl Client {
    async fn send(&self, request: Request) -> Result<(), ClientError> {
        self.requests
            .send(request)
            .await
            .map_err(|_| ClientError::Disconnected)
    }

    /// Queues a QoS 1 PUBLISH; the receiver resolves on its PUBACK and fails if the connection
    /// ends first. Waits while the request queue is full.
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        payload: Bytes,
    ) -> Result<oneshot::Receiver<()>, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Publish {
            topic: topic.into(),
            payload,
            ack: Some(tx),
        })
        .await?;
        Ok(rx)
    }

    /// Queues a QoS 0 PUBLISH.
    pub async fn publish_qos0(
        &self,
        topic: impl Into<String>,
        payload: Bytes,
    ) -> Result<(), ClientError> {
        self.send(Request::Publish {
            topic: topic.into(),
            payload,
            ack: None,
        })
        .await
    }

    /// Queues a SUBSCRIBE (sent before anything queued after it); the receiver resolves with
    /// the SUBACK: the granted QoS per filter, `None` where refused.
    pub async fn subscribe(
        &self,
        filters: Vec<(String, QoS)>,
    ) -> Result<oneshot::Receiver<Vec<Option<QoS>>>, ClientError> {
        let (granted, answer) = oneshot::channel();
        self.send(Request::Subscribe { filters, granted }).await?;
        Ok(answer)
    }

    /// Sends DISCONNECT after everything queued before it and closes the connection.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        self.send(Request::Disconnect).await
    }
}

/// The receiving side of a connection.
#[derive(Debug)]
pub struct Connection {
    incoming: mpsc::Receiver<Result<Publish, ClientError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// The next PUBLISH from the server, or why the connection ended (after which it keeps
    /// returning [`ClientError::Disconnected`]).
    pub async fn next(&mut self) -> Result<Publish, ClientError> {
        self.incoming
            .recv()
            .await
            .unwrap_or(Err(ClientError::Disconnected))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Nobody is left to read what arrives: end the connection (unacknowledged publishes
        // fail, as after any other loss).
        self.task.abort();
    }
}

/// Sends CONNECT on `transport` (opened by the caller), waits for a successful CONNACK and
/// starts the connection task. The caller bounds the wait with a timeout.
pub async fn connect<T: Transport>(
    mut transport: T,
    options: &ClientOptions,
) -> Result<(Client, Connection), ClientError> {
    let mut buf = BytesMut::with_capacity(256);
    connect_packet(options)
        .write(&mut buf)
        .map_err(ClientError::from_codec)?;
    transport.write_all(&buf).await?;
    buf.clear();
    let ack = loop {
        match Packet::read(&mut buf, options.max_packet) {
            Ok(Packet::ConnAck(ack)) => break ack,
            Ok(_) => return Err(ClientError::Protocol("the first packet must be CONNACK")),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(e) => return Err(ClientError::from_codec(e)),
        }
        if transport.read(&mut buf).await? == 0 {
            return Err(ClientError::Closed);
        }
    };
    if ack.code != ConnectReturnCode::Success {
        return Err(ClientError::Refused(ack.code));
    }
    let (requests, requests_rx) = mpsc::channel(REQUEST_CAPACITY);
    let (incoming_tx, incoming) = mpsc::channel(INCOMING_CAPACITY);
    let session = session::Session::new(transport, buf, options, requests_rx, incoming_tx);
    let task = tokio::spawn(session.run());
    Ok((Client { requests }, Connection { incoming, task }))
}

fn connect_packet(options: &ClientOptions) -> rumqttc::mqttbytes::v4::Connect {
    let mut connect = rumqttc::mqttbytes::v4::Connect::new(options.client_id.clone());
    connect.keep_alive = u16::try_from(options.keep_alive.as_secs()).unwrap_or(u16::MAX);
    connect.clean_session = true;
    if options.username.is_some() || options.password.is_some() {
        connect.login = Some(Login::new(
            options.username.clone().unwrap_or_default(),
            options.password.clone().unwrap_or_default(),
        ));
    }
    connect
}
