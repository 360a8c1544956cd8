//! Cluster → cloud: pod states written by the test (playing the node) show up in the hub's
//! `$edgeAgent` reported properties with IoT Edge's fields.

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn running_crash_looping_and_stopped_modules_are_reported_with_their_fields() {
    let admin = admin().await;
    let ns = TestNamespace::new(&admin).await;
    let hub = TestHub::start().await;
    let cs = hub.edge_device("status-dev").await;
    let agent = RunningAgent::start(&admin, &ns.name, &hub, &cs).await;
    hub.set_modules(
        "status-dev",
        &manifest(
            json!({"sensor": module("running"), "crasher": module("running"), "idle": module("stopped")}),
            json!({"up": "FROM /messages/* INTO $upstream"}),
        ),
    )
    .await;
    let desired_version = hub.agent_twin("status-dev").await["properties"]["desired"]["$version"]
        .as_i64()
        .unwrap();

    // Before any pod runs, the modules are known but not running.
    let reported = wait_reported(&hub, "status-dev", "the deployment to be reported", |r| {
        r["lastDesiredVersion"] == desired_version && r["modules"]["sensor"].is_object()
    })
    .await;
    assert_eq!(reported["lastDesiredStatus"]["code"], 200);
    assert_eq!(reported["schemaVersion"], "1.0");
    assert_eq!(
        reported["systemModules"]["edgeAgent"]["runtimeStatus"],
        "running"
    );
    assert!(
        reported["runtime"]["platform"]["version"]
            .as_str()
            .unwrap()
            .starts_with("v1.")
    );
    assert!(
        reported["runtime"]["settings"]["registryCredentials"]["testacr"]["password"].is_null(),
        "registry passwords are never reported"
    );

    // Play the node: sensor runs, crasher crash-loops with exit code 3.
    let sensor = module_pod(&admin, &ns.name, "sensor").await;
    set_container_state(
        &admin,
        &sensor,
        json!({"running": {"startedAt": "2026-01-02T03:04:05Z"}}),
        json!({}),
        0,
    )
    .await;
    let crasher = module_pod(&admin, &ns.name, "crasher").await;
    set_container_state(
        &admin,
        &crasher,
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}),
        json!({"terminated": {"exitCode": 3, "reason": "Error",
            "startedAt": "2026-01-02T03:05:00Z", "finishedAt": "2026-01-02T03:05:07Z"}}),
        4,
    )
    .await;

    let reported = wait_reported(&hub, "status-dev", "pod states to be reported", |r| {
        r["modules"]["sensor"]["runtimeStatus"] == "running"
            && r["modules"]["crasher"]["runtimeStatus"] == "backoff"
            && r["modules"]["idle"]["runtimeStatus"] == "stopped"
    })
    .await;
    let sensor = &reported["modules"]["sensor"];
    assert_eq!(sensor["lastStartTimeUtc"], "2026-01-02T03:04:05Z");
    assert_eq!(sensor["restartCount"], 0);
    assert_eq!(sensor["exitCode"], 0);
    assert_eq!(sensor["settings"]["image"], IMAGE);
    assert_eq!(sensor["status"], "running");
    let crasher = &reported["modules"]["crasher"];
    assert_eq!(crasher["exitCode"], 3);
    assert_eq!(crasher["restartCount"], 4);
    assert_eq!(crasher["lastExitTimeUtc"], "2026-01-02T03:05:07Z");
    assert_eq!(crasher["lastRestartTimeUtc"], "2026-01-02T03:05:00Z");
    assert!(
        crasher["statusDescription"]
            .as_str()
            .unwrap()
            .contains("CrashLoopBackOff"),
        "{crasher}"
    );
    let idle = &reported["modules"]["idle"];
    assert_eq!(idle["status"], "stopped");
    for field in [
        "runtimeStatus",
        "exitCode",
        "statusDescription",
        "lastStartTimeUtc",
        "lastExitTimeUtc",
        "restartCount",
        "lastRestartTimeUtc",
    ] {
        assert!(!idle[field].is_null(), "idle.{field} missing: {idle}");
    }

    // The crash loop ends: the next run is reported, and nothing else changes.
    set_container_state(
        &admin,
        &module_pod(&admin, &ns.name, "crasher").await,
        json!({"running": {"startedAt": "2026-01-02T03:06:00Z"}}),
        json!({"terminated": {"exitCode": 3, "reason": "Error",
            "startedAt": "2026-01-02T03:05:00Z", "finishedAt": "2026-01-02T03:05:07Z"}}),
        5,
    )
    .await;
    let reported = wait_reported(&hub, "status-dev", "the recovered module", |r| {
        r["modules"]["crasher"]["runtimeStatus"] == "running"
    })
    .await;
    assert_eq!(reported["modules"]["crasher"]["restartCount"], 5);
    assert_eq!(
        reported["modules"]["crasher"]["lastRestartTimeUtc"],
        "2026-01-02T03:06:00Z"
    );
    assert_eq!(reported["modules"]["sensor"]["runtimeStatus"], "running");
    let patches = metric(
        &agent.metrics_text().await,
        "ironedge_agent_reported_patches_total",
    );
    assert!(patches >= 2.0, "reported patches sent: {patches}");

    agent.stop().await;
    ns.delete().await;
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_edge_hub_pod_of_the_device_chart_is_reported_under_system_modules() {
    let admin = admin().await;
    let ns = TestNamespace::new(&admin).await;
    let hub = TestHub::start().await;
    let cs = hub.edge_device("sys-dev").await;
    let agent = RunningAgent::start(&admin, &ns.name, &hub, &cs).await;
    hub.set_modules(
        "sys-dev",
        &manifest(json!({"sensor": module("running")}), json!({})),
    )
    .await;
    let reported = wait_reported(&hub, "sys-dev", "no edge hub pod yet", |r| {
        r["systemModules"]["edgeHub"]["runtimeStatus"] == "unknown"
    })
    .await;
    assert_eq!(
        reported["systemModules"]["edgeAgent"]["runtimeStatus"],
        "running"
    );

    // Play the device chart and the node: its edge hub pod crash-loops.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = ns.api();
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "ironedge-edgehub-0", "labels": {
            "app.kubernetes.io/part-of": "ironedge", "app.kubernetes.io/component": "edgehub"}},
        "spec": {"containers": [{"name": "edgehub", "image": IMAGE}]}}))
    .unwrap();
    let pod = pods
        .create(&kube::api::PostParams::default(), &pod)
        .await
        .unwrap();
    set_container_state(
        &admin,
        &pod,
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}}),
        json!({"terminated": {"exitCode": 2, "reason": "Error",
            "startedAt": "2026-01-02T03:05:00Z", "finishedAt": "2026-01-02T03:05:03Z"}}),
        3,
    )
    .await;
    let reported = wait_reported(&hub, "sys-dev", "the edge hub's crash loop", |r| {
        r["systemModules"]["edgeHub"]["runtimeStatus"] == "backoff"
    })
    .await;
    let edge_hub = &reported["systemModules"]["edgeHub"];
    assert_eq!(edge_hub["exitCode"], 2);
    assert_eq!(edge_hub["restartCount"], 3);
    assert_eq!(edge_hub["lastExitTimeUtc"], "2026-01-02T03:05:03Z");
    assert_eq!(edge_hub["settings"]["image"], IMAGE);
    assert_eq!(edge_hub["status"], "running");
    agent.stop().await;
    ns.delete().await;
}
