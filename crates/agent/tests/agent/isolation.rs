//! Two devices (two namespaces) on one cluster, each agent running with its own namespaced
//! ServiceAccount: neither can read or change the other's objects, Secrets or hub identities,
//! nor use the other's module tokens.

use crate::common::*;
use ironedge_agent::provisioning::DeviceCredentials;
use ironedge_controller::crd::EdgeDeployment;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_devices_cannot_read_or_change_each_others_objects_secrets_or_identities() {
    let admin = admin().await;
    let ns_a = TestNamespace::new(&admin).await;
    let ns_b = TestNamespace::new(&admin).await;
    let hub = TestHub::start().await;
    let cs_a = hub.edge_device("iso-a").await;
    let cs_b = hub.edge_device("iso-b").await;
    let agent_a = RunningAgent::start(&admin, &ns_a.name, &hub, &cs_a).await;
    let agent_b = RunningAgent::start(&admin, &ns_b.name, &hub, &cs_b).await;
    // Both devices run a module of the same name.
    for device in ["iso-a", "iso-b"] {
        hub.set_modules(
            device,
            &manifest(json!({"sensor": module("running")}), json!({})),
        )
        .await;
    }
    for ns in [&ns_a.name, &ns_b.name] {
        module_pod(&admin, ns, "sensor").await;
    }
    let b_sensor = hub.module("iso-b", "sensor").await.unwrap();

    // Kubernetes: agent A's own credentials reach nothing in B's namespace.
    let a = agent_a.client.clone();
    let b_secrets: Api<Secret> = Api::namespaced(a.clone(), &ns_b.name);
    forbidden(
        b_secrets.get("ironedge-identity-sensor").await,
        "read B's key Secret",
    );
    forbidden(
        b_secrets.list(&ListParams::default()).await,
        "list B's Secrets",
    );
    forbidden(
        b_secrets
            .delete("ironedge-edge-ca", &DeleteParams::default())
            .await,
        "delete B's CA",
    );
    let b_eds: Api<EdgeDeployment> = Api::namespaced(a.clone(), &ns_b.name);
    forbidden(b_eds.get("iso-b").await, "read B's EdgeDeployment");
    forbidden(
        b_eds
            .patch(
                "iso-b",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"modules": []}})),
            )
            .await,
        "change B's EdgeDeployment",
    );
    let b_deployments: Api<Deployment> = Api::namespaced(a.clone(), &ns_b.name);
    forbidden(
        b_deployments
            .delete("sensor", &DeleteParams::default())
            .await,
        "delete B's Deployment",
    );
    let b_pods: Api<Pod> = Api::namespaced(a.clone(), &ns_b.name);
    forbidden(b_pods.list(&ListParams::default()).await, "list B's pods");
    let all_secrets: Api<Secret> = Api::all(a.clone());
    forbidden(
        all_secrets.list(&ListParams::default()).await,
        "list Secrets cluster-wide",
    );
    // …while its own namespace works.
    let own: Api<Secret> = Api::namespaced(a.clone(), &ns_a.name);
    assert!(own.get("ironedge-identity-sensor").await.is_ok());

    // The hub: device A's credentials cannot read, change or delete B's module identities.
    let creds_a = DeviceCredentials::from_connection_string(&cs_a).unwrap();
    let token_a = creds_a.token(u64::try_from(jiff::Timestamp::now().as_second()).unwrap() + 600);
    let tls = ironedge_pki::client_config(&hub.ca_pem(), None).unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .build()
        .unwrap();
    let url = format!(
        "https://{}/devices/iso-b/modules/sensor?api-version=2017-11-08-preview",
        hub.rest
    );
    for request in [
        http.get(&url),
        http.delete(&url).header("If-Match", "\"*\""),
        http.put(&url)
            .header("If-Match", "\"*\"")
            .json(&json!({"moduleId": "sensor", "authentication": {"type": "sas"}})),
    ] {
        let status = request
            .header("Authorization", &token_a)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(
            status == 401 || status == 403,
            "device A on B's identity: {status}"
        );
    }
    assert_eq!(
        hub.module("iso-b", "sensor").await.unwrap()["generationId"],
        b_sensor["generationId"]
    );

    // Workload: B's module token (same module name) is refused by A's agent.
    let b_pod = module_pod(&admin, &ns_b.name, "sensor").await;
    let b_token = service_account_token(
        &admin,
        &ns_b.name,
        "sensor",
        Some(ironedge_agent::settings::DEFAULT_WORKLOAD_AUDIENCE),
        Some(&b_pod),
    )
    .await;
    let a_gen = hub.module("iso-a", "sensor").await.unwrap()["generationId"]
        .as_str()
        .unwrap()
        .to_string();
    let smuggled = Sidecar::start(&agent_a, &admin, &b_token).await;
    let (status, _) = unix_http(
        &smuggled.socket(),
        "POST",
        &format!("/modules/sensor/genid/{a_gen}/sign?api-version=2019-01-30"),
        Some(&json!({"keyId": "primary", "algo": "HMACSHA256", "data": "eA=="})),
    )
    .await;
    assert_eq!(status, 403, "B's module token at A's agent");

    // A's deployment change removes only A's identity; B's stays.
    hub.set_modules("iso-a", &manifest(json!({}), json!({})))
        .await;
    eventually("A's sensor identity to go", TIMEOUT, || async {
        hub.module("iso-a", "sensor").await.is_none().then_some(())
    })
    .await;
    assert_eq!(
        hub.module("iso-b", "sensor").await.unwrap()["generationId"],
        b_sensor["generationId"]
    );
    assert!(
        Api::<Secret>::namespaced(admin.clone(), &ns_b.name)
            .get("ironedge-identity-sensor")
            .await
            .is_ok()
    );

    agent_a.stop().await;
    agent_b.stop().await;
    ns_a.delete().await;
    ns_b.delete().await;
}
