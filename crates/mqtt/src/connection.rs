//! One client connection: the thin I/O shell around [`SessionState`]. It reads and decodes
//! packets (rumqttc v4 codec), calls the hooks, and batches everything it has to send into one
//! buffer that is written once per loop turn.

use crate::DisconnectReason;
use crate::handle::{ConnectionHandle, Control, OutboundMessage, PublishAck};
use crate::hooks::{ConnectRequest, Hooks, TransportKind};
use crate::server::Shared;
use crate::session::{PersistedSession, SessionState};
use crate::transport::Transport;
use crate::wire::{write_ack, write_publish};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, SubAck, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{Error as CodecError, Protocol, QoS};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Flush the write buffer early once it holds this much.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Read and write buffers larger than this are released once empty (memory per idle connection).
const IDLE_BUFFER_BYTES: usize = 4 * 1024;
/// Outbound messages taken per loop turn before the buffer is flushed.
const OUTBOUND_BATCH: usize = 64;

/// Everything about the socket that the hooks may want to see.
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    pub(crate) certificates: Option<Vec<CertificateDer<'static>>>,
    pub(crate) kind: TransportKind,
}

/// Runs a connection to completion.
pub(crate) async fn run<H: Hooks, T: Transport>(
    shared: Arc<Shared<H>>,
    transport: T,
    peer: Peer,
    shutdown: CancellationToken,
) {
    // The CONNECT phase (reading it, authenticating, perhaps asking the cloud) runs in its own
    // allocation, freed before serving: a task's future is as large as its largest state, and
    // an idle connection should hold only what serving needs.
    let Some((conn, span)) = Box::pin(open(shared, transport, peer, shutdown)).await else {
        return;
    };
    tracing::Instrument::instrument(conn.serve(), span).await;
}

/// Reads and authenticates the CONNECT and answers it; the connection to serve, if accepted.
async fn open<H: Hooks, T: Transport>(
    shared: Arc<Shared<H>>,
    mut transport: T,
    peer: Peer,
    shutdown: CancellationToken,
) -> Option<(Connection<H, T>, tracing::Span)> {
    shared.metrics.connections_total.inc();
    let mut rbuf = BytesMut::new();
    let connect = tokio::select! {
        r = tokio::time::timeout(shared.config.connect_timeout, read_connect(&mut transport, &mut rbuf, shared.config.max_packet_size)) => r,
        () = shutdown.cancelled() => return None,
    };
    let connect = match connect {
        Ok(Ok(c)) => c,
        Ok(Err(ConnectFailure::Refuse(code))) => {
            shared.metrics.protocol_errors_total.inc();
            let _ = write_connack(&mut transport, code, false).await;
            return None;
        }
        Ok(Err(ConnectFailure::Close(reason))) => {
            shared.metrics.protocol_errors_total.inc();
            debug!(peer = %peer.addr, %reason, "connection closed before CONNECT");
            return None;
        }
        Err(_) => {
            debug!(peer = %peer.addr, "no CONNECT within {:?}", shared.config.connect_timeout);
            return None;
        }
    };
    let request = ConnectRequest {
        client_id: connect.client_id.clone(),
        username: connect
            .login
            .as_ref()
            .map(|l| l.username.clone())
            .filter(|u| !u.is_empty()),
        password: connect
            .login
            .as_ref()
            .map(|l| l.password.clone())
            .filter(|p| !p.is_empty()),
        clean_session: connect.clean_session,
        keep_alive: connect.keep_alive,
        peer: peer.addr,
        client_certificates: peer.certificates,
        transport: peer.kind,
    };
    if request.client_id.is_empty() && !request.clean_session {
        let _ = write_connack(&mut transport, ConnectReturnCode::BadClientId, false).await;
        return None;
    }
    let auth = match shared.hooks.authenticate(&request).await {
        Ok(a) => a,
        Err(code) => {
            shared.metrics.auth_failures_total.inc();
            info!(peer = %peer.addr, client_id = %request.client_id, ?code, "connection refused");
            let _ = write_connack(&mut transport, code, false).await;
            return None;
        }
    };
    let span = tracing::info_span!("mqtt", identity = %auth.identity, peer = %peer.addr);
    let will = connect.last_will.map(|w| {
        // QoS 2 is not supported anywhere else either; a Will is delivered at most at QoS 1.
        let qos = match w.qos {
            QoS::AtMostOnce => QoS::AtMostOnce,
            QoS::AtLeastOnce | QoS::ExactlyOnce => QoS::AtLeastOnce,
        };
        let mut p = rumqttc::mqttbytes::v4::Publish::from_bytes(w.topic, qos, w.message);
        p.retain = w.retain;
        p
    });
    let mut conn = Connection::establish(shared, request, auth, transport, rbuf, shutdown).await?;
    conn.will = will;
    Some((conn, span))
}

