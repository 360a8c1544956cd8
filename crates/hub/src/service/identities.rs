//! Device and module identity operations.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::{Hub, identity_key, now_iso, retry};
use crate::error::{Error, Result};
use crate::registry::{self, Device, DeviceRequest, DeviceStatus, IfMatch, Module, ModuleRequest};
use crate::twin::{Presence, Twin};

/// The REST form of a device identity.
pub fn device_json(d: &Device, p: &Presence) -> Value {
    json!({
        "deviceId": d.device_id,
        "generationId": d.generation_id,
        "etag": d.etag,
        "connectionState": p.state(),
        "status": d.status,
        "statusReason": d.status_reason,
        "connectionStateUpdatedTime": p.state_updated.as_deref().unwrap_or(crate::time::NEVER),
        "statusUpdatedTime": d.status_updated_time,
        "lastActivityTime": p.last_activity.as_deref().unwrap_or(crate::time::NEVER),
        "cloudToDeviceMessageCount": p.c2d_pending,
        "authentication": d.authentication,
        "capabilities": d.capabilities,
        "deviceScope": d.device_scope,
        "parentScopes": d.parent_scopes,
    })
}

/// The REST form of a module identity.
pub fn module_json(m: &Module, p: &Presence) -> Value {
    json!({
        "moduleId": m.module_id,
        "deviceId": m.device_id,
        "managedBy": m.managed_by,
        "generationId": m.generation_id,
        "etag": m.etag,
        "connectionState": p.state(),
        "connectionStateUpdatedTime": p.state_updated.as_deref().unwrap_or(crate::time::NEVER),
        "lastActivityTime": p.last_activity.as_deref().unwrap_or(crate::time::NEVER),
        "cloudToDeviceMessageCount": 0,
        "authentication": m.authentication,
    })
}

impl Hub {
    fn device_presence(&self, device_id: &str, c2d_pending: u64) -> Presence {
        let mut p = self.connections().presence(device_id);
        p.c2d_pending = c2d_pending;
        p
    }

    /// Creates or updates a device; edge devices get `$edgeAgent`/`$edgeHub`.
    pub async fn put_device(
        &self,
        id: String,
        req: DeviceRequest,
        if_match: IfMatch,
    ) -> Result<Value> {
        let now = now_iso();
        let (device, before) = self
            .run(move |s| {
                retry(&format!("device {id}"), || {
                    let existing = s.get_device(&id)?;
                    let device = Device::apply_request(
                        &id,
                        req.clone(),
                        existing.as_ref(),
                        &if_match,
                        &now,
                    )?;
                    let with_twins = |mods: Vec<Module>| -> Vec<(Module, Twin)> {
                        mods.into_iter()
                            .map(|m| {
                                let t = Twin::new(&m.device_id, Some(&m.module_id), &now);
                                (m, t)
                            })
                            .collect()
                    };
                    match &existing {
                        None => {
                            let mods = with_twins(device.missing_edge_modules(|_| false));
                            s.create_device(&device, &Twin::new(&id, None, &now), &mods)?;
                        }
                        Some(old) => {
                            let have: HashSet<String> = s
                                .list_modules(&id)?
                                .into_iter()
                                .map(|m| m.module_id)
                                .collect();
                            let mods =
                                with_twins(device.missing_edge_modules(|m| have.contains(m)));
                            s.update_device(&device, old.revision, &mods)?;
                        }
                    }
                    Ok((device, existing))
                })
            })
            .await?;
        if device.status == DeviceStatus::Disabled {
            self.connections()
                .close_device(&device.device_id, "device disabled");
        }
        let targeting_may_change = before
            .as_ref()
            .is_none_or(|b| b.capabilities != device.capabilities);
        if targeting_may_change {
            self.reevaluate_device(&device.device_id).await?;
        }
        Ok(device_json(
            &device,
            &self.device_presence(&device.device_id, 0),
        ))
    }

    /// One device.
    pub async fn get_device(&self, id: String) -> Result<Value> {
        let key = id.clone();
        let (device, pending) = self
            .run(move |s| {
                let d = s
                    .get_device(&id)?
                    .ok_or_else(|| Error::DeviceNotFound(id.clone()))?;
                let pending = s.pending_c2d(&id)?.len() as u64;
                Ok((d, pending))
            })
            .await?;
        Ok(device_json(&device, &self.device_presence(&key, pending)))
    }

    /// The stored device (for authentication and the CLI's connection strings).
    pub async fn device(&self, id: String) -> Result<Option<Device>> {
        self.run(move |s| Ok(s.get_device(&id)?)).await
    }

