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
    /// The caches hold no such object: the write may create it, so it must first be checked not
    /// to exist under another owner (the caches see only objects labelled as ours).
    pub create: bool,
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
            let Ok(mut body) = diff::with_applied_hash(&object) else {
                continue;
            };
            if kind == Kind::Job {
                diff::with_template_hash(&mut body);
            }
            if !diff::needs_apply(&body, live.as_ref()) {
                continue;
            }
            let name = module.name.clone();
            if kind == Kind::Job
                && let Some(live) = &live
                && diff::template_changed(&body, live)
            {
                plan.replace_jobs.push(name);
                continue;
            }
            plan.applies.push(Apply {
                kind,
                name,
                body,
                create: live.is_none(),
            });
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
        plan.applies.push(Apply {
            kind,
            name,
            body,
            create: live.is_none(),
        });
    }
}

/// Refuses an object that exists outside the caches: it is ours only when it carries our
/// managed-by label and no controller other than `uid` (the caches may lag behind our own create).
pub fn check_foreign<K: Resource>(kind: Kind, live: &K, uid: &str) -> Result<(), SpecError> {
    let meta = live.meta();
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    let managed_by = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .map(String::as_str);
    let owner = match (controller, managed_by) {
        (Some(o), _) if o.uid != uid => format!("controlled by {} {}", o.kind, o.name),
        (_, Some(labels::MANAGED_BY_VALUE)) => return Ok(()),
        (_, Some(other)) => format!("managed by {other}"),
        (_, None) => "not created by ironedge-controller".to_string(),
    };
    Err(SpecError::ObjectConflict {
        kind: kind.as_str(),
        name: meta.name.clone().unwrap_or_default(),
        owner,
    })
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use serde::de::DeserializeOwned;

    use super::*;
    use crate::crd::RestartPolicy;
    use crate::fixtures::mk_module;
    use crate::translate::translate;

    fn batch(env: &[(&str, &str)]) -> EdgeDeployment {
        let mut module = mk_module("batch");
        module.restart_policy = RestartPolicy::OnFailure;
        module.env = env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        EdgeDeployment::test().with(module)
    }

    fn plan_for(ed: &EdgeDeployment, observed: &Observed) -> Plan {
        plan(ed, &translate(ed).unwrap(), observed).unwrap()
    }

    fn live<K: DeserializeOwned>(plan: &Plan, kind: Kind) -> Arc<K> {
        let apply = plan.applies.iter().find(|a| a.kind == kind).unwrap();
        Arc::new(serde_json::from_value(apply.body.clone()).unwrap())
    }

    /// The cluster after `plan` was applied (no pods).
    fn applied(plan: &Plan) -> Observed {
        let mut observed = Observed::default();
        for apply in &plan.applies {
            let name = apply.name.clone();
            match apply.kind {
                Kind::Job => {
                    observed.jobs.insert(name, live::<Job>(plan, Kind::Job));
                }
                Kind::ServiceAccount => {
                    observed
                        .service_accounts
                        .insert(name, live(plan, Kind::ServiceAccount));
                }
                Kind::Service => {
                    observed.services.insert(name, live(plan, Kind::Service));
                }
                Kind::Deployment => {
                    observed
                        .deployments
                        .insert(name, live(plan, Kind::Deployment));
                }
                Kind::Claim => {
                    observed.claims.insert(name, live(plan, Kind::Claim));
                }
            }
        }
        observed
    }

    #[test]
    fn new_objects_are_marked_as_creates_and_an_applied_world_plans_nothing() {
        let ed = batch(&[("A", "1")]);
        let first = plan_for(&ed, &Observed::default());
        assert!(first.applies.iter().all(|a| a.create));
        let job = first.applies.iter().find(|a| a.kind == Kind::Job).unwrap();
        assert!(
            job.body["metadata"]["annotations"][labels::TEMPLATE_HASH].is_string(),
            "Jobs carry their template hash"
        );
        assert!(plan_for(&ed, &applied(&first)).is_empty());
    }

    #[test]
    fn a_job_whose_pod_template_changed_is_replaced_instead_of_applied() {
        let before = plan_for(&batch(&[("A", "1"), ("B", "2")]), &Observed::default());
        let cluster = applied(&before);
        // Dropping a variable keeps every remaining field equal: only the hash tells.
        let after = plan_for(&batch(&[("A", "1")]), &cluster);
        assert_eq!(after.replace_jobs, ["batch"]);
        assert!(!after.applies.iter().any(|a| a.kind == Kind::Job));
        let changed = plan_for(&batch(&[("A", "2"), ("B", "2")]), &cluster);
        assert_eq!(changed.replace_jobs, ["batch"]);
    }

    #[test]
    fn system_modules_in_the_spec_are_never_planned() {
        let ed = EdgeDeployment::test()
            .with_module("$edgeHub")
            .with_module("$edgeAgent")
            .with_module("sensor");
        let plan = plan_for(&ed, &Observed::default());
        let names: BTreeSet<_> = plan.applies.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, BTreeSet::from(["sensor"]));
    }

    #[test]
    fn an_object_outside_the_caches_is_ours_only_with_our_label_and_no_other_controller() {
        let ed = EdgeDeployment::test().with_module("sensor");
        let plan = plan_for(&ed, &Observed::default());
        let ours: Arc<ServiceAccount> = live(&plan, Kind::ServiceAccount);
        let uid = ed.metadata.uid.clone().unwrap();
        assert!(check_foreign(Kind::ServiceAccount, &*ours, &uid).is_ok());

        let mut chart = (*ours).clone();
        chart.metadata.owner_references = None;
        chart.metadata.labels = Some(
            [(labels::MANAGED_BY.to_string(), "Helm".to_string())]
                .into_iter()
                .collect(),
        );
        let err = check_foreign(Kind::ServiceAccount, &chart, &uid).unwrap_err();
        assert_eq!(err.reason(), "ObjectConflict");
        assert!(err.to_string().contains("managed by Helm"), "{err}");

        chart.metadata.labels = None;
        let err = check_foreign(Kind::ServiceAccount, &chart, &uid).unwrap_err();
        assert!(err.to_string().contains("not created by"), "{err}");

        let other = check_foreign(Kind::ServiceAccount, &*ours, "another-uid").unwrap_err();
        assert!(
            other.to_string().contains("controlled by EdgeDeployment"),
            "{other}"
        );
    }
}
