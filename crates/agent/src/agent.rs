//! Wires one device's agent together and runs it until shutdown:
//!
//! 1. module identities: load the keys held in Secrets;
//! 2. the controller in per-namespace mode, and `/healthz`, `/readyz`, `/metrics`: they need
//!    nothing from the cloud, so a device that starts offline is healthy and keeps reconciling
//!    the EdgeDeployment it has;
//! 3. the edge CA, trust bundle and server certificates, with a rotation loop;
//! 4. the workload API over TLS with TokenReview caller authentication (with the keys held);
//! 5. make sure `$edgeAgent` and `$edgeHub` have identities with our keys (waiting for the hub
//!    only if no keys are held);
//! 6. the MQTT links as `$edgeAgent` and `$edgeHub`, the sync loop (cloud → cluster) and the
//!    reporter (cluster → cloud).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use ironedge_controller::controller::{self as ctl, Scope};
use ironedge_controller::crd::EdgeDeployment;
use ironedge_protocol::Identity;
use ironedge_workload::{MemoryKeyStore, Workload};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::caller_auth::TokenReviewAuth;
use crate::certificates::{AGENT_SERVICE, Certificates};
use crate::cluster::{Cluster, object_names};
use crate::edge_ca::{NamePolicy, service_names};
use crate::error::Result;
use crate::events::Events;
use crate::identities::{EDGE_AGENT, EDGE_HUB, IdentityManager};
use crate::methods::MethodContext;
use crate::metrics::Metrics;
use crate::registry::RegistryClient;
use crate::reported::Platform;
use crate::reporter::{self, DesiredReport, ReporterFacts, ReporterInputs};
use crate::server::{self, Readiness};
use crate::settings::AgentSettings;
use crate::sync::{ModuleMaps, Sync};
use crate::upstream::{Backoff, Connection, KeyTokens, SUBSCRIPTIONS, UpstreamSettings, jitter};

/// The sockets the agent serves on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// The workload API (TLS).
    pub workload: TcpListener,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub ops: Option<TcpListener>,
}

/// Handles a running agent exposes (tests read them).
#[derive(Debug, Clone)]
pub struct Handles {
    /// The agent's metrics.
    pub metrics: Arc<Metrics>,
    /// Whether start-up finished.
    pub readiness: Arc<Readiness>,
}

