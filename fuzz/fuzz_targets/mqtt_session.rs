//! The MQTT server's whole inbound path and session state machine, driven with arbitrary packet
//! sequences through `MqttServer::serve_transport` over an in-memory transport (the session
//! state machine itself is crate-private; this is the public way in, and it also covers the
//! connection loop around it).
//!
//! A script of up to three connections, one after the other, may reuse an identity with
//! CleanSession 0. Each sends a CONNECT (or raw bytes), then client packets (PUBLISH QoS 0/1/2
//! with any packet id, PUBACK, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT, server-only packets,
//! raw bytes, packets split across reads) mixed with application events: accept, reject or drop
//! a pending publish ack, send QoS 0/1 messages to the client (one with a topic too long to
//! encode), kick, shut down, advance the clock past keepalive or credential expiry, fail writes.
//! Limits are small (4 KiB packets, 1–4 pending acks, 1–3 in flight) so every window fills.
//! The clock is tokio's paused clock, so timers fire deterministically.
//!
//! Checks, on the bytes the server writes (decoded with the same codec a client uses):
//! - nothing panics, and a connection ends once the client closes its side (no hang);
//! - everything written decodes as whole server packets; CONNACK comes first and only once;
//!   `session_present` is set exactly when a persistent session of that identity exists;
//! - PUBACKs go out in the order the QoS 1 publishes arrived (MQTT-4.6.0-2), never for a
//!   publish the application did not accept, never ahead of an earlier unaccepted one;
//! - SUBACK and UNSUBACK answer each request in order, with its packet id and one return code
//!   per filter (QoS ≤ 1); PINGRESP answers a PINGREQ;
//! - outbound publishes carry topics the application sent, QoS ≤ 1, a non-zero packet id not in
//!   flight already; DUP resends after a resumed session carry ids that were in flight (unless
//!   a write of that session failed: then the server may resend ids this side never saw);
//! - once a connection ended, the server holds no connection and the hooks saw it disconnect.
#![no_main]

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arbitrary::{Result, Unstructured};
use bytes::{Bytes, BytesMut};
use ironedge_mqtt::{
    Authenticated, ConnectRequest, ConnectReturnCode, ConnectionHandle, DisconnectReason, Hooks,
    MqttConfig, MqttServer, OutboundMessage, Publish, PublishAck, QoS, Transport, TransportKind,
};
use ironedge_protocol::{Identity, Subscription, Topic, identity_from_connect};
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, Packet, PubAck, PubRec, Subscribe, SubscribeFilter, SubscribeReasonCode,
    Unsubscribe,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CLIENT_IDS: &[&str] = &["d1", "d1/m1", "d2", "", "a/b/c", "d1/"];
const TOPICS: &[&str] = &[
    "devices/d1/messages/events/",
    "devices/d1/modules/m1/messages/events/%24.on=out",
    "$iothub/twin/GET/?$rid=1",
    "$iothub/twin/PATCH/properties/reported/?$rid=2",
    "$iothub/methods/res/200/?$rid=3",
    "devices/d2/messages/events/",
    "a/+/b",
    "#",
    "",
    "reject",
];
const FILTERS: &[&str] = &[
    "devices/d1/messages/devicebound/#",
    "devices/d1/modules/m1/inputs/#",
    "$iothub/methods/POST/#",
    "$iothub/twin/res/#",
    "$iothub/twin/PATCH/properties/desired/#",
    "devices/d2/messages/devicebound/#",
    "#",
    "",
];
const OUTBOUND_TOPICS: &[&str] = &[
    "devices/d1/messages/devicebound/",
    "$iothub/methods/POST/m/?$rid=1",
    "$iothub/twin/res/200/?$rid=1",
];

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build();
    let Ok(runtime) = runtime else { return };
    let mut u = Unstructured::new(data);
    runtime.block_on(async {
        let _ = script(&mut u).await;
    });
});

// === The application side ===

