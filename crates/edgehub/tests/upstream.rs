//! The edge hub against the ironedge cloud hub: `$upstream` keeps the sender's identity and
//! properties, twins sync both ways, and a direct method invoked at the cloud reaches the module
//! (over MQTT or MQTT over WebSocket).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use ironedge_hub::storage::TelemetryFilter;
use serde_json::{Value, json};
use support::cloud::{Cloud, direct_method_round_trip, invoke_when_subscribed};
use support::{
    EDGE, EdgeHub, EdgeHubSpec, Module, ModuleLanguage, ModuleProcess, ModuleTransport, RawModule,
    loopback,
};

const T: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_telemetry_reaches_the_cloud_as_the_sending_module_with_its_properties() {
    // The edge hub learns the module's key from the cloud registry with the edge device's own
    // credentials (no identities are given to it).
    let sender = Module::new("sensor");
    let cloud = Cloud::start(loopback(), std::slice::from_ref(&sender)).await;
    let hub = EdgeHub::start(EdgeHubSpec {
        modules: vec![sender.clone()],
        routes: json!({"routes": {"up": "FROM /messages/modules/sensor/outputs/* INTO $upstream"}}),
        upstream: Some(cloud.upstream()),
        registry: Some(cloud.registry().await),
    })
    .await;
    let mut tx = ModuleProcess::spawn(
        &hub,
        &sender,
        "send",
        json!([{"output": "telemetry", "data": {"temp": 21}, "json": true, "id": "up-1", "props": {"site": "north"}}]),
    );
    tx.expect("sent", T).await;
    tx.success(T).await;

    let filter = TelemetryFilter {
        device_id: Some(EDGE.into()),
        module_id: Some("sensor".into()),
        ..TelemetryFilter::default()
    };
    let got = cloud.hub().read_telemetry(filter, 10, T).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m.device_id, EDGE);
    assert_eq!(m.module_id.as_deref(), Some("sensor"));
    assert_eq!(m.message_id.as_deref(), Some("up-1"));
    assert_eq!(m.output_name.as_deref(), Some("telemetry"));
    assert_eq!(m.content_type.as_deref(), Some("application/json"));
    assert_eq!(m.properties.get("site").map(String::as_str), Some("north"));
    assert_eq!(
        serde_json::from_slice::<Value>(&m.body).unwrap(),
        json!({"temp": 21})
    );
    hub.stop().await;
    cloud.started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_direct_method_invoked_at_the_cloud_reaches_the_module_and_its_answer_returns() {
    direct_method_round_trip(ModuleLanguage::Python, ModuleTransport::Mqtt, "responder").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_direct_method_reaches_a_module_connected_over_websocket_and_its_answer_returns() {
    direct_method_round_trip(
        ModuleLanguage::Python,
        ModuleTransport::WebSocket,
        "responder",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reported_properties_reach_the_cloud_and_desired_changes_reach_the_module() {
    let module = Module::new("twinmod");
    let (cloud, hub) = Cloud::with_edge_hub(&module).await;
    let mut m = ModuleProcess::spawn(
        &hub,
        &module,
        "twin",
        json!({"reported": {"fw": "1.2"}, "desired_wait": true}),
    );
    m.expect("patched", T).await;
    m.expect("twin", T).await;

    // Reported: acknowledged locally at once, synced to the cloud shortly after.
    cloud.wait_reported("twinmod", "fw", &json!("1.2"), T).await;

    // Desired: the module listens; its notification arrives.
    let patch = cloud
        .patch_desired_until_notified("twinmod", "blue", &mut m, T)
        .await;
    assert_eq!(patch["desired_patch"]["color"], "blue");
    m.success(T).await;
    hub.stop().await;
    cloud.started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_method_answer_sent_just_before_disconnecting_still_reaches_the_cloud() {
    // As the Node SDK does: the answer goes out at QoS 0 and the module exits at once.
    let module = Module::new("quitter");
    let (cloud, hub) = Cloud::with_edge_hub(&module).await;
    let mut raw = RawModule::connect(&hub, &module).await;
    raw.client
        .subscribe("$iothub/methods/POST/#", rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    loop {
        if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) = raw.poll().await {
            break;
        }
    }

    let invoker = cloud.hub().clone();
    let invocation = tokio::spawn(async move {
        invoke_when_subscribed(&invoker, "quitter", "stop", json!({}), T).await
    });
    let rid = loop {
        if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = raw.poll().await {
            let (_, rid) = p.topic.split_once("$rid=").expect("a request id");
            break rid.to_owned();
        }
    };
    raw.client
        .publish(
            format!("$iothub/methods/res/200/?$rid={rid}"),
            rumqttc::QoS::AtMostOnce,
            false,
            br#"{"stopping":true}"#.to_vec(),
        )
        .await
        .unwrap();
    raw.client.disconnect().await.unwrap();
    // Until the DISCONNECT has gone out (the answer before it).
    while let Ok(event) = raw.events.poll().await {
        if let rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect) = event {
            break;
        }
    }
    drop(raw);

    let response = tokio::time::timeout(T, invocation)
        .await
        .expect("the invocation ended")
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.payload, json!({"stopping": true}));
    hub.stop().await;
    cloud.started.shutdown().await;
}
