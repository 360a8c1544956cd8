//! The device-scope identity cache: the keys of every identity this edge hub may authenticate,
//! and sign upstream tokens for.
//!
//! Filled from the cloud registry with the edge device's own credentials (or, for local and
//! offline setups, from an identities file) and written to the store's `IDENTITIES` table, so
//! authentication keeps working with no cloud at all after a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ironedge_protocol::{
    ConnectError, Identity, KeyPair, SasError, SasToken, SasVerifier, SymmetricKey,
    identity_from_connect,
};
use ironedge_store::{CachedIdentity, IdentityCredentials};
use serde::Deserialize;

use crate::client::{ClientKind, ConnectRefused, classify};
use crate::hub::unix_now;
use crate::upstream::TokenSource;

/// Keys per identity; cheap to clone, shared by the broker and the upstream link.
#[derive(Clone, Default)]
pub struct IdentityCache {
    keys: Arc<RwLock<HashMap<Identity, KeyPair>>>,
}

impl std::fmt::Debug for IdentityCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCache")
            .field("identities", &self.len())
            .finish()
    }
}

/// One entry of an identities file (`[{deviceId, moduleId?, primaryKey, secondaryKey?}]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityEntry {
    /// Device id.
    pub device_id: String,
    /// Module id, for modules.
    #[serde(default)]
    pub module_id: Option<String>,
    /// Base64 primary key.
    pub primary_key: String,
    /// Base64 secondary key (defaults to the primary).
    #[serde(default)]
    pub secondary_key: Option<String>,
}

/// Why a CONNECT was refused; each maps to a CONNACK code and an auth-failure metric label.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Client id or username malformed or inconsistent.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The identity may not connect to this hub at all.
    #[error(transparent)]
    Refused(#[from] ConnectRefused),
    /// No password (SAS token) was sent.
    #[error("no SAS token in the CONNECT password")]
    NoToken,
    /// The identity is not in the cache.
    #[error("unknown identity {0}")]
    UnknownIdentity(String),
    /// The token is malformed, expired, for another audience or badly signed.
    #[error(transparent)]
    Sas(#[from] SasError),
}

impl AuthError {
    /// Short label for the `ironedge_edgehub_auth_failures_total{reason}` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Connect(_) => "bad_connect",
            Self::Refused(_) => "not_allowed",
            Self::NoToken => "no_token",
            Self::UnknownIdentity(_) => "unknown_identity",
            Self::Sas(SasError::Expired { .. }) => "token_expired",
            Self::Sas(_) => "bad_token",
        }
    }
}

/// A successfully authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Who.
    pub identity: Identity,
    /// Module or leaf device.
    pub kind: ClientKind,
    /// Token expiry (Unix seconds): the connection is closed then.
    pub expires_at: u64,
    /// Plug and Play model id from the username.
    pub model_id: Option<String>,
}

impl IdentityCache {
    /// Adds or replaces an identity's keys.
    pub fn insert(&self, identity: Identity, keys: KeyPair) {
        if let Ok(mut map) = self.keys.write() {
            map.insert(identity, keys);
        }
    }

    /// Number of identities known.
    pub fn len(&self) -> usize {
        self.keys.read().map_or(0, |m| m.len())
    }

    /// True when no identity is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys of `identity`.
    pub fn keys(&self, identity: &Identity) -> Option<KeyPair> {
        self.keys.read().ok()?.get(identity).cloned()
    }

    /// Adds identities from a file's entries; returns the store records to persist.
    pub fn load_entries(&self, entries: &[IdentityEntry]) -> Result<Vec<CachedIdentity>, String> {
        let mut records = Vec::with_capacity(entries.len());
        for e in entries {
            let primary = SymmetricKey::from_base64(&e.primary_key)
                .map_err(|err| format!("identity {}: primaryKey: {err}", e.device_id))?;
            let secondary = match &e.secondary_key {
                Some(k) => SymmetricKey::from_base64(k)
                    .map_err(|err| format!("identity {}: secondaryKey: {err}", e.device_id))?,
                None => primary.clone(),
            };
            let identity = Identity {
                device_id: e.device_id.clone(),
                module_id: e.module_id.clone(),
            };
            records.push(CachedIdentity {
                device_id: e.device_id.clone(),
                module_id: e.module_id.clone(),
                generation_id: None,
                credentials: IdentityCredentials::SymmetricKey {
                    primary_key: primary.to_base64(),
                    secondary_key: secondary.to_base64(),
                },
                fetched_at: ironedge_store::Timestamp::from_unix_millis(unix_now() * 1000),
            });
            self.insert(identity, KeyPair { primary, secondary });
        }
        Ok(records)
    }

    /// Loads records read back from the store (symmetric-key identities only).
    pub fn load_cached(&self, records: &[CachedIdentity]) {
        for r in records {
            let IdentityCredentials::SymmetricKey {
                primary_key,
                secondary_key,
            } = &r.credentials
            else {
                continue;
            };
            let (Ok(primary), Ok(secondary)) = (
                SymmetricKey::from_base64(primary_key),
                SymmetricKey::from_base64(secondary_key),
            ) else {
                tracing::warn!(device = %r.device_id, "cached identity has unreadable keys; skipped");
                continue;
            };
            let identity = Identity {
                device_id: r.device_id.clone(),
                module_id: r.module_id.clone(),
            };
            self.insert(identity, KeyPair { primary, secondary });
        }
    }