/// What the hooks saw, shared with the driver.
#[derive(Default)]
struct Seen {
    handle: Option<ConnectionHandle<Identity>>,
    /// QoS 1 publishes of the current connection in arrival order: packet id and decision.
    qos1: Vec<(u16, Decision)>,
    /// Acks not decided yet: index into `qos1` and the token.
    pending: Vec<(usize, PublishAck)>,
    connected: usize,
    disconnected: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Pending,
    Accepted,
    Refused,
}

#[derive(Default)]
struct FuzzHooks {
    seen: Mutex<Seen>,
}

impl FuzzHooks {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Hooks for FuzzHooks {
    type Identity = Identity;

    fn authenticate(
        &self,
        request: &ConnectRequest,
    ) -> impl Future<Output = std::result::Result<Authenticated<Identity>, ConnectReturnCode>> + Send
    {
        // What the hubs do with a CONNECT, so its fields reach the protocol parsers too.
        let _ = identity_from_connect(&request.client_id, request.username.as_deref());
        let result = match Identity::from_client_id(&request.client_id) {
            Err(_) => Err(ConnectReturnCode::BadClientId),
            Ok(_) if request.password.as_deref() == Some("deny") => {
                Err(ConnectReturnCode::NotAuthorized)
            }
            Ok(identity) => Ok(Authenticated {
                identity,
                expires_at: (request.password.as_deref() == Some("expire"))
                    .then(|| SystemTime::now() + Duration::from_secs(30)),
            }),
        };
        async move { result }
    }

    fn connected(
        &self,
        connection: &ConnectionHandle<Identity>,
        _session_present: bool,
        _subscriptions: &[(String, QoS)],
    ) {
        let mut seen = self.seen();
        seen.handle = Some(connection.clone());
        seen.connected += 1;
    }

    fn subscribe(
        &self,
        connection: &ConnectionHandle<Identity>,
        filter: &str,
        qos: QoS,
    ) -> Option<QoS> {
        if filter == "#" {
            // An application granting QoS 2 must still see QoS 1 on the wire.
            return Some(QoS::ExactlyOnce);
        }
        Subscription::parse(filter)
            .ok()
            .filter(|s| s.allowed_for(connection.identity()))
            .map(|_| qos)
    }

    fn publish(
        &self,
        _connection: &ConnectionHandle<Identity>,
        publish: Publish,
        ack: PublishAck,
    ) -> std::result::Result<(), String> {
        let _ = Topic::parse(&publish.topic);
        let mut seen = self.seen();
        if ack.is_required() {
            seen.qos1.push((publish.pkid, Decision::Pending));
            let index = seen.qos1.len() - 1;
            seen.pending.push((index, ack));
        }
        if publish.topic == "reject" {
            return Err("the application refuses this topic".into());
        }
        Ok(())
    }

    fn disconnected(&self, _connection: &ConnectionHandle<Identity>, _reason: &DisconnectReason) {
        self.seen().disconnected += 1;
    }
}

// === The client side ===

/// An in-memory socket: reads come from the driver, writes are collected.
struct Pipe {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    written: Arc<Mutex<Vec<u8>>>,
    broken: Arc<AtomicBool>,
}

impl Transport for Pipe {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self.rx.recv().await {
            Some(chunk) => {
                buf.extend_from_slice(&chunk);
                Ok(chunk.len())
            }
            None => Ok(0),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "fuzz: writes fail",
            ));
        }
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the client expects the server to answer, and what it knows about its session.
#[derive(Default)]
struct Expect {
    /// Raw bytes were sent: they may hold any packets, so requests and acknowledgements the
    /// script did not build are possible and only the shape of answers is checked.
    raw: bool,
    connack_seen: bool,
    clean: bool,
    identity: Option<Identity>,
    subacks: VecDeque<(u16, usize)>,
    unsubacks: VecDeque<u16>,
    pings: usize,
    pubacks_seen: usize,
    /// Outbound QoS 1 packet ids sent and not acknowledged by the client.
    inflight: BTreeSet<u16>,
    /// The server's writes were made to fail during this connection.
    writes_failed: bool,
}

