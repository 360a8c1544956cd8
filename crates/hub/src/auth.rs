//! Who is calling and what they may do: shared access policies with rights, device and module
//! SAS tokens (`reference/iot-hub-protocols.md` §2 and §7 "Edge device's own module CRUD").
//!
//! Pure: callers pass the policies, the identity's keys and the clock.

use std::fmt;

use ironedge_protocol::{SasError, SasToken, SasVerifier, SymmetricKey};
use serde::{Deserialize, Serialize};

use crate::registry::{AuthType, Authentication, DeviceStatus};
use crate::storage::Policy;

/// A permission a shared access policy grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Right {
    /// Read identities and configurations.
    RegistryRead,
    /// Create, update, delete identities and configurations.
    RegistryWrite,
    /// Twins, methods, C2D, telemetry read-out.
    ServiceConnect,
    /// Connect devices over MQTT on their behalf.
    DeviceConnect,
}

impl Right {
    /// Every right (`iothubowner`).
    pub const ALL: [Right; 4] = [
        Self::RegistryRead,
        Self::RegistryWrite,
        Self::ServiceConnect,
        Self::DeviceConnect,
    ];
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A shared access policy.
    Policy {
        /// `skn`.
        name: String,
        /// Its rights.
        rights: Vec<Right>,
    },
    /// A device, with a token signed by its own key.
    Device {
        /// The device.
        device_id: String,
    },
}

impl Principal {
    /// A short label for logs.
    pub fn label(&self) -> String {
        match self {
            Self::Policy { name, .. } => format!("policy:{name}"),
            Self::Device { device_id } => format!("device:{device_id}"),
        }
    }
}

/// What a REST route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement<'a> {
    /// The policy right.
    pub right: Right,
    /// The device a device token may act for (its own modules and identity), if any.
    pub own_device: Option<&'a str>,
}

/// Why authentication or authorisation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials.
    #[error("missing Authorization header with a SharedAccessSignature token")]
    Missing,
    /// The token is malformed, expired, for another resource or wrongly signed.
    #[error("{0}")]
    Token(#[from] SasError),
    /// The policy named in `skn` does not exist.
    #[error("unknown shared access policy {0:?}")]
    UnknownPolicy(String),
    /// The identity does not exist.
    #[error("unknown identity {0:?}")]
    UnknownIdentity(String),
    /// The identity is disabled.
    #[error("identity {0:?} is disabled")]
    Disabled(String),
    /// The identity has no usable keys (e.g. `$edgeAgent` before the runtime set them).
    #[error("identity {0:?} has no symmetric keys")]
    NoKeys(String),
    /// Authenticated, but not allowed to do this.
    #[error("{principal} may not do this (needs {needed:?})")]
    Forbidden {
        /// Who asked.
        principal: String,
        /// The right that was missing.
        needed: Right,
    },
}

impl AuthError {
    /// True when the credentials were fine but the action is not allowed (403 rather than 401).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Forbidden { .. })
    }
}

/// Decoded keys of an identity.
pub struct IdentityKeys(Vec<SymmetricKey>);

impl fmt::Debug for IdentityKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKeys({} keys)", self.0.len())
    }
}

impl IdentityKeys {
    /// Keys of an identity's `authentication` (empty unless `sas`).
    pub fn from_authentication(auth: &Authentication) -> Self {
        if auth.kind != AuthType::Sas {
            return Self(Vec::new());
        }
        Self(
            auth.symmetric_key
                .keys()
                .filter_map(|k| SymmetricKey::from_base64(k).ok())
                .collect(),
        )
    }

    fn of_policy(p: &Policy) -> Self {
        Self(
            [&p.primary_key, &p.secondary_key]
                .into_iter()
                .filter_map(|k| SymmetricKey::from_base64(k).ok())
                .collect(),
        )
    }
}

/// What the caller needs to know about an identity to check its token.
#[derive(Debug)]
pub struct IdentityRecord {
    /// Keys.
    pub keys: IdentityKeys,
    /// Device status (modules follow their device).
    pub status: DeviceStatus,
}

/// Authenticates REST callers and MQTT clients for one hub.
#[derive(Debug, Clone)]
pub struct Authenticator {
    verifier: SasVerifier,
}

impl Authenticator {
    /// Accepts tokens for any of `hub_names` (`host`, `host:port`, aliases), with 5 minutes of skew.
    pub fn new(hub_names: &[String]) -> Self {
        Self {
            verifier: SasVerifier::new(hub_names.iter().cloned()).with_skew(300),
        }
    }

