//! The connection task: one loop that batches every waiting request into one write and handles
//! every packet of one read.

use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    Packet, Publish, SubAck, Subscribe, SubscribeFilter, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::sync::{mpsc, oneshot};

use super::slots::Slots;
use super::{ClientError, ClientOptions, Request};
use crate::transport::Transport;
use crate::wire;

/// Bytes encoded before a write goes out even though more requests wait.
const WRITE_BATCH: usize = 64 * 1024;
/// A write buffer that grew past this (a large message) is given back after the write.
const KEEP_WRITE_BUFFER: usize = 256 * 1024;

/// Who waits for a packet id's acknowledgement.
#[derive(Debug)]
enum Waiter {
    Publish(oneshot::Sender<()>),
    Subscribe(oneshot::Sender<Vec<Option<QoS>>>),
}

/// A running client connection.
pub(super) struct Session<T> {
    transport: T,
    rbuf: BytesMut,
    wbuf: BytesMut,
    slots: Slots<Waiter>,
    requests: mpsc::Receiver<Request>,
    incoming: mpsc::Sender<Result<Publish, ClientError>>,
    max_packet: usize,
    keep_alive: Duration,
    ping_outstanding: bool,
    disconnecting: bool,
}

impl<T: Transport> Session<T> {
    pub(super) fn new(
        transport: T,
        rbuf: BytesMut,
        options: &ClientOptions,
        requests: mpsc::Receiver<Request>,
        incoming: mpsc::Sender<Result<Publish, ClientError>>,
    ) -> Self {
        Self {
            transport,
            rbuf,
            wbuf: BytesMut::with_capacity(4 * 1024),
            slots: Slots::new(options.inflight),
            requests,
            incoming,
            max_packet: options.max_packet,
            keep_alive: options.keep_alive,
            ping_outstanding: false,
            disconnecting: false,
        }
    }

    /// Runs until the connection ends, then reports why (waiters of unacknowledged packets see
    /// their senders dropped).
    pub(super) async fn run(mut self) {
        let ended = match self.serve().await {
            Err(e) => e,
            Ok(never) => match never {},
        };
        if ended != ClientError::Disconnected {
            tracing::debug!(error = %ended, "MQTT client connection ended");
        }
        let _ = self.transport.shutdown().await;
        let _ = self.incoming.send(Err(ended)).await;
    }