    /// The stored module.
    pub async fn module(&self, device_id: String, module_id: String) -> Result<Option<Module>> {
        self.run(move |s| Ok(s.get_module(&device_id, &module_id)?))
            .await
    }

    /// Devices in id order.
    pub async fn list_devices(&self, top: usize) -> Result<Vec<Value>> {
        let devices = self.run(move |s| Ok(s.list_devices(top)?)).await?;
        Ok(devices
            .iter()
            .map(|d| device_json(d, &self.device_presence(&d.device_id, 0)))
            .collect())
    }

    /// (enabled, disabled) device counts.
    pub async fn device_statistics(&self) -> Result<(u64, u64)> {
        self.run(|s| Ok(s.count_devices()?)).await
    }

    /// Deletes a device and everything it owns; closes its connections.
    pub async fn delete_device(&self, id: String, if_match: IfMatch) -> Result<()> {
        let key = id.clone();
        self.run(move |s| {
            let d = s
                .get_device(&id)?
                .ok_or_else(|| Error::DeviceNotFound(id.clone()))?;
            if_match.check(&d.etag)?;
            s.delete_device(&id)?;
            Ok(())
        })
        .await?;
        self.connections().close_device(&key, "device deleted");
        Ok(())
    }

    /// Creates or updates a module identity (with its twin, whose desired properties come from
    /// the deployments targeting the device).
    pub async fn put_module(
        &self,
        device_id: String,
        module_id: String,
        req: ModuleRequest,
        if_match: IfMatch,
    ) -> Result<Value> {
        let now = now_iso();
        let (d, m) = (device_id.clone(), module_id.clone());
        let initial = self.initial_module_desired(&device_id, &module_id).await?;
        let (module, created) = self
            .run(move |s| {
                retry(&format!("module {d}/{m}"), || {
                    if s.get_device(&d)?.is_none() {
                        return Err(Error::DeviceNotFound(d.clone()));
                    }
                    let existing = s.get_module(&d, &m)?;
                    let module =
                        Module::apply_request(&d, &m, req.clone(), existing.as_ref(), &if_match)?;
                    match &existing {
                        None => {
                            let mut twin = Twin::new(&d, Some(&m), &now);
                            if let Some(desired) = &initial {
                                twin.set_desired(desired, &now)?;
                            }
                            s.create_module(&module, &twin)?;
                        }
                        Some(old) => s.update_module(&module, old.revision)?,
                    }
                    Ok((module, existing.is_none()))
                })
            })
            .await?;
        if created {
            tracing::debug!(device = %device_id, module = %module_id, "module identity created");
        }
        Ok(module_json(
            &module,
            &self
                .connections()
                .presence(&identity_key(&device_id, Some(&module_id))),
        ))
    }

    /// One module.
    pub async fn get_module(&self, device_id: String, module_id: String) -> Result<Value> {
        let key = identity_key(&device_id, Some(&module_id));
        let m = self
            .run(move |s| {
                if s.get_device(&device_id)?.is_none() {
                    return Err(Error::DeviceNotFound(device_id));
                }
                s.get_module(&device_id, &module_id)?
                    .ok_or(Error::ModuleNotFound {
                        device: device_id,
                        module: module_id,
                    })
            })
            .await?;
        Ok(module_json(&m, &self.connections().presence(&key)))
    }

    /// Modules of a device.
    pub async fn list_modules(&self, device_id: String) -> Result<Vec<Value>> {
        let mods = self
            .run(move |s| {
                if s.get_device(&device_id)?.is_none() {
                    return Err(Error::DeviceNotFound(device_id));
                }
                Ok(s.list_modules(&device_id)?)
            })
            .await?;
        Ok(mods
            .iter()
            .map(|m| {
                module_json(
                    m,
                    &self
                        .connections()
                        .presence(&identity_key(&m.device_id, Some(&m.module_id))),
                )
            })
            .collect())
    }

    /// Deletes a module (not the edge runtime's own while the device is an edge device).
    pub async fn delete_module(
        &self,
        device_id: String,
        module_id: String,
        if_match: IfMatch,
    ) -> Result<()> {
        let key = identity_key(&device_id, Some(&module_id));
        self.run(move |s| {
            let d = s
                .get_device(&device_id)?
                .ok_or_else(|| Error::DeviceNotFound(device_id.clone()))?;
            let m = s
                .get_module(&device_id, &module_id)?
                .ok_or_else(|| Error::ModuleNotFound {
                    device: device_id.clone(),
                    module: module_id.clone(),
                })?;
            registry::check_module_delete(&d, &module_id)?;
            if_match.check(&m.etag)?;
            s.delete_module(&device_id, &module_id)?;
            Ok(())
        })
        .await?;
        self.connections().close(&key, "module deleted");
        Ok(())
    }
}
