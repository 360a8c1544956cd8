//! Offline: with the hub down the device keeps its deployment; a desired change made while the
//! device could not connect arrives once it reconnects.

use crate::common::*;
use ironedge_controller::crd::EdgeDeployment;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_hub_down_the_deployment_stays_and_a_change_made_meanwhile_arrives_after_reconnect()
 {
    let admin = admin().await;
    let ns = TestNamespace::new(&admin).await;
    let mut hub = TestHub::start().await;
    let cs = hub.edge_device("off-dev").await;
    let agent = RunningAgent::start(&admin, &ns.name, &hub, &cs).await;
    hub.set_modules(
        "off-dev",
        &manifest(json!({"sensor": module("running")}), json!({})),
    )
    .await;
    let before = wait_ed(&admin, &ns.name, "off-dev", "the deployment", |ed| {
        ed.spec.modules.len() == 2
    })
    .await;
    wait_reported(&hub, "off-dev", "the deployment reported", |r| {
        r["lastDesiredStatus"]["code"] == 200
    })
    .await;

    // The hub goes away entirely.
    hub.stop().await;
    let metrics = agent.handles.metrics.clone();
    eventually("the agent to notice", TIMEOUT, || {
        let text = metrics.encode();
        async move {
            text.contains("ironedge_agent_upstream_connected{identity=\"$edgeAgent\"} 0")
                .then_some(())
        }
    })
    .await;
    let eds: Api<EdgeDeployment> = ns.api();
    let deployments: Api<Deployment> = ns.api();
    // The cluster still runs the deployment (the controller keeps reconciling it offline).
    deployments
        .delete("sensor", &Default::default())
        .await
        .unwrap();
    eventually(
        "the controller to heal the Deployment offline",
        TIMEOUT,
        || {
            let d = deployments.clone();
            async move {
                d.get_opt("sensor")
                    .await
                    .ok()
                    .flatten()
                    .filter(|d| d.metadata.deletion_timestamp.is_none())
            }
        },
    )
    .await;
    assert_eq!(eds.get("off-dev").await.unwrap().spec, before.spec);

    // The hub comes back without its device endpoint: the desired state changes there while
    // the device still cannot connect.
    hub.start_rest_only().await;
    hub.set_modules(
        "off-dev",
        &manifest(
            json!({"sensor": module("running"), "late": module("running")}),
            json!({"up": "FROM /messages/* INTO $upstream"}),
        ),
    )
    .await;
    assert_eq!(eds.get("off-dev").await.unwrap().spec, before.spec);
    hub.stop().await;

    // Back on its usual addresses: the agent reconnects, pulls the full twin and catches up.
    hub.start_again().await;
    let after = wait_ed(
        &admin,
        &ns.name,
        "off-dev",
        "the change made while offline",
        |ed| ed.spec.modules.iter().any(|m| m.name == "late"),
    )
    .await;
    assert_eq!(
        after.spec.routes["up"].route,
        "FROM /messages/* INTO $upstream"
    );
    let version = hub.agent_twin("off-dev").await["properties"]["desired"]["$version"]
        .as_i64()
        .unwrap();
    wait_reported(&hub, "off-dev", "the caught-up deployment reported", |r| {
        r["lastDesiredVersion"] == version
            && r["lastDesiredStatus"]["code"] == 200
            && r["modules"]["late"].is_object()
    })
    .await;
    agent.stop().await;
    ns.delete().await;
}
