//! Live device connections: one per identity (a new one closes the old), presence for twins
//! and identities, and the [`DeviceLink`] the hub uses to push to a connected client.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::storage::C2dMessage;
use crate::twin::Presence;

/// What the hub can push to a connected device or module; implemented by the MQTT head.
pub trait DeviceLink: Send + Sync + fmt::Debug {
    /// Pushes a desired-properties patch (`$version` included) if the client subscribed to them.
    fn send_desired_patch(&self, patch: &Value);
    /// Sends a direct-method request; false when the client is not subscribed to methods.
    fn send_method_request(&self, method: &str, rid: &str, payload: &[u8]) -> bool;
    /// Sends a C2D message at QoS 1; the receiver yields once the client acknowledged it.
    /// `None` when the client is not subscribed to C2D.
    fn send_c2d(&self, message: &C2dMessage) -> Option<oneshot::Receiver<()>>;
    /// Closes the connection (identity deleted, disabled, or replaced).
    fn close(&self, reason: &str);
}

/// Key of an identity: `device` or `device/module`.
pub fn identity_key(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("{device_id}/{m}"),
        None => device_id.to_owned(),
    }
}

/// Identifies one connection of an identity, so a late disconnect of a replaced connection does
/// not mark the newer one offline.
pub type ConnectionId = u64;

#[derive(Debug)]
struct Entry {
    id: ConnectionId,
    link: std::sync::Arc<dyn DeviceLink>,
}

#[derive(Debug, Default)]
struct State {
    live: HashMap<String, Entry>,
    presence: HashMap<String, Presence>,
}

/// The table of live connections.
#[derive(Debug, Default)]
pub struct Connections {
    state: Mutex<State>,
    next_id: AtomicU64,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new connection for `key`, closing any older one; returns its id.
    pub fn connect(
        &self,
        key: &str,
        link: std::sync::Arc<dyn DeviceLink>,
        now: &str,
    ) -> ConnectionId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let old = {
            let mut st = self.lock();
            let p = st.presence.entry(key.to_owned()).or_default();
            p.connected = true;
            p.state_updated = Some(now.to_owned());
            p.last_activity = Some(now.to_owned());
            st.live.insert(key.to_owned(), Entry { id, link })
        };
        if let Some(old) = old {
            old.link
                .close("replaced by a newer connection of the same identity");
        }
        id
    }

    /// Forgets connection `id` of `key` (if it is still the current one).
    pub fn disconnect(&self, key: &str, id: ConnectionId, now: &str) -> bool {
        let mut st = self.lock();
        if st.live.get(key).is_some_and(|e| e.id == id) {
            st.live.remove(key);
            let p = st.presence.entry(key.to_owned()).or_default();
            p.connected = false;
            p.state_updated = Some(now.to_owned());
            return true;
        }
        false
    }

    /// Records activity (a message or operation) of `key`.
    pub fn touch(&self, key: &str, now: &str) {
        if let Some(p) = self.lock().presence.get_mut(key) {
            p.last_activity = Some(now.to_owned());
        }
    }

    /// The link of a connected identity.
    pub fn link(&self, key: &str) -> Option<std::sync::Arc<dyn DeviceLink>> {
        self.lock().live.get(key).map(|e| e.link.clone())
    }

    /// Presence of an identity (disconnected and never seen when unknown).
    pub fn presence(&self, key: &str) -> Presence {
        self.lock().presence.get(key).cloned().unwrap_or_default()
    }

    /// Closes every connection of a device and its modules.
    pub fn close_device(&self, device_id: &str, reason: &str) {
        let prefix = format!("{device_id}/");
        let links: Vec<_> = self
            .lock()
            .live
            .iter()
            .filter(|(k, _)| k.as_str() == device_id || k.starts_with(&prefix))
            .map(|(_, e)| e.link.clone())
            .collect();
        for l in links {
            l.close(reason);
        }
    }

    /// Closes the connection of one identity.
    pub fn close(&self, key: &str, reason: &str) {
        if let Some(l) = self.link(key) {
            l.close(reason);
        }
    }

    /// Number of live connections.
    pub fn count(&self) -> usize {
        self.lock().live.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    #[derive(Debug, Default)]
    struct FakeLink {
        closed: AtomicBool,
    }

    impl DeviceLink for FakeLink {
        fn send_desired_patch(&self, _: &Value) {}
        fn send_method_request(&self, _: &str, _: &str, _: &[u8]) -> bool {
            true
        }
        fn send_c2d(&self, _: &C2dMessage) -> Option<oneshot::Receiver<()>> {
            None
        }
        fn close(&self, _: &str) {
            self.closed.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_new_connection_closes_the_old_one_and_its_late_disconnect_is_ignored() {
        let c = Connections::default();
        let first = Arc::new(FakeLink::default());
        let a = c.connect("d", first.clone(), "t1");
        let b = c.connect("d", Arc::new(FakeLink::default()), "t2");
        assert!(first.closed.load(Ordering::SeqCst));
        assert!(
            !c.disconnect("d", a, "t3"),
            "the replaced connection does not take the new one down"
        );
        assert!(c.presence("d").connected);
        assert!(c.disconnect("d", b, "t4"));
        let p = c.presence("d");
        assert!(!p.connected);
        assert_eq!(p.state_updated.as_deref(), Some("t4"));
    }

    #[test]
    fn closing_a_device_closes_its_modules_too() {
        let c = Connections::default();
        let m = Arc::new(FakeLink::default());
        let other = Arc::new(FakeLink::default());
        c.connect("d/m", m.clone(), "t");
        c.connect("dx", other.clone(), "t");
        c.close_device("d", "deleted");
        assert!(m.closed.load(Ordering::SeqCst));
        assert!(!other.closed.load(Ordering::SeqCst));
    }
}