    /// Authenticates a REST `Authorization` header.
    ///
    /// `lookup_device` returns the keys of a device when the token is a device token.
    pub fn authenticate_rest(
        &self,
        header: Option<&str>,
        policies: &[Policy],
        lookup_device: impl FnOnce(&str) -> Option<IdentityRecord>,
        now: u64,
    ) -> Result<Principal, AuthError> {
        let token = SasToken::parse(header.ok_or(AuthError::Missing)?.trim())?;
        if let Some(name) = token.key_name() {
            let policy = policies
                .iter()
                .find(|p| p.key_name.eq_ignore_ascii_case(name))
                .ok_or_else(|| AuthError::UnknownPolicy(name.to_owned()))?;
            let keys = IdentityKeys::of_policy(policy);
            self.verifier.verify(&token, "", &keys.0, now)?;
            return Ok(Principal::Policy {
                name: policy.key_name.clone(),
                rights: policy.rights.clone(),
            });
        }
        let Some(device_id) = device_of_token(&token) else {
            return Err(AuthError::Token(SasError::WrongResource {
                token: token.resource(),
                expected: "{hub}/devices/{deviceId} or a policy token with skn".into(),
            }));
        };
        let record = lookup_device(&device_id)
            .ok_or_else(|| AuthError::UnknownIdentity(device_id.clone()))?;
        if record.keys.0.is_empty() {
            return Err(AuthError::NoKeys(device_id));
        }
        self.verifier
            .verify(&token, &format!("devices/{device_id}"), &record.keys.0, now)?;
        if record.status == DeviceStatus::Disabled {
            return Err(AuthError::Disabled(device_id));
        }
        Ok(Principal::Device { device_id })
    }

    /// Authenticates an MQTT CONNECT password for `resource_path` (`devices/{d}[/modules/{m}]`).
    ///
    /// Policy tokens (`skn`) need `DeviceConnect`; otherwise the identity's own keys sign it.
    /// Returns the token expiry (the connection is dropped then).
    pub fn authenticate_device(
        &self,
        password: &str,
        resource_path: &str,
        identity: Option<IdentityRecord>,
        policies: &[Policy],
        now: u64,
    ) -> Result<u64, AuthError> {
        let token = SasToken::parse(password.trim())?;
        let Some(identity) = identity else {
            return Err(AuthError::UnknownIdentity(resource_path.to_owned()));
        };
        let verified = if let Some(name) = token.key_name() {
            let policy = policies
                .iter()
                .find(|p| p.key_name.eq_ignore_ascii_case(name))
                .ok_or_else(|| AuthError::UnknownPolicy(name.to_owned()))?;
            if !policy.rights.contains(&Right::DeviceConnect) {
                return Err(AuthError::Forbidden {
                    principal: format!("policy:{name}"),
                    needed: Right::DeviceConnect,
                });
            }
            self.verifier.verify(
                &token,
                resource_path,
                &IdentityKeys::of_policy(policy).0,
                now,
            )?
        } else {
            if identity.keys.0.is_empty() {
                return Err(AuthError::NoKeys(resource_path.to_owned()));
            }
            self.verifier
                .verify(&token, resource_path, &identity.keys.0, now)?
        };
        if identity.status == DeviceStatus::Disabled {
            return Err(AuthError::Disabled(resource_path.to_owned()));
        }
        Ok(verified.expiry)
    }
}

/// The device a device token (`sr={hub}/devices/{d}`, no `skn`) speaks for.
pub fn device_of_token(token: &SasToken) -> Option<String> {
    if token.key_name().is_some() {
        return None;
    }
    let resource = token.resource();
    let mut segs = resource.trim_end_matches('/').split('/').skip(1);
    match (segs.next(), segs.next(), segs.next()) {
        (Some(d), Some(id), None) if d.eq_ignore_ascii_case("devices") => {
            Some(ironedge_protocol::decode_component(id).into_owned())
        }
        _ => None,
    }
}