/// What the script knows across connections.
#[derive(Default)]
struct Sessions {
    /// Identities whose persistent session the server holds → every QoS 1 packet id sent in
    /// that session (a DUP resend must carry one of them; a PUBACK the server had not read
    /// before the connection closed leaves an id in flight on the server's side).
    held: HashMap<Identity, BTreeSet<u16>>,
    /// Topics the application sent to any connection (queued QoS 1 messages outlive one).
    topics: BTreeSet<String>,
    /// A CONNECT of raw bytes was accepted: which session it touched is unknown, so the
    /// session checks stop for the rest of the script.
    unknown: bool,
    /// Persistent sessions whose connection had a write fail: the server gave packet ids to
    /// publishes whose bytes never arrived here (it cannot know how much of a failed write
    /// reached the peer), so their DUP resends carry ids this side never saw.
    blind: BTreeSet<Identity>,
}

fn encode(packet: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    // Client packets here are small; an encoding failure would be a bug in the codec.
    let _ = packet.write(&mut buf, usize::MAX);
    buf.to_vec()
}

fn qos(u: &mut Unstructured<'_>) -> Result<QoS> {
    Ok(match u.int_in_range(0..=5)? {
        0 | 1 => QoS::AtMostOnce,
        2..=4 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    })
}

fn pkid(u: &mut Unstructured<'_>) -> Result<u16> {
    Ok(if u.ratio(1, 8)? {
        u.arbitrary()?
    } else {
        u.int_in_range(1..=4)?
    })
}

fn connect_bytes(u: &mut Unstructured<'_>) -> Result<(Vec<u8>, bool, Option<Identity>)> {
    if u.ratio(1, 12)? {
        return Ok((u.arbitrary()?, true, None));
    }
    let client_id = *u.choose(CLIENT_IDS)?;
    let mut connect = Connect::new(client_id);
    connect.clean_session = u.arbitrary()?;
    connect.keep_alive = *u.choose(&[0, 0, 1, 5, 60, 65_535])?;
    if u.ratio(3, 4)? {
        let username = format!("hub/{client_id}/?api-version=2021-04-12");
        let password = *u.choose(&["ok", "deny", "expire", ""])?;
        connect.set_login(username, password);
    }
    let identity = Identity::from_client_id(client_id).ok();
    let mut bytes = encode(&Packet::Connect(connect.clone()));
    if u.ratio(1, 10)? {
        // Protocol level 3 (MQTT 3.1) must be refused with return code 1.
        if let Some(level) = bytes.get_mut(8) {
            *level = 3;
        }
    }
    Ok((bytes, connect.clean_session, identity))
}

