//! Typed reading of Docker `ContainerCreate` options (`createOptions`) and of the
//! `k8s-experimental` section.
//!
//! Keys match case-insensitively, as Docker's own JSON decoding does. A field with the wrong type
//! is a [`SpecError::InvalidCreateOptions`] naming its JSON path. A field that has no Kubernetes
//! equivalent is never dropped silently: it is listed in [`CreateOptions::unsupported`], which the
//! controller copies into the module's status. Fields holding only a zero value (`null`, `false`,
//! `0`, `""`, `[]`, `{}`) are ignored without a note, since they ask for nothing.
//! Field list: `reference/iotedge-runtime.md` §1.6 and `reference/azure-iotedge-k8s.md` §3.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DeploymentStrategy;
use k8s_openapi::api::core::v1::{
    PodSecurityContext, ResourceRequirements, Toleration, Volume, VolumeMount,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::crd::ServiceType;
use crate::error::SpecError;

/// Everything the translation uses from one module's createOptions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOptions {
    /// `Env`: `NAME=value` pairs in order.
    pub env: Vec<(String, String)>,
    /// `Cmd` → container `args`.
    pub cmd: Option<Vec<String>>,
    /// `Entrypoint` → container `command`.
    pub entrypoint: Option<Vec<String>>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User` as numeric ids.
    pub user: Option<User>,
    /// `Labels` → pod and Service annotations.
    pub labels: BTreeMap<String, String>,
    /// `ExposedPorts`.
    pub exposed_ports: Vec<Port>,
    /// `Hostname`.
    pub hostname: Option<String>,
    /// `Tty`.
    pub tty: bool,
    /// `OpenStdin`.
    pub open_stdin: bool,
    /// `Healthcheck` → liveness probe.
    pub healthcheck: Option<Healthcheck>,
    /// `StopTimeout` (seconds) → termination grace period.
    pub stop_timeout: Option<i64>,
    /// `Volumes` (anonymous volumes) → emptyDir mounts.
    pub anonymous_volumes: Vec<String>,
    /// `HostConfig`.
    pub host: HostConfig,
    /// The `k8s-experimental` section.
    pub experimental: Experimental,
    /// Fields that were not applied, as `createOptions.<path>: <why>`.
    pub unsupported: Vec<String>,
}

/// `HostConfig` fields with a Kubernetes equivalent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostConfig {
    /// `Binds` and `Mounts`.
    pub mounts: Vec<Mount>,
    /// `PortBindings`.
    pub port_bindings: Vec<PortBinding>,
    /// `Privileged`.
    pub privileged: bool,
    /// `CapAdd` without `CAP_` prefixes.
    pub cap_add: Vec<String>,
    /// `CapDrop` without `CAP_` prefixes.
    pub cap_drop: Vec<String>,
    /// `NetworkMode: host`.
    pub host_network: bool,
    /// `IpcMode: host`.
    pub host_ipc: bool,
    /// `PidMode: host`.
    pub host_pid: bool,
    /// `Memory` in bytes → memory limit.
    pub memory: Option<i64>,
    /// `MemoryReservation` in bytes → memory request.
    pub memory_reservation: Option<i64>,
    /// `NanoCpus`, or `CpuQuota`/`CpuPeriod`, in milli-CPUs → CPU limit.
    pub cpu_limit_millis: Option<i64>,
    /// `CpuShares` in milli-CPUs (1024 shares = 1 CPU) → CPU request.
    pub cpu_request_millis: Option<i64>,
    /// `Devices`.
    pub devices: Vec<Device>,
    /// `ReadonlyRootfs`.
    pub readonly_rootfs: bool,
    /// `ExtraHosts` as (host names, ip).
    pub extra_hosts: Vec<(String, String)>,
    /// `Dns`.
    pub dns: Vec<String>,
    /// `DnsSearch`.
    pub dns_search: Vec<String>,
    /// `DnsOptions`.
    pub dns_options: Vec<String>,
    /// `ShmSize` in bytes.
    pub shm_size: Option<i64>,
    /// `Tmpfs` mount points.
    pub tmpfs: Vec<String>,
    /// `Sysctls`.
    pub sysctls: BTreeMap<String, String>,
}

/// A numeric `uid[:gid]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: i64,
    /// Group id.
    pub gid: Option<i64>,
}

/// A container port with its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    /// Port number.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (Docker's default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

/// One `PortBindings` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortBinding {
    /// The container port.
    pub container: Port,
    /// The published port; `None` publishes on the container port.
    pub host_port: Option<u16>,
}

/// A volume mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// What is mounted.
    pub source: MountSource,
    /// Path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// The source of a [`Mount`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A host directory (`Binds` with an absolute path, `Mounts` type `bind`) → hostPath.
    HostPath(String),
    /// A Docker named volume → PersistentVolumeClaim.
    Volume(String),
    /// An anonymous volume → emptyDir.
    Anonymous,
    /// A tmpfs mount → emptyDir in memory.
    Tmpfs,
}

/// One `Devices` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Device node on the host.
    pub path_on_host: String,
    /// Path in the container.
    pub path_in_container: String,
}