/// Runs the agent until `shutdown`.
pub async fn run(
    client: Client,
    settings: AgentSettings,
    listeners: Listeners,
    handles: Handles,
    shutdown: CancellationToken,
) -> Result<()> {
    ironedge_pki::install_default_provider();
    let Handles { metrics, readiness } = handles;
    let ns = settings.namespace.clone();
    let events = Events::new(
        client.clone(),
        &ns,
        &settings.edge_deployment,
        settings.pod_name.clone(),
    );
    let keys = MemoryKeyStore::default();
    let registry = RegistryClient::new(
        &settings.hub.rest_url,
        &settings.hub.trust_pem,
        settings.device.clone(),
    )?;
    let identities = Arc::new(IdentityManager::new(
        Api::<Secret>::namespaced(client.clone(), &ns),
        registry,
        settings.device.device_id.clone(),
        keys.clone(),
    ));
    let held = identities.load().await?;
    tracing::info!(held, "module identities loaded from Secrets");

    let controller = if settings.run_controller {
        Some(start_controller(&client, &settings, &shutdown))
    } else {
        None
    };
    if let Some(ops) = listeners.ops {
        let app = server::app(metrics.clone(), controller.clone(), readiness.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = server::serve(ops, app, stop.cancelled_owned()).await {
                tracing::error!(error = %e, "operations endpoint failed");
            }
        });
    }

    let cluster = Cluster::new(
        client.clone(),
        &ns,
        &settings.edge_deployment,
        &settings.device.device_id,
    );
    let current = cluster.current().await?;
    let names = current
        .as_ref()
        .map(|ed| object_names(&ed.spec))
        .unwrap_or_default();

    let mut edgehub_names = settings.certificates.edgehub_names.clone();
    edgehub_names.extend(settings.gateway_host_name.iter().cloned());
    let policy = NamePolicy {
        namespace: ns.clone(),
        edgehub_names,
        modules: names.clone(),
    };
    let certificates = Arc::new(
        Certificates::start(
            client.clone(),
            &ns,
            settings.certificates.clone(),
            policy,
            workload_names(&settings),
            metrics.clone(),
            events.clone(),
        )
        .await?,
    );
    tokio::spawn(certificates.clone().run(shutdown.clone()));

    let auth = Arc::new(TokenReviewAuth::new(
        client.clone(),
        &ns,
        &settings.workload.audience,
        settings.workload.review_cache_ttl,
        metrics.clone(),
    ));
    let maps = ModuleMaps {
        auth: auth.clone(),
        ca: certificates.ca.clone(),
        methods: Arc::new(RwLock::new(BTreeMap::new())),
    };
    maps.update(&names);
    let workload = Workload::new(Arc::new(keys), certificates.ca.clone(), auth);
    let tls = certificates.workload_tls.server_config()?;
    tracing::info!(addr = ?crate::workload::server::local_addr(&listeners.workload), "workload API listening");
    tokio::spawn(crate::workload::server::serve(
        listeners.workload,
        tls,
        workload,
        shutdown.clone(),
    ));

    if !system_identities(&identities, &settings, &shutdown).await {
        return Ok(());
    }

    let (link_events, link_rx) = mpsc::channel(64);
    let link_settings = link_settings(&settings)?;
    let changed = Arc::new(watch::channel(0).0);
    let link = |module: &str| {
        let ids = identities.clone();
        let id = module.to_string();
        Connection::start(
            Identity::module(settings.device.device_id.clone(), module),
            link_settings.clone(),
            Arc::new(KeyTokens(Arc::new(move || {
                ids.keys(&id).map(|k| k.primary)
            }))),
            &SUBSCRIPTIONS,
            link_events.clone(),
            changed.clone(),
            shutdown.clone(),
        )
    };
    let agent_link = link(EDGE_AGENT);
    let hub_link = link(EDGE_HUB);

    let (report_tx, report_rx) = watch::channel(DesiredReport::default());
    let (status_tx, status_rx) = watch::channel(current.and_then(|ed| ed.status));
    let (baseline_tx, baseline_rx) = mpsc::channel(8);
    tokio::spawn(watch_status(
        Api::namespaced(client.clone(), &ns),
        settings.edge_deployment.clone(),
        status_tx,
        shutdown.clone(),
    ));
    let facts = ReporterFacts {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        platform: platform(&client).await,
        started: jiff::Timestamp::now().to_string(),
        debounce: settings.timing.report_debounce,
    };
    tokio::spawn(reporter::run(
        vec![agent_link.clone(), hub_link.clone()],
        ReporterInputs {
            desired: report_rx,
            status: status_rx,
            baselines: baseline_rx,
        },
        facts,
        metrics.clone(),
        shutdown.clone(),
    ));

    let methods = MethodContext {
        pods: Api::<Pod>::namespaced(client.clone(), &ns),
        instance: ironedge_controller::names::label_value(&settings.edge_deployment),
        modules: maps.methods.clone(),
        agent_pod: settings.pod_name.clone(),
        hub_name: settings.device.host_name.clone(),
        device_id: settings.device.device_id.clone(),
    };
    readiness.set(true);
    tracing::info!(namespace = %ns, device = %settings.device.device_id, "edge agent running");
    let sync = Sync {
        settings,
        agent_link,
        hub_link,
        identities,
        cluster,
        maps,
        methods,
        report: report_tx,
        baselines: baseline_tx,
        metrics,
        events,
    };
    sync.run(link_rx, shutdown.clone()).await;
    readiness.set(false);
    Ok(())
}

