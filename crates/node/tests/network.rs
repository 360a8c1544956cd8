//! Pod networking: Service names resolve and connect, namespaces listen on the same port side by
//! side, host ports appear on pod loopbacks, nothing leaves the node, and stopping the node
//! removes everything it created.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, PostParams};
use serde_json::json;

const SERVER: &str = r#"
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(os.environ["PORT"])))
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(("hello from %s\n" % os.environ["NS"]).encode())
    c.close()
"#;

/// Connects to each HOST:PORT argument (retrying while Services and Endpoints propagate) and
/// prints the first line it reads.
const CLIENT: &str = r#"
import socket, sys, time
deadline = time.time() + 50
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2) as c:
                print(target, "->", c.makefile().readline().strip(), flush=True)
                break
        except OSError as e:
            if time.time() > deadline:
                print(target, "FAILED", e, flush=True)
                break
            time.sleep(0.2)
print("done", flush=True)
"#;

fn server_pod(name: &str, port: u16) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "python:3.11", "command": ["python3", "-c", SERVER],
            "env": [{"name": "PORT", "value": port.to_string()},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]}]}
    })
}

fn client_pod(name: &str, targets: &[String]) -> serde_json::Value {
    let mut command = vec!["python3".to_string(), "-c".into(), CLIENT.into()];
    command.extend(targets.iter().cloned());
    json!({
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "python:3.11", "command": command}]}
    })
}

