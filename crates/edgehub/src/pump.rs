//! Endpoint pumps: one task per endpoint queue, delivering in queue order (priority, then
//! arrival) and acknowledging the store only after the receiver acknowledged — at-least-once.
//!
//! A pump reads continuously: it keeps up to a window of messages in flight (delivered, not yet
//! acknowledged by the receiver) and reads on past them with a [`ReadCursor`], so deliveries
//! never wait for earlier acknowledgements, and a more urgent priority that arrives meanwhile is
//! still read first. Receivers' acknowledgements are gathered and committed to the store in the
//! background, one commit at a time, each carrying everything acknowledged since the last one.
//! When a receiver goes away, the pump commits what was acknowledged, forgets the rest and reads
//! from the head again: those messages are delivered again (at-least-once, in order).
//!
//! - A module input is delivered only while the module is connected and subscribed to its
//!   inputs; otherwise messages wait (and may expire by TTL).
//! - `$upstream` sends each message on its original sender's own upstream connection, so the
//!   cloud sees the right device or module. A sender whose connection is down is skipped for
//!   the rest of the pass (keeping its messages in order); once it is up again the pump reads
//!   from the head again. With no cloud configured, or while the whole link is down, messages
//!   wait.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ironedge_protocol::Identity;
use ironedge_routing::Endpoint;
use ironedge_store::{Offset, PeekOptions, Peeked, ReadCursor};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::authz::Subscription;
use crate::hub::Hub;
use crate::message::{EdgeMessage, sysprop};
use crate::metrics::EndpointLabel;
use crate::sessions::ClientHandle;
use crate::upstream::Connection;
use crate::wire;

/// Pause after a store read error before trying again.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Messages in flight to the cloud: the link is where a backlog drains after an outage, so the
/// window covers several upstream connections' own windows.
const UPSTREAM_WINDOW: usize = 2048;
/// Bytes read per upstream peek.
const UPSTREAM_PEEK_BYTES: usize = 4 * 1024 * 1024;

/// Messages in flight to a receiver, and receiver acknowledgements on their way to the store.
struct Window {
    id: String,
    capacity: usize,
    /// What has been read since the last start from the head.
    cursor: ReadCursor,
    /// Delivered messages, oldest first, each with the receiver's acknowledgement.
    inflight: VecDeque<(Offset, oneshot::Receiver<()>)>,
    /// Acknowledged by the receiver, not yet handed to the store.
    acked: Vec<Offset>,
    /// The store acknowledgement being committed.
    committing: Option<JoinHandle<()>>,
    /// The last read came back short and nothing was appended since: the queue is drained.
    drained: bool,
    sent: Counter,
}

impl Window {
    fn new(hub: &Hub, id: &str, capacity: usize) -> Self {
        let sent = hub
            .inner
            .metrics
            .messages_sent
            .get_or_create(&EndpointLabel {
                endpoint: id.to_owned(),
            })
            .clone();
        Self {
            id: id.to_owned(),
            capacity: capacity.max(1),
            cursor: ReadCursor::new(),
            inflight: VecDeque::new(),
            acked: Vec::new(),
            committing: None,
            drained: false,
            sent,
        }
    }

    fn room(&self) -> usize {
        self.capacity.saturating_sub(self.inflight.len())
    }

    /// Worth reading: the queue may hold more, and the window has a useful amount of room
    /// (reading for every single acknowledgement would cost a read per message).
    fn wants_read(&self) -> bool {
        !self.drained && (self.inflight.is_empty() || self.room() >= (self.capacity / 4).max(1))
    }

    /// A message went out.
    fn delivered(&mut self, offset: Offset, ack: oneshot::Receiver<()>) {
        self.cursor.advance(offset);
        self.inflight.push_back((offset, ack));
    }

    /// A message is passed over without delivery (it expired after the read; the store removes
    /// and counts it).
    fn passed(&mut self, offset: Offset) {
        self.cursor.advance(offset);
    }

    /// A message that can never be delivered (corrupt): acknowledged, so it leaves the queue.
    fn discard(&mut self, offset: Offset) {
        self.cursor.advance(offset);
        self.acked.push(offset);
    }

    /// Waits for the oldest delivery's acknowledgement; false if the receiver went away first.
    async fn oldest_acked(inflight: &mut VecDeque<(Offset, oneshot::Receiver<()>)>) -> bool {
        match inflight.front_mut() {
            Some((_, ack)) => ack.await.is_ok(),
            None => std::future::pending().await,
        }
    }

    /// Moves the acknowledged prefix of the window (the oldest, known acknowledged, and every
    /// one after it that already is) to the store's batch.
    fn take_acked(&mut self) {
        let mut n = 0;
        if let Some((offset, _)) = self.inflight.pop_front() {
            self.acked.push(offset);
            n += 1;
        }
        while let Some((offset, ack)) = self.inflight.front_mut() {
            if ack.try_recv().is_err() {
                break;
            }
            self.acked.push(*offset);
            self.inflight.pop_front();
            n += 1;
        }
        self.sent.inc_by(n);
    }

