//! Certificates: the trust bundle and module server/identity certificates, behind a
//! [`CertificateIssuer`] that the agent implements with the device's edge CA.

use futures::future::BoxFuture;

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// A TLS server certificate (the edge hub's).
    Server,
    /// A module's client identity certificate.
    Identity,
}

/// A certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    /// Server or identity.
    pub kind: CertKind,
    /// Module that asked.
    pub module_id: String,
    /// Subject common name.
    pub common_name: String,
    /// DNS names or IP addresses for the SAN extension (the common name is always one of them for
    /// server certificates).
    pub subject_alt_names: Vec<String>,
    /// Requested expiry; the issuer may shorten it to its own limit.
    pub not_after: jiff::Timestamp,
}

/// An issued certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// PEM chain, leaf first.
    pub certificate_pem: String,
    /// PEM private key.
    pub private_key_pem: String,
    /// Actual expiry.
    pub not_after: jiff::Timestamp,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("certificate_pem_len", &self.certificate_pem.len())
            .field("private_key_pem", &"<redacted>")
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Why a certificate could not be issued.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CertError {
    /// The request cannot be honoured (bad name, expiry in the past…).
    #[error("invalid certificate request: {0}")]
    Invalid(String),
    /// The CA backend failed.
    #[error("certificate issuer: {0}")]
    Backend(String),
}

/// The device's certificate authority as the workload API sees it.
pub trait CertificateIssuer: Send + Sync + 'static {
    /// PEM bundle of the CA certificates modules should trust.
    fn trust_bundle(&self) -> BoxFuture<'_, Result<String, CertError>>;

    /// PEM bundle for manifest signing; defaults to the trust bundle.
    fn manifest_trust_bundle(&self) -> BoxFuture<'_, Result<String, CertError>> {
        self.trust_bundle()
    }

    /// Issues a server or identity certificate.
    fn issue(
        &self,
        request: CertificateRequest,
    ) -> BoxFuture<'_, Result<IssuedCertificate, CertError>>;
}

/// A trust bundle with no CA behind it: certificate requests fail. Enough for modules that only
/// sign tokens, and for tests.
#[derive(Debug, Clone)]
pub struct StaticTrustBundle {
    pem: String,
}

impl StaticTrustBundle {
    /// Serves `pem` as the trust bundle.
    pub fn new(pem: impl Into<String>) -> Self {
        Self { pem: pem.into() }
    }
}

impl CertificateIssuer for StaticTrustBundle {
    fn trust_bundle(&self) -> BoxFuture<'_, Result<String, CertError>> {
        let pem = self.pem.clone();
        Box::pin(async move { Ok(pem) })
    }

    fn issue(
        &self,
        _request: CertificateRequest,
    ) -> BoxFuture<'_, Result<IssuedCertificate, CertError>> {
        Box::pin(async {
            Err(CertError::Backend(
                "this workload API has no CA configured, so it cannot issue certificates".into(),
            ))
        })
    }
}
