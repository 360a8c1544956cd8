//! The module's environment, read the way the Azure IoT SDKs read it
//! (`reference/iot-hub-protocols.md` §4.2, `iotedge-runtime.md` §5.1).
//!
//! Under IoT Edge every module gets `IOTEDGE_IOTHUBHOSTNAME`, `IOTEDGE_DEVICEID`,
//! `IOTEDGE_MODULEID`, `IOTEDGE_MODULEGENERATIONID`, `IOTEDGE_WORKLOADURI`, `IOTEDGE_APIVERSION`,
//! `IOTEDGE_AUTHSCHEME` and (for user modules) `IOTEDGE_GATEWAYHOSTNAME`: tokens are signed by the
//! workload API and the edge hub is trusted through the workload trust bundle. Without them the
//! SDKs' local-development fallback applies: `EdgeHubConnectionString` (a module connection string
//! with `GatewayHostName`) and `EdgeModuleCACertificateFile`.
//!
//! The gateway may carry a port (`edgehub:18883`), as the Node SDK allows; the Python SDK always
//! dials 8883.

use std::path::PathBuf;

use ironedge_protocol::{ConnectionString, Credential, Identity, SymmetricKey};

use crate::error::EnvironmentError;

/// Port of MQTT over TLS on IoT Hub and the edge hub.
pub const MQTT_PORT: u16 = 8883;
/// Workload API version used when `IOTEDGE_APIVERSION` is absent (the C# SDK's fixed one).
pub const DEFAULT_WORKLOAD_API_VERSION: &str = "2018-06-28";

/// Where the MQTT connection goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address; also the TLS server name.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `host` or `host:port` (IPv6 literals in brackets).
    pub fn parse(name: &'static str, value: &str) -> Result<Self, EnvironmentError> {
        let invalid = |reason: &str| EnvironmentError::Invalid {
            name,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(invalid("it is empty"));
        }
        let (host, port) = if let Some(rest) = value.strip_prefix('[') {
            let (host, tail) = rest
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 literal needs a closing ]"))?;
            match tail.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if tail.is_empty() => (host, None),
                None => return Err(invalid("unexpected text after ]")),
            }
        } else {
            match value.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                Some(_) => (value, None),
                None => (value, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?,
            None => MQTT_PORT,
        };
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(invalid("expected a host name or IP address"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// How the module proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Authentication {
    /// Tokens signed by the workload API; the trust bundle comes from it too.
    Workload {
        /// `IOTEDGE_WORKLOADURI`: `unix:///path` or `http://host:port`.
        uri: String,
        /// `IOTEDGE_APIVERSION`.
        api_version: String,
        /// `IOTEDGE_MODULEGENERATIONID`.
        generation_id: String,
    },
    /// The connection-string fallback: the module holds its own key.
    SharedKey {
        /// The module's key.
        key: SymmetricKey,
        /// `EdgeModuleCACertificateFile`: the CA the edge hub's certificate chains to.
        ca_file: Option<PathBuf>,
    },
}

impl std::fmt::Debug for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Workload {
                uri,
                api_version,
                generation_id,
            } => f
                .debug_struct("Workload")
                .field("uri", uri)
                .field("api_version", api_version)
                .field("generation_id", generation_id)
                .finish(),
            Self::SharedKey { ca_file, .. } => f
                .debug_struct("SharedKey")
                .field("key", &"<redacted>")
                .field("ca_file", ca_file)
                .finish(),
        }
    }
}

/// Everything a module learns from its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeEnvironment {
    /// `IOTEDGE_IOTHUBHOSTNAME`: used in the MQTT username and the SAS audience only.
    pub hub_host_name: String,
    /// `IOTEDGE_DEVICEID`.
    pub device_id: String,
    /// `IOTEDGE_MODULEID`.
    pub module_id: String,
    /// Where MQTT goes: `IOTEDGE_GATEWAYHOSTNAME`, else the hub itself.
    pub endpoint: Endpoint,
    /// How tokens are made.
    pub authentication: Authentication,
}

