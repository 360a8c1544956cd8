//! Image pull Secrets: which Secret serves which image, and the `kubernetes.io/dockerconfigjson`
//! Secret made from a manifest's registry credentials.
//!
//! Credentials never enter the EdgeDeployment: the agent (or `ironedge manifest render`) writes one
//! Secret per registry and the spec only names it with the registry it serves.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{LocalObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::ImagePullSecretRef;

/// Registry Docker uses for images without a registry host.
const DOCKER_HUB: &str = "docker.io";

/// The registry host of `image` (`myacr.azurecr.io/app:1` → `myacr.azurecr.io`, `alpine` → `docker.io`).
pub fn image_registry(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            normalize_registry(first)
        }
        _ => DOCKER_HUB.to_string(),
    }
}

/// A registry address without scheme, path and case differences; Docker Hub's aliases are one.
pub fn normalize_registry(address: &str) -> String {
    let address = address.trim();
    let address = address.split_once("://").map_or(address, |(_, rest)| rest);
    let host = address
        .split('/')
        .next()
        .unwrap_or(address)
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

/// The pull Secrets that serve `image`.
pub fn pull_secrets_for(image: &str, refs: &[ImagePullSecretRef]) -> Vec<LocalObjectReference> {
    let registry = image_registry(image);
    let mut names: Vec<String> = refs
        .iter()
        .filter(|r| normalize_registry(&r.registry) == registry)
        .map(|r| r.name.clone())
        .collect();
    names.dedup();
    names
        .into_iter()
        .map(|name| LocalObjectReference { name })
        .collect()
}

/// Registry credentials from a manifest; the password is redacted from `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    /// Name of the Secret to write.
    pub secret_name: String,
    /// Registry address.
    pub address: String,
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("secret_name", &self.secret_name)
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl RegistryCredential {
    /// The reference the EdgeDeployment spec carries instead of the credential.
    pub fn to_ref(&self) -> ImagePullSecretRef {
        ImagePullSecretRef {
            name: self.secret_name.clone(),
            registry: normalize_registry(&self.address),
        }
    }

    /// The Secret, with its content in `data` (server-side apply of `stringData` is never a no-op).
    pub fn to_secret(&self, meta: ObjectMeta) -> Secret {
        let b64 = base64::engine::general_purpose::STANDARD;
        let auth = b64.encode(format!("{}:{}", self.username, self.password));
        let config = serde_json::json!({"auths": {self.address.clone(): {
            "username": self.username, "password": self.password, "auth": auth
        }}});
        Secret {
            metadata: ObjectMeta {
                name: Some(self.secret_name.clone()),
                ..meta
            },
            type_: Some("kubernetes.io/dockerconfigjson".to_string()),
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_string(),
                ByteString(config.to_string().into_bytes()),
            )])),
            ..Secret::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_read_from_image_names() {
        assert_eq!(image_registry("myacr.azurecr.io/app:1"), "myacr.azurecr.io");
        assert_eq!(image_registry("localhost:5000/app"), "localhost:5000");
        assert_eq!(image_registry("alpine:3"), "docker.io");
        assert_eq!(image_registry("library/alpine"), "docker.io");
        assert_eq!(
            normalize_registry("https://MyAcr.azurecr.io/"),
            "myacr.azurecr.io"
        );
        assert_eq!(normalize_registry("index.docker.io"), "docker.io");
    }

    #[test]
    fn only_secrets_of_the_image_registry_are_used() {
        let refs = [
            ImagePullSecretRef {
                name: "acr".into(),
                registry: "myacr.azurecr.io".into(),
            },
            ImagePullSecretRef {
                name: "hub".into(),
                registry: "index.docker.io".into(),
            },
        ];
        assert_eq!(
            pull_secrets_for("myacr.azurecr.io/x", &refs),
            [LocalObjectReference { name: "acr".into() }]
        );
        assert_eq!(
            pull_secrets_for("alpine", &refs),
            [LocalObjectReference { name: "hub".into() }]
        );
        assert!(pull_secrets_for("quay.io/x", &refs).is_empty());
    }

    #[test]
    fn credentials_never_show_in_debug_and_become_dockerconfigjson() {
        let cred = RegistryCredential {
            secret_name: "acr".into(),
            address: "myacr.azurecr.io".into(),
            username: "user".into(),
            password: "s3cret".into(),
        };
        assert!(!format!("{cred:?}").contains("s3cret"));
        let secret = cred.to_secret(ObjectMeta::default());
        let data = &secret.data.unwrap()[".dockerconfigjson"].0;
        let json: serde_json::Value = serde_json::from_slice(data).unwrap();
        assert_eq!(
            json["auths"]["myacr.azurecr.io"]["auth"],
            "dXNlcjpzM2NyZXQ="
        );
    }
}
