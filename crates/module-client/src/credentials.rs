//! Where tokens and trust come from: the workload API (`sign`, `trust-bundle`) under IoT Edge, or
//! the module's own key and a CA file in the connection-string fallback.

use std::path::PathBuf;

use ironedge_protocol::{Identity, SasToken, SymmetricKey, encode_resource, string_to_sign};

use crate::environment::{Authentication, EdgeEnvironment};
use crate::error::{Error, Result};
use crate::workload::WorkloadClient;

/// The CA bundle used when the connection-string mode names no CA file.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Signs the module's SAS tokens and knows which CAs to trust.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// The workload API signs with a key the module never sees.
    Workload {
        /// The API client.
        client: WorkloadClient,
        /// `IOTEDGE_MODULEGENERATIONID`.
        generation_id: String,
    },
    /// The module holds its key.
    Key {
        /// The key.
        key: SymmetricKey,
        /// The CA file to trust.
        ca_file: PathBuf,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Workload { generation_id, .. } => f
                .debug_struct("Workload")
                .field("generation_id", generation_id)
                .finish_non_exhaustive(),
            Self::Key { ca_file, .. } => f
                .debug_struct("Key")
                .field("ca_file", ca_file)
                .finish_non_exhaustive(),
        }
    }
}

impl Credentials {
    /// The credentials `env` describes.
    pub(crate) fn from_environment(env: &EdgeEnvironment) -> Result<Self> {
        Ok(match &env.authentication {
            Authentication::Workload {
                uri,
                api_version,
                generation_id,
            } => Self::Workload {
                client: WorkloadClient::new(uri, api_version)?,
                generation_id: generation_id.clone(),
            },
            Authentication::SharedKey { key, ca_file } => Self::Key {
                key: key.clone(),
                ca_file: ca_file
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE)),
            },
        })
    }

    /// The PEM bundle to trust for the edge hub.
    pub(crate) async fn trust_pem(&self) -> Result<String> {
        match self {
            Self::Workload { client, .. } => Ok(client.trust_bundle().await?),
            Self::Key { ca_file, .. } => {
                tokio::fs::read_to_string(ca_file)
                    .await
                    .map_err(|source| Error::CaFile {
                        path: ca_file.clone(),
                        source,
                    })
            }
        }
    }

    /// A SAS token for `identity` on `hub`, valid until `expiry` (Unix seconds).
    pub(crate) async fn token(
        &self,
        hub: &str,
        identity: &Identity,
        expiry: u64,
    ) -> Result<String> {
        let resource = identity.resource_uri(hub);
        match self {
            Self::Key { key, .. } => Ok(SasToken::build(&resource, key, expiry, None).to_string()),
            Self::Workload {
                client,
                generation_id,
            } => {
                let sr = encode_resource(&resource);
                let module = identity.module_id.as_deref().unwrap_or_default();
                let digest = client
                    .sign(
                        module,
                        generation_id,
                        string_to_sign(&sr, expiry).as_bytes(),
                    )
                    .await?;
                Ok(SasToken::from_signature(&sr, &digest, expiry).to_string())
            }
        }
    }
}
