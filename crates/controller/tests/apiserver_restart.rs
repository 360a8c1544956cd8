//! The controller survives a kube-apiserver restart and converges afterwards. The test starts a
//! private control plane with the project's scripts (restarting a shared one would break the tests
//! running beside it), so it needs the binaries that `scripts/k8s/build` makes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use ironedge_controller::controller::{Scope, Settings};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/k8s")
        .join(name)
}

async fn k8s(name: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new(script(name))
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run scripts/k8s/{name} ({e}); the local control plane scripts are needed"
            )
        });
    assert!(
        output.status.success(),
        "scripts/k8s/{name} {args:?} failed (build the control plane with scripts/k8s/build):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Stops and deletes the private control plane even when the test fails.
struct PrivateCluster(PathBuf);

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(script("stop"))
            .arg("--state-dir")
            .arg(&self.0)
            .arg("--delete")
            .output();
    }
}

#[tokio::test]
async fn controller_converges_after_an_apiserver_restart() {
    init_tracing();
    let state = std::env::temp_dir().join(format!(
        "ironedge-restart-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let state_arg = state.to_string_lossy().into_owned();
    let _cluster = PrivateCluster(state.clone());
    let kubeconfig = k8s("start", &["--state-dir", &state_arg]).await;
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = Client::try_from(config.clone()).unwrap();
    install_crd(client.clone()).await;
    let ns_name = "device-restart";
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns_name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let mut settings = Settings::new(Scope::Namespace(ns_name.into()));
    settings.resync = Duration::from_secs(30);
    let controller = RunningController::start_with_config(config, settings).await;

    let eds: Api<ironedge_controller::EdgeDeployment> = Api::namespaced(client.clone(), ns_name);
    let spec = |image: &str| {
        json!({"deviceId": "dev-1", "hubHostName": "hub.example.net", "modules": [
            {"name": "web", "image": image, "restartPolicy": "always",
             "createOptions": {"ExposedPorts": {"80/tcp": {}}}}]})
    };
    let ed: ironedge_controller::EdgeDeployment = serde_json::from_value(json!({
        "apiVersion": "ironedge.io/v1", "kind": "EdgeDeployment",
        "metadata": {"name": "dev-1", "namespace": ns_name}, "spec": spec("web:1")}))
    .unwrap();
    eds.create(&PostParams::default(), &ed).await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns_name);
    wait_exists(&deployments, "web").await;

    k8s("stop", &["--state-dir", &state_arg, "kube-apiserver"]).await;
    k8s("start", &["--state-dir", &state_arg]).await;

    // Changes made after the restart reach the controller through its re-established watches.
    let mut ed = eds.get("dev-1").await.unwrap();
    ed.spec = serde_json::from_value(spec("web:2")).unwrap();
    eds.replace("dev-1", &PostParams::default(), &ed)
        .await
        .unwrap();
    eventually(
        "new image after the restart",
        Duration::from_secs(60),
        || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("web").await.ok()?;
                let image = d.spec?.template.spec?.containers[0].image.clone()?;
                (image == "web:2").then_some(())
            }
        },
    )
    .await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns_name);
    let old = wait_exists(&services, "web").await;
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "Service recreated after the restart",
        Duration::from_secs(60),
        || {
            let services = services.clone();
            let old_uid = old.uid();
            async move {
                services
                    .get("web")
                    .await
                    .ok()
                    .filter(|s| s.uid() != old_uid)
                    .map(|_| ())
            }
        },
    )
    .await;
    assert!(!controller.is_finished());
    controller.stop().await.unwrap();
}
