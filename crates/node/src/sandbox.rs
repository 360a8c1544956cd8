//! A pod's sandbox: its directory under the state dir, its address and network namespace (or the
//! host network), its hosts and resolv.conf files, its volumes, and the host-port forwarders on
//! its loopback. Created before the first container starts, updated when Services change, and
//! torn down when the pod stops.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use tokio_util::sync::CancellationToken;

use crate::context::{NodeContext, ServiceSnapshot};
use crate::env::EnvInputs;
use crate::error::{ConfigError, Error, Result};
use crate::hosts::{HostsInputs, pad_to, render_hosts, render_resolv_conf};
use crate::network::{apply_rules, netns_path};
use crate::nft::render_ruleset;
use crate::ownership::{fs_group, set_volume_ownership};
use crate::provisioner::claim_path;
use crate::proxy::{bind_in_netns, forward};
use crate::settings::HOST_ALIAS;
use crate::volumes::{VolumeSource, token_sources, volume_source, write_atomically};

/// A pod's sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// `<state>/pods/<ns>_<name>_<uid>`.
    pub dir: PathBuf,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// Network namespace name; `None` on the host network.
    pub netns: Option<String>,
    /// The hosts file bind-mounted at /etc/hosts.
    pub hosts_file: PathBuf,
    /// The resolv.conf bind-mounted at /etc/resolv.conf.
    pub resolv_file: PathBuf,
    /// Host path of each volume, by name.
    pub volumes: BTreeMap<String, VolumePath>,
    /// When projected tokens must be refreshed.
    pub token_refresh: Option<Timestamp>,
    forwarders: CancellationToken,
    rules: String,
    hosts: String,
    /// Writable volumes already given the pod's `fsGroup` (kubelet does it once per mount).
    owned: BTreeSet<String>,
}

/// Where a volume lives on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePath {
    /// The path.
    pub path: PathBuf,
    /// Generated content (always mounted read-only, as kubelet does).
    pub generated: bool,
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// The pod's directory name.
pub fn pod_dir(ctx: &NodeContext, pod: &Pod) -> PathBuf {
    ctx.settings.state_dir.join("pods").join(format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
        uid(pod)
    ))
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

