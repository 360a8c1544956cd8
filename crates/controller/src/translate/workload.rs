//! The module's pod template, and the workload that runs it.
//!
//! **restartPolicy.** Kubernetes Deployments only allow pods that always restart, so:
//!
//! | IoT Edge `restartPolicy` | workload | pod `restartPolicy` | gives up |
//! |---|---|---|---|
//! | `always` | Deployment, replicas 1 (0 when stopped) | `Always` | never |
//! | `on-failure`, `on-unhealthy` | Job, parallelism 1 (0 when stopped), completions 1 | `OnFailure` | after 20 restarts (IoT Edge's `MaxRestartCount`): module `failed` |
//! | `never` | Job, parallelism 1 (0 when stopped), completions 1 | `Never` | after the first exit, `backoffLimit: 0` |
//!
//! A Job keeps the pod after a clean exit (module `stopped`, exit code 0) and restarts it after a
//! failure in place, with the kubelet's back-off, which is what IoT Edge does with Docker. A Job's
//! pod template cannot change, so the controller replaces a Job whose template changed. The health
//! check (`Healthcheck`) is a liveness probe, so `on-unhealthy` restarts an unhealthy module.
//!
//! **imagePullPolicy.** `on-create` → `IfNotPresent` (the image is pulled when the pod is
//! created and is missing), `never` → `Never`.
//!
//! **Strategy.** A Deployment that mounts a claim or a host path uses `Recreate`, so that two pods
//! never share the data during an update; `k8s-experimental.strategy` overrides it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, ExecAction, HostAlias, PodDNSConfig,
    PodDNSConfigOption, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SecurityContext, Sysctl,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::Workload;
use super::create_options::CreateOptions;
use super::meta::Context;
use super::registry;
use super::volumes::PodVolumes;
use crate::crd::{DesiredStatus, ImagePullPolicy, ModuleSpec, RestartPolicy};
use crate::error::SpecError;
use crate::labels;
use crate::quantity;

/// IoT Edge's `MaxRestartCount`: restarts before an `on-failure` module is `failed`.
pub const MAX_RESTARTS: i32 = 20;

/// The module's Deployment or Job.
pub fn workload(
    ctx: &Context<'_>,
    name: &str,
    module: &ModuleSpec,
    options: &CreateOptions,
    env: Vec<EnvVar>,
    volumes: PodVolumes,
) -> Result<Workload, SpecError> {
    let running = module.status == DesiredStatus::Running;
    let persistent = volumes.persistent;
    let pod_restart = match module.restart_policy {
        RestartPolicy::Always => "Always",
        RestartPolicy::OnFailure | RestartPolicy::OnUnhealthy => "OnFailure",
        RestartPolicy::Never => "Never",
    };
    let template = pod_template(ctx, name, module, options, env, volumes, pod_restart)?;
    let mut annotations = ctx.module_annotations(module);
    annotations.insert(
        labels::STARTUP_ORDER.to_string(),
        module.startup_order.to_string(),
    );
    let metadata = ctx.meta(name, ctx.module_labels(name), annotations, true);
    let selector = LabelSelector {
        match_labels: Some(ctx.selector_labels(name)),
        match_expressions: None,
    };
    Ok(match module.restart_policy {
        RestartPolicy::Always => {
            let strategy = options.experimental.strategy.clone().or_else(|| {
                persistent.then(|| DeploymentStrategy {
                    type_: Some("Recreate".to_string()),
                    rolling_update: None,
                })
            });
            Workload::Deployment(Box::new(Deployment {
                metadata,
                spec: Some(DeploymentSpec {
                    replicas: Some(i32::from(running)),
                    selector,
                    strategy,
                    template,
                    ..DeploymentSpec::default()
                }),
                status: None,
            }))
        }
        RestartPolicy::OnFailure | RestartPolicy::OnUnhealthy | RestartPolicy::Never => {
            let backoff_limit = if module.restart_policy == RestartPolicy::Never {
                0
            } else {
                MAX_RESTARTS
            };
            Workload::Job(Box::new(Job {
                metadata,
                spec: Some(JobSpec {
                    parallelism: Some(i32::from(running)),
                    completions: Some(1),
                    backoff_limit: Some(backoff_limit),
                    manual_selector: Some(true),
                    selector: Some(selector),
                    template,
                    ..JobSpec::default()
                }),
                status: None,
            }))
        }
    })
}

