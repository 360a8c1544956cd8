//! Pure translation of an [`EdgeDeployment`] into the Kubernetes objects that run its modules.
//!
//! **System modules are not translated.** `$edgeAgent` and `$edgeHub` run from the device chart
//! (`deploy/helm/ironedge-device`: the agent, which runs this controller, and the edge hub with its
//! `edgehub` Service), so a spec that still lists them gets no objects for them; their routes and
//! store-and-forward settings stay in the spec for the edge hub, and their runtime state is read
//! from the chart's pods into `status.systemModules`.
//!
//! Per module: a ServiceAccount (the module's identity in the cluster), a workload (see
//! [`workload`] for how `restartPolicy` picks a Deployment or a Job), and a Service when the module
//! exposes or publishes ports. Per device: one PersistentVolumeClaim per Docker named volume,
//! shared by the modules that mount it. Every object carries the labels of [`crate::labels`] and,
//! except retained claims, a controller owner reference to the EdgeDeployment (when it has a uid).
//!
//! The output is deterministic: the same resource always gives byte-identical objects, which is
//! what lets the controller skip writes when nothing changed.

pub mod create_options;
pub mod env;
pub mod meta;
pub mod registry;
pub mod service;
pub mod volumes;
pub mod workload;
pub mod workload_proxy;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service, ServiceAccount};
use kube::ResourceExt;
use serde::Serialize;

use crate::crd::{DesiredStatus, EdgeDeployment, ModuleSpec};
use crate::error::SpecError;
use crate::names::{self, Rule};

pub use env::{EDGE_AGENT, EDGE_HUB};
pub use meta::Context;

/// Everything one EdgeDeployment asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The modules in spec order, system modules left out.
    pub modules: Vec<DesiredModule>,
    /// Claims for Docker named volumes, by claim name.
    pub claims: Vec<PersistentVolumeClaim>,
    /// System modules listed in the spec, which get no objects (the device chart runs them).
    pub system_modules: Vec<String>,
}

/// The objects of one module.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredModule {
    /// Module id (`$edgeHub`).
    pub id: String,
    /// Object name of all its objects (`edgehub`).
    pub name: String,
    /// Its startupOrder group.
    pub startup_order: u32,
    /// Whether it should run.
    pub status: DesiredStatus,
    /// Its identity in the cluster.
    pub service_account: ServiceAccount,
    /// Deployment or Job.
    pub workload: Workload,
    /// Present when the module exposes or publishes ports.
    pub service: Option<Service>,
    /// Names of the claims it mounts.
    pub claims: Vec<String>,
    /// createOptions fields that were not applied.
    pub unsupported: Vec<String>,
}

/// How a module runs, chosen by its restartPolicy.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// `restartPolicy: always`.
    Deployment(Box<Deployment>),
    /// `on-failure`, `on-unhealthy` and `never`.
    Job(Box<Job>),
}

impl Workload {
    /// `Deployment` or `Job`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Deployment(_) => "Deployment",
            Self::Job(_) => "Job",
        }
    }
}

