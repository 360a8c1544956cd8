//! `ironedge agent`: the per-device edge agent (cloud sync, status reporting, module identities,
//! workload API, edge CA, in-process controller), and `ironedge agent rbac`, which prints the
//! namespaced RBAC it needs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ironedge_agent::provisioning::{DEFAULT_SECRET_KEY, DeviceCredentials};
use ironedge_agent::settings::{
    AgentSettings, CertificateSettings, DEFAULT_WORKLOAD_API_VERSION, DEFAULT_WORKLOAD_AUDIENCE,
    DEFAULT_WORKLOAD_URI, HubEndpoints, Timing, WorkloadSettings,
};
use ironedge_agent::{Handles, Listeners};
use k8s_openapi::api::core::v1::Secret;
use tokio_util::sync::CancellationToken;

/// The edge agent.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct AgentArgs {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Print the ServiceAccount, Role, RoleBinding and auth-delegator binding the agent needs.
    Rbac(RbacArgs),
}

/// `ironedge agent rbac`.
#[derive(Debug, Args)]
struct RbacArgs {
    /// The device namespace.
    #[arg(long)]
    namespace: String,
    /// Name of the ServiceAccount, Role and RoleBinding.
    #[arg(long, default_value = ironedge_agent::rbac::DEFAULT_NAME)]
    name: String,
}

/// Settings of a running agent; every flag has an environment fallback.
#[derive(Debug, Args)]
struct RunArgs {
    /// The device namespace (in a pod: its own namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// The device connection string (`HostName=…;DeviceId=…;SharedAccessKey=…`).
    #[arg(
        long,
        env = "IOTEDGE_DEVICE_CONNECTION_STRING",
        hide_env_values = true,
        conflicts_with = "connection_string_secret"
    )]
    connection_string: Option<String>,
    /// A Secret in the namespace holding the device connection string.
    #[arg(long, env = "IRONEDGE_CONNECTION_STRING_SECRET")]
    connection_string_secret: Option<String>,
    /// The key of the connection string in that Secret.
    #[arg(long, env = "IRONEDGE_CONNECTION_STRING_KEY", default_value = DEFAULT_SECRET_KEY)]
    connection_string_key: String,
    /// The hub's MQTT address `host[:port]` (default: the connection string's GatewayHostName
    /// or HostName, port 8883).
    #[arg(long, env = "IRONEDGE_HUB_MQTT")]
    hub_mqtt: Option<String>,
    /// The hub's REST URL (default `https://{HostName}`).
    #[arg(long, env = "IRONEDGE_HUB_REST_URL")]
    hub_rest_url: Option<String>,
    /// CA bundle (PEM) the hub's certificate chains to.
    #[arg(
        long,
        env = "IRONEDGE_HUB_CA",
        default_value = "/etc/ssl/certs/ca-certificates.crt"
    )]
    hub_ca: PathBuf,
    /// Name of the EdgeDeployment to write (default: the device id as a DNS label).
    #[arg(long, env = "IRONEDGE_EDGE_DEPLOYMENT")]
    edge_deployment: Option<String>,
    /// Workload API (TLS) address the sidecars connect to.
    #[arg(
        long,
        env = "IRONEDGE_WORKLOAD_LISTEN",
        default_value = "0.0.0.0:15581"
    )]
    workload_listen: SocketAddr,
    /// `IOTEDGE_WORKLOADURI` for modules (a unix socket the sidecar serves).
    #[arg(long, env = "IRONEDGE_WORKLOAD_URI", default_value = DEFAULT_WORKLOAD_URI)]
    workload_uri: String,
    /// `IOTEDGE_APIVERSION` for modules.
    #[arg(long, env = "IRONEDGE_WORKLOAD_API_VERSION", default_value = DEFAULT_WORKLOAD_API_VERSION)]
    workload_api_version: String,
    /// Image of the workload proxy sidecar (an image with the ironedge binary); without it module
    /// pods get no sidecar.
    #[arg(long, env = "IRONEDGE_WORKLOAD_PROXY_IMAGE")]
    workload_proxy_image: Option<String>,
    /// URL the sidecars dial (default `https://ironedge-agent.<namespace>.svc:15581`).
    #[arg(long, env = "IRONEDGE_WORKLOAD_AGENT_URL")]
    workload_agent_url: Option<String>,
    /// Audience of the sidecars' projected tokens.
    #[arg(long, env = "IRONEDGE_WORKLOAD_AUDIENCE", default_value = DEFAULT_WORKLOAD_AUDIENCE)]
    workload_audience: String,
    /// More names for the workload server certificate.
    #[arg(
        long = "workload-server-name",
        env = "IRONEDGE_WORKLOAD_SERVER_NAMES",
        value_delimiter = ','
    )]
    workload_server_names: Vec<String>,
    /// Seconds a successful TokenReview is trusted for the same token.
    #[arg(long, env = "IRONEDGE_TOKEN_REVIEW_CACHE_SECS", default_value_t = 30)]
    token_review_cache_secs: u64,
    /// A `kubernetes.io/tls` Secret with the device CA; without it the agent generates one.
    #[arg(long, env = "IRONEDGE_EDGE_CA_SECRET")]
    edge_ca_secret: Option<String>,
    /// Lifetime of a generated device CA, in days.
    #[arg(long, env = "IRONEDGE_EDGE_CA_DAYS", default_value_t = 365)]
    edge_ca_days: u64,
    /// Lifetime of the edge hub and workload server certificates, in days.
    #[arg(long, env = "IRONEDGE_SERVER_CERT_DAYS", default_value_t = 30)]
    server_cert_days: u64,
    /// `IOTEDGE_GATEWAYHOSTNAME` for modules (default: the edge hub's Service name).
    #[arg(long, env = "IRONEDGE_GATEWAY_HOST_NAME")]
    gateway_host_name: Option<String>,
    /// More names for the edge hub's server certificate.
    #[arg(
        long = "edgehub-host-name",
        env = "IRONEDGE_EDGEHUB_HOST_NAMES",
        value_delimiter = ','
    )]
    edgehub_host_names: Vec<String>,
    /// `/healthz`, `/readyz` and `/metrics` address.
    #[arg(
        long,
        env = "IRONEDGE_AGENT_METRICS_LISTEN",
        default_value = "0.0.0.0:9600"
    )]
    metrics_listen: SocketAddr,
    /// Do not run the controller inside the agent (a cluster-wide one serves the namespace).
    #[arg(long, env = "IRONEDGE_AGENT_NO_CONTROLLER")]
    no_controller: bool,
    /// The agent's pod name, for its own logs and Event sources.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Quiet time before reported properties are sent, in milliseconds.
    #[arg(long, env = "IRONEDGE_REPORT_DEBOUNCE_MS", default_value_t = 1000)]
    report_debounce_ms: u64,
}