fn pod_template(
    ctx: &Context<'_>,
    name: &str,
    module: &ModuleSpec,
    options: &CreateOptions,
    env: Vec<EnvVar>,
    volumes: PodVolumes,
    restart_policy: &str,
) -> Result<PodTemplateSpec, SpecError> {
    let host = &options.host;
    let experimental = &options.experimental;
    let mut annotations = ctx.module_annotations(module);
    annotations.extend(valid_annotations(&options.labels));
    let container = Container {
        name: name.to_string(),
        image: Some(module.image.clone()),
        image_pull_policy: Some(
            match module.image_pull_policy {
                ImagePullPolicy::OnCreate => "IfNotPresent",
                ImagePullPolicy::Never => "Never",
            }
            .to_string(),
        ),
        command: options.entrypoint.clone(),
        args: options.cmd.clone(),
        working_dir: options.working_dir.clone(),
        env: Some(env),
        ports: container_ports(options),
        resources: resources(options),
        security_context: container_security(options),
        volume_mounts: (!volumes.mounts.is_empty()).then_some(volumes.mounts),
        liveness_probe: options.healthcheck.as_ref().map(|h| Probe {
            exec: Some(ExecAction {
                command: Some(h.command.clone()),
            }),
            period_seconds: Some(h.interval_secs),
            timeout_seconds: Some(h.timeout_secs),
            failure_threshold: Some(h.retries),
            initial_delay_seconds: (h.start_period_secs > 0).then_some(h.start_period_secs),
            ..Probe::default()
        }),
        tty: options.tty.then_some(true),
        stdin: options.open_stdin.then_some(true),
        ..Container::default()
    };
    let pull_secrets = registry::pull_secrets_for(&module.image, &ctx.ed.spec.image_pull_secrets);
    let mut spec = PodSpec {
        containers: vec![container],
        service_account_name: Some(name.to_string()),
        restart_policy: Some(restart_policy.to_string()),
        image_pull_secrets: (!pull_secrets.is_empty()).then_some(pull_secrets),
        volumes: (!volumes.volumes.is_empty()).then_some(volumes.volumes),
        host_network: host.host_network.then_some(true),
        dns_policy: host
            .host_network
            .then(|| "ClusterFirstWithHostNet".to_string()),
        host_ipc: host.host_ipc.then_some(true),
        host_pid: host.host_pid.then_some(true),
        hostname: options.hostname.clone(),
        host_aliases: host_aliases(&host.extra_hosts),
        dns_config: dns_config(options),
        node_selector: (!experimental.node_selector.is_empty())
            .then(|| experimental.node_selector.clone()),
        tolerations: (!experimental.tolerations.is_empty())
            .then(|| experimental.tolerations.clone()),
        security_context: pod_security(options),
        termination_grace_period_seconds: options.stop_timeout,
        ..PodSpec::default()
    };
    super::workload_proxy::inject(ctx.ed.spec.workload.as_ref(), &mut spec)?;
    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(ctx.module_labels(name)),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    })
}

fn container_ports(options: &CreateOptions) -> Option<Vec<ContainerPort>> {
    let mut ports: Vec<_> = options
        .exposed_ports
        .iter()
        .copied()
        .chain(options.host.port_bindings.iter().map(|b| b.container))
        .collect();
    ports.sort();
    ports.dedup();
    (!ports.is_empty()).then(|| {
        ports
            .into_iter()
            .map(|p| ContainerPort {
                container_port: i32::from(p.port),
                protocol: Some(p.protocol.as_str().to_string()),
                ..ContainerPort::default()
            })
            .collect()
    })
}

