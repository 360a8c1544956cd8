//! Connected clients: one per identity (a new CONNECT kicks the older one), what each has
//! subscribed to, and a handle to deliver messages to it and learn when it acknowledged them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::future::BoxFuture;
use ironedge_protocol::Identity;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::authz::Subscription;
use crate::client::ClientKind;
use crate::hub::lock;

/// A message for the broker to write to a client.
#[derive(Debug)]
pub struct Outbound {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// Resolved when the client PUBACKs (QoS 1); `None` sends at QoS 0.
    pub ack: Option<oneshot::Sender<()>>,
}

/// The client went away before the message could be handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("client disconnected")]
pub struct Gone;

/// Where a client's outbound messages go: the broker connection (or a channel in tests).
pub trait Outlet: Send + Sync + std::fmt::Debug + 'static {
    /// Queues a message for the client, waiting while its queue is full.
    fn send(&self, message: Outbound) -> BoxFuture<'_, Result<(), Gone>>;
}

impl Outlet for mpsc::Sender<Outbound> {
    fn send(&self, message: Outbound) -> BoxFuture<'_, Result<(), Gone>> {
        Box::pin(async move { mpsc::Sender::send(self, message).await.map_err(|_| Gone) })
    }
}

/// A connected client.
#[derive(Debug)]
pub struct ClientHandle {
    /// Unique per connection.
    pub connection_id: u64,
    /// Authenticated identity.
    pub identity: Identity,
    /// Module or leaf device.
    pub kind: ClientKind,
    tx: Arc<dyn Outlet>,
    subscriptions: Mutex<HashSet<Subscription>>,
    /// Cancelled to close the connection (kicked, token expired, shutdown).
    pub closed: CancellationToken,
    /// The client's twin and method requests, handled one after another by one task (started
    /// on the first request).
    pub(crate) ops: OnceLock<mpsc::UnboundedSender<crate::client_ops::ClientOp>>,
}

impl ClientHandle {
    /// True when the client subscribed to `s`.
    pub fn is_subscribed(&self, s: Subscription) -> bool {
        lock(&self.subscriptions).contains(&s)
    }

    /// The client's subscriptions.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        lock(&self.subscriptions).iter().copied().collect()
    }

    /// Delivers at QoS 1; the receiver resolves on the client's PUBACK.
    pub async fn deliver(
        &self,
        topic: String,
        payload: Bytes,
    ) -> Result<oneshot::Receiver<()>, Gone> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Outbound {
                topic,
                payload,
                ack: Some(ack),
            })
            .await?;
        Ok(rx)
    }

    /// Sends at QoS 0.
    pub async fn send(&self, topic: String, payload: Bytes) -> Result<(), Gone> {
        self.tx
            .send(Outbound {
                topic,
                payload,
                ack: None,
            })
            .await
    }
}

/// All connected clients.
#[derive(Debug)]
pub struct Sessions {
    clients: Mutex<HashMap<Identity, Arc<ClientHandle>>>,
    /// Subscriptions remembered for clean-session=0 clients across reconnects.
    remembered: Mutex<HashMap<Identity, HashSet<Subscription>>>,
    next_id: AtomicU64,
    /// Bumped on every connect, subscribe and disconnect, so pumps can wait for their client.
    changed: watch::Sender<u64>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            remembered: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            changed: watch::channel(0).0,
        }
    }
}

impl Sessions {
    /// Registers a new connection, restoring remembered subscriptions unless `clean_session`;
    /// an older connection of the same identity is kicked.
    pub fn connect(
        &self,
        identity: Identity,
        kind: ClientKind,
        tx: Arc<dyn Outlet>,
        clean_session: bool,
    ) -> Arc<ClientHandle> {
        let restored = if clean_session {
            lock(&self.remembered).remove(&identity);
            HashSet::new()
        } else {
            lock(&self.remembered)
                .get(&identity)
                .cloned()
                .unwrap_or_default()
        };
        let handle = Arc::new(ClientHandle {
            connection_id: self.next_id.fetch_add(1, Ordering::Relaxed),
            identity: identity.clone(),
            kind,
            tx,
            subscriptions: Mutex::new(restored),
            closed: CancellationToken::new(),
            ops: OnceLock::new(),
        });
        if let Some(old) = lock(&self.clients).insert(identity, handle.clone()) {
            tracing::info!(identity = %old.identity, "new connection replaces the older one");
            old.closed.cancel();
        }
        self.bump();
        handle
    }

    /// Records a subscription.
    pub fn subscribe(&self, client: &ClientHandle, s: Subscription) {
        lock(&client.subscriptions).insert(s);
        lock(&self.remembered)
            .entry(client.identity.clone())
            .or_default()
            .insert(s);
        self.bump();
    }

    /// Removes a connection (only if it is still the current one for its identity).
    pub fn disconnect(&self, client: &ClientHandle) {
        let mut clients = lock(&self.clients);
        if clients
            .get(&client.identity)
            .is_some_and(|c| c.connection_id == client.connection_id)
        {
            clients.remove(&client.identity);
        }
        drop(clients);
        self.bump();
    }

    /// The current connection of `identity`.
    pub fn get(&self, identity: &Identity) -> Option<Arc<ClientHandle>> {
        lock(&self.clients).get(identity).cloned()
    }

    /// Number of connected clients.
    pub fn len(&self) -> usize {
        lock(&self.clients).len()
    }

    /// True when nobody is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every connected client.
    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        lock(&self.clients).values().cloned().collect()
    }

    /// A receiver that changes whenever a client connects, subscribes or leaves.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(s: &Sessions, clean: bool) -> (Arc<ClientHandle>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(4);
        let h = s.connect(
            Identity::module("e", "m"),
            ClientKind::Module("m".into()),
            Arc::new(tx),
            clean,
        );
        (h, rx)
    }

    #[test]
    fn a_second_connection_kicks_the_first_and_only_the_current_one_is_removed() {
        let s = Sessions::default();
        let (first, _rx1) = connect(&s, false);
        let (second, _rx2) = connect(&s, false);
        assert!(first.closed.is_cancelled());
        s.disconnect(&first);
        assert_eq!(
            s.get(&second.identity).map(|c| c.connection_id),
            Some(second.connection_id)
        );
        s.disconnect(&second);
        assert!(s.get(&second.identity).is_none());
    }

    #[test]
    fn subscriptions_survive_a_reconnect_without_clean_session_only() {
        let s = Sessions::default();
        let (first, _rx) = connect(&s, false);
        s.subscribe(&first, Subscription::ModuleInputs);
        s.disconnect(&first);
        let (again, _rx) = connect(&s, false);
        assert!(again.is_subscribed(Subscription::ModuleInputs));
        let (clean, _rx) = connect(&s, true);
        assert!(!clean.is_subscribed(Subscription::ModuleInputs));
    }

    #[tokio::test]
    async fn delivery_reaches_the_broker_side_with_an_ack_slot() {
        let s = Sessions::default();
        let (h, mut rx) = connect(&s, true);
        let ack = h
            .deliver("t".into(), Bytes::from_static(b"x"))
            .await
            .unwrap();
        let out = rx.recv().await.unwrap();
        out.ack.unwrap().send(()).unwrap();
        assert!(ack.await.is_ok());
        drop(rx);
        assert_eq!(h.send("t".into(), Bytes::new()).await, Err(Gone));
    }
}
