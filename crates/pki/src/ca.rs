//! Certificate authorities and the certificates they issue (rcgen, ECDSA P-256 keys).

use crate::error::{Error, Result};
use crate::pem::{first_certificate_pem, not_after};
use jiff::Timestamp;
use rand::Rng as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::fmt;
use std::net::IpAddr;

/// A CA that can sign certificates: a self-signed root, or an intermediate under another CA.
pub struct CertificateAuthority {
    cert_pem: String,
    /// Certificates above this one, leaf-most first (empty for a root).
    parents_pem: String,
    key: KeyPair,
    not_after: Timestamp,
}

/// A certificate with its private key. `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// PEM chain: the certificate, then the issuing CAs up to (and including) the root.
    pub chain_pem: String,
    /// PEM PKCS#8 private key.
    pub key_pem: String,
    /// Expiry of the certificate.
    pub not_after: Timestamp,
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("chain_pem_len", &self.chain_pem.len())
            .field("key_pem", &"<redacted>")
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem_len", &self.cert_pem.len())
            .field("is_root", &self.parents_pem.is_empty())
            .field("key", &"<redacted>")
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl CertificateAuthority {
    /// Creates a self-signed root CA valid from now until `not_after`.
    pub fn new_root(common_name: &str, not_after: Timestamp) -> Result<Self> {
        let key = generate_key("CA key")?;
        let params = ca_params(common_name, not_after)?;
        let cert = params
            .self_signed(&key)
            .map_err(failed("root CA certificate"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            parents_pem: String::new(),
            key,
            not_after,
        })
    }

    /// Creates an intermediate CA signed by this one (e.g. a device's edge CA under a fleet CA).
    pub fn new_intermediate(&self, common_name: &str, not_after: Timestamp) -> Result<Self> {
        let key = generate_key("intermediate CA key")?;
        let not_after = not_after.min(self.not_after);
        let params = ca_params(common_name, not_after)?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(failed("intermediate CA certificate"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            parents_pem: self.chain_pem(),
            key,
            not_after,
        })
    }

    /// Loads a CA from its PEM certificate (optionally followed by its parents) and PEM key.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem).map_err(failed("CA key from PEM"))?;
        let (cert_pem, parents_pem) = first_certificate_pem(chain_pem)?;
        let not_after = not_after(&cert_pem)?;
        let ca = Self {
            cert_pem,
            parents_pem,
            key,
            not_after,
        };
        ca.issuer()?;
        Ok(ca)
    }

    /// This CA's certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// This CA's certificate followed by its parents: what a leaf's chain ends with.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.parents_pem)
    }

    /// The root of the chain in PEM: what clients put in their trust store.
    pub fn root_pem(&self) -> String {
        match first_certificate_pem(&self.parents_pem) {
            Ok(_) => last_certificate_pem(&self.parents_pem),
            Err(_) => self.cert_pem.clone(),
        }
    }

    /// The CA's private key in PEM (store it with owner-only permissions).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Expiry of this CA.
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }

    /// Issues a TLS server certificate for `names` (DNS names or IP addresses); the first name
    /// is also the common name. Expiry is capped at the CA's own.
    pub fn issue_server(&self, names: &[&str], not_after: Timestamp) -> Result<IssuedCertificate> {
        let common_name = names.first().copied().unwrap_or("server");
        let mut params = leaf_params(common_name, not_after.min(self.not_after))?;
        params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign_leaf(params, "server certificate")
    }

    /// Issues a client (identity) certificate whose common name is the device or module
    /// identity, e.g. `dev1` or `dev1/mod1`.
    pub fn issue_client(
        &self,
        common_name: &str,
        not_after: Timestamp,
    ) -> Result<IssuedCertificate> {
        let mut params = leaf_params(common_name, not_after.min(self.not_after))?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_leaf(params, "client certificate")
    }

    fn sign_leaf(
        &self,
        params: CertificateParams,
        what: &'static str,
    ) -> Result<IssuedCertificate> {
        let key = generate_key("certificate key")?;
        let not_after = to_jiff(params.not_after);
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(failed(what))?;
        Ok(IssuedCertificate {
            chain_pem: format!("{}{}", cert.pem(), self.chain_pem()),
            key_pem: key.serialize_pem(),
            not_after,
        })
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)
            .map_err(failed("issuer from CA certificate"))
    }
}

fn failed(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::Generate { what, source }
}

fn generate_key(what: &'static str) -> Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed(what))
}

fn base_params(common_name: &str, not_after: Timestamp) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    // Backdate a little so clients with a slightly slow clock accept a fresh certificate.
    params.not_before = to_time(Timestamp::now() - jiff::SignedDuration::from_mins(5));
    params.not_after = to_time(not_after);
    let mut serial = [0u8; 16];
    rand::rng().fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(params)
}

fn ca_params(common_name: &str, not_after: Timestamp) -> Result<CertificateParams> {
    let mut params = base_params(common_name, not_after)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn leaf_params(common_name: &str, not_after: Timestamp) -> Result<CertificateParams> {
    let mut params = base_params(common_name, not_after)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn san(name: &str) -> Result<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
        });
    if !valid {
        return Err(Error::InvalidName(name.to_owned()));
    }
    name.to_owned()
        .try_into()
        .map(SanType::DnsName)
        .map_err(|_| Error::InvalidName(name.to_owned()))
}

fn last_certificate_pem(chain: &str) -> String {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    chain
        .rfind(BEGIN)
        .map(|i| chain[i..].to_owned())
        .unwrap_or_default()
}

fn to_time(ts: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(ts.as_second())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn to_jiff(t: time::OffsetDateTime) -> Timestamp {
    Timestamp::from_second(t.unix_timestamp()).unwrap_or(Timestamp::UNIX_EPOCH)
}
