//! Device and module identities: ids, keys, authentication, edge capabilities.
//!
//! Pure: every function takes the current state and the request and returns the new state or a
//! [`RegistryError`]. Shapes follow `reference/iot-hub-protocols.md` §3.3 (models `Device` and
//! `Module` of the service SDKs).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngExt as _;
use serde::{Deserialize, Serialize};

use crate::etag;

/// The edge agent's module id, created automatically on edge devices.
pub const EDGE_AGENT: &str = "$edgeAgent";
/// The edge hub's module id, created automatically on edge devices.
pub const EDGE_HUB: &str = "$edgeHub";
/// `managedBy` of the automatically created system modules.
pub const MANAGED_BY_IOT_EDGE: &str = "iotEdge";
/// Longest device or module id IoT Hub accepts.
pub const MAX_ID_LEN: usize = 128;

/// Why a registry request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    /// The id breaks IoT Hub's id rules.
    #[error("invalid {kind} id {id:?}: {reason}")]
    InvalidId {
        /// `device` or `module`.
        kind: &'static str,
        /// The offending id.
        id: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// The id in the body differs from the one in the path.
    #[error("{kind} id in the body {body:?} does not match the id in the path {path:?}")]
    IdMismatch {
        /// `device` or `module`.
        kind: &'static str,
        /// Id from the URL.
        path: String,
        /// Id from the body.
        body: String,
    },
    /// A symmetric key is not usable.
    #[error("invalid {which} key: {reason}")]
    InvalidKey {
        /// `primary` or `secondary`.
        which: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The authentication section is inconsistent.
    #[error("invalid authentication: {0}")]
    InvalidAuthentication(&'static str),
    /// A create found an existing identity.
    #[error("{kind} {id:?} already exists; send If-Match: \"*\" or its etag to update it")]
    AlreadyExists {
        /// `device` or `module`.
        kind: &'static str,
        /// The existing id.
        id: String,
    },
    /// An update or delete carried an `If-Match` that is not the current etag.
    #[error("etag mismatch: If-Match {given:?} but the current etag is {current:?}")]
    PreconditionFailed {
        /// What the client sent.
        given: String,
        /// The current etag.
        current: String,
    },
    /// The edge runtime's own modules cannot be removed while the device is an edge device.
    #[error("module {0:?} belongs to the IoT Edge runtime and cannot be deleted")]
    SystemModule(String),
}

/// `enabled` / `disabled`: a disabled identity cannot connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// May connect.
    #[default]
    Enabled,
    /// Refused at CONNECT.
    Disabled,
}

/// `authentication.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum AuthType {
    /// Symmetric keys (SAS tokens).
    #[default]
    Sas,
    /// X.509 self-signed certificate, matched by thumbprint.
    SelfSigned,
    /// X.509 certificate chaining to a hub CA.
    CertificateAuthority,
    /// No credentials (the edge system modules until the runtime sets keys).
    None,
}

/// Primary and secondary base64 keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKey {
    /// Primary key (base64).
    pub primary_key: Option<String>,
    /// Secondary key (base64).
    pub secondary_key: Option<String>,
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SymmetricKey")
            .field(
                "primary_key",
                &self.primary_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "secondary_key",
                &self.secondary_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl SymmetricKey {
    /// Both keys, present ones only, primary first.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.primary_key
            .iter()
            .chain(self.secondary_key.iter())
            .map(String::as_str)
    }
}

/// X.509 thumbprints (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509Thumbprint {
    /// Primary thumbprint.
    pub primary_thumbprint: Option<String>,
    /// Secondary thumbprint.
    pub secondary_thumbprint: Option<String>,
}

/// How an identity proves itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// Kind of credential.
    #[serde(rename = "type", default)]
    pub kind: AuthType,
    /// Keys when `kind` is `sas`.
    #[serde(default)]
    pub symmetric_key: SymmetricKey,
    /// Thumbprints when `kind` is `selfSigned`.
    #[serde(default)]
    pub x509_thumbprint: X509Thumbprint,
}

/// `capabilities` of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// The device runs IoT Edge.
    #[serde(default)]
    pub iot_edge: bool,
}

