//! Test harness: a real edge hub and a real workload API in-process (each test on its own
//! loopback port), optionally the ironedge cloud hub as its upstream.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use ironedge_edgehub::config::HubConfig;
use ironedge_edgehub::config_source::ConfigSource;
use ironedge_edgehub::hub::HubSettings;
use ironedge_edgehub::identities::IdentityEntry;
use ironedge_edgehub::runtime::EdgeHubOptions;
use ironedge_edgehub::upstream::UpstreamSettings;
use ironedge_module_client::{ClientOptions, EdgeEnvironment, ModuleClient, ModuleEvent};
use ironedge_protocol::KeyPair;
use ironedge_workload::{
    AnyLocalCaller, MemoryKeyStore, ModuleKeys, StaticTrustBundle, Workload, WorkloadListener,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

pub const HUB: &str = "testhub.azure-devices.net";
pub const EDGE: &str = "edge1";
pub const GENERATION: &str = "gen1";
/// How long any single wait may take.
pub const T: Duration = Duration::from_secs(60);

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

    fn entry(&self) -> IdentityEntry {
        IdentityEntry {
            device_id: EDGE.into(),
            module_id: Some(self.name.clone()),
            primary_key: self.keys.primary.to_base64(),
            secondary_key: Some(self.keys.secondary.to_base64()),
        }
    }
}

/// What an edge hub is built from.
pub struct Spec {
    pub modules: Vec<Module>,
    pub routes: Value,
    pub upstream: Option<UpstreamSettings>,
    /// Listen on this address at port 8883 (the Python SDK's fixed port); default: 127.0.0.1 on
    /// any port.
    pub bind: Option<Ipv4Addr>,
}

/// A running edge hub with its workload API.
pub struct EdgeHub {
    pub dir: tempfile::TempDir,
    pub mqtt: SocketAddr,
    pub ca_pem: String,
    pub workload_uri: String,
    pub hub: ironedge_edgehub::hub::Hub,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    workload_stop: Option<oneshot::Sender<()>>,
}

impl EdgeHub {
    pub async fn start(spec: Spec) -> Self {
        ironedge_pki::install_default_provider();
        let dir = tempfile::tempdir().unwrap();
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
        let ca =
            ironedge_pki::CertificateAuthority::new_root("module-client test CA", later).unwrap();
        let ip = spec.bind.unwrap_or(Ipv4Addr::LOCALHOST);
        let ip_name = ip.to_string();
        let server = ca
            .issue_server(&[ip_name.as_str(), "127.0.0.1", "localhost"], later)
            .unwrap();

        let keys = MemoryKeyStore::default();
        for m in &spec.modules {
            keys.insert(
                &m.name,
                ModuleKeys::new(
                    Some(GENERATION.into()),
                    m.keys.primary.as_bytes().to_vec(),
                    m.keys.secondary.as_bytes().to_vec(),
                ),
            );
        }
        let workload = Workload::new(
            Arc::new(keys),
            Arc::new(StaticTrustBundle::new(ca.root_pem())),
            Arc::new(AnyLocalCaller),
        );
        let workload_uri = format!("unix://{}/workload.sock", dir.path().display());
        let listener = WorkloadListener::bind(&workload_uri).await.unwrap();
        let (workload_stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(ironedge_workload::serve(listener, workload, async {
            let _ = stopped.await;
        }));

        let port = if spec.bind.is_some() { 8883 } else { 0 };
        let mqtt = tokio::net::TcpListener::bind(SocketAddr::from((ip, port)))
            .await
            .unwrap();
        let mqtt_addr = mqtt.local_addr().unwrap();
        let tls = ironedge_pki::server_config(&server.chain_pem, &server.key_pem).unwrap();
        let config: HubConfig = serde_json::from_value(spec.routes.clone()).unwrap();
        let options = EdgeHubOptions {
            settings: HubSettings::new(EDGE, HUB),
            store_path: dir.path().join("edgehub.redb"),
            store_config: ironedge_store::Config::default(),
            identities: spec.modules.iter().map(Module::entry).collect(),
            mqtt,
            websocket: None,
            tls,
            http: None,
            upstream: spec.upstream,
            config: ConfigSource::Static(config),
            mqtt_config: ironedge_mqtt::MqttConfig::default(),
            registry: None,
        };
        let (hub_tx, hub_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let result = ironedge_edgehub::runtime::run_with(
                options,
                async {
                    let _ = stopped.await;
                },
                move |hub| {
                    let _ = hub_tx.send(hub.clone());
                },
            )
            .await;
            if let Err(e) = result {
                eprintln!("edge hub stopped with an error: {e}");
            }
        });
        let hub = hub_rx.await.expect("edge hub started");
        Self {
            dir,
            mqtt: mqtt_addr,
            ca_pem: ca.root_pem(),
            workload_uri,
            hub,
            stop: Some(stop),
            task: Some(task),
            workload_stop: Some(workload_stop),
        }
    }

