//! Errors of the module client, split by what the caller can do about them.

use std::path::PathBuf;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the module's environment cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    /// A variable the contract requires is not set.
    #[error(
        "{name} is not set: run the module under IoT Edge (which sets IOTEDGE_*), or set \
         EdgeHubConnectionString (and EdgeModuleCACertificateFile) for local development"
    )]
    Missing {
        /// The variable.
        name: &'static str,
    },
    /// A variable is set to something unusable.
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value (never a secret: keys are not echoed).
        value: String,
        /// What is wrong.
        reason: String,
    },
}

/// A workload API call failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The URI is neither `unix://` nor `http://`.
    #[error("workload URI {0:?} must start with unix:// or http://")]
    Uri(String),
    /// The request did not complete.
    #[error("workload API {operation}: {}", chain(.source))]
    Request {
        /// `trust-bundle` or `sign`.
        operation: &'static str,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The API answered with an error status.
    #[error("workload API {operation} answered {status}: {message}")]
    Status {
        /// `trust-bundle` or `sign`.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// The `{message}` of the error body, or the raw body.
        message: String,
    },
    /// The answer is not what the contract promises.
    #[error("workload API {operation} answered an unexpected body: {reason}")]
    Body {
        /// `trust-bundle` or `sign`.
        operation: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// An error with its causes, `outer: inner: innermost` (reqwest hides the cause in `Display`).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// Anything the module client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The environment does not describe a module.
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    /// The workload API failed.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// The CA file of the connection-string mode cannot be read.
    #[error("reading the CA certificate file {path}: {source}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The trust bundle or TLS setup is unusable.
    #[error("TLS setup for the edge hub: {0}")]
    Tls(#[from] ironedge_pki::Error),
    /// The client was closed.
    #[error("the module client is closed")]
    Closed,
    /// An operation got no answer in time.
    #[error("{operation} got no answer within {seconds} s")]
    Timeout {
        /// What was attempted.
        operation: &'static str,
        /// The timeout.
        seconds: u64,
    },
    /// The connection was lost before the edge hub answered.
    #[error("{operation}: the connection to the edge hub was lost before it answered")]
    ConnectionLost {
        /// What was attempted.
        operation: &'static str,
    },
    /// A twin request was refused.
    #[error("twin {operation} answered status {status}")]
    TwinStatus {
        /// `GET` or `PATCH reported`.
        operation: &'static str,
        /// The status in the response topic.
        status: u16,
    },
    /// A message was never acknowledged although the edge hub was reachable.
    #[error(
        "output {output:?}: the edge hub closed the connection {attempts} times while the message \
         was in flight (is the module allowed to send it?)"
    )]
    Undelivered {
        /// The output.
        output: String,
        /// Connections lost while it was in flight.
        attempts: u32,
    },
    /// A message is over IoT Hub's size limit.
    #[error(
        "message of {size} bytes is over the {limit}-byte limit (body plus property names and values)"
    )]
    TooLarge {
        /// Its size as IoT Edge counts it.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A body that must be JSON is not.
    #[error("{what} is not valid JSON: {source}")]
    Json {
        /// What was parsed.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
}
