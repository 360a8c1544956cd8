//! `$edgeAgent` direct methods invoked through the hub: `ping`, `RestartModule` (the module's pod
//! is replaced) and `GetModuleLogs` (read through the Kubernetes `pods/log` API, which the API
//! server proxies to the node's kubelet endpoint — here `ironedge-node`'s log server).

use std::io::Read;

use crate::common::*;
use base64::Engine;
use ironedge_node::logs::LogStore;
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ping_restart_module_and_get_module_logs_answer_as_iot_edge_does() {
    let admin = admin().await;
    let ns = TestNamespace::new(&admin).await;
    let hub = TestHub::start().await;
    let cs = hub.edge_device("m-dev").await;
    let agent = RunningAgent::start(&admin, &ns.name, &hub, &cs).await;
    hub.set_modules(
        "m-dev",
        &manifest(json!({"sensor": module("running")}), json!({})),
    )
    .await;
    wait_reported(&hub, "m-dev", "the deployment", |r| {
        r["lastDesiredStatus"]["code"] == 200
    })
    .await;

    // ping
    let (status, payload) = hub.invoke_agent("m-dev", "ping", json!(null)).await;
    assert_eq!((status, payload), (200, json!(null)));
    let (status, payload) = hub.invoke_agent("m-dev", "Reboot", json!({})).await;
    assert_eq!(status, 400, "unknown methods are a 400: {payload}");
    assert!(
        payload["message"]
            .as_str()
            .unwrap()
            .contains("unknown method")
    );

    // A node whose kubelet endpoint serves the sensor container's log.
    let logs = LogStore::new();
    let dir = tempfile::tempdir().unwrap();
    let pod = module_pod(&admin, &ns.name, "sensor").await;
    let file = logs.start_run(&ns.name, &pod.name_any(), "sensor", dir.path(), 0);
    let lines = [
        (
            "2026-01-01T00:00:01.000000000Z",
            "<6> 2026-01-01 00:00:01.000 +00:00 [INF] sensor started",
        ),
        (
            "2026-01-01T00:00:02.000000000Z",
            "<4> 2026-01-01 00:00:02.000 +00:00 [WRN] temperature high",
        ),
        (
            "2026-01-01T00:00:03.000000000Z",
            "<3> 2026-01-01 00:00:03.000 +00:00 [ERR] sensor lost",
        ),
        (
            "2026-01-01T00:00:04.000000000Z",
            "<6> 2026-01-01 00:00:04.000 +00:00 [INF] sensor back",
        ),
    ];
    let records: String = lines
        .iter()
        .map(|(t, text)| format!("{t} stdout F {text}\n"))
        .collect();
    std::fs::write(&file, records).unwrap();
    let kubelet = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kubelet_addr = kubelet.local_addr().unwrap();
    let stop = CancellationToken::new();
    let tls = ironedge_node::log_server::tls_config(&["127.0.0.1"], None).unwrap();
    tokio::spawn(ironedge_node::log_server::serve(
        kubelet,
        tls,
        ironedge_node::log_server::app(logs.clone()),
        stop.clone(),
    ));
    let node = format!("logs-{}", ns.name);
    ensure_node(&admin, &node, Some(kubelet_addr)).await;
    bind(&admin, &pod, &node).await;
    let pod = module_pod(&admin, &ns.name, "sensor").await;
    set_container_state(
        &admin,
        &pod,
        json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
        json!({}),
        0,
    )
    .await;

    // Text, last two lines.
    let (status, payload) = hub
        .invoke_agent(
            "m-dev",
            "GetModuleLogs",
            json!({"schemaVersion": "1.0", "items": [{"id": "sensor", "filter": {"tail": 2}}],
                   "encoding": "none", "contentType": "text"}),
        )
        .await;
    assert_eq!(status, 200, "{payload}");
    assert_eq!(payload[0]["id"], "sensor");
    let text = payload[0]["payload"].as_str().unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("sensor lost") && text.contains("sensor back"),
        "{text}"
    );

    // JSON records of level 3 only, gzipped; the id is a regex.
    let (status, payload) = hub
        .invoke_agent(
            "m-dev",
            "GetModuleLogs",
            json!({"schemaVersion": "1.0", "items": [{"id": "sen.*", "filter": {"loglevel": 3}}],
                   "encoding": "gzip", "contentType": "json"}),
        )
        .await;
    assert_eq!(status, 200, "{payload}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload[0]["payloadBytes"].as_str().unwrap())
        .unwrap();
    let mut json_text = String::new();
    flate2_read(&bytes, &mut json_text);
    let records: serde_json::Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(records.as_array().unwrap().len(), 1, "{records}");
    assert_eq!(records[0]["loglevel"], 3);
    assert_eq!(records[0]["text"], "[ERR] sensor lost");
    assert_eq!(records[0]["id"], "sensor");
    assert_eq!(records[0]["device"], "m-dev");

    // since/until and regex, and a bad request.
    let (status, payload) = hub
        .invoke_agent(
            "m-dev",
            "GetModuleLogs",
            json!({"schemaVersion": "1.0", "contentType": "text", "items": [{"id": "sensor",
                   "filter": {"since": "2026-01-01T00:00:02Z", "until": "2026-01-01T00:00:03Z", "regex": "sensor|temp"}}]}),
        )
        .await;
    assert_eq!(status, 200, "{payload}");
    let text = payload[0]["payload"].as_str().unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("temperature high") && text.contains("sensor lost"));
    let (status, payload) = hub
        .invoke_agent(
            "m-dev",
            "GetModuleLogs",
            json!({"schemaVersion": "2.0", "items": [{"id": "sensor"}]}),
        )
        .await;
    assert_eq!(status, 400, "{payload}");

    // RestartModule: the pod is replaced.
    let before = pod.uid().unwrap();
    let (status, payload) = hub
        .invoke_agent(
            "m-dev",
            "RestartModule",
            json!({"schemaVersion": "1.0", "id": "sensor"}),
        )
        .await;
    assert_eq!(status, 200, "{payload}");
    let replaced = eventually("a new sensor pod", TIMEOUT, || {
        let admin = admin.clone();
        let ns = ns.name.clone();
        let before = before.clone();
        async move {
            let pod = module_pod(&admin, &ns, "sensor").await;
            (pod.uid().unwrap() != before).then_some(pod)
        }
    })
    .await;
    assert!(replaced.metadata.deletion_timestamp.is_none());
    let (status, _) = hub
        .invoke_agent(
            "m-dev",
            "RestartModule",
            json!({"schemaVersion": "1.0", "id": "ghost"}),
        )
        .await;
    assert_eq!(status, 400);
    let metrics = agent.metrics_text().await;
    assert!(
        metrics.contains(
            "ironedge_agent_direct_methods_total{method=\"getmodulelogs\",status=\"200\"}"
        ),
        "{metrics}"
    );

    stop.cancel();
    agent.stop().await;
    ns.delete().await;
    let _ = kube::Api::<k8s_openapi::api::core::v1::Node>::all(admin.clone())
        .delete(&node, &Default::default())
        .await;
}

fn flate2_read(bytes: &[u8], out: &mut String) {
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(out)
        .unwrap();
}
