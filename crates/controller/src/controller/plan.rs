//! The pure decision of a reconcile: which objects to apply, replace and delete.
//!
//! **startupOrder.** Modules are grouped by `startupOrder`, ascending. A group's objects are
//! created only once every module of the earlier groups is available (a Deployment with an
//! available replica, a Job whose pod is ready or that has finished, or a stopped module whose
//! workload exists). A module whose workload already exists is always kept up to date, so an
//! update never waits for a gate. **Pruning.** Objects that this EdgeDeployment controls and the
//! spec no longer asks for are deleted; claims only when `storage.deleteWithDeployment` is set.
//! **Conflicts.** An object the spec needs that is controlled by something else is a
//! [`SpecError::ObjectConflict`]: nothing is written.

use std::collections::{BTreeMap, BTreeSet};

use kube::{Resource, ResourceExt};
use serde_json::Value;

use super::diff;
use super::observed::{Observed, controlled_by};
use crate::crd::EdgeDeployment;
use crate::error::SpecError;
use crate::labels;
use crate::status;
use crate::translate::{Desired, ObjectRef};

/// Kinds the controller writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// PersistentVolumeClaim.
    Claim,
    /// ServiceAccount.
    ServiceAccount,
    /// Service.
    Service,
    /// Deployment.
    Deployment,
    /// Job.
    Job,
}

impl Kind {
    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claim => "PersistentVolumeClaim",
            Self::ServiceAccount => "ServiceAccount",
            Self::Service => "Service",
            Self::Deployment => "Deployment",
            Self::Job => "Job",
        }
    }
}

/// One object to apply, as the JSON body of the server-side apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Apply {
    /// Kind.
    pub kind: Kind,
    /// Name.
    pub name: String,
    /// Body, with the applied-hash annotation.
    pub body: Value,
}

/// What a reconcile will write.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Objects to apply, claims first and workloads last.
    pub applies: Vec<Apply>,
    /// Jobs whose pod template changed: deleted now and created again on the next reconcile.
    pub replace_jobs: Vec<String>,
    /// Objects to delete.
    pub deletes: Vec<(Kind, String)>,
    /// Modules held back by the startupOrder gate.
    pub waiting: BTreeSet<String>,
}

impl Plan {
    /// Whether the reconcile writes nothing.
    pub fn is_empty(&self) -> bool {
        self.applies.is_empty() && self.replace_jobs.is_empty() && self.deletes.is_empty()
    }
}

/// Plans the writes that make the cluster match `desired`.
pub fn plan(
    ed: &EdgeDeployment,
    desired: &Desired,
    observed: &Observed,
) -> Result<Plan, SpecError> {
    let uid = ed.metadata.uid.clone().unwrap_or_default();
    let instance = crate::names::label_value(&ed.name_any());
    check_conflicts(desired, observed, &uid, &instance)?;

    let mut plan = Plan::default();
    let pods = observed.pod_refs();
    let modules = observed.modules(desired.modules.iter().map(|m| m.name.as_str()), &uid, &pods);
    let mut open = true;
    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, module) in desired.modules.iter().enumerate() {
        groups.entry(module.startup_order).or_default().push(i);
    }
    let mut admitted = BTreeSet::new();
    for members in groups.values() {
        let mut all_available = true;
        for &i in members {
            let module = &desired.modules[i];
            let seen = modules.get(&module.name).copied().unwrap_or_default();
            let exists = seen.deployment.is_some() || seen.job.is_some();
            if open || exists {
                admitted.insert(module.name.clone());
            } else {
                plan.waiting.insert(module.name.clone());
            }
            all_available &= status::is_available(module.status, &seen);
        }
        open &= all_available;
    }

    for claim in &desired.claims {
        push_if_needed(
            &mut plan,
            Kind::Claim,
            ObjectRef::Claim(claim),
            observed.claims.get(&claim.name_any()).map(|c| &**c),
        );
    }
    for module in desired
        .modules
        .iter()
        .filter(|m| admitted.contains(&m.name))
    {
        for object in module.objects() {
            let (kind, live) = match object {
                ObjectRef::ServiceAccount(o) => (
                    Kind::ServiceAccount,
                    to_json(observed.service_accounts.get(&o.name_any())),
                ),
                ObjectRef::Service(o) => {
                    (Kind::Service, to_json(observed.services.get(&o.name_any())))
                }
                ObjectRef::Deployment(o) => (
                    Kind::Deployment,
                    to_json(observed.deployments.get(&o.name_any())),
                ),
                ObjectRef::Job(o) => (Kind::Job, to_json(observed.jobs.get(&o.name_any()))),
                ObjectRef::Claim(o) => (Kind::Claim, to_json(observed.claims.get(&o.name_any()))),
            };
            let Ok(body) = diff::with_applied_hash(&object) else {
                continue;
            };
            if !diff::needs_apply(&body, live.as_ref()) {
                continue;
            }
            let name = module.name.clone();
            if kind == Kind::Job
                && let Some(live) = &live
            {
                let template =
                    |v: &Value| v.pointer("/spec/template").cloned().unwrap_or(Value::Null);
                if !diff::is_subset(&template(&body), &template(live)) {
                    plan.replace_jobs.push(name);
                    continue;
                }
            }
            plan.applies.push(Apply { kind, name, body });
        }
    }
    prune(&mut plan, desired, observed, &uid, &instance, ed);
    Ok(plan)
}

