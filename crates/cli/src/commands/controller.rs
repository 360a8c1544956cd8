//! `ironedge controller`: run the EdgeDeployment controller, or print the RBAC it needs.
//!
//! Per-device mode (`--namespace NS`, the default inside a device namespace) needs only the
//! namespaced Role printed by `ironedge controller rbac --namespace NS`; cluster mode
//! (`--all-namespaces`) serves every device namespace from one process. With `--leader-elect`
//! several replicas may run and only the Lease holder writes.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ironedge_controller::controller::{self, Health, LeaseSettings, Metrics, Scope, Settings};
use ironedge_controller::rbac;
use ironedge_controller::translate::to_yaml;

/// `ironedge controller [run flags] | rbac …`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ControllerArgs {
    #[command(subcommand)]
    command: Option<ControllerCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum ControllerCommand {
    /// Print the Role (or ClusterRole) and binding the controller needs, as YAML.
    Rbac {
        /// Namespace of the controller's ServiceAccount (and of the Role).
        #[arg(long, env = "IRONEDGE_NAMESPACE")]
        namespace: String,
        /// The controller's ServiceAccount.
        #[arg(long, default_value = "ironedge-controller")]
        service_account: String,
        /// Print a ClusterRole for `--all-namespaces` instead of a namespaced Role.
        #[arg(long)]
        cluster: bool,
    },
}

/// Flags of the controller itself.
#[derive(Debug, Args)]
struct RunArgs {
    /// Serve only this namespace (per-device mode; a namespaced Role suffices).
    #[arg(long, env = "IRONEDGE_NAMESPACE", conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Serve every namespace (cluster mode).
    #[arg(long)]
    all_namespaces: bool,
    /// Serve only EdgeDeployments with these labels (e.g. `shard=a`).
    #[arg(long)]
    selector: Option<String>,
    /// Seconds between safety-net reconciles of every EdgeDeployment.
    #[arg(long, default_value_t = 300, env = "IRONEDGE_RESYNC_SECONDS")]
    resync_seconds: u64,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "127.0.0.1:9464", env = "IRONEDGE_METRICS_ADDR")]
    metrics_addr: SocketAddr,
    /// Run only while holding a Lease, so several replicas can run.
    #[arg(long)]
    leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "ironedge-controller")]
    lease_name: String,
    /// Namespace of the Lease (default: `--namespace`).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Seconds a leader stays leader without renewing.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// This instance's name in the Lease and in Events (default: the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

/// Runs `ironedge controller`.
pub(crate) fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(ControllerCommand::Rbac {
            namespace,
            service_account,
            cluster,
        }) => print_rbac(&namespace, &service_account, cluster),
        None => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(serve(args.run))
        }
    }
}

fn print_rbac(namespace: &str, service_account: &str, cluster: bool) -> anyhow::Result<ExitCode> {
    let name = "ironedge-controller";
    let yaml = if cluster {
        format!(
            "{}{}",
            to_yaml(&[rbac::cluster_role(name)]),
            to_yaml(&[rbac::cluster_role_binding(name, namespace, service_account)])
        )
    } else {
        format!(
            "{}{}",
            to_yaml(&[rbac::role(namespace, name)]),
            to_yaml(&[rbac::role_binding(namespace, name, service_account)])
        )
    };
    std::io::stdout()
        .write_all(yaml.as_bytes())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: RunArgs) -> anyhow::Result<ExitCode> {
    let scope = match (&args.namespace, args.all_namespaces) {
        (Some(ns), false) => Scope::Namespace(ns.clone()),
        (None, true) => Scope::All,
        _ => bail!(
            "say which EdgeDeployments to serve: --namespace NS (per device) or --all-namespaces"
        ),
    };
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname").map_or_else(
            |_| "ironedge-controller".to_string(),
            |h| h.trim().to_string(),
        )
    });
    let mut settings = Settings::new(scope);
    settings.resync = Duration::from_secs(args.resync_seconds.max(1));
    settings.selector = args.selector.clone();
    settings.instance = Some(identity.clone());
    if args.leader_elect {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| args.namespace.clone())
            .context("--leader-elect with --all-namespaces needs --lease-namespace")?;
        let duration = Duration::from_secs(args.lease_duration_seconds.max(2));
        settings.lease = Some(LeaseSettings {
            namespace,
            name: args.lease_name.clone(),
            identity,
            duration,
            renew_every: duration / 3,
        });
    }

    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let config = kube::Config::infer().await.context(
        "cannot find Kubernetes credentials: set KUBECONFIG or run in a pod with a ServiceAccount",
    )?;
    let client = controller::counting_client(config, metrics.clone())?;
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for metrics and health",
                args.metrics_addr
            )
        })?;
    tracing::info!(addr = %args.metrics_addr, "serving /metrics, /healthz and /readyz");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let server = tokio::spawn(controller::server::serve(
        listener,
        metrics.clone(),
        health.clone(),
        wait_stop(stop_rx.clone()),
    ));
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let result = controller::run(client, settings, metrics, health, wait_stop(stop_rx)).await;
    let _ = server.await;
    result.context("the controller stopped")?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
