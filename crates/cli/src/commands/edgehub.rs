//! `ironedge edgehub`: the per-device edge hub (MQTT broker for modules, routes, store-and-forward,
//! upstream link) and `ironedge edgehub bench`, its load tool.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ironedge_edgehub::config::HubConfig;
use ironedge_edgehub::config_source::ConfigSource;
use ironedge_edgehub::hub::HubSettings;
use ironedge_edgehub::identities::IdentityEntry;
use ironedge_edgehub::kube_watch::KubeSource;
use ironedge_edgehub::registry::RegistrySettings;
use ironedge_edgehub::runtime::{EdgeHubOptions, run_with as run_edgehub_with};
use ironedge_edgehub::server_cert::ServerCertificate;
use ironedge_edgehub::upstream::UpstreamSettings;
use std::process::ExitCode;

/// The edge hub.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct EdgeHubArgs {
    #[command(subcommand)]
    command: Option<EdgeHubCommand>,
    #[command(flatten)]
    serve: ServeArgs,
}

impl EdgeHubArgs {
    /// True for `ironedge edgehub bench`.
    pub(crate) fn is_bench(&self) -> bool {
        matches!(self.command, Some(EdgeHubCommand::Bench(_)))
    }
}

#[derive(Debug, Subcommand)]
enum EdgeHubCommand {
    /// Measure module→module throughput and latency through the edge hub beside mosquitto,
    /// memory, and the replay rate after an outage.
    Bench(crate::commands::edgehub_bench::BenchArgs),
}

/// Settings of a running edge hub; every flag has an environment fallback.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The edge device this hub serves.
    #[arg(long, env = "IOTEDGE_DEVICEID")]
    device_id: Option<String>,
    /// The IoT Hub host name (in SAS audiences and usernames).
    #[arg(long, env = "IOTEDGE_IOTHUBHOSTNAME")]
    hub_host_name: Option<String>,
    /// MQTT over TLS address.
    #[arg(long, env = "EDGEHUB_LISTEN", default_value = "0.0.0.0:8883")]
    listen: SocketAddr,
    /// MQTT over WebSocket (TLS) address, for clients that use port 443.
    #[arg(long, env = "EDGEHUB_WEBSOCKET_LISTEN")]
    websocket_listen: Option<SocketAddr>,
    /// `/healthz` and `/metrics` address.
    #[arg(long, env = "EDGEHUB_METRICS_LISTEN", default_value = "0.0.0.0:9600")]
    metrics_listen: SocketAddr,
    /// The store file (put it on a persistent volume).
    #[arg(
        long,
        env = "EDGEHUB_STORE",
        default_value = "/var/lib/ironedge/edgehub.redb"
    )]
    store: PathBuf,
    /// Byte quota of the store; the oldest messages are evicted beyond it.
    #[arg(long, env = "EDGEHUB_STORE_MAX_BYTES")]
    store_max_bytes: Option<u64>,
    /// Server certificate chain (PEM).
    #[arg(long, env = "EDGEHUB_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "EDGEHUB_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for a renewed certificate, in seconds.
    #[arg(long, env = "EDGEHUB_TLS_RELOAD_SECS", default_value_t = 5)]
    tls_reload_secs: u64,
    /// Without a certificate: a development CA in this directory issues one for the host names.
    #[arg(long, env = "EDGEHUB_DEV_CA_DIR")]
    dev_ca_dir: Option<PathBuf>,
    /// Host names the server certificate must carry (besides edgehub, edgehub.<ns>, edgehub.<ns>.svc).
    #[arg(
        long = "host-name",
        env = "IOTEDGE_GATEWAYHOSTNAME",
        value_delimiter = ','
    )]
    host_names: Vec<String>,
    /// Identities to add to the cache (JSON `[{deviceId, moduleId, primaryKey, secondaryKey}]`).
    #[arg(long, env = "EDGEHUB_IDENTITIES")]
    identities: Option<PathBuf>,
    /// Routes from a JSON file (`{"routes": {...}, "storeAndForward": {...}}`) instead of Kubernetes.
    #[arg(long, env = "EDGEHUB_ROUTES", conflicts_with = "namespace")]
    routes: Option<PathBuf>,
    /// Device namespace whose EdgeDeployment holds the routes (in a pod: its own namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// Name of the EdgeDeployment (default: the one in the namespace).
    #[arg(long, env = "EDGEHUB_EDGE_DEPLOYMENT")]
    edge_deployment: Option<String>,
    /// Cloud hub MQTT address (`host` or `host:port`); without it the hub runs with no cloud.
    #[arg(long, env = "EDGEHUB_UPSTREAM")]
    upstream: Option<String>,
    /// CA bundle (PEM) to trust for the cloud hub.
    #[arg(long, env = "EDGEHUB_UPSTREAM_CA")]
    upstream_ca: Option<PathBuf>,
    /// Cloud hub REST base URL (`https://host[:port]`) to read module identities from.
    #[arg(long, env = "EDGEHUB_REGISTRY_URL", requires = "device_key")]
    registry_url: Option<String>,
    /// The edge device's symmetric key (base64), to read its modules from the registry.
    #[arg(long, env = "EDGEHUB_DEVICE_KEY", hide_env_values = true)]
    device_key: Option<String>,
    /// CA bundle to trust for the registry (default: --upstream-ca).
    #[arg(long, env = "EDGEHUB_REGISTRY_CA")]
    registry_ca: Option<PathBuf>,
    /// How often the registry is re-read, in seconds.
    #[arg(long, env = "EDGEHUB_REGISTRY_REFRESH", default_value_t = 3600)]
    registry_refresh: u64,
    /// Lifetime of the tokens the hub signs for upstream connections, in seconds.
    #[arg(long, env = "EDGEHUB_UPSTREAM_TOKEN_TTL", default_value_t = 3600)]
    upstream_token_ttl: u64,
}

