//! The workload API through the real path: module → unix socket → workload proxy sidecar →
//! HTTPS with the pod's projected ServiceAccount token → the agent (TokenReview) → module key.

use crate::common::*;
use base64::Engine;
use ironedge_edgehub::config::HubConfig;
use ironedge_edgehub::config_source::ConfigSource;
use ironedge_edgehub::hub::HubSettings;
use ironedge_edgehub::identities::IdentityEntry;
use ironedge_edgehub::runtime::{EdgeHubOptions, run as run_edgehub};
use ironedge_protocol::SymmetricKey;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const AUDIENCE: &str = ironedge_agent::settings::DEFAULT_WORKLOAD_AUDIENCE;

fn secret_text(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

async fn sign(sidecar: &Sidecar, module: &str, generation: &str, data: &[u8]) -> (u16, Value) {
    unix_http(
        &sidecar.socket(),
        "POST",
        &format!("/modules/{module}/genid/{generation}/sign?api-version=2019-01-30"),
        Some(&json!({"keyId": "primary", "algo": "HMACSHA256", "data": B64.encode(data)})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_module_signs_only_as_itself_and_other_modules_namespaces_or_missing_tokens_are_refused()
{
    let admin = admin().await;
    let ns = TestNamespace::new(&admin).await;
    let other_ns = TestNamespace::new(&admin).await;
    let hub = TestHub::start().await;
    let cs = hub.edge_device("wl-dev").await;
    let agent = RunningAgent::start(&admin, &ns.name, &hub, &cs).await;
    hub.set_modules(
        "wl-dev",
        &manifest(
            json!({"alpha": module("running"), "beta": module("running")}),
            json!({}),
        ),
    )
    .await;
    let alpha_pod = module_pod(&admin, &ns.name, "alpha").await;
    let keys = ns
        .api::<Secret>()
        .get("ironedge-identity-alpha")
        .await
        .unwrap();
    let alpha_key = SymmetricKey::from_base64(&secret_text(&keys, "primaryKey")).unwrap();
    let alpha_gen = secret_text(&keys, "generationId");
    let beta_gen = secret_text(
        &ns.api::<Secret>()
            .get("ironedge-identity-beta")
            .await
            .unwrap(),
        "generationId",
    );

    // Alpha's pod token, as the kubelet projects it: audience-bound and bound to the pod.
    let token =
        service_account_token(&admin, &ns.name, "alpha", Some(AUDIENCE), Some(&alpha_pod)).await;
    let alpha = Sidecar::start(&agent, &admin, &token).await;
    let (status, body) = sign(&alpha, "alpha", &alpha_gen, b"dev\n1700000000").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["digest"],
        B64.encode(alpha_key.sign(b"dev\n1700000000")),
        "the digest is HMAC-SHA256 with alpha's own key"
    );
    let (status, bundle) = unix_http(
        &alpha.socket(),
        "GET",
        "/trust-bundle?api-version=2019-01-30",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        bundle["certificate"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    // Alpha's credentials are refused for beta, even when alpha's module sends beta's token
    // itself (the sidecar replaces whatever Authorization the module sends).
    let (status, _) = sign(&alpha, "beta", &beta_gen, b"x").await;
    assert_eq!(status, 403, "alpha may not sign as beta");
    let beta_pod = module_pod(&admin, &ns.name, "beta").await;
    let beta_token =
        service_account_token(&admin, &ns.name, "beta", Some(AUDIENCE), Some(&beta_pod)).await;
    let (status, _) = unix_http_with(
        &alpha.socket(),
        "POST",
        &format!("/modules/beta/genid/{beta_gen}/sign?api-version=2019-01-30"),
        Some(&json!({"keyId": "primary", "algo": "HMACSHA256", "data": "eA=="})),
        &format!("Authorization: Bearer {beta_token}\r\n"),
    )
    .await;
    assert_eq!(
        status, 403,
        "a module cannot choose the token the sidecar sends"
    );
    // Nor may alpha get a server certificate for the edge hub's names.
    let (status, body) = unix_http(
        &alpha.socket(),
        "POST",
        &format!("/modules/alpha/genid/{alpha_gen}/certificate/server?api-version=2019-01-30"),
        Some(&json!({"commonName": "edgehub"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = unix_http(
        &alpha.socket(),
        "POST",
        &format!("/modules/alpha/genid/{alpha_gen}/certificate/server?api-version=2019-01-30"),
        Some(
            &json!({"commonName": "alpha", "subjectAltNames": [format!("alpha.{}.svc", ns.name)]}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // A token of a ServiceAccount called alpha in another namespace (another device) is refused.
    let foreign: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "alpha"}})).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), &other_ns.name)
        .patch(
            "alpha",
            &PatchParams::apply("ironedge-tests"),
            &Patch::Apply(&foreign),
        )
        .await
        .unwrap();
    let foreign_token =
        service_account_token(&admin, &other_ns.name, "alpha", Some(AUDIENCE), None).await;
    let impostor = Sidecar::start(&agent, &admin, &foreign_token).await;
    assert_eq!(sign(&impostor, "alpha", &alpha_gen, b"x").await.0, 403);

    // Alpha's token for another audience (the API server's) is refused.
    let wrong_audience = service_account_token(&admin, &ns.name, "alpha", None, None).await;
    let wrong = Sidecar::start(&agent, &admin, &wrong_audience).await;
    assert_eq!(sign(&wrong, "alpha", &alpha_gen, b"x").await.0, 403);

    // No token at all: straight to the agent's TLS endpoint.
    let bundle = bundle["certificate"].as_str().unwrap().to_string();
    let tls = ironedge_pki::client_config(&bundle, None).unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .build()
        .unwrap();
    let answer = http
        .post(format!(
            "https://{}/modules/alpha/genid/{alpha_gen}/sign?api-version=2019-01-30",
            agent.workload_addr
        ))
        .json(&json!({"keyId": "primary", "algo": "HMACSHA256", "data": B64.encode(b"x")}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403, "no token");

    // Refusals are counted; alpha still works (the refusals changed nothing).
    assert_eq!(sign(&alpha, "alpha", &alpha_gen, b"y").await.0, 200);
    let metrics = agent.metrics_text().await;
    assert!(
        metrics.contains("ironedge_agent_workload_auth_total{result=\"denied\""),
        "{metrics}"
    );
    agent.stop().await;
    ns.delete().await;
    other_ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_azure_sdk_gets_a_token_through_the_sidecar_and_connects_to_the_edge_hub() {
    const GATEWAY: &str = "127.0.81.1";
    let admin = admin().await;
    let ns = TestNamespace::new(&admin).await;
    let hub = TestHub::start().await;
    let cs = hub.edge_device("sdk-dev").await;
    let options = AgentOptions {
        gateway_host_name: Some(GATEWAY.into()),
        ..AgentOptions::default()
    };
    let agent = RunningAgent::start_with(&admin, &ns.name, &hub, &cs, options).await;
    hub.set_modules(
        "sdk-dev",
        &manifest(json!({"sdkmod": module("running")}), json!({})),
    )
    .await;
    let pod = module_pod(&admin, &ns.name, "sdkmod").await;
    let env = pod.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let var = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| panic!("{name} is not injected"))
    };
    assert_eq!(var("IOTEDGE_GATEWAYHOSTNAME"), GATEWAY);

    // The edge hub, with the server certificate and identities the agent published.
    let secrets = ns.api::<Secret>();
    let tls_secret = secrets.get("ironedge-edgehub-tls").await.unwrap();
    let tls = ironedge_pki::server_config(
        &secret_text(&tls_secret, "tls.crt"),
        &secret_text(&tls_secret, "tls.key"),
    )
    .unwrap();
    let identities: Vec<IdentityEntry> = serde_json::from_str(&secret_text(
        &secrets.get("ironedge-edgehub-identities").await.unwrap(),
        "identities.json",
    ))
    .unwrap();
    assert!(
        identities
            .iter()
            .any(|i| i.module_id.as_deref() == Some("sdkmod"))
    );
    let store = tempfile::tempdir().unwrap();
    let mqtt = tokio::net::TcpListener::bind((GATEWAY, 8883))
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let edgehub = tokio::spawn(run_edgehub(
        EdgeHubOptions {
            settings: HubSettings::new("sdk-dev", HUB_NAME),
            store_path: store.path().join("edgehub.redb"),
            store_config: ironedge_store::Config::default(),
            identities,
            mqtt,
            websocket: None,
            tls,
            http: None,
            upstream: None,
            config: ConfigSource::Static(HubConfig::default()),
            mqtt_config: ironedge_mqtt::MqttConfig::default(),
            registry: None,
        },
        stop.clone().cancelled_owned(),
    ));

    // The module's sidecar, with the pod's projected token.
    let token = service_account_token(&admin, &ns.name, "sdkmod", Some(AUDIENCE), Some(&pod)).await;
    let sidecar = Sidecar::start(&agent, &admin, &token).await;
    let result = run_python(
        "edge_module.py",
        &[
            ("IOTEDGE_WORKLOADURI", sidecar.uri()),
            ("IOTEDGE_DEVICEID", var("IOTEDGE_DEVICEID")),
            ("IOTEDGE_MODULEID", var("IOTEDGE_MODULEID")),
            (
                "IOTEDGE_MODULEGENERATIONID",
                var("IOTEDGE_MODULEGENERATIONID"),
            ),
            ("IOTEDGE_IOTHUBHOSTNAME", var("IOTEDGE_IOTHUBHOSTNAME")),
            ("IOTEDGE_GATEWAYHOSTNAME", var("IOTEDGE_GATEWAYHOSTNAME")),
            ("IOTEDGE_AUTHSCHEME", var("IOTEDGE_AUTHSCHEME")),
            ("IOTEDGE_APIVERSION", var("IOTEDGE_APIVERSION")),
        ],
    )
    .await;
    assert_eq!(result["connected"], true, "{result}");
    assert_eq!(result["sent"], true, "{result}");
    stop.cancel();
    edgehub.await.unwrap().unwrap();
    agent.stop().await;
    ns.delete().await;
}
