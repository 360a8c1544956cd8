//! Provisioning: the agent reads the device connection string from a Secret of its namespace with
//! its own namespaced permissions; a Secret without it, or one of another device, is refused.

use crate::common::*;
use ironedge_agent::provisioning::{DEFAULT_SECRET_KEY, DeviceCredentials};
use ironedge_protocol::SymmetricKey;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

async fn create_secret(admin: &kube::Client, ns: &str, name: &str, key: &str, value: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name}, "stringData": {key: value}}))
    .unwrap();
    Api::<Secret>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_string_comes_from_a_secret_of_the_devices_own_namespace_only() {
    let admin = admin().await;
    let (ns, other) = (
        TestNamespace::new(&admin).await,
        TestNamespace::new(&admin).await,
    );
    let key = SymmetricKey::generate().to_base64();
    let cs = format!("HostName={HUB_NAME};DeviceId=sec-dev;SharedAccessKey={key}");
    create_secret(&admin, &ns.name, "sec-dev-device", DEFAULT_SECRET_KEY, &cs).await;
    create_secret(&admin, &ns.name, "wrong-key", "token", &cs).await;
    create_secret(
        &admin,
        &other.name,
        "sec-dev-device",
        DEFAULT_SECRET_KEY,
        &cs,
    )
    .await;
    let agent = agent_client(&admin, &ns.name).await;

    let secrets: Api<Secret> = Api::namespaced(agent.clone(), &ns.name);
    let device = DeviceCredentials::from_secret(&secrets, "sec-dev-device", DEFAULT_SECRET_KEY)
        .await
        .unwrap();
    assert_eq!(
        (device.host_name.as_str(), device.device_id.as_str()),
        (HUB_NAME, "sec-dev")
    );

    let err = DeviceCredentials::from_secret(&secrets, "wrong-key", DEFAULT_SECRET_KEY)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wrong-key") && err.contains(DEFAULT_SECRET_KEY),
        "{err}"
    );
    let err = DeviceCredentials::from_secret(&secrets, "missing", DEFAULT_SECRET_KEY)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"missing\" with the device connection string does not exist")
            && err.contains("kubectl create secret generic missing"),
        "{err}"
    );

    // Another device's namespace is out of reach of this agent's ServiceAccount.
    let foreign: Api<Secret> = Api::namespaced(agent, &other.name);
    let err = DeviceCredentials::from_secret(&foreign, "sec-dev-device", DEFAULT_SECRET_KEY)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("forbidden"), "{err}");
    ns.delete().await;
    other.delete().await;
}
