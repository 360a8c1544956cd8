//! Cloud → cluster: modules set on the device through the hub's REST API become the device's
//! EdgeDeployment, its Kubernetes objects and module identities; changes and removals follow.

use crate::common::*;
use ironedge_controller::crd::EdgeDeployment;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;

fn env_of(d: &Deployment, name: &str) -> Option<String> {
    d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)?
        .value
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn modules_set_through_the_hub_appear_in_the_cluster_and_follow_changes_and_removal() {
    let admin = admin().await;
    let ns = TestNamespace::new(&admin).await;
    let hub = TestHub::start().await;
    let cs = hub.edge_device("dep-dev").await;
    let agent = RunningAgent::start(&admin, &ns.name, &hub, &cs).await;

    // 1. Two modules through applyConfigurationContent.
    hub.set_modules(
        "dep-dev",
        &manifest(
            json!({"sensor": module("running"), "filter": module("running")}),
            json!({"up": "FROM /messages/* INTO $upstream"}),
        ),
    )
    .await;
    let ed = wait_ed(
        &admin,
        &ns.name,
        "dep-dev",
        "the EdgeDeployment with 2 modules",
        |ed| ed.spec.modules.len() == 2,
    )
    .await;
    let names: Vec<_> = ed.spec.modules.iter().map(|m| m.name.as_str()).collect();
    // The device chart runs the system modules: they are not modules of the spec.
    assert_eq!(names, ["sensor", "filter"]);
    assert_eq!(
        ed.spec.routes["up"].route,
        "FROM /messages/* INTO $upstream"
    );
    assert!(
        !serde_json::to_string(&ed).unwrap().contains("s3cr3t-pull"),
        "registry credentials must never enter the EdgeDeployment"
    );
    let pull = ed.spec.image_pull_secrets[0].name.clone();
    let secret = ns.api::<Secret>().get(&pull).await.unwrap();
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );

    // Identities: created in the hub by the agent, keys in the namespace, generation ids in pods.
    let sensor_identity = hub
        .module("dep-dev", "sensor")
        .await
        .expect("sensor identity");
    assert_eq!(sensor_identity["managedBy"], "IotEdge");
    let generation = sensor_identity["generationId"]
        .as_str()
        .unwrap()
        .to_string();
    let keys = ns
        .api::<Secret>()
        .get("ironedge-identity-sensor")
        .await
        .unwrap();
    let primary = String::from_utf8(keys.data.unwrap()["primaryKey"].0.clone()).unwrap();
    assert_eq!(
        sensor_identity["authentication"]["symmetricKey"]["primaryKey"],
        primary
    );
    let deployments: Api<Deployment> = ns.api();
    let sensor = eventually("the sensor Deployment", TIMEOUT, || {
        let d = deployments.clone();
        async move { d.get_opt("sensor").await.ok().flatten() }
    })
    .await;
    assert_eq!(
        env_of(&sensor, "IOTEDGE_MODULEGENERATIONID").as_deref(),
        Some(generation.as_str())
    );
    assert_eq!(
        env_of(&sensor, "IOTEDGE_DEVICEID").as_deref(),
        Some("dep-dev")
    );
    assert_eq!(
        env_of(&sensor, "IOTEDGE_WORKLOADURI").as_deref(),
        Some("unix:///var/run/iotedge/workload.sock")
    );
    let containers = &sensor
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers;
    assert_eq!(
        containers[1].name, "ironedge-workload-proxy",
        "the workload proxy sidecar"
    );
    eventually("Deployment filter", TIMEOUT, || {
        let d = deployments.clone();
        async move { d.get_opt("filter").await.ok().flatten() }
    })
    .await;
    assert!(
        deployments.get_opt("edgehub").await.unwrap().is_none(),
        "the edge hub is the device chart's, not a module workload"
    );

    // 2. Change: a new image for sensor, filter removed, a third module added.
    let mut changed = module("running");
    changed["settings"]["image"] = json!("example.com/ironedge/test-module:2.0");
    hub.set_modules(
        "dep-dev",
        &manifest(
            json!({"sensor": changed, "counter": module("running")}),
            json!({"up": "FROM /messages/* INTO $upstream"}),
        ),
    )
    .await;
    eventually("the cluster to follow the change", TIMEOUT, || {
        let d = deployments.clone();
        async move {
            let sensor = d.get_opt("sensor").await.ok()??;
            let image = sensor.spec?.template.spec?.containers[0].image.clone()?;
            let counter = d.get_opt("counter").await.ok()?;
            let filter = d.get_opt("filter").await.ok()?;
            (image.ends_with(":2.0") && counter.is_some() && filter.is_none()).then_some(())
        }
    })
    .await;
    eventually("filter's identity to leave the hub", TIMEOUT, || async {
        hub.module("dep-dev", "filter")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        ns.api::<Secret>()
            .get_opt("ironedge-identity-filter")
            .await
            .unwrap()
            .is_none(),
        "filter's keys are forgotten"
    );
    assert!(hub.module("dep-dev", "counter").await.is_some());
    let sensor_after = hub.module("dep-dev", "sensor").await.unwrap();
    assert_eq!(
        sensor_after["generationId"], generation,
        "an updated module keeps its identity"
    );

    // 3. Remove every user module: none is left, the routes stay for the edge hub.
    hub.set_modules("dep-dev", &manifest(json!({}), json!({})))
        .await;
    wait_ed(&admin, &ns.name, "dep-dev", "no module left", |ed| {
        ed.spec.modules.is_empty()
    })
    .await;
    eventually("module Deployments to be removed", TIMEOUT, || {
        let d = deployments.clone();
        async move {
            let sensor = d.get_opt("sensor").await.ok()?;
            let counter = d.get_opt("counter").await.ok()?;
            (sensor.is_none() && counter.is_none()).then_some(())
        }
    })
    .await;
    let eds: Api<EdgeDeployment> = ns.api();
    assert_eq!(eds.list(&Default::default()).await.unwrap().items.len(), 1);
    let events: Api<k8s_openapi::api::core::v1::Event> = ns.api();
    eventually(
        "a DeploymentApplied event on the EdgeDeployment",
        TIMEOUT,
        || {
            let events = events.clone();
            async move {
                events
                    .list(&Default::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|e| {
                        e.reason.as_deref() == Some("DeploymentApplied")
                            && e.involved_object.kind.as_deref() == Some("EdgeDeployment")
                    })
            }
        },
    )
    .await;
    let metrics = agent.metrics_text().await;
    assert!(
        metrics.contains("ironedge_agent_upstream_connected{identity=\"$edgeAgent\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("ironedge_agent_certificate_expiry_timestamp_seconds"));

    agent.stop().await;
    ns.delete().await;
}
