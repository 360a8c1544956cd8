//! The controller against a real kube-apiserver: each test in its own namespace, waiting on
//! conditions with timeouts. Needs `KUBECONFIG` (see `common::client`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use ironedge_controller::controller::{LeaseSettings, Scope, Settings};
use ironedge_controller::crd::{EdgeDeployment, RuntimeStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

fn spec(modules: Value) -> Value {
    json!({"deviceId": "dev-1", "hubHostName": "hub.example.net", "modules": modules})
}

/// A gateway module with published ports, the sensor, and `$edgeHub` as an agent that still lists
/// it writes it (the device chart runs the edge hub: it gets no objects).
fn hub_and_sensor(sensor_image: &str) -> Value {
    spec(json!([
        {"name": "gateway", "image": "ironedge/gateway:1", "restartPolicy": "always",
         "createOptions": {"HostConfig": {"PortBindings": {"8883/tcp": [{"HostPort": "8883"}]}}}},
        {"name": "tempSensor", "image": sensor_image, "restartPolicy": "always",
         "env": {"MODE": "a"},
         "createOptions": {"HostConfig": {"Binds": ["sensor-data:/data"]}}},
        {"name": "$edgeHub", "image": "ironedge/edgehub:1", "restartPolicy": "always",
         "createOptions": {"HostConfig": {"PortBindings": {"443/tcp": [{"HostPort": "443"}]}}}}
    ]))
}

fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

#[tokio::test]
async fn created_edge_deployment_gets_every_object() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let _controller = RunningController::namespaced(&ns.name).await;
    let ed = create_ed(&ns, "dev-1", hub_and_sensor("sensor:1")).await;

    let deployment = wait_exists(&ns.api::<Deployment>(), "tempsensor").await;
    assert_eq!(image_of(&deployment), "sensor:1");
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("EdgeDeployment", ed.uid().unwrap().as_str())
    );
    assert_eq!(
        deployment.labels()["app.kubernetes.io/managed-by"],
        "ironedge-controller"
    );
    wait_exists(&ns.api::<Deployment>(), "gateway").await;
    wait_exists(&ns.api::<ServiceAccount>(), "tempsensor").await;
    let service = wait_exists(&ns.api::<Service>(), "gateway").await;
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 8883);
    let claim = wait_exists(&ns.api::<PersistentVolumeClaim>(), "sensor-data").await;
    assert!(
        claim.metadata.owner_references.is_none(),
        "claims are retained"
    );
    assert!(
        ns.api::<Service>()
            .get_opt("tempsensor")
            .await
            .unwrap()
            .is_none(),
        "no ports, no Service"
    );

    let ed = wait_condition(&ns, "dev-1", "Progressing", "False").await;
    let status = ed.status.unwrap();
    assert_eq!(status.modules.len(), 2, "$edgeHub is no module of ours");
    assert_eq!(status.modules_ready.as_deref(), Some("0/2"));
    for name in ["edgehub", "ironedge-edgehub"] {
        assert!(
            ns.api::<Deployment>()
                .get_opt(name)
                .await
                .unwrap()
                .is_none()
        );
        assert!(ns.api::<Service>().get_opt(name).await.unwrap().is_none());
        assert!(
            ns.api::<ServiceAccount>()
                .get_opt(name)
                .await
                .unwrap()
                .is_none()
        );
    }
    ns.delete().await;
}

#[tokio::test]
async fn system_module_status_comes_from_the_device_charts_pods() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let _controller = RunningController::namespaced(&ns.name).await;
    create_ed(&ns, "dev-1", hub_and_sensor("sensor:1")).await;
    let ed = wait_condition(&ns, "dev-1", "Progressing", "False").await;
    let system = ed.status.unwrap().system_modules.unwrap();
    assert_eq!(
        system.edge_hub.unwrap().runtime_status,
        RuntimeStatus::Unknown,
        "no chart pods yet"
    );

    // The chart's pods carry no label of ours: their changes alone must trigger a reconcile.
    create_chart_pod(&ns, "agent").await;
    create_chart_pod(&ns, "edgehub").await;
    run_pod_selected(&client, &ns, "app.kubernetes.io/component=edgehub").await;
    run_pod_selected(&client, &ns, "app.kubernetes.io/component=agent").await;
    let api = ns.api::<EdgeDeployment>();
    let system = eventually("systemModules running", TIMEOUT, || {
        let api = api.clone();
        async move {
            let system = api.get("dev-1").await.ok()?.status?.system_modules?;
            let running = |m: &Option<ironedge_controller::crd::ModuleStatus>| {
                m.as_ref()
                    .is_some_and(|m| m.runtime_status == RuntimeStatus::Running)
            };
            (running(&system.edge_agent) && running(&system.edge_hub)).then_some(system)
        }
    })
    .await;
    assert_eq!(system.edge_hub.unwrap().name, "$edgeHub");
    assert_eq!(system.edge_agent.unwrap().name, "$edgeAgent");
    ns.delete().await;
}

