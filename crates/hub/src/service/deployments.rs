//! Configurations (automatic/layered deployments, ADM), their evaluation against twins, and
//! `applyConfigurationContent`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::twins::{all_views, merged};
use super::{Connections, Hub, identity_key, now_iso, retry};
use crate::configuration::{self, Configuration, ConfigurationContent, ConfigurationRequest};
use crate::error::{Error, Result};
use crate::query::{self, Source};
use crate::registry::{EDGE_AGENT, IfMatch};
use crate::storage::{Storage, TwinScope};
use crate::twin::{self, ConfigurationState, Presence};

/// A desired patch to push after a write: (identity key, patch).
type Push = (String, Value);

impl Hub {
    /// Creates or updates a configuration, then re-evaluates every device.
    pub async fn put_configuration(
        &self,
        id: String,
        req: ConfigurationRequest,
        if_match: IfMatch,
    ) -> Result<Value> {
        let now = now_iso();
        let config = self
            .run(move |s| {
                retry(&format!("configuration {id}"), || {
                    let existing = s.get_configuration(&id)?;
                    let c = Configuration::apply_request(
                        &id,
                        req.clone(),
                        existing.as_ref(),
                        &if_match,
                        &now,
                    )?;
                    s.put_configuration(&c, existing.as_ref().map(|e| e.revision))?;
                    Ok(c)
                })
            })
            .await?;
        self.reevaluate_all().await?;
        self.configuration_with_metrics(config).await
    }

    /// One configuration with fresh metric results.
    pub async fn get_configuration(&self, id: String) -> Result<Value> {
        let c = self
            .run(move |s| {
                s.get_configuration(&id)?
                    .ok_or(Error::ConfigurationNotFound(id))
            })
            .await?;
        self.configuration_with_metrics(c).await
    }

    /// Configurations (with metrics), at most `top`.
    pub async fn list_configurations(&self, top: usize) -> Result<Vec<Value>> {
        let configs = self.run(|s| Ok(s.list_configurations()?)).await?;
        let mut out = Vec::new();
        for c in configs.into_iter().take(top) {
            out.push(self.configuration_with_metrics(c).await?);
        }
        Ok(out)
    }

    /// Deletes a configuration (module twins keep what it wrote) and re-evaluates every device.
    pub async fn delete_configuration(&self, id: String, if_match: IfMatch) -> Result<()> {
        self.run(move |s| {
            let c = s
                .get_configuration(&id)?
                .ok_or_else(|| Error::ConfigurationNotFound(id.clone()))?;
            if let IfMatch::Etag(given) = &if_match
                && *given != c.etag
            {
                return Err(configuration::ConfigurationError::PreconditionFailed {
                    given: given.clone(),
                    current: c.etag,
                }
                .into());
            }
            s.delete_configuration(&id)?;
            Ok(())
        })
        .await?;
        self.reevaluate_all().await
    }

    /// Sets one edge device's module content directly (no targeting), as `az iot edge set-modules`.
    pub async fn apply_configuration_content(
        &self,
        device_id: String,
        content: ConfigurationContent,
    ) -> Result<()> {
        let Some(mc) = content.modules_content else {
            return Err(Error::BadRequest(
                "applyConfigurationContent needs modulesContent (deviceContent and moduleContent are not supported here)"
                    .into(),
            ));
        };
        let modules = configuration::full_desired(&mc)?;
        configuration::validate_manifest(&mc)?;
        let now = now_iso();
        let pushes = self
            .run(move |s| {
                let d = s.get_device(&device_id)?.ok_or_else(|| Error::DeviceNotFound(device_id.clone()))?;
                if !d.capabilities.iot_edge {
                    return Err(Error::BadRequest(format!(
                        "device {device_id:?} is not an IoT Edge device (capabilities.iotEdge is false)"
                    )));
                }
                s.put_device_content(&device_id, &mc)?;
                let mut pushes = Vec::new();
                for (module, desired) in &modules {
                    pushes.extend(set_module_desired(s, &device_id, module, desired, &now)?);
                }
                Ok(pushes)
            })
            .await?;
        self.push_all(&pushes);
        Ok(())
    }

