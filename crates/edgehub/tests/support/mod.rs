//! Test harness: a real edge hub (in-process, on its own loopback address and port 8883, with MQTT
//! over WebSocket on port 443 of a second address), a real workload API on a unix socket, a test
//! CA, and real SDK module processes.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

pub mod cloud;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ironedge_edgehub::config::HubConfig;
use ironedge_edgehub::config_source::ConfigSource;
use ironedge_edgehub::hub::HubSettings;
use ironedge_edgehub::identities::IdentityEntry;
use ironedge_edgehub::runtime::EdgeHubOptions;
use ironedge_edgehub::upstream::UpstreamSettings;
use ironedge_protocol::{Identity, KeyPair, SasToken};
use ironedge_workload::{
    AnyLocalCaller, MemoryKeyStore, ModuleKeys, StaticTrustBundle, Workload, WorkloadListener,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::oneshot;

pub const HUB: &str = "testhub.azure-devices.net";
pub const EDGE: &str = "edge1";

/// The venv python with azure-iot-device 2.14.0 and paho-mqtt: `IRONEDGE_PYTHON` (set by
/// `scripts/test`), else what `scripts/python-env` creates.
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| from_env_or_script("IRONEDGE_PYTHON", "python-env"))
}

/// The directory whose `node_modules` holds the pinned `azure-iot-device` and
/// `azure-iot-device-mqtt` (tests/node/package-lock.json): `IRONEDGE_NODE_SDK` (set by
/// `scripts/test`), else what `scripts/node-env` installs. A missing install fails the test.
pub fn node_sdk() -> &'static Path {
    static SDK: OnceLock<PathBuf> = OnceLock::new();
    SDK.get_or_init(|| {
        let dir = from_env_or_script("IRONEDGE_NODE_SDK", "node-env");
        for package in ["azure-iot-device", "azure-iot-device-mqtt"] {
            let manifest = dir.join("node_modules").join(package).join("package.json");
            assert!(
                manifest.is_file(),
                "{} is missing: run scripts/node-env and set IRONEDGE_NODE_SDK to the \
                 directory it prints",
                manifest.display()
            );
        }
        dir
    })
}

/// The path in `var`, else the one `scripts/<script>` prints (it installs what is missing).
fn from_env_or_script(var: &str, script: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(script);
    let out = std::process::Command::new("bash")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{script} failed (run it by hand to see why): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A loopback address of its own for each test (the SDK always dials port 8883).
pub fn loopback() -> Ipv4Addr {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Ipv4Addr::new(127, 10 + (pid % 200) as u8, (pid / 200 % 250) as u8, n)
}

/// The test CA and the edge hub's server certificate.
pub struct Pki {
    pub ca_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new(names: &[&str]) -> Self {
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
        let ca = ironedge_pki::CertificateAuthority::new_root("edgehub test CA", later).unwrap();
        let server = ca.issue_server(names, later).unwrap();
        Self {
            ca_pem: ca.root_pem(),
            chain_pem: server.chain_pem,
            key_pem: server.key_pem,
        }
    }
}

/// A module identity with its keys.
#[derive(Clone)]
pub struct Module {
    pub name: String,
    pub keys: KeyPair,
}

impl Module {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            keys: KeyPair::generate(),
        }
    }

    pub fn identity(&self) -> Identity {
        Identity::module(EDGE, self.name.clone())
    }

    pub fn entry(&self) -> IdentityEntry {
        IdentityEntry {
            device_id: EDGE.into(),
            module_id: Some(self.name.clone()),
            primary_key: self.keys.primary.to_base64(),
            secondary_key: Some(self.keys.secondary.to_base64()),
        }
    }

    /// A SAS token as the SDK would build it.
    pub fn token(&self, ttl: u64) -> String {
        let expiry = jiff::Timestamp::now().as_second() as u64 + ttl;
        SasToken::build(
            &self.identity().resource_uri(HUB),
            &self.keys.primary,
            expiry,
            None,
        )
        .to_string()
    }

    pub fn username(&self) -> String {
        self.identity().username(HUB, "2021-04-12")
    }
}

