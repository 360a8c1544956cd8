//! Real `azure-iot-device` 2.14.0 modules, created with `create_from_edge_environment()` against
//! the edge hub and the workload API: routing between modules, conditions on application
//! properties and on `$body`, twins served offline, modules on MQTT over WebSocket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{EDGE, EdgeHub, EdgeHubSpec, Module, ModuleProcess, ModuleTransport, dropped};

const T: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn module_outputs_reach_other_modules_inputs_through_routes_with_conditions() {
    let sender = Module::new("sender");
    let receiver = Module::new("receiver");
    let hub = EdgeHub::start(EdgeHubSpec {
        modules: vec![sender.clone(), receiver.clone()],
        routes: json!({"routes": {
            "plain": r#"FROM /messages/modules/sender/outputs/out1 INTO BrokeredEndpoint("/modules/receiver/inputs/in1")"#,
            "alerts": r#"FROM /messages/modules/sender/outputs/alerts WHERE alert = 'yes' INTO BrokeredEndpoint("/modules/receiver/inputs/alerts")"#,
            "hot": {"route": r#"FROM /messages/modules/sender/outputs/json WHERE $body.temp > 30 INTO BrokeredEndpoint("/modules/receiver/inputs/hot")"#, "priority": 1}
        }}),
        upstream: None,
        registry: None,
    })
    .await;

    let mut rx = ModuleProcess::spawn(&hub, &receiver, "receive", json!({"count": 3}));
    rx.expect("ready", T).await;
    let mut tx = ModuleProcess::spawn(
        &hub,
        &sender,
        "send",
        json!([
            {"output": "out1", "data": "hello", "id": "m1", "props": {"prop1": "v1"}},
            {"output": "alerts", "data": "a-yes", "id": "m2", "props": {"alert": "yes"}},
            {"output": "alerts", "data": "a-no", "id": "m3", "props": {"alert": "no"}},
            {"output": "json", "data": {"temp": 40}, "id": "m4", "json": true},
            {"output": "json", "data": {"temp": 10}, "id": "m5", "json": true},
        ]),
    );
    assert_eq!(tx.expect("sent", T).await["sent"], 5);
    tx.success(T).await;
    // Every send returned after its PUBACK, which comes after routing: the two messages no route
    // takes are already counted.
    assert_eq!(dropped(&hub.hub, "no_route"), 2);
    // The three routed messages were committed (group commit may have put them in one commit).
    hub.hub.refresh_metrics();
    let m = hub.hub.metrics();
    assert!(
        m.store_operations.get() >= 3,
        "{}",
        m.store_operations.get()
    );
    assert!((1..=m.store_operations.get()).contains(&m.store_commits.get()));
    assert!(m.store_largest_batch.get() >= 1);

    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(rx.expect("input", T).await);
    }
    got.sort_by_key(|m| m["input"].as_str().unwrap().to_owned());
    let inputs: Vec<&str> = got.iter().map(|m| m["input"].as_str().unwrap()).collect();
    assert_eq!(inputs, ["alerts", "hot", "in1"]);
    assert_eq!(got[0]["data"], "a-yes");
    assert_eq!(got[0]["props"]["alert"], "yes");
    assert_eq!(got[1]["data"], r#"{"temp": 40}"#);
    assert_eq!(got[1]["content_type"], "application/json");
    assert_eq!(got[2]["data"], "hello");
    assert_eq!(got[2]["message_id"], "m1");
    assert_eq!(got[2]["props"]["prop1"], "v1");
    for m in &got {
        assert_eq!(m["props"]["$.cdid"], EDGE, "{m}");
        assert_eq!(m["props"]["$.cmid"], "sender", "{m}");
    }
    rx.success(T).await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reported_properties_are_acknowledged_and_served_from_the_cache_with_no_cloud() {
    let module = Module::new("twinner");
    let hub = EdgeHub::start(EdgeHubSpec {
        modules: vec![module.clone()],
        routes: json!({}),
        upstream: None,
        registry: None,
    })
    .await;
    let mut m = ModuleProcess::spawn(
        &hub,
        &module,
        "twin",
        json!({"reported": {"status": "ok", "n": 1}}),
    );
    m.expect("patched", T).await;
    let twin = m.expect("twin", T).await;
    assert_eq!(twin["twin"]["reported"]["status"], "ok", "{twin}");
    assert_eq!(twin["twin"]["reported"]["n"], 1);
    m.success(T).await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn modules_connected_over_websocket_exchange_messages_and_twins_with_mqtt_modules() {
    let ws_sender = Module::new("wssender");
    let ws_receiver = Module::new("wsreceiver");
    let mqtt_sender = Module::new("mqttsender");
    let mqtt_receiver = Module::new("mqttreceiver");
    let hub = EdgeHub::start(EdgeHubSpec {
        modules: vec![
            ws_sender.clone(),
            ws_receiver.clone(),
            mqtt_sender.clone(),
            mqtt_receiver.clone(),
        ],
        routes: json!({"routes": {
            "wsToWs": r#"FROM /messages/modules/wssender/outputs/out1 INTO BrokeredEndpoint("/modules/wsreceiver/inputs/in1")"#,
            "wsToMqtt": r#"FROM /messages/modules/wssender/outputs/out1 INTO BrokeredEndpoint("/modules/mqttreceiver/inputs/in1")"#,
            "mqttToWs": r#"FROM /messages/modules/mqttsender/outputs/out2 INTO BrokeredEndpoint("/modules/wsreceiver/inputs/in2")"#
        }}),
        upstream: None,
        registry: None,
    })
    .await;
    // The WebSocket modules' gateway host serves only 443: had the SDK ignored `websockets=True`
    // and dialled 8883, it would have been refused.
    let plain = tokio::net::TcpStream::connect((hub.websocket_addr, 8883)).await;
    assert_eq!(
        plain.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );

    // Bigger than one TLS record and one read: MQTT packets span frames and reads both ways.
    let big = pseudo_random_text(100_000);
    let ws = ModuleTransport::WebSocket;
    let mut ws_rx =
        ModuleProcess::spawn_over(&hub, &ws_receiver, ws, "receive", json!({"count": 3}));
    let mut mqtt_rx = ModuleProcess::spawn(&hub, &mqtt_receiver, "receive", json!({"count": 2}));
    ws_rx.expect("ready", T).await;
    mqtt_rx.expect("ready", T).await;

    let mut ws_tx = ModuleProcess::spawn_over(
        &hub,
        &ws_sender,
        ws,
        "send",
        json!([
            {"output": "out1", "data": "over-ws", "id": "ws-1", "props": {"via": "websocket"}},
            {"output": "out1", "data": big, "id": "ws-big"},
        ]),
    );
    assert_eq!(ws_tx.expect("sent", T).await["sent"], 2);
    ws_tx.success(T).await;
    let mut mqtt_tx = ModuleProcess::spawn(
        &hub,
        &mqtt_sender,
        "send",
        json!([{"output": "out2", "data": {"temp": 7}, "id": "mqtt-1", "json": true, "props": {"via": "mqtt"}}]),
    );
    assert_eq!(mqtt_tx.expect("sent", T).await["sent"], 1);
    mqtt_tx.success(T).await;

    let mut ws_got = Vec::new();
    for _ in 0..3 {
        ws_got.push(ws_rx.expect("input", T).await);
    }
    let mqtt_got = [
        mqtt_rx.expect("input", T).await,
        mqtt_rx.expect("input", T).await,
    ];
    // The SDK hands messages to a pool of handler threads, so the order printed is not the order
    // delivered: compare sorted by message id.
    let ws_in1: Vec<_> = ws_got.iter().filter(|m| m["input"] == "in1").collect();
    let ws_in2: Vec<_> = ws_got.iter().filter(|m| m["input"] == "in2").collect();
    assert_eq!(ws_in2.len(), 1, "{ws_got:?}");
    for mut received in [ws_in1, mqtt_got.iter().collect()] {
        received.sort_by_key(|m| m["message_id"].as_str().unwrap_or_default().to_owned());
        let ids: Vec<_> = received.iter().map(|m| &m["message_id"]).collect();
        assert_eq!(ids, ["ws-1", "ws-big"], "{received:?}");
        let (small, large) = (received[0], received[1]);
        assert_eq!(small["input"], "in1", "{small}");
        assert_eq!(small["data"], "over-ws", "{small}");
        assert_eq!(small["props"]["via"], "websocket", "{small}");
        assert_eq!(large["input"], "in1");
        assert!(
            large["data"] == big.as_str(),
            "the 100 kB body arrived altered"
        );
        for m in [small, large] {
            assert_eq!(m["props"]["$.cdid"], EDGE, "{m}");
            assert_eq!(m["props"]["$.cmid"], "wssender", "{m}");
        }
    }
    let m = ws_in2[0];
    assert_eq!(m["data"], r#"{"temp": 7}"#, "{m}");
    assert_eq!(m["content_type"], "application/json", "{m}");
    assert_eq!(m["message_id"], "mqtt-1", "{m}");
    assert_eq!(m["props"]["via"], "mqtt", "{m}");
    assert_eq!(m["props"]["$.cdid"], EDGE, "{m}");
    assert_eq!(m["props"]["$.cmid"], "mqttsender", "{m}");
    ws_rx.success(T).await;
    mqtt_rx.success(T).await;

    // Twin operations ride the same WebSocket connection: a reported patch is acknowledged and
    // the twin read back carries it.
    let mut twin = ModuleProcess::spawn_over(
        &hub,
        &ws_sender,
        ws,
        "twin",
        json!({"reported": {"transport": "websocket", "n": 2}}),
    );
    twin.expect("patched", T).await;
    let read = twin.expect("twin", T).await;
    assert_eq!(read["twin"]["reported"]["transport"], "websocket", "{read}");
    assert_eq!(read["twin"]["reported"]["n"], 2, "{read}");
    twin.success(T).await;
    hub.stop().await;
}

/// Printable text with no short period, so reordered or repeated chunks would show.
fn pseudo_random_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ALPHABET[(state >> 33) as usize % ALPHABET.len()] as char
        })
        .collect()
}
