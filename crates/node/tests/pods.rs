//! Pods on a real control plane, run by an in-process `ironedge node`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn deployment_pod_is_bound_runs_and_reports_running_status() {
    let client = client().await;
    let ns = namespace(&client, "node-run").await;
    let node = start_node(&client, &[&ns]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment = json!({
        "metadata": {"name": "hello"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "hello"}},
            "template": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {"containers": [{"name": "main", "image": "busybox:1.36",
                    "command": ["/bin/sh", "-c", "echo hello from $(hostname); exec sleep 3600"]}]}
            }
        }
    });
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment).unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let name = eventually("the deployment's pod", TIMEOUT, || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels("app=hello"))
                .await
                .ok()?
                .items
                .first()?
                .metadata
                .name
                .clone()
        }
    })
    .await;
    let pod = wait_pod(&client, &ns, &name, "Running and Ready", |p| {
        phase(p) == "Running" && ready(p)
    })
    .await;
    let spec = pod.spec.as_ref().unwrap();
    let status = pod.status.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(node.started.name.as_str()));
    let ip: std::net::Ipv4Addr = status.pod_ip.as_deref().unwrap().parse().unwrap();
    assert!(
        node.started.pod_cidr.contains(ip),
        "pod IP {ip} in {}",
        node.started.pod_cidr
    );
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    let cs = &status.container_statuses.as_ref().unwrap()[0];
    assert!(
        cs.ready && cs.state.as_ref().unwrap().running.is_some(),
        "{cs:?}"
    );
    assert_eq!(cs.restart_count, 0);
    let conditions: Vec<(String, String)> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert!(
            conditions.contains(&(t.to_string(), "True".to_string())),
            "{t} in {conditions:?}"
        );
    }
    assert!(alive(container_pid(&pod)));
    // Through the API server's pods/log proxy to the node's kubelet endpoint (= kubectl logs);
    // the pod has its own UTS namespace with the pod name as host name.
    let log = wait_log(&client, &ns, &name, "hello from").await;
    assert_eq!(log.trim(), format!("hello from {name}"));
    let kubectl = kubectl_logs(&ns, &name, &["--timestamps"]).await;
    let (time, text) = kubectl.trim().split_once(' ').unwrap();
    assert!(
        time.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
        "{kubectl}"
    );
    assert_eq!(text, format!("hello from {name}"));

    let nodes: Api<Node> = Api::all(client.clone());
    let n = nodes.get(&node.started.name).await.unwrap();
    let ready_cond = n
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready_cond.status, "True");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = leases.get(&node.started.name).await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some(node.started.name.as_str())
    );

    node.stop().await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn exit_codes_and_restarts_follow_the_restart_policy() {
    let client = client().await;
    let ns = namespace(&client, "node-restart").await;
    let node = start_node(&client, &[&ns]).await;
    create_pod(
        &client,
        &ns,
        sh_pod("never", "echo failing; exit 3", "Never"),
    )
    .await;
    create_pod(&client, &ns, sh_pod("onfailure", "exit 0", "OnFailure")).await;
    create_pod(&client, &ns, sh_pod("always", "echo run; exit 1", "Always")).await;

    let failed = wait_pod(&client, &ns, "never", "Failed", |p| phase(p) == "Failed").await;
    let cs = &failed
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    let t = cs.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    assert_eq!(cs.restart_count, 0);
    assert!(!cs.ready);

    let done = wait_pod(&client, &ns, "onfailure", "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let cs = &done
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    let t = cs.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(cs.restart_count, 0);

    let restarted = wait_pod(&client, &ns, "always", "3 restarts", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| c[0].restart_count >= 3)
    })
    .await;
    assert_eq!(phase(&restarted), "Running", "Always keeps the pod Running");
    let cs = &restarted
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    let previous = kubectl_logs(&ns, "always", &["--previous"]).await;
    assert_eq!(previous, "run\n");
    // Between runs the container waits out its back-off.
    wait_pod(&client, &ns, "always", "CrashLoopBackOff", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| {
                c[0].state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("CrashLoopBackOff")
            })
    })
    .await;
    node.stop().await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn init_containers_run_first_and_in_order() {
    let client = client().await;
    let ns = namespace(&client, "node-init").await;
    let node = start_node(&client, &[&ns]).await;
    let pod = json!({
        "metadata": {"name": "init"},
        "spec": {
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [
                {"name": "one", "image": "busybox", "command": ["/bin/sh", "-c", "echo one >> /work/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                {"name": "two", "image": "busybox", "command": ["/bin/sh", "-c", "echo two >> /work/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
            "containers": [{"name": "main", "image": "busybox",
                "command": ["/bin/sh", "-c", "cat /work/order; exec sleep 3600"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}]}]
        }
    });
    create_pod(&client, &ns, pod).await;
    let running = wait_pod(&client, &ns, "init", "Running", |p| {
        phase(p) == "Running" && ready(p)
    })
    .await;
    let inits = running
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .clone()
        .unwrap();
    assert!(inits.iter().all(|c| {
        c.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code
            == 0
    }));
    let log = wait_log(&client, &ns, "init", "two").await;
    assert_eq!(log, "one\ntwo\n");
    node.stop().await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn deleting_a_pod_stops_its_process_and_the_pod_disappears() {
    let client = client().await;
    let ns = namespace(&client, "node-delete").await;
    let node = start_node(&client, &[&ns]).await;
    // One pod exits on SIGTERM, the other ignores it and must be SIGKILLed after its grace.
    create_pod(
        &client,
        &ns,
        sh_pod(
            "polite",
            "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
            "Always",
        ),
    )
    .await;
    let mut stubborn = sh_pod(
        "stubborn",
        "trap '' TERM; echo stubborn; while true; do sleep 0.1; done",
        "Always",
    );
    stubborn["spec"]["terminationGracePeriodSeconds"] = json!(1);
    create_pod(&client, &ns, stubborn).await;
    let polite = wait_pod(&client, &ns, "polite", "Running", |p| phase(p) == "Running").await;
    let stubborn = wait_pod(&client, &ns, "stubborn", "Running", |p| {
        phase(p) == "Running"
    })
    .await;
    let (polite_pid, stubborn_pid) = (container_pid(&polite), container_pid(&stubborn));
    wait_log(&client, &ns, "stubborn", "stubborn").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for name in ["polite", "stubborn"] {
        pods.delete(name, &Default::default()).await.unwrap();
    }
    for name in ["polite", "stubborn"] {
        tokio::time::timeout(
            TIMEOUT,
            kube::runtime::wait::await_condition(
                pods.clone(),
                name,
                kube::runtime::wait::conditions::is_deleted(
                    &pods
                        .get_opt(name)
                        .await
                        .unwrap()
                        .and_then(|p| p.metadata.uid)
                        .unwrap_or_default(),
                ),
            ),
        )
        .await
        .expect("pod disappears")
        .unwrap();
    }
    assert!(!alive(polite_pid) && !alive(stubborn_pid));
    node.stop().await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn following_logs_streams_new_output_until_the_container_exits() {
    use futures::{AsyncBufReadExt, TryStreamExt};
    let client = client().await;
    let ns = namespace(&client, "node-follow").await;
    let node = start_node(&client, &[&ns]).await;
    create_pod(
        &client,
        &ns,
        sh_pod(
            "ticker",
            "for i in 1 2 3 4 5; do echo tick $i; sleep 0.3; done",
            "Never",
        ),
    )
    .await;
    wait_pod(&client, &ns, "ticker", "Running", |p| phase(p) == "Running").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let params = kube::api::LogParams {
        follow: true,
        ..Default::default()
    };
    let stream = pods.log_stream("ticker", &params).await.unwrap();
    let lines: Vec<String> = tokio::time::timeout(TIMEOUT, stream.lines().try_collect())
        .await
        .expect("stream ends when the container exits")
        .unwrap();
    assert_eq!(lines, ["tick 1", "tick 2", "tick 3", "tick 4", "tick 5"]);
    node.stop().await;
    delete_namespace(&client, &ns).await;
}