/// Messages the hub dropped for `reason` (`no_route`, `too_large`, ...).
pub fn dropped(hub: &ironedge_edgehub::hub::Hub, reason: &str) -> u64 {
    hub.metrics()
        .messages_dropped
        .get_or_create(&ironedge_edgehub::metrics::ReasonLabel {
            reason: reason.into(),
        })
        .get()
}

/// How an SDK module reaches the edge hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleTransport {
    /// MQTT over TLS on port 8883 of [`EdgeHub::addr`].
    Mqtt,
    /// MQTT over WebSocket over TLS on port 443 of [`EdgeHub::websocket_addr`] (the SDK's
    /// `websockets=True`).
    WebSocket,
}

/// Which real SDK a module process runs; both speak the same JSON-lines protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleLanguage {
    /// tests/module_client.py on `azure-iot-device` 2.14.0 (PyPI).
    Python,
    /// tests/node/module_client.js on `azure-iot-device` + `azure-iot-device-mqtt` (npm).
    Node,
}

/// A running edge hub with its workload API.
pub struct EdgeHub {
    pub dir: tempfile::TempDir,
    /// Plain MQTT (8883) only.
    pub addr: Ipv4Addr,
    /// MQTT over WebSocket (443) only: a module told to use this gateway host cannot have
    /// reached the plain MQTT listener.
    pub websocket_addr: Ipv4Addr,
    pub pki: Pki,
    pub workload_uri: String,
    pub hub: ironedge_edgehub::hub::Hub,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    workload_stop: Option<oneshot::Sender<()>>,
}

/// What a test edge hub is built from.
pub struct EdgeHubSpec {
    pub modules: Vec<Module>,
    pub routes: Value,
    pub upstream: Option<UpstreamSettings>,
    pub registry: Option<ironedge_edgehub::registry::RegistrySettings>,
}

impl EdgeHub {
    pub async fn start(spec: EdgeHubSpec) -> Self {
        let config: HubConfig = serde_json::from_value(spec.routes.clone()).unwrap();
        Self::start_with_source(spec, ConfigSource::Static(config)).await
    }