async fn settle() {
    // The clock is paused: it only moves when every task waits, so this returns once the
    // server has handled everything it was given.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

async fn script(u: &mut Unstructured<'_>) -> Result<()> {
    let config = MqttConfig {
        max_packet_size: 4096,
        connect_timeout: Duration::from_secs(10),
        max_keepalive_timeout: Duration::from_secs(90),
        max_pending_inbound_acks: u.int_in_range(1..=4)?,
        max_inflight: u.int_in_range(1..=3)?,
        outbound_queue: u.int_in_range(1..=4)?,
        takeover_timeout: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(1),
    };
    let hooks = Arc::new(FuzzHooks::default());
    let server = MqttServer::new(config, hooks.clone());
    let mut sessions = Sessions::default();
    for _ in 0..u.int_in_range(1..=3)? {
        connection(&server, &hooks, &mut sessions, u).await?;
    }
    Ok(())
}

async fn connection(
    server: &MqttServer<FuzzHooks>,
    hooks: &Arc<FuzzHooks>,
    sessions: &mut Sessions,
    u: &mut Unstructured<'_>,
) -> Result<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    let written = Arc::new(Mutex::new(Vec::new()));
    let broken = Arc::new(AtomicBool::new(false));
    let pipe = Pipe {
        rx,
        written: written.clone(),
        broken: broken.clone(),
    };
    let shutdown = CancellationToken::new();
    let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
    let task = {
        let server = server.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            server
                .serve_transport(pipe, peer, TransportKind::Tcp, shutdown)
                .await;
        })
    };
    {
        let mut seen = hooks.seen();
        seen.qos1.clear();
        seen.pending.clear();
        seen.handle = None;
    }
    let connected_before = hooks.seen().connected;
    let (bytes, clean, identity) = connect_bytes(u)?;
    let mut expect = Expect {
        raw: identity.is_none(),
        clean,
        identity: identity.clone(),
        ..Expect::default()
    };
    let mut read = BytesMut::new();
    let _ = tx.send(bytes);
    settle().await;
    check_output(&written, &mut read, &mut expect, hooks, sessions);

    let result = events(
        u,
        &tx,
        hooks,
        &broken,
        &shutdown,
        &written,
        &mut read,
        &mut expect,
        sessions,
    )
    .await;

    // Close the client side (EOF). Undecided acks are dropped, which refuses them, as the
    // server reads what is left; the connection must then end.
    drop(tx);
    let mut task = task;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
    loop {
        let pending: Vec<_> = std::mem::take(&mut hooks.seen().pending);
        drop(pending);
        tokio::select! {
            joined = &mut task => match joined {
                Ok(()) => break,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection did not end after the client closed its side"
        );
    }
    check_output(&written, &mut read, &mut expect, hooks, sessions);
    assert!(
        read.is_empty(),
        "the server wrote a partial packet: {read:?}"
    );
    assert_eq!(
        server.connection_count(),
        0,
        "a finished connection is still registered"
    );
    let seen = hooks.seen();
    if seen.connected > connected_before {
        assert_eq!(
            seen.disconnected, seen.connected,
            "connected without disconnected"
        );
        if expect.identity.is_none() {
            sessions.unknown = true;
        }
        if let Some(identity) = &expect.identity {
            if expect.clean {
                sessions.held.remove(identity);
                sessions.blind.remove(identity);
            } else {
                sessions.held.entry(identity.clone()).or_default();
                if expect.writes_failed {
                    sessions.blind.insert(identity.clone());
                }
            }
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn events(
    u: &mut Unstructured<'_>,
    tx: &mpsc::UnboundedSender<Vec<u8>>,
    hooks: &Arc<FuzzHooks>,
    broken: &AtomicBool,
    shutdown: &CancellationToken,
    written: &Mutex<Vec<u8>>,
    read: &mut BytesMut,
    expect: &mut Expect,
    sessions: &mut Sessions,
) -> Result<()> {
    for _ in 0..u.int_in_range(0..=24)? {
        match u.int_in_range(0..=16)? {
            0 | 1 => {
                let mut publish = Publish::new(
                    *u.choose(TOPICS)?,
                    qos(u)?,
                    vec![0u8; u.int_in_range(0..=64)?],
                );
                publish.pkid = pkid(u)?;
                publish.dup = u.arbitrary()?;
                let _ = tx.send(encode(&Packet::Publish(publish)));
            }
            2 => {
                let id = match expect.inflight.iter().next() {
                    Some(id) if u.ratio(3, 4)? => *id,
                    _ => pkid(u)?,
                };
                expect.inflight.remove(&id);
                let _ = tx.send(encode(&Packet::PubAck(PubAck::new(id))));
            }
            3 => {
                let n = u.int_in_range(1..=3)?;
                let mut filters = Vec::with_capacity(n);
                for _ in 0..n {
                    filters.push(SubscribeFilter::new(
                        (*u.choose(FILTERS)?).to_owned(),
                        qos(u)?,
                    ));
                }
                let id = pkid(u)?;
                let mut subscribe = Subscribe::new_many(filters);
                subscribe.pkid = id;
                expect.subacks.push_back((id, n));
                let _ = tx.send(encode(&Packet::Subscribe(subscribe)));
            }
            4 => {
                let mut unsubscribe = Unsubscribe::new(*u.choose(FILTERS)?);
                unsubscribe.pkid = pkid(u)?;
                expect.unsubacks.push_back(unsubscribe.pkid);
                let _ = tx.send(encode(&Packet::Unsubscribe(unsubscribe)));
            }
            5 => {
                expect.pings += 1;
                let _ = tx.send(encode(&Packet::PingReq));
            }
            6 => {
                let packet = match u.int_in_range(0..=3)? {
                    0 => Packet::Disconnect,
                    1 => Packet::PubRec(PubRec::new(pkid(u)?)),
                    2 => Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)),
                    _ => Packet::Connect(Connect::new("d1")),
                };
                let _ = tx.send(encode(&packet));
            }
            7 => {
                let bytes: Vec<u8> = u.arbitrary()?;
                if !bytes.is_empty() {
                    expect.raw = true;
                    let _ = tx.send(bytes);
                }
            }
            8 => {
                // One packet split across two reads.
                let mut publish = Publish::new(
                    *u.choose(TOPICS)?,
                    qos(u)?,
                    vec![1u8; u.int_in_range(0..=5000)?],
                );
                publish.pkid = pkid(u)?;
                let bytes = encode(&Packet::Publish(publish));
                let cut = u.int_in_range(1..=bytes.len().max(2) - 1)?.min(bytes.len());
                let (a, b) = bytes.split_at(cut);
                let _ = tx.send(a.to_vec());
                settle().await;
                if !b.is_empty() {
                    let _ = tx.send(b.to_vec());
                }
            }
            9..=11 => {
                let mut seen = hooks.seen();
                if !seen.pending.is_empty() {
                    let i = u.choose_index(seen.pending.len())?;
                    let (index, ack) = seen.pending.remove(i);
                    let decision = match u.int_in_range(0..=5)? {
                        0 => {
                            ack.reject("fuzz: refused");
                            Decision::Refused
                        }
                        1 => {
                            drop(ack);
                            Decision::Refused
                        }
                        _ => {
                            ack.accept();
                            Decision::Accepted
                        }
                    };
                    seen.qos1[index].1 = decision;
                }
            }
            12 | 13 => {
                let handle = hooks.seen().handle.clone();
                if let Some(handle) = handle {
                    let topic = if u.ratio(1, 16)? {
                        "t".repeat(70_000)
                    } else {
                        (*u.choose(OUTBOUND_TOPICS)?).to_owned()
                    };
                    sessions.topics.insert(topic.clone());
                    let message =
                        OutboundMessage::new(topic, Bytes::from_static(b"payload"), qos(u)?);
                    let _ = handle.try_send(message);
                }
            }
            14 => {
                tokio::time::sleep(Duration::from_secs(u.int_in_range(0..=120)?)).await;
            }
            15 => match u.int_in_range(0..=2)? {
                0 => shutdown.cancel(),
                1 => {
                    broken.store(true, Ordering::SeqCst);
                    expect.writes_failed = true;
                }
                _ => {
                    let handle = hooks.seen().handle.clone();
                    if let Some(handle) = handle {
                        handle.disconnect("fuzz: kicked");
                    }
                }
            },
            _ => {}
        }
        settle().await;
        check_output(written, read, expect, hooks, sessions);
    }
    Ok(())
}

/// Decodes what the server wrote since the last call and checks it against the expectations.
fn check_output(
    written: &Mutex<Vec<u8>>,
    read: &mut BytesMut,
    expect: &mut Expect,
    hooks: &FuzzHooks,
    sessions: &mut Sessions,
) {
    {
        let mut w = written.lock().unwrap_or_else(|e| e.into_inner());
        read.extend_from_slice(&w);
        w.clear();
    }
    loop {
        let packet = match Packet::read(read, usize::MAX) {
            Ok(p) => p,
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => return,
            Err(e) => panic!("the server wrote bytes that are not MQTT: {e:?}"),
        };
        if !expect.connack_seen {
            let Packet::ConnAck(ack) = &packet else {
                panic!("the first packet is not CONNACK: {packet:?}");
            };
            expect.connack_seen = true;
            if ack.code == ConnectReturnCode::Success && !sessions.unknown && !expect.raw {
                let persisted = expect
                    .identity
                    .as_ref()
                    .is_some_and(|i| sessions.held.contains_key(i));
                if expect.clean {
                    if let Some(i) = &expect.identity {
                        sessions.held.remove(i);
                        sessions.blind.remove(i);
                    }
                }
                assert_eq!(
                    ack.session_present,
                    !expect.clean && persisted,
                    "session_present with clean={} persisted={persisted}",
                    expect.clean
                );
            } else {
                assert!(!ack.session_present);
            }
            continue;
        }
        match packet {
            Packet::ConnAck(_) => panic!("a second CONNACK"),
            Packet::PubAck(ack) => {
                let seen = hooks.seen();
                let k = expect.pubacks_seen;
                let Some(&(id, _)) = seen.qos1.get(k) else {
                    panic!("PUBACK {} without a QoS 1 publish to answer", ack.pkid);
                };
                assert_eq!(ack.pkid, id, "PUBACK out of arrival order");
                assert!(
                    seen.qos1[..=k]
                        .iter()
                        .all(|(_, d)| *d == Decision::Accepted),
                    "PUBACK {id} for a publish the application did not accept (or ahead of one)"
                );
                expect.pubacks_seen += 1;
            }
            Packet::SubAck(ack) => {
                match expect.subacks.pop_front() {
                    Some((id, n)) if !expect.raw => {
                        assert_eq!((ack.pkid, ack.return_codes.len()), (id, n));
                    }
                    None if !expect.raw => panic!("SUBACK without a SUBSCRIBE"),
                    _ => {}
                }
                for code in &ack.return_codes {
                    assert!(matches!(
                        code,
                        SubscribeReasonCode::Success(QoS::AtMostOnce | QoS::AtLeastOnce)
                            | SubscribeReasonCode::Failure
                    ));
                }
            }
            Packet::UnsubAck(ack) => match expect.unsubacks.pop_front() {
                Some(id) if !expect.raw => assert_eq!(ack.pkid, id),
                None if !expect.raw => panic!("UNSUBACK without an UNSUBSCRIBE"),
                _ => {}
            },
            Packet::PingResp => {
                assert!(expect.pings > 0 || expect.raw, "PINGRESP without PINGREQ");
                expect.pings = expect.pings.saturating_sub(1);
            }
            Packet::Publish(p) => {
                assert!(
                    sessions.topics.contains(&p.topic),
                    "the server published to {:?}, which the application never sent here",
                    p.topic
                );
                assert!(p.topic.len() <= usize::from(u16::MAX));
                match p.qos {
                    QoS::AtMostOnce => assert_eq!(p.pkid, 0),
                    QoS::AtLeastOnce
                        if p.dup
                            && !sessions.unknown
                            && !expect.raw
                            && !expect
                                .identity
                                .as_ref()
                                .is_some_and(|i| sessions.blind.contains(i)) =>
                    {
                        let sent = expect.identity.as_ref().and_then(|i| sessions.held.get(i));
                        assert!(
                            sent.is_some_and(|ids| ids.contains(&p.pkid)),
                            "DUP resend of {} was never in flight in this session",
                            p.pkid
                        );
                        expect.inflight.insert(p.pkid);
                    }
                    QoS::AtLeastOnce => {
                        assert_ne!(p.pkid, 0);
                        assert!(
                            expect.raw || !expect.inflight.contains(&p.pkid),
                            "packet id {} reused while in flight",
                            p.pkid
                        );
                        expect.inflight.insert(p.pkid);
                        if let Some(i) = &expect.identity {
                            sessions.held.entry(i.clone()).or_default().insert(p.pkid);
                        }
                    }
                    QoS::ExactlyOnce => panic!("the server published with QoS 2"),
                }
            }
            other => panic!("the server sent a client packet: {other:?}"),
        }
    }
}
