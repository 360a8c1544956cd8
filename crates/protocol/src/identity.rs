//! Who is connecting: a device or a module, as named by the MQTT client id, the username and
//! the SAS audience (reference iot-hub-protocols §1.2, iotedge-runtime §3.2).

use crate::encoding::decode_component;
use crate::error::ConnectError;
use std::fmt;

/// A device or module identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// The device id.
    pub device_id: String,
    /// The module id, for modules.
    pub module_id: Option<String>,
}

impl Identity {
    /// A device identity.
    pub fn device(device_id: impl Into<String>) -> Self {
        Self {
            device_id: device_id.into(),
            module_id: None,
        }
    }

    /// A module identity.
    pub fn module(device_id: impl Into<String>, module_id: impl Into<String>) -> Self {
        Self {
            device_id: device_id.into(),
            module_id: Some(module_id.into()),
        }
    }

    /// Parses an MQTT client id: `{deviceId}` or `{deviceId}/{moduleId}`.
    pub fn from_client_id(client_id: &str) -> Result<Self, ConnectError> {
        if client_id.is_empty() {
            return Err(ConnectError::EmptyClientId);
        }
        let bad = || ConnectError::BadClientId(client_id.to_owned());
        let mut parts = client_id.split('/');
        let device = parts.next().filter(|d| !d.is_empty()).ok_or_else(bad)?;
        let module = parts.next();
        if parts.next().is_some() || module.is_some_and(str::is_empty) {
            return Err(bad());
        }
        Ok(Self {
            device_id: device.to_owned(),
            module_id: module.map(str::to_owned),
        })
    }

    /// The MQTT client id for this identity.
    pub fn client_id(&self) -> String {
        self.to_string()
    }

    /// The SAS resource below the host: `devices/{d}[/modules/{m}]`.
    pub fn resource_path(&self) -> String {
        match &self.module_id {
            Some(m) => format!("devices/{}/modules/{m}", self.device_id),
            None => format!("devices/{}", self.device_id),
        }
    }

    /// The full SAS resource URI for `hub`: `{hub}/devices/{d}[/modules/{m}]`.
    pub fn resource_uri(&self, hub: &str) -> String {
        format!("{hub}/{}", self.resource_path())
    }

    /// The MQTT username IoT Hub expects from this identity.
    pub fn username(&self, hub: &str, api_version: &str) -> String {
        format!("{hub}/{}/?api-version={api_version}", self.client_id())
    }

    /// True for module identities.
    pub fn is_module(&self) -> bool {
        self.module_id.is_some()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.module_id {
            Some(m) => write!(f, "{}/{m}", self.device_id),
            None => f.write_str(&self.device_id),
        }
    }
}

/// A parsed IoT Hub MQTT username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username {
    /// First segment: the IoT hub hostname (not checked by edgeHub; may be any alias).
    pub host: String,
    /// Identity named by the username.
    pub identity: Identity,
    /// `api-version` (required; its value is not checked).
    pub api_version: String,
    /// `DeviceClientType`, URL-decoded (the SDK's user agent).
    pub client_type: Option<String>,
    /// `model-id` (Plug and Play).
    pub model_id: Option<String>,
    /// `auth-chain` (nested edge).
    pub auth_chain: Option<String>,
}

impl Username {
    /// Parses `{host}/{d}[/{m}]/?api-version=...` or the legacy `{host}/{d}[/{m}]/api-version=...`.
    pub fn parse(username: &str) -> Result<Self, ConnectError> {
        let bad = |reason| ConnectError::BadUsername {
            username: username.to_owned(),
            reason,
        };
        let segments: Vec<&str> = username.split('/').collect();
        let last = segments.last().copied().unwrap_or_default();
        let query = match last.strip_prefix('?') {
            Some(q) => q,
            None if last.contains("api-version=") => last,
            None => return Err(bad("the last segment must be \"?api-version=...\"")),
        };
        let (host, identity) = match segments.as_slice() {
            [host, device, _] => (*host, Identity::device(*device)),
            [host, device, module, _] => (*host, Identity::module(*device, *module)),
            _ => {
                return Err(bad(
                    "expected {host}/{deviceId}[/{moduleId}]/?api-version=...",
                ));
            }
        };
        if host.is_empty()
            || identity.device_id.is_empty()
            || identity.module_id.as_deref() == Some("")
        {
            return Err(bad("host, device id and module id must not be empty"));
        }
        let mut parsed = Self {
            host: host.to_owned(),
            identity,
            api_version: String::new(),
            client_type: None,
            model_id: None,
            auth_chain: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode_component(v).into_owned();
            match decode_component(k).as_ref() {
                "api-version" => parsed.api_version = v,
                "DeviceClientType" => parsed.client_type = Some(v),
                "model-id" => parsed.model_id = Some(v),
                "auth-chain" => parsed.auth_chain = Some(v),
                _ => {}
            }
        }
        if parsed.api_version.is_empty() {
            return Err(bad("api-version is required"));
        }
        Ok(parsed)
    }
}

