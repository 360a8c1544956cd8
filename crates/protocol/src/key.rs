//! Symmetric keys: base64 strings on the wire, 32 random bytes when we generate them (§2.2).

use crate::error::KeyError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use rand::Rng as _;
use std::fmt;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Length of a generated key, as Azure generates them (a 44-character base64 string).
pub const GENERATED_KEY_LEN: usize = 32;

/// A decoded symmetric key. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SymmetricKey(Vec<u8>);

impl SymmetricKey {
    /// Generates a fresh random 32-byte key.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; GENERATED_KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Decodes a base64 key as found in connection strings and identity JSON.
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD.decode(s.trim()).map_err(|e| KeyError::NotBase64 {
            reason: e.to_string(),
        })?;
        Self::from_bytes(bytes)
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, KeyError> {
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self(bytes))
    }

    /// The key as base64, the form stored and shown to users.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.0)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// HMAC-SHA256 of `data` under this key.
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = hmac_for(&self.0);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// HMAC-SHA256 of `data`, base64-encoded (the workload API `digest`, a SAS `sig`).
    pub fn sign_base64(&self, data: &[u8]) -> String {
        STANDARD.encode(self.sign(data))
    }

    /// DPS group-enrollment derivation: the device key is `HMAC(group key, registration id)`.
    pub fn derive(&self, registration_id: &str) -> Self {
        Self(self.sign(registration_id.as_bytes()).to_vec())
    }
}

fn hmac_for(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this never fails; the fallback keeps the type total.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| HmacSha256::new(&Default::default()))
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SymmetricKey(<{} bytes redacted>)", self.0.len())
    }
}

/// Primary and secondary key of an identity or policy; either one verifies a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPair {
    /// The primary key.
    pub primary: SymmetricKey,
    /// The secondary key, used during key rotation.
    pub secondary: SymmetricKey,
}

impl KeyPair {
    /// Generates two fresh keys.
    pub fn generate() -> Self {
        Self {
            primary: SymmetricKey::generate(),
            secondary: SymmetricKey::generate(),
        }
    }

    /// Both keys, primary first.
    pub fn keys(&self) -> [&SymmetricKey; 2] {
        [&self.primary, &self.secondary]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_keys_are_32_bytes_and_distinct() {
        let a = SymmetricKey::generate();
        let b = SymmetricKey::generate();
        assert_eq!(a.as_bytes().len(), 32);
        assert_eq!(a.to_base64().len(), 44);
        assert_ne!(a, b);
    }

    #[test]
    fn base64_round_trips() {
        let k = SymmetricKey::generate();
        assert_eq!(SymmetricKey::from_base64(&k.to_base64()).unwrap(), k);
    }

    #[test]
    fn non_base64_key_is_rejected_with_reason() {
        assert!(matches!(
            SymmetricKey::from_base64("not base64!"),
            Err(KeyError::NotBase64 { .. })
        ));
        assert_eq!(SymmetricKey::from_base64(""), Err(KeyError::Empty));
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let k = SymmetricKey::from_base64("cHJpbWFyeQ==").unwrap();
        let s = format!("{k:?}");
        assert!(!s.contains("cHJpbWFyeQ") && !s.contains("primary"), "{s}");
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let k = SymmetricKey::from_bytes(b"Jefe".to_vec()).unwrap();
        let mac = k.sign(b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn dps_derivation_matches_the_documented_formula() {
        let group = SymmetricKey::from_base64("cHJpbWFyeQ==").unwrap();
        let derived = group.derive("reg-1");
        assert_eq!(derived.as_bytes(), group.sign(b"reg-1"));
    }
}
