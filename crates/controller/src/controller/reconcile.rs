//! One reconcile of one EdgeDeployment.
//!
//! 1. Read the caches (no GETs).
//! 2. Translate the spec (pure).
//! 3. Plan the writes (pure): a bad spec or a name taken by another owner stops here, so nothing
//!    running is touched.
//! 4. Write: replace changed Jobs, apply what differs, delete what is no longer wanted.
//! 5. Compute the status (pure).
//! 6. Write the status only when it changed, and publish Events only for transitions.
//!
//! A reconcile with nothing to do sends no request at all.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::jiff::{Timestamp, Unit};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::metrics::Metrics;
use super::observed::{Observed, Stores};
use super::plan::{self, Apply, Kind, Plan};
use crate::crd::{EdgeDeployment, EdgeDeploymentStatus};
use crate::error::{Error, Result};
use crate::labels::FIELD_MANAGER;
use crate::names;
use crate::status::{self, Outcome};
use crate::translate;

/// Longest wait for one API request; without it a request lost in an API server restart would
/// block this EdgeDeployment's reconciles forever (kube sets no read timeout).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

async fn bounded<T>(request: impl std::future::Future<Output = kube::Result<T>>) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Error::Timeout(REQUEST_TIMEOUT)),
    }
}

/// What every reconcile shares.
pub struct Context {
    /// Client for writes (reads come from the stores).
    pub client: Client,
    /// The reflector caches.
    pub stores: Stores,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Events on EdgeDeployments.
    pub recorder: Recorder,
    /// Safety-net requeue period.
    pub resync: Duration,
    /// Consecutive failures per EdgeDeployment, for back-off.
    failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("stores", &self.stores)
            .field("resync", &self.resync)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context over these parts.
    pub fn new(
        client: Client,
        stores: Stores,
        metrics: Arc<Metrics>,
        recorder: Recorder,
        resync: Duration,
    ) -> Self {
        Self {
            client,
            stores,
            metrics,
            recorder,
            resync,
            failures: Mutex::default(),
        }
    }

    fn failures(&self, key: &str, failed: bool) -> u32 {
        let Ok(mut map) = self.failures.lock() else {
            return 0;
        };
        if failed {
            let count = map.entry(key.to_string()).or_insert(0);
            *count += 1;
            *count
        } else {
            map.remove(key);
            0
        }
    }
}

/// Reconciles one EdgeDeployment.
pub async fn reconcile(ed: Arc<EdgeDeployment>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer();
    tracing::debug!(edgedeployment = %ed.name_any(), namespace = ?ed.namespace(), "reconcile");
    // Deciding on half-filled caches would re-apply objects that exist.
    ctx.stores.readiness.wait().await;
    if ed.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children.
        return Ok(Action::await_change());
    }
    let namespace = ed.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let uid = ed
        .metadata
        .uid
        .clone()
        .ok_or(Error::MissingMetadata("uid"))?;
    let instance = names::label_value(&ed.name_any());
    let observed = Observed::from_stores(&ctx.stores, &ed, &instance);

    let mut outcome = Outcome::default();
    let mut written = Vec::new();
    let mut api_error = None;
    let desired = match translate::translate(&ed)
        .and_then(|d| plan::plan(&ed, &d, &observed).map(|p| (d, p)))
    {
        Ok((desired, plan)) => {
            outcome.waiting.clone_from(&plan.waiting);
            if let Err(err) = execute(&ctx.client, &namespace, &uid, &plan, &mut written).await {
                let reason = match &err {
                    Error::Spec(spec) => spec.reason(),
                    _ => status::REASON_APPLY_FAILED,
                };
                outcome.error = Some((reason.to_string(), err.to_string()));
                api_error = Some(err);
            }
            Some(desired)
        }
        Err(err) => {
            tracing::warn!(edgedeployment = %ed.name_any(), namespace, error = %err, "invalid spec; nothing changed");
            ctx.metrics.error("invalid_spec");
            outcome.error = Some((err.reason().to_string(), err.to_string()));
            None
        }
    };

    let pods = observed.pod_refs();
    let modules = desired
        .as_ref()
        .map(|d| observed.modules(d.modules.iter().map(|m| m.name.as_str()), &uid, &pods))
        .unwrap_or_default();
    let now = Timestamp::now()
        .round(Unit::Second)
        .unwrap_or_else(|_| Timestamp::now())
        .to_string();
    let mut status = status::compute(&ed, desired.as_ref(), &modules, &outcome, &now);
    let system_pods: Vec<_> = observed.system_pods.iter().map(|p| &**p).collect();
    status.system_modules = Some(status::system_modules(&system_pods));
    if ed.status.as_ref() != Some(&status) {
        patch_status(&ctx.client, &ed, &status).await?;
    }
    publish_events(&ctx.recorder, &ed, ed.status.as_ref(), &status, &written).await;
    ctx.failures(
        &format!("{namespace}/{}", ed.name_any()),
        api_error.is_some(),
    );

    match (api_error, desired) {
        (Some(err), _) => Err(err),
        (None, None) => Ok(Action::await_change()),
        (None, Some(_)) => Ok(Action::requeue(ctx.resync)),
    }
}