#[tokio::test]
async fn a_module_named_like_a_chart_object_is_refused_and_the_chart_object_is_untouched() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let chart_service: Service = serde_json::from_value(json!({
        "metadata": {"name": "edgehub", "labels": {"app.kubernetes.io/managed-by": "Helm"}},
        "spec": {"ports": [{"name": "mqtts", "port": 8883}],
                 "selector": {"app.kubernetes.io/component": "edgehub"}}
    }))
    .unwrap();
    let services = ns.api::<Service>();
    let before = services
        .create(&Default::default(), &chart_service)
        .await
        .unwrap();
    let _controller = RunningController::namespaced(&ns.name).await;
    // A user module "edgeHub" would publish its port on a Service named like the chart's.
    create_ed(&ns, "dev-1", spec(json!([
        {"name": "edgeHub", "image": "mine:1", "restartPolicy": "always",
         "createOptions": {"HostConfig": {"PortBindings": {"9000/tcp": [{"HostPort": "9000"}]}}}}
    ])))
    .await;
    let ed = wait_condition(&ns, "dev-1", "Degraded", "True").await;
    let degraded = ed
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.reason, "ObjectConflict", "{}", degraded.message);
    assert!(
        degraded.message.contains("managed by Helm"),
        "{}",
        degraded.message
    );
    let after = services.get("edgehub").await.unwrap();
    assert_eq!(after.resource_version(), before.resource_version());
    assert!(after.metadata.owner_references.is_none());
    ns.delete().await;
}

#[tokio::test]
async fn changed_image_env_and_ports_are_applied() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let _controller = RunningController::namespaced(&ns.name).await;
    create_ed(&ns, "dev-1", hub_and_sensor("sensor:1")).await;
    wait_exists(&ns.api::<Deployment>(), "tempsensor").await;

    let mut changed = hub_and_sensor("sensor:2");
    changed["modules"][1]["env"]["MODE"] = json!("b");
    changed["modules"][1]["createOptions"]["ExposedPorts"] = json!({"9000/tcp": {}});
    changed["modules"][0]["createOptions"]["HostConfig"]["PortBindings"] =
        json!({"443/tcp": [{"HostPort": "443"}]});
    replace_spec(&ns, "dev-1", changed).await;

    let api = ns.api::<Deployment>();
    let deployment = eventually("new image", TIMEOUT, || {
        let api = api.clone();
        async move {
            api.get("tempsensor")
                .await
                .ok()
                .filter(|d| image_of(d) == "sensor:2")
        }
    })
    .await;
    let env = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "MODE" && e.value.as_deref() == Some("b"))
    );
    let services = ns.api::<Service>();
    let sensor_service = wait_exists(&services, "tempsensor").await;
    assert_eq!(sensor_service.spec.unwrap().ports.unwrap()[0].port, 9000);
    eventually("gateway publishes 443 only", TIMEOUT, || {
        let services = services.clone();
        async move {
            let ports = services.get("gateway").await.ok()?.spec?.ports?;
            (ports.len() == 1 && ports[0].port == 443).then_some(())
        }
    })
    .await;
    ns.delete().await;
}

