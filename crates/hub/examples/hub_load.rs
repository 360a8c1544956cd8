//! Load tool for the cloud hub: prints figures, asserts nothing.
//!
//! ```sh
//! ulimit -n 65536   # or at least 2 × --connections + 100 (hub and clients are separate processes)
//! cargo run --release -p ironedge-hub --example hub_load -- --connections 10000
//! # only figure 1, with the hub under a heap profiler:
//! IRONEDGE_LOAD_HUB_WRAPPER="heaptrack -o /tmp/hub" \
//!   cargo run --release -p ironedge-hub --example hub_load -- --connections 2000 --idle-only
//! ```
//!
//! The hub runs in a child process (this binary re-executed with `serve-hub`), so its memory is
//! measured alone; the MQTT clients (rumqttc, TLS, QoS 1) run in this process on the same two
//! cores. Figures:
//! 1. concurrent idle device connections held and hub memory per idle connection (fresh hub);
//! 2. telemetry ingest msgs/s (stored durably, then PUBACKed) with 100 and with 1000 devices;
//! 3. desired-patch (REST PATCH) → device notification latency p50/p99.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic
)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ironedge_hub::HubSettings;
use ironedge_hub::server::{ServerSettings, TlsSource};
use ironedge_hub::storage::{SqliteStorage, Storage};
use ironedge_protocol::{SasToken, SymmetricKey};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::json;
use tokio::io::AsyncBufReadExt as _;

const OWNER_KEY: &str = "bG9hZC10b29sLW93bmVyLWtleS1mb3ItdGhlLWh1Yi0zMmI=";
const DEVICE_KEY: &str = "bG9hZC10b29sLWRldmljZS1rZXktZm9yLWFsbC1kZXZpY2U=";
const HUB_NAME: &str = "loadhub.ironedge.local";

struct Args {
    connections: usize,
    idle_only: bool,
    ingest_secs: u64,
    latency_samples: usize,
    ip: IpAddr,
}

fn parse_args() -> Args {
    let mut a = Args {
        connections: 10_000,
        idle_only: false,
        ingest_secs: 10,
        latency_samples: 500,
        ip: "127.0.79.1".parse().unwrap(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        if argv[i] == "--idle-only" {
            a.idle_only = true;
            i += 1;
            continue;
        }
        match argv[i].as_str() {
            "--connections" => a.connections = v.parse().expect("--connections N"),
            "--ingest-secs" => a.ingest_secs = v.parse().expect("--ingest-secs N"),
            "--latency-samples" => a.latency_samples = v.parse().expect("--latency-samples N"),
            "--ip" => a.ip = v.parse().expect("--ip ADDR"),
            other => panic!("unknown argument {other}; see the doc comment of examples/load.rs"),
        }
        i += 2;
    }
    a
}

fn device_id(i: usize) -> String {
    format!("load-{i:05}")
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if argv.get(1).map(String::as_str) == Some("serve-hub") {
        rt.block_on(serve_hub(
            PathBuf::from(&argv[2]),
            argv[3].parse().unwrap(),
            argv[4].parse().unwrap(),
        ));
    } else {
        rt.block_on(drive(parse_args()));
    }
}

/// The child: creates `devices` devices (one shared key) and serves until stdin closes.
async fn serve_hub(dir: PathBuf, ip: IpAddr, devices: usize) {
    let db = dir.join("hub.db");
    {
        let store = SqliteStorage::open(&db).unwrap();
        let now = ironedge_hub::time::iso(jiff::Timestamp::now());
        let have = store.list_devices(usize::MAX).unwrap().len();
        for i in have..devices {
            let req = ironedge_hub::registry::DeviceRequest {
                authentication: Some(ironedge_hub::registry::Authentication {
                    kind: ironedge_hub::registry::AuthType::Sas,
                    symmetric_key: ironedge_hub::registry::SymmetricKey {
                        primary_key: Some(DEVICE_KEY.into()),
                        secondary_key: Some(DEVICE_KEY.into()),
                    },
                    ..Default::default()
                }),
                ..Default::default()
            };
            let id = device_id(i);
            let d = ironedge_hub::registry::Device::apply_request(
                &id,
                req,
                None,
                &ironedge_hub::registry::IfMatch::Absent,
                &now,
            )
            .unwrap();
            store
                .create_device(&d, &ironedge_hub::twin::Twin::new(&id, None, &now), &[])
                .unwrap();
        }
    }
    let settings = ServerSettings {
        database: db,
        rest_addr: SocketAddr::new(ip, 8443),
        mqtt_addr: SocketAddr::new(ip, 8883),
        websocket_addr: None,
        tls: TlsSource::DevCa {
            dir: dir.join("tls"),
            names: vec![ip.to_string()],
        },
        hub: HubSettings {
            hub_names: vec![HUB_NAME.into(), format!("{ip}:8443")],
            owner_key: Some(OWNER_KEY.into()),
            ..HubSettings::default()
        },
    };
    let started = ironedge_hub::server::start(settings).await.unwrap();
    println!("ready {}", std::process::id());
    let mut line = String::new();
    let _ = tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await;
    started.shutdown().await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Device {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

/// Connects one device; `on_event` sees every incoming packet. Resolves once CONNACKed.
async fn connect(
    ip: IpAddr,
    tls: &Arc<rustls::ClientConfig>,
    id: &str,
    inflight: u16,
    on_event: impl Fn(&Packet) + Send + 'static,
) -> Option<Device> {
    let expiry = u64::try_from(jiff::Timestamp::now().as_second()).unwrap() + 3600 * 4;
    let key = SymmetricKey::from_base64(DEVICE_KEY).unwrap();
    let token =
        SasToken::build(&format!("{HUB_NAME}/devices/{id}"), &key, expiry, None).to_string();
    let mut opts = MqttOptions::new(id, ip.to_string(), 8883);
    opts.set_credentials(format!("{HUB_NAME}/{id}/?api-version=2021-04-12"), token);
    opts.set_keep_alive(Duration::from_secs(600));
    opts.set_inflight(inflight);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        tls.clone(),
    )));
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(t) = tx.take() {
                        let _ = t.send(true);
                    }
                }
                Ok(Event::Incoming(p)) => on_event(&p),
                Ok(_) => {}
                Err(_) => {
                    if let Some(t) = tx.take() {
                        let _ = t.send(false);
                    }
                    return;
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(60), rx).await {
        Ok(Ok(true)) => Some(Device { client, task }),
        _ => {
            task.abort();
            None
        }
    }
}

