//! The REST app driven in-process (`oneshot`, no socket): authorisation, shapes, re-evaluation.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ironedge_protocol::{SasToken, SymmetricKey};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::storage::SqliteStorage;
use crate::{Hub, HubSettings};

const OWNER: &str = "cmVzdC10ZXN0cy1vd25lci1rZXktMzItYnl0ZXMtbG9uZw==";

struct Fixture {
    _dir: tempfile::TempDir,
    hub: Hub,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStorage::open(&dir.path().join("hub.db")).unwrap();
    let settings = HubSettings {
        hub_names: vec!["hub.test".into()],
        owner_key: Some(OWNER.into()),
        ..HubSettings::default()
    };
    let hub = Hub::start(Arc::new(store), settings).await.unwrap();
    Fixture { _dir: dir, hub }
}

fn owner_token() -> String {
    SasToken::build(
        "hub.test",
        &SymmetricKey::from_base64(OWNER).unwrap(),
        4_000_000_000,
        Some("iothubowner"),
    )
    .to_string()
}

async fn call(
    hub: &Hub,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("Authorization", token);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = super::app(hub.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn manifest() -> Value {
    json!({
        "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5"}}},
            "modules": {"m": {"type": "docker", "status": "running", "settings": {"image": "x/m:1"}}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {},
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
        "m": {"properties.desired": {"a": 1}}
    })
}

