//! Cloud → cluster: the one task that owns the desired state.
//!
//! It pulls the full `$edgeAgent` and `$edgeHub` twins after every (re)connect and every
//! `refresh_interval`, applies desired patches in `$version` order (re-pulling on a gap), and —
//! after a short quiet period, because the two twins of one deployment change apart — validates
//! both sections with `ironedge-model`. A valid manifest gets its module identities, then its
//! EdgeDeployment and pull Secrets; an invalid one is rejected whole with `lastDesiredStatus`
//! 400/412/417 and the reason, and the cluster keeps running the last good deployment. Nothing
//! here needs the cloud to keep the device running: the EdgeDeployment is the durable copy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ironedge_controller::crd::{WorkloadProxySpec, WorkloadSpec};
use ironedge_controller::from_manifest::{self, Identity};
use ironedge_model::{EDGE_HUB, Manifest, ValidationErrors};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::caller_auth::TokenReviewAuth;
use crate::cluster::{Cluster, object_names};
use crate::edge_ca::EdgeCa;
use crate::error::Result;
use crate::events::Events;
use crate::identities::{self, IdentityManager};
use crate::methods::{self, MethodContext, ModuleRef};
use crate::metrics::{IdentityLabels, Metrics};
use crate::reported::LastDesired;
use crate::reporter::DesiredReport;
use crate::settings::AgentSettings;
use crate::twin_sync::{PatchOutcome, TwinSync, version_of};
use crate::upstream::{Backoff, Connection, UpstreamEvent, jitter, module_id};

/// Longest `lastDesiredStatus.description` (the twin limits strings to 4 KB).
const MAX_DESCRIPTION: usize = 2000;

/// Where a deployment's module names go once it is applied.
#[derive(Clone)]
pub struct ModuleMaps {
    /// Workload API caller authentication (module id → ServiceAccount).
    pub auth: Arc<TokenReviewAuth>,
    /// The edge CA's name policy (module id → Service name).
    pub ca: Arc<EdgeCa>,
    /// Direct methods (module name → module).
    pub methods: Arc<RwLock<BTreeMap<String, ModuleRef>>>,
}

impl std::fmt::Debug for ModuleMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleMaps").finish_non_exhaustive()
    }
}

impl ModuleMaps {
    /// Points every consumer at the modules of `names` (module id → object name).
    pub fn update(&self, names: &BTreeMap<String, String>) {
        self.auth.set_modules(names.clone());
        self.ca.set_modules(names.clone());
        let by_name = names
            .iter()
            .map(|(id, object)| {
                let name = if id == identities::EDGE_HUB {
                    EDGE_HUB.to_string()
                } else {
                    id.clone()
                };
                (
                    name.clone(),
                    ModuleRef {
                        name,
                        object: object.clone(),
                    },
                )
            })
            .collect();
        match self.methods.write() {
            Ok(mut m) => *m = by_name,
            Err(poisoned) => *poisoned.into_inner() = by_name,
        }
    }
}

/// Everything the sync loop uses.
pub struct Sync {
    /// Settings.
    pub settings: AgentSettings,
    /// `$edgeAgent` link.
    pub agent_link: Arc<Connection>,
    /// `$edgeHub` link.
    pub hub_link: Arc<Connection>,
    /// Module identities.
    pub identities: Arc<IdentityManager>,
    /// The namespace writer.
    pub cluster: Cluster,
    /// Consumers of the module names.
    pub maps: ModuleMaps,
    /// Direct method context.
    pub methods: MethodContext,
    /// Desired-side outcomes for the reporter.
    pub report: watch::Sender<DesiredReport>,
    /// Cloud-side reported sections for the reporter.
    pub baselines: mpsc::Sender<(String, Value)>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Events.
    pub events: Events,
}

impl std::fmt::Debug for Sync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sync").finish_non_exhaustive()
    }
}

/// The loop's own state.
struct State {
    agent: TwinSync,
    hub: TwinSync,
    /// When to apply next (debounced after a change, or a retry after a failure).
    apply_at: Option<Instant>,
    /// Twins to fetch again, and when.
    refetch: BTreeMap<String, Instant>,
    retry: Backoff,
    /// The `(agent, hub)` versions last applied successfully.
    applied: Option<(Option<i64>, Option<i64>)>,
}

