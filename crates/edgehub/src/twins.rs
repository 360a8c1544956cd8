//! The hub side of twins: GET with the offline cache, reported patches acknowledged locally and
//! synced later, desired patches relayed, and re-sync after the upstream link returns
//! (`reference/iotedge-runtime.md` §3.9).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use ironedge_protocol::{Identity, TwinTopic};
use ironedge_store::{
    CachedTwin, KvWrite, PendingReportedPatch, REPORTED_PATCHES, TWINS, Timestamp,
};
use serde_json::{Map, Value};

use crate::authz::Subscription;
use crate::hub::{Hub, lock, unix_now};
use crate::sessions::ClientHandle;
use crate::twin::{TwinDoc, compose_patches, parse_reported_patch};

/// How many queued reported patches one sync round reads.
const SYNC_BATCH: usize = 512;
/// How long a GET waits for a cloud answer before serving the cache.
const GET_WAIT: Duration = Duration::from_secs(10);

fn now_ts() -> Timestamp {
    Timestamp::from_unix_millis(unix_now() * 1000)
}

/// Reads the durable twin cache into memory at start.
pub(crate) fn load_cache(hub: &Hub) {
    let Ok(entries) = hub.inner.store.reader().list(&TWINS) else {
        tracing::warn!("reading the twin cache failed; starting with an empty cache");
        return;
    };
    let mut twins = lock(&hub.inner.twins);
    for (key, cached) in entries {
        let Ok(identity) = Identity::from_client_id(&key) else {
            continue;
        };
        let fetched = cached.fetched_at.as_unix_millis() / 1000;
        twins.insert(identity, (TwinDoc::from_json(&cached.twin), fetched));
    }
}

fn cached(hub: &Hub, identity: &Identity) -> Option<(TwinDoc, u64)> {
    lock(&hub.inner.twins).get(identity).cloned()
}

fn cache_write(identity: &Identity, doc: &TwinDoc, fetched: u64) -> Option<KvWrite> {
    let record = CachedTwin {
        fetched_at: Timestamp::from_unix_millis(fetched * 1000),
        twin: doc.to_json(),
    };
    TWINS.put(identity.to_string(), &record).ok()
}

async fn respond(
    client: &ClientHandle,
    status: u16,
    rid: String,
    version: Option<u64>,
    body: Bytes,
) {
    let topic = TwinTopic::Response {
        status,
        rid,
        version,
    }
    .to_string();
    let _ = client.send(topic, body).await;
}

/// Applies patches still queued for upstream on top of a twin fresh from the cloud, so a GET
/// never shows a reported value older than what the module already reported.
fn overlay_pending(hub: &Hub, identity: &Identity, doc: &mut TwinDoc) {
    let key = identity.to_string();
    let Ok(pending) = hub
        .inner
        .store
        .reader()
        .queue_peek(&REPORTED_PATCHES, usize::MAX)
    else {
        return;
    };
    for (_, p) in pending.into_iter().filter(|(_, p)| p.identity == key) {
        if let Value::Object(patch) = p.patch {
            ironedge_protocol::merge(&mut doc.reported, &patch);
        }
    }
}

/// Fetches the twin from the cloud and stores it; returns the fresh document and the synthetic
/// desired patch if the desired version moved.
async fn refresh(hub: &Hub, identity: &Identity) -> Option<(TwinDoc, Option<Map<String, Value>>)> {
    let link = hub.inner.upstream.as_ref()?;
    let conn = link.connection(identity);
    if !conn.wait_connected(GET_WAIT).await {
        return None;
    }
    let fresh = match conn.get_twin().await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(identity = %identity, error = %e, "twin GET upstream failed; serving the cache");
            return None;
        }
    };
    let mut fresh = TwinDoc::from_json(&fresh);
    overlay_pending(hub, identity, &mut fresh);
    let now = unix_now();
    let (doc, patch) = {
        let mut twins = lock(&hub.inner.twins);
        let entry = twins
            .entry(identity.clone())
            .or_insert_with(|| (TwinDoc::empty(), 0));
        let had_cache = entry.1 > 0;
        let patch = entry.0.refresh(fresh).filter(|_| had_cache);
        entry.1 = now;
        (entry.0.clone(), patch)
    };
    if let Some(write) = cache_write(identity, &doc, now) {
        let _ = hub.inner.store.kv(vec![write]).await;
    }
    Some((doc, patch))
}

/// `$iothub/twin/GET`: from the cloud when online and the cache is stale, else from the cache.
pub(crate) async fn get(hub: &Hub, client: &ClientHandle, rid: String) {
    let identity = &client.identity;
    let stale = cached(hub, identity).is_none_or(|(_, fetched)| {
        unix_now().saturating_sub(fetched) >= hub.inner.settings.min_twin_sync.as_secs()
    });
    let doc = if stale {
        match refresh(hub, identity).await {
            Some((doc, _)) => Some(doc),
            None => cached(hub, identity).map(|(d, _)| d),
        }
    } else {
        cached(hub, identity).map(|(d, _)| d)
    };
    // Never seen and offline: an empty twin lets the module start with no cloud at all.
    let doc = doc.unwrap_or_else(TwinDoc::empty);
    let body = Bytes::from(serde_json::to_vec(&doc.to_json()).unwrap_or_default());
    respond(client, 200, rid, None, body).await;
}