#[tokio::test]
async fn a_device_token_manages_its_own_modules_only() {
    let f = fixture().await;
    let t = owner_token();
    let (s, dev) = call(
        &f.hub,
        Method::PUT,
        "/devices/edge1",
        &t,
        Some(json!({"capabilities": {"iotEdge": true}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    call(&f.hub, Method::PUT, "/devices/edge2", &t, Some(json!({}))).await;
    let key = SymmetricKey::from_base64(
        dev["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let device_token =
        SasToken::build("hub.test/devices/edge1", &key, 4_000_000_000, None).to_string();

    let (s, m) = call(
        &f.hub,
        Method::PUT,
        "/devices/edge1/modules/m1",
        &device_token,
        Some(json!({"moduleId": "m1"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["authentication"]["type"], "sas");
    let (s, _) = call(
        &f.hub,
        Method::PUT,
        "/devices/edge2/modules/m1",
        &device_token,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&f.hub, Method::GET, "/twins/edge1", &device_token, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "twins need ServiceConnect");
    // The edge runtime sets keys on $edgeAgent with If-Match: *.
    let req = Request::builder()
        .method(Method::PUT)
        .uri("/devices/edge1/modules/%24edgeAgent")
        .header("Authorization", &device_token)
        .header("If-Match", "*")
        .body(Body::from(
            json!({"authentication": {"type": "sas"}}).to_string(),
        ))
        .unwrap();
    let resp = super::app(f.hub.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, agent) = call(
        &f.hub,
        Method::GET,
        "/devices/edge1/modules/%24edgeAgent",
        &t,
        None,
    )
    .await;
    assert!(agent["authentication"]["symmetricKey"]["primaryKey"].is_string());
    assert_eq!(agent["managedBy"], "iotEdge");
    let (s, body) = call(
        &f.hub,
        Method::DELETE,
        "/devices/edge1/modules/%24edgeHub",
        &t,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn tagging_a_device_later_applies_the_deployment_and_untagging_keeps_its_modules() {
    let f = fixture().await;
    let t = owner_token();
    call(
        &f.hub,
        Method::PUT,
        "/devices/e",
        &t,
        Some(json!({"capabilities": {"iotEdge": true}})),
    )
    .await;
    let (s, c) = call(
        &f.hub,
        Method::PUT,
        "/configurations/dep",
        &t,
        Some(json!({"content": {"modulesContent": manifest()}, "targetCondition": "tags.env = 'x'", "priority": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["systemMetrics"]["results"]["targetedCount"], 0);
    let (_, agent) = call(
        &f.hub,
        Method::GET,
        "/twins/e/modules/%24edgeAgent",
        &t,
        None,
    )
    .await;
    assert!(agent["properties"]["desired"].get("modules").is_none());

    call(
        &f.hub,
        Method::PATCH,
        "/twins/e",
        &t,
        Some(json!({"tags": {"env": "x"}})),
    )
    .await;
    let (_, agent) = call(
        &f.hub,
        Method::GET,
        "/twins/e/modules/%24edgeAgent",
        &t,
        None,
    )
    .await;
    assert_eq!(
        agent["properties"]["desired"]["modules"]["m"]["settings"]["image"],
        "x/m:1"
    );
    assert_eq!(agent["configurations"]["dep"]["status"], "applied");
    // A module created afterwards starts with its part of the deployment.
    call(
        &f.hub,
        Method::PUT,
        "/devices/e/modules/m",
        &t,
        Some(json!({})),
    )
    .await;
    let (_, m) = call(&f.hub, Method::GET, "/twins/e/modules/m", &t, None).await;
    assert_eq!(m["properties"]["desired"]["a"], 1);
    let (_, c) = call(&f.hub, Method::GET, "/configurations/dep", &t, None).await;
    assert_eq!(c["systemMetrics"]["results"]["appliedCount"], 1);

    call(
        &f.hub,
        Method::PATCH,
        "/twins/e",
        &t,
        Some(json!({"tags": {"env": null}})),
    )
    .await;
    let (_, agent) = call(
        &f.hub,
        Method::GET,
        "/twins/e/modules/%24edgeAgent",
        &t,
        None,
    )
    .await;
    assert!(agent.get("configurations").is_none(), "{agent}");
    assert_eq!(
        agent["properties"]["desired"]["modules"]["m"]["settings"]["image"],
        "x/m:1"
    );
}

#[tokio::test]
async fn unknown_routes_and_missing_auth_get_iot_hub_error_bodies() {
    let f = fixture().await;
    let (s, body) = call(&f.hub, Method::GET, "/nothing/here", &owner_token(), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .starts_with("ErrorCode:NotFound;")
    );
    let (s, body) = call(&f.hub, Method::GET, "/devices", "", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .starts_with("ErrorCode:IotHubUnauthorizedAccess;")
    );
    assert!(
        body["ExceptionMessage"]
            .as_str()
            .unwrap()
            .starts_with("Tracking ID:")
    );
    let (s, body) = call(&f.hub, Method::PUT, "/devices/d", &owner_token(), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("request body is empty")
    );
}

#[tokio::test]
async fn query_pages_follow_the_continuation_token() {
    let f = fixture().await;
    let t = owner_token();
    for i in 0..5 {
        call(
            &f.hub,
            Method::PUT,
            &format!("/devices/d{i}"),
            &t,
            Some(json!({})),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/devices/query")
            .header("Authorization", &t)
            .header("x-ms-max-item-count", "2");
        if let Some(c) = &continuation {
            req = req.header("x-ms-continuation", c);
        }
        let req = req
            .body(Body::from(
                json!({"query": "SELECT deviceId FROM devices"}).to_string(),
            ))
            .unwrap();
        let resp = super::app(f.hub.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["x-ms-item-type"], "raw");
        continuation = resp
            .headers()
            .get("x-ms-continuation")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let page: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
        assert!(page.len() <= 2);
        seen.extend(
            page.into_iter()
                .map(|v| v["deviceId"].as_str().unwrap().to_owned()),
        );
        if continuation.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["d0", "d1", "d2", "d3", "d4"]);
}

fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z$. ]{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever a client PATCHes, the answer is 200 or a 4xx, and a refused patch changes nothing.
    #[test]
    fn arbitrary_twin_patches_never_fail_the_server_or_lose_state(body in arbitrary_json()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let f = fixture().await;
            let t = owner_token();
            call(&f.hub, Method::PUT, "/devices/d", &t, Some(json!({}))).await;
            call(&f.hub, Method::PATCH, "/twins/d", &t, Some(json!({"tags": {"keep": 1}}))).await;
            let (_, before) = call(&f.hub, Method::GET, "/twins/d", &t, None).await;
            let (status, reply) = call(&f.hub, Method::PATCH, "/twins/d", &t, Some(body.clone())).await;
            assert!(status == StatusCode::OK || status.is_client_error(), "{status} for {body}: {reply}");
            if status.is_client_error() {
                assert!(reply["Message"].as_str().unwrap().starts_with("ErrorCode:"), "{reply}");
                let (_, after) = call(&f.hub, Method::GET, "/twins/d", &t, None).await;
                assert_eq!(after, before);
            }
            f.hub.close().await;
        });
    }
}
