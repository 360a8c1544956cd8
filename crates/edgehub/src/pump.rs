//! Endpoint pumps: one task per endpoint queue, delivering in queue order (priority, then
//! arrival) and acknowledging the store only after the receiver acknowledged — at-least-once.
//!
//! - A module input is delivered only while the module is connected and subscribed to its
//!   inputs; otherwise messages wait (and may expire by TTL).
//! - `$upstream` groups a batch by original sender and sends each group on that identity's own
//!   upstream connection, so the cloud sees the right device/module. With no cloud configured, or
//!   while the link is down, messages wait.

use std::collections::BTreeMap;
use std::time::Duration;

use ironedge_protocol::Identity;
use ironedge_routing::Endpoint;
use ironedge_store::{Offset, PeekOptions, Peeked, Timestamp};
use tokio::sync::oneshot;

use crate::authz::Subscription;
use crate::hub::Hub;
use crate::message::{EdgeMessage, sysprop};
use crate::metrics::EndpointLabel;
use crate::wire;

/// Pause after a store read error before trying again.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Upstream batches are larger: the cloud link is where a backlog drains after an outage.
const UPSTREAM_BATCH: usize = 2048;

/// Runs the pump for one endpoint until shutdown.
pub(crate) async fn run(hub: Hub, id: String, endpoint: Endpoint) {
    match endpoint {
        Endpoint::Upstream => upstream(hub, id).await,
        Endpoint::ModuleInput { module, input } => module_input(hub, id, module, input).await,
    }
}

async fn peek(hub: &Hub, id: &str, max: usize) -> Option<Peeked> {
    match hub.inner.store.peek(id, PeekOptions::head(max)).await {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(endpoint = id, error = %e, "reading the endpoint queue failed");
            tokio::time::sleep(RETRY_DELAY).await;
            None
        }
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn count_sent(hub: &Hub, id: &str, n: u64) {
    hub.inner
        .metrics
        .messages_sent
        .get_or_create(&EndpointLabel {
            endpoint: id.to_owned(),
        })
        .inc_by(n);
}

async fn module_input(hub: Hub, id: String, module: String, input: String) {
    let edge = hub.inner.settings.edge_device_id.clone();
    let identity = Identity::module(edge.clone(), module.clone());
    let mut sessions = hub.inner.sessions.watch();
    let mut appended = hub.inner.store.subscribe(&id);
    let shutdown = hub.inner.shutdown.clone();
    loop {
        sessions.borrow_and_update();
        appended.borrow_and_update();
        let client = hub
            .inner
            .sessions
            .get(&identity)
            .filter(|c| c.is_subscribed(Subscription::ModuleInputs));
        let Some(client) = client else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = sessions.changed() => continue,
            }
        };
        let Some(batch) = peek(&hub, &id, hub.inner.settings.batch_size).await else {
            continue;
        };
        if batch.deliveries.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = sessions.changed() => {}
                _ = appended.changed() => {}
            }
            continue;
        }
        // Send the whole batch, then collect the PUBACKs in order.
        let mut waiting: Vec<(Offset, Option<oneshot::Receiver<()>>)> = Vec::new();
        let now = now_millis();
        for d in &batch.deliveries {
            if d.expires_at.is_some_and(|at| at.as_unix_millis() <= now) {
                // The store removes and counts it; stop here to keep order simple.
                break;
            }
            let Ok(msg) = EdgeMessage::decode(d.payload.clone()) else {
                hub.inner.metrics.dropped("corrupt");
                waiting.push((d.offset, None));
                continue;
            };
            let topic = wire::input_topic(&edge, &module, &input, &msg);
            match client.deliver(topic, msg.body.clone()).await {
                Ok(rx) => waiting.push((d.offset, Some(rx))),
                Err(_) => break,
            }
        }
        // Acknowledge the delivered prefix (a batch may span priorities, so by offset list).
        let mut done = Vec::with_capacity(waiting.len());
        let mut sent = 0;
        for (offset, rx) in waiting {
            if let Some(rx) = rx {
                let acked = tokio::select! {
                    r = rx => r.is_ok(),
                    () = client.closed.cancelled() => false,
                    () = shutdown.cancelled() => false,
                };
                if !acked {
                    break;
                }
                sent += 1;
            }
            done.push(offset);
        }
        if !done.is_empty() {
            if let Err(e) = hub.inner.store.ack(id.as_str(), done).await {
                tracing::warn!(endpoint = %id, error = %e, "acknowledging delivered messages failed");
            }
            count_sent(&hub, &id, sent);
        }
    }
}

