//! PEM in and out: certificate chains and private keys for rustls, and certificate expiry.

use crate::error::{Error, Result};
use jiff::Timestamp;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// Decodes every certificate of a PEM chain, in order.
pub fn certificates_from_pem(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::NoCertificate(what));
    }
    Ok(certs)
}

/// Decodes the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM document.
pub fn private_key_from_pem(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => Error::NoPrivateKey(what),
        other => Error::Pem {
            what,
            reason: other.to_string(),
        },
    })
}

/// Expiry (notAfter) of the first certificate in `pem`, for rotation and metrics.
pub fn not_after(pem: &str) -> Result<Timestamp> {
    let der = certificates_from_pem(pem, "certificate")?.swap_remove(0);
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| Error::X509(e.to_string()))?;
    let secs = cert.validity().not_after.timestamp();
    Timestamp::from_second(secs).map_err(|e| Error::X509(e.to_string()))
}

/// Splits a PEM chain into its first certificate block and the rest.
pub(crate) fn first_certificate_pem(chain: &str) -> Result<(String, String)> {
    let start = chain
        .find(BEGIN)
        .ok_or(Error::NoCertificate("certificate chain"))?;
    let end = chain[start..].find(END).ok_or(Error::Pem {
        what: "certificate chain",
        reason: "unterminated CERTIFICATE block".into(),
    })? + start
        + END.len();
    let mut first = chain[start..end].to_owned();
    first.push('\n');
    let rest = chain[end..].trim_start().to_owned();
    Ok((first, rest))
}
