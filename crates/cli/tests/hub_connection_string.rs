//! `ironedge hub` on a port picked at bind time: the owner connection string it writes must work
//! as written with the `ironedge device` client commands and with the azure-iot-hub Python SDK.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The hub process, stopped when the test ends (pass or fail).
struct Hub(Child);

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ironedge hub` with both listeners on port 0 and waits for its startup summary.
fn start_hub(dir: &Path) -> Hub {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironedge"))
        .arg("hub")
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--hostname",
            "localhost",
            "--rest-addr",
            "127.0.0.1:0",
            "--mqtt-addr",
            "127.0.0.1:0",
        ])
        .env_remove("IRONEDGE_HUB_OWNER_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let hub = Hub(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The summary's last line comes after the connection string file is written.
            if line.contains("owner connection string:") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("ironedge hub printed its startup summary within 60 s");
    hub
}

fn client(dir: &Path, args: &[&str]) -> Output {
    let cs = std::fs::read_to_string(dir.join("iothubowner.connection-string")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_ironedge"))
        .args(args)
        .env("IRONEDGE_HUB_CONNECTION_STRING", cs.trim())
        .env("IRONEDGE_HUB_CA", dir.join("tls/ca.pem"))
        .env_remove("IRONEDGE_HUB_URL")
        .output()
        .unwrap()
}

fn python() -> PathBuf {
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

const SERVICE_SDK: &str = r#"
import base64, json, os
from azure.iot.hub import IoTHubRegistryManager
key = lambda: base64.b64encode(os.urandom(32)).decode()
rm = IoTHubRegistryManager.from_connection_string(os.environ["CS"])
seen = rm.get_device("cli-dev").device_id
rm.create_device_with_sas("sdk-dev", key(), key(), "enabled")
print(json.dumps({"seen": seen, "created": rm.get_device("sdk-dev").device_id}))
"#;

#[test]
fn owner_connection_string_of_a_hub_on_port_0_works_with_the_cli_and_the_service_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let _hub = start_hub(dir.path());
    let cs = std::fs::read_to_string(dir.path().join("iothubowner.connection-string")).unwrap();
    let host = cs
        .split(';')
        .find_map(|p| p.strip_prefix("HostName="))
        .unwrap();
    let port: u16 = host.strip_prefix("localhost:").unwrap().parse().unwrap();
    assert_ne!(
        port, 0,
        "the connection string names the bound port: {host}"
    );

    let out = client(dir.path(), &["device", "create", "cli-dev"]);
    assert!(
        out.status.success(),
        "device create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = client(dir.path(), &["device", "show", "cli-dev"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("device show: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(shown["deviceId"], "cli-dev");

    let out = Command::new(python())
        .args(["-c", SERVICE_SDK])
        .env("CS", cs.trim())
        .env("REQUESTS_CA_BUNDLE", dir.path().join("tls/ca.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "azure-iot-hub with the written connection string:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        result,
        serde_json::json!({"seen": "cli-dev", "created": "sdk-dev"})
    );

    let out = client(dir.path(), &["device", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.contains("sdk-dev"),
        "device list: {listed}"
    );
}