/// HostConfig limits, overridden key by key by `k8s-experimental.resources`.
fn resources(options: &CreateOptions) -> Option<ResourceRequirements> {
    let host = &options.host;
    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    if let Some(memory) = host.memory {
        limits.insert("memory".to_string(), quantity::bytes(memory));
    }
    if let Some(memory) = host.memory_reservation {
        requests.insert("memory".to_string(), quantity::bytes(memory));
    }
    if let Some(cpu) = host.cpu_limit_millis {
        limits.insert("cpu".to_string(), quantity::millicpu(cpu));
    }
    if let Some(cpu) = host.cpu_request_millis {
        requests.insert("cpu".to_string(), quantity::millicpu(cpu));
    }
    let mut claims = None;
    if let Some(extra) = &options.experimental.resources {
        limits.extend(extra.limits.clone().unwrap_or_default());
        requests.extend(extra.requests.clone().unwrap_or_default());
        claims.clone_from(&extra.claims);
    }
    (!limits.is_empty() || !requests.is_empty()).then(|| ResourceRequirements {
        limits: (!limits.is_empty()).then_some(limits),
        requests: (!requests.is_empty()).then_some(requests),
        claims,
    })
}

fn container_security(options: &CreateOptions) -> Option<SecurityContext> {
    let host = &options.host;
    let capabilities =
        (!host.cap_add.is_empty() || !host.cap_drop.is_empty()).then(|| Capabilities {
            add: (!host.cap_add.is_empty()).then(|| host.cap_add.clone()),
            drop: (!host.cap_drop.is_empty()).then(|| host.cap_drop.clone()),
        });
    let context = SecurityContext {
        privileged: host.privileged.then_some(true),
        capabilities,
        run_as_user: options.user.map(|u| u.uid),
        run_as_group: options.user.and_then(|u| u.gid),
        read_only_root_filesystem: host.readonly_rootfs.then_some(true),
        ..SecurityContext::default()
    };
    (context != SecurityContext::default()).then_some(context)
}

fn pod_security(options: &CreateOptions) -> Option<PodSecurityContext> {
    let mut context = options
        .experimental
        .security_context
        .clone()
        .unwrap_or_default();
    if !options.host.sysctls.is_empty() {
        let mut sysctls = context.sysctls.take().unwrap_or_default();
        for (name, value) in &options.host.sysctls {
            sysctls.retain(|s| &s.name != name);
            sysctls.push(Sysctl {
                name: name.clone(),
                value: value.clone(),
            });
        }
        context.sysctls = Some(sysctls);
    }
    (context != PodSecurityContext::default()).then_some(context)
}

fn host_aliases(extra_hosts: &[(String, String)]) -> Option<Vec<HostAlias>> {
    let mut by_ip: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (host, ip) in extra_hosts {
        by_ip.entry(ip).or_default().push(host.clone());
    }
    (!by_ip.is_empty()).then(|| {
        by_ip
            .into_iter()
            .map(|(ip, hostnames)| HostAlias {
                ip: ip.to_string(),
                hostnames: Some(hostnames),
            })
            .collect()
    })
}

fn dns_config(options: &CreateOptions) -> Option<PodDNSConfig> {
    let host = &options.host;
    if host.dns.is_empty() && host.dns_search.is_empty() && host.dns_options.is_empty() {
        return None;
    }
    let options = host
        .dns_options
        .iter()
        .map(|o| match o.split_once(':') {
            Some((name, value)) => PodDNSConfigOption {
                name: Some(name.to_string()),
                value: Some(value.to_string()),
            },
            None => PodDNSConfigOption {
                name: Some(o.clone()),
                value: None,
            },
        })
        .collect::<Vec<_>>();
    Some(PodDNSConfig {
        nameservers: (!host.dns.is_empty()).then(|| host.dns.clone()),
        searches: (!host.dns_search.is_empty()).then(|| host.dns_search.clone()),
        options: (!options.is_empty()).then_some(options),
    })
}

/// Docker labels whose keys are valid Kubernetes annotation keys.
pub fn valid_annotations(docker_labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    docker_labels
        .iter()
        .filter(|(k, _)| is_qualified_name(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Notes for Docker labels that cannot be annotation keys.
pub fn invalid_label_notes(docker_labels: &BTreeMap<String, String>) -> Vec<String> {
    docker_labels
        .keys()
        .filter(|k| !is_qualified_name(k))
        .map(|k| {
            format!("createOptions.Labels[{k:?}]: not a valid Kubernetes annotation key; ignored")
        })
        .collect()
}

/// `[prefix/]name` as Kubernetes label and annotation keys require.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    name_ok && prefix_ok
}
