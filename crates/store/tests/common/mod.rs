//! Fixtures shared by the store's integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use ironedge_store::{Config, ManualClock, NewMessage, PeekOptions, Store, Target, Timestamp};
use tempfile::TempDir;

/// A store in a fresh temporary directory with a manual clock.
pub struct TestStore {
    pub dir: TempDir,
    pub clock: ManualClock,
    pub config: Config,
    pub store: Option<Store>,
}

impl TestStore {
    pub fn new(config: Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_millis(1_700_000_000_000));
        let store = Store::open(
            dir.path().join("store.redb"),
            config.clone(),
            Arc::new(clock.clone()),
        )
        .unwrap();
        Self {
            dir,
            clock,
            config,
            store: Some(store),
        }
    }

    pub fn with_endpoints(config: Config, endpoints: &[&str]) -> Self {
        let mut t = Self::new(config);
        for e in endpoints {
            assert!(t.store().add_endpoint(e).unwrap());
        }
        t
    }

    pub fn store(&mut self) -> &mut Store {
        self.store.as_mut().unwrap()
    }

    /// Closes and reopens the file, as after a restart.
    pub fn reopen(&mut self) {
        drop(self.store.take());
        let store = Store::open(
            self.dir.path().join("store.redb"),
            self.config.clone(),
            Arc::new(self.clock.clone()),
        )
        .unwrap();
        store.verify().unwrap();
        self.store = Some(store);
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Appends `payload` to `targets` and returns its seq.
    pub fn append(&mut self, payload: &str, targets: Vec<Target>) -> u64 {
        self.store()
            .append(&NewMessage::new(payload.as_bytes().to_vec(), targets))
            .unwrap()
            .seq
    }

    /// Every live payload of `endpoint` in delivery order, as strings.
    pub fn payloads(&mut self, endpoint: &str) -> Vec<String> {
        self.store()
            .reader()
            .peek(endpoint, PeekOptions::head(usize::MAX))
            .unwrap()
            .deliveries
            .into_iter()
            .map(|d| String::from_utf8(d.payload.to_vec()).unwrap())
            .collect()
    }
}

/// A target at `priority` that never expires.
pub fn at(endpoint: &str, priority: u32) -> Target {
    Target::new(endpoint).with_priority(priority)
}
