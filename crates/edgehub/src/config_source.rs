//! Where the routing configuration comes from: a JSON file (local runs, tests) or the device's
//! `EdgeDeployment` in Kubernetes (watched). Either way a bad configuration is logged with the
//! reason and the running one stays in force; a good one is swapped in atomically.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::hub::Hub;

/// How often a configuration file is checked for changes.
const FILE_POLL: Duration = Duration::from_secs(2);

/// A source of [`HubConfig`]s.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A fixed configuration.
    Static(HubConfig),
    /// A JSON file (`{"routes": {...}, "storeAndForward": {...}}`), re-read when it changes.
    File(PathBuf),
    /// The `EdgeDeployment` of the device namespace.
    Kube(crate::kube_watch::KubeSource),
}

impl ConfigSource {
    /// Applies configurations until `stop` is cancelled.
    pub async fn run(self, hub: Hub, stop: CancellationToken) {
        match self {
            Self::Static(config) => {
                apply(&hub, &config, "static configuration").await;
            }
            Self::File(path) => watch_file(hub, path, stop).await,
            Self::Kube(source) => source.run(hub, stop).await,
        }
    }
}

/// Applies `config`, or logs why not (the running configuration stays).
pub(crate) async fn apply(hub: &Hub, config: &HubConfig, origin: &str) -> bool {
    match hub.apply_config(config).await {
        Ok(()) => {
            hub.metrics().config_applied.inc();
            true
        }
        Err(e) => {
            tracing::error!(origin, error = %e, "configuration rejected; keeping the running routes");
            hub.metrics().config_rejected.inc();
            false
        }
    }
}

async fn watch_file(hub: Hub, path: PathBuf, stop: CancellationToken) {
    let mut last: Option<Vec<u8>> = None;
    loop {
        match tokio::fs::read(&path).await {
            Ok(bytes) if last.as_ref() != Some(&bytes) => {
                match serde_json::from_slice::<HubConfig>(&bytes) {
                    Ok(config) => {
                        apply(&hub, &config, &path.display().to_string()).await;
                    }
                    Err(e) => {
                        tracing::error!(file = %path.display(), error = %e, "configuration file is not valid; keeping the running routes")
                    }
                }
                last = Some(bytes);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "reading the configuration file failed")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(FILE_POLL) => {}
        }
    }
}