enum ConnectFailure {
    Refuse(ConnectReturnCode),
    Close(DisconnectReason),
}

async fn read_connect<T: Transport>(
    transport: &mut T,
    rbuf: &mut BytesMut,
    max: usize,
) -> Result<Connect, ConnectFailure> {
    loop {
        match Packet::read(rbuf, max) {
            Ok(Packet::Connect(c)) if c.protocol == Protocol::V4 => return Ok(c),
            Ok(Packet::Connect(_)) | Err(CodecError::InvalidProtocolLevel(_)) => {
                return Err(ConnectFailure::Refuse(
                    ConnectReturnCode::RefusedProtocolVersion,
                ));
            }
            Ok(_) => {
                return Err(ConnectFailure::Close(DisconnectReason::ProtocolViolation(
                    "the first packet must be CONNECT",
                )));
            }
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(e) => return Err(ConnectFailure::Close(codec_failure(e, max))),
        }
        match transport.read(rbuf).await {
            Ok(0) => return Err(ConnectFailure::Close(DisconnectReason::ConnectionLost)),
            Ok(_) => {}
            Err(e) => return Err(ConnectFailure::Close(DisconnectReason::Io(e.to_string()))),
        }
    }
}

fn codec_failure(e: CodecError, max: usize) -> DisconnectReason {
    match e {
        CodecError::PayloadSizeLimitExceeded(size) => {
            DisconnectReason::PacketTooLarge { size, max }
        }
        other => DisconnectReason::Malformed(other.to_string()),
    }
}

async fn write_connack<T: Transport>(
    transport: &mut T,
    code: ConnectReturnCode,
    session_present: bool,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(4);
    let _ = ConnAck::new(code, session_present).write(&mut buf);
    transport.write_all(&buf).await?;
    if code != ConnectReturnCode::Success {
        transport.shutdown().await?;
    }
    Ok(())
}

struct Connection<H: Hooks, T> {
    shared: Arc<Shared<H>>,
    handle: ConnectionHandle<H::Identity>,
    transport: T,
    state: SessionState,
    rbuf: BytesMut,
    wbuf: BytesMut,
    outbound: mpsc::Receiver<OutboundMessage>,
    control_tx: mpsc::UnboundedSender<Control>,
    control: mpsc::UnboundedReceiver<Control>,
    keepalive: Duration,
    will: Option<rumqttc::mqttbytes::v4::Publish>,
    expires_at: Option<Instant>,
    last_read: Instant,
    shutdown: CancellationToken,
    done: tokio::sync::watch::Sender<bool>,
    acks: Vec<u16>,
}

