//! Cluster → cloud: keeps the `$edgeAgent` (and `$edgeHub`) reported properties equal to what
//! the cluster runs, sending only the difference to what the cloud already holds, after a short
//! quiet period so a burst of pod changes becomes one patch.
//!
//! The cloud's copy (the baseline) is what the last full twin GET returned after a (re)connect,
//! updated after every acknowledged patch; until a link has a baseline nothing is sent on it, so
//! an offline agent never sends stale diffs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ironedge_controller::crd::EdgeDeploymentStatus;
use ironedge_model::Manifest;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::identities::{EDGE_AGENT, EDGE_HUB};
use crate::metrics::Metrics;
use crate::reported::{self, Inputs, LastDesired, Platform};
use crate::upstream::{Connection, module_id};

/// What the sync loop tells the reporter about the desired side.
#[derive(Debug, Clone, Default)]
pub struct DesiredReport {
    /// Outcome of the last `$edgeAgent` desired properties.
    pub agent: Option<LastDesired>,
    /// Outcome of the last `$edgeHub` desired properties.
    pub hub: Option<LastDesired>,
    /// The manifest the cluster runs.
    pub manifest: Option<Arc<Manifest>>,
}

/// The reporter's inputs.
#[derive(Debug)]
pub struct ReporterInputs {
    /// Desired-side outcomes.
    pub desired: watch::Receiver<DesiredReport>,
    /// The EdgeDeployment's status.
    pub status: watch::Receiver<Option<EdgeDeploymentStatus>>,
    /// `(module id, reported section)` read from the cloud after a (re)connect.
    pub baselines: mpsc::Receiver<(String, Value)>,
}

/// Static facts for the reported properties.
#[derive(Debug, Clone)]
pub struct ReporterFacts {
    /// The agent's version.
    pub agent_version: String,
    /// Where it runs.
    pub platform: Platform,
    /// When it started (RFC 3339).
    pub started: String,
    /// Quiet time before sending.
    pub debounce: Duration,
}

/// Runs until `shutdown`.
pub async fn run(
    links: Vec<Arc<Connection>>,
    mut inputs: ReporterInputs,
    facts: ReporterFacts,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut baselines: HashMap<String, Value> = HashMap::new();
    let mut connected: Vec<watch::Receiver<bool>> =
        links.iter().map(|l| l.subscribe_connected()).collect();
    // Send after `debounce` without changes, but never later than five debounces after the
    // first unsent change, so a constantly changing cluster is still reported.
    let mut first_change: Option<Instant> = Some(Instant::now());
    let mut last_change = Instant::now();
    loop {
        let deadline = match first_change {
            Some(first) => (last_change + facts.debounce).min(first + facts.debounce * 5),
            None => Instant::now() + Duration::from_secs(3600),
        };
        let mut changed_now = false;
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = inputs.desired.changed() => {
                if changed.is_err() { return; }
                changed_now = true;
            }
            changed = inputs.status.changed() => {
                if changed.is_err() { return; }
                changed_now = true;
            }
            Some((module, reported)) = inputs.baselines.recv() => {
                baselines.insert(module, reported::without_twin_metadata(&reported));
                changed_now = true;
            }
            () = any_changed(&mut connected) => changed_now = true,
            () = tokio::time::sleep_until(deadline) => {}
        }
        if changed_now {
            last_change = Instant::now();
            first_change.get_or_insert(last_change);
            continue;
        }
        if first_change.is_none() {
            continue;
        }
        let desired = inputs.desired.borrow().clone();
        if desired.agent.is_none() {
            // Nothing processed since start: what the cloud holds is better than an empty report.
            first_change = None;
            continue;
        }
        let status = inputs.status.borrow().clone();
        let agent_doc = reported::edge_agent(Inputs {
            agent_version: &facts.agent_version,
            platform: &facts.platform,
            last_desired: desired.agent.as_ref(),
            manifest: desired.manifest.as_deref(),
            status: status.as_ref(),
            agent_started: &facts.started,
        });
        let hub_doc = reported::edge_hub(desired.hub.as_ref());
        let mut all_sent = true;
        for link in &links {
            let doc = match module_id(link) {
                EDGE_AGENT => &agent_doc,
                EDGE_HUB => &hub_doc,
                _ => continue,
            };
            all_sent &= send(link, doc, &mut baselines, &metrics).await;
        }
        if all_sent {
            first_change = None;
        } else {
            last_change = Instant::now();
            first_change = Some(last_change);
        }
    }
}

/// Sends the diff of `doc` against the link's baseline; false when it must be tried again.
async fn send(
    link: &Connection,
    doc: &Value,
    baselines: &mut HashMap<String, Value>,
    metrics: &Metrics,
) -> bool {
    let module = module_id(link).to_string();
    let Some(baseline) = baselines.get(&module) else {
        // Not connected since start, or the full GET after connecting is still to come.
        return true;
    };
    let Some(patch) = reported::diff(baseline, doc) else {
        return true;
    };
    if !link.is_connected() {
        // The full GET after the reconnect brings a new baseline, and with it another attempt.
        return true;
    }
    match link.patch_reported(&patch).await {
        Ok(()) => {
            metrics.reported_patches.inc();
            tracing::debug!(identity = %module, bytes = patch.to_string().len(), "reported properties sent");
            baselines.insert(module, doc.clone());
            true
        }
        Err(e) => {
            tracing::warn!(identity = %module, error = %e, "sending reported properties failed; will retry");
            false
        }
    }
}

/// Completes when any connection state changes.
async fn any_changed(receivers: &mut [watch::Receiver<bool>]) {
    if receivers.is_empty() {
        return std::future::pending().await;
    }
    let futures = receivers.iter_mut().map(|r| Box::pin(r.changed()));
    let (result, _, _) = futures::future::select_all(futures).await;
    if result.is_err() {
        std::future::pending::<()>().await;
    }
}