/// Runs `ironedge edgehub [bench]`.
pub(crate) fn run(args: EdgeHubArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    ironedge_pki::install_default_provider();
    match args.command {
        Some(EdgeHubCommand::Bench(bench)) => {
            runtime.block_on(crate::commands::edgehub_bench::run(bench))
        }
        None => runtime.block_on(serve(args.serve)),
    }
}

async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let device_id = args
        .device_id
        .clone()
        .context("--device-id (or IOTEDGE_DEVICEID) is required")?;
    let hub_host_name = args
        .hub_host_name
        .clone()
        .context("--hub-host-name (or IOTEDGE_IOTHUBHOSTNAME) is required")?;
    let certificate = Arc::new(server_certificate(&args)?);
    let tls = certificate
        .server_config()
        .context("building the TLS configuration")?;
    let identities = match &args.identities {
        Some(path) => {
            let text =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_slice::<Vec<IdentityEntry>>(&text)
                .with_context(|| format!("{} is not a JSON list of identities", path.display()))?
        }
        None => Vec::new(),
    };
    let config = config_source(&args).await?;
    let upstream = upstream_settings(&args, &hub_host_name)?;
    if let Some(dir) = args.store.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mqtt = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding MQTT on {}", args.listen))?;
    let websocket = match args.websocket_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding WebSocket on {addr}"))?,
        ),
        None => None,
    };
    let http = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding metrics on {}", args.metrics_listen))?;
    let store_config = ironedge_store::Config {
        quota_bytes: args.store_max_bytes,
        ..ironedge_store::Config::default()
    };
    let mut settings = HubSettings::new(device_id, hub_host_name);
    settings.extra_audience_hosts = args.host_names.clone();
    tracing::info!(listen = %args.listen, store = %args.store.display(), "starting the edge hub");
    let options = EdgeHubOptions {
        settings,
        store_path: args.store.clone(),
        store_config,
        identities,
        mqtt,
        websocket,
        tls,
        http: Some(http),
        upstream,
        config,
        mqtt_config: mqtt_config(),
        registry: registry_settings(&args)?,
    };
    let reload_every = Duration::from_secs(args.tls_reload_secs.max(1));
    let mut watcher = None;
    let result = run_edgehub_with(options, shutdown_signal(), |hub| {
        watcher = Some(tokio::spawn(certificate.watch(hub.metrics(), reload_every)));
    })
    .await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Names the server certificate carries: the service names of the namespace and any host names.