impl<H: Hooks, T: Transport> Connection<H, T> {
    async fn establish(
        shared: Arc<Shared<H>>,
        request: ConnectRequest,
        auth: crate::Authenticated<H::Identity>,
        mut transport: T,
        rbuf: BytesMut,
        shutdown: CancellationToken,
    ) -> Option<Self> {
        let (out_tx, outbound) = mpsc::channel(shared.config.outbound_queue.max(1));
        let (control_tx, control) = mpsc::unbounded_channel();
        let id = shared.next_connection_id();
        let handle = ConnectionHandle::new(
            auth.identity.clone(),
            id,
            request.clean_session,
            out_tx,
            control_tx.clone(),
        );
        let (done, done_rx) = tokio::sync::watch::channel(false);
        if let Some(mut previous) = shared.registry.take_over(&handle, done_rx) {
            shared.metrics.takeovers_total.inc();
            let wait = previous.wait_for(|d| *d);
            let _ = tokio::time::timeout(shared.config.takeover_timeout, wait).await;
        }
        let persisted = shared
            .registry
            .take_session(handle.identity(), request.clean_session);
        let session_present = !request.clean_session && persisted.is_some();
        let persisted = persisted.unwrap_or_default();
        if write_connack(&mut transport, ConnectReturnCode::Success, session_present)
            .await
            .is_err()
        {
            shared.registry.release(&handle, None);
            let _ = done.send(true);
            return None;
        }
        shared.metrics.connections_active.inc();
        info!(client_id = %request.client_id, peer = %request.peer, clean = request.clean_session, keep_alive = request.keep_alive, transport = ?request.transport, "connected");
        shared
            .hooks
            .connected(&handle, session_present, &persisted.subscriptions);
        let expires_at = auth.expires_at.map(|t| {
            let left = t
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            Instant::now() + left
        });
        let state = SessionState::new(
            persisted,
            shared.config.max_pending_inbound_acks,
            shared.config.max_inflight,
        );
        Some(Self {
            keepalive: shared.config.keepalive_timeout(request.keep_alive),
            will: None,
            shared,
            handle,
            transport,
            state,
            rbuf,
            wbuf: BytesMut::new(),
            outbound,
            control_tx,
            control,
            expires_at,
            last_read: Instant::now(),
            shutdown,
            done,
            acks: Vec::new(),
        })
    }

    async fn serve(mut self) {
        self.resend_session();
        let reason = match self.run_loop().await {
            Ok(()) => DisconnectReason::ClientDisconnect,
            Err(reason) => reason,
        };
        let _ = self.flush().await;
        let _ = self.transport.shutdown().await;
        match &reason {
            DisconnectReason::PacketTooLarge { .. }
            | DisconnectReason::Malformed(_)
            | DisconnectReason::ProtocolViolation(_) => {
                self.shared.metrics.protocol_errors_total.inc();
                warn!(%reason, "connection closed");
            }
            _ => info!(%reason, "connection closed"),
        }
        self.shared.metrics.connections_active.dec();
        // MQTT 3.1.1 §3.1.2.5: the Will is published unless the client said DISCONNECT. A
        // server shutdown is not the client's failure, so it does not fire the Will either.
        if let Some(will) = self.will.take()
            && !matches!(
                reason,
                DisconnectReason::ClientDisconnect | DisconnectReason::Shutdown
            )
        {
            self.shared.hooks.will(&self.handle, will, &reason);
        }
        self.shared.hooks.disconnected(&self.handle, &reason);
        let session = (!self.handle.clean_session()).then(|| self.take_session());
        self.shared.registry.release(&self.handle, session);
        let _ = self.done.send(true);
    }

    fn take_session(&mut self) -> PersistedSession {
        self.outbound.close();
        while let Ok(m) = self.outbound.try_recv() {
            if m.qos != QoS::AtMostOnce {
                self.state.queue(m);
            }
        }
        std::mem::take(&mut self.state.persisted)
    }

    fn resend_session(&mut self) {
        let mut n = 0;
        for (send, m) in self.state.retransmissions() {
            write_publish(
                &mut self.wbuf,
                &m.topic,
                &m.payload,
                m.qos,
                send.pkid,
                send.dup,
            );
            n += 1;
        }
        self.count_out(n, n);
        self.drain_queued();
    }