impl EdgeEnvironment {
    /// Reads the environment from `vars` (pass `std::env::vars()` in a module's `main`): the
    /// `IOTEDGE_*` contract when `IOTEDGE_WORKLOADURI` is set, else `EdgeHubConnectionString`.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, EnvironmentError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: std::collections::BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let get = |name: &'static str| vars.get(name).cloned();
        if get("IOTEDGE_WORKLOADURI").is_none()
            && let Some(cs) = get("EdgeHubConnectionString")
        {
            return from_connection_string(&cs, get("EdgeModuleCACertificateFile"));
        }
        let require = |name: &'static str| get(name).ok_or(EnvironmentError::Missing { name });
        if let Some(scheme) = get("IOTEDGE_AUTHSCHEME")
            && !scheme.eq_ignore_ascii_case("sasToken")
        {
            return Err(EnvironmentError::Invalid {
                name: "IOTEDGE_AUTHSCHEME",
                value: scheme,
                reason: "only sasToken is supported".into(),
            });
        }
        let hub_host_name = require("IOTEDGE_IOTHUBHOSTNAME")?;
        let device_id = require("IOTEDGE_DEVICEID")?;
        let module_id = require("IOTEDGE_MODULEID")?;
        let generation_id = require("IOTEDGE_MODULEGENERATIONID")?;
        let uri = require("IOTEDGE_WORKLOADURI")?;
        if !(uri.starts_with("unix://") || uri.starts_with("http://")) {
            return Err(EnvironmentError::Invalid {
                name: "IOTEDGE_WORKLOADURI",
                value: uri,
                reason: "expected unix:///path or http://host:port".into(),
            });
        }
        let endpoint = match get("IOTEDGE_GATEWAYHOSTNAME") {
            Some(gw) => Endpoint::parse("IOTEDGE_GATEWAYHOSTNAME", &gw)?,
            None => Endpoint::parse("IOTEDGE_IOTHUBHOSTNAME", &hub_host_name)?,
        };
        Ok(Self {
            hub_host_name,
            device_id,
            module_id,
            endpoint,
            authentication: Authentication::Workload {
                uri,
                api_version: get("IOTEDGE_APIVERSION")
                    .unwrap_or_else(|| DEFAULT_WORKLOAD_API_VERSION.to_owned()),
                generation_id,
            },
        })
    }

    /// The module's identity.
    pub fn identity(&self) -> Identity {
        Identity::module(self.device_id.clone(), self.module_id.clone())
    }
}

