//! A TLS server certificate that can be replaced while the server runs (rotation without
//! downtime: new handshakes get the new certificate, open connections keep theirs).

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::Result;

/// The current certificate of a TLS server.
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

/// Parses a PEM chain and key into a rustls certified key.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>> {
    let chain = ironedge_pki::certificates_from_pem(chain_pem, "server certificate")?;
    let key = ironedge_pki::private_key_from_pem(key_pem, "server key")?;
    let signer = ironedge_pki::crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(ironedge_pki::Error::Tls)?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

impl ReloadableCert {
    /// Starts with `chain_pem`/`key_pem`.
    pub fn new(chain_pem: &str, key_pem: &str) -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            current: RwLock::new(certified_key(chain_pem, key_pem)?),
        }))
    }

    /// Serves `chain_pem`/`key_pem` from the next handshake on.
    pub fn replace(&self, chain_pem: &str, key_pem: &str) -> Result<()> {
        let key = certified_key(chain_pem, key_pem)?;
        match self.current.write() {
            Ok(mut c) => *c = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
        Ok(())
    }

    /// A rustls server configuration serving the current certificate (TLS 1.3 and 1.2).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>> {
        let config = rustls::ServerConfig::builder_with_provider(ironedge_pki::crypto_provider())
            .with_protocol_versions(ironedge_pki::PROTOCOL_VERSIONS)
            .map_err(ironedge_pki::Error::Tls)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match self.current.read() {
            Ok(c) => Some(c.clone()),
            Err(poisoned) => Some(poisoned.into_inner().clone()),
        }
    }
}
