//! Names, labels, annotations and owner references shared by every translated object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::{EdgeDeployment, ModuleSpec};
use crate::labels;
use crate::names;

/// What every object of one EdgeDeployment shares.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The resource being translated.
    pub ed: &'a EdgeDeployment,
    /// Its namespace.
    pub namespace: String,
    /// Label-safe EdgeDeployment name.
    pub instance: String,
    /// Label-safe device id.
    pub device: String,
    /// Controller owner reference, when the resource has a uid.
    pub owner: Option<OwnerReference>,
    /// Module id → object name.
    pub module_names: &'a BTreeMap<String, String>,
}

impl<'a> Context<'a> {
    /// Context for `ed` whose modules are named by `module_names`.
    pub fn new(ed: &'a EdgeDeployment, module_names: &'a BTreeMap<String, String>) -> Self {
        Self {
            ed,
            namespace: super::namespace_of(ed),
            instance: names::label_value(&ed.name_any()),
            device: names::label_value(&ed.spec.device_id),
            owner: ed.controller_owner_ref(&()),
            module_names,
        }
    }

    /// Object name of module `id` (always present: names are made for every module).
    pub fn module_name<'s>(&'s self, id: &'s str) -> &'s str {
        self.module_names.get(id).map(String::as_str).unwrap_or(id)
    }

    /// Labels shared by every object of this EdgeDeployment.
    pub fn device_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::INSTANCE.to_string(), self.instance.clone()),
            (
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            ),
            (
                labels::PART_OF.to_string(),
                labels::PART_OF_VALUE.to_string(),
            ),
            (labels::DEVICE.to_string(), self.device.clone()),
        ])
    }

    /// Labels of a module's objects and pods.
    pub fn module_labels(&self, name: &str) -> BTreeMap<String, String> {
        let mut out = self.device_labels();
        out.insert(labels::NAME.to_string(), name.to_string());
        out.insert(labels::MODULE.to_string(), name.to_string());
        out
    }

    /// The labels that select a module's pods.
    pub fn selector_labels(&self, name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::INSTANCE.to_string(), self.instance.clone()),
            (labels::MODULE.to_string(), name.to_string()),
        ])
    }

    /// Annotations naming the original module and device ids.
    pub fn module_annotations(&self, module: &ModuleSpec) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                labels::ORIGINAL_DEVICE.to_string(),
                self.ed.spec.device_id.clone(),
            ),
            (labels::ORIGINAL_MODULE.to_string(), module.name.clone()),
        ])
    }

    /// Metadata of an object named `name`, owned by the EdgeDeployment when `owned`.
    pub fn meta(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
        owned: bool,
    ) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: self.owner.clone().filter(|_| owned).map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }
}

/// The module's ServiceAccount: its identity in the cluster.
pub fn service_account(ctx: &Context<'_>, name: &str, module: &ModuleSpec) -> ServiceAccount {
    ServiceAccount {
        metadata: ctx.meta(
            name,
            ctx.module_labels(name),
            ctx.module_annotations(module),
            true,
        ),
        ..ServiceAccount::default()
    }
}