/// Messages of one sender, in queue order, with their expiry (ms since the epoch).
type Groups = BTreeMap<Identity, Vec<(Offset, Option<u64>, EdgeMessage)>>;

/// A batch grouped by original sender, plus the offsets of messages that cannot go upstream.
fn group_by_sender(batch: &Peeked) -> (Groups, Vec<Offset>) {
    let mut groups = Groups::new();
    let mut invalid = Vec::new();
    for d in &batch.deliveries {
        let Ok(msg) = EdgeMessage::decode(d.payload.clone()) else {
            invalid.push(d.offset);
            continue;
        };
        let Some(device) = msg.system(sysprop::CONNECTION_DEVICE_ID) else {
            invalid.push(d.offset);
            continue;
        };
        let identity = Identity {
            device_id: device.to_owned(),
            module_id: msg.system(sysprop::CONNECTION_MODULE_ID).map(str::to_owned),
        };
        let expires_at = d.expires_at.map(Timestamp::as_unix_millis);
        groups
            .entry(identity)
            .or_default()
            .push((d.offset, expires_at, msg));
    }
    (groups, invalid)
}

async fn upstream(hub: Hub, id: String) {
    let shutdown = hub.inner.shutdown.clone();
    let Some(link) = hub.inner.upstream.clone() else {
        // No cloud configured: messages wait in the queue (and expire by TTL).
        shutdown.cancelled().await;
        return;
    };
    let mut appended = hub.inner.store.subscribe(&id);
    loop {
        appended.borrow_and_update();
        let Some(batch) = peek(&hub, &id, UPSTREAM_BATCH).await else {
            continue;
        };
        if batch.deliveries.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = appended.changed() => continue,
            }
        }
        let (groups, mut acked) = group_by_sender(&batch);
        if !acked.is_empty() {
            hub.inner.metrics.dropped("invalid_upstream");
        }
        let mut progressed = !acked.is_empty();
        for (identity, messages) in groups {
            // Only senders whose connection is up right now: a batch must not be held across a
            // wait, or messages that expired meanwhile would still go out.
            let conn = link.connection(&identity);
            if !conn.is_connected() {
                continue;
            }
            let now = now_millis();
            let mut waiting = Vec::with_capacity(messages.len());
            for (offset, expires_at, msg) in &messages {
                if expires_at.is_some_and(|at| at <= now) {
                    // Left in the queue: the store removes and counts it as expired.
                    continue;
                }
                let Some(topic) = wire::upstream_topic(msg) else {
                    continue;
                };
                match conn.publish(topic, msg.body.clone()).await {
                    Ok(rx) => waiting.push((*offset, rx)),
                    Err(_) => break,
                }
            }
            for (offset, rx) in waiting {
                if rx.await.is_err() {
                    break;
                }
                acked.push(offset);
                progressed = true;
            }
        }
        if !acked.is_empty() {
            let n = acked.len() as u64;
            if let Err(e) = hub.inner.store.ack(id.as_str(), acked).await {
                tracing::warn!(endpoint = %id, error = %e, "acknowledging upstream messages failed");
            }
            count_sent(&hub, &id, n);
        }
        if !progressed {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY_DELAY) => {}
            }
        }
    }
}
