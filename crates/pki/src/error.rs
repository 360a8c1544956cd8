//! Errors of certificate generation, PEM handling and TLS configuration.

use std::path::PathBuf;
use thiserror::Error;

/// Anything that can go wrong in this crate.
#[derive(Debug, Error)]
pub enum Error {
    /// rcgen refused the parameters or failed to sign.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// The rcgen error.
        source: rcgen::Error,
    },
    /// A subject alternative name is neither an IP address nor a DNS name.
    #[error("\"{0}\" is not a valid DNS name or IP address for a certificate")]
    InvalidName(String),
    /// The PEM input has no certificate.
    #[error("no CERTIFICATE block found in {0}")]
    NoCertificate(&'static str),
    /// The PEM input has no private key.
    #[error("no PRIVATE KEY block found in {0}")]
    NoPrivateKey(&'static str),
    /// A PEM block could not be decoded.
    #[error("{what} is not valid PEM: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// A certificate could not be parsed as X.509.
    #[error("certificate is not valid X.509: {0}")]
    X509(String),
    /// rustls rejected the certificate, key or settings.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Result with this crate's error by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