fn from_connection_string(
    text: &str,
    ca_file: Option<String>,
) -> Result<EdgeEnvironment, EnvironmentError> {
    const NAME: &str = "EdgeHubConnectionString";
    let invalid = |reason: String| EnvironmentError::Invalid {
        name: NAME,
        value: "<redacted>".into(),
        reason,
    };
    let cs = ConnectionString::parse(text).map_err(|e| invalid(e.to_string()))?;
    let device_id = cs
        .device_id
        .clone()
        .ok_or_else(|| invalid("DeviceId is missing".into()))?;
    let module_id = cs.module_id.clone().ok_or_else(|| {
        invalid("ModuleId is missing: a module connection string is needed".into())
    })?;
    let Credential::Key(key) = cs.credential.clone() else {
        return Err(invalid("SharedAccessKey is missing".into()));
    };
    let endpoint = Endpoint::parse(NAME, cs.connect_host())?;
    Ok(EdgeEnvironment {
        hub_host_name: cs.host_name.clone(),
        device_id,
        module_id,
        endpoint,
        authentication: Authentication::SharedKey {
            key,
            ca_file: ca_file.map(PathBuf::from),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge_vars() -> Vec<(&'static str, &'static str)> {
        vec![
            ("IOTEDGE_IOTHUBHOSTNAME", "hub.example.net"),
            ("IOTEDGE_DEVICEID", "edge1"),
            ("IOTEDGE_MODULEID", "sensor"),
            ("IOTEDGE_MODULEGENERATIONID", "gen1"),
            (
                "IOTEDGE_WORKLOADURI",
                "unix:///var/run/iotedge/workload.sock",
            ),
            ("IOTEDGE_APIVERSION", "2020-07-07"),
            ("IOTEDGE_AUTHSCHEME", "sasToken"),
            ("IOTEDGE_GATEWAYHOSTNAME", "edgehub"),
        ]
    }

    #[test]
    fn the_iotedge_variables_describe_a_workload_module_behind_the_gateway() {
        let env = EdgeEnvironment::from_vars(edge_vars()).unwrap();
        assert_eq!(env.identity(), Identity::module("edge1", "sensor"));
        assert_eq!(
            env.endpoint,
            Endpoint {
                host: "edgehub".into(),
                port: 8883
            }
        );
        assert_eq!(
            env.authentication,
            Authentication::Workload {
                uri: "unix:///var/run/iotedge/workload.sock".into(),
                api_version: "2020-07-07".into(),
                generation_id: "gen1".into(),
            }
        );
    }

    #[test]
    fn a_missing_variable_is_named_with_what_to_do() {
        let vars = edge_vars()
            .into_iter()
            .filter(|(k, _)| *k != "IOTEDGE_MODULEGENERATIONID");
        let err = EdgeEnvironment::from_vars(vars).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("IOTEDGE_MODULEGENERATIONID"), "{text}");
        assert!(text.contains("EdgeHubConnectionString"), "{text}");
    }

    #[test]
    fn the_gateway_may_carry_a_port_and_defaults_to_the_hub() {
        let mut vars = edge_vars();
        vars.retain(|(k, _)| *k != "IOTEDGE_GATEWAYHOSTNAME");
        vars.push(("IOTEDGE_GATEWAYHOSTNAME", "127.0.0.1:18883"));
        let env = EdgeEnvironment::from_vars(vars.clone()).unwrap();
        assert_eq!(env.endpoint.host, "127.0.0.1");
        assert_eq!(env.endpoint.port, 18883);
        vars.retain(|(k, _)| *k != "IOTEDGE_GATEWAYHOSTNAME");
        let env = EdgeEnvironment::from_vars(vars).unwrap();
        assert_eq!(env.endpoint.host, "hub.example.net");
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        for (name, value, expect) in [
            ("IOTEDGE_GATEWAYHOSTNAME", "edgehub:0", "port"),
            ("IOTEDGE_GATEWAYHOSTNAME", "edgehub:x", "port"),
            ("IOTEDGE_WORKLOADURI", "ftp://x", "unix://"),
            ("IOTEDGE_AUTHSCHEME", "x509", "sasToken"),
        ] {
            let mut vars = edge_vars();
            vars.retain(|(k, _)| *k != name);
            vars.push((name, value));
            let err = EdgeEnvironment::from_vars(vars).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(expect), "{err}");
        }
    }

    #[test]
    fn the_connection_string_fallback_holds_the_key_and_the_ca_file() {
        let key = SymmetricKey::generate();
        let cs = format!(
            "HostName=hub.example.net;DeviceId=edge1;ModuleId=filter;SharedAccessKey={};GatewayHostName=localhost",
            key.to_base64()
        );
        let env = EdgeEnvironment::from_vars([
            ("EdgeHubConnectionString", cs.as_str()),
            ("EdgeModuleCACertificateFile", "/tmp/ca.pem"),
        ])
        .unwrap();
        assert_eq!(env.identity(), Identity::module("edge1", "filter"));
        assert_eq!(env.endpoint.host, "localhost");
        assert_eq!(
            env.authentication,
            Authentication::SharedKey {
                key,
                ca_file: Some("/tmp/ca.pem".into())
            }
        );
        assert!(!format!("{:?}", env.authentication).contains("SharedAccessKey"));
    }

    #[test]
    fn a_device_connection_string_is_not_a_module() {
        let cs = format!(
            "HostName=h;DeviceId=d;SharedAccessKey={}",
            SymmetricKey::generate().to_base64()
        );
        let err = EdgeEnvironment::from_vars([("EdgeHubConnectionString", cs)]).unwrap_err();
        assert!(err.to_string().contains("ModuleId"), "{err}");
        assert!(!err.to_string().contains("SharedAccessKey="), "{err}");
    }
}