    /// The `IOTEDGE_*` environment the agent would give `module`.
    pub fn module_env(&self, module: &Module) -> Vec<(String, String)> {
        vec![
            ("IOTEDGE_IOTHUBHOSTNAME".into(), HUB.into()),
            ("IOTEDGE_DEVICEID".into(), EDGE.into()),
            ("IOTEDGE_MODULEID".into(), module.name.clone()),
            ("IOTEDGE_GATEWAYHOSTNAME".into(), self.mqtt.to_string()),
            ("IOTEDGE_MODULEGENERATIONID".into(), GENERATION.into()),
            ("IOTEDGE_WORKLOADURI".into(), self.workload_uri.clone()),
            ("IOTEDGE_APIVERSION".into(), "2020-07-07".into()),
            ("IOTEDGE_AUTHSCHEME".into(), "sasToken".into()),
        ]
    }

    /// The environment for an SDK process, which always dials port 8883: the gateway is the
    /// bare address (needs `Spec::bind`).
    pub fn sdk_env(&self, module: &Module) -> Vec<(String, String)> {
        let mut env = self.module_env(module);
        for (k, v) in &mut env {
            if k == "IOTEDGE_GATEWAYHOSTNAME" {
                *v = self.mqtt.ip().to_string();
            }
        }
        env
    }

    /// Starts a client for `module` and waits for its first connection.
    pub async fn client(&self, module: &Module, options: ClientOptions) -> Client {
        let env = EdgeEnvironment::from_vars(self.module_env(module)).unwrap();
        Client::start(&env, options).await
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

/// A started client with its event stream.
pub struct Client {
    pub client: ModuleClient,
    pub events: mpsc::UnboundedReceiver<ModuleEvent>,
}

impl Client {
    pub async fn start(env: &EdgeEnvironment, options: ClientOptions) -> Self {
        let (client, events) = ModuleClient::start(env, options).unwrap();
        tokio::time::timeout(T, client.wait_connected())
            .await
            .expect("connected in time")
            .unwrap();
        Self { client, events }
    }

    /// The next event that `pick` accepts; other events are skipped.
    pub async fn next<R>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(ModuleEvent) -> Option<R>,
    ) -> R {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {T:?}"))
                .unwrap_or_else(|| panic!("event stream ended before {what}"));
            if let Some(r) = pick(event) {
                return r;
            }
        }
    }

    pub async fn input(&mut self) -> ironedge_module_client::InputMessage {
        self.next("input message", |e| match e {
            ModuleEvent::Input(i) => Some(*i),
            _ => None,
        })
        .await
    }
}

/// The ironedge cloud hub, in-process, as the edge hub's upstream.
pub struct Cloud {
    pub started: ironedge_hub::server::Started,
    pub ca_pem: String,
    _dir: tempfile::TempDir,
}

