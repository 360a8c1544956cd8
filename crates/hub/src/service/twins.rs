//! Twin operations (service side and device side) and queries.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{Connections, Hub, identity_key, now_iso, retry};
use crate::error::{Error, Result};
use crate::query::{self, ItemType, Source};
use crate::registry::{Device, IfMatch, Module};
use crate::storage::{Storage, TwinScope};
use crate::twin::{self, ServicePatch, Twin, TwinChange};

/// One page of query results.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    /// The rows.
    pub items: Vec<Value>,
    /// `twin` or `raw`.
    pub item_type: ItemType,
    /// Token for the next page, when there is one.
    pub continuation: Option<String>,
}

/// Loads a twin with its identity, or the matching not-found error.
fn load(s: &dyn Storage, d: &str, m: Option<&str>) -> Result<(Twin, Device, Option<Module>)> {
    let device = s
        .get_device(d)?
        .ok_or_else(|| Error::DeviceNotFound(d.to_owned()))?;
    let module = match m {
        Some(m) => Some(s.get_module(d, m)?.ok_or_else(|| Error::ModuleNotFound {
            device: d.to_owned(),
            module: m.to_owned(),
        })?),
        None => None,
    };
    let twin = s.get_twin(d, m)?.ok_or_else(|| match m {
        Some(m) => Error::ModuleNotFound {
            device: d.to_owned(),
            module: m.to_owned(),
        },
        None => Error::DeviceNotFound(d.to_owned()),
    })?;
    Ok((twin, device, module))
}

/// Twin views of every twin in `scope`, with presence (queries, metrics, configuration targeting).
pub(crate) fn all_views(
    s: &dyn Storage,
    scope: TwinScope,
    conns: &Connections,
) -> Result<Vec<Value>> {
    let devices: HashMap<String, Device> = s
        .list_devices(usize::MAX)?
        .into_iter()
        .map(|d| (d.device_id.clone(), d))
        .collect();
    let modules: HashMap<(String, String), Module> = match scope {
        TwinScope::Devices => HashMap::new(),
        TwinScope::Modules => s
            .list_all_modules()?
            .into_iter()
            .map(|m| ((m.device_id.clone(), m.module_id.clone()), m))
            .collect(),
    };
    let mut out = Vec::new();
    for t in s.list_twins(scope)? {
        let Some(d) = devices.get(&t.device_id) else {
            continue;
        };
        let m = t
            .module_id
            .as_ref()
            .and_then(|m| modules.get(&(t.device_id.clone(), m.clone())));
        if t.module_id.is_some() && m.is_none() {
            continue;
        }
        let presence = conns.presence(&identity_key(&t.device_id, t.module_id.as_deref()));
        out.push(twin::view(&t, d, m, &presence));
    }
    Ok(out)
}

impl Hub {
    fn twin_view(&self, t: &Twin, d: &Device, m: Option<&Module>) -> Value {
        let presence = self
            .connections()
            .presence(&identity_key(&t.device_id, t.module_id.as_deref()));
        twin::view(t, d, m, &presence)
    }

    /// A twin's REST view.
    pub async fn get_twin(&self, device_id: String, module_id: Option<String>) -> Result<Value> {
        self.metrics().twin_op("get");
        let (t, d, m) = self
            .run(move |s| load(s, &device_id, module_id.as_deref()))
            .await?;
        Ok(self.twin_view(&t, &d, m.as_ref()))
    }

    /// Applies a service merge-patch (tags + desired).
    pub async fn patch_twin(
        &self,
        device_id: String,
        module_id: Option<String>,
        patch: ServicePatch,
        if_match: IfMatch,
    ) -> Result<Value> {
        self.metrics().twin_op("patch");
        self.write_twin(device_id, module_id, if_match, move |t, now| {
            t.patch(&patch, now)
        })
        .await
    }

