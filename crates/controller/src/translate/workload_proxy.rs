//! The workload API sidecar every module pod gets when `spec.workload.proxy` is set.
//!
//! The Azure IoT SDKs call the workload API (`IOTEDGE_WORKLOADURI`) without credentials. On a
//! Docker host the daemon identifies the caller by the socket peer's PID; across pods that does not
//! work. So each pod gets a sidecar (`ironedge workload-proxy`) that serves the `unix://` socket of
//! `IOTEDGE_WORKLOADURI` in an in-memory `emptyDir` shared only by the module's container and the
//! sidecar, and forwards every request over TLS to the agent with the pod's projected,
//! audience-bound, expiring ServiceAccount token. The agent checks that token with a TokenReview:
//! namespace and ServiceAccount must be the module's. The token volume is mounted into the sidecar
//! only; the module container never sees it.
//!
//! | volume | source | mounted in |
//! |---|---|---|
//! | `ironedge-workload-socket` | `emptyDir` (memory) | module (socket directory), sidecar |
//! | `ironedge-workload-token` | projected `serviceAccountToken` (audience, expiry) | sidecar, read-only |
//! | `ironedge-trust-bundle` | ConfigMap with `trust-bundle.pem` | sidecar, read-only |

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, PodSpec,
    ProjectedVolumeSource, ResourceRequirements, SecurityContext, ServiceAccountTokenProjection,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::crd::{WorkloadProxySpec, WorkloadSpec};
use crate::error::SpecError;

/// Name of the sidecar container.
pub const CONTAINER: &str = "ironedge-workload-proxy";
/// Volume holding the workload socket.
pub const SOCKET_VOLUME: &str = "ironedge-workload-socket";
/// Volume holding the projected token.
pub const TOKEN_VOLUME: &str = "ironedge-workload-token";
/// Volume holding the trust bundle.
pub const TRUST_VOLUME: &str = "ironedge-trust-bundle";
/// Where the sidecar finds its token.
pub const TOKEN_DIR: &str = "/var/run/secrets/ironedge.io/workload";
/// Where the sidecar finds the trust bundle.
pub const TRUST_DIR: &str = "/etc/ironedge/trust-bundle";
/// File name of the trust bundle in its ConfigMap.
pub const TRUST_BUNDLE_KEY: &str = "trust-bundle.pem";
/// Projected token lifetime when the spec names none (the kubelet refreshes it at 80%).
pub const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// Unprivileged user the sidecar runs as.
const SIDECAR_UID: i64 = 65532;

