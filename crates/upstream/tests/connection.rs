//! A connection against a scripted IoT Hub: our MQTT server core over TLS with hooks that answer
//! twin requests, count CONNECTs and tokens, and push methods and desired patches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ironedge_mqtt::{
    Authenticated, ConnectRequest, ConnectReturnCode, ConnectionHandle, Hooks, MqttConfig,
    MqttServer, OutboundMessage, Publish, PublishAck, QoS,
};
use ironedge_protocol::{Identity, TwinTopic};
use ironedge_upstream::{Connection, TokenSource, UpstreamError, UpstreamEvent, UpstreamSettings};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(10);
const HUB: &str = "hub.example";

/// The scripted cloud.
#[derive(Default)]
struct Cloud {
    /// Passwords of every CONNECT, in order.
    tokens: Mutex<Vec<String>>,
    /// The latest connection, to push messages to the client.
    latest: Mutex<Option<ConnectionHandle<String>>>,
    /// Reported patches received.
    reported: Mutex<Vec<serde_json::Value>>,
    /// Answer twin GETs with this body (status 200).
    twin: Mutex<Vec<u8>>,
}

impl Hooks for Cloud {
    type Identity = String;

    async fn authenticate(
        &self,
        r: &ConnectRequest,
    ) -> Result<Authenticated<String>, ConnectReturnCode> {
        self.tokens
            .lock()
            .unwrap()
            .push(r.password.clone().unwrap_or_default());
        Ok(Authenticated {
            identity: r.client_id.clone(),
            expires_at: None,
        })
    }

    fn connected(&self, c: &ConnectionHandle<String>, _: bool, _: &[(String, QoS)]) {
        *self.latest.lock().unwrap() = Some(c.clone());
    }

    fn subscribe(&self, _: &ConnectionHandle<String>, _: &str, qos: QoS) -> Option<QoS> {
        Some(qos)
    }

    fn publish(
        &self,
        c: &ConnectionHandle<String>,
        p: Publish,
        ack: PublishAck,
    ) -> Result<(), String> {
        ack.accept();
        let answer = match TwinTopic::parse(&p.topic) {
            Ok(TwinTopic::Get { rid }) => {
                Some((rid, Bytes::from(self.twin.lock().unwrap().clone())))
            }
            Ok(TwinTopic::ReportedPatch { rid, .. }) => {
                self.reported
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&p.payload).unwrap());
                Some((rid, Bytes::new()))
            }
            _ => None,
        };
        if let Some((rid, body)) = answer {
            let status = if body.is_empty() { 204 } else { 200 };
            let topic = TwinTopic::Response {
                status,
                rid,
                version: None,
            }
            .to_string();
            c.try_send(OutboundMessage::new(topic, body, QoS::AtMostOnce))
                .unwrap();
        }
        Ok(())
    }
}

/// Tokens that say when they were minted, so renewals are visible; after `keys_for` tokens
/// the key is gone (an identity deleted in the cloud).
struct CountingTokens {
    minted: Mutex<u32>,
    keys_for: u32,
}

impl TokenSource for CountingTokens {
    fn token(&self, identity: &Identity, _: &str, expiry: u64) -> Option<String> {
        let mut n = self.minted.lock().unwrap();
        if *n >= self.keys_for {
            return None;
        }
        *n += 1;
        Some(format!("token-{n}-{identity}-{expiry}"))
    }
}

struct Setup {
    cloud: Arc<Cloud>,
    connection: Arc<Connection>,
    events: mpsc::Receiver<UpstreamEvent>,
    shutdown: CancellationToken,
}

async fn setup(token_ttl: Duration) -> Setup {
    setup_with_keys_for(token_ttl, u32::MAX).await
}

async fn setup_with_keys_for(token_ttl: Duration, keys_for: u32) -> Setup {
    ironedge_pki::install_default_provider();
    let later = Timestamp::now() + SignedDuration::from_hours(1);
    let ca = ironedge_pki::CertificateAuthority::new_root("upstream test CA", later).unwrap();
    let leaf = ca.issue_server(&["localhost"], later).unwrap();
    let tls = ironedge_pki::server_config(&leaf.chain_pem, &leaf.key_pem).unwrap();
    let cloud = Arc::new(Cloud::default());
    let server = MqttServer::new(MqttConfig::default(), cloud.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        server
            .serve(listener, Some(tls), std::future::pending())
            .await
            .unwrap();
    });
    let settings = UpstreamSettings {
        hub_host_name: HUB.into(),
        host: "localhost".into(),
        port,
        tls: ironedge_pki::client_config(ca.cert_pem(), None).unwrap(),
        token_ttl,
        keep_alive: Duration::from_secs(30),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        operation_timeout: Duration::from_secs(5),
        inflight: 10,
    };
    let (tx, events) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let connection = Connection::start(
        Identity::module("edge", "$edgeAgent"),
        settings,
        Arc::new(CountingTokens {
            minted: Mutex::new(0),
            keys_for,
        }),
        &["$iothub/methods/POST/#"],
        tx,
        Arc::new(watch::channel(0).0),
        shutdown.clone(),
    );
    Setup {
        cloud,
        connection,
        events,
        shutdown,
    }
}

