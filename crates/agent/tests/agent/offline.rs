//! Offline: with the hub down the device keeps its deployment; a desired change made while the
//! device could not connect arrives once it reconnects. An agent that starts while the hub is
//! unreachable is healthy and reconciles what the cluster holds until the hub is back.

use crate::common::*;
use ironedge_controller::crd::EdgeDeployment;
use ironedge_controller::from_manifest::{Identity, from_manifest};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

/// Deletes the `sensor` Deployment and waits until the controller has made it again.
async fn controller_heals(deployments: &Api<Deployment>, what: &str) {
    let first = eventually(what, TIMEOUT, || {
        let d = deployments.clone();
        async move { d.get_opt("sensor").await.ok().flatten() }
    })
    .await;
    deployments
        .delete("sensor", &Default::default())
        .await
        .unwrap();
    eventually(what, TIMEOUT, || {
        let d = deployments.clone();
        let old = first.metadata.uid.clone();
        async move {
            d.get_opt("sensor")
                .await
                .ok()
                .flatten()
                .filter(|d| d.metadata.deletion_timestamp.is_none() && d.metadata.uid != old)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_that_starts_with_the_hub_unreachable_is_healthy_reconciles_and_syncs_when_it_is_back()
 {
    let admin = admin().await;
    let ns = TestNamespace::new(&admin).await;
    let mut hub = TestHub::start().await;
    let cs = hub.edge_device("cold-dev").await;
    let desired = manifest(
        json!({"sensor": module("running"), "late": module("running")}),
        json!({}),
    );
    hub.set_modules("cold-dev", &desired).await;
    hub.stop().await;

    // The cluster already holds a deployment (restored, or written by an earlier agent whose
    // identity Secrets are gone): the agent has no keys and cannot reach the hub to make any.
    let held = manifest(json!({"sensor": module("running")}), json!({}));
    let held = ironedge_model::Manifest::from_value(&held).unwrap();
    let identity = Identity {
        device_id: "cold-dev".into(),
        hub_host_name: HUB_NAME.into(),
        ..Identity::default()
    };
    let ed = EdgeDeployment::new("cold-dev", from_manifest(&held, &identity).spec);
    let eds: Api<EdgeDeployment> = ns.api();
    eds.create(&PostParams::default(), &ed).await.unwrap();

    let options = AgentOptions {
        wait_ready: false,
        ..AgentOptions::default()
    };
    let agent = RunningAgent::start_with(&admin, &ns.name, &hub, &cs, options).await;
    let (code, body) = eventually("/healthz while the hub is unreachable", TIMEOUT, || {
        let agent = &agent;
        async move { agent.ops_get("/healthz").await }
    })
    .await;
    assert_eq!((code, body.as_str()), (200, "ok"));
    let (code, metrics) = agent.ops_get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("ironedge_controller_"), "{metrics}");
    assert!(
        !agent.handles.readiness.is_ready(),
        "ready without identities"
    );
    assert_eq!(agent.ops_get("/readyz").await.unwrap().0, 503);

    let deployments: Api<Deployment> = ns.api();
    controller_heals(&deployments, "the controller to reconcile offline").await;
    assert_eq!(agent.ops_get("/healthz").await.unwrap().0, 200);
    assert!(hub.started.is_none(), "the hub stayed down throughout");

    // The hub is back: identities, then the desired state made before the agent started.
    hub.start_again().await;
    agent.wait_ready().await;
    wait_ed(
        &admin,
        &ns.name,
        "cold-dev",
        "the hub's desired state",
        |ed| {
            ed.spec.modules.iter().any(|m| m.name == "late")
                && ed.spec.modules.iter().all(|m| m.generation_id.is_some())
        },
    )
    .await;
    assert!(hub.module("cold-dev", "late").await.is_some());
    let version = hub.agent_twin("cold-dev").await["properties"]["desired"]["$version"]
        .as_i64()
        .unwrap();
    wait_reported(&hub, "cold-dev", "the synced deployment reported", |r| {
        r["lastDesiredVersion"] == version
            && r["lastDesiredStatus"]["code"] == 200
            && r["modules"]["late"].is_object()
    })
    .await;
    eventually("/readyz once identities exist", TIMEOUT, || {
        let agent = &agent;
        async move { (agent.ops_get("/readyz").await?.0 == 200).then_some(()) }
    })
    .await;
    agent.stop().await;
    ns.delete().await;
}

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
        ed.spec.modules.len() == 1
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
        // Both twins: the `$edgeHub` link may catch up a moment after the `$edgeAgent` one.
        |ed| ed.spec.modules.iter().any(|m| m.name == "late") && ed.spec.routes.contains_key("up"),
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