/// Logs, counts and requeues with exponential back-off (1 s doubling to 5 min).
pub fn error_policy(ed: Arc<EdgeDeployment>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(err.metric_label());
    let key = format!("{}/{}", ed.namespace().unwrap_or_default(), ed.name_any());
    let failures = ctx.failures(&key, true);
    let delay = Duration::from_secs(1u64 << failures.min(9)).min(Duration::from_secs(300));
    tracing::warn!(edgedeployment = %key, error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn execute(
    client: &Client,
    namespace: &str,
    uid: &str,
    plan: &Plan,
    written: &mut Vec<String>,
) -> Result<()> {
    let mut first_error = None;
    for name in &plan.replace_jobs {
        match delete::<Job>(client, namespace, name).await {
            Ok(()) => written.push(format!("replaced Job/{name}")),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    for apply in &plan.applies {
        let result = match apply.kind {
            Kind::Claim => ssa::<PersistentVolumeClaim>(client, namespace, uid, apply).await,
            Kind::ServiceAccount => ssa::<ServiceAccount>(client, namespace, uid, apply).await,
            Kind::Service => ssa::<Service>(client, namespace, uid, apply).await,
            Kind::Deployment => ssa::<Deployment>(client, namespace, uid, apply).await,
            Kind::Job => ssa::<Job>(client, namespace, uid, apply).await,
        };
        match result {
            Ok(()) => written.push(format!("applied {}/{}", apply.kind.as_str(), apply.name)),
            Err(err) => {
                tracing::warn!(kind = apply.kind.as_str(), name = apply.name, error = %err, "apply failed");
                first_error.get_or_insert(err);
            }
        }
    }
    for (kind, name) in &plan.deletes {
        let result = match kind {
            Kind::Claim => delete::<PersistentVolumeClaim>(client, namespace, name).await,
            Kind::ServiceAccount => delete::<ServiceAccount>(client, namespace, name).await,
            Kind::Service => delete::<Service>(client, namespace, name).await,
            Kind::Deployment => delete::<Deployment>(client, namespace, name).await,
            Kind::Job => delete::<Job>(client, namespace, name).await,
        };
        match result {
            Ok(()) => written.push(format!("deleted {}/{name}", kind.as_str())),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn ssa<K>(client: &Client, namespace: &str, uid: &str, apply: &Apply) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    if apply.create {
        // A forced apply would take over an object someone else made (the device chart's, a
        // user's): the caches only hold ours, so look before creating.
        if let Some(live) = bounded(api.get_opt(&apply.name)).await? {
            plan::check_foreign(apply.kind, &live, uid)?;
        }
    }
    bounded(api.patch(
        &apply.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&apply.body),
    ))
    .await?;
    Ok(())
}

async fn delete<K>(client: &Client, namespace: &str, name: &str) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match bounded(api.delete(name, &DeleteParams::background())).await {
        Ok(_) => Ok(()),
        Err(Error::Kube(kube::Error::Api(status))) if status.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
}

async fn patch_status(
    client: &Client,
    ed: &EdgeDeployment,
    status: &EdgeDeploymentStatus,
) -> Result<()> {
    let api: Api<EdgeDeployment> =
        Api::namespaced(client.clone(), &ed.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": "ironedge.io/v1",
        "kind": "EdgeDeployment",
        "status": status,
    });
    bounded(api.patch_status(
        &ed.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    ))
    .await?;
    Ok(())
}

/// Events for writes, condition flips and module status changes; nothing when nothing changed.
async fn publish_events(
    recorder: &Recorder,
    ed: &EdgeDeployment,
    before: Option<&EdgeDeploymentStatus>,
    after: &EdgeDeploymentStatus,
    written: &[String],
) {
    let mut events = Vec::new();
    if !written.is_empty() {
        events.push(event(
            EventType::Normal,
            "Applied",
            "Apply",
            truncate(written.join(", ")),
        ));
    }
    for condition in &after.conditions {
        let old = before.and_then(|b| b.conditions.iter().find(|c| c.type_ == condition.type_));
        let changed =
            old.is_none_or(|o| o.status != condition.status || o.reason != condition.reason);
        if !changed
            || (old.is_none() && condition.status == "False" && condition.type_ == status::DEGRADED)
        {
            continue;
        }
        let warning = (condition.type_ == status::DEGRADED && condition.status == "True")
            || (condition.type_ == status::READY && condition.status == "False" && old.is_some());
        if condition.type_ == status::PROGRESSING
            || (condition.type_ == status::READY && !warning && condition.status == "False")
        {
            continue;
        }
        let kind = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let note = format!(
            "{} is {}: {}",
            condition.type_, condition.status, condition.message
        );
        events.push(event(kind, &condition.reason, "Reconcile", truncate(note)));
    }
    let mut changes = Vec::new();
    for module in &after.modules {
        let old = before.and_then(|b| b.modules.iter().find(|m| m.name == module.name));
        if old.is_none_or(|o| o.runtime_status != module.runtime_status) {
            let from = old.map_or("none", |o| o.runtime_status.as_str());
            changes.push(format!(
                "{}: {from} → {}",
                module.name,
                module.runtime_status.as_str()
            ));
        }
    }
    if !changes.is_empty() {
        events.push(event(
            EventType::Normal,
            "ModuleStatusChanged",
            "Observe",
            truncate(changes.join(", ")),
        ));
    }
    let reference = ed.object_ref(&());
    for ev in events {
        if let Err(err) = bounded(recorder.publish(&ev, &reference)).await {
            tracing::warn!(error = %err, reason = ev.reason, "cannot publish event");
        }
    }
}

fn event(type_: EventType, reason: &str, action: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    }
}

/// Event notes are limited to 1 kB.
fn truncate(mut text: String) -> String {
    if text.len() > 1000 {
        let cut = (0..=1000)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}
