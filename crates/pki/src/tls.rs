//! rustls configurations with the ring provider chosen explicitly (never aws-lc), TLS 1.3 and
//! TLS 1.2 (the Python IoT SDK pins TLS 1.2).

use crate::error::Result;
use crate::pem::{certificates_from_pem, private_key_from_pem};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::Arc;

/// TLS versions offered: 1.3 and 1.2.
pub const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The ring crypto provider.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process default provider for libraries that build their own configs
/// (kube, reqwest). Harmless when a default is already installed.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A server config from a PEM chain (leaf first) and PEM key, without client certificates.
pub fn server_config(chain_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>> {
    let certs = certificates_from_pem(chain_pem, "server certificate")?;
    let key = private_key_from_pem(key_pem, "server key")?;
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// A server config that asks for client certificates chaining to `client_ca_pem` but also
/// accepts clients without one (those authenticate with SAS tokens instead).
pub fn server_config_with_optional_client_auth(
    chain_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<ServerConfig>> {
    let provider = crypto_provider();
    let roots = root_store(client_ca_pem, "client CA")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let certs = certificates_from_pem(chain_pem, "server certificate")?;
    let key = private_key_from_pem(key_pem, "server key")?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// A client config trusting only the CAs in `trust_pem`, optionally presenting a client
/// certificate (`(chain_pem, key_pem)`).
pub fn client_config(trust_pem: &str, identity: Option<(&str, &str)>) -> Result<Arc<ClientConfig>> {
    let roots = root_store(trust_pem, "trust bundle")?;
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(
            certificates_from_pem(chain, "client certificate")?,
            private_key_from_pem(key, "client key")?,
        )?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn root_store(pem: &str, what: &'static str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certificates_from_pem(pem, what)? {
        roots.add(cert)?;
    }
    Ok(roots)
}