fn certificate_names(args: &ServeArgs) -> Vec<String> {
    let mut names = vec!["edgehub".to_owned()];
    if let Some(ns) = &args.namespace {
        names.push(format!("edgehub.{ns}"));
        names.push(format!("edgehub.{ns}.svc"));
    }
    names.extend(args.host_names.iter().cloned());
    names
}

/// The server certificate from --tls-cert/--tls-key (reloaded when the agent renews it), else
/// from a development CA.
fn server_certificate(args: &ServeArgs) -> Result<ServerCertificate> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return ServerCertificate::load(cert, key).context("loading the server certificate");
    }
    let Some(dir) = &args.dev_ca_dir else {
        bail!(
            "no server certificate: pass --tls-cert/--tls-key, or --dev-ca-dir for a development CA"
        );
    };
    let names = certificate_names(args);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let files = ironedge_pki::write_dev_ca(dir, "ironedge edge hub dev CA", &refs)
        .context("creating the development CA")?;
    tracing::warn!(ca = %files.ca_cert.display(), "using a development CA; give modules this file to trust");
    ServerCertificate::load(&files.server_cert, &files.server_key)
        .context("loading the development certificate")
}

async fn config_source(args: &ServeArgs) -> Result<ConfigSource> {
    if let Some(path) = &args.routes {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        // Fail fast on a broken file at start; later edits are checked as they come.
        let config: HubConfig = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a routes file", path.display()))?;
        config
            .compile()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(ConfigSource::File(path.clone()));
    }
    let Some(namespace) = args.namespace.clone() else {
        bail!(
            "no routes: pass --routes FILE, or --namespace NS to watch the device's EdgeDeployment"
        );
    };
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (set KUBECONFIG, or run in a pod)")?;
    Ok(ConfigSource::Kube(KubeSource {
        client,
        namespace,
        name: args.edge_deployment.clone(),
    }))
}

fn upstream_settings(args: &ServeArgs, hub_host_name: &str) -> Result<Option<UpstreamSettings>> {
    let Some(address) = &args.upstream else {
        return Ok(None);
    };
    let (host, port) = match address.rsplit_once(':') {
        Some((h, p)) => (
            h.to_owned(),
            p.parse()
                .with_context(|| format!("bad port in --upstream {address}"))?,
        ),
        None => (address.clone(), 8883),
    };
    let trust = match &args.upstream_ca {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => bail!(
            "--upstream-ca is required with --upstream (the CA bundle the cloud hub's certificate chains to)"
        ),
    };
    let tls = ironedge_pki::client_config(&trust, None).context("loading --upstream-ca")?;
    Ok(Some(UpstreamSettings {
        hub_host_name: hub_host_name.to_owned(),
        host,
        port,
        tls,
        token_ttl: Duration::from_secs(args.upstream_token_ttl),
        keep_alive: Duration::from_secs(60),
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        operation_timeout: Duration::from_secs(20),
        inflight: 1000,
    }))
}

/// MQTT limits: deeper windows than the defaults, so one busy module's publishes share store
/// commits and deliveries keep the pipe full.
fn mqtt_config() -> ironedge_mqtt::MqttConfig {
    ironedge_mqtt::MqttConfig {
        max_pending_inbound_acks: 256,
        max_inflight: 256,
        ..ironedge_mqtt::MqttConfig::default()
    }
}

fn registry_settings(args: &ServeArgs) -> Result<Option<RegistrySettings>> {
    let (Some(url), Some(key)) = (&args.registry_url, &args.device_key) else {
        return Ok(None);
    };
    let ca = args
        .registry_ca
        .as_ref()
        .or(args.upstream_ca.as_ref())
        .context("--registry-url needs --registry-ca or --upstream-ca")?;
    let trust = std::fs::read_to_string(ca).with_context(|| format!("reading {}", ca.display()))?;
    Ok(Some(RegistrySettings {
        base_url: url.clone(),
        hub_host_name: args.hub_host_name.clone().unwrap_or_default(),
        edge_device_id: args.device_id.clone().unwrap_or_default(),
        device_key: ironedge_protocol::SymmetricKey::from_base64(key)
            .context("--device-key is not base64")?,
        tls: ironedge_pki::client_config(&trust, None).context("loading the registry CA")?,
        refresh: Duration::from_secs(args.registry_refresh),
    }))
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}