    /// Starts committing what receivers acknowledged, unless a commit is under way.
    fn commit(&mut self, hub: &Hub) {
        if self.acked.is_empty() || self.committing.as_ref().is_some_and(|c| !c.is_finished()) {
            return;
        }
        let offsets = std::mem::take(&mut self.acked);
        let store = hub.inner.store.clone();
        let id = self.id.clone();
        self.committing = Some(tokio::spawn(async move {
            if let Err(e) = store.ack(id.as_str(), offsets).await {
                tracing::warn!(endpoint = %id, error = %e, "acknowledging delivered messages failed");
            }
        }));
    }

    /// Waits for the commit under way.
    async fn committed(committing: &mut Option<JoinHandle<()>>) {
        match committing {
            Some(task) => {
                let _ = task.await;
                *committing = None;
            }
            None => std::future::pending().await,
        }
    }

    /// Commits every acknowledgement received, forgets the deliveries still waiting for one and
    /// starts again from the head of the queue (they are delivered again).
    async fn restart(&mut self, hub: &Hub) {
        while let Some((offset, mut ack)) = self.inflight.pop_front() {
            if ack.try_recv().is_err() {
                break;
            }
            self.acked.push(offset);
        }
        self.inflight.clear();
        // `committed` never returns when nothing is being committed; only wait for a real task.
        if let Some(task) = self.committing.take() {
            let _ = task.await;
        }
        self.commit(hub);
        if let Some(task) = self.committing.take() {
            let _ = task.await;
        }
        self.cursor.reset();
        self.drained = false;
    }

    /// Reads the next messages past the cursor (`None` after a read error, having paused).
    async fn read(&mut self, hub: &Hub, max: usize, max_bytes: usize) -> Option<Peeked> {
        let want = self.room().min(max).max(1);
        let options = PeekOptions::head(want).with_max_bytes(max_bytes);
        match hub
            .inner
            .store
            .peek_past(self.id.as_str(), options, self.cursor.clone())
            .await
        {
            Ok(p) => {
                self.drained = p.deliveries.len() < want;
                Some(p)
            }
            Err(e) => {
                tracing::warn!(endpoint = %self.id, error = %e, "reading the endpoint queue failed");
                tokio::time::sleep(RETRY_DELAY).await;
                None
            }
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

fn same_connection(a: Option<&Arc<ClientHandle>>, b: Option<&Arc<ClientHandle>>) -> bool {
    a.map(|c| c.connection_id) == b.map(|c| c.connection_id)
}

async fn module_input(hub: Hub, id: String, module: String, input: String) {
    let edge = hub.inner.settings.edge_device_id.clone();
    let identity = Identity::module(edge.clone(), module.clone());
    let mut sessions = hub.inner.sessions.watch();
    let mut appended = hub.inner.store.subscribe(&id);
    let shutdown = hub.inner.shutdown.clone();
    let batch = hub.inner.settings.batch_size;
    let mut w = Window::new(&hub, &id, hub.inner.settings.delivery_window);
    let mut current: Option<Arc<ClientHandle>> = None;
    loop {
        sessions.borrow_and_update();
        let client =
            hub.inner.sessions.get(&identity).filter(|c| {
                !c.closed.is_cancelled() && c.is_subscribed(Subscription::ModuleInputs)
            });
        if !same_connection(client.as_ref(), current.as_ref()) {
            // Whatever went to an earlier connection and was not acknowledged goes again.
            w.restart(&hub).await;
            current.clone_from(&client);
        }
        let Some(client) = client else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = sessions.changed() => continue,
            }
        };
        if appended.has_changed().unwrap_or(false) {
            w.drained = false;
        }
        if w.wants_read() {
            appended.borrow_and_update();
            let Some(peeked) = w.read(&hub, batch, usize::MAX).await else {
                continue;
            };
            if !deliver_to_module(&mut w, &hub, &client, &edge, &module, &input, peeked).await {
                w.restart(&hub).await;
                continue;
            }
        }
        w.commit(&hub);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                w.restart(&hub).await;
                return;
            }
            acked = Window::oldest_acked(&mut w.inflight) => {
                if acked {
                    w.take_acked();
                } else {
                    w.restart(&hub).await;
                }
            }
            () = Window::committed(&mut w.committing) => {}
            _ = appended.changed(), if w.drained => w.drained = false,
            _ = sessions.changed() => {}
            () = client.closed.cancelled() => w.restart(&hub).await,
        }
    }
}

/// Hands a read batch to the module; false when the client went away.
async fn deliver_to_module(
    w: &mut Window,
    hub: &Hub,
    client: &ClientHandle,
    edge: &str,
    module: &str,
    input: &str,
    peeked: Peeked,
) -> bool {
    let now = now_millis();
    for d in peeked.deliveries {
        if d.expires_at.is_some_and(|at| at.as_unix_millis() <= now) {
            w.passed(d.offset);
            continue;
        }
        let Ok(msg) = EdgeMessage::decode(d.payload) else {
            hub.inner.metrics.dropped("corrupt");
            w.discard(d.offset);
            continue;
        };
        let topic = wire::input_topic(edge, module, input, &msg);
        match client.deliver(topic, msg.body).await {
            Ok(ack) => w.delivered(d.offset, ack),
            Err(_) => return false,
        }
    }
    true
}