/// Makes sure `$edgeAgent` and `$edgeHub` have identities with keys the agent holds; waits
/// (with back-off) while the hub is unreachable and no keys are held. False on shutdown.
async fn system_identities(
    identities: &IdentityManager,
    settings: &AgentSettings,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::new(settings.timing.backoff_min, settings.timing.backoff_max);
    loop {
        match identities.ensure(&BTreeSet::new(), false).await {
            Ok(changes) => {
                if !changes.written.is_empty() {
                    tracing::info!(written = ?changes.written, "system module identities written");
                }
                return true;
            }
            Err(e) => {
                let delay = backoff.next_delay(jitter());
                tracing::warn!(error = %e, retry_in = ?delay, "cannot set up the agent's identities yet");
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

fn start_controller(
    client: &Client,
    settings: &AgentSettings,
    shutdown: &CancellationToken,
) -> (Arc<ctl::Metrics>, Arc<ctl::Health>) {
    let metrics = Arc::new(ctl::Metrics::default());
    let health = Arc::new(ctl::Health::default());
    let mut controller_settings = ctl::Settings::new(Scope::Namespace(settings.namespace.clone()));
    controller_settings.resync = settings.controller_resync;
    controller_settings.instance = settings.pod_name.clone();
    let (m, h, c, stop) = (
        metrics.clone(),
        health.clone(),
        client.clone(),
        shutdown.clone(),
    );
    tokio::spawn(async move {
        if let Err(e) = ctl::run(c, controller_settings, m, h, stop.cancelled_owned()).await {
            tracing::error!(error = %e, "the in-process controller stopped");
        }
    });
    (metrics, health)
}

fn link_settings(settings: &AgentSettings) -> Result<UpstreamSettings> {
    let tls = ironedge_pki::client_config(&settings.hub.trust_pem, None)?;
    Ok(UpstreamSettings {
        hub_host_name: settings.device.host_name.clone(),
        host: settings.hub.mqtt_host.clone(),
        port: settings.hub.mqtt_port,
        tls,
        token_ttl: settings.timing.token_ttl,
        keep_alive: settings.timing.keep_alive,
        backoff_min: settings.timing.backoff_min,
        backoff_max: settings.timing.backoff_max,
        operation_timeout: settings.timing.operation_timeout,
        // Twin requests and method answers only: no telemetry window to fill.
        inflight: 16,
    })
}

/// Names of the agent's workload server certificate: its Service names, the host of the URL the
/// sidecars dial, and any configured names.
fn workload_names(settings: &AgentSettings) -> Vec<String> {
    let mut names = service_names(AGENT_SERVICE, &settings.namespace);
    if let Some(host) = url_host(&settings.workload.agent_url) {
        names.insert(0, host);
    }
    names.extend(settings.workload.server_names.iter().cloned());
    let mut seen = BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// The host of `https://host:port/...`.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

async fn platform(client: &Client) -> Platform {
    let version = match client.apiserver_version().await {
        Ok(info) => info.git_version,
        Err(_) => "unknown".to_string(),
    };
    Platform {
        os: std::env::consts::OS.to_string(),
        architecture: std::env::consts::ARCH.to_string(),
        version,
    }
}

/// Follows the EdgeDeployment's status into `tx`.
async fn watch_status(
    api: Api<EdgeDeployment>,
    name: String,
    tx: watch::Sender<Option<ironedge_controller::crd::EdgeDeploymentStatus>>,
    shutdown: CancellationToken,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher::watcher(api, config));
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        match event {
            Some(Ok(watcher::Event::Apply(ed) | watcher::Event::InitApply(ed))) => {
                tx.send_if_modified(|s| {
                    let changed = *s != ed.status;
                    s.clone_from(&ed.status);
                    changed
                });
            }
            Some(Ok(watcher::Event::Delete(_))) => {
                tx.send_replace(None);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "EdgeDeployment watch error; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts_are_found() {
        assert_eq!(
            url_host("https://ironedge-agent.dev1.svc:15581").as_deref(),
            Some("ironedge-agent.dev1.svc")
        );
        assert_eq!(
            url_host("https://127.0.0.1:1/").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(url_host("https://[::1]:443").as_deref(), Some("::1"));
    }
}