/// A Docker `Healthcheck`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// Command run in the container.
    pub command: Vec<String>,
    /// Seconds between checks.
    pub interval_secs: i32,
    /// Seconds before a check times out.
    pub timeout_secs: i32,
    /// Failures before the container is unhealthy.
    pub retries: i32,
    /// Seconds to wait before the first check.
    pub start_period_secs: i32,
}

/// The `k8s-experimental` section: Kubernetes settings with no Docker equivalent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Experimental {
    /// Pod `nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// Pod `tolerations`.
    pub tolerations: Vec<Toleration>,
    /// Container `resources`, overriding those from `HostConfig`.
    pub resources: Option<ResourceRequirements>,
    /// Extra pod volumes with their container mounts.
    pub volumes: Vec<ExperimentalVolume>,
    /// Pod `securityContext`.
    pub security_context: Option<PodSecurityContext>,
    /// Service settings.
    pub service_options: Option<ServiceOptions>,
    /// Deployment `strategy`.
    pub strategy: Option<DeploymentStrategy>,
}

/// One `k8s-experimental.volumes` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentalVolume {
    /// The pod volume.
    pub volume: Volume,
    /// Where the module's container mounts it.
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
}

/// `k8s-experimental.serviceOptions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOptions {
    /// Service type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,
    /// Requested load balancer address.
    #[serde(
        default,
        rename = "loadBalancerIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_balancer_ip: Option<String>,
    /// Source ranges allowed through the load balancer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_source_ranges: Vec<String>,
    /// `Cluster` or `Local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<String>,
    /// `None` or `ClientIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<String>,
    /// Annotations for the Service (e.g. cloud load balancer settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Reads a module's createOptions (a JSON object, or absent).
pub fn parse(module: &str, value: Option<&Value>) -> Result<CreateOptions, SpecError> {
    let mut parser = Parser {
        module,
        unsupported: Vec::new(),
    };
    let mut options = CreateOptions::default();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => parser.top_level(map, &mut options)?,
        Some(other) => return Err(parser.invalid("", "a JSON object", other)),
    }
    options.unsupported = parser.unsupported;
    Ok(options)
}

struct Parser<'a> {
    module: &'a str,
    unsupported: Vec<String>,
}

/// What CPU figures must fit: Kubernetes millicores are computed as `value × 1000`.
const CPU_RANGE: &str = "a non-negative integer below 9223372036854775 (i64::MAX / 1000)";

