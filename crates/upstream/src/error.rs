//! Why an upstream operation failed.

/// Why an upstream operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The identity's connection is down; try again later.
    #[error("upstream connection for {0} is not connected")]
    Offline(String),
    /// The cloud did not answer in time.
    #[error("upstream {operation} for {identity} timed out")]
    Timeout {
        /// What was attempted.
        operation: &'static str,
        /// For whom.
        identity: String,
    },
    /// The cloud answered with an error status.
    #[error("upstream {operation} for {identity} failed with status {status}")]
    Status {
        /// What was attempted.
        operation: &'static str,
        /// For whom.
        identity: String,
        /// The status.
        status: u16,
    },
    /// The cloud's answer is not the JSON it should be.
    #[error("upstream {operation} for {identity}: the answer is not JSON")]
    Decode {
        /// What was attempted.
        operation: &'static str,
        /// For whom.
        identity: String,
    },
    /// The connection went away before the answer arrived.
    #[error("upstream connection for {0} closed before the operation completed")]
    Closed(String),
}
