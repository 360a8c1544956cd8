//! `ironedge node`: the development/test-only local node (a kubelet without containers).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use ironedge_node::{BackoffSettings, ImageMap, Ipv4Cidr, NodeSettings};
use tokio_util::sync::CancellationToken;

/// Runs pods of a Kubernetes control plane as local processes (development and tests only).
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Node name.
    #[arg(long, env = "IRONEDGE_NODE_NAME")]
    name: Option<String>,
    /// Namespace whose unbound pods this node binds (repeat or comma-separate); all when none.
    #[arg(
        long = "namespace",
        short = 'n',
        env = "IRONEDGE_NODE_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Kubeconfig file (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Pod directories, logs and claim data (default: ~/.cache/ironedge/node/<name>).
    #[arg(long, env = "IRONEDGE_NODE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Image map file (YAML; see crates/node/README.md); repeatable, earlier files win.
    #[arg(
        long = "image-map",
        env = "IRONEDGE_NODE_IMAGE_MAP",
        value_delimiter = ','
    )]
    image_maps: Vec<PathBuf>,
    /// One image rule as PATTERN=PROGRAM (e.g. `*/filter:*=/opt/filter/bin/filter`); repeatable,
    /// before the image map files.
    #[arg(long = "map-image")]
    map_image: Vec<String>,
    /// The `ironedge` binary that `ironedge` images run (default: this executable).
    #[arg(long, env = "IRONEDGE_NODE_IRONEDGE_BINARY")]
    ironedge_binary: Option<PathBuf>,
    /// Pod network (a /24 or similar); default: the first free /24 of 10.88.0.0/16.
    #[arg(long, env = "IRONEDGE_NODE_POD_CIDR")]
    pod_cidr: Option<Ipv4Cidr>,
    /// The node's InternalIP, where the kubelet endpoint listens.
    #[arg(long, env = "IRONEDGE_NODE_ADDRESS", default_value = "127.0.0.1")]
    address: Ipv4Addr,
    /// Kubelet endpoint port (serves `kubectl logs`); 0 picks a free port.
    #[arg(long, env = "IRONEDGE_NODE_KUBELET_PORT", default_value_t = 10250)]
    kubelet_port: u16,
    /// CA certificate (PEM) whose client certificates the kubelet endpoint requires (the API
    /// server's --kubelet-client-certificate); without it, anonymous clients are accepted.
    #[arg(long, env = "IRONEDGE_NODE_KUBELET_CLIENT_CA")]
    kubelet_client_ca: Option<PathBuf>,
    /// Host loopback port that pods reach on their own 127.0.0.1 (e.g. the cloud hub's MQTT and
    /// HTTPS ports); repeatable.
    #[arg(
        long = "host-port",
        env = "IRONEDGE_NODE_HOST_PORTS",
        value_delimiter = ','
    )]
    host_ports: Vec<u16>,
    /// Node status and Lease period, in seconds.
    #[arg(long, default_value_t = 10.0)]
    heartbeat_seconds: f64,
    /// First CrashLoopBackOff delay, in seconds (kubelet: 10).
    #[arg(long, default_value_t = 10.0)]
    restart_backoff_seconds: f64,
    /// Longest CrashLoopBackOff delay, in seconds (kubelet: 300).
    #[arg(long, default_value_t = 300.0)]
    restart_backoff_max_seconds: f64,
    /// How often Secret/ConfigMap/downward-API volumes are rewritten, in seconds.
    #[arg(long, default_value_t = 60.0)]
    volume_resync_seconds: f64,
    /// Cluster DNS domain used in Service names.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Node label KEY=VALUE; repeatable.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Delete the Node object on exit (default: report it NotReady).
    #[arg(long)]
    delete_node_on_exit: bool,
    /// Pod capacity.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// A storage class whose claims the node provisions (besides claims without a class and
    /// `ironedge-local`); repeatable, e.g. `local-path`.
    #[arg(long = "storage-class", value_delimiter = ',')]
    storage_classes: Vec<String>,
}

fn seconds(what: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v)
        .with_context(|| format!("--{what} {v}: give a non-negative number of seconds"))
}

impl NodeArgs {
    fn settings(&self, apiserver: SocketAddr) -> Result<NodeSettings> {
        let ironedge = match &self.ironedge_binary {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .context("finding the ironedge binary (pass --ironedge-binary)")?,
        };
        let mut map = ImageMap::default();
        for path in &self.image_maps {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading image map {}", path.display()))?;
            map = map.then(ImageMap::from_yaml(&text, &path.display().to_string())?);
        }
        for spec in self.map_image.iter().rev() {
            map.prepend(ImageMap::shorthand(spec)?);
        }
        let map = map.then(ImageMap::builtin(&ironedge));
        let name = match &self.name {
            Some(n) => n.clone(),
            None => format!("ironedge-{}", hostname()),
        };
        let mut settings = NodeSettings::new(&name, apiserver, map);
        settings.namespaces = self.namespaces.clone();
        settings.state_dir = match &self.state_dir {
            Some(d) => d.clone(),
            None => home().join(".cache/ironedge/node").join(&name),
        };
        settings.pod_cidr = self.pod_cidr;
        settings.address = self.address;
        settings.kubelet_port = self.kubelet_port;
        settings.kubelet_client_ca = match &self.kubelet_client_ca {
            Some(p) => Some(
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            ),
            None => None,
        };
        settings.host_ports = self.host_ports.clone();
        settings.heartbeat = seconds("heartbeat-seconds", self.heartbeat_seconds)?;
        settings.backoff = BackoffSettings {
            initial: seconds("restart-backoff-seconds", self.restart_backoff_seconds)?,
            max: seconds(
                "restart-backoff-max-seconds",
                self.restart_backoff_max_seconds,
            )?,
        };
        settings.volume_resync = seconds("volume-resync-seconds", self.volume_resync_seconds)?;
        settings.cluster_domain = self.cluster_domain.clone();
        settings.delete_node_on_exit = self.delete_node_on_exit;
        settings.max_pods = self.max_pods;
        settings
            .storage_classes
            .extend(self.storage_classes.iter().cloned());
        settings.labels = self
            .labels
            .iter()
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .with_context(|| format!("--label {l:?}: expected KEY=VALUE"))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(settings)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "local".into())
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// Runs the node until SIGINT/SIGTERM.
pub(crate) fn run(args: NodeArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: NodeArgs) -> Result<ExitCode> {
    ironedge_pki::install_default_provider();
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig: pass --kubeconfig or set KUBECONFIG")?,
    };
    let host = config
        .cluster_url
        .host()
        .context("the kubeconfig's server has no host")?
        .to_string();
    let port = config.cluster_url.port_u16().unwrap_or(443);
    let apiserver = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("resolving the API server {host}:{port}"))?
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("the API server {host}:{port} has no IPv4 address"))?;
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    let settings = args.settings(apiserver)?;
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut node = tokio::spawn(ironedge_node::run(
        client,
        settings,
        shutdown.clone(),
        Some(tx),
    ));
    if let Ok(started) = rx.await {
        #[allow(clippy::print_stdout)]
        {
            println!(
                "ironedge node {} (development and tests only)",
                started.name
            );
            println!("  pod network:      {}", started.pod_cidr);
            println!(
                "  kubelet endpoint: https://{}  (kubectl logs)",
                started.kubelet_endpoint
            );
        }
    }
    tokio::select! {
        () = shutdown_signal() => {
            tracing::info!("stopping pods and cleaning up");
            shutdown.cancel();
            (&mut node).await.context("node task")?.context("running the node")?;
        }
        result = &mut node => result.context("node task")?.context("running the node")?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
