//! IoT Hub connection strings: `Key=Value` pairs separated by `;`.
//!
//! Device: `HostName=h;DeviceId=d;SharedAccessKey=k[;GatewayHostName=g]`;
//! module: the same plus `ModuleId=m`; service/policy:
//! `HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=k`. `x509=true` replaces the key
//! for certificate-authenticated devices, and `SharedAccessSignature=...` carries a ready token.

use crate::error::ConnectionStringError;
use crate::key::SymmetricKey;
use std::fmt;
use std::str::FromStr;

/// What a connection string authenticates as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionStringKind {
    /// A device identity.
    Device,
    /// A module identity.
    Module,
    /// A shared access policy (service side).
    Policy,
}

/// How a connection string authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `SharedAccessKey`.
    Key(SymmetricKey),
    /// `SharedAccessSignature`: a pre-made token.
    Token(String),
    /// `x509=true`: a client certificate, no secret in the string.
    X509,
}

/// A parsed connection string. `Debug` redacts the secret; `Display` writes it out in full.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `HostName`: the IoT hub name used in usernames and SAS audiences.
    pub host_name: String,
    /// `DeviceId`, for device and module strings.
    pub device_id: Option<String>,
    /// `ModuleId`, for module strings.
    pub module_id: Option<String>,
    /// `SharedAccessKeyName`, for policy strings.
    pub key_name: Option<String>,
    /// The secret.
    pub credential: Credential,
    /// `GatewayHostName`: where TCP/TLS goes instead of `HostName` (edge gateway or local hub).
    pub gateway_host_name: Option<String>,
}

impl ConnectionString {
    /// A device connection string with a key.
    pub fn device(host: &str, device_id: &str, key: SymmetricKey) -> Self {
        Self {
            host_name: host.to_owned(),
            device_id: Some(device_id.to_owned()),
            module_id: None,
            key_name: None,
            credential: Credential::Key(key),
            gateway_host_name: None,
        }
    }

    /// A module connection string with a key.
    pub fn module(host: &str, device_id: &str, module_id: &str, key: SymmetricKey) -> Self {
        Self {
            module_id: Some(module_id.to_owned()),
            ..Self::device(host, device_id, key)
        }
    }

    /// A shared access policy connection string.
    pub fn policy(host: &str, key_name: &str, key: SymmetricKey) -> Self {
        Self {
            host_name: host.to_owned(),
            device_id: None,
            module_id: None,
            key_name: Some(key_name.to_owned()),
            credential: Credential::Key(key),
            gateway_host_name: None,
        }
    }

    /// Adds `GatewayHostName`.
    pub fn with_gateway(mut self, gateway: &str) -> Self {
        self.gateway_host_name = Some(gateway.to_owned());
        self
    }

    /// Device, module or policy.
    pub fn kind(&self) -> ConnectionStringKind {
        match (&self.device_id, &self.module_id) {
            (Some(_), Some(_)) => ConnectionStringKind::Module,
            (Some(_), None) => ConnectionStringKind::Device,
            _ => ConnectionStringKind::Policy,
        }
    }

    /// The key, when the string has one.
    pub fn key(&self) -> Option<&SymmetricKey> {
        match &self.credential {
            Credential::Key(k) => Some(k),
            _ => None,
        }
    }

    /// The SAS resource URI: `{host}/devices/{d}[/modules/{m}]`, or `{host}` for a policy.
    pub fn resource_uri(&self) -> String {
        match (&self.device_id, &self.module_id) {
            (Some(d), Some(m)) => format!("{}/devices/{d}/modules/{m}", self.host_name),
            (Some(d), None) => format!("{}/devices/{d}", self.host_name),
            _ => self.host_name.clone(),
        }
    }

    /// Where to open the TCP/TLS connection: the gateway if set, else the hub.
    pub fn connect_host(&self) -> &str {
        self.gateway_host_name.as_deref().unwrap_or(&self.host_name)
    }

    /// Parses a connection string; keys are case-sensitive as in the SDKs.
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let mut fields = Fields::default();
        for part in s.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| ConnectionStringError::MalformedPart(part.to_owned()))?;
            fields.set(k.trim(), v.trim())?;
        }
        fields.into_connection_string()
    }
}

