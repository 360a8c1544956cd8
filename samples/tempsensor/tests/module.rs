//! The sensor binary against a real edge hub, workload API and ironedge cloud hub: the readings
//! its seed predicts, its reported properties, desired properties and direct methods.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../crates/module-client/tests/support/mod.rs"]
mod support;

use std::path::Path;

use ironedge_module_client::ClientOptions;
use ironedge_tempsensor::simulator::{Simulator, SimulatorParameters};
use serde_json::{Value, json};
use support::{Cloud, EDGE, EdgeHub, Module, ModuleProcess, Spec, T};

fn sensor_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ironedge-tempsensor"))
}

async fn invoke(cloud: &Cloud, method: &str) -> (i64, Value) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let request = serde_json::from_value(
            json!({"methodName": method, "payload": {}, "responseTimeoutInSeconds": 10}),
        )
        .unwrap();
        match cloud
            .hub()
            .invoke_method(EDGE.into(), Some("sensor".into()), request)
            .await
        {
            Ok(r) => return (r.status, r.payload),
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "method never reached the sensor: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sensor_sends_the_readings_its_seed_predicts_then_reports_it_is_done() {
    let sensor = Module::new("sensor");
    let sink = Module::new("sink");
    let cloud = Cloud::start(&[sensor.clone(), sink.clone()]).await;
    let hub = EdgeHub::start(Spec {
        modules: vec![sensor.clone(), sink.clone()],
        routes: json!({"routes": {"r": r#"FROM /messages/modules/sensor/outputs/temperatureOutput INTO BrokeredEndpoint("/modules/sink/inputs/in")"#}}),
        upstream: Some(cloud.upstream()),
        bind: None,
    })
    .await;
    let mut rx = hub.client(&sink, ClientOptions::default()).await;
    let mut env = hub.module_env(&sensor);
    env.extend([
        ("MessageCount".to_owned(), "6".to_owned()),
        ("SendInterval".to_owned(), "0.05".to_owned()),
        ("SimulatorSeed".to_owned(), "1234".to_owned()),
    ]);
    let process = ModuleProcess::spawn(sensor_binary(), &[], &env);

    let mut expected = Simulator::new(SimulatorParameters::default(), 1234);
    let mut batch = None;
    for seq in 1..=6 {
        let got = rx.input().await;
        let body = got.body_json().unwrap();
        let want = expected.next_reading();
        assert_eq!(
            body["machine"],
            serde_json::to_value(&want.machine).unwrap(),
            "reading {seq}"
        );
        assert_eq!(
            body["ambient"],
            serde_json::to_value(&want.ambient).unwrap(),
            "reading {seq}"
        );
        assert!(
            body["timeCreated"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .is_ok()
        );
        assert_eq!(
            got.message.property("sequenceNumber"),
            Some(seq.to_string().as_str())
        );
        assert_eq!(
            got.message.system.connection_module_id.as_deref(),
            Some("sensor")
        );
        assert_eq!(
            got.message.system.content_type.as_deref(),
            Some("application/json")
        );
        let b = got.message.property("batchId").unwrap().to_owned();
        assert_eq!(batch.get_or_insert(b.clone()), &b);
        got.ack().await.unwrap();
    }
    let reported = cloud
        .wait_reported("sensor", "sent 6", |r| r["sent"] == 6)
        .await;
    assert_eq!(reported["MessageCount"], 6);
    assert_eq!(reported["SendInterval"], 0.05);
    assert_eq!(reported["batchId"].as_str(), batch.as_deref());
    process.stop().await;
    rx.client.close();
    hub.stop().await;
    cloud.started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_properties_steer_the_sensor_and_reset_restarts_the_warm_up() {
    let sensor = Module::new("sensor");
    let sink = Module::new("sink");
    let cloud = Cloud::start(&[sensor.clone(), sink.clone()]).await;
    let hub = EdgeHub::start(Spec {
        modules: vec![sensor.clone(), sink.clone()],
        routes: json!({"routes": {"r": r#"FROM /messages/modules/sensor/* INTO BrokeredEndpoint("/modules/sink/inputs/in")"#}}),
        upstream: Some(cloud.upstream()),
        bind: None,
    })
    .await;
    let mut rx = hub.client(&sink, ClientOptions::default()).await;
    let mut env = hub.module_env(&sensor);
    env.extend([
        ("MessageCount".to_owned(), "-1".to_owned()),
        ("SendInterval".to_owned(), "0.02".to_owned()),
        ("SendData".to_owned(), "false".to_owned()),
    ]);
    let process = ModuleProcess::spawn(sensor_binary(), &[], &env);
    cloud
        .wait_reported("sensor", "SendData false", |r| r["SendData"] == false)
        .await;

    // Switch sending on through the cloud; the sensor reports the new settings and sends.
    cloud
        .patch_desired("sensor", json!({"SendData": true, "SendInterval": 0.05}))
        .await;
    cloud
        .wait_reported("sensor", "SendData true at 0.05 s", |r| {
            r["SendData"] == true && r["SendInterval"] == 0.05
        })
        .await;
    let mut last = 0.0;
    for _ in 0..40 {
        let got = rx.input().await;
        last = got.body_json().unwrap()["machine"]["temperature"]
            .as_f64()
            .unwrap();
        got.ack().await.unwrap();
    }
    assert!(last > 22.0, "40 readings warm the machine up: {last}");

    let (status, payload) = invoke(&cloud, "reset").await;
    assert_eq!((status, payload), (200, json!({"message": "reset"})));
    // Everything sent after the answer starts from the minimum again (21 + at most 1.25).
    let mut after_reset = None;
    for _ in 0..200 {
        let got = rx.input().await;
        let t = got.body_json().unwrap()["machine"]["temperature"]
            .as_f64()
            .unwrap();
        got.ack().await.unwrap();
        if t < 22.25 {
            after_reset = Some(t);
            break;
        }
    }
    assert!(
        after_reset.is_some(),
        "no reading after the reset started from the minimum"
    );
    let (status, _) = invoke(&cloud, "explode").await;
    assert_eq!(status, 404);

    process.stop().await;
    rx.client.close();
    hub.stop().await;
    cloud.started.shutdown().await;
}