    /// As [`EdgeHub::start`] with routes from `source` (`spec.routes` is ignored).
    pub async fn start_with_source(spec: EdgeHubSpec, source: ConfigSource) -> Self {
        ironedge_pki::install_default_provider();
        let addr = loopback();
        let websocket_addr = loopback();
        let pki = Pki::new(&[&addr.to_string(), &websocket_addr.to_string(), "localhost"]);
        let dir = tempfile::tempdir().unwrap();

        let keys = MemoryKeyStore::default();
        for m in &spec.modules {
            keys.insert(
                &m.name,
                ModuleKeys::new(
                    Some("gen1".into()),
                    m.keys.primary.as_bytes().to_vec(),
                    m.keys.secondary.as_bytes().to_vec(),
                ),
            );
        }
        let workload = Workload::new(
            Arc::new(keys),
            Arc::new(StaticTrustBundle::new(pki.ca_pem.clone())),
            Arc::new(AnyLocalCaller),
        );
        let workload_uri = format!("unix://{}/workload.sock", dir.path().display());
        let listener = WorkloadListener::bind(&workload_uri).await.unwrap();
        let (workload_stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(ironedge_workload::serve(listener, workload, async {
            let _ = stopped.await;
        }));

        let mqtt = tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(addr), 8883))
            .await
            .unwrap();
        // The SDK always dials port 443 for MQTT over WebSocket.
        let websocket =
            tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(websocket_addr), 443))
                .await
                .unwrap();
        let tls = ironedge_pki::server_config(&pki.chain_pem, &pki.key_pem).unwrap();
        let settings = HubSettings::new(EDGE, HUB);
        let options = EdgeHubOptions {
            settings,
            store_path: dir.path().join("edgehub.redb"),
            store_config: ironedge_store::Config::default(),
            // With a registry the edge hub must learn the keys from the cloud, not from us.
            identities: if spec.registry.is_some() {
                Vec::new()
            } else {
                spec.modules.iter().map(Module::entry).collect()
            },
            mqtt,
            websocket: Some(websocket),
            tls,
            http: None,
            upstream: spec.upstream,
            config: source,
            mqtt_config: ironedge_mqtt::MqttConfig::default(),
            registry: spec.registry,
        };
        let (hub_tx, hub_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let result = run_capturing(options, hub_tx, async {
                let _ = stopped.await;
            })
            .await;
            if let Err(e) = result {
                eprintln!("edge hub stopped with an error: {e}");
            }
        });
        let hub = hub_rx.await.expect("edge hub started");
        Self {
            dir,
            addr,
            websocket_addr,
            pki,
            workload_uri,
            hub,
            stop: Some(stop),
            task: Some(task),
            workload_stop: Some(workload_stop),
        }
    }

    /// Environment for an SDK module process, exactly as the agent injects it.
    pub fn module_env(&self, module: &Module) -> Vec<(String, String)> {
        self.module_env_over(module, ModuleTransport::Mqtt)
    }

    /// As [`EdgeHub::module_env`], with the gateway host serving `transport` and, for WebSocket,
    /// `MODULE_CLIENT_WEBSOCKETS=1` for module_client.py and module_client.js.
    pub fn module_env_over(
        &self,
        module: &Module,
        transport: ModuleTransport,
    ) -> Vec<(String, String)> {
        let gateway = match transport {
            ModuleTransport::Mqtt => self.addr,
            ModuleTransport::WebSocket => self.websocket_addr,
        };
        let mut env: Vec<(String, String)> = vec![
            ("IOTEDGE_IOTHUBHOSTNAME".into(), HUB.into()),
            ("IOTEDGE_DEVICEID".into(), EDGE.into()),
            ("IOTEDGE_MODULEID".into(), module.name.clone()),
            ("IOTEDGE_GATEWAYHOSTNAME".into(), gateway.to_string()),
            ("IOTEDGE_MODULEGENERATIONID".into(), "gen1".into()),
            ("IOTEDGE_WORKLOADURI".into(), self.workload_uri.clone()),
            ("IOTEDGE_APIVERSION".into(), "2019-01-30".into()),
            ("IOTEDGE_AUTHSCHEME".into(), "sasToken".into()),
        ];
        if transport == ModuleTransport::WebSocket {
            env.push(("MODULE_CLIENT_WEBSOCKETS".into(), "1".into()));
        }
        env
    }

    pub fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, &self.pki.ca_pem).unwrap();
        path
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        if let Some(s) = self.workload_stop.take() {
            let _ = s.send(());
        }
    }
}