/// `$iothub/twin/PATCH/properties/reported`: validate, merge into the cache, queue for upstream
/// (one atomic store write), answer 204 at once.
pub(crate) async fn patch_reported(hub: &Hub, client: &ClientHandle, rid: String, body: &[u8]) {
    let patch = match parse_reported_patch(body) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(identity = %client.identity, error = %e, "reported patch refused");
            let msg = serde_json::json!({ "message": e.to_string() });
            respond(client, 400, rid, None, Bytes::from(msg.to_string())).await;
            return;
        }
    };
    let identity = &client.identity;
    let (doc, version, fetched) = {
        let mut twins = lock(&hub.inner.twins);
        let entry = twins
            .entry(identity.clone())
            .or_insert_with(|| (TwinDoc::empty(), 0));
        let version = entry.0.apply_reported(&patch);
        (entry.0.clone(), version, entry.1)
    };
    let pending = PendingReportedPatch {
        identity: identity.to_string(),
        patch: Value::Object(patch),
        received_at: now_ts(),
    };
    let writes: Vec<KvWrite> = [
        cache_write(identity, &doc, fetched),
        REPORTED_PATCHES.push(&pending).ok(),
    ]
    .into_iter()
    .flatten()
    .collect();
    match hub.inner.store.kv(writes).await {
        Ok(_) => {
            respond(client, 204, rid, Some(version), Bytes::new()).await;
            hub.inner.reported_changed.notify_one();
        }
        Err(e) => {
            tracing::error!(identity = %identity, error = %e, "storing a reported patch failed");
            respond(client, 500, rid, None, Bytes::new()).await;
        }
    }
}

/// Pushes queued reported patches upstream, coalesced per identity, every sync interval or when
/// a patch arrives; a patch leaves the queue only after the cloud accepted it.
pub(crate) async fn run_reported_sync(hub: Hub) {
    let Some(link) = hub.inner.upstream.clone() else {
        return;
    };
    let shutdown = hub.inner.shutdown.clone();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = hub.inner.reported_changed.notified() => {}
            () = tokio::time::sleep(hub.inner.settings.reported_sync_interval) => {}
        }
        let Ok(pending) = hub
            .inner
            .store
            .reader()
            .queue_peek(&REPORTED_PATCHES, SYNC_BATCH)
        else {
            continue;
        };
        let mut by_identity: BTreeMap<String, (Vec<u64>, Map<String, Value>)> = BTreeMap::new();
        for (id, p) in pending {
            let entry = by_identity.entry(p.identity.clone()).or_default();
            entry.0.push(id);
            if let Value::Object(patch) = &p.patch {
                compose_patches(&mut entry.1, patch);
            }
        }
        let mut done = Vec::new();
        for (key, (ids, patch)) in by_identity {
            let Ok(identity) = Identity::from_client_id(&key) else {
                done.extend(ids);
                continue;
            };
            let conn = link.connection(&identity);
            if !conn.is_connected() {
                continue;
            }
            match conn.patch_reported(&Value::Object(patch)).await {
                Ok(()) => done.extend(ids),
                Err(e) => {
                    tracing::warn!(identity = %identity, error = %e, "reported sync failed; will retry")
                }
            }
        }
        if !done.is_empty() {
            let _ = hub.inner.store.kv(vec![REPORTED_PATCHES.ack(done)]).await;
        }
    }
}

/// A desired patch from the cloud: merge into the cache, push to the client if it listens.
pub(crate) async fn on_desired(hub: &Hub, identity: &Identity, patch: Value) {
    let Value::Object(map) = &patch else {
        return;
    };
    let (doc, fetched) = {
        let mut twins = lock(&hub.inner.twins);
        let entry = twins
            .entry(identity.clone())
            .or_insert_with(|| (TwinDoc::empty(), 0));
        entry.0.apply_desired(map);
        (entry.0.clone(), entry.1)
    };
    if let Some(write) = cache_write(identity, &doc, fetched) {
        let _ = hub.inner.store.kv(vec![write]).await;
    }
    push_desired(hub, identity, &patch).await;
}

async fn push_desired(hub: &Hub, identity: &Identity, patch: &Value) {
    let Some(client) = hub.inner.sessions.get(identity) else {
        return;
    };
    if !client.is_subscribed(Subscription::DesiredPatches) {
        return;
    }
    let version = patch.get("$version").and_then(Value::as_u64).unwrap_or(0);
    let topic = TwinTopic::DesiredPatch { version }.to_string();
    let _ = client
        .send(
            topic,
            Bytes::from(serde_json::to_vec(patch).unwrap_or_default()),
        )
        .await;
}

/// After an upstream reconnect: re-fetch the twin of a client that listens for desired patches
/// and push what it missed while the link was down.
pub(crate) async fn on_connected(hub: &Hub, identity: &Identity) {
    hub.inner.reported_changed.notify_one();
    let listens = hub
        .inner
        .sessions
        .get(identity)
        .is_some_and(|c| c.is_subscribed(Subscription::DesiredPatches));
    if !listens {
        return;
    }
    if let Some((_, Some(patch))) = refresh(hub, identity).await {
        push_desired(hub, identity, &Value::Object(patch)).await;
    }
}