impl Parser<'_> {
    fn invalid(&self, path: &str, expected: &'static str, found: &Value) -> SpecError {
        let mut found = found.to_string();
        if found.len() > 80 {
            let cut = (0..=80)
                .rev()
                .find(|i| found.is_char_boundary(*i))
                .unwrap_or(0);
            found.truncate(cut);
            found.push('…');
        }
        SpecError::InvalidCreateOptions {
            module: self.module.to_string(),
            path: path.to_string(),
            expected,
            found,
        }
    }

    fn note(&mut self, path: &str, why: &str) {
        self.unsupported.push(format!("createOptions{path}: {why}"));
    }

    fn note_unknown(&mut self, path: &str, value: &Value) {
        if !is_zero(value) {
            self.note(path, "not supported on Kubernetes; ignored");
        }
    }

    fn top_level(
        &mut self,
        map: &Map<String, Value>,
        o: &mut CreateOptions,
    ) -> Result<(), SpecError> {
        for (key, value) in map {
            let path = format!(".{key}");
            if value.is_null() {
                continue;
            }
            match key.to_ascii_lowercase().as_str() {
                "env" => o.env = self.env(&path, value)?,
                "cmd" => o.cmd = Some(self.str_slice(&path, value)?),
                "entrypoint" => o.entrypoint = Some(self.str_slice(&path, value)?),
                "workingdir" => o.working_dir = non_empty(self.string(&path, value)?),
                "user" => o.user = self.user(&path, value)?,
                "labels" => o.labels = self.string_map(&path, value)?,
                "exposedports" => o.exposed_ports = self.exposed_ports(&path, value)?,
                "hostname" => o.hostname = non_empty(self.string(&path, value)?),
                "tty" => o.tty = self.boolean(&path, value)?,
                "openstdin" => o.open_stdin = self.boolean(&path, value)?,
                "healthcheck" => o.healthcheck = self.healthcheck(&path, value)?,
                "stoptimeout" => o.stop_timeout = Some(self.integer(&path, value)?),
                "volumes" => {
                    o.anonymous_volumes = self.object(&path, value)?.keys().cloned().collect()
                }
                "hostconfig" => self.host_config(&path, value, &mut o.host)?,
                "k8s-experimental" => o.experimental = self.experimental(&path, value)?,
                "image" => self.note(&path, "ignored; the module's image is used"),
                _ => self.note_unknown(&path, value),
            }
        }
        Ok(())
    }

    fn host_config(
        &mut self,
        path: &str,
        value: &Value,
        h: &mut HostConfig,
    ) -> Result<(), SpecError> {
        for (key, value) in self.object(path, value)? {
            let path = format!("{path}.{key}");
            if value.is_null() {
                continue;
            }
            match key.to_ascii_lowercase().as_str() {
                "binds" => {
                    for (i, item) in self.array(&path, value)?.iter().enumerate() {
                        let bind = self.bind(&format!("{path}[{i}]"), item)?;
                        h.mounts.push(bind);
                    }
                }
                "mounts" => {
                    for (i, item) in self.array(&path, value)?.iter().enumerate() {
                        if let Some(mount) = self.mount(&format!("{path}[{i}]"), item)? {
                            h.mounts.push(mount);
                        }
                    }
                }
                "portbindings" => h.port_bindings = self.port_bindings(&path, value)?,
                "privileged" => h.privileged = self.boolean(&path, value)?,
                "capadd" => h.cap_add = self.capabilities(&path, value)?,
                "capdrop" => h.cap_drop = self.capabilities(&path, value)?,
                "networkmode" => match self.string(&path, value)?.as_str() {
                    "host" => h.host_network = true,
                    "" | "default" | "bridge" | "azure-iot-edge" => {}
                    _ => self.note(&path, "only \"host\" is supported; the pod network is used"),
                },
                "ipcmode" => match self.string(&path, value)?.as_str() {
                    "host" => h.host_ipc = true,
                    "" | "private" | "shareable" => {}
                    _ => self.note(&path, "only \"host\" is supported; ignored"),
                },
                "pidmode" => match self.string(&path, value)?.as_str() {
                    "host" => h.host_pid = true,
                    "" => {}
                    _ => self.note(&path, "only \"host\" is supported; ignored"),
                },
                "memory" => h.memory = self.positive(&path, value)?,
                "memoryreservation" => h.memory_reservation = self.positive(&path, value)?,
                "nanocpus" => {
                    h.cpu_limit_millis =
                        self.positive(&path, value)?.map(|n| (n / 1_000_000).max(1));
                }
                "cpuquota" | "cpuperiod" => {
                    self.integer(&path, value)?;
                }
                "cpushares" => {
                    h.cpu_request_millis = match self.positive(&path, value)? {
                        Some(n) => Some(
                            n.checked_mul(1000)
                                .ok_or_else(|| self.invalid(&path, CPU_RANGE, value))?
                                / 1024,
                        )
                        .map(|m| m.max(1)),
                        None => None,
                    };
                }
                "devices" => {
                    for (i, item) in self.array(&path, value)?.iter().enumerate() {
                        h.devices.push(self.device(&format!("{path}[{i}]"), item)?);
                    }
                }
                "readonlyrootfs" => h.readonly_rootfs = self.boolean(&path, value)?,
                "extrahosts" => {
                    for (i, item) in self.array(&path, value)?.iter().enumerate() {
                        let path = format!("{path}[{i}]");
                        let entry = self.string(&path, item)?;
                        match entry.rsplit_once(':').or_else(|| entry.rsplit_once('=')) {
                            Some((host, ip)) if !host.is_empty() && !ip.is_empty() => {
                                h.extra_hosts.push((host.to_string(), ip.to_string()));
                            }
                            _ => return Err(self.invalid(&path, "\"host:ip\"", item)),
                        }
                    }
                }
                "dns" => h.dns = self.strings(&path, value)?,
                "dnssearch" => h.dns_search = self.strings(&path, value)?,
                "dnsoptions" => h.dns_options = self.strings(&path, value)?,
                "shmsize" => h.shm_size = self.positive(&path, value)?,
                "tmpfs" => h.tmpfs = self.string_map(&path, value)?.into_keys().collect(),
                "sysctls" => h.sysctls = self.string_map(&path, value)?,
                "restartpolicy" => {
                    if !is_zero(value) {
                        self.note(&path, "ignored; the module's restartPolicy applies");
                    }
                }
                _ => self.note_unknown(&path, value),
            }
        }
        let map = self.object(path, value)?;
        let quota = get_ci(map, "CpuQuota")
            .and_then(Value::as_i64)
            .filter(|q| *q > 0);
        let period = get_ci(map, "CpuPeriod")
            .and_then(Value::as_i64)
            .filter(|p| *p > 0);
        if h.cpu_limit_millis.is_none()
            && let Some(quota) = quota
        {
            let millis = quota.checked_mul(1000).ok_or_else(|| {
                self.invalid(&format!("{path}.CpuQuota"), CPU_RANGE, &Value::from(quota))
            })? / period.unwrap_or(100_000);
            h.cpu_limit_millis = Some(millis.max(1));
        }
        if let (Some(limit), Some(request)) = (h.memory, h.memory_reservation)
            && request > limit
        {
            return Err(self.invalid(
                &format!("{path}.MemoryReservation"),
                "at most HostConfig.Memory",
                &Value::from(request),
            ));
        }
        if let (Some(limit), Some(request)) = (h.cpu_limit_millis, h.cpu_request_millis)
            && request > limit
        {
            return Err(self.invalid(
                &format!("{path}.CpuShares"),
                "a CPU share below the NanoCpus limit",
                &Value::from(request),
            ));
        }
        for device in &h.devices {
            if !h.privileged {
                let why = format!(
                    "device {} is mounted from the host, but the container can only open it \
                     with Privileged or a device plugin (cgroup permissions are not applied)",
                    device.path_on_host
                );
                self.note(&format!("{path}.Devices"), &why);
            }
        }
        Ok(())
    }

    fn experimental(&mut self, path: &str, value: &Value) -> Result<Experimental, SpecError> {
        let mut e = Experimental::default();
        for (key, value) in self.object(path, value)? {
            let path = format!("{path}.{key}");
            if value.is_null() {
                continue;
            }
            match key.to_ascii_lowercase().as_str() {
                "nodeselector" => e.node_selector = self.string_map(&path, value)?,
                "tolerations" => {
                    e.tolerations = self.typed(&path, value, "a list of Tolerations")?
                }
                "resources" => {
                    e.resources = Some(self.typed(&path, value, "ResourceRequirements")?)
                }
                "volumes" => {
                    e.volumes = self.typed(&path, value, "a list of {volume, volumeMounts}")?;
                }
                "securitycontext" => {
                    e.security_context = Some(self.typed(&path, value, "a PodSecurityContext")?);
                }
                "serviceoptions" => {
                    e.service_options = Some(self.typed(&path, value, "serviceOptions")?);
                }
                "strategy" => {
                    e.strategy = Some(self.typed(&path, value, "a DeploymentStrategy")?)
                }
                _ => self.note_unknown(&path, value),
            }
        }
        Ok(e)
    }

    /// Deserialises a Kubernetes type and notes every input field the type does not know,
    /// since serde would drop it silently.
    fn typed<T: DeserializeOwned + Serialize>(
        &mut self,
        path: &str,
        value: &Value,
        expected: &'static str,
    ) -> Result<T, SpecError> {
        let typed: T = serde_json::from_value(value.clone())
            .map_err(|_| self.invalid(path, expected, value))?;
        let back = serde_json::to_value(&typed).unwrap_or(Value::Null);
        let mut dropped = Vec::new();
        dropped_fields(path, value, &back, &mut dropped);
        for field in dropped {
            self.note(&field, "unknown field; ignored");
        }
        Ok(typed)
    }

    fn env(&mut self, path: &str, value: &Value) -> Result<Vec<(String, String)>, SpecError> {
        let mut env = Vec::new();
        for (i, item) in self.array(path, value)?.iter().enumerate() {
            let path = format!("{path}[{i}]");
            let entry = self.string(&path, item)?;
            match entry.split_once('=') {
                Some((name, value)) if !name.is_empty() => {
                    env.push((name.to_string(), value.to_string()));
                }
                _ => self.note(&path, "has no NAME=value form; ignored"),
            }
        }
        Ok(env)
    }

    fn user(&mut self, path: &str, value: &Value) -> Result<Option<User>, SpecError> {
        let text = self.string(path, value)?;
        if text.is_empty() {
            return Ok(None);
        }
        let (uid, gid) = match text.split_once(':') {
            Some((uid, gid)) => (uid, Some(gid)),
            None => (text.as_str(), None),
        };
        let uid = uid.parse::<i64>().ok();
        let gid = gid.map(|g| g.parse::<i64>().ok());
        match (uid, gid) {
            (Some(uid), None) => Ok(Some(User { uid, gid: None })),
            (Some(uid), Some(Some(gid))) => Ok(Some(User {
                uid,
                gid: Some(gid),
            })),
            _ => {
                self.note(
                    path,
                    "user names need the image's /etc/passwd; use numeric uid[:gid]",
                );
                Ok(None)
            }
        }
    }

    fn exposed_ports(&mut self, path: &str, value: &Value) -> Result<Vec<Port>, SpecError> {
        let mut ports = Vec::new();
        for key in self.object(path, value)?.keys() {
            ports.push(self.port(&format!("{path}[{key:?}]"), key)?);
        }
        ports.sort();
        ports.dedup();
        Ok(ports)
    }

    fn port_bindings(&mut self, path: &str, value: &Value) -> Result<Vec<PortBinding>, SpecError> {
        let mut bindings = Vec::new();
        for (key, hosts) in self.object(path, value)? {
            let path = format!("{path}[{key:?}]");
            let container = self.port(&path, key)?;
            let hosts = match hosts {
                Value::Null => &Vec::new(),
                other => self.array(&path, other)?,
            };
            if hosts.is_empty() {
                bindings.push(PortBinding {
                    container,
                    host_port: None,
                });
            }
            for (i, host) in hosts.iter().enumerate() {
                let path = format!("{path}[{i}]");
                let map = self.object(&path, host)?;
                for (key, option) in map {
                    if !key.eq_ignore_ascii_case("HostIp") && !key.eq_ignore_ascii_case("HostPort")
                    {
                        self.note_unknown(&format!("{path}.{key}"), option);
                    }
                }
                if get_ci(map, "HostIp").is_some_and(|ip| !is_zero(ip)) {
                    self.note(
                        &format!("{path}.HostIp"),
                        "Services listen on all addresses; ignored",
                    );
                }
                let host_port =
                    match get_ci(map, "HostPort") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) if s.is_empty() => None,
                        Some(Value::String(s)) => Some(s.parse::<u16>().map_err(|_| {
                            self.invalid(
                                &format!("{path}.HostPort"),
                                "a port number",
                                &Value::from(s.as_str()),
                            )
                        })?),
                        Some(Value::Number(n)) => {
                            Some(n.as_u64().and_then(|n| u16::try_from(n).ok()).ok_or_else(
                                || self.invalid(&format!("{path}.HostPort"), "a port number", host),
                            )?)
                        }
                        Some(other) => {
                            return Err(self.invalid(
                                &format!("{path}.HostPort"),
                                "a port number",
                                other,
                            ));
                        }
                    };
                if host_port == Some(0) {
                    return Err(self.invalid(
                        &format!("{path}.HostPort"),
                        "a port number from 1",
                        host,
                    ));
                }
                bindings.push(PortBinding {
                    container,
                    host_port,
                });
            }
        }
        Ok(bindings)
    }

    /// `"80/tcp"`, `"53/udp"` or `"80"`.
    fn port(&self, path: &str, spec: &str) -> Result<Port, SpecError> {
        let (number, protocol) = spec.split_once('/').unwrap_or((spec, "tcp"));
        let protocol = match protocol.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => {
                return Err(self.invalid(
                    path,
                    "a protocol of tcp, udp or sctp",
                    &Value::from(spec),
                ));
            }
        };
        match number.parse::<u16>() {
            Ok(port) if port > 0 => Ok(Port { port, protocol }),
            _ => Err(self.invalid(
                path,
                "\"<port>/<protocol>\" with a port from 1 to 65535",
                &Value::from(spec),
            )),
        }
    }

    /// `source:target[:options]`.
    fn bind(&mut self, path: &str, value: &Value) -> Result<Mount, SpecError> {
        let text = self.string(path, value)?;
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, options) = match parts.as_slice() {
            [source, target] => (*source, *target, ""),
            [source, target, options] => (*source, *target, *options),
            _ => return Err(self.invalid(path, "\"source:target[:options]\"", value)),
        };
        if source.is_empty() || !target.starts_with('/') {
            return Err(self.invalid(
                path,
                "\"source:target[:options]\" with an absolute target",
                value,
            ));
        }
        let mut read_only = false;
        for option in options.split(',').filter(|o| !o.is_empty()) {
            match option {
                "ro" => read_only = true,
                "rw" => {}
                _ => self.note(
                    path,
                    &format!("bind option {option:?} is not supported; ignored"),
                ),
            }
        }
        let source = if source.starts_with('/') {
            MountSource::HostPath(source.to_string())
        } else {
            MountSource::Volume(source.to_string())
        };
        Ok(Mount {
            source,
            target: target.to_string(),
            read_only,
        })
    }

    fn mount(&mut self, path: &str, value: &Value) -> Result<Option<Mount>, SpecError> {
        let map = self.object(path, value)?;
        let field = |name: &str| {
            get_ci(map, name)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let target = field("Target");
        if !target.starts_with('/') {
            return Err(self.invalid(&format!("{path}.Target"), "an absolute path", value));
        }
        let source = field("Source");
        let read_only = match get_ci(map, "ReadOnly") {
            None | Some(Value::Null) => false,
            Some(v) => self.boolean(&format!("{path}.ReadOnly"), v)?,
        };
        let source = match field("Type").to_ascii_lowercase().as_str() {
            "bind" if source.starts_with('/') => MountSource::HostPath(source.to_string()),
            "bind" => {
                return Err(self.invalid(
                    &format!("{path}.Source"),
                    "an absolute host path",
                    value,
                ));
            }
            "volume" | "" if source.is_empty() => MountSource::Anonymous,
            "volume" | "" => MountSource::Volume(source.to_string()),
            "tmpfs" => MountSource::Tmpfs,
            other => {
                let why = format!("mount type {other:?} is not supported; ignored");
                self.note(path, &why);
                return Ok(None);
            }
        };
        for (key, option) in map {
            let known = ["type", "source", "target", "readonly"];
            if !known.contains(&key.to_ascii_lowercase().as_str()) {
                self.note_unknown(&format!("{path}.{key}"), option);
            }
        }
        Ok(Some(Mount {
            source,
            target: target.to_string(),
            read_only,
        }))
    }

    fn device(&mut self, path: &str, value: &Value) -> Result<Device, SpecError> {
        let map = self.object(path, value)?;
        let host = get_ci(map, "PathOnHost")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !host.starts_with('/') {
            return Err(self.invalid(&format!("{path}.PathOnHost"), "an absolute path", value));
        }
        let container = get_ci(map, "PathInContainer")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .unwrap_or(host);
        if !container.starts_with('/') {
            return Err(self.invalid(
                &format!("{path}.PathInContainer"),
                "an absolute path",
                value,
            ));
        }
        Ok(Device {
            path_on_host: host.to_string(),
            path_in_container: container.to_string(),
        })
    }

    fn healthcheck(&mut self, path: &str, value: &Value) -> Result<Option<Healthcheck>, SpecError> {
        let map = self.object(path, value)?;
        let test_path = format!("{path}.Test");
        let test = match get_ci(map, "Test") {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => self.strings(&test_path, v)?,
        };
        let command = match test.split_first() {
            None => return Ok(None),
            Some((kind, _)) if kind == "NONE" => return Ok(None),
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
            Some((kind, rest)) if kind == "CMD-SHELL" && rest.len() == 1 => {
                vec!["/bin/sh".to_string(), "-c".to_string(), rest[0].clone()]
            }
            _ => {
                return Err(self.invalid(
                    &test_path,
                    "[\"CMD\", …], [\"CMD-SHELL\", cmd] or [\"NONE\"]",
                    value,
                ));
            }
        };
        let seconds = |this: &Self, name: &str, default: i32| -> Result<i32, SpecError> {
            match get_ci(map, name) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => {
                    let nanos = v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                        this.invalid(&format!("{path}.{name}"), "a duration in nanoseconds", v)
                    })?;
                    if nanos == 0 {
                        return Ok(default);
                    }
                    let secs = (nanos + 999_999_999) / 1_000_000_000;
                    Ok(i32::try_from(secs).unwrap_or(i32::MAX))
                }
            }
        };
        let retries = match get_ci(map, "Retries") {
            None | Some(Value::Null) => 3,
            Some(v) => match v.as_i64() {
                Some(0) => 3,
                Some(n) if n > 0 => i32::try_from(n).unwrap_or(i32::MAX),
                _ => return Err(self.invalid(&format!("{path}.Retries"), "a positive integer", v)),
            },
        };
        Ok(Some(Healthcheck {
            command,
            interval_secs: seconds(self, "Interval", 30)?,
            timeout_secs: seconds(self, "Timeout", 30)?,
            retries,
            start_period_secs: seconds(self, "StartPeriod", 0)?,
        }))
    }

    fn capabilities(&self, path: &str, value: &Value) -> Result<Vec<String>, SpecError> {
        Ok(self
            .strings(path, value)?
            .into_iter()
            .map(|c| {
                let upper = c.to_ascii_uppercase();
                upper
                    .strip_prefix("CAP_")
                    .map(str::to_string)
                    .unwrap_or(upper)
            })
            .collect())
    }

    fn object<'v>(
        &self,
        path: &str,
        value: &'v Value,
    ) -> Result<&'v Map<String, Value>, SpecError> {
        value
            .as_object()
            .ok_or_else(|| self.invalid(path, "a JSON object", value))
    }

    fn array<'v>(&self, path: &str, value: &'v Value) -> Result<&'v Vec<Value>, SpecError> {
        value
            .as_array()
            .ok_or_else(|| self.invalid(path, "a list", value))
    }

    fn string(&self, path: &str, value: &Value) -> Result<String, SpecError> {
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.invalid(path, "a string", value))
    }

    fn boolean(&self, path: &str, value: &Value) -> Result<bool, SpecError> {
        value
            .as_bool()
            .ok_or_else(|| self.invalid(path, "true or false", value))
    }

    fn integer(&self, path: &str, value: &Value) -> Result<i64, SpecError> {
        value
            .as_i64()
            .ok_or_else(|| self.invalid(path, "an integer", value))
    }

    /// A non-negative integer, where 0 means "not set" as in Docker.
    fn positive(&self, path: &str, value: &Value) -> Result<Option<i64>, SpecError> {
        match value.as_i64() {
            Some(0) => Ok(None),
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(self.invalid(path, "a non-negative integer", value)),
        }
    }

    fn strings(&self, path: &str, value: &Value) -> Result<Vec<String>, SpecError> {
        self.array(path, value)?
            .iter()
            .enumerate()
            .map(|(i, item)| self.string(&format!("{path}[{i}]"), item))
            .collect()
    }

    /// Docker's `StrSlice`: a list of strings, or one string.
    fn str_slice(&self, path: &str, value: &Value) -> Result<Vec<String>, SpecError> {
        match value {
            Value::String(s) => Ok(vec![s.clone()]),
            _ => self.strings(path, value),
        }
    }

    fn string_map(&self, path: &str, value: &Value) -> Result<BTreeMap<String, String>, SpecError> {
        self.object(path, value)?
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Object(o) if o.is_empty() => Ok((k.clone(), String::new())),
                _ => Err(self.invalid(&format!("{path}[{k:?}]"), "a string", v)),
            })
            .collect()
    }
}

