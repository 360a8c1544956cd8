//! Store-and-forward across a cloud outage and a `kill -9` of the edge hub.
//!
//! The cloud hub (ironedge hub) is down. A module publishes messages through the edge hub
//! (`ironedge edgehub`, a child process) to `$upstream`; midway the edge hub is killed with
//! SIGKILL and started again on the same store; the module re-sends what was not acknowledged,
//! as every MQTT client does. Then the cloud comes back. Every acknowledged message must arrive
//! (duplicates are allowed by at-least-once delivery and are counted and printed), and messages
//! whose route TTL passed during the outage must not arrive and must be counted as expired.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironedge_hub::HubSettings;
use ironedge_hub::registry::IfMatch;
use ironedge_hub::server::{ServerSettings, TlsSource, start};
use ironedge_hub::storage::TelemetryFilter;
use ironedge_protocol::{Identity, KeyPair, SasToken};
use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::json;
use tokio::process::{Child, Command};

const HUB: &str = "outage-hub.azure-devices.net";
const EDGE: &str = "outage-edge";
const KEPT: usize = 1500;
const EXPIRING: usize = 300;
const T: Duration = Duration::from_secs(120);

fn addr() -> Ipv4Addr {
    let pid = std::process::id();
    Ipv4Addr::new(127, 60 + (pid % 100) as u8, (pid / 100 % 250) as u8, 9)
}

fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn cloud(dir: &Path, ip: Ipv4Addr, rest: u16, mqtt: u16) -> ironedge_hub::server::Started {
    start(ServerSettings {
        database: dir.join("hub.db"),
        rest_addr: SocketAddr::new(IpAddr::V4(ip), rest),
        mqtt_addr: SocketAddr::new(IpAddr::V4(ip), mqtt),
        websocket_addr: None,
        tls: TlsSource::DevCa {
            dir: dir.join("ca"),
            names: vec![ip.to_string()],
        },
        hub: HubSettings {
            hub_names: vec![HUB.into()],
            ..HubSettings::default()
        },
    })
    .await
    .expect("cloud hub starts")
}

