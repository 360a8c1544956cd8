//! `ironedge edgehub bench`: the edge hub's load tool. In one run it measures, with the same
//! client (rumqttc) and the same message sizes:
//!
//! - module→module QoS 1 throughput and p50/p99 latency through the edge hub (TLS, routing and
//!   the durable store on), and through mosquitto doing plain pub/sub over TLS;
//! - the edge hub's RSS idle and at 1 000 msg/s, and with many idle module connections (and
//!   mosquitto's with as many clients);
//! - the replay rate of a backlog to the cloud after an outage, twice: to a stand-in cloud that
//!   acknowledges at once (the edge hub's drain rate) and through mosquitto to a QoS 1
//!   subscriber (what a broker that also forwards makes of it).
//!
//! Servers run as child processes on 127.0.0.x so their memory is measured alone. Nothing here is
//! a pass/fail test: it prints figures.

// The figures are this tool's output.
#![allow(clippy::print_stdout)]

mod connections;
mod counting_cloud;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use ironedge_protocol::{Identity, KeyPair, SasToken};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::process::ExitCode;
use tokio::process::{Child, Command};

/// Load tool options.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Messages per throughput run.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Message sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [256usize, 4096])]
    sizes: Vec<usize>,
    /// Messages queued during the simulated outage before the replay is measured.
    #[arg(long, default_value_t = 100_000)]
    replay_messages: usize,
    /// Store-and-forward time to live of the replayed messages, in seconds (0: none). With a TTL
    /// the store also keeps an expiry index, which every acknowledgement updates.
    #[arg(long, default_value_t = 7200)]
    replay_ttl_secs: u64,
    /// Loopback address the servers bind.
    #[arg(long, default_value = "127.0.0.77")]
    address: String,
    /// The mosquitto binary.
    #[arg(long, default_value = "mosquitto")]
    mosquitto: PathBuf,
    /// Skip the mosquitto runs (figures for the edge hub only).
    #[arg(long)]
    no_mosquitto: bool,
    /// Idle module connections held open to measure memory per connection (0: skip).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
}

const HUB: &str = "bench-hub.azure-devices.net";
/// Unacknowledged QoS 1 messages per client, the same for the clients and for mosquitto.
const CLIENT_INFLIGHT: u16 = 100;
const EDGE: &str = "bench-edge";
/// The sender's and the receiver's identities.
const IDENTITIES: &str = "identities.json";
/// Those and the idle modules' (`conn-0`…), for the memory-per-connection run.
const IDENTITIES_WITH_IDLE: &str = "identities-with-idle.json";

/// Certificates and keys for the run.
struct Fixture {
    dir: tempfile::TempDir,
    ca_pem: String,
    sender: KeyPair,
    receiver: KeyPair,
    /// Keys of the modules `conn-0`… that only connect.
    idle: Vec<KeyPair>,
}