async fn disconnect_all(devices: Vec<Device>) {
    for d in &devices {
        let _ = d.client.disconnect().await;
    }
    for d in devices {
        let _ = tokio::time::timeout(Duration::from_secs(5), d.task).await;
    }
}

/// Publishes QoS 1 telemetry from `n` devices for `secs`; returns acknowledged msgs/s.
async fn ingest(ip: IpAddr, tls: &Arc<rustls::ClientConfig>, n: usize, secs: u64) -> (f64, u64) {
    let acked = Arc::new(AtomicU64::new(0));
    let mut devices = Vec::new();
    for i in 0..n {
        let a = acked.clone();
        let d = connect(ip, tls, &device_id(i), 64, move |p| {
            if matches!(p, Packet::PubAck(_)) {
                a.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await
        .expect("device connects");
        devices.push(d);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut publishers = Vec::new();
    let payload = br#"{"temperature":21.5,"humidity":40,"pressure":1013.25,"seq":0}"#.to_vec();
    for (i, d) in devices.iter().enumerate() {
        let (client, stop, payload) = (d.client.clone(), stop.clone(), payload.clone());
        let topic = format!(
            "devices/{}/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&k=v",
            device_id(i)
        );
        publishers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if client
                    .publish(&topic, QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }));
    }
    // Measure a steady window after a short warm-up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (start_count, start) = (acked.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let count = acked.load(Ordering::Relaxed) - start_count;
    let rate = count as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.abort();
    }
    disconnect_all(devices).await;
    (rate, count)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// REST desired patch → MQTT notification latency over `samples` sequential patches.
async fn latency(
    ip: IpAddr,
    tls: &Arc<rustls::ClientConfig>,
    ca: &str,
    samples: usize,
) -> (f64, f64, f64) {
    let devices = 10;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut conns = Vec::new();
    for i in 0..devices {
        let tx = tx.clone();
        let d = connect(ip, tls, &device_id(i), 16, move |p| {
            if let Packet::Publish(p) = p
                && p.topic
                    .starts_with("$iothub/twin/PATCH/properties/desired/")
            {
                let _ = tx.send((i, Instant::now()));
            }
        })
        .await
        .expect("device connects");
        d.client
            .subscribe("$iothub/twin/PATCH/properties/desired/#", QoS::AtMostOnce)
            .await
            .unwrap();
        conns.push(d);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cs =
        format!("HostName={ip}:8443;SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY}");
    let client = ironedge_hub::client::HubClient::new(&cs, None, ca).unwrap();
    let mut lat = Vec::with_capacity(samples);
    for s in 0..samples {
        let i = s % devices;
        let sent = Instant::now();
        client
            .call(
                reqwest::Method::PATCH,
                &format!("/twins/{}", device_id(i)),
                Some(&json!({"properties": {"desired": {"n": s}}})),
                &[],
            )
            .await
            .unwrap();
        let (who, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(who, i, "the patched device got the notification");
        lat.push(at.duration_since(sent).as_secs_f64() * 1000.0);
    }
    disconnect_all(conns).await;
    lat.sort_by(f64::total_cmp);
    (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.iter().sum::<f64>() / lat.len() as f64,
    )
}

/// Connects `n` idle devices; returns (held, seconds to connect all).
async fn hold(ip: IpAddr, tls: &Arc<rustls::ClientConfig>, n: usize) -> (Vec<Device>, f64) {
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(128));
    let mut joins = Vec::new();
    for i in 0..n {
        let (sem, tls) = (sem.clone(), tls.clone());
        joins.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            connect(ip, &tls, &device_id(i), 4, |_| {}).await
        }));
    }
    let mut held = Vec::new();
    for (i, j) in joins.into_iter().enumerate() {
        if let Ok(Some(d)) = j.await {
            held.push(d);
        }
        if (i + 1) % 2000 == 0 {
            eprintln!("  … {} / {n} connected", held.len());
        }
    }
    (held, start.elapsed().as_secs_f64())
}

