//! The edge hub's durable state besides messages: twin cache, identity cache for offline
//! authentication, reported-property patches waiting for upstream, upstream checkpoints.
//! `iotedge-runtime.md` §3.2 and §3.9 describe what the edge hub keeps and why.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::kv::{KvQueue, KvTable};

/// Twin cache: identity (`device` or `device/module`) → last twin seen from the cloud.
pub const TWINS: KvTable<CachedTwin> = KvTable::new("twins");

/// Identity cache for offline authentication: identity → credentials from the cloud registry.
pub const IDENTITIES: KvTable<CachedIdentity> = KvTable::new("identities");

/// Reported-property patches acknowledged locally and not yet synced upstream, in arrival order.
pub const REPORTED_PATCHES: KvQueue<PendingReportedPatch> = KvQueue::new("reported_patches");

/// Upstream positions by name (for example the last desired-properties version per identity).
pub const UPSTREAM_CHECKPOINTS: KvTable<u64> = KvTable::new("upstream_checkpoints");

/// A cached twin document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedTwin {
    /// When the twin was fetched from (or last merged with) the cloud.
    pub fetched_at: Timestamp,
    /// The twin as IoT Hub returns it (`desired`, `reported`, with `$version`s).
    pub twin: serde_json::Value,
}

/// A cached device or module identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedIdentity {
    /// The device id.
    pub device_id: String,
    /// The module id, for module identities.
    pub module_id: Option<String>,
    /// The registry's generation id, which changes when an identity is deleted and recreated.
    pub generation_id: Option<String>,
    /// How the identity authenticates.
    pub credentials: IdentityCredentials,
    /// When the registry was last read for this identity.
    pub fetched_at: Timestamp,
}

/// How an identity authenticates.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum IdentityCredentials {
    /// SAS tokens signed with either key.
    #[serde(rename_all = "camelCase")]
    SymmetricKey {
        /// The primary key (base64).
        primary_key: String,
        /// The secondary key (base64).
        secondary_key: String,
    },
    /// A self-signed X.509 certificate with one of these thumbprints.
    #[serde(rename_all = "camelCase")]
    X509Thumbprint {
        /// The primary thumbprint.
        primary: String,
        /// The secondary thumbprint.
        secondary: String,
    },
    /// An X.509 certificate chained to a registered CA.
    X509Ca,
    /// No credentials (the identity cannot connect).
    None,
}

impl fmt::Debug for IdentityCredentials {
    // Keys are secrets: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityCredentials::SymmetricKey { .. } => f.write_str("SymmetricKey(<redacted>)"),
            IdentityCredentials::X509Thumbprint { primary, secondary } => f
                .debug_struct("X509Thumbprint")
                .field("primary", primary)
                .field("secondary", secondary)
                .finish(),
            IdentityCredentials::X509Ca => f.write_str("X509Ca"),
            IdentityCredentials::None => f.write_str("None"),
        }
    }
}

/// A reported-properties patch waiting to be sent upstream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingReportedPatch {
    /// Whose twin (`device` or `device/module`).
    pub identity: String,
    /// The patch as the module sent it.
    pub patch: serde_json::Value,
    /// When the edge hub accepted it.
    pub received_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_keys_are_redacted_in_debug_output() {
        let credentials = IdentityCredentials::SymmetricKey {
            primary_key: "c2VjcmV0LXByaW1hcnk=".into(),
            secondary_key: "c2VjcmV0LXNlY29uZGFyeQ==".into(),
        };
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
    }
}