impl Fixture {
    fn new(address: &str, idle_modules: usize) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
        let ca = ironedge_pki::CertificateAuthority::new_root("bench CA", later)?;
        let server = ca.issue_server(&[address, "localhost"], later)?;
        std::fs::write(dir.path().join("ca.pem"), ca.root_pem())?;
        std::fs::write(dir.path().join("server.pem"), &server.chain_pem)?;
        std::fs::write(dir.path().join("server.key"), &server.key_pem)?;
        let sender = KeyPair::generate();
        let receiver = KeyPair::generate();
        let idle: Vec<KeyPair> = (0..idle_modules).map(|_| KeyPair::generate()).collect();
        let mut identities = vec![
            serde_json::json!({"deviceId": EDGE, "moduleId": "sender", "primaryKey": sender.primary.to_base64()}),
            serde_json::json!({"deviceId": EDGE, "moduleId": "receiver", "primaryKey": receiver.primary.to_base64()}),
        ];
        std::fs::write(
            dir.path().join(IDENTITIES),
            serde_json::Value::Array(identities.clone()).to_string(),
        )?;
        identities.extend(idle.iter().enumerate().map(|(i, keys)| {
            serde_json::json!({"deviceId": EDGE, "moduleId": format!("conn-{i}"), "primaryKey": keys.primary.to_base64()})
        }));
        std::fs::write(
            dir.path().join(IDENTITIES_WITH_IDLE),
            serde_json::Value::Array(identities).to_string(),
        )?;
        Ok(Self {
            dir,
            ca_pem: ca.root_pem(),
            sender,
            receiver,
            idle,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>> {
        Ok(ironedge_pki::client_config(&self.ca_pem, None)?)
    }

    fn server_tls(&self) -> Result<Arc<rustls::ServerConfig>> {
        let chain = std::fs::read_to_string(self.path("server.pem"))?;
        let key = std::fs::read_to_string(self.path("server.key"))?;
        Ok(ironedge_pki::server_config(&chain, &key)?)
    }
}

/// How a client logs in.
#[derive(Clone)]
struct Login {
    client_id: String,
    username: Option<String>,
    password: Option<String>,
}

fn module_login(module: &str, keys: &KeyPair) -> Login {
    let identity = Identity::module(EDGE, module);
    let expiry = unix_now() + 3600;
    let token = SasToken::build(&identity.resource_uri(HUB), &keys.primary, expiry, None);
    Login {
        client_id: identity.client_id(),
        username: Some(identity.username(HUB, "2021-04-12")),
        password: Some(token.to_string()),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0))
}

fn client(
    login: &Login,
    host: &str,
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
) -> (AsyncClient, rumqttc::EventLoop) {
    let mut opts = MqttOptions::new(login.client_id.clone(), host, port);
    if let (Some(u), Some(p)) = (&login.username, &login.password) {
        opts.set_credentials(u.clone(), p.clone());
    }
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_clean_session(true);
    opts.set_inflight(CLIENT_INFLIGHT);
    opts.set_max_packet_size(300 * 1024, 300 * 1024);
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls.clone())));
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    // rumqttc leaves Nagle on: small PUBLISHes would wait for the previous segment's ACK.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// Waits for the CONNACK (and the SUBACK when subscribing).
async fn wait_ready(eventloop: &mut rumqttc::EventLoop, want_suback: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut connected = false;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(20), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                connected = true;
                if !want_suback {
                    return Ok(());
                }
            }
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) if connected => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!("client could not connect: {e}"),
            Err(_) => break,
        }
    }
    bail!("client did not get ready in time")
}