/// One object of any kind the translation produces, for rendering and applying in order.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum ObjectRef<'a> {
    /// A ServiceAccount.
    ServiceAccount(&'a ServiceAccount),
    /// A Service.
    Service(&'a Service),
    /// A Deployment.
    Deployment(&'a Deployment),
    /// A Job.
    Job(&'a Job),
    /// A PersistentVolumeClaim.
    Claim(&'a PersistentVolumeClaim),
}

impl Desired {
    /// Every object: claims first (pods need them), then per module its ServiceAccount, Service
    /// and workload.
    pub fn objects(&self) -> Vec<ObjectRef<'_>> {
        let mut out: Vec<ObjectRef<'_>> = self.claims.iter().map(ObjectRef::Claim).collect();
        for module in &self.modules {
            out.extend(module.objects());
        }
        out
    }

    /// Every object as YAML documents separated by `---`, like `helm template`.
    pub fn to_yaml(&self) -> String {
        to_yaml(&self.objects())
    }

    /// The module with object name `name`.
    pub fn module(&self, name: &str) -> Option<&DesiredModule> {
        self.modules.iter().find(|m| m.name == name)
    }
}

impl DesiredModule {
    /// The module's ServiceAccount, Service and workload, in that order.
    pub fn objects(&self) -> Vec<ObjectRef<'_>> {
        let mut out = vec![ObjectRef::ServiceAccount(&self.service_account)];
        out.extend(self.service.as_ref().map(ObjectRef::Service));
        out.push(match &self.workload {
            Workload::Deployment(d) => ObjectRef::Deployment(d),
            Workload::Job(j) => ObjectRef::Job(j),
        });
        out
    }
}

/// Serialisable objects as YAML documents separated by `---`.
pub fn to_yaml<T: Serialize>(objects: &[T]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        // Kubernetes objects hold only maps, lists and scalars, so YAML serialisation cannot fail.
        out.push_str(&serde_norway::to_string(object).unwrap_or_default());
    }
    out
}

/// Whether `id` names a system module (`$edgeAgent`, `$edgeHub`), which is never translated.
pub fn is_system_module(id: &str) -> bool {
    id == EDGE_AGENT || id == EDGE_HUB
}

/// Translates an EdgeDeployment; fails on the first problem that makes the spec unusable.
pub fn translate(ed: &EdgeDeployment) -> Result<Desired, SpecError> {
    let spec = &ed.spec;
    check_modules(&spec.modules)?;
    let (system, user): (Vec<&ModuleSpec>, Vec<&ModuleSpec>) =
        spec.modules.iter().partition(|m| is_system_module(&m.name));
    let module_names = names::unique_names(
        user.iter().map(|m| m.name.as_str()),
        names::module_object_name,
    )
    .map_err(|collision| SpecError::NameCollision {
        what: "module",
        collision,
    })?;
    let ctx = Context::new(ed, &module_names);

    let mut parsed = Vec::with_capacity(user.len());
    for module in &user {
        parsed.push(create_options::parse(
            &module.name,
            module.create_options.as_ref(),
        )?);
    }
    let volume_names: Vec<&str> = parsed
        .iter()
        .flat_map(|o| o.host.mounts.iter())
        .filter_map(|m| match &m.source {
            create_options::MountSource::Volume(v) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    let claim_names = names::unique_names(volume_names, |v| names::dns_label(v, Rule::Dns1123))
        .map_err(|collision| SpecError::NameCollision {
            what: "volume",
            collision,
        })?;
    let claims = volumes::claims(&ctx, &claim_names)?;

    let modules = user
        .iter()
        .zip(parsed)
        .map(|(module, options)| translate_module(&ctx, module, options, &claim_names))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Desired {
        modules,
        claims,
        system_modules: system.iter().map(|m| m.name.clone()).collect(),
    })
}

fn check_modules(modules: &[ModuleSpec]) -> Result<(), SpecError> {
    let mut seen = BTreeMap::new();
    for module in modules {
        if seen.insert(module.name.as_str(), ()).is_some() {
            return Err(SpecError::DuplicateModule {
                name: module.name.clone(),
            });
        }
        if module.image.trim().is_empty() {
            return Err(SpecError::EmptyImage {
                module: module.name.clone(),
            });
        }
    }
    Ok(())
}

fn translate_module(
    ctx: &Context<'_>,
    module: &ModuleSpec,
    options: create_options::CreateOptions,
    claim_names: &BTreeMap<String, String>,
) -> Result<DesiredModule, SpecError> {
    let name = ctx.module_name(&module.name).to_string();
    let mut unsupported = options.unsupported.clone();
    unsupported.extend(workload::invalid_label_notes(&options.labels));
    if options.experimental.strategy.is_some()
        && module.restart_policy != crate::crd::RestartPolicy::Always
    {
        unsupported.push(
            "createOptions.k8s-experimental.strategy: applies to restartPolicy always (a Deployment) only; ignored"
                .to_string(),
        );
    }
    let env = env::container_env(ctx, module, &options, &mut unsupported)?;
    let volumes = volumes::pod_volumes(&options, claim_names);
    let claims = volumes.claims.clone();
    let service = service::service(ctx, &name, module, &options)?;
    let service_account = meta::service_account(ctx, &name, module);
    let workload = workload::workload(ctx, &name, module, &options, env, volumes)?;
    Ok(DesiredModule {
        id: module.name.clone(),
        name,
        startup_order: module.startup_order,
        status: module.status,
        service_account,
        workload,
        service,
        claims,
        unsupported,
    })
}

/// The EdgeDeployment's namespace, or `default` for one that has none (rendering a file).
pub(crate) fn namespace_of(ed: &EdgeDeployment) -> String {
    ed.namespace().unwrap_or_else(|| "default".to_string())
}

#[cfg(test)]
mod tests;