impl Cloud {
    pub async fn start(modules: &[Module]) -> Self {
        use ironedge_hub::server::{ServerSettings, TlsSource, start};
        let dir = tempfile::tempdir().unwrap();
        let settings = ServerSettings {
            database: dir.path().join("hub.db"),
            rest_addr: "127.0.0.1:0".parse().unwrap(),
            mqtt_addr: "127.0.0.1:0".parse().unwrap(),
            websocket_addr: None,
            tls: TlsSource::DevCa {
                dir: dir.path().join("ca"),
                names: vec!["127.0.0.1".into()],
            },
            hub: ironedge_hub::HubSettings {
                hub_names: vec![HUB.into()],
                ..ironedge_hub::HubSettings::default()
            },
        };
        let started = start(settings).await.expect("cloud hub starts");
        let ca_pem = std::fs::read_to_string(started.dev_ca.as_ref().unwrap()).unwrap();
        let edge = serde_json::from_value(json!({"capabilities": {"iotEdge": true}})).unwrap();
        started
            .hub
            .put_device(EDGE.into(), edge, ironedge_hub::registry::IfMatch::Absent)
            .await
            .unwrap();
        for m in modules {
            let request = serde_json::from_value(json!({"authentication": {"type": "sas", "symmetricKey": {
                "primaryKey": m.keys.primary.to_base64(), "secondaryKey": m.keys.secondary.to_base64()}}}))
            .unwrap();
            started
                .hub
                .put_module(
                    EDGE.into(),
                    m.name.clone(),
                    request,
                    ironedge_hub::registry::IfMatch::Absent,
                )
                .await
                .unwrap();
        }
        Self {
            started,
            ca_pem,
            _dir: dir,
        }
    }

    pub fn upstream(&self) -> UpstreamSettings {
        UpstreamSettings {
            hub_host_name: HUB.into(),
            host: "127.0.0.1".into(),
            port: self.started.mqtt_addr.port(),
            tls: ironedge_pki::client_config(&self.ca_pem, None).unwrap(),
            token_ttl: Duration::from_secs(3600),
            keep_alive: Duration::from_secs(30),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(10),
            inflight: 1000,
        }
    }

    pub fn hub(&self) -> &ironedge_hub::Hub {
        &self.started.hub
    }
}

/// A loopback address of its own for each test that needs port 8883.
pub fn loopback() -> Ipv4Addr {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Ipv4Addr::new(127, 30 + (pid % 200) as u8, (pid / 200 % 250) as u8, n)
}

/// The venv python with azure-iot-device: `IRONEDGE_PYTHON` (set by `scripts/test`), else what
/// `scripts/python-env` prints.
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        if let Some(p) = std::env::var_os("IRONEDGE_PYTHON") {
            return PathBuf::from(p);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|d| d.join("scripts/python-env"))
            .find(|p| p.is_file())
            .expect("scripts/python-env in the workspace");
        let out = std::process::Command::new("bash")
            .arg(script)
            .output()
            .expect("run scripts/python-env");
        assert!(
            out.status.success(),
            "scripts/python-env failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// A module process (killed when dropped).
pub struct ModuleProcess {
    pub child: tokio::process::Child,
}

impl ModuleProcess {
    pub fn spawn(program: &Path, args: &[&str], env: &[(String, String)]) -> Self {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        Self { child }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(T, self.child.wait())
            .await
            .expect("module exits after SIGTERM")
            .unwrap();
        assert!(status.success(), "module exited with {status}");
    }
}

impl Cloud {
    /// Waits until `module` sent at least `n` messages to the cloud; returns them in order.
    pub async fn wait_telemetry(
        &self,
        module: &str,
        n: usize,
    ) -> Vec<ironedge_hub::storage::TelemetryRecord> {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let filter = ironedge_hub::storage::TelemetryFilter {
                device_id: Some(EDGE.into()),
                module_id: Some(module.into()),
                ..Default::default()
            };
            let found = self
                .hub()
                .read_telemetry(filter, 10_000, Duration::from_secs(1))
                .await
                .unwrap();
            if found.len() >= n {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{module}: {} of {n} messages reached the cloud",
                found.len()
            );
        }
    }

    /// Waits until the reported properties of `module` satisfy `pred`; returns them.
    pub async fn wait_reported(
        &self,
        module: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let twin = self
                .hub()
                .get_twin(EDGE.into(), Some(module.into()))
                .await
                .unwrap();
            let reported = twin["properties"]["reported"].clone();
            if pred(&reported) {
                return reported;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{module}: reported properties never showed {what}: {reported}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Patches the desired properties of `module`.
    pub async fn patch_desired(&self, module: &str, desired: Value) {
        let patch = serde_json::from_value(json!({"properties": {"desired": desired}})).unwrap();
        self.hub()
            .patch_twin(
                EDGE.into(),
                Some(module.into()),
                patch,
                ironedge_hub::registry::IfMatch::Any,
            )
            .await
            .unwrap();
    }
}