/// One pub/sub run's figures.
struct RunFigures {
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl RunFigures {
    /// One row of the throughput table.
    fn print_row(&self, run: &str, size: usize) {
        println!(
            "{:<34} {:>8} {:>12.0} {:>9.2} {:>9.2}",
            run, size, self.throughput, self.p50_ms, self.p99_ms
        );
    }
}

/// Publishes `n` messages of `size` bytes at QoS 1 as fast as acks allow (or at `rate` msg/s),
/// receives them, and measures.
#[allow(clippy::too_many_arguments)]
async fn pubsub(
    host: &str,
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
    sender: &Login,
    receiver: &Login,
    pub_topic: &str,
    sub_filter: &str,
    n: usize,
    size: usize,
    rate: Option<u32>,
) -> Result<RunFigures> {
    let (rx_client, mut rx_loop) = client(receiver, host, port, tls);
    rx_client.subscribe(sub_filter, QoS::AtLeastOnce).await?;
    wait_ready(&mut rx_loop, true).await?;
    let (tx_client, mut tx_loop) = client(sender, host, port, tls);
    wait_ready(&mut tx_loop, false).await?;

    let receiving = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(n);
        let mut first = None;
        let mut last = Instant::now();
        while latencies.len() < n {
            match tokio::time::timeout(Duration::from_secs(30), rx_loop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    let now = now_nanos();
                    let sent = p
                        .payload
                        .get(..8)
                        .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
                    latencies.push(now.saturating_sub(sent));
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => break,
            }
        }
        (latencies, first, last)
    });
    let sending = tokio::spawn(async move {
        let started = Instant::now();
        while tx_loop.poll().await.is_ok() {}
        started
    });
    let start = Instant::now();
    let mut payload = vec![0u8; size.max(8)];
    for i in 0..n {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
            tokio::time::sleep_until(due.into()).await;
        }
        payload[..8].copy_from_slice(&now_nanos().to_be_bytes());
        tx_client
            .publish(pub_topic, QoS::AtLeastOnce, false, payload.clone())
            .await?;
    }
    let (mut latencies, first, last) = receiving.await?;
    let _ = tx_client.disconnect().await;
    let _ = rx_client.disconnect().await;
    sending.abort();
    if latencies.len() < n {
        bail!("only {} of {n} messages arrived", latencies.len());
    }
    let elapsed = last.duration_since(first.map_or(start, |f| f.min(start)));
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize] as f64 / 1e6;
    Ok(RunFigures {
        throughput: n as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

/// A child server process, killed on drop.
struct Server {
    child: Child,
}

impl Server {
    fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn wait_port(host: &str, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect((host, port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{host}:{port} did not open")
}

fn free_port(host: &str) -> Result<u16> {
    let l = std::net::TcpListener::bind((host, 0)).with_context(|| format!("binding {host}"))?;
    Ok(l.local_addr()?.port())
}

async fn start_edgehub(
    fx: &Fixture,
    host: &str,
    port: u16,
    store: &Path,
    routes: &str,
    upstream: Option<u16>,
    identities: &str,
) -> Result<Server> {
    std::fs::write(fx.path("routes.json"), routes)?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("edgehub")
        .args(["--device-id", EDGE, "--hub-host-name", HUB])
        .args(["--listen", &format!("{host}:{port}")])
        .args(["--metrics-listen", &format!("{host}:0")])
        .arg("--store")
        .arg(store)
        .arg("--tls-cert")
        .arg(fx.path("server.pem"))
        .arg("--tls-key")
        .arg(fx.path("server.key"))
        .arg("--identities")
        .arg(fx.path(identities))
        .arg("--routes")
        .arg(fx.path("routes.json"))
        // The outage is staged: the upstream link's failures are expected here.
        .env("RUST_LOG", "warn,ironedge_upstream=error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(up) = upstream {
        cmd.args(["--upstream", &format!("{host}:{up}")])
            .arg("--upstream-ca")
            .arg(fx.path("ca.pem"));
    }
    let child = cmd.spawn().context("starting the edge hub")?;
    wait_port(host, port).await?;
    Ok(Server { child })
}

/// Starts mosquitto with `inflight` unacknowledged QoS 1 messages per client (0: no limit).
async fn start_mosquitto(
    bin: &Path,
    fx: &Fixture,
    host: &str,
    port: u16,
    inflight: u16,
) -> Result<Server> {
    let conf = fx.path(&format!("mosquitto-{port}.conf"));
    let text = format!(
        "listener {port} {host}\nallow_anonymous true\npersistence false\nmax_inflight_messages {inflight}\nmax_queued_messages 0\nset_tcp_nodelay true\n\
         cafile {}\ncertfile {}\nkeyfile {}\ntls_version tlsv1.2\nlog_type error\n",
        fx.path("ca.pem").display(),
        fx.path("server.pem").display(),
        fx.path("server.key").display()
    );
    std::fs::write(&conf, text)?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (install it with scripts/install-mqtt-clients)",
                bin.display()
            )
        })?;
    wait_port(host, port).await?;
    Ok(Server { child })
}

fn plain_login(id: &str) -> Login {
    Login {
        client_id: id.to_owned(),
        username: None,
        password: None,
    }
}

const M2M_ROUTES: &str = r#"{"routes": {"m2m": "FROM /messages/modules/sender/outputs/out INTO BrokeredEndpoint(\"/modules/receiver/inputs/in\")"}}"#;

/// Runs the load tool and prints the figures.
pub(crate) async fn run(args: BenchArgs) -> Result<ExitCode> {
    let host = args.address.as_str();
    let fx = Fixture::new(host, args.connections)?;
    let tls = fx.tls()?;
    let sender = module_login("sender", &fx.sender);
    let receiver = module_login("receiver", &fx.receiver);
    let pub_topic = format!("devices/{EDGE}/modules/sender/messages/events/%24.on=out");
    let sub_filter = format!("devices/{EDGE}/modules/receiver/inputs/#");

    let hub_port = free_port(host)?;
    let hub = start_edgehub(
        &fx,
        host,
        hub_port,
        &fx.path("edgehub.redb"),
        M2M_ROUTES,
        None,
        IDENTITIES,
    )
    .await?;
    // Let the process settle before reading its idle memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = hub.rss_kib();

    let mosquitto = if args.no_mosquitto {
        None
    } else {
        let port = free_port(host)?;
        Some((
            start_mosquitto(&args.mosquitto, &fx, host, port, CLIENT_INFLIGHT).await?,
            port,
        ))
    };

    println!(
        "ironedge edgehub bench: {} messages per run, QoS 1, TLS 1.2/1.3, client rumqttc, servers on {host}",
        args.messages
    );
    println!();
    println!(
        "{:<34} {:>8} {:>12} {:>9} {:>9}",
        "run", "size", "msg/s", "p50 ms", "p99 ms"
    );
    let mut ratios = HashMap::new();
    for &size in &args.sizes {
        let edge = pubsub(
            host,
            hub_port,
            &tls,
            &sender,
            &receiver,
            &pub_topic,
            &sub_filter,
            args.messages,
            size,
            None,
        )
        .await?;
        edge.print_row("edge hub (routes + durable store)", size);
        if let Some((_, port)) = &mosquitto {
            let m = pubsub(
                host,
                *port,
                &tls,
                &plain_login("bench-sender"),
                &plain_login("bench-receiver"),
                "bench/m2m",
                "bench/m2m",
                args.messages,
                size,
                None,
            )
            .await?;
            m.print_row("mosquitto 2 (plain pub/sub)", size);
            ratios.insert(size, edge.throughput / m.throughput);
        }
    }
    for &size in &args.sizes {
        if let Some(r) = ratios.get(&size) {
            println!("throughput edge hub / mosquitto at {size} B: {r:.2}x");
        }
    }

    // Memory at a steady 1 000 msg/s for 10 s.
    let steady = pubsub(
        host,
        hub_port,
        &tls,
        &sender,
        &receiver,
        &pub_topic,
        &sub_filter,
        10_000,
        1024,
        Some(1000),
    )
    .await;
    let load_rss = hub.rss_kib();
    drop(hub);
    let hub_connections = if args.connections > 0 {
        Some(hub_rss_with_connections(&fx, host, &tls).await)
    } else {
        None
    };
    let mosquitto_connections = match (&mosquitto, args.connections) {
        (Some((server, port)), n) if n > 0 => {
            let logins = (0..n)
                .map(|i| {
                    (
                        plain_login(&format!("bench-conn-{i}")),
                        format!("bench/conn/{i}"),
                    )
                })
                .collect();
            Some(connections::rss_with_connections(server, host, *port, &tls, logins).await)
        }
        _ => None,
    };
    println!();
    let kib =
        |v: Option<u64>| v.map_or("n/a".to_owned(), |k| format!("{:.1} MB", k as f64 / 1024.0));
    println!("edge hub RSS idle: {}", kib(idle_rss));
    match steady {
        Ok(f) => println!(
            "edge hub RSS at 1000 msg/s (1 KiB): {} (p50 {:.2} ms, p99 {:.2} ms)",
            kib(load_rss),
            f.p50_ms,
            f.p99_ms
        ),
        Err(e) => println!("edge hub RSS at 1000 msg/s: run failed: {e}"),
    }
    for (name, figures) in [
        ("edge hub", hub_connections),
        ("mosquitto", mosquitto_connections),
    ] {
        match figures {
            Some(Ok(rss)) => println!("{}", connections::describe(name, args.connections, rss)),
            Some(Err(e)) => println!(
                "{name} RSS with {} connections: run failed: {e:#}",
                args.connections
            ),
            None => {}
        }
    }

    // Replay: queue a backlog for $upstream with the cloud down, then bring the cloud up.
    let with_mosquitto = mosquitto.is_some();
    drop(mosquitto);
    let n = args.replay_messages;
    let replay = Replay {
        fx: &fx,
        host,
        tls: &tls,
        sender: &sender,
        topic: &pub_topic,
        ttl_secs: args.replay_ttl_secs,
    };
    let (rate, got) = replay.run("replay-ack.redb", n, Cloud::Counting).await?;
    println!(
        "replay to the cloud after an outage: {got} of {n} messages at {rate:.0} msg/s (stand-in cloud acknowledges at once)"
    );
    if with_mosquitto {
        let cloud = Cloud::Mosquitto(&args.mosquitto);
        let (rate, got) = replay.run("replay-mosquitto.redb", n, cloud).await?;
        println!(
            "replay through mosquitto to a QoS 1 subscriber: {got} of {n} messages at {rate:.0} msg/s"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// RSS of a fresh edge hub that knows the idle modules' identities, before and with all of them
/// connected (KiB).
async fn hub_rss_with_connections(
    fx: &Fixture,
    host: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(u64, u64)> {
    let port = free_port(host)?;
    let store = fx.path("connections.redb");
    let hub = start_edgehub(
        fx,
        host,
        port,
        &store,
        M2M_ROUTES,
        None,
        IDENTITIES_WITH_IDLE,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let logins = fx
        .idle
        .iter()
        .enumerate()
        .map(|(i, keys)| {
            let module = format!("conn-{i}");
            let filter = format!("devices/{EDGE}/modules/{module}/inputs/#");
            (module_login(&module, keys), filter)
        })
        .collect();
    connections::rss_with_connections(&hub, host, port, tls, logins).await
}

/// What stands in for the cloud during a replay.
enum Cloud<'a> {
    /// Our broker core acknowledging every message at once, in this process.
    Counting,
    /// mosquitto (this binary), with a QoS 1 subscriber counting what it forwards.
    Mosquitto(&'a Path),
}

/// One replay run's setting.
struct Replay<'a> {
    fx: &'a Fixture,
    host: &'a str,
    tls: &'a Arc<rustls::ClientConfig>,
    sender: &'a Login,
    topic: &'a str,
    ttl_secs: u64,
}

impl Replay<'_> {
    /// Queues `n` messages for `$upstream` with the cloud down, starts the cloud and measures the
    /// drain: (msg/s, messages that arrived).
    async fn run(&self, store: &str, n: usize, cloud: Cloud<'_>) -> Result<(f64, usize)> {
        let cloud_port = free_port(self.host)?;
        let hub_port = free_port(self.host)?;
        let routes = format!(
            r#"{{"routes": {{"up": "FROM /messages/modules/sender/* INTO $upstream"}}, "storeAndForward": {{"timeToLiveSecs": {}}}}}"#,
            self.ttl_secs
        );
        let hub = start_edgehub(
            self.fx,
            self.host,
            hub_port,
            &self.fx.path(store),
            &routes,
            Some(cloud_port),
            IDENTITIES,
        )
        .await?;
        fill_backlog(self.host, hub_port, self.tls, self.sender, self.topic, n).await?;
        let figures = match cloud {
            Cloud::Counting => {
                let listener = tokio::net::TcpListener::bind((self.host, cloud_port)).await?;
                let cloud = counting_cloud::CountingCloud::start(listener, self.fx.server_tls()?);
                cloud.count(n, REPLAY_STALL).await
            }
            Cloud::Mosquitto(bin) => {
                // No inflight limit towards the subscriber: its window would be the bound.
                let _cloud = start_mosquitto(bin, self.fx, self.host, cloud_port, 0).await?;
                count_replay(self.host, cloud_port, self.tls, n).await?
            }
        };
        drop(hub);
        Ok(figures)
    }
}

/// Publishes `n` small messages (acknowledged = stored) while the cloud is down.
async fn fill_backlog(
    host: &str,
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
    sender: &Login,
    topic: &str,
    n: usize,
) -> Result<()> {
    let (c, mut ev) = client(sender, host, port, tls);
    wait_ready(&mut ev, false).await?;
    let acks = tokio::spawn(async move {
        let mut acked = 0;
        while acked < n {
            match tokio::time::timeout(Duration::from_secs(30), ev.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) => {}
                _ => break,
            }
        }
        acked
    });
    let payload = vec![7u8; 256];
    for _ in 0..n {
        c.publish(topic, QoS::AtLeastOnce, false, payload.clone())
            .await?;
    }
    let acked = acks.await?;
    let _ = c.disconnect().await;
    if acked < n {
        bail!("only {acked} of {n} backlog messages were acknowledged");
    }
    Ok(())
}

/// How long the replay may go without a message before the tool reports what arrived.
const REPLAY_STALL: Duration = Duration::from_secs(30);

/// Subscribes on the stand-in cloud and measures how fast the backlog arrives.
async fn count_replay(
    host: &str,
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
    n: usize,
) -> Result<(f64, usize)> {
    let (c, mut ev) = client(&plain_login("bench-cloud"), host, port, tls);
    // QoS 1: mosquitto drops QoS 0 messages for a subscriber that falls behind, which would
    // count as lost messages here.
    c.subscribe("devices/#", QoS::AtLeastOnce).await?;
    wait_ready(&mut ev, true).await?;
    let mut got = 0;
    let mut first = None;
    let mut last = Instant::now();
    // Keepalive traffic must not keep a stalled replay waiting: the limit is on publishes.
    while got < n && last.elapsed() < REPLAY_STALL {
        match tokio::time::timeout(REPLAY_STALL, ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => {
                got += 1;
                first.get_or_insert_with(Instant::now);
                last = Instant::now();
            }
            Ok(Ok(_)) => {}
            _ => break,
        }
    }
    let elapsed = first.map_or(Duration::ZERO, |f| last.duration_since(f));
    Ok((got as f64 / elapsed.as_secs_f64().max(1e-9), got))
}