fn to_json<K: serde::Serialize>(object: Option<&std::sync::Arc<K>>) -> Option<Value> {
    object.and_then(|o| serde_json::to_value(&**o).ok())
}

fn push_if_needed<K: serde::Serialize>(
    plan: &mut Plan,
    kind: Kind,
    object: ObjectRef<'_>,
    live: Option<&K>,
) {
    let Ok(body) = diff::with_applied_hash(&object) else {
        return;
    };
    let live = live.and_then(|l| serde_json::to_value(l).ok());
    if diff::needs_apply(&body, live.as_ref()) {
        let name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        plan.applies.push(Apply { kind, name, body });
    }
}

/// An object the spec needs that is controlled by another owner (or, for a claim, labelled for
/// another EdgeDeployment).
fn check_conflicts(
    desired: &Desired,
    observed: &Observed,
    uid: &str,
    instance: &str,
) -> Result<(), SpecError> {
    fn conflict<K: Resource>(
        kind: &'static str,
        live: Option<&std::sync::Arc<K>>,
        uid: &str,
    ) -> Result<(), SpecError> {
        let Some(live) = live else { return Ok(()) };
        let owner = live
            .meta()
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        match owner {
            Some(o) if o.uid != uid => Err(SpecError::ObjectConflict {
                kind,
                name: live.meta().name.clone().unwrap_or_default(),
                owner: format!("controlled by {} {}", o.kind, o.name),
            }),
            _ => Ok(()),
        }
    }
    for module in &desired.modules {
        let name = &module.name;
        conflict("ServiceAccount", observed.service_accounts.get(name), uid)?;
        conflict("Deployment", observed.deployments.get(name), uid)?;
        conflict("Job", observed.jobs.get(name), uid)?;
        if module.service.is_some() {
            conflict("Service", observed.services.get(name), uid)?;
        }
    }
    for claim in &desired.claims {
        let name = claim.name_any();
        if let Some(live) = observed.claims.get(&name) {
            conflict("PersistentVolumeClaim", Some(live), uid)?;
            let other = live
                .labels()
                .get(labels::INSTANCE)
                .filter(|i| i.as_str() != instance);
            if let Some(other) = other {
                return Err(SpecError::ObjectConflict {
                    kind: "PersistentVolumeClaim",
                    name,
                    owner: format!("kept for EdgeDeployment {other}"),
                });
            }
        }
    }
    Ok(())
}

fn prune(
    plan: &mut Plan,
    desired: &Desired,
    observed: &Observed,
    uid: &str,
    instance: &str,
    ed: &EdgeDeployment,
) {
    let wanted = |kind: Kind, name: &str| {
        desired.modules.iter().any(|m| {
            m.name == name
                && match kind {
                    Kind::ServiceAccount => true,
                    Kind::Service => m.service.is_some(),
                    Kind::Deployment => m.workload.kind() == "Deployment",
                    Kind::Job => m.workload.kind() == "Job",
                    Kind::Claim => false,
                }
        })
    };
    fn stale<'a, K: Resource>(
        objects: &'a BTreeMap<String, std::sync::Arc<K>>,
        uid: &'a str,
    ) -> impl Iterator<Item = &'a String> + 'a {
        objects
            .iter()
            .filter(move |(_, o)| controlled_by(&***o, uid))
            .map(|(n, _)| n)
    }
    for name in stale(&observed.deployments, uid) {
        if !wanted(Kind::Deployment, name) {
            plan.deletes.push((Kind::Deployment, name.clone()));
        }
    }
    for name in stale(&observed.jobs, uid) {
        if !wanted(Kind::Job, name) {
            plan.deletes.push((Kind::Job, name.clone()));
        }
    }
    for name in stale(&observed.services, uid) {
        if !wanted(Kind::Service, name) {
            plan.deletes.push((Kind::Service, name.clone()));
        }
    }
    for name in stale(&observed.service_accounts, uid) {
        if !wanted(Kind::ServiceAccount, name) {
            plan.deletes.push((Kind::ServiceAccount, name.clone()));
        }
    }
    let delete_claims = ed
        .spec
        .storage
        .as_ref()
        .is_some_and(|s| s.delete_with_deployment);
    if delete_claims {
        for (name, claim) in &observed.claims {
            let ours = claim
                .labels()
                .get(labels::INSTANCE)
                .is_some_and(|i| i == instance);
            if ours
                && !desired
                    .claims
                    .iter()
                    .any(|c| c.metadata.name.as_deref() == Some(name))
            {
                plan.deletes.push((Kind::Claim, name.clone()));
            }
        }
    }
}
