//! Telemetry (device-to-cloud) storage and read-out, and cloud-to-device messages.
//!
//! Telemetry is written by one task in batches: each accepted message waits for the
//! transaction holding it to commit before the device gets its PUBACK, and many connections
//! share one commit. Readers follow the newest `seq` through a `watch` channel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Hub, now_iso, now_ms};
use crate::error::{Error, Result};
use crate::metrics::HubMetrics;
use crate::storage::{
    C2dMessage, C2dState, Storage, StorageError, TelemetryFilter, TelemetryRecord,
};

type Ack = oneshot::Sender<Result<u64, String>>;

/// The telemetry writer's inbox.
#[derive(Debug)]
pub(crate) struct TelemetrySink {
    tx: mpsc::Sender<(TelemetryRecord, Ack)>,
    last_seq: watch::Receiver<u64>,
}

impl TelemetrySink {
    /// Starts the writer task.
    pub(crate) fn start(
        store: Arc<dyn Storage>,
        batch: usize,
        last_seq: watch::Sender<u64>,
        metrics: Arc<HubMetrics>,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(batch.max(1) * 8);
        let sink = Self {
            tx,
            last_seq: last_seq.subscribe(),
        };
        let task = tokio::spawn(write_loop(
            store,
            rx,
            batch.max(1),
            last_seq,
            metrics,
            shutdown,
        ));
        (sink, task)
    }
}

async fn write_loop(
    store: Arc<dyn Storage>,
    mut rx: mpsc::Receiver<(TelemetryRecord, Ack)>,
    batch: usize,
    last_seq: watch::Sender<u64>,
    metrics: Arc<HubMetrics>,
    shutdown: CancellationToken,
) {
    let mut buf = Vec::with_capacity(batch);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut buf, batch) => n,
            () = shutdown.cancelled() => {
                // Flush what was accepted, then stop.
                rx.close();
                rx.recv_many(&mut buf, usize::MAX).await
            }
        };
        if n == 0 {
            return;
        }
        let (mut records, acks): (Vec<_>, Vec<_>) = buf.drain(..).unzip();
        let store = store.clone();
        let res = tokio::task::spawn_blocking(move || {
            store.append_telemetry(&mut records).map(|()| records)
        })
        .await;
        match res {
            Ok(Ok(records)) => {
                metrics.messages_received.inc_by(records.len() as u64);
                if let Some(last) = records.last() {
                    last_seq.send_replace(last.seq);
                }
                for (r, ack) in records.iter().zip(acks) {
                    let _ = ack.send(Ok(r.seq));
                }
            }
            Ok(Err(e)) => fail_all(acks, &e.to_string()),
            Err(e) => fail_all(acks, &e.to_string()),
        }
        if shutdown.is_cancelled() && rx.is_closed() && rx.is_empty() {
            return;
        }
    }
}

fn fail_all(acks: Vec<Ack>, reason: &str) {
    tracing::error!(
        error = reason,
        count = acks.len(),
        "storing telemetry failed"
    );
    for ack in acks {
        let _ = ack.send(Err(reason.to_owned()));
    }
}

/// The JSON form of a stored message (telemetry read-out, `reference/iot-hub-protocols.md` §6).
pub fn telemetry_json(m: &TelemetryRecord) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "seq": m.seq,
        "enqueuedTimeUtc": crate::time::iso(crate::time::from_millis(m.enqueued_ms)),
        "deviceId": m.device_id,
        "moduleId": m.module_id,
        "messageId": m.message_id,
        "correlationId": m.correlation_id,
        "userId": m.user_id,
        "contentType": m.content_type,
        "contentEncoding": m.content_encoding,
        "outputName": m.output_name,
        "systemProperties": m.system_properties,
        "properties": m.properties,
        "bodyBase64": base64::engine::general_purpose::STANDARD.encode(&m.body),
    })
}

/// The JSON form of a C2D message's status (body left out).
pub fn c2d_json(m: &C2dMessage) -> serde_json::Value {
    serde_json::json!({
        "deviceId": m.device_id,
        "messageId": m.message_id,
        "correlationId": m.correlation_id,
        "ack": m.ack,
        "state": m.state,
        "enqueuedTimeUtc": crate::time::iso(crate::time::from_millis(m.enqueued_ms)),
        "expiryTimeUtc": crate::time::iso(crate::time::from_millis(m.expiry_ms)),
        "updatedTimeUtc": crate::time::iso(crate::time::from_millis(m.updated_ms)),
    })
}

/// A C2D message to send (from the REST extension).
#[derive(Debug, Clone, Default)]
pub struct C2dRequest {
    /// `iothub-messageid` (generated when absent).
    pub message_id: Option<String>,
    /// `iothub-correlationid`.
    pub correlation_id: Option<String>,
    /// `iothub-ack`.
    pub ack: Option<String>,
    /// Content type.
    pub content_type: Option<String>,
    /// Content encoding.
    pub content_encoding: Option<String>,
    /// `iothub-app-*` properties.
    pub properties: BTreeMap<String, String>,
    /// Time to live (default from settings).
    pub ttl: Option<Duration>,
    /// Body.
    pub body: Vec<u8>,
}