/// Runs the edge hub and hands out its [`Hub`] once started (tests read its metrics).
async fn run_capturing(
    options: EdgeHubOptions,
    hub_tx: oneshot::Sender<ironedge_edgehub::hub::Hub>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ironedge_edgehub::runtime::RunError> {
    ironedge_edgehub::runtime::run_with(options, shutdown, move |hub| {
        let _ = hub_tx.send(hub.clone());
    })
    .await
}

/// A running SDK module process whose stdout is one JSON object per line.
pub struct ModuleProcess {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    pub name: String,
}

impl ModuleProcess {
    pub fn spawn(hub: &EdgeHub, module: &Module, command: &str, arg: Value) -> Self {
        Self::spawn_over(hub, module, ModuleTransport::Mqtt, command, arg)
    }

    /// As [`ModuleProcess::spawn`], connecting over `transport`.
    pub fn spawn_over(
        hub: &EdgeHub,
        module: &Module,
        transport: ModuleTransport,
        command: &str,
        arg: Value,
    ) -> Self {
        Self::spawn_in(ModuleLanguage::Python, hub, module, transport, command, arg)
    }

    /// A Node.js `azure-iot-device` module (tests/node/module_client.js) over MQTT.
    pub fn spawn_node(hub: &EdgeHub, module: &Module, command: &str, arg: Value) -> Self {
        Self::spawn_in(
            ModuleLanguage::Node,
            hub,
            module,
            ModuleTransport::Mqtt,
            command,
            arg,
        )
    }

    /// A module program of `language` connecting over `transport`.
    pub fn spawn_in(
        language: ModuleLanguage,
        hub: &EdgeHub,
        module: &Module,
        transport: ModuleTransport,
        command: &str,
        arg: Value,
    ) -> Self {
        let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        let mut cmd = match language {
            ModuleLanguage::Python => {
                let mut cmd = Command::new(python());
                cmd.arg(tests.join("module_client.py"));
                cmd
            }
            ModuleLanguage::Node => {
                let mut cmd = Command::new("node");
                // The packages live in a cache outside the checkout; NODE_PATH lets require()
                // find them from the script's own directory.
                cmd.env("NODE_PATH", node_sdk().join("node_modules"))
                    .arg(tests.join("node/module_client.js"));
                cmd
            }
        };
        cmd.arg(command).arg(arg.to_string());
        for (k, v) in hub.module_env_over(module, transport) {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the {language:?} module {}: {e}", module.name));
        let stdout = child.stdout.take().unwrap();
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
            name: module.name.clone(),
        }
    }

    /// The next JSON line, or panics after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Value {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{}: no output within {timeout:?}", self.name))
            .unwrap()
            .unwrap_or_else(|| panic!("{}: exited without more output", self.name));
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.name))
    }

    /// Waits for a line with `key`.
    pub async fn expect(&mut self, key: &str, timeout: Duration) -> Value {
        loop {
            let v = self.next(timeout).await;
            if v.get(key).is_some() {
                return v;
            }
            assert!(v.get("timeout").is_none(), "{}: timed out: {v}", self.name);
        }
    }

    /// Waits for the process to exit successfully.
    pub async fn success(mut self, timeout: Duration) {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("module exited")
            .unwrap();
        assert!(status.success(), "{} exited with {status}", self.name);
    }
}

/// A raw MQTT client (rumqttc) logged in as a module, for tests that need no SDK.
pub struct RawModule {
    pub client: rumqttc::AsyncClient,
    pub events: rumqttc::EventLoop,
}

impl RawModule {
    pub async fn connect(hub: &EdgeHub, module: &Module) -> Self {
        let mut opts =
            rumqttc::MqttOptions::new(module.identity().client_id(), hub.addr.to_string(), 8883);
        opts.set_credentials(module.username(), module.token(3600));
        opts.set_clean_session(true);
        let tls = ironedge_pki::client_config(&hub.pki.ca_pem, None).unwrap();
        opts.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
            tls,
        )));
        let (client, mut events) = rumqttc::AsyncClient::new(opts, 100);
        loop {
            match tokio::time::timeout(Duration::from_secs(30), events.poll())
                .await
                .expect("connack")
            {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("{}: cannot connect: {e}", module.name),
            }
        }
        Self { client, events }
    }

    /// Subscribes to the module's inputs and waits for the SUBACK.
    pub async fn subscribe_inputs(&mut self, module: &Module) {
        let filter = format!("devices/{EDGE}/modules/{}/inputs/#", module.name);
        self.client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) = self.poll().await {
                return;
            }
        }
    }

    pub async fn poll(&mut self) -> rumqttc::Event {
        tokio::time::timeout(Duration::from_secs(30), self.events.poll())
            .await
            .expect("mqtt event in time")
            .expect("mqtt connection alive")
    }

    /// Publishes on an output and waits for the PUBACK.
    pub async fn send(&mut self, module: &Module, output: &str, body: &str) {
        let topic = format!(
            "devices/{EDGE}/modules/{}/messages/events/%24.on={output}",
            module.name
        );
        self.client
            .publish(
                topic,
                rumqttc::QoS::AtLeastOnce,
                false,
                body.as_bytes().to_vec(),
            )
            .await
            .unwrap();
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = self.poll().await {
                return;
            }
        }
    }

    /// The next input message: (topic, body).
    pub async fn receive(&mut self) -> (String, String) {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = self.poll().await {
                return (
                    p.topic.clone(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                );
            }
        }
    }
}