#[tokio::test]
async fn removed_module_loses_its_objects_and_stopped_module_scales_to_zero() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let _controller = RunningController::namespaced(&ns.name).await;
    let mut both = hub_and_sensor("sensor:1");
    both["modules"][1]["createOptions"]["ExposedPorts"] = json!({"9000/tcp": {}});
    create_ed(&ns, "dev-1", both).await;
    wait_exists(&ns.api::<Service>(), "tempsensor").await;

    let only_gateway = spec(
        json!([{"name": "gateway", "image": "ironedge/gateway:1", "restartPolicy": "always",
        "status": "stopped"}]),
    );
    replace_spec(&ns, "dev-1", only_gateway).await;
    wait_gone(&ns.api::<Deployment>(), "tempsensor").await;
    wait_gone(&ns.api::<Service>(), "tempsensor").await;
    wait_gone(&ns.api::<ServiceAccount>(), "tempsensor").await;
    wait_gone(&ns.api::<Service>(), "gateway").await;
    assert!(
        ns.api::<PersistentVolumeClaim>()
            .get_opt("sensor-data")
            .await
            .unwrap()
            .is_some(),
        "data of a removed module is kept"
    );
    let api = ns.api::<Deployment>();
    eventually("gateway scaled to zero", TIMEOUT, || {
        let api = api.clone();
        async move { (api.get("gateway").await.ok()?.spec?.replicas == Some(0)).then_some(()) }
    })
    .await;
    let ed = wait_condition(&ns, "dev-1", "Ready", "True").await;
    assert_eq!(
        ed.status.unwrap().modules[0].runtime_status,
        RuntimeStatus::Stopped
    );
    ns.delete().await;
}

#[tokio::test]
async fn startup_order_creates_later_groups_once_earlier_ones_are_available() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let _controller = RunningController::namespaced(&ns.name).await;
    create_ed(&ns, "dev-1", spec(json!([
        {"name": "gateway", "image": "ironedge/gateway:1", "restartPolicy": "always", "startupOrder": 0},
        {"name": "sensor", "image": "sensor:1", "restartPolicy": "always", "startupOrder": 1}
    ])))
    .await;
    wait_exists(&ns.api::<Deployment>(), "gateway").await;
    let ed = wait_condition(&ns, "dev-1", "Progressing", "True").await;
    let progressing = ed
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason, "WaitingForStartupOrder");
    assert!(
        ns.api::<Deployment>()
            .get_opt("sensor")
            .await
            .unwrap()
            .is_none(),
        "gate must hold sensor back"
    );

    run_module_pod(&client, &ns, "gateway").await;
    wait_exists(&ns.api::<Deployment>(), "sensor").await;
    run_module_pod(&client, &ns, "sensor").await;
    let ed = wait_condition(&ns, "dev-1", "Ready", "True").await;
    let status = ed.status.unwrap();
    assert_eq!(status.modules_ready.as_deref(), Some("2/2"));
    assert!(
        status
            .modules
            .iter()
            .all(|m| m.runtime_status == RuntimeStatus::Running)
    );
    ns.delete().await;
}

#[tokio::test]
async fn deleted_and_edited_objects_are_healed() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let _controller = RunningController::namespaced(&ns.name).await;
    create_ed(&ns, "dev-1", hub_and_sensor("sensor:1")).await;
    let services = ns.api::<Service>();
    let old = wait_exists(&services, "gateway").await;
    services
        .delete("gateway", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Service recreated", TIMEOUT, || {
        let services = services.clone();
        let old_uid = old.uid();
        async move {
            services
                .get("gateway")
                .await
                .ok()
                .filter(|s| s.uid() != old_uid)
                .map(|_| ())
        }
    })
    .await;

    let deployments = ns.api::<Deployment>();
    wait_exists(&deployments, "tempsensor").await;
    deployments
        .delete("tempsensor", &DeleteParams::background())
        .await
        .unwrap();
    wait_exists(&deployments, "tempsensor").await;
    let edit = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "tempsensor", "image": "evil:1"}]}}}});
    deployments
        .patch(
            "tempsensor",
            &PatchParams::default(),
            &Patch::Strategic(edit),
        )
        .await
        .unwrap();
    eventually("hand edit reverted", TIMEOUT, || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("tempsensor").await.ok()?;
            (image_of(&d) == "sensor:1" && d.spec.as_ref()?.replicas == Some(1)).then_some(())
        }
    })
    .await;
    ns.delete().await;
}