/// Parses the CONNECT client id and username and checks that both name the same identity
/// (exact, ordinal comparison as edgeHub does).
pub fn identity_from_connect(
    client_id: &str,
    username: Option<&str>,
) -> Result<(Identity, Username), ConnectError> {
    let from_client = Identity::from_client_id(client_id)?;
    let username = Username::parse(
        username
            .filter(|u| !u.is_empty())
            .ok_or(ConnectError::MissingUsername)?,
    )?;
    if username.identity != from_client {
        return Err(ConnectError::IdentityMismatch {
            username_identity: username.identity.to_string(),
            client_id: client_id.to_owned(),
        });
    }
    Ok((from_client, username))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn python_module_username_parses() {
        let u = Username::parse("myhub.azure-devices.net/dev1/mod1/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0%283.11.7%3BLinux%20x%3Bx86_64%29").unwrap();
        assert_eq!(u.host, "myhub.azure-devices.net");
        assert_eq!(u.identity, Identity::module("dev1", "mod1"));
        assert_eq!(u.api_version, "2019-10-01");
        assert_eq!(
            u.client_type.as_deref(),
            Some("azure-iot-device-iothub-py/2.14.0(3.11.7;Linux x;x86_64)")
        );
    }

    #[test]
    fn node_username_with_raw_parentheses_parses() {
        let u = Username::parse("myhub.azure-devices.net/dev1/mod1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4%20(node%20v20.20.2%3B%20Debian%2012%3B%20x64)").unwrap();
        assert_eq!(
            u.client_type.as_deref(),
            Some("azure-iot-device/1.18.4 (node v20.20.2; Debian 12; x64)")
        );
    }

    #[test]
    fn device_username_and_extra_parameters_parse() {
        let u = Username::parse(
            "h/dev2/?api-version=2020-09-30&model-id=dtmi:com:x;1&auth-chain=a%3Bb",
        )
        .unwrap();
        assert_eq!(u.identity, Identity::device("dev2"));
        assert_eq!(u.model_id.as_deref(), Some("dtmi:com:x;1"));
        assert_eq!(u.auth_chain.as_deref(), Some("a;b"));
    }

    #[test]
    fn legacy_form_without_question_mark_parses() {
        let u = Username::parse("h/dev1/mod1/api-version=2016-11-14&DeviceClientType=c").unwrap();
        assert_eq!(u.identity, Identity::module("dev1", "mod1"));
        assert_eq!(u.api_version, "2016-11-14");
    }

    #[test]
    fn bad_usernames_are_rejected_with_reasons() {
        for u in [
            "h/dev1",
            "h/dev1/",
            "h/dev1/?DeviceClientType=x",
            "h/a/b/c/?api-version=1",
            "/dev1/?api-version=1",
            "h//m/?api-version=1",
        ] {
            assert!(
                matches!(Username::parse(u), Err(ConnectError::BadUsername { .. })),
                "{u}"
            );
        }
    }

    #[test]
    fn client_id_forms() {
        assert_eq!(
            Identity::from_client_id("dev1").unwrap(),
            Identity::device("dev1")
        );
        assert_eq!(
            Identity::from_client_id("dev1/mod1").unwrap(),
            Identity::module("dev1", "mod1")
        );
        assert_eq!(
            Identity::from_client_id(""),
            Err(ConnectError::EmptyClientId)
        );
        for bad in ["/m", "d/", "d/m/x"] {
            assert!(matches!(
                Identity::from_client_id(bad),
                Err(ConnectError::BadClientId(_))
            ));
        }
    }

    #[test]
    fn connect_cross_checks_client_id_and_username() {
        let (id, _) =
            identity_from_connect("dev1/mod1", Some("h/dev1/mod1/?api-version=1")).unwrap();
        assert_eq!(id.resource_path(), "devices/dev1/modules/mod1");
        assert!(matches!(
            identity_from_connect("dev1/mod1", Some("h/dev1/mod2/?api-version=1")),
            Err(ConnectError::IdentityMismatch { .. })
        ));
        assert!(matches!(
            identity_from_connect("dev1", Some("h/Dev1/?api-version=1")),
            Err(ConnectError::IdentityMismatch { .. })
        ));
        assert_eq!(
            identity_from_connect("dev1", None),
            Err(ConnectError::MissingUsername)
        );
    }

    proptest! {
        #[test]
        fn username_format_then_parse_round_trips(
            device in "[A-Za-z0-9\\-:.+%_*!(),=@$']{1,30}",
            module in proptest::option::of("[A-Za-z0-9\\-:.+%_*!(),=@$']{1,30}"),
        ) {
            let id = Identity { device_id: device, module_id: module };
            let (parsed, u) = identity_from_connect(&id.client_id(), Some(&id.username("myhub", "2021-04-12"))).unwrap();
            prop_assert_eq!(parsed, id);
            prop_assert_eq!(u.api_version, "2021-04-12");
        }

        #[test]
        fn parsing_arbitrary_usernames_never_panics(u in "\\PC{0,120}", c in "\\PC{0,40}") {
            let _ = identity_from_connect(&c, Some(&u));
        }
    }
}
