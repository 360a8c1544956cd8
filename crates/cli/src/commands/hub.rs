//! `ironedge hub`: run the cloud hub (REST over HTTPS, device MQTT over TLS, SQLite storage),
//! plus the client connection settings shared by `device`, `deploy`, `deployment`, `twin` and
//! `messages`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use ironedge_hub::HubSettings;
use ironedge_hub::client::HubClient;
use ironedge_hub::server::{ServerSettings, TlsSource};

/// Settings of a running hub; every flag has an environment fallback.
#[derive(Debug, Args)]
pub(crate) struct HubArgs {
    /// Directory for the database (`hub.db`), the development CA and the owner connection string.
    #[arg(
        long,
        env = "IRONEDGE_HUB_DATA_DIR",
        default_value = "ironedge-hub-data"
    )]
    data_dir: PathBuf,
    /// The hub's host name: in connection strings, SAS audiences and the development certificate.
    #[arg(long, env = "IRONEDGE_HUB_HOSTNAME", default_value = "localhost")]
    hostname: String,
    /// More names tokens may be issued for (and the development certificate carries).
    #[arg(long = "alias", env = "IRONEDGE_HUB_ALIASES", value_delimiter = ',')]
    aliases: Vec<String>,
    /// REST service API (HTTPS) address.
    #[arg(long, env = "IRONEDGE_HUB_REST_ADDR", default_value = "0.0.0.0:8443")]
    rest_addr: SocketAddr,
    /// Device MQTT over TLS address (the Azure device SDKs dial port 8883).
    #[arg(long, env = "IRONEDGE_HUB_MQTT_ADDR", default_value = "0.0.0.0:8883")]
    mqtt_addr: SocketAddr,
    /// Device MQTT over WebSocket (TLS, `/$iothub/websocket`) address; off unless given.
    #[arg(long, env = "IRONEDGE_HUB_WEBSOCKET_ADDR")]
    websocket_addr: Option<SocketAddr>,
    /// Server certificate chain (PEM); without it a development CA is generated in the data dir.
    #[arg(long, env = "IRONEDGE_HUB_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "IRONEDGE_HUB_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Primary key of the `iothubowner` policy (base64); random on first start when absent.
    #[arg(long, env = "IRONEDGE_HUB_OWNER_KEY", hide_env_values = true)]
    owner_key: Option<String>,
    /// Keep at most this many telemetry messages.
    #[arg(
        long,
        env = "IRONEDGE_HUB_TELEMETRY_MAX_COUNT",
        default_value_t = 1_000_000
    )]
    telemetry_max_count: u64,
    /// Drop telemetry older than this many seconds.
    #[arg(long, env = "IRONEDGE_HUB_TELEMETRY_MAX_AGE_SECS", default_value_t = 7 * 24 * 3600)]
    telemetry_max_age_secs: u64,
    /// Default time-to-live of cloud-to-device messages, in seconds.
    #[arg(long, env = "IRONEDGE_HUB_C2D_TTL_SECS", default_value_t = 3600)]
    c2d_ttl_secs: u64,
}

impl HubArgs {
    fn settings(&self) -> ServerSettings {
        let mut hub_names = vec![
            self.hostname.clone(),
            format!("{}:{}", self.hostname, self.rest_addr.port()),
        ];
        for a in &self.aliases {
            hub_names.push(a.clone());
            hub_names.push(format!("{a}:{}", self.rest_addr.port()));
        }
        for addr in [self.rest_addr, self.mqtt_addr] {
            if !addr.ip().is_unspecified() {
                hub_names.push(addr.ip().to_string());
                hub_names.push(addr.to_string());
            }
        }
        hub_names.dedup();
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => {
                let mut names = vec![
                    self.hostname.clone(),
                    "localhost".into(),
                    "127.0.0.1".into(),
                ];
                names.extend(self.aliases.iter().cloned());
                for addr in [self.rest_addr, self.mqtt_addr] {
                    if !addr.ip().is_unspecified() {
                        names.push(addr.ip().to_string());
                    }
                }
                names.sort();
                names.dedup();
                TlsSource::DevCa {
                    dir: self.data_dir.join("tls"),
                    names,
                }
            }
        };
        ServerSettings {
            database: self.data_dir.join("hub.db"),
            rest_addr: self.rest_addr,
            mqtt_addr: self.mqtt_addr,
            websocket_addr: self.websocket_addr,
            tls,
            hub: HubSettings {
                hub_names,
                telemetry_max_count: self.telemetry_max_count,
                telemetry_max_age: Duration::from_secs(self.telemetry_max_age_secs),
                c2d_ttl: Duration::from_secs(self.c2d_ttl_secs),
                owner_key: self.owner_key.clone(),
                ..HubSettings::default()
            },
        }
    }
}

/// Runs the hub until SIGINT/SIGTERM.
pub(crate) fn run(args: HubArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: HubArgs) -> Result<ExitCode> {
    let settings = args.settings();
    let started = ironedge_hub::server::start(settings)
        .await
        .context("starting the hub")?;
    let host = format!("{}:{}", args.hostname, started.rest_addr.port());
    let cs_path = args.data_dir.join("iothubowner.connection-string");
    if let Some(cs) = started.hub.owner_connection_string(&host) {
        write_secret(&cs_path, &cs).with_context(|| format!("writing {}", cs_path.display()))?;
    }
    #[allow(clippy::print_stdout)]
    {
        println!("ironedge hub {host}");
        println!("  REST (HTTPS):   {}", started.rest_addr);
        println!("  MQTT (TLS):     {}", started.mqtt_addr);
        if let Some(ws) = started.websocket_addr {
            println!("  MQTT over WebSocket: {ws}/$iothub/websocket");
        }
        if let Some(ca) = &started.dev_ca {
            println!(
                "  development CA: {}  (trust it: --ca-file / IRONEDGE_HUB_CA)",
                ca.display()
            );
        }
        println!(
            "  owner connection string: {}  (IRONEDGE_HUB_CONNECTION_STRING)",
            cs_path.display()
        );
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    started.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn write_secret(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")
}

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
}

/// How client commands reach a hub.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Service connection string (`HostName=…;SharedAccessKeyName=iothubowner;SharedAccessKey=…`);
    /// `ironedge hub` writes one to `<data-dir>/iothubowner.connection-string`.
    #[arg(long, env = "IRONEDGE_HUB_CONNECTION_STRING", hide_env_values = true)]
    connection_string: String,
    /// CA certificate to trust (the hub's development CA is `<data-dir>/tls/ca.pem`).
    #[arg(long, env = "IRONEDGE_HUB_CA")]
    ca_file: PathBuf,
    /// REST URL when it differs from `https://{HostName}`.
    #[arg(long, env = "IRONEDGE_HUB_URL")]
    url: Option<String>,
}

impl ConnectArgs {
    /// A client for the hub.
    pub(crate) fn client(&self) -> Result<HubClient> {
        let ca = std::fs::read_to_string(&self.ca_file)
            .with_context(|| format!("reading the CA file {}", self.ca_file.display()))?;
        Ok(HubClient::new(
            &self.connection_string,
            self.url.as_deref(),
            &ca,
        )?)
    }
}

/// Runs `f` on a fresh runtime (client commands).
pub(crate) fn block_on<F: std::future::Future<Output = Result<ExitCode>>>(
    f: F,
) -> Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Prints JSON prettily on stdout.
pub(crate) fn print_json(v: &serde_json::Value) {
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        );
    }
}