async fn service(client: &kube::Client, ns: &str, name: &str, port: u16, target: u16) {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc = json!({"metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "main", "port": port, "targetPort": target}]}});
    api.create(
        &PostParams::default(),
        &serde_json::from_value(svc).unwrap(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn service_names_resolve_and_connect_to_another_pods_listener() {
    let client = client().await;
    let ns = namespace(&client, "node-svc").await;
    let node = start_node(&client, &[&ns]).await;
    service(&client, &ns, "web", 80, 8080).await;
    create_pod(&client, &ns, server_pod("web", 8080)).await;
    wait_pod(&client, &ns, "web", "Ready", ready).await;
    let targets: Vec<String> = [
        "web".to_string(),
        format!("web.{ns}"),
        format!("web.{ns}.svc"),
        format!("web.{ns}.svc.cluster.local"),
    ]
    .iter()
    .map(|h| format!("{h}:80"))
    .collect();
    create_pod(&client, &ns, client_pod("client", &targets)).await;
    let log = wait_log(&client, &ns, "client", "done").await;
    let expected: String = targets
        .iter()
        .map(|t| format!("{t} -> hello from {ns}\n"))
        .collect();
    assert_eq!(log, format!("{expected}done\n"));
    node.stop().await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn two_namespaces_listen_on_the_same_port_side_by_side() {
    let client = client().await;
    let ns1 = namespace(&client, "node-dev1").await;
    let ns2 = namespace(&client, "node-dev2").await;
    let node = start_node(&client, &[&ns1, &ns2]).await;
    for ns in [&ns1, &ns2] {
        service(&client, ns, "edgehub", 8883, 8883).await;
        create_pod(&client, ns, server_pod("edgehub", 8883)).await;
    }
    for ns in [&ns1, &ns2] {
        let pod = wait_pod(&client, ns, "edgehub", "Ready", ready).await;
        let cs = &pod.status.unwrap().container_statuses.unwrap()[0];
        assert_eq!(
            cs.restart_count, 0,
            "both bind 0.0.0.0:8883 without conflict"
        );
    }
    let targets = vec!["edgehub:8883".to_string(), format!("edgehub.{ns2}:8883")];
    create_pod(&client, &ns1, client_pod("client", &targets)).await;
    let log = wait_log(&client, &ns1, "client", "done").await;
    assert_eq!(
        log,
        format!("edgehub:8883 -> hello from {ns1}\nedgehub.{ns2}:8883 -> hello from {ns2}\ndone\n")
    );
    node.stop().await;
    delete_namespace(&client, &ns1).await;
    delete_namespace(&client, &ns2).await;
}

#[tokio::test]
async fn host_ports_appear_on_the_pod_loopback_and_other_destinations_are_refused() {
    let client = client().await;
    let ns = namespace(&client, "node-host").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = conn.write_all(b"hello from the host\n").await;
        }
    });
    let node = start_node_with(&client, &[&ns], |s| s.host_ports = vec![port]).await;
    // 10.0.0.200 is a ClusterIP nobody has; 192.0.2.1 is outside everything the node serves.
    let script = "import socket\nfor h in ['10.0.0.200', '192.0.2.1']:\n    try:\n        socket.create_connection((h, 80), timeout=5)\n        print(h, 'connected')\n    except OSError as e:\n        print(h, 'refused' if isinstance(e, ConnectionRefusedError) else repr(e))\n";
    let pod = json!({
        "metadata": {"name": "client"},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "python:3.11", "command": ["python3", "-c", CLIENT, &format!("127.0.0.1:{port}"), &format!("localhost:{port}")]},
            {"name": "outside", "image": "python:3.11", "command": ["python3", "-c", script]}]}
    });
    create_pod(&client, &ns, pod).await;
    wait_pod(&client, &ns, "client", "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let log = wait_container_log(&client, &ns, "client", Some("main"), "done").await;
    assert_eq!(
        log,
        format!(
            "127.0.0.1:{port} -> hello from the host\nlocalhost:{port} -> hello from the host\ndone\n"
        )
    );
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    let params = kube::api::LogParams {
        container: Some("outside".into()),
        ..Default::default()
    };
    let outside = api.logs("client", &params).await.unwrap();
    assert_eq!(outside, "10.0.0.200 refused\n192.0.2.1 refused\n");
    node.stop().await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn stopping_the_node_removes_everything_it_created() {
    let client = client().await;
    let ns = namespace(&client, "node-stop").await;
    // A private mount-point registry: mount points are removed by the last node of a registry,
    // and other tests run nodes in parallel.
    let registry = tempfile::tempdir().unwrap();
    let node = start_node_with(&client, &[&ns], |s| {
        s.mount_registry = registry.path().to_path_buf()
    })
    .await;
    let mount_root = format!("/run/{}", unique("ironedge-node-test"));
    let pod = json!({
        "metadata": {"name": "busy"},
        "spec": {
            // Without the token volume: its mount point is shared with the other tests' nodes,
            // and this node, alone in its private registry, would remove it under them.
            "automountServiceAccountToken": false,
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "containers": [{"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", "echo up; exec sleep 3600"],
                "volumeMounts": [{"name": "scratch", "mountPath": format!("{mount_root}/deep/data")}]}]
        }
    });
    create_pod(&client, &ns, pod).await;
    let running = wait_pod(&client, &ns, "busy", "Running", |p| phase(p) == "Running").await;
    wait_log(&client, &ns, "busy", "up").await;
    let pid = container_pid(&running);
    let names = ironedge_node::names::HostNames::new(&node.started.name);
    assert_eq!(netns_with_prefix(&names.netns_prefix()).len(), 1);
    assert!(link_exists(&names.bridge()));
    assert!(std::path::Path::new(&mount_root).exists());
    let node_name = node.started.name.clone();
    let state_dir = node.stop().await;
    assert!(!alive(pid), "the container process is stopped");
    assert!(
        netns_with_prefix(&names.netns_prefix()).is_empty(),
        "network namespaces removed"
    );
    assert!(!link_exists(&names.bridge()), "bridge removed");
    assert!(
        !std::path::Path::new(&mount_root).exists(),
        "created mount points removed"
    );
    assert_eq!(
        std::fs::read_dir(state_dir.path().join("pods"))
            .unwrap()
            .count(),
        0,
        "pod directories removed"
    );
    let nodes: Api<Node> = Api::all(client.clone());
    assert!(
        nodes.get_opt(&node_name).await.unwrap().is_none(),
        "node object deleted (--delete-node-on-exit)"
    );
    delete_namespace(&client, &ns).await;
}