async fn connections_gauge(ip: IpAddr, ca: &str) -> String {
    let cs =
        format!("HostName={ip}:8443;SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY}");
    let client = ironedge_hub::client::HubClient::new(&cs, None, ca).unwrap();
    let m = client
        .send(reqwest::Method::GET, "/metrics", None, &[])
        .await
        .unwrap();
    let text = m.body.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find(|l| l.starts_with("ironedge_hub_connections "))
        .unwrap_or("?")
        .to_owned()
}

async fn drive(args: Args) {
    ironedge_pki::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let devices = args.connections.max(1000);
    eprintln!(
        "creating {devices} devices and starting the hub on {} …",
        args.ip
    );
    // A profiler can wrap the hub process, e.g. IRONEDGE_LOAD_HUB_WRAPPER="heaptrack -o /tmp/hub".
    let wrapper: Vec<String> = std::env::var("IRONEDGE_LOAD_HUB_WRAPPER")
        .map(|w| w.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let exe = std::env::current_exe().unwrap().display().to_string();
    let (program, wrapper_args) = match wrapper.split_first() {
        Some((p, rest)) => (p.clone(), [rest, &[exe]].concat()),
        None => (exe, Vec::new()),
    };
    let pid_of_hub = !wrapper.is_empty();
    let mut child = tokio::process::Command::new(program)
        .args(wrapper_args)
        .args([
            "serve-hub",
            &dir.path().display().to_string(),
            &args.ip.to_string(),
            &devices.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut pid = child.id().unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = out.next_line().await.unwrap() {
        if let Some(p) = line.strip_prefix("ready ") {
            if pid_of_hub {
                pid = p.parse().unwrap();
            }
            break;
        }
    }
    let ca = std::fs::read_to_string(ca_path(dir.path())).unwrap();
    let tls = ironedge_pki::client_config(&ca, None).unwrap();

    println!(
        "ironedge hub load: hub in its own process on {}:8883, 2 cores shared with the clients",
        args.ip
    );
    println!(
        "clients: rumqttc 0.25, MQTT 3.1.1 over TLS, QoS 1, 64-byte JSON bodies; storage: SQLite WAL, synchronous=FULL"
    );
    println!();
    let before = rss_kib(pid);
    let (held, secs) = hold(args.ip, &tls, args.connections).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid);
    let gauge = connections_gauge(args.ip, &ca).await;
    println!(
        "idle connections held: {} of {} (connected in {secs:.1} s; hub reports `{gauge}`)",
        held.len(),
        args.connections
    );
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / held.len().max(1) as f64;
    println!(
        "hub memory: {:.1} MiB before, {:.1} MiB with the idle connections: {:.1} KiB per idle TLS connection",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per / 1024.0
    );
    disconnect_all(held).await;
    if args.idle_only {
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
        return;
    }
    for n in [100, 1000] {
        let (rate, count) = ingest(args.ip, &tls, n, args.ingest_secs).await;
        println!(
            "telemetry ingest, {n:>4} devices: {rate:>9.0} msgs/s stored and acknowledged ({count} in {} s)",
            args.ingest_secs
        );
    }
    let (p50, p99, mean) = latency(args.ip, &tls, &ca, args.latency_samples).await;
    println!(
        "desired patch (REST PATCH) -> device notification, {} samples: p50 {p50:.2} ms, p99 {p99:.2} ms, mean {mean:.2} ms",
        args.latency_samples
    );
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
}

fn ca_path(dir: &Path) -> PathBuf {
    dir.join("tls").join("ca.pem")
}