/// Adds the sidecar, its volumes and the module's socket mount to `spec` (whose first container
/// is the module), when the workload spec asks for a proxy.
pub fn inject(workload: Option<&WorkloadSpec>, spec: &mut PodSpec) -> Result<(), SpecError> {
    let Some(workload) = workload else {
        return Ok(());
    };
    let Some(proxy) = &workload.proxy else {
        return Ok(());
    };
    let socket_dir = socket_dir(&workload.uri)?;
    let socket_mount = VolumeMount {
        name: SOCKET_VOLUME.to_string(),
        mount_path: socket_dir,
        ..VolumeMount::default()
    };
    if let Some(module) = spec.containers.first_mut() {
        module
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(socket_mount.clone());
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.push(Volume {
        name: SOCKET_VOLUME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".to_string()),
            size_limit: Some(Quantity("1Mi".to_string())),
        }),
        ..Volume::default()
    });
    volumes.push(Volume {
        name: TOKEN_VOLUME.to_string(),
        projected: Some(ProjectedVolumeSource {
            // Readable by the unprivileged sidecar without a pod-wide fsGroup (which would chown
            // the module's volumes); only the sidecar mounts this volume.
            default_mode: Some(0o444),
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(proxy.audience.clone()),
                    expiration_seconds: Some(
                        proxy
                            .token_expiration_seconds
                            .unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS),
                    ),
                    path: "token".to_string(),
                }),
                ..VolumeProjection::default()
            }]),
        }),
        ..Volume::default()
    });
    volumes.push(Volume {
        name: TRUST_VOLUME.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: proxy.trust_bundle_config_map.clone(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
    spec.containers
        .push(sidecar(&workload.uri, proxy, socket_mount));
    Ok(())
}

fn sidecar(uri: &str, proxy: &WorkloadProxySpec, socket_mount: VolumeMount) -> Container {
    let token_file = format!("{TOKEN_DIR}/token");
    let trust_file = format!("{TRUST_DIR}/{TRUST_BUNDLE_KEY}");
    let args = [
        "workload-proxy",
        "--listen",
        uri,
        "--agent",
        &proxy.agent_url,
        "--token-file",
        &token_file,
        "--trust-bundle",
        &trust_file,
    ];
    Container {
        name: CONTAINER.to_string(),
        image: Some(proxy.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_string()),
        args: Some(args.iter().map(|a| (*a).to_string()).collect()),
        volume_mounts: Some(vec![
            socket_mount,
            VolumeMount {
                name: TOKEN_VOLUME.to_string(),
                mount_path: TOKEN_DIR.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: TRUST_VOLUME.to_string(),
                mount_path: TRUST_DIR.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_string(), Quantity("5m".to_string())),
                    ("memory".to_string(), Quantity("16Mi".to_string())),
                ]
                .into(),
            ),
            limits: Some([("memory".to_string(), Quantity("64Mi".to_string()))].into()),
            claims: None,
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(SIDECAR_UID),
            run_as_group: Some(SIDECAR_UID),
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: None,
                drop: Some(vec!["ALL".to_string()]),
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// The directory of the `unix://` socket path.
fn socket_dir(uri: &str) -> Result<String, SpecError> {
    let invalid = || SpecError::WorkloadProxyUri {
        uri: uri.to_string(),
    };
    let path = uri.strip_prefix("unix://").ok_or_else(invalid)?;
    let (dir, file) = path.rsplit_once('/').ok_or_else(invalid)?;
    if !dir.starts_with('/') || file.is_empty() {
        return Err(invalid());
    }
    Ok(dir.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(uri: &str) -> WorkloadSpec {
        WorkloadSpec {
            uri: uri.to_string(),
            api_version: Some("2020-07-07".into()),
            proxy: Some(WorkloadProxySpec {
                image: "ironedge:1".into(),
                agent_url: "https://ironedge-agent.dev1.svc:15581".into(),
                audience: "ironedge-workload".into(),
                trust_bundle_config_map: "ironedge-trust-bundle".into(),
                token_expiration_seconds: None,
            }),
        }
    }

    fn pod() -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "sensor".into(),
                ..Container::default()
            }],
            ..PodSpec::default()
        }
    }

    #[test]
    fn the_token_reaches_only_the_sidecar_and_the_socket_both() {
        let mut spec = pod();
        inject(
            Some(&workload("unix:///var/run/iotedge/workload.sock")),
            &mut spec,
        )
        .unwrap();
        let module = &spec.containers[0];
        let module_mounts: Vec<_> = module
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert_eq!(module_mounts, [(SOCKET_VOLUME, "/var/run/iotedge")]);
        let sidecar = &spec.containers[1];
        assert_eq!(sidecar.name, CONTAINER);
        let sidecar_mounts: Vec<_> = sidecar
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(sidecar_mounts, [SOCKET_VOLUME, TOKEN_VOLUME, TRUST_VOLUME]);
        let args = sidecar.args.clone().unwrap().join(" ");
        assert!(args.contains("--listen unix:///var/run/iotedge/workload.sock"));
        assert!(args.contains("--agent https://ironedge-agent.dev1.svc:15581"));
        let token = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == TOKEN_VOLUME)
            .and_then(|v| v.projected.clone())
            .unwrap();
        let projection = token.sources.unwrap()[0]
            .service_account_token
            .clone()
            .unwrap();
        assert_eq!(projection.audience.as_deref(), Some("ironedge-workload"));
        assert_eq!(projection.expiration_seconds, Some(3600));
    }

    #[test]
    fn without_a_proxy_the_pod_is_unchanged() {
        let mut spec = pod();
        let mut plain = workload("http://agent:15580");
        plain.proxy = None;
        inject(Some(&plain), &mut spec).unwrap();
        inject(None, &mut spec).unwrap();
        assert_eq!(spec, pod());
    }

    #[test]
    fn a_proxy_needs_a_unix_socket_uri() {
        for uri in ["http://agent:15580", "unix://workload.sock", "unix:///dir/"] {
            let err = inject(Some(&workload(uri)), &mut pod()).unwrap_err();
            assert_eq!(err.reason(), "WorkloadProxyUri", "{uri}");
        }
    }
}