/// Runs `ironedge agent [rbac]`.
pub(crate) fn run(args: AgentArgs) -> Result<ExitCode> {
    if let Some(AgentCommand::Rbac(rbac)) = args.command {
        #[allow(clippy::print_stdout)]
        {
            print!(
                "{}",
                ironedge_agent::rbac::to_yaml(&rbac.namespace, &rbac.name)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args.run))
}

async fn serve(args: RunArgs) -> Result<ExitCode> {
    ironedge_pki::install_default_provider();
    let namespace = args
        .namespace
        .clone()
        .context("--namespace (or POD_NAMESPACE) is required: the device namespace")?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (set KUBECONFIG, or run in a pod)")?;
    let device = match (&args.connection_string, &args.connection_string_secret) {
        (Some(cs), _) => DeviceCredentials::from_connection_string(cs)?,
        (None, Some(secret)) => {
            let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &namespace);
            DeviceCredentials::from_secret(&api, secret, &args.connection_string_key)
                .await
                .with_context(|| format!("reading the connection string from Secret {secret:?}"))?
        }
        (None, None) => bail!(
            "no device identity: pass --connection-string, or --connection-string-secret NAME \
             for a Secret holding it"
        ),
    };
    let settings = settings(&args, namespace, device)?;
    let workload = tokio::net::TcpListener::bind(args.workload_listen)
        .await
        .with_context(|| format!("binding the workload API on {}", args.workload_listen))?;
    let ops = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding metrics on {}", args.metrics_listen))?;
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            shutdown.cancel();
        });
    }
    let handles = Handles {
        metrics: Arc::default(),
        readiness: Arc::default(),
    };
    ironedge_agent::run(
        client,
        settings,
        Listeners {
            workload,
            ops: Some(ops),
        },
        handles,
        shutdown,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

fn settings(args: &RunArgs, namespace: String, device: DeviceCredentials) -> Result<AgentSettings> {
    let trust_pem = std::fs::read_to_string(&args.hub_ca).with_context(|| {
        format!(
            "reading the hub CA bundle {} (pass --hub-ca with the CA the hub's certificate chains to)",
            args.hub_ca.display()
        )
    })?;
    let mqtt = args.hub_mqtt.clone().unwrap_or_else(|| {
        device
            .gateway_host_name
            .clone()
            .unwrap_or_else(|| device.host_name.clone())
    });
    let (mqtt_host, mqtt_port) = split_host_port(&mqtt, 8883)?;
    let rest_url = args
        .hub_rest_url
        .clone()
        .unwrap_or_else(|| format!("https://{}", device.host_name));
    let mut workload = WorkloadSettings::for_namespace(&namespace);
    workload.listen = args.workload_listen;
    workload.module_uri.clone_from(&args.workload_uri);
    workload.api_version.clone_from(&args.workload_api_version);
    workload.proxy_image.clone_from(&args.workload_proxy_image);
    if let Some(url) = &args.workload_agent_url {
        workload.agent_url.clone_from(url);
    }
    workload.audience.clone_from(&args.workload_audience);
    workload
        .server_names
        .clone_from(&args.workload_server_names);
    workload.review_cache_ttl = Duration::from_secs(args.token_review_cache_secs);
    let certificates = CertificateSettings {
        ca_secret: args.edge_ca_secret.clone(),
        ca_validity: Duration::from_secs(args.edge_ca_days * 86_400),
        server_validity: Duration::from_secs(args.server_cert_days * 86_400),
        edgehub_names: args.edgehub_host_names.clone(),
        ..CertificateSettings::default()
    };
    let edge_deployment = args.edge_deployment.clone().unwrap_or_else(|| {
        ironedge_controller::names::dns_label(
            &device.device_id,
            ironedge_controller::names::Rule::Dns1123,
        )
    });
    let timing = Timing {
        report_debounce: Duration::from_millis(args.report_debounce_ms),
        ..Timing::default()
    };
    Ok(AgentSettings {
        namespace,
        hub: HubEndpoints {
            mqtt_host,
            mqtt_port,
            rest_url,
            trust_pem,
        },
        device,
        edge_deployment,
        workload,
        certificates,
        gateway_host_name: args.gateway_host_name.clone(),
        timing,
        run_controller: !args.no_controller,
        controller_resync: Duration::from_secs(300),
        pod_name: args.pod_name.clone(),
    })
}

fn split_host_port(address: &str, default_port: u16) -> Result<(String, u16)> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((
            host.to_string(),
            port.parse()
                .with_context(|| format!("bad port in hub address {address:?}"))?,
        )),
        _ => Ok((address.to_string(), default_port)),
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}
