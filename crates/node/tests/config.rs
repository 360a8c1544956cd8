//! What a container gets from its pod spec: environment from Secrets, ConfigMaps and the downward
//! API, mounted Secret files, in-cluster API access, and projected service-account tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;

#[tokio::test]
async fn env_comes_from_secrets_configmaps_and_field_refs_and_secret_files_are_mounted() {
    let client = client().await;
    let ns = namespace(&client, "node-env").await;
    let node = start_node(&client, &[&ns]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = json!({"metadata": {"name": "creds"},
        "stringData": {"password": "hunter2", "tls.key": "KEY-DATA"}});
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(secret).unwrap(),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = json!({"metadata": {"name": "settings"}, "data": {"mode": "fast", "level": "3"}});
    cms.create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
        .await
        .unwrap();
    let pod = json!({
        "metadata": {"name": "env", "labels": {"tier": "edge"}},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "creds", "secret": {"secretName": "creds", "items": [{"key": "tls.key", "path": "tls/key.pem"}]}}],
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["/bin/sh", "-c"],
                "args": ["echo PASSWORD=$PASSWORD; echo MODE=$MODE; echo CFG_level=$CFG_level; echo POD=$POD_NAME NS=$POD_NS IP=$POD_IP TIER=$TIER; echo URL=$URL ARG=$(POD_NAME); echo KEY=$(cat /creds/tls/key.pem); echo WD=$(pwd); echo SA=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace); echo KSH=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; touch /creds/x 2>/dev/null || echo READONLY"],
                "workingDir": "/tmp",
                "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "settings"}}],
                "env": [
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                    {"name": "URL", "value": "mqtt://$(POD_NAME).$(POD_NS):$(CFG_level)/$(MISSING)"}],
                "volumeMounts": [{"name": "creds", "mountPath": "/creds"}]
            }]
        }
    });
    create_pod(&client, &ns, pod).await;
    let done = wait_pod(&client, &ns, "env", "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let ip = done.status.unwrap().pod_ip.unwrap();
    let log = wait_log(&client, &ns, "env", "READONLY").await;
    let expected = format!(
        "PASSWORD=hunter2\nMODE=fast\nCFG_level=3\nPOD=env NS={ns} IP={ip} TIER=edge\nURL=mqtt://env.{ns}:3/$(MISSING) ARG=env\nKEY=KEY-DATA\nWD=/tmp\nSA={ns}\nKSH=10.0.0.1:443\nREADONLY\n"
    );
    assert_eq!(log, expected);
    node.stop().await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn missing_secrets_hold_the_container_with_a_config_error() {
    let client = client().await;
    let ns = namespace(&client, "node-cfgerr").await;
    let node = start_node(&client, &[&ns]).await;
    let pod = json!({
        "metadata": {"name": "nosecret"},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", "echo $X; sleep 3600"],
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "later", "key": "x"}}}]}]}
    });
    create_pod(&client, &ns, pod).await;
    let waiting = wait_pod(
        &client,
        &ns,
        "nosecret",
        "CreateContainerConfigError",
        |p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| {
                    c[0].state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CreateContainerConfigError")
                })
        },
    )
    .await;
    assert_eq!(phase(&waiting), "Pending");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = json!({"metadata": {"name": "later"}, "stringData": {"x": "arrived"}});
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(secret).unwrap(),
        )
        .await
        .unwrap();
    wait_log(&client, &ns, "nosecret", "arrived").await;
    wait_pod(&client, &ns, "nosecret", "Running", |p| {
        phase(p) == "Running"
    })
    .await;
    node.stop().await;
    delete_namespace(&client, &ns).await;
}

const IN_CLUSTER_CLIENT: &str = r#"
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
url = "https://%s:%s/api" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
req = urllib.request.Request(url, headers={"Authorization": "Bearer " + open(sa + "/token").read()})
with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
    print("API", r.status, json.load(r)["kind"])
print("PROJECTED", open("/var/run/secrets/ironedge/token").read())
"#;

#[tokio::test]
async fn in_cluster_config_reaches_the_api_server_and_projected_tokens_carry_their_audience() {
    let client = client().await;
    let ns = namespace(&client, "node-incluster").await;
    let node = start_node(&client, &[&ns]).await;
    let pod = json!({
        "metadata": {"name": "incluster"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "tok", "projected": {"sources": [{"serviceAccountToken":
                {"path": "token", "audience": "ironedge", "expirationSeconds": 3600}}]}}],
            "containers": [{"name": "main", "image": "python:3.11", "command": ["python3", "-c", IN_CLUSTER_CLIENT],
                "volumeMounts": [{"name": "tok", "mountPath": "/var/run/secrets/ironedge"}]}]
        }
    });
    create_pod(&client, &ns, pod).await;
    wait_pod(&client, &ns, "incluster", "Succeeded", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    let log = wait_log(&client, &ns, "incluster", "PROJECTED").await;
    assert!(log.starts_with("API 200 APIVersions\n"), "{log}");
    let token = log
        .lines()
        .find_map(|l| l.strip_prefix("PROJECTED "))
        .unwrap()
        .to_string();
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review: TokenReview =
        serde_json::from_value(json!({"spec": {"token": token, "audiences": ["ironedge"]}}))
            .unwrap();
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(answer.authenticated, Some(true), "{answer:?}");
    assert_eq!(
        answer.user.unwrap().username.as_deref(),
        Some(format!("system:serviceaccount:{ns}:default").as_str())
    );
    assert_eq!(answer.audiences, Some(vec!["ironedge".to_string()]));
    node.stop().await;
    delete_namespace(&client, &ns).await;
}

