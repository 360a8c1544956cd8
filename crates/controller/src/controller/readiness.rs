//! Whether every reflector cache holds its first full list, for `/readyz` and for reconciles.
//!
//! kube-runtime's `Store::wait_until_ready` sits on a one-shot channel that remembers only the
//! last task that polled it: when several tasks wait at once (the controller's own runner, the
//! readiness probe, concurrent reconciles), the earlier waiters are never woken, so `/readyz`
//! stayed 503 on an idle namespace until something else happened to poll it again. This tracker
//! is fed by the watch streams themselves (their `InitDone` after the list is in the store) and
//! wakes every waiter.

use std::sync::Arc;

use tokio::sync::watch;

/// One bit per cache; ready when every bit is set.
#[derive(Debug, Clone)]
pub struct CacheReadiness {
    filled: Arc<watch::Sender<u64>>,
    all: u64,
}

impl CacheReadiness {
    /// Tracks `caches` caches (at most 64), none filled yet.
    pub fn new(caches: u32) -> Self {
        let all = if caches >= 64 {
            u64::MAX
        } else {
            (1u64 << caches) - 1
        };
        Self {
            filled: Arc::new(watch::Sender::new(0)),
            all,
        }
    }

    /// Marks cache `index` as holding its first full list.
    pub fn mark_filled(&self, index: u32) {
        self.filled
            .send_modify(|filled| *filled |= 1u64 << index.min(63));
    }

    /// Whether every cache holds its first full list.
    pub fn is_ready(&self) -> bool {
        *self.filled.borrow() & self.all == self.all
    }

    /// Waits until every cache holds its first full list.
    pub async fn wait(&self) {
        let mut rx = self.filled.subscribe();
        let all = self.all;
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|filled| filled & all == all).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiter_wakes_when_the_last_cache_fills() {
        let readiness = CacheReadiness::new(3);
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let r = readiness.clone();
                tokio::spawn(async move { r.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        readiness.mark_filled(0);
        readiness.mark_filled(2);
        assert!(!readiness.is_ready());
        readiness.mark_filled(2);
        readiness.mark_filled(1);
        assert!(readiness.is_ready());
        for waiter in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("a waiter was not woken")
                .unwrap();
        }
    }

    #[tokio::test]
    async fn waiting_after_the_caches_filled_returns_at_once() {
        let readiness = CacheReadiness::new(1);
        readiness.mark_filled(0);
        readiness.wait().await;
        assert!(readiness.is_ready());
    }
}