fn edgehub(dir: &Path, ip: Ipv4Addr, port: u16, metrics: u16, cloud_mqtt: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ironedge"))
        .arg("edgehub")
        .args(["--device-id", EDGE, "--hub-host-name", HUB])
        .args([
            "--listen",
            &format!("{ip}:{port}"),
            "--metrics-listen",
            &format!("{ip}:{metrics}"),
        ])
        .arg("--store")
        .arg(dir.join("edgehub.redb"))
        .arg("--tls-cert")
        .arg(dir.join("server.pem"))
        .arg("--tls-key")
        .arg(dir.join("server.key"))
        .arg("--identities")
        .arg(dir.join("identities.json"))
        .arg("--routes")
        .arg(dir.join("routes.json"))
        .args(["--upstream", &format!("{ip}:{cloud_mqtt}")])
        .arg("--upstream-ca")
        .arg(dir.join("ca/ca.pem"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start ironedge edgehub")
}

async fn wait_port(ip: Ipv4Addr, port: u16) {
    let deadline = Instant::now() + T;
    while tokio::net::TcpStream::connect((ip, port)).await.is_err() {
        assert!(Instant::now() < deadline, "{ip}:{port} never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A module publisher that tracks which message ids were acknowledged.
struct Publisher {
    client: AsyncClient,
    events: rumqttc::EventLoop,
}

impl Publisher {
    async fn connect(ip: Ipv4Addr, port: u16, keys: &KeyPair, ca_pem: &str) -> Self {
        let identity = Identity::module(EDGE, "sensor");
        let expiry = jiff::Timestamp::now().as_second() as u64 + 3600;
        let token = SasToken::build(&identity.resource_uri(HUB), &keys.primary, expiry, None);
        let mut opts = MqttOptions::new(identity.client_id(), ip.to_string(), port);
        opts.set_credentials(identity.username(HUB, "2021-04-12"), token.to_string());
        opts.set_clean_session(true);
        opts.set_inflight(50);
        let tls = ironedge_pki::client_config(ca_pem, None).unwrap();
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
        let (client, mut events) = AsyncClient::new(opts, 100);
        loop {
            match tokio::time::timeout(T, events.poll())
                .await
                .expect("connack")
            {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("publisher cannot connect: {e}"),
            }
        }
        Self { client, events }
    }

    /// Publishes `ids` on `output`; returns the ids acknowledged before the connection ended
    /// or `stop_after` acks arrived (then `on_stop` runs, e.g. a kill -9, while more are in flight).
    async fn publish(
        &mut self,
        output: &str,
        ids: &[String],
        stop_after: Option<(usize, &mut dyn FnMut())>,
    ) -> BTreeSet<String> {
        let topic = format!("devices/{EDGE}/modules/sensor/messages/events/%24.on={output}");
        let mut sent: std::collections::VecDeque<String> = Default::default();
        let mut inflight: HashMap<u16, String> = HashMap::new();
        let mut acked = BTreeSet::new();
        let mut next = 0;
        let (mut stop_at, mut on_stop) = match stop_after {
            Some((n, f)) => (Some(n), Some(f)),
            None => (None, None),
        };
        loop {
            while next < ids.len() && sent.len() + inflight.len() < 50 {
                let id = &ids[next];
                let t = format!("{topic}&%24.mid={id}");
                self.client
                    .publish(t, QoS::AtLeastOnce, false, id.clone().into_bytes())
                    .await
                    .unwrap();
                sent.push_back(id.clone());
                next += 1;
            }
            if acked.len() == ids.len() {
                return acked;
            }
            match tokio::time::timeout(T, self.events.poll())
                .await
                .expect("publisher event")
            {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(id) = sent.pop_front() {
                        inflight.insert(pkid, id);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(a))) => {
                    if let Some(id) = inflight.remove(&a.pkid) {
                        acked.insert(id);
                    }
                    if stop_at.is_some_and(|n| acked.len() >= n) {
                        stop_at = None;
                        if let Some(f) = on_stop.take() {
                            f();
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => return acked,
            }
        }
    }
}

async fn scrape(ip: Ipv4Addr, port: u16) -> String {
    let mut s = tokio::net::TcpStream::connect((ip, port)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn metric(text: &str, name: &str, endpoint: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("endpoint=\"{endpoint}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_a_cloud_outage_and_kill_9_and_expired_ones_are_counted() {
    ironedge_pki::install_default_provider();
    let ip = addr();
    let dir = tempfile::tempdir().unwrap();
    let (rest, cloud_mqtt, port, metrics) =
        (free_port(ip), free_port(ip), free_port(ip), free_port(ip));

    // Register the edge device and its module, then take the cloud down: the outage starts.
    let keys = KeyPair::generate();
    let hub = cloud(dir.path(), ip, rest, cloud_mqtt).await;
    hub.hub
        .put_device(
            EDGE.into(),
            serde_json::from_value(json!({"capabilities": {"iotEdge": true}})).unwrap(),
            IfMatch::Absent,
        )
        .await
        .unwrap();
    let auth = json!({"authentication": {"type": "sas", "symmetricKey": {"primaryKey": keys.primary.to_base64(), "secondaryKey": keys.secondary.to_base64()}}});
    hub.hub
        .put_module(
            EDGE.into(),
            "sensor".into(),
            serde_json::from_value(auth).unwrap(),
            IfMatch::Absent,
        )
        .await
        .unwrap();
    hub.shutdown().await;

    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    let ca = ironedge_pki::CertificateAuthority::new_root("outage test CA", later).unwrap();
    let server = ca.issue_server(&[&ip.to_string()], later).unwrap();
    std::fs::write(dir.path().join("server.pem"), &server.chain_pem).unwrap();
    std::fs::write(dir.path().join("server.key"), &server.key_pem).unwrap();
    let identities =
        json!([{"deviceId": EDGE, "moduleId": "sensor", "primaryKey": keys.primary.to_base64()}]);
    std::fs::write(dir.path().join("identities.json"), identities.to_string()).unwrap();
    let routes = json!({"routes": {
        "kept": "FROM /messages/modules/sensor/outputs/kept INTO $upstream",
        "short": {"route": "FROM /messages/modules/sensor/outputs/short INTO $upstream", "timeToLiveSecs": 1}
    }, "storeAndForward": {"timeToLiveSecs": 7200}});
    std::fs::write(dir.path().join("routes.json"), routes.to_string()).unwrap();

    // First edge hub process.
    let mut first = edgehub(dir.path(), ip, port, metrics, cloud_mqtt);
    wait_port(ip, port).await;
    let mut publisher = Publisher::connect(ip, port, &keys, &ca.root_pem()).await;
    let short: Vec<String> = (0..EXPIRING).map(|i| format!("short-{i}")).collect();
    let short_acked = publisher.publish("short", &short, None).await;
    assert_eq!(short_acked.len(), EXPIRING);

    // kill -9 midway through the kept messages, with publishes in flight.
    let kept: Vec<String> = (0..KEPT).map(|i| format!("kept-{i}")).collect();
    let pid = first.id().unwrap();
    let mut kill = move || {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    };
    let mut acked = publisher
        .publish("kept", &kept, Some((KEPT / 2, &mut kill)))
        .await;
    let _ = first.wait().await;
    assert!(
        acked.len() >= KEPT / 2 && acked.len() < KEPT,
        "killed midway: {} acked",
        acked.len()
    );
    let acked_before_kill = acked.len();

    // Restart on the same store; the module re-sends everything not acknowledged.
    let _second = edgehub(dir.path(), ip, port, metrics, cloud_mqtt);
    wait_port(ip, port).await;
    let mut publisher = Publisher::connect(ip, port, &keys, &ca.root_pem()).await;
    let rest_ids: Vec<String> = kept
        .iter()
        .filter(|id| !acked.contains(*id))
        .cloned()
        .collect();
    acked.extend(publisher.publish("kept", &rest_ids, None).await);
    assert_eq!(
        acked.len(),
        KEPT,
        "every kept message is acknowledged in the end"
    );

    // The short-TTL messages expire while the cloud is still down, and are counted.
    let deadline = Instant::now() + T;
    loop {
        let text = scrape(ip, metrics).await;
        if metric(&text, "ironedge_edgehub_messages_expired", "iothub") >= EXPIRING as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired messages not counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The cloud comes back on the same address; the backlog drains.
    let hub = cloud(dir.path(), ip, rest, cloud_mqtt).await;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut from_seq = 0;
    let deadline = Instant::now() + T;
    while !acked.iter().all(|id| seen.contains_key(id)) {
        if Instant::now() >= deadline {
            // Say where the rest are: still queued, in flight, or gone.
            let text = scrape(ip, metrics).await;
            let edge_hub: Vec<&str> = text
                .lines()
                .filter(|l| {
                    !l.starts_with('#')
                        && ["iothub", "upstream", "dropped", "store", "received"]
                            .iter()
                            .any(|k| l.contains(k))
                })
                .collect();
            let missing: Vec<&String> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
            panic!(
                "only {} of {} acknowledged messages arrived; missing {missing:?}; edge hub: {edge_hub:#?}",
                seen.len(),
                acked.len()
            );
        }
        let filter = TelemetryFilter {
            device_id: Some(EDGE.into()),
            module_id: Some("sensor".into()),
            from_seq,
            ..TelemetryFilter::default()
        };
        for m in hub
            .hub
            .read_telemetry(filter, 5000, Duration::from_secs(2))
            .await
            .unwrap()
        {
            from_seq = from_seq.max(m.seq + 1);
            *seen
                .entry(m.message_id.clone().unwrap_or_default())
                .or_default() += 1;
        }
    }
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    let stray: Vec<&String> = seen.keys().filter(|id| !acked.contains(*id)).collect();
    eprintln!(
        "outage: {} acknowledged ({acked_before_kill} before kill -9), {} distinct arrived, {duplicates} duplicates, {EXPIRING} expired (short TTL)",
        acked.len(),
        seen.len()
    );
    assert!(
        stray.is_empty(),
        "messages that were never sent or expired arrived: {stray:?}"
    );
    assert!(
        seen.keys().all(|id| id.starts_with("kept-")),
        "no short-TTL message may arrive"
    );
    let _ = Arc::new(());
    hub.shutdown().await;
}
