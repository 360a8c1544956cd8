//! The module client against a real edge hub and a real workload API (and the ironedge cloud
//! hub where the feature needs the cloud): the same contract the Azure SDK modules use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use ironedge_module_client::{
    ClientOptions, EdgeEnvironment, Error, Message, ModuleEvent, WorkloadClient, WorkloadError,
};
use serde_json::json;
use support::{Client, Cloud, EDGE, EdgeHub, GENERATION, Module, Spec, T};

fn json_message(body: serde_json::Value) -> Message {
    let mut m = Message::new(body.to_string());
    m.system.content_type = Some("application/json".into());
    m.system.content_encoding = Some("utf-8".into());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_reach_another_modules_input_through_a_route_with_a_condition() {
    let sender = Module::new("sender");
    let receiver = Module::new("receiver");
    let hub = EdgeHub::start(Spec {
        modules: vec![sender.clone(), receiver.clone()],
        routes: json!({"routes": {
            "hot": r#"FROM /messages/modules/sender/outputs/out WHERE $body.temperature > 30 INTO BrokeredEndpoint("/modules/receiver/inputs/hot")"#
        }}),
        upstream: None,
        bind: None,
    })
    .await;
    let tx = hub.client(&sender, ClientOptions::default()).await;
    let mut rx = hub.client(&receiver, ClientOptions::default()).await;

    for (i, t) in [(1, 20), (2, 35), (3, 10), (4, 31)] {
        let mut m = json_message(json!({"temperature": t}));
        m.system.message_id = Some(format!("m{i}"));
        m.set_property("unit", "C");
        tx.client.send_output("out", m).await.unwrap();
    }
    let first = rx.input().await;
    assert_eq!(first.input, "hot");
    assert_eq!(first.message.system.message_id.as_deref(), Some("m2"));
    assert_eq!(first.body_json().unwrap(), json!({"temperature": 35}));
    assert_eq!(first.message.property("unit"), Some("C"));
    assert_eq!(
        first.message.system.connection_module_id.as_deref(),
        Some("sender")
    );
    assert_eq!(
        first.message.system.connection_device_id.as_deref(),
        Some(EDGE)
    );
    first.ack().await.unwrap();
    let second = rx.input().await;
    assert_eq!(second.message.system.message_id.as_deref(), Some("m4"));
    second.ack().await.unwrap();
    tx.client.close();
    rx.client.close();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_input_comes_again_after_the_module_reconnects() {
    let sender = Module::new("sender");
    let receiver = Module::new("receiver");
    let hub = EdgeHub::start(Spec {
        modules: vec![sender.clone(), receiver.clone()],
        routes: json!({"routes": {
            "all": r#"FROM /messages/modules/sender/* INTO BrokeredEndpoint("/modules/receiver/inputs/in")"#
        }}),
        upstream: None,
        bind: None,
    })
    .await;
    let tx = hub.client(&sender, ClientOptions::default()).await;
    let mut rx = hub.client(&receiver, ClientOptions::default()).await;
    let mut m = Message::new("once");
    m.system.message_id = Some("only".into());
    tx.client.send_output("out", m).await.unwrap();

    let got = rx.input().await;
    assert_eq!(got.message.system.message_id.as_deref(), Some("only"));
    drop(got); // crashed before acknowledging
    rx.client.close();
    rx.next("disconnect", |e| {
        matches!(e, ModuleEvent::Disconnected { .. }).then_some(())
    })
    .await;

    let mut again = hub.client(&receiver, ClientOptions::default()).await;
    let redelivered = again.input().await;
    assert_eq!(
        redelivered.message.system.message_id.as_deref(),
        Some("only")
    );
    assert_eq!(&redelivered.message.body[..], b"once");
    redelivered.ack().await.unwrap();
    tx.client.close();
    again.client.close();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_properties_are_acknowledged_and_read_back_from_the_twin() {
    let module = Module::new("twinner");
    let hub = EdgeHub::start(Spec {
        modules: vec![module.clone()],
        routes: json!({}),
        upstream: None,
        bind: None,
    })
    .await;
    let c = hub.client(&module, ClientOptions::default()).await;
    c.client
        .patch_reported(&json!({"threshold": 25, "state": {"ok": true}}))
        .await
        .unwrap();
    c.client
        .patch_reported(&json!({"state": {"ok": false}}))
        .await
        .unwrap();
    let twin = c.client.get_twin().await.unwrap();
    assert_eq!(twin.reported["threshold"], 25, "{twin:?}");
    assert_eq!(twin.reported["state"]["ok"], false, "{twin:?}");
    c.client.close();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_patches_and_direct_methods_from_the_cloud_reach_the_module() {
    let module = Module::new("filter");
    let cloud = Cloud::start(std::slice::from_ref(&module)).await;
    let hub = EdgeHub::start(Spec {
        modules: vec![module.clone()],
        routes: json!({}),
        upstream: Some(cloud.upstream()),
        bind: None,
    })
    .await;
    let mut c = hub.client(&module, ClientOptions::default()).await;

    // The edge hub subscribes upstream for the module after it connected: until then a patch
    // may not be relayed, so patch until one arrives.
    let deadline = tokio::time::Instant::now() + T;
    let mut n = 0;
    let patch = loop {
        n += 1;
        let p = serde_json::from_value(
            json!({"properties": {"desired": {"TemperatureThreshold": 27, "n": n}}}),
        )
        .unwrap();
        cloud
            .hub()
            .patch_twin(
                EDGE.into(),
                Some("filter".into()),
                p,
                ironedge_hub::registry::IfMatch::Any,
            )
            .await
            .unwrap();
        let got = tokio::time::timeout(
            Duration::from_secs(2),
            c.next("desired patch", |e| match e {
                ModuleEvent::DesiredProperties(p) => Some(p),
                _ => None,
            }),
        )
        .await;
        match got {
            Ok(p) => break p,
            Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "no desired patch arrived"
            ),
        }
    };
    assert_eq!(patch["TemperatureThreshold"], 27);
    assert!(patch["$version"].is_u64(), "{patch}");
    let twin = c.client.get_twin().await.unwrap();
    assert_eq!(twin.desired["TemperatureThreshold"], 27);

    let responder = {
        let client = c.client.clone();
        tokio::spawn(async move {
            let call = c
                .next("method call", |e| match e {
                    ModuleEvent::Method(m) => Some(m),
                    _ => None,
                })
                .await;
            assert_eq!(call.name, "reset");
            let payload = call.payload_json().unwrap();
            call.respond(200, &json!({"echo": payload})).await.unwrap();
            client
        })
    };
    let deadline = tokio::time::Instant::now() + T;
    let response = loop {
        let request = serde_json::from_value(
            json!({"methodName": "reset", "payload": {"n": 7}, "responseTimeoutInSeconds": 20}),
        )
        .unwrap();
        match cloud
            .hub()
            .invoke_method(EDGE.into(), Some("filter".into()), request)
            .await
        {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "method never reached the module: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(response.status, 200);
    assert_eq!(response.payload, json!({"echo": {"n": 7}}));
    let client = responder.await.unwrap();
    client.close();
    hub.stop().await;
    cloud.started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_string_fallback_signs_with_the_modules_own_key() {
    let module = Module::new("local");
    let other = Module::new("other");
    let hub = EdgeHub::start(Spec {
        modules: vec![module.clone(), other.clone()],
        routes: json!({"routes": {"r": r#"FROM /messages/modules/local/* INTO BrokeredEndpoint("/modules/other/inputs/in")"#}}),
        upstream: None,
        bind: None,
    })
    .await;
    let ca = hub.dir.path().join("ca.pem");
    std::fs::write(&ca, &hub.ca_pem).unwrap();
    let cs = format!(
        "HostName={};DeviceId={EDGE};ModuleId=local;SharedAccessKey={};GatewayHostName=localhost:{}",
        support::HUB,
        module.keys.primary.to_base64(),
        hub.mqtt.port()
    );
    let env = EdgeEnvironment::from_vars([
        ("EdgeHubConnectionString".to_owned(), cs),
        (
            "EdgeModuleCACertificateFile".to_owned(),
            ca.display().to_string(),
        ),
    ])
    .unwrap();
    let local = Client::start(&env, ClientOptions::default()).await;
    let mut rx = hub.client(&other, ClientOptions::default()).await;
    local
        .client
        .send_output("out", Message::new("hi"))
        .await
        .unwrap();
    let got = rx.input().await;
    assert_eq!(
        got.message.system.connection_module_id.as_deref(),
        Some("local")
    );
    got.ack().await.unwrap();
    local.client.close();
    rx.client.close();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_by_reconnecting_and_sending_goes_on() {
    let module = Module::new("renewer");
    let sink = Module::new("sink");
    let hub = EdgeHub::start(Spec {
        modules: vec![module.clone(), sink.clone()],
        routes: json!({"routes": {"r": r#"FROM /messages/modules/renewer/* INTO BrokeredEndpoint("/modules/sink/inputs/in")"#}}),
        upstream: None,
        bind: None,
    })
    .await;
    let options = ClientOptions {
        token_ttl: Duration::from_secs(4),
        token_renew_before: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    let mut c = hub.client(&module, options).await;
    let mut rx = hub.client(&sink, ClientOptions::default()).await;
    // Three connections with three tokens, each outliving the previous token's expiry.
    for round in 0..3 {
        c.next("reconnect", |e| {
            matches!(e, ModuleEvent::Connected).then_some(())
        })
        .await;
        let mut m = Message::new(format!("round {round}"));
        m.system.message_id = Some(format!("r{round}"));
        c.client.send_output("out", m).await.unwrap();
    }
    for round in 0..3 {
        let got = rx.input().await;
        assert_eq!(got.message.system.message_id, Some(format!("r{round}")));
        got.ack().await.unwrap();
    }
    c.client.close();
    rx.client.close();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_api_that_does_not_know_the_module_answers_with_an_error_status() {
    let hub = EdgeHub::start(Spec {
        modules: vec![Module::new("known")],
        routes: json!({}),
        upstream: None,
        bind: None,
    })
    .await;
    let workload = WorkloadClient::new(&hub.workload_uri, "2020-07-07").unwrap();
    assert!(
        workload
            .trust_bundle()
            .await
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let digest = workload.sign("known", GENERATION, b"data").await.unwrap();
    assert_eq!(digest.len(), 44);
    let err = workload
        .sign("stranger", GENERATION, b"data")
        .await
        .unwrap_err();
    assert!(
        matches!(err, WorkloadError::Status { operation: "sign", status, .. } if (400..500).contains(&status)),
        "{err}"
    );
    let missing = WorkloadClient::new("unix:///nonexistent/workload.sock", "2020-07-07").unwrap();
    let err = missing.trust_bundle().await.unwrap_err().to_string();
    assert!(
        err.contains("No such file or directory"),
        "the cause is shown: {err}"
    );
    let err = WorkloadClient::new("tcp://x", "2020-07-07").unwrap_err();
    assert!(err.to_string().contains("unix://"), "{err}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_before_it_is_sent() {
    let module = Module::new("big");
    let hub = EdgeHub::start(Spec {
        modules: vec![module.clone()],
        routes: json!({}),
        upstream: None,
        bind: None,
    })
    .await;
    let c = hub.client(&module, ClientOptions::default()).await;
    let err = c
        .client
        .send_output("out", Message::new(vec![b'x'; 256 * 1024]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(c.client.is_connected());
    c.client.close();
    hub.stop().await;
}
