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

/// Overlaps the store acknowledgement of one batch with reading and delivering the next: while
/// an acknowledgement is being committed, the next read starts after the last delivered offset;
/// once it is committed, reads start at the head again, so a newly queued message of a more
/// urgent priority is never passed over for longer than one batch.
struct AckPipeline {
    id: String,
    pending: Option<tokio::task::JoinHandle<()>>,
    cursor: Option<Offset>,
}

impl AckPipeline {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            pending: None,
            cursor: None,
        }
    }

    fn peek_options(&mut self, max: usize) -> PeekOptions {
        if self
            .pending
            .as_ref()
            .is_some_and(tokio::task::JoinHandle::is_finished)
        {
            self.pending = None;
            self.cursor = None;
        }
        match (self.pending.is_some(), self.cursor) {
            (true, Some(c)) => PeekOptions::head(max).after(c),
            _ => PeekOptions::head(max),
        }
    }

    /// True while an acknowledgement is in flight (an empty read may just mean "caught up").
    fn busy(&self) -> bool {
        self.pending.is_some()
    }

    /// Waits for the acknowledgement in flight; reads start at the head again.
    async fn settle(&mut self) {
        if let Some(task) = self.pending.take() {
            let _ = task.await;
        }
        self.cursor = None;
    }

    /// Commits `done` in the background (after the previous one, keeping commits in order).
    async fn submit(&mut self, hub: &Hub, done: Vec<Offset>) {
        let Some(last) = done.last().copied() else {
            return;
        };
        if let Some(task) = self.pending.take() {
            let _ = task.await;
        }
        let store = hub.inner.store.clone();
        let id = self.id.clone();
        self.cursor = Some(last);
        self.pending = Some(tokio::spawn(async move {
            if let Err(e) = store.ack(id.as_str(), done).await {
                tracing::warn!(endpoint = %id, error = %e, "acknowledging delivered messages failed");
            }
        }));
    }
}

async fn peek_with(hub: &Hub, id: &str, options: PeekOptions) -> Option<Peeked> {
    match hub.inner.store.peek(id, options).await {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(endpoint = id, error = %e, "reading the endpoint queue failed");
            tokio::time::sleep(RETRY_DELAY).await;
            None
        }
    }
}

/// Runs the pump for one endpoint until shutdown.
pub(crate) async fn run(hub: Hub, id: String, endpoint: Endpoint) {
    match endpoint {
        Endpoint::Upstream => upstream(hub, id).await,
        Endpoint::ModuleInput { module, input } => module_input(hub, id, module, input).await,
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
    let mut acks = AckPipeline::new(&id);
    loop {
        sessions.borrow_and_update();
        appended.borrow_and_update();
        let client = hub
            .inner
            .sessions
            .get(&identity)
            .filter(|c| c.is_subscribed(Subscription::ModuleInputs));
        let Some(client) = client else {
            acks.settle().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = sessions.changed() => continue,
            }
        };
        let options = acks.peek_options(hub.inner.settings.batch_size);
        let Some(batch) = peek_with(&hub, &id, options).await else {
            continue;
        };
        if batch.deliveries.is_empty() {
            if acks.busy() {
                acks.settle().await;
                continue;
            }
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
        let expected = waiting.len();
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
        let complete = done.len() == expected && expected == batch.deliveries.len();
        count_sent(&hub, &id, sent);
        acks.submit(&hub, done).await;
        if !complete {
            // Something was not delivered: read from the head again once committed.
            acks.settle().await;
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
    let mut acks = AckPipeline::new(&id);
    loop {
        appended.borrow_and_update();
        let options = acks.peek_options(UPSTREAM_BATCH);
        let Some(batch) = peek_with(&hub, &id, options).await else {
            continue;
        };
        if batch.deliveries.is_empty() {
            if acks.busy() {
                acks.settle().await;
                continue;
            }
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
        let complete = acked.len() == batch.deliveries.len();
        count_sent(&hub, &id, acked.len() as u64);
        // Queue order, so the last offset is where the next read continues.
        acked.sort_unstable();
        acks.submit(&hub, acked).await;
        if !complete {
            acks.settle().await;
        }
        if !progressed {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY_DELAY) => {}
            }
        }
    }
}
