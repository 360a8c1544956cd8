//! The edge hub serves a renewed server certificate without a restart: the files are swapped the
//! way the kubelet updates a mounted Secret, new connections get the new certificate, an
//! established connection keeps working, and garbage files are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ironedge_edgehub::config::HubConfig;
use ironedge_edgehub::config_source::ConfigSource;
use ironedge_edgehub::hub::{Hub, HubSettings};
use ironedge_edgehub::runtime::{EdgeHubOptions, run_with};
use ironedge_edgehub::server_cert::ServerCertificate;
use ironedge_pki::CertificateAuthority;
use jiff::{SignedDuration, Timestamp};
use rustls::pki_types::ServerName;
use serde_json::json;
use support::{EDGE, HUB, Module, loopback};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_secret_is_served_to_new_connections_and_garbage_keeps_the_last_good_one() {
    ironedge_pki::install_default_provider();
    let addr = loopback();
    let ip = addr.to_string();
    let later = Timestamp::now() + SignedDuration::from_hours(24);
    let ca = CertificateAuthority::new_root("edgehub reload test CA", later).unwrap();
    let issue = || ca.issue_server(&[&ip, "localhost"], later).unwrap();
    let (a, b) = (issue(), issue());

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("edgehub-tls");
    std::fs::create_dir(&secret).unwrap();
    kubelet_swap(&secret, "..2026_11_29_a", &a.chain_pem, &a.key_pem);
    std::os::unix::fs::symlink("..data/tls.crt", secret.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", secret.join("tls.key")).unwrap();

    let cert = Arc::new(
        ServerCertificate::load(&secret.join("tls.crt"), &secret.join("tls.key")).unwrap(),
    );
    let sensor = Module::new("sensor");
    let (hub, stop, task) = start(addr, &dir, &cert, &sensor).await;
    // Full handshakes only: a resumed session reports the certificate of its first handshake.
    let mut client = (*ironedge_pki::client_config(&ca.root_pem(), None).unwrap()).clone();
    client.resumption = rustls::client::Resumption::disabled();
    let client = TlsConnector::from(Arc::new(client));
    let target = SocketAddr::new(IpAddr::V4(addr), 8883);

    let mut old = tls_connect(&client, target, &ip).await;
    assert_eq!(peer_leaf(&old), leaf(&a.chain_pem), "the hub starts with A");
    let connack = mqtt_connect(&mut old, &sensor).await;
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK over A");

    kubelet_swap(&secret, "..2026_11_29_b", &b.chain_pem, &b.key_pem);
    wait_for("the reload", || {
        hub.metrics().server_cert_reloads.get() == 1
    })
    .await;
    let new = tls_connect(&client, target, &ip).await;
    assert_eq!(
        peer_leaf(&new),
        leaf(&b.chain_pem),
        "a new connection gets B"
    );
    assert_eq!(
        hub.metrics().server_cert_expiry.get(),
        ironedge_pki::not_after(&b.chain_pem).unwrap().as_second()
    );

    // The connection made with A still carries MQTT.
    assert_eq!(peer_leaf(&old), leaf(&a.chain_pem));
    old.write_all(&[0xC0, 0x00]).await.unwrap();
    let mut pingresp = [0u8; 2];
    tokio::time::timeout(WAIT, old.read_exact(&mut pingresp))
        .await
        .expect("PINGRESP on the old connection")
        .unwrap();
    assert_eq!(pingresp, [0xD0, 0x00]);

    kubelet_swap(
        &secret,
        "..2026_11_29_c",
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
        "not a key",
    );
    wait_for("the refusal", || {
        hub.metrics().server_cert_reload_failures.get() == 1
    })
    .await;
    let after_garbage = tls_connect(&client, target, &ip).await;
    assert_eq!(
        peer_leaf(&after_garbage),
        leaf(&b.chain_pem),
        "garbage keeps B"
    );
    assert_eq!(hub.metrics().server_cert_reloads.get(), 1);

    drop((old, new, after_garbage));
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

/// Writes a new timestamped directory and points `..data` at it with one rename, as the kubelet
/// does for a Secret volume, then removes the previous directory.
fn kubelet_swap(secret: &Path, version: &str, cert: &str, key: &str) {
    let data = secret.join("..data");
    let previous = std::fs::read_link(&data).ok();
    std::fs::create_dir(secret.join(version)).unwrap();
    std::fs::write(secret.join(version).join("tls.crt"), cert).unwrap();
    std::fs::write(secret.join(version).join("tls.key"), key).unwrap();
    let tmp = secret.join("..data_tmp");
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, &data).unwrap();
    if let Some(previous) = previous {
        std::fs::remove_dir_all(secret.join(previous)).unwrap();
    }
}

async fn start(
    addr: std::net::Ipv4Addr,
    dir: &tempfile::TempDir,
    cert: &Arc<ServerCertificate>,
    module: &Module,
) -> (Hub, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let routes: HubConfig =
        serde_json::from_value(json!({"routes": {"up": "FROM /messages/* INTO $upstream"}}))
            .unwrap();
    let options = EdgeHubOptions {
        settings: HubSettings::new(EDGE, HUB),
        store_path: dir.path().join("edgehub.redb"),
        store_config: ironedge_store::Config::default(),
        identities: vec![module.entry()],
        mqtt: tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(addr), 8883))
            .await
            .unwrap(),
        websocket: None,
        tls: cert.server_config().unwrap(),
        http: None,
        upstream: None,
        config: ConfigSource::Static(routes),
        mqtt_config: ironedge_mqtt::MqttConfig::default(),
        registry: None,
    };
    let (hub_tx, hub_rx) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let cert = cert.clone();
    let task = tokio::spawn(async move {
        run_with(
            options,
            async {
                let _ = stopped.await;
            },
            move |hub| {
                tokio::spawn(cert.watch(hub.metrics(), Duration::from_millis(50)));
                let _ = hub_tx.send(hub.clone());
            },
        )
        .await
        .unwrap();
    });
    (hub_rx.await.unwrap(), stop, task)
}

async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

async fn tls_connect(client: &TlsConnector, target: SocketAddr, ip: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(target).await.unwrap();
    let name = ServerName::try_from(ip.to_owned()).unwrap();
    tokio::time::timeout(WAIT, client.connect(name, tcp))
        .await
        .expect("TLS handshake")
        .unwrap()
}

fn peer_leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn leaf(chain_pem: &str) -> Vec<u8> {
    ironedge_pki::certificates_from_pem(chain_pem, "test").unwrap()[0].to_vec()
}

/// Sends an MQTT 3.1.1 CONNECT as `module` and returns the 4-byte CONNACK.
async fn mqtt_connect(stream: &mut TlsStream<TcpStream>, module: &Module) -> [u8; 4] {
    let client_id = format!("{EDGE}/{}", module.name);
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60];
    for field in [client_id, module.username(), module.token(3600)] {
        body.extend_from_slice(&u16::try_from(field.len()).unwrap().to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    stream.write_all(&packet).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut connack))
        .await
        .expect("CONNACK")
        .unwrap();
    connack
}