/// The upstream pump's view of the senders it speaks for.
struct Senders {
    link: crate::upstream::UpstreamLink,
    connections: HashMap<Identity, Arc<Connection>>,
    /// Senders skipped in this pass (their connection was down), so their later messages wait
    /// too and their order holds.
    blocked: HashSet<Identity>,
}

impl Senders {
    fn connection(&mut self, identity: &Identity) -> Arc<Connection> {
        if let Some(c) = self.connections.get(identity) {
            return c.clone();
        }
        let c = self.link.connection(identity);
        self.connections.insert(identity.clone(), c.clone());
        c
    }

    /// True when a skipped sender can send again: time to read from the head.
    fn unblocked(&self) -> bool {
        self.blocked
            .iter()
            .any(|i| self.connections.get(i).is_some_and(|c| c.is_connected()))
    }
}

async fn upstream(hub: Hub, id: String) {
    let shutdown = hub.inner.shutdown.clone();
    let Some(link) = hub.inner.upstream.clone() else {
        // No cloud configured: messages wait in the queue (and expire by TTL).
        shutdown.cancelled().await;
        return;
    };
    let mut link_changed = link.watch();
    let mut appended = hub.inner.store.subscribe(&id);
    let mut w = Window::new(&hub, &id, UPSTREAM_WINDOW);
    let mut senders = Senders {
        link,
        connections: HashMap::new(),
        blocked: HashSet::new(),
    };
    // Waiting for the window to empty before reading from the head again.
    let mut rewinding = false;
    loop {
        if rewinding && w.inflight.is_empty() {
            w.restart(&hub).await;
            senders.blocked.clear();
            rewinding = false;
        }
        if appended.has_changed().unwrap_or(false) || link_changed.has_changed().unwrap_or(false) {
            w.drained = false;
        }
        // Messages of senders whose connection is down are read once and passed over (the cursor
        // keeps them from being read again until a fresh pass), so reading goes on during an
        // outage at the cost of one read per new message.
        if !rewinding && w.wants_read() {
            appended.borrow_and_update();
            link_changed.borrow_and_update();
            let Some(peeked) = w.read(&hub, UPSTREAM_WINDOW, UPSTREAM_PEEK_BYTES).await else {
                continue;
            };
            send_upstream(&mut w, &hub, &mut senders, peeked).await;
        }
        w.commit(&hub);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                w.restart(&hub).await;
                return;
            }
            acked = Window::oldest_acked(&mut w.inflight) => {
                if acked {
                    w.take_acked();
                } else {
                    // That sender's connection dropped: its message goes again, after a
                    // fresh read from the head once the window is empty.
                    w.inflight.pop_front();
                    rewinding = true;
                }
            }
            () = Window::committed(&mut w.committing) => {}
            _ = appended.changed(), if w.drained && !rewinding => w.drained = false,
            _ = link_changed.changed() => {
                w.drained = false;
                if senders.unblocked() {
                    rewinding = true;
                }
            }
            () = tokio::time::sleep(RETRY_DELAY), if !senders.blocked.is_empty() && !rewinding => {
                if senders.unblocked() {
                    rewinding = true;
                } else {
                    // The cursor passes over waiting messages, so no read sees their TTL run
                    // out: remove (and count) expired ones as a read from the head would.
                    if let Err(e) = hub.inner.store.purge_expired().await {
                        tracing::warn!(endpoint = %id, error = %e, "removing expired messages failed");
                    }
                }
            }
        }
    }
}

/// Sends a read batch on each message's sender connection.
async fn send_upstream(w: &mut Window, hub: &Hub, senders: &mut Senders, peeked: Peeked) {
    let now = now_millis();
    for d in peeked.deliveries {
        let Ok(msg) = EdgeMessage::decode(d.payload) else {
            hub.inner.metrics.dropped("corrupt");
            w.discard(d.offset);
            continue;
        };
        let Some(device) = msg.system(sysprop::CONNECTION_DEVICE_ID) else {
            hub.inner.metrics.dropped("invalid_upstream");
            w.discard(d.offset);
            continue;
        };
        let identity = Identity {
            device_id: device.to_owned(),
            module_id: msg.system(sysprop::CONNECTION_MODULE_ID).map(str::to_owned),
        };
        if senders.blocked.contains(&identity) {
            w.passed(d.offset);
            continue;
        }
        if d.expires_at.is_some_and(|at| at.as_unix_millis() <= now) {
            // Left in the queue: the store removes and counts it as expired.
            w.passed(d.offset);
            continue;
        }
        let conn = senders.connection(&identity);
        let sent = match wire::upstream_topic(&msg) {
            Some(topic) if conn.is_connected() => conn.publish(topic, msg.body).await.ok(),
            _ => None,
        };
        match sent {
            Some(ack) => w.delivered(d.offset, ack),
            None => {
                w.passed(d.offset);
                senders.blocked.insert(identity);
            }
        }
    }
}
