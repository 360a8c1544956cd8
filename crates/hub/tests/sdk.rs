//! The real Azure IoT SDKs from PyPI against a real hub (one loopback address per test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestHub, eventually, new_key, run_python, script_env};
use serde_json::{Value, json};

async fn create_device(hub: &TestHub, id: &str, edge: bool) -> String {
    let key = new_key();
    let body = json!({"deviceId": id, "capabilities": {"iotEdge": edge},
                      "authentication": {"type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": new_key()}}});
    hub.client()
        .put(&format!("/devices/{id}"), &body, false)
        .await
        .unwrap();
    key
}

async fn events(hub: &TestHub, device: &str) -> Vec<Value> {
    let page = hub
        .client()
        .get(&format!("/_ext/messages/events?deviceId={device}&max=1000"))
        .await
        .unwrap();
    page["messages"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_sdk_sends_telemetry_gets_desired_patches_reports_and_answers_methods() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start_in(1, dir.path()).await;
    let key = create_device(&hub, "sdk-dev", false).await;
    let mut env = script_env(&hub);
    env.push(("DEVICE_ID", "sdk-dev".into()));
    env.push(("DEVICE_KEY", key));
    let result = run_python("device_sdk.py", &env).await.result();
    assert_eq!(result["method_status"], 201);
    assert_eq!(
        result["reported_after"],
        result["reported_before"].as_u64().unwrap() + 1
    );

    // The telemetry is stored with every system and application property.
    let stored = events(&hub, "sdk-dev").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let m = &stored[0];
    assert_eq!(m["messageId"], "mid-1");
    assert_eq!(m["correlationId"], "corr-1");
    assert_eq!(m["contentType"], "application/json");
    assert_eq!(m["contentEncoding"], "utf-8");
    assert_eq!(m["properties"], json!({"alert": "yes x", "level": "3"}));
    assert_eq!(m["bodyBase64"], "eyJ0ZW1wIjoyMS41fQ==");
    assert_eq!(m["moduleId"], Value::Null);

    // The twin the service sees matches what the device reported.
    let twin = hub.client().get("/twins/sdk-dev").await.unwrap();
    assert_eq!(twin["properties"]["reported"]["fw"], json!({"v": "1.0"}));
    assert_eq!(
        twin["properties"]["reported"]["$version"],
        result["reported_after"].as_u64().unwrap() + 1
    );
    assert_eq!(
        twin["properties"]["desired"]["$version"],
        result["desired_version"]
    );
    let c2d = hub
        .client()
        .get("/_ext/devices/sdk-dev/messages/devicebound/c2d-1")
        .await
        .unwrap();
    assert_eq!(c2d["state"], "completed");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_sdk_manages_identities_twins_configurations_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start_in(2, dir.path()).await;
    let result = run_python("service_sdk.py", &script_env(&hub))
        .await
        .result();
    assert_eq!(result["configurations"], json!([]));
    // What the SDK saw is what is stored.
    let agent = hub
        .client()
        .get("/twins/edge-1/modules/%24edgeAgent")
        .await
        .unwrap();
    assert_eq!(
        agent["properties"]["desired"]["modules"]["sensor"]["settings"]["image"],
        "example/sensor:1"
    );
    assert!(hub.client().get("/devices/svc-dev").await.is_err());
    hub.stop().await;
}

const SERVICE_SDK_GET_CREATE: &str = r#"
import base64, json, os
from azure.iot.hub import IoTHubRegistryManager
key = lambda: base64.b64encode(os.urandom(32)).decode()
rm = IoTHubRegistryManager.from_connection_string(os.environ["SERVICE_CS"])
seen = rm.get_device("client-dev").device_id
rm.create_device_with_sas("sdk-dev", key(), key(), "enabled")
print(json.dumps({"seen": seen, "created": rm.get_device("sdk-dev").device_id}))
"#;

/// `ironedge hub --rest-addr …:0` names itself without a port and learns the port at bind time;
/// the owner connection string it writes carries `HostName={name}:{bound port}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_connection_string_with_the_port_picked_at_bind_time_works_for_client_and_sdk() {
    use ironedge_hub::HubSettings;
    use ironedge_hub::server::{ServerSettings, TlsSource, start};
    let dir = tempfile::tempdir().unwrap();
    let ip: std::net::IpAddr = "127.0.77.9".parse().unwrap();
    let started = start(ServerSettings {
        database: dir.path().join("hub.db"),
        rest_addr: std::net::SocketAddr::new(ip, 0),
        mqtt_addr: std::net::SocketAddr::new(ip, 0),
        websocket_addr: None,
        tls: TlsSource::DevCa {
            dir: dir.path().join("tls"),
            names: vec![ip.to_string()],
        },
        hub: HubSettings {
            hub_names: vec![ip.to_string()],
            ..HubSettings::default()
        },
    })
    .await
    .unwrap();
    let host = format!("{ip}:{}", started.rest_addr.port());
    let cs = started.hub.owner_connection_string(&host).unwrap();
    let ca_path = dir.path().join("tls/ca.pem");
    let ca = std::fs::read_to_string(&ca_path).unwrap();
    let client = ironedge_hub::client::HubClient::new(&cs, None, &ca).unwrap();
    let body = json!({"deviceId": "client-dev",
                      "authentication": {"type": "sas", "symmetricKey": {"primaryKey": new_key(), "secondaryKey": new_key()}}});
    client
        .put("/devices/client-dev", &body, false)
        .await
        .expect("the written connection string authenticates the hub client");

    let out = tokio::process::Command::new(common::python())
        .args(["-c", SERVICE_SDK_GET_CREATE])
        .env("SERVICE_CS", &cs)
        .env("REQUESTS_CA_BUNDLE", &ca_path)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .expect("the SDK script finishes within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "azure-iot-hub with {host}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result, json!({"seen": "client-dev", "created": "sdk-dev"}));
    assert_eq!(
        client.get("/devices/sdk-dev").await.unwrap()["deviceId"],
        "sdk-dev"
    );
    started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_mqtt_clients_get_connack_4_or_5_and_cannot_use_other_devices_topics() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start_in(3, dir.path()).await;
    let key_a = create_device(&hub, "dev-a", false).await;
    create_device(&hub, "dev-b", false).await;
    let mut env = script_env(&hub);
    env.extend([
        ("DEVICE_A", "dev-a".into()),
        ("KEY_A", key_a),
        ("DEVICE_B", "dev-b".into()),
    ]);
    let result = run_python("negative_mqtt.py", &env).await.result();
    assert_eq!(result["codes"]["wrong_key"], 5);
    assert_eq!(result["codes"]["malformed"], 4);
    assert!(
        events(&hub, "dev-b").await.is_empty(),
        "the spoofed message was not stored"
    );
    let metrics = hub
        .client()
        .send(reqwest::Method::GET, "/metrics", None, &[])
        .await
        .unwrap();
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    let failures: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ironedge_hub_auth_failures_total{endpoint=\"mqtt\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(failures >= 5, "every refused CONNECT is counted: {text}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_registry_twins_configurations_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start_in(5, dir.path()).await;
    let key = create_device(&hub, "keep-dev", false).await;
    create_device(&hub, "keep-edge", true).await;
    let client = hub.client();
    client
        .call(
            reqwest::Method::PATCH,
            "/twins/keep-edge",
            Some(&json!({"tags": {"env": "prod"}})),
            &[],
        )
        .await
        .unwrap();
    let manifest: Value = serde_json::from_str(include_str!("fixtures/manifest.json")).unwrap();
    client
        .put(
            "/configurations/prod",
            &json!({"content": manifest, "targetCondition": "tags.env='prod'", "priority": 3}),
            false,
        )
        .await
        .unwrap();
    let mut env = script_env(&hub);
    env.extend([
        ("DEVICE_ID", "keep-dev".into()),
        ("DEVICE_KEY", key.clone()),
        ("COUNT", "3".into()),
    ]);
    run_python("send_telemetry.py", &env).await;
    let agent_before = client
        .get("/twins/keep-edge/modules/%24edgeAgent")
        .await
        .unwrap();

    hub.restart().await;

    let client = hub.client();
    let dev = client.get("/devices/keep-dev").await.unwrap();
    assert_eq!(
        dev["authentication"]["symmetricKey"]["primaryKey"],
        key.as_str()
    );
    let twin = client.get("/twins/keep-edge").await.unwrap();
    assert_eq!(twin["tags"], json!({"env": "prod"}));
    let agent = client
        .get("/twins/keep-edge/modules/%24edgeAgent")
        .await
        .unwrap();
    assert_eq!(agent["properties"], agent_before["properties"]);
    assert_eq!(agent["etag"], agent_before["etag"]);
    let config = client.get("/configurations/prod").await.unwrap();
    assert_eq!(config["priority"], 3);
    assert_eq!(config["systemMetrics"]["results"]["appliedCount"], 1);
    let stored = events(&hub, "keep-dev").await;
    let ids: Vec<_> = stored
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["m0", "m1", "m2"]);
    // And the device can connect again with the same key.
    run_python("send_telemetry.py", &env).await;
    eventually(10, "the new messages", || async {
        (events(&hub, "keep-dev").await.len() == 6).then_some(())
    })
    .await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_sdk_works_over_mqtt_over_websocket_on_port_443() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start_with(7, dir.path(), true).await;
    let key = create_device(&hub, "ws-dev", false).await;
    let mut env = script_env(&hub);
    env.extend([("DEVICE_ID", "ws-dev".into()), ("DEVICE_KEY", key)]);
    let result = run_python("websocket.py", &env).await.result();
    assert_eq!(result["reported_version"], 2);
    let stored = events(&hub, "ws-dev").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["messageId"], "ws-1");
    assert_eq!(stored[0]["properties"], json!({"via": "ws"}));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_sdk_gets_set_modules_content_reports_sends_outputs_and_answers_methods() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start_in(8, dir.path()).await;
    create_device(&hub, "edge-m", true).await;
    let module_key = new_key();
    let body = json!({"moduleId": "filter",
                      "authentication": {"type": "sas", "symmetricKey": {"primaryKey": module_key, "secondaryKey": new_key()}}});
    hub.client()
        .put("/devices/edge-m/modules/filter", &body, false)
        .await
        .unwrap();
    let mut env = script_env(&hub);
    let manifest =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifest.json");
    env.extend([
        ("DEVICE_ID", "edge-m".into()),
        ("MODULE_ID", "filter".into()),
        ("MODULE_KEY", module_key),
        ("MANIFEST", manifest.display().to_string()),
    ]);
    let result = run_python("module_sdk.py", &env).await.result();
    let stored = events(&hub, "edge-m").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["moduleId"], "filter");
    assert_eq!(stored[0]["outputName"], "output1");
    assert_eq!(stored[0]["messageId"], "out-1");
    let twin = hub
        .client()
        .get("/twins/edge-m/modules/filter")
        .await
        .unwrap();
    assert_eq!(
        twin["properties"]["reported"]["lastDesiredVersion"],
        result["desired_version"]
    );
    let agent = hub
        .client()
        .get("/twins/edge-m/modules/%24edgeAgent")
        .await
        .unwrap();
    assert_eq!(
        agent["properties"]["desired"]["modules"]["sensor"]["settings"]["image"],
        "example/sensor:1"
    );
    hub.stop().await;
}
