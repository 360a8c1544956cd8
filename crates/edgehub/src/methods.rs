//! Direct methods and C2D from the cloud, relayed to connected clients
//! (`reference/iotedge-runtime.md` §3.10).
//!
//! A method call reaches a client only while it is connected and subscribed to
//! `$iothub/methods/POST/#`; otherwise the cloud gets 404 at once. The client's answer is matched
//! by a local request id and sent back with the cloud's. No answer within the method timeout
//! gives the cloud a 504.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ironedge_protocol::{Identity, MethodTopic, PropertyBag};

use crate::authz::Subscription;
use crate::hub::{Events, Hub, lock};
use crate::sessions::ClientHandle;
use crate::twins;
use crate::upstream::UpstreamEvent;

/// Method calls waiting for a client's answer: local rid → (identity, cloud rid).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    calls: Mutex<HashMap<String, (Identity, String)>>,
    next: AtomicU64,
}

/// Consumes events from the upstream link until it closes.
pub(crate) async fn run_upstream_events(hub: Hub, mut events: Events) {
    while let Some(event) = events.recv().await {
        match event {
            UpstreamEvent::MethodRequest {
                identity,
                method,
                rid,
                payload,
            } => method_request(&hub, identity, method, rid, payload).await,
            UpstreamEvent::DesiredPatch { identity, patch } => {
                twins::on_desired(&hub, &identity, serde_json::Value::Object(patch)).await;
            }
            UpstreamEvent::CloudToDevice {
                identity,
                property_bag,
                payload,
            } => cloud_to_device(&hub, &identity, &property_bag, payload).await,
            UpstreamEvent::Connected(identity) => {
                let hub = hub.clone();
                tokio::spawn(async move { twins::on_connected(&hub, &identity).await });
            }
            UpstreamEvent::Disconnected(_) => {}
        }
    }
}

async fn answer_cloud(hub: &Hub, identity: &Identity, rid: &str, status: i32, message: &str) {
    let Some(link) = &hub.inner.upstream else {
        return;
    };
    let body = serde_json::json!({ "message": message }).to_string();
    let _ = link
        .connection(identity)
        .method_response(rid, status, Bytes::from(body))
        .await;
}

async fn method_request(
    hub: &Hub,
    identity: Identity,
    method: String,
    cloud_rid: String,
    payload: Bytes,
) {
    let client = hub
        .inner
        .sessions
        .get(&identity)
        .filter(|c| c.is_subscribed(Subscription::Methods));
    let Some(client) = client else {
        answer_cloud(
            hub,
            &identity,
            &cloud_rid,
            404,
            "the module is not connected or not listening for methods",
        )
        .await;
        return;
    };
    let local = hub
        .inner
        .methods
        .next
        .fetch_add(1, Ordering::Relaxed)
        .to_string();
    lock(&hub.inner.methods.calls).insert(local.clone(), (identity.clone(), cloud_rid.clone()));
    let topic = MethodTopic::Request {
        name: method,
        rid: local.clone(),
    }
    .to_string();
    if client.send(topic, payload).await.is_err() {
        lock(&hub.inner.methods.calls).remove(&local);
        answer_cloud(hub, &identity, &cloud_rid, 404, "the module disconnected").await;
        return;
    }
    let hub = hub.clone();
    let timeout = hub.inner.settings.method_timeout;
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        let expired = lock(&hub.inner.methods.calls).remove(&local);
        if let Some((identity, cloud_rid)) = expired {
            answer_cloud(
                &hub,
                &identity,
                &cloud_rid,
                504,
                "the module did not answer in time",
            )
            .await;
        }
    });
}

/// A client's `$iothub/methods/res/{status}/?$rid=…`.
pub(crate) async fn module_responded(
    hub: &Hub,
    client: &ClientHandle,
    status: &str,
    rid: &str,
    payload: Bytes,
) {
    let call = {
        let mut calls = lock(&hub.inner.methods.calls);
        // Only the identity that was asked may answer.
        match calls.get(rid) {
            Some((identity, _)) if *identity == client.identity => calls.remove(rid),
            _ => None,
        }
    };
    let Some((identity, cloud_rid)) = call else {
        tracing::debug!(identity = %client.identity, rid, "method response for no pending call");
        return;
    };
    let status: i32 = status.parse().unwrap_or(500);
    if let Some(link) = &hub.inner.upstream
        && let Err(e) = link
            .connection(&identity)
            .method_response(&cloud_rid, status, payload)
            .await
    {
        tracing::warn!(identity = %identity, error = %e, "relaying a method response upstream failed");
    }
}

/// C2D for a leaf device: relayed, not stored (IoT Edge does the same).
async fn cloud_to_device(hub: &Hub, identity: &Identity, property_bag: &str, payload: Bytes) {
    let client = hub
        .inner
        .sessions
        .get(identity)
        .filter(|c| c.is_subscribed(Subscription::CloudToDevice));
    let Some(client) = client else {
        tracing::debug!(identity = %identity, "C2D for a device that is not listening; dropped");
        return;
    };
    let mut topic = format!("devices/{}/messages/devicebound/", identity.device_id);
    PropertyBag::parse(property_bag).write_to(&mut topic);
    let _ = client.deliver(topic, payload).await;
}