impl Sandbox {
    /// Creates the pod's directory, address and network.
    pub async fn create(ctx: &Arc<NodeContext>, pod: &Pod) -> Result<Self> {
        let dir = pod_dir(ctx, pod);
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let snapshot = ctx.services.borrow().clone();
        let (ip, netns, rules) = if host_network(pod) {
            (ctx.host_ip(), None, String::new())
        } else {
            let ip = ctx.ips().allocate().ok_or_else(|| Error::NoFreeNetwork {
                range: format!("{} (all pod addresses in use)", ctx.network.cidr),
            })?;
            let rules = render_ruleset(&snapshot.table, ctx.network.cidr);
            match ctx.network.create_pod(&uid(pod), ip, &rules).await {
                Ok(ns) => (ip, Some(ns), rules),
                Err(e) => {
                    ctx.ips().release(ip);
                    return Err(e);
                }
            }
        };
        let mut sandbox = Self {
            hosts_file: dir.join("etc-hosts"),
            resolv_file: dir.join("resolv.conf"),
            dir,
            ip,
            netns,
            volumes: BTreeMap::new(),
            token_refresh: None,
            forwarders: CancellationToken::new(),
            rules,
            hosts: String::new(),
            owned: BTreeSet::new(),
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let resolv = render_resolv_conf(&ns, &ctx.settings.cluster_domain);
        std::fs::write(&sandbox.resolv_file, resolv).map_err(Error::io(&sandbox.resolv_file))?;
        sandbox.write_hosts(ctx, pod, &snapshot)?;
        sandbox.start_forwarders(ctx).await;
        Ok(sandbox)
    }

    /// The network namespace path for `nsenter`.
    pub fn netns_path(&self) -> Option<PathBuf> {
        self.netns.as_deref().map(netns_path)
    }

    async fn start_forwarders(&self, ctx: &Arc<NodeContext>) {
        let Some(path) = self.netns_path() else {
            return;
        };
        for &port in &ctx.settings.host_ports {
            let inside = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match bind_in_netns(&path, inside).await {
                Ok(listener) => {
                    tokio::spawn(forward(listener, inside, self.forwarders.clone()));
                }
                Err(e) => tracing::warn!(port, error = %e, "host port not forwarded into the pod"),
            }
        }
    }

    fn write_hosts(
        &mut self,
        ctx: &NodeContext,
        pod: &Pod,
        snapshot: &ServiceSnapshot,
    ) -> Result<()> {
        let spec = pod.spec.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let hostname = spec.hostname.clone().unwrap_or(name);
        let aliases = spec.host_aliases.clone().unwrap_or_default();
        let node_aliases = [(HOST_ALIAS.to_string(), ctx.network.gateway())];
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let inputs = HostsInputs {
            namespace: &ns,
            hostname: &hostname,
            subdomain: spec.subdomain.as_deref(),
            pod_ip: Some(self.ip),
            cluster_domain: &ctx.settings.cluster_domain,
            host_aliases: &aliases,
            node_aliases: &node_aliases,
        };
        let hosts = render_hosts(&inputs, &snapshot.table);
        if hosts != self.hosts {
            let old_len = std::fs::metadata(&self.hosts_file).map_or(0, |m| m.len());
            let padded = pad_to(&hosts, usize::try_from(old_len).unwrap_or(0));
            write_in_place(&self.hosts_file, padded.as_bytes())
                .map_err(Error::io(&self.hosts_file))?;
            self.hosts = hosts;
        }
        Ok(())
    }

    /// Brings the hosts file and DNAT rules up to date with the Services.
    pub async fn update_services(&mut self, ctx: &NodeContext, pod: &Pod) -> Result<()> {
        let snapshot = ctx.services.borrow().clone();
        self.write_hosts(ctx, pod, &snapshot)?;
        if let Some(netns) = &self.netns {
            let rules = render_ruleset(&snapshot.table, ctx.network.cidr);
            if rules != self.rules {
                apply_rules(netns, &rules).await?;
                self.rules = rules;
            }
        }
        Ok(())
    }

    /// Writes (or rewrites) every volume; generated volumes are replaced atomically.
    pub async fn write_volumes(&mut self, ctx: &NodeContext, pod: &Pod) -> Result<(), ConfigError> {
        let (secrets, config_maps) = ctx.fetch_references(pod).await?;
        let mut tokens = BTreeMap::new();
        let mut refresh: Option<Timestamp> = None;
        let now = Timestamp::now();
        for source in token_sources(pod) {
            let (token, expires) = ctx.request_token(pod, &source).await?;
            // kubelet refreshes at 80 % of the lifetime.
            let lifetime = expires.duration_since(now);
            let at = now
                .checked_add(lifetime.checked_mul(4).unwrap_or_default() / 5)
                .unwrap_or(expires);
            refresh = Some(refresh.map_or(at, |r| r.min(at)));
            tokens.insert((source.volume.clone(), source.path.clone()), token);
        }
        self.token_refresh = refresh;
        let inputs = EnvInputs {
            secrets,
            config_maps,
            pod_ip: Some(self.ip),
            host_ip: Some(ctx.host_ip()),
            ..EnvInputs::default()
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        let io = |path: &Path, e: Error| ConfigError::UnsupportedVolume {
            name: path.display().to_string(),
            reason: e.to_string(),
        };
        for v in &volumes {
            let source = volume_source(pod, v, &inputs, &tokens)?;
            let (path, generated) = match source {
                VolumeSource::Files(files) => {
                    let path = self.dir.join("volumes").join(&v.name);
                    write_atomically(&path, &files).map_err(|e| io(&path, e))?;
                    (path, true)
                }
                VolumeSource::EmptyDir => {
                    let path = self.dir.join("volumes").join(&v.name);
                    std::fs::create_dir_all(&path).map_err(|e| io(&path, Error::io(&path)(e)))?;
                    // kubelet creates emptyDir volumes world-writable, so containers running as
                    // other users (e.g. a non-root sidecar serving a socket) can write them.
                    {
                        use std::os::unix::fs::PermissionsExt as _;
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                            .map_err(|e| io(&path, Error::io(&path)(e)))?;
                    }
                    (path, false)
                }
                VolumeSource::Claim(claim) => (claim_path(ctx, &ns, &claim).await?, false),
                VolumeSource::HostPath { path, create_dir } => {
                    if let Some(dir) = create_dir {
                        ctx.ensure_path(&path, dir)
                            .map_err(|e| io(&path, Error::io(&path)(e)))?;
                    }
                    (path, false)
                }
            };
            if let Some(group) = fs_group(pod) {
                // kubelet leaves hostPath alone; writable volumes once per pod (a failure is
                // retried with the next attempt), generated ones after every rewrite.
                let pending = generated || !self.owned.contains(&v.name);
                if pending && v.host_path.is_none() {
                    set_volume_ownership(&path, group, generated)
                        .map_err(|e| io(&path, Error::io(&path)(e)))?;
                    if !generated {
                        self.owned.insert(v.name.clone());
                    }
                }
            }
            self.volumes
                .insert(v.name.clone(), VolumePath { path, generated });
        }
        Ok(())
    }

    /// Stops forwarders, removes the network namespace and releases the address. The pod's
    /// directory (logs, emptyDirs) is removed with `remove_dir`.
    pub async fn destroy(&self, ctx: &NodeContext, pod: &Pod, remove_dir: bool) {
        self.forwarders.cancel();
        if self.netns.is_some() {
            ctx.network.delete_pod(&uid(pod)).await;
            ctx.ips().release(self.ip);
        }
        for dir in crate::container::stage_dirs(ctx, &uid(pod)) {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(Err(e)) = remove_dir.then(|| std::fs::remove_dir_all(&self.dir)) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "pod directory not removed");
        }
    }
}

/// Overwrites a file's bytes without replacing the file (bind mounts pin the inode).
fn write_in_place(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)?;
    f.write_all(data)?;
    f.set_len(data.len() as u64)?;
    f.flush()
}