#[tokio::test]
async fn reconcile_with_nothing_to_change_makes_no_write() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let controller = RunningController::namespaced(&ns.name).await;
    create_ed(&ns, "dev-1", hub_and_sensor("sensor:1")).await;
    // Quiescent world: every module has its (unscheduled, hence forever Pending) pod, and the
    // status says so; from here on nothing changes unless someone changes something.
    eventually(
        "every module waiting for its pod to be scheduled",
        TIMEOUT,
        || {
            let api = ns.api::<EdgeDeployment>();
            async move {
                let ed = api.get("dev-1").await.ok()?;
                let status = ed.status?;
                let settled = status.observed_generation == ed.metadata.generation
                    && status.modules.len() == 2
                    && status
                        .modules
                        .iter()
                        .all(|m| m.description.as_deref() == Some("pod waiting to be scheduled"));
                settled.then_some(())
            }
        },
    )
    .await;
    // What a controller write would change: the spec (generation) or our metadata. Not the
    // resourceVersion, which kube-controller-manager's status updates keep moving.
    let written_by_us = |d: Deployment| {
        (
            d.metadata.generation,
            d.metadata.labels,
            d.metadata.annotations,
            d.metadata.owner_references,
        )
    };
    // kube-controller-manager may still be updating the Deployments' status, and a real change
    // there rightly gets one status write; so a window of three touched reconciles without any
    // write must come within a few tries. A controller that writes on every reconcile never
    // gets one.
    let mut last = String::new();
    for _ in 0..5 {
        let before = written_by_us(ns.api::<Deployment>().get("tempsensor").await.unwrap());
        let writes = controller.metrics.writes_excluding_leases();
        let reconciles = controller.metrics.reconcile_count();
        for i in 0..3 {
            let touch =
                json!({"metadata": {"labels": {"touch": format!("again-{i}-{reconciles}")}}});
            ns.api::<EdgeDeployment>()
                .patch("dev-1", &PatchParams::default(), &Patch::Merge(touch))
                .await
                .unwrap();
        }
        eventually("more reconciles", TIMEOUT, || {
            let m = controller.metrics.clone();
            async move { (m.reconcile_count() > reconciles).then_some(()) }
        })
        .await;
        let after = written_by_us(ns.api::<Deployment>().get("tempsensor").await.unwrap());
        let wrote = controller.metrics.writes_excluding_leases() - writes;
        if wrote == 0 && after == before {
            last.clear();
            break;
        }
        last = format!("{wrote} writes; Deployment before {before:?} after {after:?}");
    }
    assert!(last.is_empty(), "no-op reconciles wrote: {last}");
    ns.delete().await;
}

#[tokio::test]
async fn deleting_the_edge_deployment_removes_objects_but_keeps_claims() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let _controller = RunningController::namespaced(&ns.name).await;
    create_ed(&ns, "dev-1", hub_and_sensor("sensor:1")).await;
    wait_exists(&ns.api::<Deployment>(), "tempsensor").await;
    wait_exists(&ns.api::<Service>(), "gateway").await;
    wait_exists(&ns.api::<PersistentVolumeClaim>(), "sensor-data").await;
    ns.api::<EdgeDeployment>()
        .delete("dev-1", &DeleteParams::background())
        .await
        .unwrap();
    wait_gone(&ns.api::<Deployment>(), "tempsensor").await;
    wait_gone(&ns.api::<Deployment>(), "gateway").await;
    wait_gone(&ns.api::<Service>(), "gateway").await;
    wait_gone(&ns.api::<ServiceAccount>(), "tempsensor").await;
    assert!(
        ns.api::<PersistentVolumeClaim>()
            .get_opt("sensor-data")
            .await
            .unwrap()
            .is_some()
    );
    ns.delete().await;
}

#[tokio::test]
async fn two_device_namespaces_side_by_side_stay_isolated() {
    let client = client().await;
    let (a, b) = (
        TestNamespace::new(&client).await,
        TestNamespace::new(&client).await,
    );
    let shard = uuid::Uuid::new_v4().simple().to_string();
    let mut settings = Settings::new(Scope::All);
    settings.selector = Some(format!("shard={shard}"));
    let _controller = RunningController::start(settings).await;
    for ns in [&a, &b] {
        let api = ns.api::<EdgeDeployment>();
        let ed = create_ed(ns, "dev", hub_and_sensor("sensor:1")).await;
        let label = json!({"metadata": {"labels": {"shard": shard}}});
        api.patch(
            &ed.name_any(),
            &PatchParams::default(),
            &Patch::Merge(label),
        )
        .await
        .unwrap();
        wait_exists(&ns.api::<Deployment>(), "tempsensor").await;
    }
    wait_condition(&b, "dev", "Progressing", "False").await;
    let b_written = our_write(&b.api::<Deployment>().get("tempsensor").await.unwrap());

    let mut changed = hub_and_sensor("sensor:2");
    changed["modules"] = json!([changed["modules"][1]]);
    replace_spec(&a, "dev", changed).await;
    wait_gone(&a.api::<Deployment>(), "gateway").await;
    let api = a.api::<Deployment>();
    eventually("a updated", TIMEOUT, || {
        let api = api.clone();
        async move {
            api.get("tempsensor")
                .await
                .ok()
                .filter(|d| image_of(d) == "sensor:2")
                .map(|_| ())
        }
    })
    .await;
    a.api::<EdgeDeployment>()
        .delete("dev", &DeleteParams::background())
        .await
        .unwrap();
    wait_gone(&a.api::<Deployment>(), "tempsensor").await;

    let b_deployments = b.api::<Deployment>();
    assert_eq!(
        our_write(&b_deployments.get("tempsensor").await.unwrap()),
        b_written,
        "b was written"
    );
    assert!(b_deployments.get_opt("gateway").await.unwrap().is_some());
    a.delete().await;
    b.delete().await;
}