/// A device identity as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Device id.
    pub device_id: String,
    /// Changes when the id is deleted and created again.
    pub generation_id: String,
    /// Quoted-less etag (`MQ==` = base64 of the update counter).
    pub etag: String,
    /// Update counter behind `etag`.
    #[serde(default)]
    pub revision: u64,
    /// Enabled or disabled.
    pub status: DeviceStatus,
    /// Free text about the status.
    pub status_reason: Option<String>,
    /// When `status` last changed.
    pub status_updated_time: String,
    /// Credentials.
    pub authentication: Authentication,
    /// Edge or not.
    pub capabilities: Capabilities,
    /// Scope for nested edge (`ms-azure-iot-edge://…`).
    pub device_scope: Option<String>,
    /// Parent scopes for nested edge.
    #[serde(default)]
    pub parent_scopes: Vec<String>,
}

/// A module identity as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Module {
    /// Device the module belongs to.
    pub device_id: String,
    /// Module id.
    pub module_id: String,
    /// Who manages it (`iotEdge` for the system modules).
    pub managed_by: Option<String>,
    /// Changes when the id is deleted and created again.
    pub generation_id: String,
    /// Etag.
    pub etag: String,
    /// Update counter behind `etag`.
    #[serde(default)]
    pub revision: u64,
    /// Credentials.
    pub authentication: Authentication,
}

/// `PUT /devices/{id}` body: every field optional, unknown fields ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRequest {
    /// Must equal the path id when present.
    pub device_id: Option<String>,
    /// Enabled or disabled.
    pub status: Option<DeviceStatus>,
    /// Free text.
    pub status_reason: Option<String>,
    /// Credentials; keys are generated when absent.
    pub authentication: Option<Authentication>,
    /// Edge capability.
    pub capabilities: Option<Capabilities>,
    /// Nested-edge scope.
    pub device_scope: Option<String>,
    /// Nested-edge parents.
    pub parent_scopes: Option<Vec<String>>,
}

/// `PUT /devices/{id}/modules/{mid}` body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleRequest {
    /// Must equal the path id when present.
    pub module_id: Option<String>,
    /// Must equal the path device id when present.
    pub device_id: Option<String>,
    /// Who manages it.
    pub managed_by: Option<String>,
    /// Credentials; keys are generated when absent.
    pub authentication: Option<Authentication>,
}

/// What an `If-Match` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No header: create only.
    Absent,
    /// `*`: any existing version.
    Any,
    /// A specific etag (quotes removed).
    Etag(String),
}

impl IfMatch {
    /// Parses a header value, quoted (`"MQ=="`) or bare.
    pub fn parse(header: Option<&str>) -> Self {
        match header.map(str::trim) {
            None | Some("") => Self::Absent,
            Some(v) => {
                let v = v.strip_prefix("W/").unwrap_or(v);
                let v = v.trim_matches('"');
                if v == "*" {
                    Self::Any
                } else {
                    Self::Etag(v.to_owned())
                }
            }
        }
    }