#[derive(Default)]
struct Fields<'a> {
    host: Option<&'a str>,
    device: Option<&'a str>,
    module: Option<&'a str>,
    key_name: Option<&'a str>,
    key: Option<&'a str>,
    token: Option<&'a str>,
    gateway: Option<&'a str>,
    x509: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn set(&mut self, k: &str, v: &'a str) -> Result<(), ConnectionStringError> {
        let slot = match k {
            "HostName" => &mut self.host,
            "DeviceId" => &mut self.device,
            "ModuleId" => &mut self.module,
            "SharedAccessKeyName" => &mut self.key_name,
            "SharedAccessKey" => &mut self.key,
            "SharedAccessSignature" => &mut self.token,
            "GatewayHostName" => &mut self.gateway,
            "x509" => &mut self.x509,
            _ => return Err(ConnectionStringError::UnknownKey(k.to_owned())),
        };
        if slot.replace(v).is_some() {
            return Err(ConnectionStringError::DuplicateKey(k.to_owned()));
        }
        Ok(())
    }

    fn into_connection_string(self) -> Result<ConnectionString, ConnectionStringError> {
        let host = self
            .host
            .filter(|h| !h.is_empty())
            .ok_or(ConnectionStringError::MissingKey("HostName"))?;
        if self.module.is_some() && self.device.is_none() {
            return Err(ConnectionStringError::ModuleWithoutDevice);
        }
        if self.device.is_some() && self.key_name.is_some() {
            return Err(ConnectionStringError::Conflicting(
                "DeviceId",
                "SharedAccessKeyName",
            ));
        }
        if self.device.is_none() && self.key_name.is_none() {
            return Err(ConnectionStringError::MissingKey(
                "DeviceId or SharedAccessKeyName",
            ));
        }
        let x509 = self.x509.is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let credential = match (self.key, self.token, x509) {
            (Some(k), None, false) => Credential::Key(SymmetricKey::from_base64(k)?),
            (None, Some(t), false) => Credential::Token(t.to_owned()),
            (None, None, true) => Credential::X509,
            (None, None, false) => {
                return Err(ConnectionStringError::MissingKey(
                    "SharedAccessKey, SharedAccessSignature or x509=true",
                ));
            }
            (Some(_), Some(_), _) => {
                return Err(ConnectionStringError::Conflicting(
                    "SharedAccessKey",
                    "SharedAccessSignature",
                ));
            }
            (Some(_), None, true) | (None, Some(_), true) => {
                return Err(ConnectionStringError::Conflicting(
                    "x509=true",
                    "a shared access secret",
                ));
            }
        };
        Ok(ConnectionString {
            host_name: host.to_owned(),
            device_id: self.device.map(str::to_owned),
            module_id: self.module.map(str::to_owned),
            key_name: self.key_name.map(str::to_owned),
            credential,
            gateway_host_name: self.gateway.map(str::to_owned),
        })
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName={}", self.host_name)?;
        if let Some(d) = &self.device_id {
            write!(f, ";DeviceId={d}")?;
        }
        if let Some(m) = &self.module_id {
            write!(f, ";ModuleId={m}")?;
        }
        if let Some(n) = &self.key_name {
            write!(f, ";SharedAccessKeyName={n}")?;
        }
        match &self.credential {
            Credential::Key(k) => write!(f, ";SharedAccessKey={}", k.to_base64())?,
            Credential::Token(t) => write!(f, ";SharedAccessSignature={t}")?,
            Credential::X509 => write!(f, ";x509=true")?,
        }
        if let Some(g) = &self.gateway_host_name {
            write!(f, ";GatewayHostName={g}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Key(_) => f.write_str("Key(<redacted>)"),
            Credential::Token(_) => f.write_str("Token(<redacted>)"),
            Credential::X509 => f.write_str("X509"),
        }
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("device_id", &self.device_id)
            .field("module_id", &self.module_id)
            .field("key_name", &self.key_name)
            .field("credential", &self.credential)
            .field("gateway_host_name", &self.gateway_host_name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "cHJpbWFyeWtleXByaW1hcnlrZXlwcmltYXJ5a2V5MTI=";

    #[test]
    fn device_string_with_gateway_parses() {
        let cs = ConnectionString::parse(&format!(
            "HostName=myhub.azure-devices.net;DeviceId=dev2;SharedAccessKey={KEY};GatewayHostName=localhost"
        ))
        .unwrap();
        assert_eq!(cs.kind(), ConnectionStringKind::Device);
        assert_eq!(cs.resource_uri(), "myhub.azure-devices.net/devices/dev2");
        assert_eq!(cs.connect_host(), "localhost");
        assert_eq!(cs.key().unwrap().to_base64(), KEY);
    }

    #[test]
    fn module_and_policy_strings_parse() {
        let m = ConnectionString::parse(&format!(
            "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(m.kind(), ConnectionStringKind::Module);
        assert_eq!(m.resource_uri(), "h/devices/d/modules/m");
        let p = ConnectionString::parse(&format!(
            "HostName=localhost:8443;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY};"
        ))
        .unwrap();
        assert_eq!(p.kind(), ConnectionStringKind::Policy);
        assert_eq!(p.key_name.as_deref(), Some("iothubowner"));
        assert_eq!(p.resource_uri(), "localhost:8443");
    }

    #[test]
    fn x509_and_token_credentials_parse() {
        let x = ConnectionString::parse("HostName=h;DeviceId=d;x509=true").unwrap();
        assert_eq!(x.credential, Credential::X509);
        let t = ConnectionString::parse(
            "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h&sig=a=&se=1",
        )
        .unwrap();
        assert!(matches!(t.credential, Credential::Token(ref s) if s.ends_with("se=1")));
    }

    #[test]
    fn bad_strings_name_the_problem() {
        use ConnectionStringError as E;
        assert_eq!(
            ConnectionString::parse("DeviceId=d;SharedAccessKey=a2V5"),
            Err(E::MissingKey("HostName"))
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;Devce=d"),
            Err(E::UnknownKey("Devce".into()))
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;DeviceId"),
            Err(E::MalformedPart("DeviceId".into()))
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;ModuleId=m;SharedAccessKey=a2V5"),
            Err(E::ModuleWithoutDevice)
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;DeviceId=d;DeviceId=e;SharedAccessKey=a2V5"),
            Err(E::DuplicateKey("DeviceId".into()))
        );
        assert!(matches!(
            ConnectionString::parse("HostName=h;DeviceId=d;SharedAccessKey=!!"),
            Err(E::Key(_))
        ));
        assert!(matches!(
            ConnectionString::parse("HostName=h;DeviceId=d"),
            Err(E::MissingKey(_))
        ));
        assert!(matches!(
            ConnectionString::parse(
                "HostName=h;DeviceId=d;SharedAccessKeyName=p;SharedAccessKey=a2V5"
            ),
            Err(E::Conflicting(..))
        ));
    }

    #[test]
    fn debug_redacts_the_key() {
        let cs = ConnectionString::parse(&format!("HostName=h;DeviceId=d;SharedAccessKey={KEY}"))
            .unwrap();
        let dbg = format!("{cs:?}");
        assert!(!dbg.contains(KEY) && dbg.contains("redacted"), "{dbg}");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(
            host in "[a-z0-9.\\-]{1,30}(:[0-9]{1,5})?",
            device in "[A-Za-z0-9\\-:.+%_#*?!(),=@$']{1,40}",
            module in proptest::option::of("[A-Za-z0-9\\-:.+%_#*?!(),@$']{1,40}"),
            gateway in proptest::option::of("[a-z0-9.\\-]{1,30}"),
        ) {
            let mut cs = ConnectionString::device(&host, &device, SymmetricKey::generate());
            cs.module_id = module;
            cs.gateway_host_name = gateway;
            prop_assert_eq!(ConnectionString::parse(&cs.to_string()).unwrap(), cs);
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = ConnectionString::parse(&s);
        }
    }
}