    /// Authenticates an MQTT CONNECT against the cache.
    pub fn authenticate(
        &self,
        edge_device_id: &str,
        verifier: &SasVerifier,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
        now: u64,
    ) -> Result<Authenticated, AuthError> {
        let (identity, username) = identity_from_connect(client_id, username)?;
        let kind = classify(edge_device_id, &identity)?;
        let password = password
            .filter(|p| !p.is_empty())
            .ok_or(AuthError::NoToken)?;
        let token = SasToken::parse(password)?;
        let keys = self
            .keys(&identity)
            .ok_or_else(|| AuthError::UnknownIdentity(identity.to_string()))?;
        let verified = verifier.verify(&token, &identity.resource_path(), keys.keys(), now)?;
        Ok(Authenticated {
            identity,
            kind,
            expires_at: verified.expiry,
            model_id: username.model_id,
        })
    }
}

impl TokenSource for IdentityCache {
    fn token(&self, identity: &Identity, hub_host_name: &str, expiry: u64) -> Option<String> {
        let keys = self.keys(identity)?;
        let token = SasToken::build(
            &identity.resource_uri(hub_host_name),
            &keys.primary,
            expiry,
            None,
        );
        Some(token.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: &str = "myhub.azure-devices.net";

    fn cache_with(identity: &Identity) -> (IdentityCache, KeyPair) {
        let cache = IdentityCache::default();
        let keys = KeyPair::generate();
        cache.insert(identity.clone(), keys.clone());
        (cache, keys)
    }

    fn token(identity: &Identity, key: &SymmetricKey, expiry: u64) -> String {
        SasToken::build(&identity.resource_uri(HUB), key, expiry, None).to_string()
    }

    fn auth(
        cache: &IdentityCache,
        client_id: &str,
        user: &str,
        pw: Option<&str>,
    ) -> Result<Authenticated, AuthError> {
        let verifier = SasVerifier::new([HUB]);
        cache.authenticate("edge", &verifier, client_id, Some(user), pw, 1_000)
    }

    #[test]
    fn a_module_with_a_valid_token_is_authenticated_until_its_expiry() {
        let who = Identity::module("edge", "sensor");
        let (cache, keys) = cache_with(&who);
        let pw = token(&who, &keys.secondary, 5_000);
        let ok = auth(
            &cache,
            "edge/sensor",
            &format!("{HUB}/edge/sensor/?api-version=2021-04-12"),
            Some(&pw),
        )
        .unwrap();
        assert_eq!(ok.identity, who);
        assert_eq!(ok.expires_at, 5_000);
        assert_eq!(ok.kind, ClientKind::Module("sensor".into()));
    }

    #[test]
    fn wrong_expired_missing_and_foreign_tokens_are_refused() {
        let who = Identity::module("edge", "sensor");
        let other = Identity::module("edge", "filter");
        let (cache, keys) = cache_with(&who);
        cache.insert(other.clone(), KeyPair::generate());
        let user = format!("{HUB}/edge/sensor/?api-version=2021-04-12");
        let wrong_key = token(&who, &SymmetricKey::generate(), 5_000);
        assert!(matches!(
            auth(&cache, "edge/sensor", &user, Some(&wrong_key)),
            Err(AuthError::Sas(_))
        ));
        let expired = token(&who, &keys.primary, 999);
        let err = auth(&cache, "edge/sensor", &user, Some(&expired)).unwrap_err();
        assert_eq!(err.metric_label(), "token_expired");
        assert!(matches!(
            auth(&cache, "edge/sensor", &user, None),
            Err(AuthError::NoToken)
        ));
        // A token of the right key but for another module's audience.
        let for_other = token(&other, &keys.primary, 5_000);
        assert!(auth(&cache, "edge/sensor", &user, Some(&for_other)).is_err());
        // Username and client id disagree.
        let pw = token(&who, &keys.primary, 5_000);
        assert!(matches!(
            auth(&cache, "edge/filter", &user, Some(&pw)),
            Err(AuthError::Connect(_))
        ));
    }

    #[test]
    fn unknown_identities_and_the_hub_itself_are_refused() {
        let who = Identity::module("edge", "ghost");
        let cache = IdentityCache::default();
        let pw = token(&who, &SymmetricKey::generate(), 5_000);
        let user = format!("{HUB}/edge/ghost/?api-version=1");
        assert!(matches!(
            auth(&cache, "edge/ghost", &user, Some(&pw)),
            Err(AuthError::UnknownIdentity(_))
        ));
        let user = format!("{HUB}/edge/$edgeHub/?api-version=1");
        assert!(matches!(
            auth(&cache, "edge/$edgeHub", &user, Some(&pw)),
            Err(AuthError::Refused(_))
        ));
    }

    #[test]
    fn upstream_tokens_are_minted_from_cached_keys_and_verify() {
        let who = Identity::module("edge", "sensor");
        let (cache, keys) = cache_with(&who);
        let minted = cache.token(&who, HUB, 9_999).unwrap();
        let parsed = SasToken::parse(&minted).unwrap();
        let ok = SasVerifier::new([HUB])
            .verify(&parsed, &who.resource_path(), keys.keys(), 1)
            .unwrap();
        assert_eq!(ok.expiry, 9_999);
        assert!(
            cache
                .token(&Identity::module("edge", "nobody"), HUB, 1)
                .is_none()
        );
    }

    #[test]
    fn identities_round_trip_through_store_records() {
        let cache = IdentityCache::default();
        let entries = vec![IdentityEntry {
            device_id: "edge".into(),
            module_id: Some("sensor".into()),
            primary_key: SymmetricKey::generate().to_base64(),
            secondary_key: None,
        }];
        let records = cache.load_entries(&entries).unwrap();
        let fresh = IdentityCache::default();
        fresh.load_cached(&records);
        assert_eq!(
            fresh.keys(&Identity::module("edge", "sensor")),
            cache.keys(&Identity::module("edge", "sensor"))
        );
        let bad = vec![IdentityEntry {
            primary_key: "***".into(),
            ..entries[0].clone()
        }];
        assert!(cache.load_entries(&bad).is_err());
    }
}
