//! Container environment: createOptions `Env`, then the module's `env` (which wins on a repeated
//! name, as IoT Edge appends it after), then the `IOTEDGE_*` variables the runtime injects
//! (`reference/iotedge-runtime.md` §1.7, §4.6, §5.1), which nothing overrides.
//!
//! The injected values come from the spec: `hubHostName`, `deviceId`, each module's
//! `generationId` (written by the agent, which owns module identities), `workload.uri` and
//! `workload.apiVersion`. `IOTEDGE_GATEWAYHOSTNAME` is `spec.gatewayHostName`, or else `edgehub`,
//! the device chart's edge hub Service, which resolves to the edge hub inside the namespace.

use k8s_openapi::api::core::v1::EnvVar;

use super::create_options::CreateOptions;
use super::meta::Context;
use crate::crd::ModuleSpec;
use crate::error::SpecError;

/// Module id of the edge hub (a system module: the device chart runs it).
pub const EDGE_HUB: &str = "$edgeHub";
/// Module id of the edge agent (a system module: the device chart runs it).
pub const EDGE_AGENT: &str = "$edgeAgent";
/// The device chart's edge hub Service, the default gateway host name of modules.
pub const EDGE_HUB_SERVICE: &str = "edgehub";

/// The container's env list; `unsupported` gets a note for each renamed variable.
pub fn container_env(
    ctx: &Context<'_>,
    module: &ModuleSpec,
    options: &CreateOptions,
    unsupported: &mut Vec<String>,
) -> Result<Vec<EnvVar>, SpecError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let user = options
        .env
        .iter()
        .cloned()
        .chain(module.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (name, value) in user {
        let name = k8s_env_name(&module.name, &name, unsupported)?;
        set(&mut env, name, value);
    }
    for (name, value) in injected(ctx, module) {
        set(&mut env, name.to_string(), value);
    }
    Ok(env
        .into_iter()
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            value_from: None,
        })
        .collect())
}

/// Replaces the value of `name` in place, or appends it.
fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
    match env.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name, value)),
    }
}

/// Kubernetes 1.20 accepts `[-._a-zA-Z][-._a-zA-Z0-9]*`. .NET configuration keys use `:` as a
/// separator and read `__` the same way, so `:` is rewritten (with a note) instead of rejected.
fn k8s_env_name(
    module: &str,
    name: &str,
    unsupported: &mut Vec<String>,
) -> Result<String, SpecError> {
    let renamed = name.replace(':', "__");
    let valid = renamed
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || "-._".contains(c))
        && renamed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    if !valid {
        return Err(SpecError::InvalidEnvName {
            module: module.to_string(),
            name: name.to_string(),
        });
    }
    if renamed != name {
        unsupported.push(format!(
            "env.{name}: renamed to {renamed} (Kubernetes does not allow ':' in variable names)"
        ));
    }
    Ok(renamed)
}

fn injected(ctx: &Context<'_>, module: &ModuleSpec) -> Vec<(&'static str, String)> {
    let spec = &ctx.ed.spec;
    let mut out = Vec::new();
    if let Some(workload) = &spec.workload {
        out.push(("IOTEDGE_WORKLOADURI", workload.uri.clone()));
        if let Some(version) = &workload.api_version {
            out.push(("IOTEDGE_APIVERSION", version.clone()));
        }
    }
    out.push(("IOTEDGE_IOTHUBHOSTNAME", spec.hub_host_name.clone()));
    out.push(("IOTEDGE_DEVICEID", spec.device_id.clone()));
    out.push(("IOTEDGE_MODULEID", module.name.clone()));
    if let Some(generation) = &module.generation_id {
        out.push(("IOTEDGE_MODULEGENERATIONID", generation.clone()));
    }
    out.push(("IOTEDGE_AUTHSCHEME", "sasToken".to_string()));
    out.push(("IOTEDGE_GATEWAYHOSTNAME", gateway_host_name(ctx)));
    out
}

/// `spec.gatewayHostName`, or the device chart's edge hub Service.
pub fn gateway_host_name(ctx: &Context<'_>) -> String {
    ctx.ed
        .spec
        .gateway_host_name
        .clone()
        .unwrap_or_else(|| EDGE_HUB_SERVICE.to_string())
}