impl Hub {
    /// Stores one telemetry message; resolves with its `seq` once it is durable.
    pub async fn ingest_telemetry(&self, mut record: TelemetryRecord) -> Result<u64> {
        record.enqueued_ms = now_ms();
        let (tx, rx) = oneshot::channel();
        self.inner
            .telemetry
            .tx
            .send((record, tx))
            .await
            .map_err(|_| Error::Internal("the hub is shutting down".into()))?;
        rx.await
            .map_err(|_| Error::Internal("the telemetry writer stopped".into()))?
            .map_err(Error::Internal)
    }

    /// A receiver of the newest telemetry `seq`.
    pub fn telemetry_watch(&self) -> watch::Receiver<u64> {
        self.inner.telemetry.last_seq.clone()
    }

    /// Reads telemetry; waits up to `wait` for the first match when there is none yet.
    pub async fn read_telemetry(
        &self,
        filter: TelemetryFilter,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<TelemetryRecord>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut seq = self.telemetry_watch();
        loop {
            seq.borrow_and_update();
            let f = filter.clone();
            let found = self.run(move |s| Ok(s.read_telemetry(&f, max)?)).await?;
            if !found.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(found);
            }
            tokio::select! {
                changed = seq.changed() => if changed.is_err() { return Ok(found) },
                () = tokio::time::sleep_until(deadline) => return Ok(found),
                () = self.inner.shutdown.cancelled() => return Ok(found),
            }
        }
    }

    /// True once the hub is shutting down (streams end).
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Queues a C2D message and delivers it now when the device is connected.
    pub async fn send_c2d(&self, device_id: String, req: C2dRequest) -> Result<C2dMessage> {
        let now = now_ms();
        let ttl = req.ttl.unwrap_or(self.inner.settings.c2d_ttl);
        let limit = self.inner.settings.c2d_max_queue;
        let mut msg = C2dMessage {
            seq: 0,
            device_id: device_id.clone(),
            message_id: req
                .message_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            correlation_id: req.correlation_id,
            content_type: req.content_type,
            content_encoding: req.content_encoding,
            ack: req.ack,
            properties: req.properties,
            enqueued_ms: now,
            expiry_ms: now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
            state: C2dState::Queued,
            updated_ms: now,
            body: req.body,
        };
        let msg = self
            .run(move |s| {
                if s.get_device(&msg.device_id)?.is_none() {
                    return Err(Error::DeviceNotFound(msg.device_id.clone()));
                }
                if s.pending_c2d(&msg.device_id)?.len() >= limit {
                    return Err(Error::QueueFull {
                        device: msg.device_id.clone(),
                        limit,
                    });
                }
                match s.enqueue_c2d(&mut msg) {
                    Err(StorageError::Conflict(_)) => Err(Error::BadRequest(format!(
                        "message id {:?} is already used for device {:?}",
                        msg.message_id, msg.device_id
                    ))),
                    other => other.map(|()| msg).map_err(Error::from),
                }
            })
            .await?;
        self.deliver_c2d(&device_id).await?;
        Ok(msg)
    }

    /// Sends every pending C2D message of a connected, subscribed device.
    pub async fn deliver_c2d(&self, device_id: &str) -> Result<()> {
        let Some(link) = self.connections().link(device_id) else {
            return Ok(());
        };
        let d = device_id.to_owned();
        let pending = self.run(move |s| Ok(s.pending_c2d(&d)?)).await?;
        let now = now_ms();
        // Expired messages wait for the retention pass to mark them; they are never sent.
        for msg in pending.into_iter().filter(|m| m.expiry_ms > now) {
            let key = (msg.device_id.clone(), msg.message_id.clone());
            if !self
                .inner
                .c2d_inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key.clone())
            {
                continue;
            }
            let Some(acked) = link.send_c2d(&msg) else {
                self.c2d_done(&key);
                return Ok(());
            };
            self.metrics().sent("c2d");
            let (d, m) = key.clone();
            self.run(move |s| Ok(s.set_c2d_state(&d, &m, C2dState::Delivered, now_ms())?))
                .await?;
            let hub = self.clone();
            tokio::spawn(async move {
                let completed = acked.await.is_ok();
                let (d, m) = key.clone();
                if completed {
                    let res = hub
                        .run(move |s| Ok(s.set_c2d_state(&d, &m, C2dState::Completed, now_ms())?))
                        .await;
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "recording C2D completion failed");
                    }
                    let _ = hub.inner.c2d_completed.send(key.clone());
                    hub.connections().touch(&key.0, &now_iso());
                }
                hub.c2d_done(&key);
            });
        }
        Ok(())
    }

    fn c2d_done(&self, key: &(String, String)) {
        self.inner
            .c2d_inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }

    /// Completions of C2D messages as they happen.
    pub fn c2d_completions(&self) -> tokio::sync::broadcast::Receiver<(String, String)> {
        self.inner.c2d_completed.subscribe()
    }

    /// One C2D message's status.
    pub async fn c2d_status(&self, device_id: String, message_id: String) -> Result<C2dMessage> {
        self.run(move |s| {
            s.get_c2d(&device_id, &message_id)?
                .ok_or(Error::MessageNotFound {
                    device: device_id,
                    message_id,
                })
        })
        .await
    }

    /// Completed and expired C2D messages after `after_ms`.
    pub async fn c2d_feedback(&self, after_ms: i64, max: usize) -> Result<Vec<C2dMessage>> {
        self.run(move |s| Ok(s.c2d_feedback(after_ms, max)?)).await
    }
}
