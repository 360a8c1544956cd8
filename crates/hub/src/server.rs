//! Runs a whole hub: storage, the service, the REST head over HTTPS and the device MQTT head
//! (TLS, optionally WebSocket), with graceful shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ironedge_mqtt::{MqttConfig, MqttServer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::device_api::DeviceHooks;
use crate::storage::SqliteStorage;
use crate::{Hub, HubSettings, rest};

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}; pick another address with the matching flag")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// TLS material is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// Storage could not be opened.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The service failed to start.
    #[error(transparent)]
    Hub(#[from] crate::Error),
}

/// Where the server certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files given by the operator.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// A development CA in `dir`, with a server certificate for `names`.
    DevCa {
        /// Directory for `ca.pem`, `ca.key`, `server.pem`, `server.key`.
        dir: PathBuf,
        /// DNS names and IP addresses for the server certificate.
        names: Vec<String>,
    },
}

/// Everything `ironedge hub` needs.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// SQLite file.
    pub database: PathBuf,
    /// REST (HTTPS) address.
    pub rest_addr: SocketAddr,
    /// MQTT over TLS address.
    pub mqtt_addr: SocketAddr,
    /// MQTT over WebSocket (TLS) address, if enabled.
    pub websocket_addr: Option<SocketAddr>,
    /// Certificate source.
    pub tls: TlsSource,
    /// Service tunables.
    pub hub: HubSettings,
}

/// A started hub: bound addresses and the material clients need.
#[derive(Debug)]
pub struct Started {
    /// The service.
    pub hub: Hub,
    /// Bound REST address.
    pub rest_addr: SocketAddr,
    /// Bound MQTT address.
    pub mqtt_addr: SocketAddr,
    /// Bound WebSocket address.
    pub websocket_addr: Option<SocketAddr>,
    /// CA certificate clients must trust (development CA), if generated.
    pub dev_ca: Option<PathBuf>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shutdown: CancellationToken,
}

fn load_tls(
    source: &TlsSource,
) -> Result<(Arc<rustls::ServerConfig>, Option<PathBuf>), ServerError> {
    let tls_err = |e: ironedge_pki::Error| ServerError::Tls(e.to_string());
    match source {
        TlsSource::Files { cert, key } => {
            let read = |p: &Path| {
                std::fs::read_to_string(p)
                    .map_err(|e| ServerError::Tls(format!("cannot read {}: {e}", p.display())))
            };
            let config = ironedge_pki::server_config(&read(cert)?, &read(key)?).map_err(tls_err)?;
            Ok((config, None))
        }
        TlsSource::DevCa { dir, names } => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let files = ironedge_pki::write_dev_ca(dir, "ironedge hub development CA", &names)
                .map_err(tls_err)?;
            let read =
                |p: &Path| std::fs::read_to_string(p).map_err(|e| ServerError::Tls(e.to_string()));
            let config =
                ironedge_pki::server_config(&read(&files.server_cert)?, &read(&files.server_key)?)
                    .map_err(tls_err)?;
            Ok((config, Some(files.ca_cert)))
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Opens storage, binds every listener and starts serving. Stop with [`Started::shutdown`].
pub async fn start(settings: ServerSettings) -> Result<Started, ServerError> {
    ironedge_pki::install_default_provider();
    let (tls, dev_ca) = load_tls(&settings.tls)?;
    let db = settings.database.clone();
    let store = tokio::task::spawn_blocking(move || SqliteStorage::open(&db))
        .await
        .map_err(|e| ServerError::Hub(crate::Error::Internal(e.to_string())))??;
    let hub = Hub::start(Arc::new(store), settings.hub.clone()).await?;
    let rest_listener = bind(settings.rest_addr).await?;
    let mqtt_listener = bind(settings.mqtt_addr).await?;
    let ws_listener = match settings.websocket_addr {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let rest_addr = rest_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            addr: settings.rest_addr,
            source,
        })?;
    let mqtt_addr = mqtt_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            addr: settings.mqtt_addr,
            source,
        })?;
    let websocket_addr = ws_listener.as_ref().and_then(|l| l.local_addr().ok());
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(rest::serve(
        rest_listener,
        tls.clone(),
        rest::app(hub.clone()),
        shutdown.clone(),
    )));
    // A client that opens TLS and never completes CONNECT holds a socket; 10 s is plenty.
    let config = MqttConfig {
        connect_timeout: std::time::Duration::from_secs(10),
        ..MqttConfig::default()
    };
    let mqtt = MqttServer::new(config, Arc::new(DeviceHooks::new(hub.clone())));
    {
        let (mqtt, tls, stop) = (mqtt.clone(), tls.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = mqtt
                .serve(mqtt_listener, Some(tls), stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "MQTT listener failed");
            }
        }));
    }
    if let Some(l) = ws_listener {
        let (mqtt, stop) = (mqtt.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = mqtt
                .serve_websocket(l, Some(tls), stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "MQTT WebSocket listener failed");
            }
        }));
    }
    tracing::info!(%rest_addr, %mqtt_addr, websocket = ?websocket_addr, "hub listening");
    Ok(Started {
        hub,
        rest_addr,
        mqtt_addr,
        websocket_addr,
        dev_ca,
        tasks,
        shutdown,
    })
}

impl Started {
    /// Stops accepting, drains connections, flushes telemetry.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.hub.close().await;
        tracing::info!("hub stopped");
    }
}
