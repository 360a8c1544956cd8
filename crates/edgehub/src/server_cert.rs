//! The edge hub's TLS server certificate, reloaded from disk while the hub runs.
//!
//! The agent renews the certificate in a Secret long before it expires and the kubelet swaps the
//! mounted files atomically (a new `..data` directory, then a symlink rename). Every handshake
//! asks [`ServerCertificate`] for the key, so the next connection gets the new certificate while
//! established connections keep the session they negotiated. Files are polled by content, which
//! sees symlink swaps, in-place writes and editors alike. A pair that does not load (unreadable,
//! not PEM, key of another certificate — e.g. half written — or already expired) is refused with
//! a warning and the serving certificate stays; the pair is retried once either file changes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::Metrics;

/// How often the files are read by default.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Why a certificate/key pair could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file holds no usable PEM certificate chain or private key.
    #[error("{path}: {source}")]
    Pem {
        /// File.
        path: PathBuf,
        /// Cause.
        source: ironedge_pki::Error,
    },
    /// rustls refused the pair (the key does not belong to the certificate, or its type is unsupported).
    #[error("{key} does not go with {cert}: {source}")]
    Pair {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// Cause.
        source: rustls::Error,
    },
    /// The certificate has already expired.
    #[error("the certificate in {path} expired at {not_after}")]
    Expired {
        /// Certificate file.
        path: PathBuf,
        /// Its expiry.
        not_after: Timestamp,
    },
    /// The TLS configuration could not be built.
    #[error("building the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A loaded pair and what the logs say about it.
struct Loaded {
    key: Arc<CertifiedKey>,
    serial: String,
    not_after: Timestamp,
}

/// The serving certificate, swapped whole when the files change.
pub struct ServerCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// Contents of the files last tried, so a refused pair is not retried (and logged) every poll.
    last_seen: Mutex<Vec<u8>>,
    /// Set while the files cannot be read, so that is logged once, not every poll.
    read_failing: AtomicBool,
}

impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// What a poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files did not change since the last poll.
    Unchanged,
    /// A new certificate is being served.
    Reloaded {
        /// Serial number (hex).
        serial: String,
        /// Expiry.
        not_after: Timestamp,
    },
}

impl ServerCertificate {
    /// Loads the pair at start; an error here means the hub cannot serve TLS at all.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CertificateError> {
        let contents = read_pair(cert, key)?;
        let loaded = load_pair(cert, key, &contents)?;
        tracing::info!(
            cert = %cert.display(),
            serial = %loaded.serial,
            not_after = %loaded.not_after,
            "loaded the server certificate"
        );
        Ok(Self {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            current: RwLock::new(loaded.key),
            last_seen: Mutex::new(contents.joined()),
            read_failing: AtomicBool::new(false),
        })
    }

    /// A server configuration (TLS 1.3 and 1.2, ring, no client certificates) that asks this
    /// certificate for the key on every handshake.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, CertificateError> {
        let config = ServerConfig::builder_with_provider(ironedge_pki::crypto_provider())
            .with_protocol_versions(ironedge_pki::PROTOCOL_VERSIONS)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(Arc::new(config))
    }

    /// The chain currently served, leaf first.
    pub fn current_chain(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.current().cert.clone()
    }

    /// Reads the files and, if they changed, serves the new pair; a refused pair leaves the
    /// serving certificate in place and is not retried until the files change again.
    pub fn reload_if_changed(&self) -> Result<ReloadOutcome, CertificateError> {
        let contents = read_pair(&self.cert_path, &self.key_path)?;
        let joined = contents.joined();
        {
            let mut seen = self
                .last_seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *seen == joined {
                return Ok(ReloadOutcome::Unchanged);
            }
            *seen = joined;
        }
        let loaded = load_pair(&self.cert_path, &self.key_path, &contents)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded.key;
        Ok(ReloadOutcome::Reloaded {
            serial: loaded.serial,
            not_after: loaded.not_after,
        })
    }

    /// Polls the files every `interval` until dropped, logging and counting each reload and
    /// each refused pair in `metrics`.
    pub fn watch(
        self: Arc<Self>,
        metrics: &Metrics,
        interval: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        let counters = WatchMetrics {
            reloads: metrics.server_cert_reloads.clone(),
            failures: metrics.server_cert_reload_failures.clone(),
            expiry: metrics.server_cert_expiry.clone(),
        };
        if let Ok((_, not_after)) = describe(&self.current()) {
            counters.expiry.set(not_after.as_second());
        }
        async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                self.poll_once(&counters);
            }
        }
    }

    fn poll_once(&self, counters: &WatchMetrics) {
        let outcome = self.reload_if_changed();
        if !matches!(outcome, Err(CertificateError::Read { .. })) {
            self.read_failing.store(false, Ordering::Relaxed);
        }
        match outcome {
            Ok(ReloadOutcome::Unchanged) => {}
            Ok(ReloadOutcome::Reloaded { serial, not_after }) => {
                counters.reloads.inc();
                counters.expiry.set(not_after.as_second());
                tracing::info!(
                    cert = %self.cert_path.display(),
                    %serial,
                    %not_after,
                    "reloaded the server certificate; new connections get it"
                );
            }
            // Not a new pair yet (e.g. mid-swap): read again next poll, warning once per outage.
            Err(e @ CertificateError::Read { .. }) => {
                if !self.read_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot read the server certificate files; still serving the current certificate");
                }
            }
            Err(e) => {
                counters.failures.inc();
                tracing::warn!(
                    error = %e,
                    "refused the new server certificate files; still serving the previous certificate (fix the files or the Secret)"
                );
            }
        }
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Counters the watch loop updates.
struct WatchMetrics {
    reloads: Counter,
    failures: Counter,
    expiry: Gauge,
}