fn get_ci<'v>(map: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Whether a JSON value asks for nothing.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Paths of object fields present in `input` but missing from `typed` (its typed round trip).
fn dropped_fields(path: &str, input: &Value, typed: &Value, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            for (key, value) in i {
                let child = format!("{path}.{key}");
                match t.get(key) {
                    Some(back) => dropped_fields(&child, value, back, out),
                    None if !value.is_null() => out.push(child),
                    None => {}
                }
            }
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (value, back)) in i.iter().zip(t).enumerate() {
                dropped_fields(&format!("{path}[{n}]"), value, back, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_ok(v: Value) -> CreateOptions {
        parse("m", Some(&v)).unwrap()
    }

    #[test]
    fn absent_or_empty_options_ask_for_nothing() {
        assert_eq!(parse("m", None).unwrap(), CreateOptions::default());
        assert_eq!(parse_ok(json!({})), CreateOptions::default());
    }

    #[test]
    fn keys_match_case_insensitively() {
        let o = parse_ok(
            json!({"cmd": ["a"], "ENTRYPOINT": "run", "hostConfig": {"privileged": true}}),
        );
        assert_eq!(o.cmd, Some(vec!["a".into()]));
        assert_eq!(o.entrypoint, Some(vec!["run".into()]));
        assert!(o.host.privileged);
    }

    #[test]
    fn env_entries_split_on_the_first_equals_sign() {
        let o = parse_ok(json!({"Env": ["A=1", "B=x=y", "C=", "NOVALUE"]}));
        assert_eq!(
            o.env,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("C".into(), "".into())
            ]
        );
        assert_eq!(
            o.unsupported,
            ["createOptions.Env[3]: has no NAME=value form; ignored"]
        );
    }

    #[test]
    fn wrong_types_name_the_json_path() {
        let err = parse(
            "sensor",
            Some(&json!({"HostConfig": {"Binds": ["/a:/b", 7]}})),
        )
        .unwrap_err();
        assert_eq!(
            err,
            SpecError::InvalidCreateOptions {
                module: "sensor".into(),
                path: ".HostConfig.Binds[1]".into(),
                expected: "a string",
                found: "7".into(),
            }
        );
        assert!(
            err.to_string()
                .contains("createOptions.HostConfig.Binds[1]"),
            "{err}"
        );
        assert!(parse("m", Some(&json!("{}"))).is_err());
    }

    #[test]
    fn ports_and_bindings_are_parsed_with_protocols() {
        let o = parse_ok(json!({
            "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
            "HostConfig": {"PortBindings": {"8883/tcp": [{"HostPort": "18883"}], "443": [{"HostPort": ""}]}}
        }));
        assert_eq!(
            o.exposed_ports,
            [
                Port {
                    port: 53,
                    protocol: Protocol::Udp
                },
                Port {
                    port: 80,
                    protocol: Protocol::Tcp
                }
            ]
        );
        assert_eq!(o.host.port_bindings.len(), 2);
        assert!(o.host.port_bindings.contains(&PortBinding {
            container: Port {
                port: 8883,
                protocol: Protocol::Tcp
            },
            host_port: Some(18883)
        }));
        assert!(parse("m", Some(&json!({"ExposedPorts": {"80/icmp": {}}}))).is_err());
        assert!(parse("m", Some(&json!({"ExposedPorts": {"99999/tcp": {}}}))).is_err());
    }

    #[test]
    fn binds_and_mounts_become_host_paths_volumes_and_tmpfs() {
        let o = parse_ok(json!({"HostConfig": {
            "Binds": ["/var/data:/data:ro", "store:/store", "/x:/y:z"],
            "Mounts": [{"Type": "volume", "Source": "cache", "Target": "/cache", "ReadOnly": true},
                       {"Type": "tmpfs", "Target": "/tmp"},
                       {"Type": "npipe", "Source": "x", "Target": "/p"}]
        }}));
        let sources: Vec<_> = o
            .host
            .mounts
            .iter()
            .map(|m| (&m.source, m.target.as_str(), m.read_only))
            .collect();
        assert_eq!(
            sources,
            [
                (&MountSource::HostPath("/var/data".into()), "/data", true),
                (&MountSource::Volume("store".into()), "/store", false),
                (&MountSource::HostPath("/x".into()), "/y", false),
                (&MountSource::Volume("cache".into()), "/cache", true),
                (&MountSource::Tmpfs, "/tmp", false),
            ]
        );
        assert_eq!(o.unsupported.len(), 2, "{:?}", o.unsupported);
        assert!(
            parse(
                "m",
                Some(&json!({"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/a"}]}}))
            )
            .is_err()
        );
    }

    #[test]
    fn resources_convert_to_milli_cpus_and_check_requests_against_limits() {
        let o = parse_ok(
            json!({"HostConfig": {"Memory": 536870912, "NanoCpus": 1500000000, "CpuShares": 512}}),
        );
        assert_eq!(o.host.memory, Some(536_870_912));
        assert_eq!(o.host.cpu_limit_millis, Some(1500));
        assert_eq!(o.host.cpu_request_millis, Some(500));
        let quota = parse_ok(json!({"HostConfig": {"CpuQuota": 50000, "CpuPeriod": 100000}}));
        assert_eq!(quota.host.cpu_limit_millis, Some(500));
        let err = parse(
            "m",
            Some(&json!({"HostConfig": {"Memory": 10, "MemoryReservation": 20}})),
        )
        .unwrap_err();
        assert!(err.to_string().contains("MemoryReservation"), "{err}");
    }

    #[test]
    fn cpu_figures_too_large_for_millicores_are_errors_naming_the_field() {
        for (key, path) in [
            ("CpuShares", "HostConfig.CpuShares"),
            ("CpuQuota", "HostConfig.CpuQuota"),
        ] {
            let err = parse("m", Some(&json!({"HostConfig": {key: i64::MAX}}))).unwrap_err();
            assert!(err.to_string().contains(path), "{key}: {err}");
        }
        let near = parse_ok(json!({"HostConfig": {"CpuShares": i64::MAX / 1000}}));
        assert!(near.host.cpu_request_millis.is_some_and(|m| m > 0));
    }

    #[test]
    fn unknown_keys_of_a_port_binding_are_reported() {
        let o = parse_ok(
            json!({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080", "X": 1}]}}}),
        );
        assert_eq!(
            o.unsupported,
            [
                "createOptions.HostConfig.PortBindings[\"80/tcp\"][0].X: not supported on Kubernetes; ignored"
            ]
        );
    }

    #[test]
    fn unknown_and_unsupported_fields_are_reported_unless_zero() {
        let o = parse_ok(json!({
            "StopSignal": "SIGINT",
            "AttachStdout": false,
            "HostConfig": {"LogConfig": {"Type": "json-file"}, "Ulimits": [], "RestartPolicy": {"Name": "always"}},
            "NetworkingConfig": {"EndpointsConfig": {"host": {}}}
        }));
        assert_eq!(
            o.unsupported,
            [
                "createOptions.StopSignal: not supported on Kubernetes; ignored",
                "createOptions.HostConfig.LogConfig: not supported on Kubernetes; ignored",
                "createOptions.HostConfig.RestartPolicy: ignored; the module's restartPolicy applies",
                "createOptions.NetworkingConfig: not supported on Kubernetes; ignored",
            ]
        );
    }

    #[test]
    fn healthcheck_becomes_a_probe_in_seconds() {
        let o = parse_ok(
            json!({"Healthcheck": {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 10000000000u64, "Retries": 5}}),
        );
        assert_eq!(
            o.healthcheck,
            Some(Healthcheck {
                command: vec!["/bin/sh".into(), "-c".into(), "curl -f localhost".into()],
                interval_secs: 10,
                timeout_secs: 30,
                retries: 5,
                start_period_secs: 0,
            })
        );
        assert_eq!(
            parse_ok(json!({"Healthcheck": {"Test": ["NONE"]}})).healthcheck,
            None
        );
    }

    #[test]
    fn user_capabilities_and_host_modes_are_read() {
        let o = parse_ok(json!({"User": "1000:2000", "HostConfig": {
            "CapAdd": ["CAP_NET_ADMIN", "sys_time"], "CapDrop": ["ALL"],
            "NetworkMode": "host", "IpcMode": "host", "PidMode": "host"}}));
        assert_eq!(
            o.user,
            Some(User {
                uid: 1000,
                gid: Some(2000)
            })
        );
        assert_eq!(o.host.cap_add, ["NET_ADMIN", "SYS_TIME"]);
        assert_eq!(o.host.cap_drop, ["ALL"]);
        assert!(o.host.host_network && o.host.host_ipc && o.host.host_pid);
        let named = parse_ok(json!({"User": "app"}));
        assert_eq!(named.user, None);
        assert_eq!(named.unsupported.len(), 1);
    }

    #[test]
    fn experimental_section_is_typed_and_unknown_fields_are_reported() {
        let o = parse_ok(json!({"k8s-experimental": {
            "NodeSelector": {"disktype": "ssd"},
            "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
            "resources": {"limits": {"cpu": "1"}},
            "volumes": [{"volume": {"name": "cfg", "configMap": {"name": "cfg"}, "bogus": 1},
                         "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}],
            "securityContext": {"runAsUser": 1000},
            "serviceOptions": {"type": "LoadBalancer", "loadBalancerIP": "10.0.0.1"},
            "strategy": {"type": "Recreate"},
            "affinity": {"x": 1}
        }}));
        let e = &o.experimental;
        assert_eq!(e.node_selector["disktype"], "ssd");
        assert_eq!(e.tolerations.len(), 1);
        assert_eq!(e.volumes[0].volume_mounts[0].mount_path, "/etc/cfg");
        assert_eq!(
            e.service_options.as_ref().unwrap().type_,
            Some(ServiceType::LoadBalancer)
        );
        assert_eq!(
            o.unsupported,
            [
                "createOptions.k8s-experimental.volumes[0].volume.bogus: unknown field; ignored",
                "createOptions.k8s-experimental.affinity: not supported on Kubernetes; ignored",
            ]
        );
        let err = parse(
            "m",
            Some(&json!({"k8s-experimental": {"tolerations": {"a": 1}}})),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("k8s-experimental.tolerations"),
            "{err}"
        );
    }

    #[test]
    fn devices_without_privileged_are_mounted_with_a_note() {
        let o = parse_ok(
            json!({"HostConfig": {"Devices": [{"PathOnHost": "/dev/ttyUSB0", "PathInContainer": "/dev/ttyUSB0", "CgroupPermissions": "rwm"}]}}),
        );
        assert_eq!(o.host.devices[0].path_on_host, "/dev/ttyUSB0");
        assert_eq!(o.unsupported.len(), 1);
    }
}
