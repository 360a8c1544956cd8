//! Routes come from the device's `EdgeDeployment` on a real kube-apiserver (`KUBECONFIG`; the
//! project's is started by `scripts/test`): a change is applied without dropping connections, and
//! a broken route leaves the running routes in force.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use ironedge_edgehub::config_source::ConfigSource;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{EdgeHub, EdgeHubSpec, Module, RawModule};

const HOW_TO_START: &str =
    "no Kubernetes cluster is reachable: run `export KUBECONFIG=\"$(scripts/k8s/start)\"` first";
const T: Duration = Duration::from_secs(60);

async fn client() -> kube::Client {
    let client = kube::Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("{HOW_TO_START} ({e})"));
    client
        .apiserver_version()
        .await
        .unwrap_or_else(|e| panic!("{HOW_TO_START} ({e})"));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "edgedeployments.ironedge.io",
        &PatchParams::apply("ironedge-edgehub-tests").force(),
        &Patch::Apply(ironedge_controller::crd::crd()),
    )
    .await
    .expect("install the EdgeDeployment CRD");
    let deadline = Instant::now() + T;
    loop {
        let crd = crds.get("edgedeployments.ironedge.io").await.unwrap();
        let established = crd.status.and_then(|s| s.conditions).is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        if established {
            return client;
        }
        assert!(Instant::now() < deadline, "CRD never established");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn deployment(routes: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "ironedge.io/v1", "kind": "EdgeDeployment",
        "metadata": {"name": "edge1"},
        "spec": {"deviceId": "edge1", "hubHostName": "testhub.azure-devices.net", "modules": [], "routes": routes}
    })
}

fn route(input: &str) -> serde_json::Value {
    json!({"r": {"route": format!("FROM /messages/modules/sender/outputs/out1 INTO BrokeredEndpoint(\"/modules/receiver/inputs/{input}\")")}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_deployment_route_changes_apply_live_and_a_broken_route_keeps_the_running_ones() {
    let client = client().await;
    let ns_name = format!(
        "edgehub-{}",
        uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap()
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns_name}})).unwrap(),
        )
        .await
        .unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns_name,
        &ironedge_edgehub::kube_watch::edge_deployment_resource(),
    );
    api.create(
        &PostParams::default(),
        &serde_json::from_value(deployment(route("in1"))).unwrap(),
    )
    .await
    .unwrap();

    let sender = Module::new("sender");
    let receiver = Module::new("receiver");
    let source = ConfigSource::Kube(ironedge_edgehub::kube_watch::KubeSource {
        client: client.clone(),
        namespace: ns_name.clone(),
        name: None,
    });
    let hub = EdgeHub::start_with_source(
        EdgeHubSpec {
            modules: vec![sender.clone(), receiver.clone()],
            routes: json!({}),
            upstream: None,
            registry: None,
        },
        source,
    )
    .await;
    let routes_mention = |needle: &str| {
        hub.hub
            .config()
            .table
            .entries()
            .iter()
            .any(|e| e.route.text().contains(needle))
    };
    let wait_routes = |needle: &'static str| async move {
        let deadline = Instant::now() + T;
        while !routes_mention(needle) {
            assert!(Instant::now() < deadline, "routes never mentioned {needle}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    wait_routes("in1").await;

    let mut rx = RawModule::connect(&hub, &receiver).await;
    rx.subscribe_inputs(&receiver).await;
    let mut tx = RawModule::connect(&hub, &sender).await;
    tx.send(&sender, "out1", "first").await;
    let (topic, body) = rx.receive().await;
    assert!(
        topic.starts_with("devices/edge1/modules/receiver/inputs/in1/"),
        "{topic}"
    );
    assert_eq!(body, "first");

    // Change the route in Kubernetes: the same connections now deliver to in2.
    let patch = json!({"spec": {"routes": route("in2")}});
    api.patch("edge1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_routes("in2").await;
    tx.send(&sender, "out1", "second").await;
    let (topic, body) = rx.receive().await;
    assert!(
        topic.starts_with("devices/edge1/modules/receiver/inputs/in2/"),
        "{topic}"
    );
    assert_eq!(body, "second");

    // A route that does not compile is rejected whole; in2 stays in force.
    let rejected_before = hub.hub.metrics().config_rejected.get();
    let bad =
        json!({"spec": {"routes": {"r": {"route": "FROM /messages/* WHERE INTO $upstream"}}}});
    api.patch("edge1", &PatchParams::default(), &Patch::Merge(&bad))
        .await
        .unwrap();
    let deadline = Instant::now() + T;
    while hub.hub.metrics().config_rejected.get() == rejected_before {
        assert!(
            Instant::now() < deadline,
            "the broken configuration was never seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(routes_mention("in2"));
    tx.send(&sender, "out1", "third").await;
    let (topic, body) = rx.receive().await;
    assert!(
        topic.starts_with("devices/edge1/modules/receiver/inputs/in2/"),
        "{topic}"
    );
    assert_eq!(body, "third");

    hub.stop().await;
    let _ = namespaces.delete(&ns_name, &DeleteParams::default()).await;
}
