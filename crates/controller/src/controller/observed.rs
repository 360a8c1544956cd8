//! The reflector caches the controller reads instead of calling the API server, and the view of
//! one EdgeDeployment's objects taken from them.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service, ServiceAccount};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use crate::crd::EdgeDeployment;
use crate::labels;
use crate::status::ObservedModule;

/// One cache per kind, filled by the controller's watches.
#[derive(Clone)]
pub struct Stores {
    /// EdgeDeployments.
    pub edge_deployments: Store<EdgeDeployment>,
    /// Deployments labelled as ours.
    pub deployments: Store<Deployment>,
    /// Jobs labelled as ours.
    pub jobs: Store<Job>,
    /// Services labelled as ours.
    pub services: Store<Service>,
    /// ServiceAccounts labelled as ours.
    pub service_accounts: Store<ServiceAccount>,
    /// Claims labelled as ours.
    pub claims: Store<PersistentVolumeClaim>,
    /// Pods of our modules (spec stripped to save memory).
    pub pods: Store<Pod>,
    /// Pods of the system modules, which the device chart runs (selected by
    /// [`labels::system_pod_selector`], spec stripped).
    pub system_pods: Store<Pod>,
    /// Whether every cache above holds its first full list.
    pub readiness: super::CacheReadiness,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("edge_deployments", &self.edge_deployments.len())
            .finish_non_exhaustive()
    }
}

/// Objects of one namespace by name, and our pods by module.
#[derive(Debug, Default)]
pub struct Observed {
    /// Deployments in the namespace.
    pub deployments: BTreeMap<String, Arc<Deployment>>,
    /// Jobs in the namespace.
    pub jobs: BTreeMap<String, Arc<Job>>,
    /// Services in the namespace.
    pub services: BTreeMap<String, Arc<Service>>,
    /// ServiceAccounts in the namespace.
    pub service_accounts: BTreeMap<String, Arc<ServiceAccount>>,
    /// Claims in the namespace.
    pub claims: BTreeMap<String, Arc<PersistentVolumeClaim>>,
    /// This EdgeDeployment's pods by module object name.
    pub pods: BTreeMap<String, Vec<Arc<Pod>>>,
    /// The system modules' pods in the namespace.
    pub system_pods: Vec<Arc<Pod>>,
}

fn in_namespace<K: Resource + Clone>(store: &Store<K>, namespace: &str) -> BTreeMap<String, Arc<K>>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .map(|o| (o.name_any(), o))
        .collect()
}

impl Observed {
    /// What the caches hold for `ed`'s namespace.
    pub fn from_stores(stores: &Stores, ed: &EdgeDeployment, instance: &str) -> Self {
        let namespace = ed.namespace().unwrap_or_default();
        let mut pods: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        for pod in stores.pods.state() {
            let labels = pod.labels();
            if pod.namespace().as_deref() == Some(namespace.as_str())
                && labels.get(labels::INSTANCE).map(String::as_str) == Some(instance)
                && let Some(module) = labels.get(labels::MODULE)
            {
                pods.entry(module.clone()).or_default().push(pod);
            }
        }
        Self {
            deployments: in_namespace(&stores.deployments, &namespace),
            jobs: in_namespace(&stores.jobs, &namespace),
            services: in_namespace(&stores.services, &namespace),
            service_accounts: in_namespace(&stores.service_accounts, &namespace),
            claims: in_namespace(&stores.claims, &namespace),
            pods,
            system_pods: stores
                .system_pods
                .state()
                .into_iter()
                .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
                .collect(),
        }
    }

    /// The view [`crate::status`] needs, for the module objects named in `names`; only objects
    /// controlled by `uid` count.
    pub fn modules<'a>(
        &'a self,
        names: impl IntoIterator<Item = &'a str>,
        uid: &str,
        pods: &'a BTreeMap<String, Vec<&'a Pod>>,
    ) -> BTreeMap<String, ObservedModule<'a>> {
        names
            .into_iter()
            .map(|name| {
                let module = ObservedModule {
                    deployment: self
                        .deployments
                        .get(name)
                        .filter(|d| controlled_by(&***d, uid))
                        .map(|d| &**d),
                    job: self
                        .jobs
                        .get(name)
                        .filter(|j| controlled_by(&***j, uid))
                        .map(|j| &**j),
                    pods: pods.get(name).map_or(&[], Vec::as_slice),
                };
                (name.to_string(), module)
            })
            .collect()
    }

    /// Pods as plain references, the shape [`Observed::modules`] borrows.
    pub fn pod_refs(&self) -> BTreeMap<String, Vec<&Pod>> {
        self.pods
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|p| &**p).collect()))
            .collect()
    }
}

/// Whether `object`'s controller owner reference points at `uid`.
pub fn controlled_by<K: Resource>(object: &K, uid: &str) -> bool {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}