    /// Checks an update of something whose current etag is `current`.
    pub fn check(&self, current: &str) -> Result<(), RegistryError> {
        match self {
            Self::Etag(given) if given != current => Err(RegistryError::PreconditionFailed {
                given: given.clone(),
                current: current.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// Checks a device id against IoT Hub's rules (≤128 ASCII letters, digits and `-.+%_#*?!(),:=@$'`).
pub fn validate_device_id(id: &str) -> Result<(), RegistryError> {
    validate_id("device", id)
}

/// Checks a module id (same alphabet as device ids).
pub fn validate_module_id(id: &str) -> Result<(), RegistryError> {
    validate_id("module", id)
}

fn validate_id(kind: &'static str, id: &str) -> Result<(), RegistryError> {
    let err = |reason| RegistryError::InvalidId {
        kind,
        id: id.to_owned(),
        reason,
    };
    if id.is_empty() {
        return Err(err("must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(err("must be at most 128 characters"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-.+%_#*?!(),:=@$'".contains(c);
    if !id.chars().all(allowed) {
        return Err(err(
            "only ASCII letters, digits and -.+%_#*?!(),:=@$' are allowed",
        ));
    }
    Ok(())
}

/// A fresh random 32-byte key, base64 encoded (what Azure generates).
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    B64.encode(bytes)
}

fn new_generation_id() -> String {
    let n: u64 = rand::rng().random();
    format!("{}", n % 1_000_000_000_000_000_000)
}

fn check_key(which: &'static str, key: &str) -> Result<(), RegistryError> {
    let bytes = B64.decode(key).map_err(|_| RegistryError::InvalidKey {
        which,
        reason: "not valid base64",
    })?;
    if !(16..=64).contains(&bytes.len()) {
        return Err(RegistryError::InvalidKey {
            which,
            reason: "must decode to 16 to 64 bytes",
        });
    }
    Ok(())
}

/// Fills in missing keys and validates present ones.
fn complete_authentication(
    given: Option<Authentication>,
    previous: Option<&Authentication>,
) -> Result<Authentication, RegistryError> {
    let mut auth = match (given, previous) {
        (Some(a), _) => a,
        (None, Some(p)) => return Ok(p.clone()),
        (None, None) => Authentication::default(),
    };
    match auth.kind {
        AuthType::Sas => {
            let prev = previous
                .filter(|p| p.kind == AuthType::Sas)
                .map(|p| &p.symmetric_key);
            let keys = &mut auth.symmetric_key;
            if keys.primary_key.as_deref().is_none_or(str::is_empty) {
                keys.primary_key = prev
                    .and_then(|p| p.primary_key.clone())
                    .or_else(|| Some(generate_key()));
            }
            if keys.secondary_key.as_deref().is_none_or(str::is_empty) {
                keys.secondary_key = prev
                    .and_then(|p| p.secondary_key.clone())
                    .or_else(|| Some(generate_key()));
            }
            if let Some(k) = &keys.primary_key {
                check_key("primary", k)?;
            }
            if let Some(k) = &keys.secondary_key {
                check_key("secondary", k)?;
            }
            auth.x509_thumbprint = X509Thumbprint::default();
        }
        AuthType::SelfSigned => {
            if auth.x509_thumbprint.primary_thumbprint.is_none() {
                return Err(RegistryError::InvalidAuthentication(
                    "selfSigned needs x509Thumbprint.primaryThumbprint",
                ));
            }
            auth.symmetric_key = SymmetricKey::default();
        }
        AuthType::CertificateAuthority | AuthType::None => {
            auth.symmetric_key = SymmetricKey::default();
            auth.x509_thumbprint = X509Thumbprint::default();
        }
    }
    Ok(auth)
}

impl Device {
    /// Creates or updates the device `id` from a request, honouring `If-Match`.
    ///
    /// `existing` is the stored device, if any; `now` is the formatted current time.
    pub fn apply_request(
        id: &str,
        req: DeviceRequest,
        existing: Option<&Device>,
        if_match: &IfMatch,
        now: &str,
    ) -> Result<Device, RegistryError> {
        validate_device_id(id)?;
        if let Some(body_id) = req
            .device_id
            .as_deref()
            .filter(|b| !b.is_empty() && *b != id)
        {
            return Err(RegistryError::IdMismatch {
                kind: "device",
                path: id.to_owned(),
                body: body_id.to_owned(),
            });
        }
        match (existing, if_match) {
            (Some(d), IfMatch::Absent) => {
                return Err(RegistryError::AlreadyExists {
                    kind: "device",
                    id: d.device_id.clone(),
                });
            }
            (Some(d), m) => m.check(&d.etag)?,
            (None, _) => {}
        }
        let authentication =
            complete_authentication(req.authentication, existing.map(|d| &d.authentication))?;
        let status = req
            .status
            .or(existing.map(|d| d.status))
            .unwrap_or_default();
        let status_updated_time = match existing {
            Some(d) if d.status == status => d.status_updated_time.clone(),
            Some(_) => now.to_owned(),
            None => crate::time::NEVER.to_owned(),
        };
        let revision = existing.map_or(1, |d| d.revision + 1);
        let capabilities = req
            .capabilities
            .or(existing.map(|d| d.capabilities))
            .unwrap_or_default();
        let device_scope = req
            .device_scope
            .or_else(|| existing.and_then(|d| d.device_scope.clone()))
            .or_else(|| capabilities.iot_edge.then(|| edge_scope(id)));
        Ok(Device {
            device_id: id.to_owned(),
            generation_id: existing.map_or_else(new_generation_id, |d| d.generation_id.clone()),
            etag: etag::identity(revision),
            revision,
            status,
            status_reason: req
                .status_reason
                .or_else(|| existing.and_then(|d| d.status_reason.clone())),
            status_updated_time,
            authentication,
            capabilities,
            device_scope,
            parent_scopes: req
                .parent_scopes
                .or_else(|| existing.map(|d| d.parent_scopes.clone()))
                .unwrap_or_default(),
        })
    }

    /// The module identities IoT Edge needs, when this device is an edge device and they are absent.
    pub fn missing_edge_modules<'a>(&self, existing: impl Fn(&str) -> bool + 'a) -> Vec<Module> {
        if !self.capabilities.iot_edge {
            return Vec::new();
        }
        [EDGE_AGENT, EDGE_HUB]
            .into_iter()
            .filter(|m| !existing(m))
            .map(|m| Module {
                device_id: self.device_id.clone(),
                module_id: m.to_owned(),
                managed_by: Some(MANAGED_BY_IOT_EDGE.to_owned()),
                generation_id: new_generation_id(),
                etag: etag::identity(1),
                revision: 1,
                authentication: Authentication {
                    kind: AuthType::None,
                    ..Authentication::default()
                },
            })
            .collect()
    }
}

fn edge_scope(id: &str) -> String {
    let n: u64 = rand::rng().random();
    format!("ms-azure-iot-edge://{id}-{}", n % 1_000_000_000_000_000)
}

impl Module {
    /// Creates or updates module `module_id` of `device_id` from a request, honouring `If-Match`.
    pub fn apply_request(
        device_id: &str,
        module_id: &str,
        req: ModuleRequest,
        existing: Option<&Module>,
        if_match: &IfMatch,
    ) -> Result<Module, RegistryError> {
        validate_module_id(module_id)?;
        for (kind, path, body) in [
            ("module", module_id, req.module_id.as_deref()),
            ("device", device_id, req.device_id.as_deref()),
        ] {
            if let Some(b) = body.filter(|b| !b.is_empty() && *b != path) {
                return Err(RegistryError::IdMismatch {
                    kind,
                    path: path.to_owned(),
                    body: b.to_owned(),
                });
            }
        }
        match (existing, if_match) {
            (Some(m), IfMatch::Absent) => {
                return Err(RegistryError::AlreadyExists {
                    kind: "module",
                    id: format!("{device_id}/{}", m.module_id),
                });
            }
            (Some(m), im) => im.check(&m.etag)?,
            (None, _) => {}
        }
        let authentication =
            complete_authentication(req.authentication, existing.map(|m| &m.authentication))?;
        let revision = existing.map_or(1, |m| m.revision + 1);
        Ok(Module {
            device_id: device_id.to_owned(),
            module_id: module_id.to_owned(),
            managed_by: req
                .managed_by
                .or_else(|| existing.and_then(|m| m.managed_by.clone())),
            generation_id: existing.map_or_else(new_generation_id, |m| m.generation_id.clone()),
            etag: etag::identity(revision),
            revision,
            authentication,
        })
    }
}

/// Refuses deleting `$edgeAgent`/`$edgeHub` of an edge device.
pub fn check_module_delete(device: &Device, module_id: &str) -> Result<(), RegistryError> {
    if device.capabilities.iot_edge && (module_id == EDGE_AGENT || module_id == EDGE_HUB) {
        return Err(RegistryError::SystemModule(module_id.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_edge() -> DeviceRequest {
        DeviceRequest {
            capabilities: Some(Capabilities { iot_edge: true }),
            ..DeviceRequest::default()
        }
    }

    #[test]
    fn new_device_gets_generated_keys_and_first_etag() {
        let d = Device::apply_request(
            "dev1",
            DeviceRequest::default(),
            None,
            &IfMatch::Absent,
            "t",
        )
        .unwrap();
        assert_eq!(d.etag, "MQ==");
        assert_eq!(d.authentication.kind, AuthType::Sas);
        let keys: Vec<_> = d.authentication.symmetric_key.keys().collect();
        assert_eq!(keys.len(), 2);
        assert_eq!(B64.decode(keys[0]).unwrap().len(), 32);
    }

    #[test]
    fn creating_an_existing_device_without_if_match_conflicts() {
        let d = Device::apply_request(
            "dev1",
            DeviceRequest::default(),
            None,
            &IfMatch::Absent,
            "t",
        )
        .unwrap();
        let err = Device::apply_request(
            "dev1",
            DeviceRequest::default(),
            Some(&d),
            &IfMatch::Absent,
            "t",
        )
        .unwrap_err();
        assert!(matches!(err, RegistryError::AlreadyExists { .. }));
    }

    #[test]
    fn update_with_stale_etag_is_refused_and_with_current_bumps_it() {
        let d = Device::apply_request(
            "dev1",
            DeviceRequest::default(),
            None,
            &IfMatch::Absent,
            "t",
        )
        .unwrap();
        let stale = IfMatch::parse(Some("\"Mg==\""));
        assert!(matches!(
            Device::apply_request("dev1", DeviceRequest::default(), Some(&d), &stale, "t"),
            Err(RegistryError::PreconditionFailed { .. })
        ));
        let ok = Device::apply_request(
            "dev1",
            req_edge(),
            Some(&d),
            &IfMatch::parse(Some("\"MQ==\"")),
            "t",
        )
        .unwrap();
        assert_eq!(ok.etag, "Mg==");
        assert_eq!(ok.generation_id, d.generation_id);
        assert_eq!(
            ok.authentication, d.authentication,
            "keys survive an update without keys"
        );
        assert!(ok.capabilities.iot_edge);
    }

    #[test]
    fn short_or_non_base64_keys_are_rejected() {
        let req = DeviceRequest {
            authentication: Some(Authentication {
                kind: AuthType::Sas,
                symmetric_key: SymmetricKey {
                    primary_key: Some("cHJpbWFyeQ==".into()),
                    secondary_key: Some("!!".into()),
                },
                ..Authentication::default()
            }),
            ..DeviceRequest::default()
        };
        let err = Device::apply_request("d", req, None, &IfMatch::Absent, "t").unwrap_err();
        assert_eq!(
            err,
            RegistryError::InvalidKey {
                which: "primary",
                reason: "must decode to 16 to 64 bytes"
            }
        );
    }

    #[test]
    fn ids_with_slashes_or_spaces_are_rejected() {
        assert!(validate_device_id("a/b").is_err());
        assert!(validate_device_id("a b").is_err());
        assert!(validate_device_id("").is_err());
        assert!(validate_module_id("$edgeAgent").is_ok());
        assert!(validate_device_id(&"x".repeat(129)).is_err());
    }

    #[test]
    fn edge_devices_get_edge_agent_and_edge_hub_without_keys() {
        let d = Device::apply_request("e1", req_edge(), None, &IfMatch::Absent, "t").unwrap();
        let mods = d.missing_edge_modules(|_| false);
        let ids: Vec<_> = mods.iter().map(|m| m.module_id.as_str()).collect();
        assert_eq!(ids, [EDGE_AGENT, EDGE_HUB]);
        assert!(mods.iter().all(|m| m.authentication.kind == AuthType::None));
        assert!(d.missing_edge_modules(|m| m == EDGE_AGENT).len() == 1);
        assert!(
            d.device_scope
                .as_deref()
                .unwrap()
                .starts_with("ms-azure-iot-edge://e1-")
        );
        assert!(check_module_delete(&d, EDGE_HUB).is_err());
    }

    #[test]
    fn if_match_parses_quoted_bare_and_star() {
        assert_eq!(IfMatch::parse(None), IfMatch::Absent);
        assert_eq!(IfMatch::parse(Some("\"*\"")), IfMatch::Any);
        assert_eq!(IfMatch::parse(Some("*")), IfMatch::Any);
        assert_eq!(
            IfMatch::parse(Some("\"AAAAAAAAAAE=\"")),
            IfMatch::Etag("AAAAAAAAAAE=".into())
        );
    }
}