    /// Desired properties a new module of `device_id` starts with: from the deployments
    /// targeting the device, else from content applied with `applyConfigurationContent`.
    pub(crate) async fn initial_module_desired(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> Result<Option<Map<String, Value>>> {
        let (d, m) = (device_id.to_owned(), module_id.to_owned());
        let conns = self.inner.connections.clone();
        self.run(move |s| {
            let Some(device) = s.get_device(&d)? else {
                return Ok(None);
            };
            let Some(t) = s.get_twin(&d, None)? else {
                return Ok(None);
            };
            let view = twin::view(&t, &device, None, &conns.presence(&d));
            let configs = s.list_configurations()?;
            let assignment = configuration::assign_edge(&view, &configs);
            if !assignment.modules.is_empty() {
                return Ok(assignment.modules.get(&m).cloned());
            }
            let manual = s
                .get_device_content(&d)?
                .map(|mc| configuration::full_desired(&mc))
                .transpose()?;
            Ok(manual.and_then(|mut mods| mods.remove(&m)))
        })
        .await
    }

    /// Re-evaluates the configurations targeting one device and writes the result.
    pub(crate) async fn reevaluate_device(&self, device_id: &str) -> Result<()> {
        let _guard = self.inner.evaluation.lock().await;
        let d = device_id.to_owned();
        let conns = self.inner.connections.clone();
        let pushes = self
            .run(move |s| {
                let configs = s.list_configurations()?;
                evaluate_device(s, &d, &configs, &conns)
            })
            .await?;
        self.push_all(&pushes);
        Ok(())
    }

    /// Re-evaluates every device (a configuration changed).
    pub(crate) async fn reevaluate_all(&self) -> Result<()> {
        let _guard = self.inner.evaluation.lock().await;
        let conns = self.inner.connections.clone();
        let pushes = self
            .run(move |s| {
                let configs = s.list_configurations()?;
                let mut pushes = Vec::new();
                for d in s.list_devices(usize::MAX)? {
                    pushes.extend(evaluate_device(s, &d.device_id, &configs, &conns)?);
                }
                Ok(pushes)
            })
            .await?;
        self.push_all(&pushes);
        Ok(())
    }

    fn push_all(&self, pushes: &[Push]) {
        for (key, patch) in pushes {
            self.push_desired(key, patch);
        }
    }

    async fn configuration_with_metrics(&self, mut c: Configuration) -> Result<Value> {
        let conns = self.inner.connections.clone();
        let queries: Vec<(bool, String, String)> = c
            .system_metrics
            .queries
            .iter()
            .map(|(k, q)| (true, k.clone(), q.clone()))
            .chain(
                c.metrics
                    .queries
                    .iter()
                    .map(|(k, q)| (false, k.clone(), q.clone())),
            )
            .collect();
        let results = self
            .run(move |s| {
                let devices = all_views(s, TwinScope::Devices, &conns)?;
                let modules = all_views(s, TwinScope::Modules, &conns)?;
                let mut out = Vec::new();
                for (system, name, text) in queries {
                    let n = match query::parse_query(&text) {
                        Ok(q) => {
                            let docs = if q.from == Source::Modules {
                                &modules
                            } else {
                                &devices
                            };
                            query::execute(&q, docs).0.len() as u64
                        }
                        Err(_) => 0,
                    };
                    out.push((system, name, n));
                }
                Ok(out)
            })
            .await?;
        for (system, name, n) in results {
            let target = if system {
                &mut c.system_metrics.results
            } else {
                &mut c.metrics.results
            };
            target.insert(name, n);
        }
        serde_json::to_value(&c).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// Writes `desired` into one module twin if it exists and differs; returns the push.
fn set_module_desired(
    s: &dyn Storage,
    device_id: &str,
    module_id: &str,
    desired: &Map<String, Value>,
    now: &str,
) -> Result<Option<Push>> {
    retry(&format!("twin {device_id}/{module_id}"), || {
        let Some(mut t) = s.get_twin(device_id, Some(module_id))? else {
            return Ok(None);
        };
        let before = t.version;
        match t.set_desired(desired, now)? {
            Some(patch) => {
                s.put_twin(&t, before)?;
                Ok(Some((identity_key(device_id, Some(module_id)), patch)))
            }
            None => Ok(None),
        }
    })
}

/// Writes configuration statuses (and an ADM desired patch) into a twin.
fn set_twin_configurations(
    s: &dyn Storage,
    device_id: &str,
    module_id: Option<&str>,
    statuses: &BTreeMap<String, ConfigurationState>,
    desired_patch: Option<&Map<String, Value>>,
    now: &str,
) -> Result<Option<Push>> {
    retry(&format!("twin {device_id}"), || {
        let Some(mut t) = s.get_twin(device_id, module_id)? else {
            return Ok(None);
        };
        let before = t.version;
        let push = match desired_patch {
            Some(p) => t.set_desired(&merged(&t.desired.properties, p), now)?,
            None => None,
        };
        let changed = t.set_configurations(statuses.clone());
        if push.is_some() || changed {
            s.put_twin(&t, before)?;
        }
        Ok(push.map(|p| (identity_key(device_id, module_id), p)))
    })
}

fn evaluate_device(
    s: &dyn Storage,
    device_id: &str,
    configs: &[Configuration],
    conns: &Connections,
) -> Result<Vec<Push>> {
    let Some(device) = s.get_device(device_id)? else {
        return Ok(Vec::new());
    };
    let Some(t) = s.get_twin(device_id, None)? else {
        return Ok(Vec::new());
    };
    let presence: Presence = conns.presence(device_id);
    let view = twin::view(&t, &device, None, &presence);
    let now = now_iso();
    let mut pushes = Vec::new();
    let edge = configuration::assign_edge(&view, configs);
    for (module, desired) in &edge.modules {
        match set_module_desired(s, device_id, module, desired, &now) {
            Ok(p) => pushes.extend(p),
            Err(Error::Twin(e)) => {
                tracing::warn!(device = device_id, module = %module, error = %e, "deployment content does not fit the module twin");
            }
            Err(e) => return Err(e),
        }
    }
    if device.capabilities.iot_edge {
        pushes.extend(set_twin_configurations(
            s,
            device_id,
            Some(EDGE_AGENT),
            &edge.statuses,
            None,
            &now,
        )?);
    }
    let adm = configuration::assign_device(&view, configs);
    match set_twin_configurations(
        s,
        device_id,
        None,
        &adm.statuses,
        adm.desired_patch.as_ref(),
        &now,
    ) {
        Ok(p) => pushes.extend(p),
        Err(Error::Twin(e)) => {
            tracing::warn!(device = device_id, error = %e, "device configuration does not fit the twin")
        }
        Err(e) => return Err(e),
    }
    Ok(pushes)
}
