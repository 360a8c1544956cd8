//! Workload API core: what a module calls to sign its SAS tokens and get certificates.
//!
//! This is the IoT Edge security-daemon contract (`reference/iotedge-runtime.md` §5) that the Azure IoT
//! SDKs' `create_from_edge_environment()` / `ModuleClient.fromEnvironment()` use, served over a unix
//! socket or plain HTTP:
//!
//! | route | answer |
//! |---|---|
//! | `GET /trust-bundle` | 200 `{certificate}`: the PEM bundle modules trust for the edge hub |
//! | `GET /manifest-trust-bundle` | 200 `{certificate}` |
//! | `POST /modules/{m}/genid/{g}/sign` | 200 `{digest}`: HMAC-SHA256 of `data` with the module key |
//! | `POST /modules/{m}/genid/{g}/certificate/server` | 201 `{privateKey, certificate, expiration}` |
//! | `POST /modules/{m}/certificate/identity` (also under `genid/{g}`) | 201, same shape |
//!
//! Every route wants an `api-version` query parameter of at least `2018-06-28`. Module routes first
//! ask a [`CallerAuth`] whether the caller may act as `{m}`; a refusal is a bare 403 (the reason is
//! logged, never returned). Keys and certificates come from a [`KeyStore`] and a
//! [`CertificateIssuer`], so the agent plugs in its Kubernetes Secrets and edge CA, and tests plug in
//! memory.
//!
//! ```
//! use std::sync::Arc;
//! use ironedge_workload::{AnyLocalCaller, MemoryKeyStore, ModuleKeys, StaticTrustBundle, Workload};
//!
//! let keys = MemoryKeyStore::default();
//! keys.insert("sensor", ModuleKeys::new(Some("gen1".into()), vec![7; 32], vec![8; 32]));
//! let workload = Workload::new(
//!     Arc::new(keys),
//!     Arc::new(StaticTrustBundle::new("-----BEGIN CERTIFICATE-----\n...")),
//!     Arc::new(AnyLocalCaller),
//! );
//! let _app: axum::Router = ironedge_workload::router(workload);
//! ```

mod api_version;
mod caller;
mod certs;
mod error;
mod keys;
mod listener;
mod routes;

pub use api_version::{ApiVersion, MIN_API_VERSION};
pub use caller::{AnyLocalCaller, Caller, CallerAuth, CallerPeer, Denied, SocketForModule};
pub use certs::{
    CertError, CertKind, CertificateIssuer, CertificateRequest, IssuedCertificate,
    StaticTrustBundle,
};
pub use error::{Error, Result};
pub use keys::{KeyError, KeyId, KeyStore, MemoryKeyStore, ModuleKeys, hmac_sha256};
pub use listener::{WorkloadListener, serve};
pub use routes::router;

use std::sync::Arc;

/// The services the workload routes call; cheap to clone.
#[derive(Clone)]
pub struct Workload {
    /// Module symmetric keys (sign).
    pub keys: Arc<dyn KeyStore>,
    /// The edge CA (trust bundle, server and identity certificates).
    pub certs: Arc<dyn CertificateIssuer>,
    /// Decides whether a caller may act as the module named in the path.
    pub auth: Arc<dyn CallerAuth>,
}

impl Workload {
    /// Bundles the three services.
    pub fn new(
        keys: Arc<dyn KeyStore>,
        certs: Arc<dyn CertificateIssuer>,
        auth: Arc<dyn CallerAuth>,
    ) -> Self {
        Self { keys, certs, auth }
    }
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload").finish_non_exhaustive()
    }
}
