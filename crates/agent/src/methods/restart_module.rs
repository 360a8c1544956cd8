//! `RestartModule` `{schemaVersion, id}`: restarts a module by deleting its pod; its Deployment
//! or Job starts a new one at once. (The older preview answered 200 and did nothing.)

use kube::ResourceExt;
use kube::api::DeleteParams;
use serde_json::Value;

use super::{MethodContext, MethodError, check_schema_version};

/// Answers `RestartModule`.
pub async fn restart_module(ctx: &MethodContext, payload: &Value) -> Result<Value, MethodError> {
    check_schema_version(payload)?;
    let id = payload
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| MethodError::BadRequest("id (the module name) is required".into()))?;
    if id.eq_ignore_ascii_case(ironedge_model::EDGE_AGENT) {
        return Err(MethodError::BadRequest(
            "edgeAgent cannot restart itself; restart its pod with kubectl".into(),
        ));
    }
    let modules = ctx.modules();
    let module = modules.get(id).ok_or_else(|| {
        MethodError::BadRequest(format!(
            "no module {id:?} in the deployment (modules: {:?})",
            modules.keys().collect::<Vec<_>>()
        ))
    })?;
    let pods = ctx.module_pods(module).await?;
    if pods.is_empty() {
        return Err(MethodError::BadRequest(format!(
            "module {id:?} has no pod to restart (is it stopped?)"
        )));
    }
    for pod in &pods {
        ctx.pods
            .delete(&pod.name_any(), &DeleteParams::default())
            .await
            .map_err(|e| MethodError::Failed(format!("deleting pod {}: {e}", pod.name_any())))?;
        tracing::info!(module = id, pod = %pod.name_any(), "restarting module: pod deleted");
    }
    Ok(Value::Null)
}
