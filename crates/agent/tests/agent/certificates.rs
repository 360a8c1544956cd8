//! The edge CA rotates everything before it expires, and a client that keeps the trust bundle
//! current (as the kubelet keeps a mounted ConfigMap current) never sees a failed call.
//! Lifetimes are seconds here (days in production); the schedule is the same.

use std::time::{Duration, Instant};

use crate::common::*;
use ironedge_agent::settings::CertificateSettings;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use serde_json::json;

fn text(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

async fn bundle(admin: &kube::Client, ns: &str) -> String {
    Api::<ConfigMap>::namespaced(admin.clone(), ns)
        .get("ironedge-trust-bundle")
        .await
        .unwrap()
        .data
        .unwrap()["trust-bundle.pem"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_and_the_ca_rotate_before_expiry_without_a_failed_call() {
    let admin = admin().await;
    let ns = TestNamespace::new(&admin).await;
    let hub = TestHub::start().await;
    let cs = hub.edge_device("rot-dev").await;
    let options = AgentOptions {
        certificates: Some(CertificateSettings {
            ca_validity: Duration::from_secs(12),
            server_validity: Duration::from_secs(3),
            check_interval: Duration::from_millis(200),
            ..CertificateSettings::default()
        }),
        ..AgentOptions::default()
    };
    let agent = RunningAgent::start_with(&admin, &ns.name, &hub, &cs, options).await;
    hub.set_modules(
        "rot-dev",
        &manifest(json!({"probe": module("running")}), json!({})),
    )
    .await;
    let pod = module_pod(&admin, &ns.name, "probe").await;
    let token = service_account_token(
        &admin,
        &ns.name,
        "probe",
        Some(ironedge_agent::settings::DEFAULT_WORKLOAD_AUDIENCE),
        Some(&pod),
    )
    .await;
    let sidecar = Sidecar::start(&agent, &admin, &token).await;
    let secrets: Api<Secret> = ns.api();
    let first_ca = text(&secrets.get("ironedge-edge-ca").await.unwrap(), "ca.crt");
    let first_hub_cert = text(
        &secrets.get("ironedge-edgehub-tls").await.unwrap(),
        "tls.crt",
    );

    // Call the workload API every 100 ms for longer than the CA lives, refreshing the sidecar's
    // trust bundle from the ConfigMap each time; every call must succeed.
    let (mut calls, mut saw_two_roots, mut hub_certs) = (0, false, vec![first_hub_cert]);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(16) {
        let current = bundle(&admin, &ns.name).await;
        saw_two_roots |= current.matches("BEGIN CERTIFICATE").count() >= 2;
        std::fs::write(sidecar.dir.path().join("trust-bundle.pem"), &current).unwrap();
        let (status, body) = unix_http(
            &sidecar.socket(),
            "GET",
            "/trust-bundle?api-version=2019-01-30",
            None,
        )
        .await;
        assert_eq!(
            status,
            200,
            "call {calls} failed after {:?}: {body}",
            start.elapsed()
        );
        calls += 1;
        let hub_cert = text(
            &secrets.get("ironedge-edgehub-tls").await.unwrap(),
            "tls.crt",
        );
        // Whatever the edge hub serves chains to what modules trust right now.
        let client = ironedge_pki::client_config(&current, None).unwrap();
        assert!(
            verifies(&client, &hub_cert, &secrets).await,
            "edge hub certificate not trusted by the current bundle"
        );
        if hub_certs.last() != Some(&hub_cert) {
            hub_certs.push(hub_cert);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_ca = text(&secrets.get("ironedge-edge-ca").await.unwrap(), "ca.crt");
    assert_ne!(first_ca, last_ca, "the CA was replaced");
    assert!(saw_two_roots, "the next CA was published before it signed");
    assert!(
        hub_certs.len() >= 3,
        "the edge hub certificate was renewed: {}",
        hub_certs.len()
    );
    let metrics = agent.metrics_text().await;
    assert!(
        metrics.contains("ironedge_agent_certificate_rotations_total{certificate=\"edge-ca\"}"),
        "{metrics}"
    );
    assert!(calls > 100);
    agent.stop().await;
    ns.delete().await;
}

/// Serves `chain` (with the key from the Secret) and completes a TLS handshake against it.
async fn verifies(
    client: &std::sync::Arc<rustls::ClientConfig>,
    chain: &str,
    secrets: &Api<Secret>,
) -> bool {
    let secret = secrets.get("ironedge-edgehub-tls").await.unwrap();
    if text(&secret, "tls.crt") != chain {
        // Renewed in between: check the newer pair instead.
        return Box::pin(verifies(client, &text(&secret, "tls.crt"), secrets)).await;
    }
    let server = ironedge_pki::server_config(chain, &text(&secret, "tls.key")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let serve = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.is_ok()
    });
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("edgehub").unwrap();
    let ok = connector.connect(name, tcp).await.is_ok();
    ok && serve.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operators_intermediate_ca_from_a_secret_signs_and_its_root_is_the_trust_bundle() {
    let admin = admin().await;
    let ns = TestNamespace::new(&admin).await;
    let hub = TestHub::start().await;
    let cs = hub.edge_device("opca-dev").await;
    let now = jiff::Timestamp::now();
    let root = ironedge_pki::CertificateAuthority::new_root(
        "operator root",
        now + jiff::SignedDuration::from_hours(24 * 60),
    )
    .unwrap();
    let edge_ca = root
        .new_intermediate(
            "operator edge CA",
            now + jiff::SignedDuration::from_hours(24 * 30),
        )
        .unwrap();
    let secrets: Api<Secret> = ns.api();
    let given: Secret = serde_json::from_value(json!({
        "metadata": {"name": "operator-ca"}, "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": edge_ca.chain_pem(), "tls.key": edge_ca.key_pem()}}))
    .unwrap();
    secrets
        .create(&kube::api::PostParams::default(), &given)
        .await
        .unwrap();
    let options = AgentOptions {
        certificates: Some(CertificateSettings {
            ca_secret: Some("operator-ca".into()),
            ..CertificateSettings::default()
        }),
        ..AgentOptions::default()
    };
    let agent = RunningAgent::start_with(&admin, &ns.name, &hub, &cs, options).await;

    let published = bundle(&admin, &ns.name).await;
    assert!(published.contains(root.cert_pem().trim()), "{published}");
    let trust_root_only = ironedge_pki::client_config(root.cert_pem(), None).unwrap();
    let hub_chain = text(
        &secrets.get("ironedge-edgehub-tls").await.unwrap(),
        "tls.crt",
    );
    assert!(verifies(&trust_root_only, &hub_chain, &secrets).await);
    assert!(
        secrets.get_opt("ironedge-edge-ca").await.unwrap().is_none(),
        "no CA of the agent's own"
    );
    let kept = secrets.get("operator-ca").await.unwrap();
    assert_eq!(
        text(&kept, "tls.crt"),
        edge_ca.chain_pem(),
        "the operator's Secret is untouched"
    );
    agent.stop().await;
    ns.delete().await;
}