    async fn serve(&mut self) -> Result<std::convert::Infallible, ClientError> {
        // Packets that arrived with the CONNACK.
        self.read_packets().await?;
        let pings = !self.keep_alive.is_zero();
        let period = if pings {
            self.keep_alive
        } else {
            Duration::from_secs(3600)
        };
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        // After a long stall (a slow write), ticks must not burst: a second tick right after
        // the first would call the answer to its PINGREQ missing.
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.flush().await?;
            if self.disconnecting {
                return Err(ClientError::Disconnected);
            }
            tokio::select! {
                biased;
                read = self.transport.read(&mut self.rbuf) => {
                    if read? == 0 {
                        return Err(ClientError::Closed);
                    }
                    self.read_packets().await?;
                }
                request = self.requests.recv(), if self.slots.has_room() => match request {
                    Some(request) => self.take_requests(request),
                    None => {
                        // Every handle is gone: nobody can send or wait any more.
                        self.encode(Request::Disconnect);
                    }
                },
                _ = ping.tick(), if pings => {
                    if self.ping_outstanding {
                        return Err(ClientError::KeepAliveTimeout(self.keep_alive));
                    }
                    self.ping_outstanding = true;
                    self.wbuf.extend_from_slice(&[0xC0, 0x00]);
                }
            }
        }
    }

    /// Encodes `first` and every request already waiting, up to the window and a write batch.
    fn take_requests(&mut self, first: Request) {
        self.encode(first);
        while !self.disconnecting && self.slots.has_room() && self.wbuf.len() < WRITE_BATCH {
            match self.requests.try_recv() {
                Ok(request) => self.encode(request),
                Err(_) => break,
            }
        }
    }

    fn encode(&mut self, request: Request) {
        match request {
            Request::Publish {
                topic,
                payload,
                ack,
            } => {
                let (qos, pkid) = match ack {
                    Some(tx) => match self.slots.take(Waiter::Publish(tx)) {
                        Some(pkid) => (QoS::AtLeastOnce, pkid),
                        // Only called with room; a dropped sender tells the caller otherwise.
                        None => return,
                    },
                    None => (QoS::AtMostOnce, 0),
                };
                wire::write_publish(&mut self.wbuf, &topic, &payload, qos, pkid, false);
            }
            Request::Subscribe { filters, granted } => {
                if filters.is_empty() {
                    // SUBSCRIBE must carry a filter; nothing to ask for.
                    let _ = granted.send(Vec::new());
                    return;
                }
                let Some(pkid) = self.slots.take(Waiter::Subscribe(granted)) else {
                    return;
                };
                let filters = filters
                    .into_iter()
                    .map(|(path, qos)| SubscribeFilter::new(path, qos));
                let mut subscribe = Subscribe::new_many(filters);
                subscribe.pkid = pkid;
                if subscribe.write(&mut self.wbuf).is_err() {
                    // Unencodable (a filter longer than 64 KiB): dropping the waiter fails the call.
                    self.slots.complete(pkid);
                }
            }
            Request::Disconnect => {
                self.wbuf.extend_from_slice(&[0xE0, 0x00]);
                self.disconnecting = true;
            }
        }
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        self.transport.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        if self.wbuf.capacity() > KEEP_WRITE_BUFFER {
            self.wbuf = BytesMut::with_capacity(4 * 1024);
        }
        Ok(())
    }

    /// Handles every complete packet in the read buffer.
    async fn read_packets(&mut self) -> Result<(), ClientError> {
        loop {
            let packet = match Packet::read(&mut self.rbuf, self.max_packet) {
                Ok(p) => p,
                Err(CodecError::InsufficientBytes(_)) => return Ok(()),
                Err(e) => return Err(ClientError::from_codec(e)),
            };
            self.on_packet(packet).await?;
        }
    }

    async fn on_packet(&mut self, packet: Packet) -> Result<(), ClientError> {
        match packet {
            Packet::PubAck(ack) => {
                if let Some(Waiter::Publish(tx)) = self.slots.complete(ack.pkid) {
                    let _ = tx.send(());
                }
            }
            Packet::SubAck(ack) => self.on_suback(ack),
            Packet::Publish(publish) => self.on_publish(publish).await?,
            Packet::PingResp => self.ping_outstanding = false,
            Packet::UnsubAck(_) => {}
            Packet::ConnAck(_) => return Err(ClientError::Protocol("a second CONNACK")),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                return Err(ClientError::Protocol("QoS 2 was never asked for"));
            }
            Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq
            | Packet::Disconnect => {
                return Err(ClientError::Protocol("a packet only clients send"));
            }
        }
        Ok(())
    }

    fn on_suback(&mut self, ack: SubAck) {
        if let Some(Waiter::Subscribe(tx)) = self.slots.complete(ack.pkid) {
            let granted = ack
                .return_codes
                .into_iter()
                .map(|c| match c {
                    SubscribeReasonCode::Success(qos) => Some(qos),
                    SubscribeReasonCode::Failure => None,
                })
                .collect();
            let _ = tx.send(granted);
        }
    }

    async fn on_publish(&mut self, publish: Publish) -> Result<(), ClientError> {
        let pkid = publish.pkid;
        let qos = publish.qos;
        if qos == QoS::ExactlyOnce {
            return Err(ClientError::Protocol("QoS 2 was never asked for"));
        }
        // Waits while the application is behind: reading stops, and so does the server.
        if self.incoming.send(Ok(publish)).await.is_err() {
            return Err(ClientError::Disconnected);
        }
        if qos == QoS::AtLeastOnce {
            wire::write_ack(&mut self.wbuf, 0x40, pkid);
        }
        Ok(())
    }
}
