//! A bad manifest is rejected whole: `lastDesiredStatus` 400 (or 412) with the reason, and the
//! cluster keeps running the last good deployment untouched.

use crate::common::*;
use ironedge_controller::crd::EdgeDeployment;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, ResourceExt};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_manifest_is_reported_with_400_and_the_cluster_keeps_the_last_good_one() {
    let admin = admin().await;
    let ns = TestNamespace::new(&admin).await;
    let hub = TestHub::start().await;
    let cs = hub.edge_device("bad-dev").await;
    let agent = RunningAgent::start(&admin, &ns.name, &hub, &cs).await;
    hub.set_modules(
        "bad-dev",
        &manifest(
            json!({"sensor": module("running")}),
            json!({"up": "FROM /messages/* INTO $upstream"}),
        ),
    )
    .await;
    let good = wait_ed(&admin, &ns.name, "bad-dev", "the good deployment", |ed| {
        ed.spec.modules.len() == 1
    })
    .await;
    wait_reported(&hub, "bad-dev", "the good deployment reported", |r| {
        r["lastDesiredStatus"]["code"] == 200 && r["modules"]["sensor"].is_object()
    })
    .await;
    let deployments: Api<Deployment> = ns.api();
    let sensor_before = eventually("the sensor Deployment", TIMEOUT, || {
        let d = deployments.clone();
        async move { d.get_opt("sensor").await.ok().flatten() }
    })
    .await;

    // A broken route and a module without an image: rejected whole.
    let mut broken_module = module("running");
    broken_module["settings"]
        .as_object_mut()
        .unwrap()
        .remove("image");
    // (Written to the twins directly: the hub's own API refuses such a manifest.)
    hub.set_manifest_unchecked(
        "bad-dev",
        &manifest(
            json!({"sensor": module("running"), "extra": module("running"), "broken": broken_module}),
            json!({"up": "FROM /messages/* WHERE INTO $upstream"}),
        ),
    )
    .await;
    let version = hub.agent_twin("bad-dev").await["properties"]["desired"]["$version"]
        .as_i64()
        .unwrap();
    let reported = wait_reported(&hub, "bad-dev", "the rejection", |r| {
        r["lastDesiredVersion"] == version && r["lastDesiredStatus"]["code"] == 400
    })
    .await;
    let description = reported["lastDesiredStatus"]["description"]
        .as_str()
        .unwrap();
    assert!(
        description.contains("modules.broken.settings.image"),
        "names the bad module field: {description}"
    );
    assert!(
        description.contains("routes.up"),
        "names the bad route: {description}"
    );
    // Still reporting what runs: the last good deployment.
    assert!(reported["modules"]["sensor"].is_object());
    assert!(reported["modules"]["extra"].is_null());

    // Nothing on the cluster changed: same EdgeDeployment generation, no new module.
    let eds: Api<EdgeDeployment> = ns.api();
    let after = eds.get("bad-dev").await.unwrap();
    assert_eq!(after.metadata.generation, good.metadata.generation);
    assert_eq!(after.spec, good.spec);
    assert!(deployments.get_opt("extra").await.unwrap().is_none());
    assert!(
        hub.module("bad-dev", "extra").await.is_none(),
        "no identity for a rejected module"
    );
    let sensor_after = deployments.get("sensor").await.unwrap();
    assert_eq!(
        sensor_after.metadata.generation,
        sensor_before.metadata.generation
    );

    // An unsupported schema version is a 412.
    let mut future = manifest(json!({"sensor": module("running")}), json!({}));
    future["modulesContent"]["$edgeAgent"]["properties.desired"]["schemaVersion"] = json!("2.0");
    hub.set_manifest_unchecked("bad-dev", &future).await;
    let reported = wait_reported(&hub, "bad-dev", "the 412", |r| {
        r["lastDesiredStatus"]["code"] == 412
    })
    .await;
    assert!(
        reported["lastDesiredStatus"]["description"]
            .as_str()
            .unwrap()
            .contains("schemaVersion")
    );
    assert_eq!(eds.get("bad-dev").await.unwrap().spec, good.spec);

    // Fixing it applies again.
    hub.set_modules(
        "bad-dev",
        &manifest(
            json!({"sensor": module("running"), "extra": module("running")}),
            json!({"up": "FROM /messages/* INTO $upstream"}),
        ),
    )
    .await;
    wait_ed(&admin, &ns.name, "bad-dev", "the fixed deployment", |ed| {
        ed.spec.modules.len() == 2
    })
    .await;
    wait_reported(&hub, "bad-dev", "200 again", |r| {
        r["lastDesiredStatus"]["code"] == 200 && r["modules"]["extra"].is_object()
    })
    .await;
    let metrics = agent.metrics_text().await;
    assert!(
        metrics.contains("ironedge_agent_sync_errors_total{reason=\"invalid_manifest\"}"),
        "{metrics}"
    );
    let _ = after.name_any();
    agent.stop().await;
    ns.delete().await;
}
