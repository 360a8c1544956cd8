//! The device's own credentials: its connection string, from a flag or from a Kubernetes Secret.

use ironedge_protocol::{
    ConnectionString, ConnectionStringKind, Credential, SasToken, SymmetricKey,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::error::{Error, Result};

/// Default key of the connection string in its Secret.
pub const DEFAULT_SECRET_KEY: &str = "connectionString";

/// The edge device's identity: hub name, device id and key. `Debug` hides the key.
#[derive(Clone)]
pub struct DeviceCredentials {
    /// `HostName`: the hub name in usernames and SAS audiences.
    pub host_name: String,
    /// `DeviceId`.
    pub device_id: String,
    /// `GatewayHostName`, when the device reaches its hub through a gateway.
    pub gateway_host_name: Option<String>,
    key: SymmetricKey,
}

impl std::fmt::Debug for DeviceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCredentials")
            .field("host_name", &self.host_name)
            .field("device_id", &self.device_id)
            .field("gateway_host_name", &self.gateway_host_name)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl DeviceCredentials {
    /// Reads a device connection string (`HostName=…;DeviceId=…;SharedAccessKey=…`).
    pub fn from_connection_string(text: &str) -> Result<Self> {
        let cs = ConnectionString::parse(text.trim())
            .map_err(|e| Error::Provisioning(format!("invalid connection string: {e}")))?;
        if cs.kind() != ConnectionStringKind::Device {
            return Err(Error::Provisioning(
                "the connection string is not a device connection string (it has a ModuleId or \
                 SharedAccessKeyName); use the edge device's own connection string"
                    .into(),
            ));
        }
        let Credential::Key(key) = cs.credential else {
            return Err(Error::Provisioning(
                "the connection string has no SharedAccessKey; the agent needs the device's \
                 symmetric key to create module identities"
                    .into(),
            ));
        };
        let device_id = cs
            .device_id
            .ok_or_else(|| Error::Provisioning("the connection string has no DeviceId".into()))?;
        Ok(Self {
            host_name: cs.host_name,
            device_id,
            gateway_host_name: cs.gateway_host_name,
            key,
        })
    }

    /// Reads the connection string from `key` of Secret `name` in the namespace of `api`.
    pub async fn from_secret(api: &Api<Secret>, name: &str, key: &str) -> Result<Self> {
        let how = format!(
            "create it with `kubectl create secret generic {name} --from-literal={key}=\"HostName=…;DeviceId=…;SharedAccessKey=…\"`"
        );
        let secret = match api.get(name).await {
            Ok(secret) => secret,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(Error::Provisioning(format!(
                    "Secret {name:?} with the device connection string does not exist in the \
                     agent's namespace; {how}"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .ok_or_else(|| {
                Error::Provisioning(format!(
                    "Secret {name:?} has no key {key:?} with the device connection string; {how} \
                     (or name its key with --connection-string-key)"
                ))
            })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::Provisioning(format!("Secret {name:?}: {key:?} is not UTF-8 text; {how}"))
        })?;
        Self::from_connection_string(&text)
    }

    /// A device SAS token (`sr={hub}/devices/{id}`) valid until `expiry` (Unix seconds).
    pub fn token(&self, expiry: u64) -> String {
        let resource = format!("{}/devices/{}", self.host_name, self.device_id);
        SasToken::build(&resource, &self.key, expiry, None).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_connection_string_is_read_and_its_key_hidden() {
        let key = SymmetricKey::generate();
        let cs = format!(
            "HostName=hub.example.net;DeviceId=dev1;SharedAccessKey={}",
            key.to_base64()
        );
        let creds = DeviceCredentials::from_connection_string(&cs).unwrap();
        assert_eq!(creds.device_id, "dev1");
        assert_eq!(creds.host_name, "hub.example.net");
        assert!(!format!("{creds:?}").contains(&key.to_base64()));
        let token = SasToken::parse(&creds.token(2_000_000_000)).unwrap();
        assert_eq!(token.resource(), "hub.example.net/devices/dev1");
    }

    #[test]
    fn module_and_policy_strings_are_refused_with_the_reason() {
        let key = SymmetricKey::generate().to_base64();
        for (cs, needle) in [
            (
                format!("HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey={key}"),
                "not a device connection string",
            ),
            (
                format!("HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey={key}"),
                "not a device connection string",
            ),
            (
                "HostName=h;DeviceId=d;x509=true".to_string(),
                "no SharedAccessKey",
            ),
            ("garbage".to_string(), "invalid connection string"),
        ] {
            let err = DeviceCredentials::from_connection_string(&cs).unwrap_err();
            assert!(err.to_string().contains(needle), "{cs}: {err}");
        }
    }
}