async fn next(events: &mut mpsc::Receiver<UpstreamEvent>) -> UpstreamEvent {
    tokio::time::timeout(T, events.recv())
        .await
        .expect("an event in time")
        .unwrap()
}

#[tokio::test]
async fn twin_requests_are_answered_by_rid_and_bad_answers_are_typed_errors() {
    let mut s = setup(Duration::from_secs(3600)).await;
    assert!(matches!(
        next(&mut s.events).await,
        UpstreamEvent::Connected(_)
    ));
    *s.cloud.twin.lock().unwrap() = br#"{"desired":{"$version":3},"reported":{}}"#.to_vec();
    let twin = s.connection.get_twin().await.unwrap();
    assert_eq!(twin["desired"]["$version"], 3);

    let patch = serde_json::json!({"lastDesiredStatus": {"code": 200}});
    s.connection.patch_reported(&patch).await.unwrap();
    assert_eq!(s.cloud.reported.lock().unwrap().as_slice(), [patch]);

    *s.cloud.twin.lock().unwrap() = b"not json".to_vec();
    assert!(matches!(
        s.connection.get_twin().await.unwrap_err(),
        UpstreamError::Decode {
            operation: "twin GET",
            ..
        }
    ));
    s.shutdown.cancel();
}

#[tokio::test]
async fn telemetry_receipts_complete_on_the_clouds_puback() {
    let mut s = setup(Duration::from_secs(3600)).await;
    assert!(matches!(
        next(&mut s.events).await,
        UpstreamEvent::Connected(_)
    ));
    let mut receipts = Vec::new();
    for i in 0..50u8 {
        receipts.push(
            s.connection
                .publish(
                    "devices/edge/modules/$edgeAgent/messages/events/".into(),
                    Bytes::from(vec![i]),
                )
                .await
                .unwrap(),
        );
    }
    for r in receipts {
        tokio::time::timeout(T, r).await.unwrap().unwrap();
    }
    s.shutdown.cancel();
}

#[tokio::test]
async fn methods_and_desired_patches_arrive_as_events_and_non_object_patches_are_dropped() {
    let mut s = setup(Duration::from_secs(3600)).await;
    assert!(matches!(
        next(&mut s.events).await,
        UpstreamEvent::Connected(_)
    ));
    let handle = s.cloud.latest.lock().unwrap().clone().unwrap();
    for (topic, body) in [
        (
            "$iothub/twin/PATCH/properties/desired/?$version=4",
            &b"[1]"[..],
        ),
        (
            "$iothub/twin/PATCH/properties/desired/?$version=5",
            &br#"{"$version":5}"#[..],
        ),
        ("$iothub/methods/POST/ping/?$rid=7", &b"{}"[..]),
    ] {
        let msg = OutboundMessage::new(topic.into(), Bytes::from_static(body), QoS::AtLeastOnce);
        handle.send(msg).await.unwrap();
    }
    match next(&mut s.events).await {
        UpstreamEvent::DesiredPatch { patch, .. } => assert_eq!(patch["$version"], 5),
        other => panic!("{other:?}"),
    }
    match next(&mut s.events).await {
        UpstreamEvent::MethodRequest { method, rid, .. } => {
            assert_eq!((method.as_str(), rid.as_str()), ("ping", "7"));
        }
        other => panic!("{other:?}"),
    }
    s.shutdown.cancel();
}

#[tokio::test]
async fn the_token_is_renewed_by_reconnecting_before_it_expires_and_no_loss_is_reported() {
    // Renewal at 80 % of 2 s.
    let mut s = setup(Duration::from_secs(2)).await;
    assert!(matches!(
        next(&mut s.events).await,
        UpstreamEvent::Connected(_)
    ));
    // The next event is the renewal's reconnect: announced as a connect (the twin must be read
    // again), never as a loss.
    assert!(matches!(
        next(&mut s.events).await,
        UpstreamEvent::Connected(_)
    ));
    let tokens = s.cloud.tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 2);
    assert!(tokens[0].starts_with("token-1-") && tokens[1].starts_with("token-2-"));
    assert!(s.connection.wait_connected(T).await);
    s.shutdown.cancel();
}

#[tokio::test]
async fn a_renewal_that_finds_no_key_reports_the_connection_lost() {
    // Renewal at 80 % of 2 s, by which time the key is gone.
    let mut s = setup_with_keys_for(Duration::from_secs(2), 1).await;
    assert!(matches!(
        next(&mut s.events).await,
        UpstreamEvent::Connected(_)
    ));
    assert!(matches!(
        next(&mut s.events).await,
        UpstreamEvent::Disconnected(_)
    ));
    assert!(!s.connection.is_connected());
    s.shutdown.cancel();
}
