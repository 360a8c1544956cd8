//! `ironedge workload-proxy`: the sidecar in every module pod that serves the module's workload
//! socket and forwards to the edge agent with the pod's projected ServiceAccount token.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use ironedge_agent::workload::proxy::{ProxySettings, run as run_proxy};
use tokio_util::sync::CancellationToken;

/// The workload proxy sidecar.
#[derive(Debug, Args)]
pub(crate) struct WorkloadProxyArgs {
    /// The socket to serve: the module's `IOTEDGE_WORKLOADURI`.
    #[arg(long, env = "IOTEDGE_WORKLOADURI", default_value = ironedge_agent::settings::DEFAULT_WORKLOAD_URI)]
    listen: String,
    /// The agent's workload API URL.
    #[arg(long, env = "IRONEDGE_WORKLOAD_AGENT_URL")]
    agent: String,
    /// The pod's projected ServiceAccount token.
    #[arg(long, env = "IRONEDGE_WORKLOAD_TOKEN_FILE")]
    token_file: PathBuf,
    /// The trust bundle (PEM) the agent's certificate chains to.
    #[arg(long, env = "IRONEDGE_WORKLOAD_TRUST_BUNDLE")]
    trust_bundle: PathBuf,
    /// Timeout of one forwarded request, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

/// Runs the sidecar until SIGTERM.
pub(crate) fn run(args: WorkloadProxyArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    ironedge_pki::install_default_provider();
    let settings = ProxySettings {
        listen: args.listen,
        agent_url: args.agent,
        token_file: args.token_file,
        trust_bundle: args.trust_bundle,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            crate::commands::agent::shutdown_signal().await;
            stop.cancel();
        });
        run_proxy(settings, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}
