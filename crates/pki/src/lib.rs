//! Certificates and TLS for ironedge: certificate authorities (self-signed roots and
//! intermediates), server certificates with DNS/IP SANs, client identity certificates, PEM in
//! and out, expiry for rotation and metrics, a development CA on disk, and rustls server/client
//! configurations that always use the ring provider and offer TLS 1.3 and 1.2.
//!
//! ```
//! use ironedge_pki::{CertificateAuthority, client_config, server_config};
//! use jiff::{SignedDuration, Timestamp};
//!
//! let later = Timestamp::now() + SignedDuration::from_hours(24);
//! let ca = CertificateAuthority::new_root("Test CA", later)?;
//! let server = ca.issue_server(&["localhost", "127.0.0.1"], later)?;
//! let _server_tls = server_config(&server.chain_pem, &server.key_pem)?;
//! let _client_tls = client_config(&ca.root_pem(), None)?;
//! assert!(server.not_after <= later);
//! # Ok::<(), ironedge_pki::Error>(())
//! ```

mod ca;
mod dev_ca;
mod error;
mod pem;
mod tls;

pub use ca::{CertificateAuthority, IssuedCertificate};
pub use dev_ca::{DEV_CA_VALIDITY, DEV_SERVER_VALIDITY, DevCaFiles, write_dev_ca};
pub use error::{Error, Result};
pub use pem::{certificates_from_pem, not_after, private_key_from_pem};
pub use tls::{
    PROTOCOL_VERSIONS, client_config, crypto_provider, install_default_provider, server_config,
    server_config_with_optional_client_auth,
};
