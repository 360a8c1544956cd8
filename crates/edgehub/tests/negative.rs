//! Raw MQTT clients (paho-mqtt, mosquitto_pub) doing what modules must not: wrong tokens, other
//! modules' topics, malformed packets, oversize messages. Each is refused the right way and the
//! broker keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{EDGE, EdgeHub, EdgeHubSpec, Module, python};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forbidden_malformed_and_oversize_traffic_is_refused_and_the_broker_keeps_serving() {
    let sensor = Module::new("sensor");
    let filter = Module::new("filter");
    let hub = EdgeHub::start(EdgeHubSpec {
        modules: vec![sensor.clone(), filter.clone()],
        routes: json!({"routes": {"all": "FROM /messages/* INTO BrokeredEndpoint(\"/modules/filter/inputs/in\")"}}),
        upstream: None,
        registry: None,
    })
    .await;
    let ca = hub.ca_file();
    let cfg = json!({
        "client_id": format!("{EDGE}/sensor"),
        "username": sensor.username(),
        "password": sensor.token(3600),
        "bad_password": Module::new("sensor").token(3600),
        "device": EDGE,
        "module": "sensor",
        "other_module": "filter",
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/negative.py");
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(python())
            .arg(script)
            .arg(hub.addr.to_string())
            .arg(&ca)
            .arg(cfg.to_string())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "negative.py failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.trim()).unwrap();

    assert_eq!(r["wrong_token_connack"], 4, "{r}");
    assert_eq!(r["good_connack"], 0, "{r}");
    assert_eq!(r["other_inputs_suback"], json!([128]), "{r}");
    assert_eq!(r["own_inputs_suback"], json!([1]), "{r}");
    assert_eq!(r["large_accepted"], true, "{r}");
    assert_eq!(r["oversize_acked"], false, "{r}");
    assert_eq!(r["oversize_disconnected"], true, "{r}");
    assert_eq!(r["spoof_acked"], false, "{r}");
    assert_eq!(r["spoof_disconnected"], true, "{r}");
    // The server closes the connection without answering (EOF, or a reset).
    let garbage = r["garbage_reply"].as_str().unwrap();
    assert!(
        ["", "ConnectionResetError", "SSLEOFError", "SSLError"].contains(&garbage),
        "garbage was answered: {r}"
    );
    assert_eq!(r["after_connack"], 0, "{r}");
    assert_eq!(r["after_acked"], true, "{r}");

    // Nothing spoofed or oversize was stored: only the 250 000-byte and the final message.
    let queued = hub
        .hub
        .store()
        .stats()
        .endpoints
        .get(&format!("{EDGE}/filter/in"))
        .map_or(0, |e| e.len);
    assert_eq!(queued, 2);
    let m = hub.hub.metrics();
    assert!(
        m.authorization_failures.get() >= 2,
        "spoofed publish and foreign subscribe are counted"
    );

    // mosquitto_pub with a token for another key: refused, exit code non-zero.
    let out = tokio::process::Command::new("mosquitto_pub")
        .args([
            "-V",
            "mqttv311",
            "-h",
            &hub.addr.to_string(),
            "-p",
            "8883",
            "-q",
            "1",
        ])
        .arg("--cafile")
        .arg(&ca)
        .args([
            "-i",
            &format!("{EDGE}/sensor"),
            "-u",
            &sensor.username(),
            "-P",
            &Module::new("x").token(60),
        ])
        .args([
            "-t",
            &format!("devices/{EDGE}/modules/sensor/messages/events/"),
            "-m",
            "x",
        ])
        .output()
        .await
        .expect("mosquitto_pub (run scripts/install-mqtt-clients)");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("bad user name or password") || err.contains("not authorised"),
        "{err}"
    );
    hub.stop().await;
}
