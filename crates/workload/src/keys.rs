//! Module symmetric keys, behind a [`KeyStore`] so the agent can keep them in Kubernetes Secrets.
//!
//! Keys never leave the store: callers get an HMAC-SHA256 digest, the way the IoT Edge security
//! daemon answers `sign`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Which of a module's two keys to sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyId {
    /// The primary key (what the SDKs ask for).
    Primary,
    /// The secondary key.
    Secondary,
}

impl KeyId {
    /// Parses the `keyId` of a sign request; absent means primary.
    pub fn parse(value: Option<&str>) -> Result<Self, KeyError> {
        match value {
            None => Ok(Self::Primary),
            Some(v) if v.eq_ignore_ascii_case("primary") => Ok(Self::Primary),
            Some(v) if v.eq_ignore_ascii_case("secondary") => Ok(Self::Secondary),
            Some(v) => Err(KeyError::UnknownKeyId(v.to_owned())),
        }
    }
}

/// Why signing failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    /// No keys for this module.
    #[error("no keys for module {module:?}")]
    UnknownModule {
        /// Module id.
        module: String,
    },
    /// The module exists but with another generation id (it was deleted and re-created).
    #[error("module {module:?} has generation {actual:?}, not {requested:?}")]
    GenerationMismatch {
        /// Module id.
        module: String,
        /// Generation id in the request.
        requested: String,
        /// Generation id of the stored identity.
        actual: String,
    },
    /// `keyId` other than primary/secondary.
    #[error("unknown keyId {0:?}; use \"primary\" or \"secondary\"")]
    UnknownKeyId(String),
    /// `algo` other than HMACSHA256.
    #[error("unsupported algo {0:?}; only HMACSHA256 is supported")]
    UnsupportedAlgorithm(String),
    /// The key backend failed (for example the API server is unreachable).
    #[error("key store: {0}")]
    Backend(String),
}

/// Signs data with a module's symmetric key.
pub trait KeyStore: Send + Sync + 'static {
    /// HMAC-SHA256 of `data` with the module's key `key_id`; checks the generation id.
    fn sign<'a>(
        &'a self,
        module_id: &'a str,
        generation_id: &'a str,
        key_id: KeyId,
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, KeyError>>;
}

/// HMAC-SHA256, the digest every IoT Hub SAS signature uses.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// A module's two keys and the generation they belong to.
#[derive(Clone, PartialEq, Eq)]
pub struct ModuleKeys {
    generation_id: Option<String>,
    primary: Vec<u8>,
    secondary: Vec<u8>,
}

impl ModuleKeys {
    /// Keys for one generation of a module; `None` accepts any generation id.
    pub fn new(generation_id: Option<String>, primary: Vec<u8>, secondary: Vec<u8>) -> Self {
        Self {
            generation_id,
            primary,
            secondary,
        }
    }

    fn key(&self, id: KeyId) -> &[u8] {
        match id {
            KeyId::Primary => &self.primary,
            KeyId::Secondary => &self.secondary,
        }
    }
}

impl fmt::Debug for ModuleKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleKeys")
            .field("generation_id", &self.generation_id)
            .field("primary", &"<redacted>")
            .field("secondary", &"<redacted>")
            .finish()
    }
}

/// Keys held in memory (tests, local runs, or a cache the agent fills from Secrets).
#[derive(Debug, Default, Clone)]
pub struct MemoryKeyStore {
    modules: Arc<RwLock<HashMap<String, ModuleKeys>>>,
}

impl MemoryKeyStore {
    /// Adds or replaces a module's keys.
    pub fn insert(&self, module_id: &str, keys: ModuleKeys) {
        if let Ok(mut map) = self.modules.write() {
            map.insert(module_id.to_owned(), keys);
        }
    }

    /// Forgets a module's keys.
    pub fn remove(&self, module_id: &str) {
        if let Ok(mut map) = self.modules.write() {
            map.remove(module_id);
        }
    }

    fn sign_now(
        &self,
        module_id: &str,
        generation_id: &str,
        key_id: KeyId,
        data: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let map = self
            .modules
            .read()
            .map_err(|_| KeyError::Backend("key map lock poisoned".into()))?;
        let keys = map.get(module_id).ok_or_else(|| KeyError::UnknownModule {
            module: module_id.to_owned(),
        })?;
        if let Some(actual) = &keys.generation_id
            && actual != generation_id
        {
            return Err(KeyError::GenerationMismatch {
                module: module_id.to_owned(),
                requested: generation_id.to_owned(),
                actual: actual.clone(),
            });
        }
        Ok(hmac_sha256(keys.key(key_id), data))
    }
}

impl KeyStore for MemoryKeyStore {
    fn sign<'a>(
        &'a self,
        module_id: &'a str,
        generation_id: &'a str,
        key_id: KeyId,
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, KeyError>> {
        let result = self.sign_now(module_id, generation_id, key_id, data);
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let digest = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[tokio::test]
    async fn wrong_generation_and_unknown_module_are_refused() {
        let store = MemoryKeyStore::default();
        store.insert("m", ModuleKeys::new(Some("g1".into()), vec![1], vec![2]));
        assert!(store.sign("m", "g1", KeyId::Primary, b"x").await.is_ok());
        assert!(matches!(
            store.sign("m", "g2", KeyId::Primary, b"x").await,
            Err(KeyError::GenerationMismatch { .. })
        ));
        assert!(matches!(
            store.sign("n", "g1", KeyId::Primary, b"x").await,
            Err(KeyError::UnknownModule { .. })
        ));
    }

    #[tokio::test]
    async fn primary_and_secondary_keys_give_different_digests() {
        let store = MemoryKeyStore::default();
        store.insert("m", ModuleKeys::new(None, vec![1], vec![2]));
        let a = store.sign("m", "any", KeyId::Primary, b"x").await.unwrap();
        let b = store
            .sign("m", "any", KeyId::Secondary, b"x")
            .await
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(a, hmac_sha256(&[1], b"x"));
    }

    #[test]
    fn debug_output_redacts_keys() {
        let keys = ModuleKeys::new(None, b"secret".to_vec(), b"secret".to_vec());
        assert!(!format!("{keys:?}").contains("115"));
    }
}
