//! Why a connection ended or a server could not run.

use thiserror::Error;

/// Why a connection was closed by the server (logged and passed to [`crate::Hooks::disconnected`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT.
    #[error("client disconnected")]
    ClientDisconnect,
    /// The client closed the socket without DISCONNECT.
    #[error("connection closed by peer")]
    ConnectionLost,
    /// Nothing arrived within 1.5 × keepalive.
    #[error("keepalive timeout after {0:?}")]
    KeepAliveTimeout(std::time::Duration),
    /// The credentials expired (SAS `se`).
    #[error("credentials expired")]
    CredentialsExpired,
    /// A newer connection for the same identity took over.
    #[error("replaced by a newer connection for the same identity")]
    SessionTakenOver,
    /// The application asked to close the connection.
    #[error("closed by the server: {0}")]
    Kicked(String),
    /// A packet larger than the limit.
    #[error("packet of {size} bytes exceeds the {max}-byte limit")]
    PacketTooLarge {
        /// Announced size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid MQTT 3.1.1 packet.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A valid packet that is not allowed here (QoS 2, a second CONNECT, PUBREL, ...).
    #[error("protocol violation: {0}")]
    ProtocolViolation(&'static str),
    /// The application rejected a publish (unauthorised topic, storage failure).
    #[error("publish rejected: {0}")]
    PublishRejected(String),
    /// The server is shutting down.
    #[error("server shutting down")]
    Shutdown,
    /// Reading or writing the socket failed.
    #[error("I/O error: {0}")]
    Io(String),
}

/// A server-level failure.
#[derive(Debug, Error)]
pub enum Error {
    /// Accepting a connection failed in a way that stops the listener.
    #[error("listener failed: {0}")]
    Listener(#[from] std::io::Error),
}

/// Result with this crate's error by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