    async fn run_loop(&mut self) -> Result<(), DisconnectReason> {
        let mut grace: Option<Instant> = None;
        loop {
            if grace.is_none() {
                self.process_incoming()?;
            }
            self.flush().await?;
            if let Some(deadline) = grace
                && (self.state.pending_inbound() == 0 || Instant::now() >= deadline)
            {
                return Err(DisconnectReason::Shutdown);
            }
            if self.rbuf.is_empty() && self.rbuf.capacity() > IDLE_BUFFER_BYTES {
                self.rbuf = BytesMut::new();
            }
            let keepalive_at = Some(self.last_read + self.keepalive);
            let can_read = grace.is_none() && self.state.can_read();
            tokio::select! {
                biased;
                ctl = self.control.recv() => self.handle_control(ctl)?,
                () = self.shutdown.cancelled(), if grace.is_none() => {
                    grace = Some(Instant::now() + self.shared.config.shutdown_grace);
                }
                msg = self.outbound.recv(), if self.state.window_open() => {
                    if let Some(msg) = msg {
                        self.send_outbound(msg);
                        self.drain_outbound();
                    }
                }
                read = self.transport.read(&mut self.rbuf), if can_read => match read {
                    Ok(0) => return Err(DisconnectReason::ConnectionLost),
                    Ok(_) => self.last_read = Instant::now(),
                    Err(e) => return Err(DisconnectReason::Io(e.to_string())),
                },
                () = sleep_until(keepalive_at) => {
                    if self.last_read + self.keepalive <= Instant::now() {
                        return Err(DisconnectReason::KeepAliveTimeout(self.keepalive));
                    }
                }
                () = sleep_until(self.expires_at) => return Err(DisconnectReason::CredentialsExpired),
                () = sleep_until(grace) => return Err(DisconnectReason::Shutdown),
            }
        }
    }

    fn handle_control(&mut self, ctl: Option<Control>) -> Result<(), DisconnectReason> {
        let mut next = ctl;
        // Acks arrive in bursts (group commit); take all that are ready before flushing.
        while let Some(ctl) = next {
            match ctl {
                Control::Acked(seq) => self.state.inbound_acked(seq, &mut self.acks),
                Control::Rejected(reason) => return Err(DisconnectReason::PublishRejected(reason)),
                Control::Kick(reason) => return Err(reason),
            }
            next = self.control.try_recv().ok();
        }
        let n = self.acks.len() as u64;
        for pkid in self.acks.drain(..) {
            write_ack(&mut self.wbuf, 0x40, pkid);
        }
        self.count_out(n, 0);
        Ok(())
    }

    fn send_outbound(&mut self, msg: OutboundMessage) {
        if msg.topic.len() > usize::from(u16::MAX) {
            warn!(
                topic_len = msg.topic.len(),
                "dropping outbound message with an oversized topic"
            );
            return;
        }
        if msg.qos == QoS::AtMostOnce {
            write_publish(
                &mut self.wbuf,
                &msg.topic,
                &msg.payload,
                QoS::AtMostOnce,
                0,
                false,
            );
            msg.delivered();
        } else {
            let pkid = self.state.allocate_pkid();
            write_publish(
                &mut self.wbuf,
                &msg.topic,
                &msg.payload,
                QoS::AtLeastOnce,
                pkid,
                false,
            );
            self.state.track(pkid, msg);
        }
        self.count_out(1, 1);
    }

    fn drain_outbound(&mut self) {
        for _ in 1..OUTBOUND_BATCH {
            if !self.state.window_open() || self.wbuf.len() >= WRITE_BATCH_BYTES {
                break;
            }
            match self.outbound.try_recv() {
                Ok(m) => self.send_outbound(m),
                Err(_) => break,
            }
        }
    }

    fn drain_queued(&mut self) {
        while let Some(m) = self.state.next_queued() {
            self.send_outbound(m);
        }
    }

    fn process_incoming(&mut self) -> Result<(), DisconnectReason> {
        let max = self.shared.config.max_packet_size;
        let (mut packets, mut publishes) = (0u64, 0u64);
        let result = loop {
            if !self.state.can_read() {
                break Ok(());
            }
            let packet = match Packet::read(&mut self.rbuf, max) {
                Ok(p) => p,
                Err(CodecError::InsufficientBytes(_)) => break Ok(()),
                Err(e) => break Err(codec_failure(e, max)),
            };
            packets += 1;
            if matches!(packet, Packet::Publish(_)) {
                publishes += 1;
            }
            if let Err(e) = self.on_packet(packet) {
                break Err(e);
            }
        };
        self.shared.metrics.packets_in_total.inc_by(packets);
        self.shared.metrics.publishes_in_total.inc_by(publishes);
        result
    }