/// The node provisions a claim like local-path-provisioner: a directory and a `local`
/// PersistentVolume bound by the controller manager; a non-root pod with `fsGroup` writes the
/// claim and its emptyDir; deleting the claim deletes the volume and its directory.
#[tokio::test]
async fn claims_are_provisioned_bound_writable_with_fs_group_and_deleted_with_the_claim() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use std::os::unix::fs::MetadataExt;
    let client = client().await;
    let ns = namespace(&client, "node-pvc").await;
    let node = start_node(&client, &[&ns]).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let claim = json!({"metadata": {"name": "store"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Mi"}}}});
    let created = claims
        .create(
            &PostParams::default(),
            &serde_json::from_value(claim).unwrap(),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let bound = eventually("the claim to be Bound", TIMEOUT, || {
        let claims = claims.clone();
        async move {
            let c = claims.get("store").await.ok()?;
            (c.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some(c)
        }
    })
    .await;
    let volume = bound.spec.unwrap().volume_name.unwrap();
    assert_eq!(volume, format!("pvc-{uid}"));
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = volumes.get(&volume).await.unwrap();
    let spec = pv.spec.clone().unwrap();
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(spec.capacity.unwrap()["storage"].0, "5Mi");
    let dir = std::path::PathBuf::from(spec.local.unwrap().path);
    assert!(
        dir.starts_with(node.state_dir.as_ref().unwrap().path()),
        "{dir:?} is in the node's state dir"
    );

    let pod = json!({
        "metadata": {"name": "writer"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1234, "runAsGroup": 1234, "fsGroup": 4321},
            "volumes": [{"name": "store", "persistentVolumeClaim": {"claimName": "store"}},
                        {"name": "scratch", "emptyDir": {}}],
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["/bin/sh", "-c",
                    "echo UID=$(id -u) GROUPS=$(id -G); echo a > /store/f && echo b > /scratch/f && echo WROTE; echo GID=$(stat -c %g /store/f)"],
                "volumeMounts": [{"name": "store", "mountPath": "/store"},
                                 {"name": "scratch", "mountPath": "/scratch"}]
            }]
        }
    });
    create_pod(&client, &ns, pod).await;
    wait_pod(&client, &ns, "writer", "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let log = wait_log(&client, &ns, "writer", "WROTE").await;
    assert!(log.contains("UID=1234"), "{log}");
    assert!(
        log.contains("4321"),
        "fsGroup is a supplementary group: {log}"
    );
    assert!(
        log.contains("GID=4321"),
        "new files inherit the group: {log}"
    );
    let written = dir.join("f");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "a\n");
    assert_eq!(std::fs::metadata(&written).unwrap().gid(), 4321);

    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    pods.delete("writer", &Default::default()).await.unwrap();
    claims.delete("store", &Default::default()).await.unwrap();
    eventually("the released volume to be deleted", TIMEOUT, || {
        let volumes = volumes.clone();
        let volume = volume.clone();
        async move { volumes.get_opt(&volume).await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(!dir.exists(), "the volume's directory is removed");
    node.stop().await;
    delete_namespace(&client, &ns).await;
}

/// The tests' state dirs are under /tmp: a pod that mounts an emptyDir at /tmp still gets every
/// other volume (their sources are staged before /tmp is covered).
#[tokio::test]
async fn volumes_mount_even_when_the_pod_covers_the_state_dir_with_its_own_mount() {
    let client = client().await;
    let ns = namespace(&client, "node-cover").await;
    let node = start_node(&client, &[&ns]).await;
    let state = node.state_dir.as_ref().unwrap().path().to_path_buf();
    let cover = state.parent().unwrap().display().to_string();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = json!({"metadata": {"name": "cfg"}, "data": {"mode": "covered-but-mounted"}});
    cms.create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
        .await
        .unwrap();
    let pod = json!({
        "metadata": {"name": "cover"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "tmp", "emptyDir": {}},
                        {"name": "inner", "emptyDir": {}},
                        {"name": "cfg", "configMap": {"name": "cfg"}}],
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["/bin/sh", "-c",
                    "echo MODE=$(cat /config/mode); echo x > $COVER/inner/f && echo INNER=$(cat $COVER/inner/f); echo HOSTS=$(grep -c cover /etc/hosts)"],
                "env": [{"name": "COVER", "value": cover}],
                "volumeMounts": [{"name": "tmp", "mountPath": cover},
                                 {"name": "inner", "mountPath": format!("{cover}/inner")},
                                 {"name": "cfg", "mountPath": "/config"}]
            }]
        }
    });
    create_pod(&client, &ns, pod).await;
    let done = wait_pod(&client, &ns, "cover", "finished", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    let log = wait_log(&client, &ns, "cover", "HOSTS=").await;
    assert_eq!(phase(&done), "Succeeded", "{log}");
    assert!(log.contains("MODE=covered-but-mounted"), "{log}");
    assert!(log.contains("INNER=x"), "{log}");
    assert!(!log.contains("HOSTS=0"), "{log}");
    assert!(
        !std::path::Path::new(&cover).join("inner/f").exists(),
        "the write stayed in the pod's volume"
    );
    node.stop().await;
    delete_namespace(&client, &ns).await;
}