#[tokio::test]
async fn bad_spec_degrades_with_an_event_and_touches_nothing() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let _controller = RunningController::namespaced(&ns.name).await;
    create_ed(&ns, "dev-1", hub_and_sensor("sensor:1")).await;
    wait_condition(&ns, "dev-1", "Progressing", "False").await;
    let before: Vec<_> = ns
        .api::<Deployment>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;

    let mut bad = hub_and_sensor("sensor:2");
    bad["modules"][1]["createOptions"]["HostConfig"]["Privileged"] = json!("yes");
    replace_spec(&ns, "dev-1", bad).await;
    let ed = wait_condition(&ns, "dev-1", "Degraded", "True").await;
    let degraded = ed
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.reason, "InvalidCreateOptions");
    assert!(
        degraded.message.contains("HostConfig.Privileged"),
        "{}",
        degraded.message
    );

    let mut collision = hub_and_sensor("sensor:2");
    collision["modules"][0]["name"] = json!("TempSensor");
    replace_spec(&ns, "dev-1", collision).await;
    eventually("NameCollision reported", TIMEOUT, || {
        let api = ns.api::<EdgeDeployment>();
        async move {
            let ed = api.get("dev-1").await.ok()?;
            let c = ed
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Degraded")?;
            (c.status == "True" && c.reason == "NameCollision").then_some(())
        }
    })
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    eventually("a warning event", TIMEOUT, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.reason.as_deref() == Some("InvalidCreateOptions")
                })
                .then_some(())
        }
    })
    .await;
    let after: Vec<_> = ns
        .api::<Deployment>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let versions = |list: &[Deployment]| {
        list.iter()
            .map(|d| (d.name_any(), our_write(d)))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        versions(&before),
        versions(&after),
        "running modules were touched"
    );
    ns.delete().await;
}

#[tokio::test]
async fn on_failure_module_runs_as_a_job_that_is_replaced_when_changed() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let _controller = RunningController::namespaced(&ns.name).await;
    let batch = |image: &str| {
        spec(json!([{"name": "batch", "image": image, "restartPolicy": "on-failure"}]))
    };
    create_ed(&ns, "dev-1", batch("batch:1")).await;
    let jobs = ns.api::<Job>();
    let first = wait_exists(&jobs, "batch").await;
    assert_eq!(
        first
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .restart_policy
            .as_deref(),
        Some("OnFailure")
    );
    replace_spec(&ns, "dev-1", batch("batch:2")).await;
    eventually("Job replaced with the new image", TIMEOUT, || {
        let jobs = jobs.clone();
        let old = first.uid();
        async move {
            let job = jobs.get("batch").await.ok()?;
            let image = job.spec.as_ref()?.template.spec.as_ref()?.containers[0]
                .image
                .clone()?;
            (job.uid() != old && image == "batch:2").then_some(())
        }
    })
    .await;
    ns.delete().await;
}