    /// Replaces tags and desired properties.
    pub async fn replace_twin(
        &self,
        device_id: String,
        module_id: Option<String>,
        body: Value,
        if_match: IfMatch,
    ) -> Result<Value> {
        self.metrics().twin_op("replace");
        let tags = body
            .get("tags")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let desired = body
            .pointer("/properties/desired")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        self.write_twin(device_id, module_id, if_match, move |t, now| {
            t.replace(&tags, &desired, now)
        })
        .await
    }

    async fn write_twin<F>(
        &self,
        device_id: String,
        module_id: Option<String>,
        if_match: IfMatch,
        f: F,
    ) -> Result<Value>
    where
        F: Fn(&mut Twin, &str) -> Result<TwinChange, twin::TwinError> + Send + 'static,
    {
        let now = now_iso();
        let (t, d, m, change) = self
            .run(move |s| {
                retry(&format!("twin {device_id}"), || {
                    let (mut t, d, m) = load(s, &device_id, module_id.as_deref())?;
                    t.check_if_match(&if_match)?;
                    let before = t.version;
                    let change = f(&mut t, &now)?;
                    s.put_twin(&t, before)?;
                    Ok((t, d, m, change))
                })
            })
            .await?;
        if let Some(patch) = &change.desired_patch {
            self.push_desired(&identity_key(&t.device_id, t.module_id.as_deref()), patch);
        }
        if change.tags_changed && t.module_id.is_none() {
            self.reevaluate_device(&t.device_id).await?;
        }
        Ok(self.twin_view(&t, &d, m.as_ref()))
    }

    /// Sends a desired patch to the connected identity, if any.
    pub(crate) fn push_desired(&self, key: &str, patch: &Value) {
        if let Some(link) = self.connections().link(key) {
            link.send_desired_patch(patch);
            self.metrics().sent("desired_patch");
        }
    }

    /// The device-side twin document `{"desired":…,"reported":…}` (MQTT twin GET).
    pub async fn device_twin(&self, device_id: String, module_id: Option<String>) -> Result<Value> {
        self.metrics().twin_op("device_get");
        let (t, _, _) = self
            .run(move |s| load(s, &device_id, module_id.as_deref()))
            .await?;
        Ok(t.device_document())
    }

    /// Applies a device's reported-properties patch; returns the new reported `$version`.
    pub async fn patch_reported(
        &self,
        device_id: String,
        module_id: Option<String>,
        patch: Value,
    ) -> Result<u64> {
        self.metrics().twin_op("reported_patch");
        let now = now_iso();
        self.run(move |s| {
            retry(&format!("twin {device_id}"), || {
                let (mut t, _, _) = load(s, &device_id, module_id.as_deref())?;
                let before = t.version;
                let v = t.patch_reported(&patch, &now)?;
                s.put_twin(&t, before)?;
                Ok(v)
            })
        })
        .await
    }

    /// Runs a query; `continuation` and `max_items` page through the results.
    pub async fn query(
        &self,
        text: String,
        continuation: Option<String>,
        max_items: usize,
    ) -> Result<QueryPage> {
        let q = query::parse_query(&text)?;
        let offset = match continuation.as_deref().filter(|c| !c.is_empty()) {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .map_err(|_| Error::BadRequest(format!("invalid continuation token {c:?}")))?,
        };
        let scope = match q.from {
            Source::Devices => TwinScope::Devices,
            Source::Modules => TwinScope::Modules,
        };
        let conns = self.inner.connections.clone();
        let views = self.run(move |s| all_views(s, scope, &conns)).await?;
        let (items, item_type) = query::execute(&q, &views);
        let max_items = max_items.clamp(1, 10_000);
        let end = offset.saturating_add(max_items).min(items.len());
        let page: Vec<Value> = items
            .get(offset.min(end)..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let continuation = (end < items.len()).then(|| end.to_string());
        Ok(QueryPage {
            items: page,
            item_type,
            continuation,
        })
    }
}

/// Merges a desired patch into a copy of `desired` (ADM device configurations).
pub(crate) fn merged(
    desired: &Map<String, Value>,
    patch: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = desired.clone();
    ironedge_protocol::merge(&mut out, patch);
    out
}