impl Sync {
    fn link(&self, module: &str) -> Option<&Arc<Connection>> {
        [&self.agent_link, &self.hub_link]
            .into_iter()
            .find(|l| module_id(l) == module)
    }

    /// Runs until `shutdown`, then reports 406 ("agent is not running") if it can.
    pub async fn run(self, mut events: mpsc::Receiver<UpstreamEvent>, shutdown: CancellationToken) {
        let timing = self.settings.timing.clone();
        let mut state = State {
            agent: TwinSync::default(),
            hub: TwinSync::default(),
            apply_at: None,
            refetch: BTreeMap::new(),
            retry: Backoff::new(timing.backoff_min, timing.backoff_max),
            applied: None,
        };
        let mut refresh = tokio::time::interval(timing.refresh_interval);
        refresh.tick().await;
        loop {
            let next_refetch = state.refetch.values().min().copied();
            let wake = [state.apply_at, next_refetch].into_iter().flatten().min();
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Some(event) => self.on_event(event, &mut state).await,
                    None => break,
                },
                _ = refresh.tick() => {
                    for link in [&self.agent_link, &self.hub_link] {
                        state.refetch.insert(module_id(link).to_string(), Instant::now());
                    }
                }
                () = sleep_until(wake) => {
                    let now = Instant::now();
                    let due: Vec<String> = state.refetch.iter().filter(|(_, t)| **t <= now).map(|(m, _)| m.clone()).collect();
                    for module in due {
                        state.refetch.remove(&module);
                        self.full_get(&module, &mut state).await;
                    }
                    if state.apply_at.is_some_and(|t| t <= now) {
                        state.apply_at = None;
                        self.apply(&mut state).await;
                    }
                }
            }
        }
        self.report_shutdown().await;
    }

    async fn on_event(&self, event: UpstreamEvent, state: &mut State) {
        let module = |identity: ironedge_protocol::Identity| identity.module_id.unwrap_or_default();
        match event {
            UpstreamEvent::Connected(identity) => {
                let module = module(identity);
                self.connected(&module, true);
                self.full_get(&module, state).await;
            }
            UpstreamEvent::Disconnected(identity) => self.connected(&module(identity), false),
            UpstreamEvent::DesiredPatch { identity, patch } => {
                let module = module(identity);
                let twin = if module == identities::EDGE_AGENT {
                    &mut state.agent
                } else {
                    &mut state.hub
                };
                match twin.on_patch(&patch) {
                    PatchOutcome::Applied(version) => {
                        tracing::info!(identity = %module, version, "desired properties patch");
                        self.schedule_apply(state);
                    }
                    PatchOutcome::Stale => {}
                    PatchOutcome::Refetch => {
                        tracing::info!(identity = %module, "desired version gap; pulling the full twin");
                        state.refetch.insert(module, Instant::now());
                    }
                }
            }
            UpstreamEvent::MethodRequest {
                identity,
                method,
                rid,
                payload,
            } => self.method(module(identity), method, rid, payload),
            // The agent's identities are modules: the cloud sends them no C2D.
            UpstreamEvent::CloudToDevice { .. } => {}
        }
    }

    fn connected(&self, module: &str, up: bool) {
        let was_up = self
            .metrics
            .connected
            .get_or_create(&IdentityLabels {
                identity: module.to_string(),
            })
            .get()
            == 1;
        self.metrics
            .connected
            .get_or_create(&IdentityLabels {
                identity: module.to_string(),
            })
            .set(i64::from(up));
        if module == identities::EDGE_AGENT && up != was_up {
            if up {
                self.events
                    .normal("Connected", "Connect", "connected to the hub".into());
            } else {
                self.events.warning(
                    "Disconnected",
                    "Connect",
                    "lost the connection to the hub; the device keeps running and reconnects"
                        .into(),
                );
            }
        }
    }

    fn schedule_apply(&self, state: &mut State) {
        let at = Instant::now() + self.settings.timing.desired_debounce;
        state.apply_at = Some(state.apply_at.map_or(at, |t| t.max(at)));
    }

    async fn full_get(&self, module: &str, state: &mut State) {
        let Some(link) = self.link(module) else {
            return;
        };
        if !link.is_connected() {
            return;
        }
        match link.get_twin().await {
            Ok(twin) => {
                let desired = twin
                    .get("desired")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let twin_state = if module == identities::EDGE_AGENT {
                    &mut state.agent
                } else {
                    &mut state.hub
                };
                let changed = twin_state.on_full(desired);
                let reported = twin.get("reported").cloned().unwrap_or_else(|| json!({}));
                let _ = self.baselines.send((module.to_string(), reported)).await;
                let versions = (state.agent.version(), state.hub.version());
                if changed || state.applied != Some(versions) {
                    self.schedule_apply(state);
                }
            }
            Err(e) => {
                tracing::warn!(identity = module, error = %e, "twin GET failed; retrying");
                self.metrics.sync_error("twin_get");
                let delay = Duration::from_secs(5);
                state
                    .refetch
                    .insert(module.to_string(), Instant::now() + delay);
            }
        }
    }

    async fn apply(&self, state: &mut State) {
        let (Some(agent), Some(hub)) = (state.agent.desired(), state.hub.desired()) else {
            // Both sections are needed; the other twin's GET is still to come.
            return;
        };
        let agent_version = version_of(agent);
        let hub_version = version_of(hub);
        let checked =
            Manifest::check_sections(&Value::Object(agent.clone()), &Value::Object(hub.clone()))
                .into_result();
        match checked {
            Err(errors) => self.reject(&errors, agent_version, hub_version),
            Ok(manifest) => match self.deploy(&manifest).await {
                Ok(()) => {
                    state.retry.reset();
                    state.applied = Some((agent_version, hub_version));
                    self.metrics.syncs.inc();
                    self.publish(
                        agent_version,
                        hub_version,
                        200,
                        String::new(),
                        Some(manifest),
                    );
                    self.events.normal(
                        "DeploymentApplied",
                        "ApplyDeployment",
                        format!(
                            "applied desired properties $edgeAgent v{} / $edgeHub v{}",
                            agent_version.unwrap_or_default(),
                            hub_version.unwrap_or_default()
                        ),
                    );
                }
                Err(e) => {
                    let delay = state.retry.next_delay(jitter());
                    tracing::warn!(error = %e, retry_in = ?delay, "applying the deployment failed");
                    self.metrics.sync_error(e.metric_label());
                    self.publish(
                        agent_version,
                        hub_version,
                        500,
                        truncate(format!("applying the deployment failed: {e}")),
                        None,
                    );
                    self.events
                        .warning("DeploymentFailed", "ApplyDeployment", e.to_string());
                    state.apply_at = Some(Instant::now() + delay);
                }
            },
        }
    }

    fn reject(
        &self,
        errors: &ValidationErrors,
        agent_version: Option<i64>,
        hub_version: Option<i64>,
    ) {
        let code = errors.status_code();
        let description = truncate(errors.to_string());
        tracing::warn!(
            code,
            errors = errors.len(),
            "desired properties rejected; the cluster keeps the last good deployment"
        );
        self.metrics.sync_error("invalid_manifest");
        // The hub section is reported as good unless an error lies in it.
        let hub_errors = errors
            .iter()
            .filter(|e| e.to_string().contains("$edgeHub"))
            .count();
        let hub_status = if hub_errors == 0 {
            (200, String::new())
        } else {
            (code, description.clone())
        };
        self.report.send_modify(|r| {
            if let Some(v) = agent_version {
                r.agent = Some(LastDesired {
                    version: v,
                    code,
                    description: description.clone(),
                });
            }
            if let Some(v) = hub_version {
                r.hub = Some(LastDesired {
                    version: v,
                    code: hub_status.0,
                    description: hub_status.1.clone(),
                });
            }
        });
        self.record_status(agent_version, hub_version, code);
        self.events.warning(
            "DeploymentRejected",
            "ApplyDeployment",
            format!("desired properties rejected ({code}); keeping the last good deployment: {description}"),
        );
    }

    fn publish(
        &self,
        agent_version: Option<i64>,
        hub_version: Option<i64>,
        code: u16,
        description: String,
        manifest: Option<Manifest>,
    ) {
        self.report.send_modify(|r| {
            if let Some(v) = agent_version {
                r.agent = Some(LastDesired {
                    version: v,
                    code,
                    description: description.clone(),
                });
            }
            if let Some(v) = hub_version {
                r.hub = Some(LastDesired {
                    version: v,
                    code,
                    description: description.clone(),
                });
            }
            if let Some(m) = manifest {
                r.manifest = Some(Arc::new(m));
            }
        });
        self.record_status(agent_version, hub_version, code);
    }

    fn record_status(&self, agent_version: Option<i64>, hub_version: Option<i64>, code: u16) {
        for (identity, version) in [
            (identities::EDGE_AGENT, agent_version),
            (identities::EDGE_HUB, hub_version),
        ] {
            let labels = IdentityLabels {
                identity: identity.to_string(),
            };
            if let Some(v) = version {
                self.metrics
                    .last_desired_version
                    .get_or_create(&labels)
                    .set(v);
            }
            self.metrics
                .last_desired_status
                .get_or_create(&labels)
                .set(i64::from(code));
        }
    }

    /// Identities, then the EdgeDeployment and its pull Secrets.
    async fn deploy(&self, manifest: &Manifest) -> Result<()> {
        let mut ids: BTreeSet<String> = manifest.edge_agent.modules.keys().cloned().collect();
        ids.insert(identities::EDGE_HUB.to_string());
        let changes = self.identities.ensure(&ids, true).await?;
        if !changes.written.is_empty() || !changes.deleted.is_empty() {
            self.events.normal(
                "ModuleIdentitiesChanged",
                "ManageIdentities",
                format!(
                    "written: {:?}; deleted: {:?}",
                    changes.written, changes.deleted
                ),
            );
        }
        let identity = Identity {
            device_id: self.settings.device.device_id.clone(),
            hub_host_name: self.settings.device.host_name.clone(),
            gateway_host_name: self.settings.gateway_host_name.clone(),
            workload: Some(self.workload_spec()),
            generation_ids: self.identities.generation_ids(),
        };
        let converted = from_manifest::from_manifest(manifest, &identity);
        let names = object_names(&converted.spec);
        // Name the new modules before pods exist, so their first workload call is understood.
        self.maps.update(&names);
        self.cluster
            .apply(&converted.spec, &converted.credentials)
            .await?;
        Ok(())
    }

    fn workload_spec(&self) -> WorkloadSpec {
        let w = &self.settings.workload;
        WorkloadSpec {
            uri: w.module_uri.clone(),
            api_version: Some(w.api_version.clone()),
            proxy: w.proxy_image.as_ref().map(|image| WorkloadProxySpec {
                image: image.clone(),
                agent_url: w.agent_url.clone(),
                audience: w.audience.clone(),
                trust_bundle_config_map: crate::labels::TRUST_BUNDLE_CONFIG_MAP.to_string(),
                token_expiration_seconds: None,
            }),
        }
    }

    fn method(&self, module: String, name: String, rid: String, payload: bytes::Bytes) {
        let Some(link) = self.link(&module).cloned() else {
            return;
        };
        let ctx = self.methods.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let (status, body) = if module == identities::EDGE_AGENT {
                methods::dispatch(&ctx, &name, &payload, &metrics).await
            } else {
                (
                    404,
                    json!({"message": format!("{module} has no direct method {name:?} on Kubernetes")}),
                )
            };
            let body = bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
            if let Err(e) = link.method_response(&rid, i32::from(status), body).await {
                tracing::warn!(method = %name, error = %e, "could not answer a direct method");
            }
        });
    }

    async fn report_shutdown(&self) {
        if !self.agent_link.is_connected() {
            return;
        }
        let patch =
            json!({"lastDesiredStatus": {"code": 406, "description": "Agent is not running"}});
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.agent_link.patch_reported(&patch),
        )
        .await;
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_DESCRIPTION {
        let mut cut = MAX_DESCRIPTION;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
