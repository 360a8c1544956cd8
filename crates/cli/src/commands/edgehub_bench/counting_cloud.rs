//! A stand-in cloud for the replay figure: an MQTT/TLS server (our broker core) that accepts
//! every device, acknowledges every PUBLISH at once and counts them. It forwards nothing, so the
//! figure is how fast the edge hub drains, not how fast a broker forwards to a subscriber.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use ironedge_mqtt::{
    Authenticated, ConnectRequest, ConnectReturnCode, ConnectionHandle, Hooks, MqttConfig,
    MqttServer, Publish, PublishAck, QoS,
};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Counts what arrives.
#[derive(Debug, Default)]
struct Counter {
    received: AtomicUsize,
    /// When the first and the latest message arrived.
    span: Mutex<Option<(Instant, Instant)>>,
    arrived: Notify,
}

impl Hooks for Counter {
    type Identity = String;

    async fn authenticate(
        &self,
        request: &ConnectRequest,
    ) -> Result<Authenticated<String>, ConnectReturnCode> {
        Ok(Authenticated {
            identity: request.client_id.clone(),
            expires_at: None,
        })
    }

    fn subscribe(&self, _: &ConnectionHandle<String>, _: &str, qos: QoS) -> Option<QoS> {
        Some(qos)
    }

    fn publish(
        &self,
        _: &ConnectionHandle<String>,
        _: Publish,
        ack: PublishAck,
    ) -> Result<(), String> {
        ack.accept();
        let now = Instant::now();
        {
            let mut span = self.span.lock().unwrap_or_else(|p| p.into_inner());
            let first = span.map_or(now, |(first, _)| first);
            *span = Some((first, now));
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        self.arrived.notify_one();
        Ok(())
    }
}

/// The running stand-in cloud; stops on drop.
pub(super) struct CountingCloud {
    counter: Arc<Counter>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingCloud {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CountingCloud {
    /// Serves MQTT over TLS on `listener`.
    pub(super) fn start(listener: TcpListener, tls: Arc<rustls::ServerConfig>) -> Self {
        let counter = Arc::new(Counter::default());
        let server = MqttServer::new(MqttConfig::default(), counter.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = server
                .serve(listener, Some(tls), std::future::pending())
                .await
            {
                tracing::error!(error = %e, "stand-in cloud stopped");
            }
        });
        Self { counter, task }
    }

    /// Waits until `n` messages arrived or none came for `stall`; the rate between the first and
    /// the last message, and how many arrived.
    pub(super) async fn count(&self, n: usize, stall: Duration) -> (f64, usize) {
        loop {
            let arrived = self.counter.arrived.notified();
            if self.counter.received.load(Ordering::Relaxed) >= n {
                break;
            }
            if tokio::time::timeout(stall, arrived).await.is_err() {
                break;
            }
        }
        let got = self.counter.received.load(Ordering::Relaxed);
        let span = *self.counter.span.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = span.map_or(Duration::ZERO, |(first, last)| last - first);
        (got as f64 / elapsed.as_secs_f64().max(1e-9), got)
    }
}
