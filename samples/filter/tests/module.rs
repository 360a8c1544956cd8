//! The filter modules as processes (the Rust binary and the Python `azure-iot-device` script)
//! between a sensor and the cloud: a real edge hub, workload API and ironedge cloud hub.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../crates/module-client/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use ironedge_module_client::{ClientOptions, Message};
use serde_json::{Value, json};
use support::{Cloud, EdgeHub, Module, ModuleProcess, Spec, loopback, python};

fn reading(id: &str, temperature: f64) -> Message {
    let mut m = Message::new(
        json!({"machine": {"temperature": temperature, "pressure": 1.5},
               "ambient": {"temperature": 21.0, "humidity": 25}})
        .to_string(),
    );
    m.system.message_id = Some(id.to_owned());
    m.system.content_type = Some("application/json".into());
    m.system.content_encoding = Some("utf-8".into());
    m.set_property("sequenceNumber", id.trim_start_matches('m'));
    m
}

fn routes() -> Value {
    json!({"routes": {
        "toFilter": r#"FROM /messages/modules/sensor/outputs/temperatureOutput INTO BrokeredEndpoint("/modules/filter/inputs/input1")"#,
        "up": "FROM /messages/modules/filter/outputs/output1 INTO $upstream"
    }})
}

fn python_filter() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../filter-python/main.py")
}

/// Runs one filter implementation through the whole check.
async fn alerts_follow_the_threshold(sdk: bool) {
    let sensor = Module::new("sensor");
    let filter = Module::new("filter");
    let cloud = Cloud::start(&[sensor.clone(), filter.clone()]).await;
    let hub = EdgeHub::start(Spec {
        modules: vec![sensor.clone(), filter.clone()],
        routes: routes(),
        upstream: Some(cloud.upstream()),
        bind: sdk.then(loopback),
    })
    .await;
    let mut env = if sdk {
        hub.sdk_env(&filter)
    } else {
        hub.module_env(&filter)
    };
    env.push(("TemperatureThreshold".into(), "25".into()));
    let process = if sdk {
        let script = python_filter();
        ModuleProcess::spawn(python(), &[script.to_str().unwrap()], &env)
    } else {
        ModuleProcess::spawn(Path::new(env!("CARGO_BIN_EXE_ironedge-filter")), &[], &env)
    };
    // The filter reports its threshold once connected.
    cloud
        .wait_reported("filter", "TemperatureThreshold 25", |r| {
            r["TemperatureThreshold"] == 25.0
        })
        .await;

    let s = hub.client(&sensor, ClientOptions::default()).await;
    for (id, t) in [
        ("m1", 20.0),
        ("m2", 30.0),
        ("m3", 25.0),
        ("m4", 26.5),
        ("m5", 24.0),
    ] {
        s.client
            .send_output("temperatureOutput", reading(id, t))
            .await
            .unwrap();
    }
    let alerts = cloud.wait_telemetry("filter", 2).await;
    let ids: Vec<_> = alerts
        .iter()
        .map(|a| a.message_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["m2", "m4"], "only readings above 25 are alerts");
    for a in &alerts {
        assert_eq!(
            a.properties.get("MessageType").map(String::as_str),
            Some("Alert")
        );
        assert_eq!(a.output_name.as_deref(), Some("output1"));
        assert_eq!(a.content_type.as_deref(), Some("application/json"));
    }
    let body: Value = serde_json::from_slice(&alerts[0].body).unwrap();
    assert_eq!(body["machine"]["temperature"], 30.0);
    assert_eq!(
        alerts[0]
            .properties
            .get("sequenceNumber")
            .map(String::as_str),
        Some("2")
    );

    // A new threshold through the cloud: reported back, then applied to the next readings.
    cloud
        .patch_desired("filter", json!({"TemperatureThreshold": 29}))
        .await;
    cloud
        .wait_reported("filter", "TemperatureThreshold 29", |r| {
            r["TemperatureThreshold"] == 29.0
        })
        .await;
    for (id, t) in [("m6", 28.0), ("m7", 29.5)] {
        s.client
            .send_output("temperatureOutput", reading(id, t))
            .await
            .unwrap();
    }
    let alerts = cloud.wait_telemetry("filter", 3).await;
    let ids: Vec<_> = alerts
        .iter()
        .map(|a| a.message_id.clone().unwrap_or_default())
        .collect();
    // m6 was handled before m7 (one input queue, in order), so it would be here if forwarded.
    assert_eq!(ids, ["m2", "m4", "m7"]);

    process.stop().await;
    s.client.close();
    hub.stop().await;
    cloud.started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_filter_forwards_readings_above_the_threshold_and_follows_the_desired_one() {
    alerts_follow_the_threshold(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_filter_does_the_same_unmodified() {
    alerts_follow_the_threshold(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_threshold_stops_the_rust_filter_with_the_reason() {
    let filter = Module::new("filter");
    let hub = EdgeHub::start(Spec {
        modules: vec![filter.clone()],
        routes: json!({}),
        upstream: None,
        bind: None,
    })
    .await;
    let mut env = hub.module_env(&filter);
    env.push(("TemperatureThreshold".into(), "warm".into()));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ironedge-filter"))
        .envs(env)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TemperatureThreshold") && stderr.contains("warm"),
        "{stderr}"
    );
    hub.stop().await;
}