/// Checks that `principal` meets `req`.
pub fn authorize(principal: &Principal, req: Requirement<'_>) -> Result<(), AuthError> {
    let ok = match principal {
        Principal::Policy { rights, .. } => rights.contains(&req.right),
        Principal::Device { device_id } => {
            matches!(req.right, Right::RegistryRead | Right::RegistryWrite)
                && req.own_device.is_some_and(|d| d == device_id)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(AuthError::Forbidden {
            principal: principal.label(),
            needed: req.right,
        })
    }
}

#[cfg(test)]
mod tests {
    use ironedge_protocol::SasToken;

    use super::*;
    use crate::registry::SymmetricKey as Keys;

    const NOW: u64 = 1_700_000_000;

    fn policy(name: &str, rights: &[Right]) -> Policy {
        Policy {
            key_name: name.into(),
            primary_key: SymmetricKey::generate().to_base64(),
            secondary_key: SymmetricKey::generate().to_base64(),
            rights: rights.to_vec(),
        }
    }

    fn auth() -> Authenticator {
        Authenticator::new(&["hub.local".into(), "127.0.0.9:8443".into()])
    }

    fn key(b64: &str) -> SymmetricKey {
        SymmetricKey::from_base64(b64).unwrap()
    }

    fn record(k: &SymmetricKey, status: DeviceStatus) -> IdentityRecord {
        let a = Authentication {
            kind: AuthType::Sas,
            symmetric_key: Keys {
                primary_key: Some(k.to_base64()),
                secondary_key: None,
            },
            ..Authentication::default()
        };
        IdentityRecord {
            keys: IdentityKeys::from_authentication(&a),
            status,
        }
    }

    #[test]
    fn policy_token_for_host_with_port_authenticates_with_its_rights() {
        let p = policy("iothubowner", &Right::ALL);
        let t = SasToken::build(
            "127.0.0.9:8443",
            &key(&p.primary_key),
            NOW + 60,
            Some("iothubowner"),
        );
        let who = auth()
            .authenticate_rest(Some(&t.to_string()), &[p], |_| None, NOW)
            .unwrap();
        assert!(
            authorize(
                &who,
                Requirement {
                    right: Right::RegistryWrite,
                    own_device: None
                }
            )
            .is_ok()
        );
    }

    #[test]
    fn policy_token_for_the_hub_name_on_a_port_picked_at_bind_time_authenticates() {
        let p = policy("iothubowner", &Right::ALL);
        let a = Authenticator::new(&["localhost".into()]);
        for host in ["localhost", "localhost:41234"] {
            let t = SasToken::build(host, &key(&p.primary_key), NOW + 60, Some("iothubowner"));
            let who = a.authenticate_rest(
                Some(&t.to_string()),
                std::slice::from_ref(&p),
                |_| None,
                NOW,
            );
            assert!(who.is_ok(), "{host}: {who:?}");
        }
        let t = SasToken::build("otherhost:41234", &key(&p.primary_key), NOW + 60, None);
        assert!(
            a.authenticate_rest(Some(&t.to_string()), &[p], |_| None, NOW)
                .is_err()
        );
    }

    #[test]
    fn expired_and_wrongly_signed_policy_tokens_are_refused() {
        let p = policy("service", &[Right::ServiceConnect]);
        let expired = SasToken::build(
            "hub.local",
            &key(&p.primary_key),
            NOW - 1000,
            Some("service"),
        );
        assert!(matches!(
            auth().authenticate_rest(
                Some(&expired.to_string()),
                std::slice::from_ref(&p),
                |_| None,
                NOW
            ),
            Err(AuthError::Token(SasError::Expired { .. }))
        ));
        let forged = SasToken::build(
            "hub.local",
            &SymmetricKey::generate(),
            NOW + 60,
            Some("service"),
        );
        assert!(matches!(
            auth().authenticate_rest(
                Some(&forged.to_string()),
                std::slice::from_ref(&p),
                |_| None,
                NOW
            ),
            Err(AuthError::Token(SasError::SignatureMismatch))
        ));
        let good = SasToken::build("hub.local", &key(&p.primary_key), NOW + 60, Some("service"));
        let who = auth()
            .authenticate_rest(Some(&good.to_string()), &[p], |_| None, NOW)
            .unwrap();
        assert!(
            authorize(
                &who,
                Requirement {
                    right: Right::RegistryWrite,
                    own_device: None
                }
            )
            .unwrap_err()
            .is_forbidden()
        );
    }

    #[test]
    fn device_token_may_manage_only_its_own_modules() {
        let k = SymmetricKey::generate();
        let t = SasToken::build("hub.local/devices/edge1", &k, NOW + 60, None);
        let who = auth()
            .authenticate_rest(
                Some(&t.to_string()),
                &[],
                |d| (d == "edge1").then(|| record(&k, DeviceStatus::Enabled)),
                NOW,
            )
            .unwrap();
        assert_eq!(
            who,
            Principal::Device {
                device_id: "edge1".into()
            }
        );
        assert!(
            authorize(
                &who,
                Requirement {
                    right: Right::RegistryWrite,
                    own_device: Some("edge1")
                }
            )
            .is_ok()
        );
        assert!(
            authorize(
                &who,
                Requirement {
                    right: Right::RegistryWrite,
                    own_device: Some("edge2")
                }
            )
            .is_err()
        );
        assert!(
            authorize(
                &who,
                Requirement {
                    right: Right::ServiceConnect,
                    own_device: Some("edge1")
                }
            )
            .is_err()
        );
    }

    #[test]
    fn mqtt_tokens_must_cover_the_connecting_identity() {
        let k = SymmetricKey::generate();
        let t = SasToken::build("hub.local/devices/dev1", &k, NOW + 60, None).to_string();
        let a = auth();
        assert_eq!(
            a.authenticate_device(
                &t,
                "devices/dev1",
                Some(record(&k, DeviceStatus::Enabled)),
                &[],
                NOW
            )
            .unwrap(),
            NOW + 60
        );
        assert!(matches!(
            a.authenticate_device(
                &t,
                "devices/dev2",
                Some(record(&k, DeviceStatus::Enabled)),
                &[],
                NOW
            ),
            Err(AuthError::Token(SasError::WrongResource { .. }))
        ));
        assert!(matches!(
            a.authenticate_device(
                &t,
                "devices/dev1",
                Some(record(&k, DeviceStatus::Disabled)),
                &[],
                NOW
            ),
            Err(AuthError::Disabled(_))
        ));
        let p = policy("device", &[Right::DeviceConnect]);
        let pt = SasToken::build(
            "hub.local/devices",
            &key(&p.primary_key),
            NOW + 60,
            Some("device"),
        )
        .to_string();
        assert!(
            a.authenticate_device(
                &pt,
                "devices/dev1",
                Some(record(&k, DeviceStatus::Enabled)),
                &[p],
                NOW
            )
            .is_ok()
        );
    }
}
