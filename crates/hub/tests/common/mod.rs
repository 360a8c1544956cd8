//! A real hub per test: its own loopback address (the device SDK always dials port 8883), a
//! development CA whose server certificate names that address, and the Python SDK venv.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ironedge_hub::HubSettings;
use ironedge_hub::client::HubClient;
use ironedge_hub::server::{ServerSettings, Started, TlsSource, start};

/// The `iothubowner` key every test hub uses.
pub const OWNER_KEY: &str = "aXJvbmVkZ2UtaHViLXRlc3Qtb3duZXIta2V5LTMyYnl0ZXM=";
/// The hub name devices put in their connection strings (not resolvable: they dial the gateway).
pub const HUB_NAME: &str = "testhub.ironedge.local";

/// A running hub and what clients need to reach it.
pub struct TestHub {
    pub ip: IpAddr,
    pub dir: PathBuf,
    pub started: Option<Started>,
}

fn settings(ip: IpAddr, dir: &Path, websocket: bool) -> ServerSettings {
    let rest = SocketAddr::new(ip, 8443);
    ServerSettings {
        database: dir.join("hub.db"),
        rest_addr: rest,
        mqtt_addr: SocketAddr::new(ip, 8883),
        websocket_addr: websocket.then(|| SocketAddr::new(ip, 443)),
        tls: TlsSource::DevCa {
            dir: dir.join("tls"),
            names: vec![ip.to_string(), "localhost".into()],
        },
        hub: HubSettings {
            hub_names: vec![HUB_NAME.into(), ip.to_string(), rest.to_string()],
            owner_key: Some(OWNER_KEY.into()),
            ..HubSettings::default()
        },
    }
}

impl TestHub {
    /// Starts a hub on `127.0.77.{n}` with its data in `dir`.
    pub async fn start_in(n: u8, dir: &Path) -> Self {
        Self::start_with(n, dir, false).await
    }

    /// Starts a hub on `127.0.77.{n}`, with MQTT over WebSocket on port 443 when `websocket`.
    pub async fn start_with(n: u8, dir: &Path, websocket: bool) -> Self {
        let ip: IpAddr = format!("127.0.77.{n}").parse().unwrap();
        let started = start(settings(ip, dir, websocket))
            .await
            .expect("hub starts");
        Self {
            ip,
            dir: dir.to_owned(),
            started: Some(started),
        }
    }

    /// Stops the hub (graceful: telemetry flushed).
    pub async fn stop(&mut self) {
        if let Some(s) = self.started.take() {
            s.shutdown().await;
        }
    }

    /// Starts it again on the same address and data.
    pub async fn restart(&mut self) {
        self.stop().await;
        let n = match self.ip {
            IpAddr::V4(v4) => v4.octets()[3],
            IpAddr::V6(_) => unreachable!(),
        };
        *self = Self::start_in(n, &self.dir.clone()).await;
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("tls").join("ca.pem")
    }

    pub fn rest_host(&self) -> String {
        format!("{}:8443", self.ip)
    }

    pub fn service_connection_string(&self) -> String {
        format!(
            "HostName={};SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY}",
            self.rest_host()
        )
    }

    pub fn client(&self) -> HubClient {
        let ca = std::fs::read_to_string(self.ca_path()).unwrap();
        HubClient::new(&self.service_connection_string(), None, &ca).unwrap()
    }

    /// Device connection string for the Azure device SDK: hub name plus the gateway to dial.
    pub fn device_connection_string(&self, device: &str, key: &str) -> String {
        format!(
            "HostName={HUB_NAME};DeviceId={device};SharedAccessKey={key};GatewayHostName={}",
            self.ip
        )
    }
}

/// The venv python with the Azure SDKs (`scripts/python-env`); a missing venv fails the test.
pub fn python() -> PathBuf {
    let p = std::env::var_os("IRONEDGE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/ironedge/venv/bin/python")
        });
    assert!(
        p.exists(),
        "the Python SDK environment is missing ({}); run scripts/python-env (scripts/test does)",
        p.display()
    );
    p
}

/// Output of a Python SDK script.
pub struct ScriptRun {
    pub stdout: String,
    pub stderr: String,
}

impl ScriptRun {
    /// The JSON object printed on the last stdout line.
    pub fn result(&self) -> serde_json::Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("script printed a JSON result");
        serde_json::from_str(line).unwrap()
    }
}

/// Runs `tests/python/{script}` with `env`, failing the test (with its output) unless it exits 0.
pub async fn run_python(script: &str, env: &[(&str, String)]) -> ScriptRun {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(&path).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 180 s"))
        .unwrap();
    let run = ScriptRun {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        out.status.success(),
        "{script} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        run.stdout,
        run.stderr
    );
    run
}

/// The environment every script gets: where the hub is and how to trust it.
pub fn script_env(hub: &TestHub) -> Vec<(&'static str, String)> {
    vec![
        ("HUB_IP", hub.ip.to_string()),
        ("HUB_NAME", HUB_NAME.into()),
        ("HUB_CA", hub.ca_path().display().to_string()),
        ("REQUESTS_CA_BUNDLE", hub.ca_path().display().to_string()),
        ("SERVICE_CS", hub.service_connection_string()),
        ("REST_URL", format!("https://{}", hub.rest_host())),
        ("OWNER_KEY", OWNER_KEY.into()),
    ]
}

/// A fresh random 32-byte key (base64).
pub fn new_key() -> String {
    ironedge_protocol::SymmetricKey::generate().to_base64()
}

/// Waits until `f` returns `Some`, polling every 50 ms, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