    fn on_packet(&mut self, packet: Packet) -> Result<(), DisconnectReason> {
        match packet {
            Packet::Publish(p) => {
                if p.topic.is_empty() || p.topic.contains(['+', '#']) {
                    return Err(DisconnectReason::ProtocolViolation(
                        "PUBLISH topic must be a non-empty name without wildcards",
                    ));
                }
                let ack = match p.qos {
                    QoS::AtMostOnce => PublishAck::none(),
                    QoS::AtLeastOnce => PublishAck::qos1(
                        self.state.inbound_publish(p.pkid),
                        self.control_tx.clone(),
                    ),
                    QoS::ExactlyOnce => {
                        return Err(DisconnectReason::ProtocolViolation(
                            "QoS 2 is not supported",
                        ));
                    }
                };
                self.shared
                    .hooks
                    .publish(&self.handle, p, ack)
                    .map_err(DisconnectReason::PublishRejected)
            }
            Packet::PubAck(a) => {
                if let Some(m) = self.state.puback(a.pkid) {
                    m.delivered();
                }
                self.drain_queued();
                Ok(())
            }
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                for f in &s.filters {
                    // IoT Hub grants QoS 1 to a QoS 2 request.
                    let wanted = if f.qos == QoS::ExactlyOnce {
                        QoS::AtLeastOnce
                    } else {
                        f.qos
                    };
                    let code = match self.shared.hooks.subscribe(&self.handle, &f.path, wanted) {
                        Some(granted) => {
                            let granted = if granted == QoS::ExactlyOnce {
                                QoS::AtLeastOnce
                            } else {
                                granted
                            };
                            let subs = &mut self.state.persisted.subscriptions;
                            subs.retain(|(p, _)| *p != f.path);
                            subs.push((f.path.clone(), granted));
                            SubscribeReasonCode::Success(granted)
                        }
                        None => SubscribeReasonCode::Failure,
                    };
                    codes.push(code);
                }
                let _ = SubAck::new(s.pkid, codes).write(&mut self.wbuf);
                self.count_out(1, 0);
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                for t in &u.topics {
                    self.shared.hooks.unsubscribe(&self.handle, t);
                    self.state.persisted.subscriptions.retain(|(p, _)| p != t);
                }
                write_ack(&mut self.wbuf, 0xB0, u.pkid);
                self.count_out(1, 0);
                Ok(())
            }
            Packet::PingReq => {
                self.wbuf.extend_from_slice(&[0xD0, 0x00]);
                self.count_out(1, 0);
                Ok(())
            }
            Packet::Disconnect => Err(DisconnectReason::ClientDisconnect),
            Packet::Connect(_) => Err(DisconnectReason::ProtocolViolation(
                "second CONNECT on a connection",
            )),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => Err(
                DisconnectReason::ProtocolViolation("QoS 2 is not supported"),
            ),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => Err(
                DisconnectReason::ProtocolViolation("a client may not send server packets"),
            ),
        }
    }

    async fn flush(&mut self) -> Result<(), DisconnectReason> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let result = self.transport.write_all(&self.wbuf).await;
        self.wbuf.clear();
        // A burst grew it; most connections sit idle for hours, so give the memory back.
        if self.wbuf.capacity() > IDLE_BUFFER_BYTES {
            self.wbuf = BytesMut::new();
        }
        result.map_err(|e| DisconnectReason::Io(e.to_string()))
    }

    fn count_out(&self, packets: u64, publishes: u64) {
        if packets > 0 {
            self.shared.metrics.packets_out_total.inc_by(packets);
        }
        if publishes > 0 {
            self.shared.metrics.publishes_out_total.inc_by(publishes);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