/// The two files' bytes, read one after the other.
struct PairContents {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl PairContents {
    fn joined(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.cert.len() + self.key.len() + 8);
        all.extend_from_slice(&(self.cert.len() as u64).to_le_bytes());
        all.extend_from_slice(&self.cert);
        all.extend_from_slice(&self.key);
        all
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<PairContents, CertificateError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertificateError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    Ok(PairContents {
        cert: read(cert)?,
        key: read(key)?,
    })
}

fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    contents: &PairContents,
) -> Result<Loaded, CertificateError> {
    let pem_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CertificateError::Pem { path, source }
    };
    let cert_pem = String::from_utf8_lossy(&contents.cert);
    let key_pem = String::from_utf8_lossy(&contents.key);
    let chain = ironedge_pki::certificates_from_pem(&cert_pem, "server certificate")
        .map_err(pem_error(cert_path))?;
    let key =
        ironedge_pki::private_key_from_pem(&key_pem, "server key").map_err(pem_error(key_path))?;
    let certified =
        CertifiedKey::from_der(chain, key, &ironedge_pki::crypto_provider()).map_err(|source| {
            CertificateError::Pair {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
                source,
            }
        })?;
    let (serial, not_after) = describe(&certified).map_err(pem_error(cert_path))?;
    if not_after < Timestamp::now() {
        return Err(CertificateError::Expired {
            path: cert_path.to_path_buf(),
            not_after,
        });
    }
    Ok(Loaded {
        key: Arc::new(certified),
        serial,
        not_after,
    })
}

/// Serial (hex, colon-separated) and expiry of the leaf.
fn describe(key: &CertifiedKey) -> Result<(String, Timestamp), ironedge_pki::Error> {
    let leaf = key
        .cert
        .first()
        .ok_or(ironedge_pki::Error::X509("empty chain".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| ironedge_pki::Error::X509(e.to_string()))?;
    let not_after = Timestamp::from_second(cert.validity().not_after.timestamp())
        .map_err(|e| ironedge_pki::Error::X509(e.to_string()))?;
    Ok((cert.raw_serial_as_string(), not_after))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use jiff::SignedDuration;

    fn issue(ca: &ironedge_pki::CertificateAuthority) -> ironedge_pki::IssuedCertificate {
        ca.issue_server(
            &["edgehub"],
            Timestamp::now() + SignedDuration::from_hours(1),
        )
        .unwrap()
    }

    fn write(dir: &Path, issued: &ironedge_pki::IssuedCertificate) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, &issued.chain_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        (cert, key)
    }

    fn ca() -> ironedge_pki::CertificateAuthority {
        ironedge_pki::CertificateAuthority::new_root(
            "test CA",
            Timestamp::now() + SignedDuration::from_hours(2),
        )
        .unwrap()
    }

    fn leaf(pem: &str) -> Vec<u8> {
        ironedge_pki::certificates_from_pem(pem, "test").unwrap()[0].to_vec()
    }

    #[test]
    fn unchanged_files_are_not_reloaded_and_a_new_pair_is() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let a = issue(&ca);
        let (cert, key) = write(dir.path(), &a);
        let served = ServerCertificate::load(&cert, &key).unwrap();
        assert_eq!(
            served.reload_if_changed().unwrap(),
            ReloadOutcome::Unchanged
        );
        let b = issue(&ca);
        write(dir.path(), &b);
        assert!(matches!(
            served.reload_if_changed().unwrap(),
            ReloadOutcome::Reloaded { .. }
        ));
        assert_eq!(served.current_chain()[0].to_vec(), leaf(&b.chain_pem));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_until_the_pair_matches() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let a = issue(&ca);
        let (cert, key) = write(dir.path(), &a);
        let served = ServerCertificate::load(&cert, &key).unwrap();
        let b = issue(&ca);
        // Half written: the new certificate beside the old key.
        std::fs::write(&cert, &b.chain_pem).unwrap();
        let err = served.reload_if_changed().unwrap_err();
        assert!(matches!(err, CertificateError::Pair { .. }), "{err}");
        assert_eq!(served.current_chain()[0].to_vec(), leaf(&a.chain_pem));
        // Refused once, not again until the files change.
        assert_eq!(
            served.reload_if_changed().unwrap(),
            ReloadOutcome::Unchanged
        );
        std::fs::write(&key, &b.key_pem).unwrap();
        assert!(matches!(
            served.reload_if_changed().unwrap(),
            ReloadOutcome::Reloaded { .. }
        ));
        assert_eq!(served.current_chain()[0].to_vec(), leaf(&b.chain_pem));
    }

    #[test]
    fn garbage_and_expired_certificates_are_refused_and_the_old_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let a = issue(&ca);
        let (cert, key) = write(dir.path(), &a);
        let served = ServerCertificate::load(&cert, &key).unwrap();
        std::fs::write(&cert, "not a certificate").unwrap();
        let err = served.reload_if_changed().unwrap_err();
        assert!(matches!(err, CertificateError::Pem { .. }), "{err}");
        assert!(err.to_string().contains("tls.crt"), "{err}");
        let expired = ca
            .issue_server(
                &["edgehub"],
                Timestamp::now() - SignedDuration::from_mins(1),
            )
            .unwrap();
        write(dir.path(), &expired);
        let err = served.reload_if_changed().unwrap_err();
        assert!(matches!(err, CertificateError::Expired { .. }), "{err}");
        assert_eq!(served.current_chain()[0].to_vec(), leaf(&a.chain_pem));
    }
}
