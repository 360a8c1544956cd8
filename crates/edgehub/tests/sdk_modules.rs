//! Real `azure-iot-device` 2.14.0 modules, created with `create_from_edge_environment()` against
//! the edge hub and the workload API: routing between modules, conditions on application
//! properties and on `$body`, twins served offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{EDGE, EdgeHub, EdgeHubSpec, Module, ModuleProcess};

const T: Duration = Duration::from_secs(90);

fn metric(hub: &ironedge_edgehub::hub::Hub, reason: &str) -> u64 {
    hub.metrics()
        .messages_dropped
        .get_or_create(&ironedge_edgehub::metrics::ReasonLabel {
            reason: reason.into(),
        })
        .get()
}

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
    assert_eq!(metric(&hub.hub, "no_route"), 2);

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