#[tokio::test]
async fn standby_controller_takes_over_when_the_leader_stops() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let lease = |identity: &str| {
        let mut settings = Settings::new(Scope::Namespace(ns.name.clone()));
        settings.lease = Some(LeaseSettings {
            namespace: ns.name.clone(),
            name: "ironedge-controller".into(),
            identity: identity.into(),
            duration: Duration::from_secs(4),
            renew_every: Duration::from_millis(500),
        });
        settings
    };
    let leader = RunningController::start(lease("a")).await;
    eventually("a leads", TIMEOUT, || {
        let m = leader.metrics.clone();
        async move { (m.leader.get() == 1).then_some(()) }
    })
    .await;
    let standby = RunningController::start(lease("b")).await;
    create_ed(&ns, "dev-1", hub_and_sensor("sensor:1")).await;
    wait_exists(&ns.api::<Deployment>(), "tempsensor").await;
    assert_eq!(standby.metrics.leader.get(), 0);
    assert_eq!(
        standby.metrics.writes_excluding_leases(),
        0,
        "the standby wrote"
    );

    leader.stop().await.unwrap();
    eventually("b leads", TIMEOUT, || {
        let m = standby.metrics.clone();
        async move { (m.leader.get() == 1).then_some(()) }
    })
    .await;
    ns.api::<Deployment>()
        .delete("tempsensor", &DeleteParams::background())
        .await
        .unwrap();
    wait_exists(&ns.api::<Deployment>(), "tempsensor").await;
    ns.delete().await;
}

#[tokio::test]
async fn per_device_controller_works_with_only_a_namespaced_role() {
    use ironedge_controller::rbac;
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::PostParams;

    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "ironedge-controller"}})).unwrap();
    ns.api::<ServiceAccount>()
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    ns.api::<Role>()
        .create(
            &PostParams::default(),
            &rbac::role(&ns.name, "ironedge-controller"),
        )
        .await
        .unwrap();
    let binding = rbac::role_binding(&ns.name, "ironedge-controller", "ironedge-controller");
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = ns
        .api::<ServiceAccount>()
        .create_token_request("ironedge-controller", &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;

    let mut config = kube::Config::infer().await.unwrap();
    config.auth_info = serde_json::from_value(json!({"token": token})).unwrap();
    let mut settings = Settings::new(Scope::Namespace(ns.name.clone()));
    settings.lease = Some(LeaseSettings {
        namespace: ns.name.clone(),
        name: "ironedge-controller".into(),
        identity: "only-role".into(),
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    });
    let controller = RunningController::start_with_config(config, settings).await;
    create_ed(&ns, "dev-1", hub_and_sensor("sensor:1")).await;
    wait_exists(&ns.api::<Deployment>(), "tempsensor").await;
    wait_exists(&ns.api::<PersistentVolumeClaim>(), "sensor-data").await;
    wait_condition(&ns, "dev-1", "Progressing", "False").await;
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    eventually("an event from the controller", TIMEOUT, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("Applied"))
                .then_some(())
        }
    })
    .await;
    assert!(
        !controller.is_finished(),
        "the controller stopped: missing permissions?"
    );
    assert_eq!(
        controller
            .metrics
            .errors
            .get_or_create(&ironedge_controller::controller::metrics::ErrorLabels {
                error: "api_rejected".into()
            })
            .get(),
        0,
        "the API server refused a request of the namespaced controller"
    );
    ns.delete().await;
}

#[tokio::test]
async fn readyz_turns_ready_on_an_empty_namespace_once_the_caches_are_filled() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let controller = RunningController::namespaced(&ns.name).await;
    let addr = serve_health(&controller).await;
    // The caches of an empty namespace fill within a second; a waiter that is never woken kept
    // /readyz at 503 for 18 s and more, until some unrelated event came by.
    let promptly = Duration::from_secs(10);
    eventually("/readyz answers 200", promptly, || async move {
        let (code, body) = http_get(addr, "/readyz").await?;
        (code == 200 && body == "ready").then_some(())
    })
    .await;
    assert_eq!(http_get(addr, "/healthz").await.unwrap().0, 200);
    controller.stop().await.unwrap();
    ns.delete().await;
}

#[tokio::test]
async fn readyz_turns_ready_once_a_fresh_lease_is_held_and_the_caches_are_filled() {
    let client = client().await;
    let ns = TestNamespace::new(&client).await;
    let mut settings = Settings::new(Scope::Namespace(ns.name.clone()));
    settings.lease = Some(LeaseSettings {
        namespace: ns.name.clone(),
        name: "ironedge-controller".into(),
        identity: "fresh".into(),
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    });
    let controller = RunningController::start(settings).await;
    let addr = serve_health(&controller).await;
    eventually("/readyz answers 200", TIMEOUT, || async move {
        let (code, _) = http_get(addr, "/readyz").await?;
        (code == 200).then_some(())
    })
    .await;
    assert_eq!(controller.metrics.leader.get(), 1);
    controller.stop().await.unwrap();
    ns.delete().await;
}
