//! Route tests driven through the router without a socket.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::{
    AnyLocalCaller, CertError, CertificateIssuer, CertificateRequest, IssuedCertificate,
    MemoryKeyStore, ModuleKeys, SocketForModule, StaticTrustBundle, Workload, hmac_sha256, router,
};

const KEY: [u8; 32] = [42; 32];

fn workload_with(auth: Arc<dyn crate::CallerAuth>, certs: Arc<dyn CertificateIssuer>) -> Workload {
    let keys = MemoryKeyStore::default();
    keys.insert(
        "$edgeHub",
        ModuleKeys::new(Some("g1".into()), KEY.to_vec(), vec![1]),
    );
    keys.insert(
        "sensor",
        ModuleKeys::new(Some("g2".into()), KEY.to_vec(), vec![1]),
    );
    Workload::new(Arc::new(keys), certs, auth)
}

fn workload() -> Workload {
    workload_with(
        Arc::new(AnyLocalCaller),
        Arc::new(StaticTrustBundle::new("PEM")),
    )
}

async fn call(w: Workload, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let res = router(w).oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn trust_bundle_is_served_as_json() {
    let (status, body) = call(
        workload(),
        "GET",
        "/trust-bundle?api-version=2019-01-30",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"certificate":"PEM"}"#);
}

#[tokio::test]
async fn requests_without_api_version_are_rejected_with_a_message() {
    let (status, body) = call(workload(), "GET", "/trust-bundle", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("api-version"), "{body}");
}

#[tokio::test]
async fn sign_returns_the_hmac_of_the_decoded_data_with_the_module_key() {
    let data = "myhub%2Fdevices%2Fdev1%2Fmodules%2F%24edgeHub\n1795940188";
    let body = format!(
        r#"{{"keyId":"primary","algo":"HMACSHA256","data":"{}"}}"#,
        STANDARD.encode(data)
    );
    let (status, res) = call(
        workload(),
        "POST",
        "/modules/%24edgeHub/genid/g1/sign?api-version=2018-06-28",
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    let json: serde_json::Value = serde_json::from_str(&res).unwrap();
    let expected = STANDARD.encode(hmac_sha256(&KEY, data.as_bytes()));
    assert_eq!(json["digest"], expected);
}

#[tokio::test]
async fn sign_rejects_bad_bodies_unknown_modules_and_wrong_generations() {
    let uri = "/modules/sensor/genid/g2/sign?api-version=2020-07-07";
    let (status, body) = call(workload(), "POST", uri, "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(workload(), "POST", uri, r#"{"data":"***"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(workload(), "POST", uri, r#"{"algo":"MD5","data":"eA=="}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        workload(),
        "POST",
        "/modules/ghost/genid/g2/sign?api-version=2020-07-07",
        r#"{"data":"eA=="}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        workload(),
        "POST",
        "/modules/sensor/genid/old/sign?api-version=2020-07-07",
        r#"{"data":"eA=="}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_caller_refused_by_the_authoriser_gets_a_bare_403() {
    let w = workload_with(
        Arc::new(SocketForModule::new("sensor")),
        Arc::new(StaticTrustBundle::new("PEM")),
    );
    let (status, body) = call(
        w,
        "POST",
        "/modules/%24edgeHub/genid/g1/sign?api-version=2020-07-07",
        r#"{"data":"eA=="}"#,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.is_empty(), "403 must not explain itself: {body}");
}

/// Records the request and answers with fixed PEM text.
#[derive(Debug, Default)]
struct RecordingIssuer {
    last: std::sync::Mutex<Option<CertificateRequest>>,
}

impl CertificateIssuer for RecordingIssuer {
    fn trust_bundle(&self) -> BoxFuture<'_, Result<String, CertError>> {
        Box::pin(async { Ok("CA".to_owned()) })
    }

    fn issue(
        &self,
        request: CertificateRequest,
    ) -> BoxFuture<'_, Result<IssuedCertificate, CertError>> {
        let not_after = request.not_after;
        *self.last.lock().unwrap() = Some(request);
        Box::pin(async move {
            Ok(IssuedCertificate {
                certificate_pem: "CERT".into(),
                private_key_pem: "KEY".into(),
                not_after,
            })
        })
    }
}

#[tokio::test]
async fn server_certificate_is_created_with_the_common_name_as_a_san() {
    let issuer = Arc::new(RecordingIssuer::default());
    let w = workload_with(Arc::new(AnyLocalCaller), issuer.clone());
    let (status, body) = call(
        w,
        "POST",
        "/modules/%24edgeHub/genid/g1/certificate/server?api-version=2019-01-30",
        r#"{"commonName":"edgehub","expiration":"2099-01-01T00:00:00Z","subjectAltNames":["edgehub.dev1.svc"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["privateKey"]["type"], "key");
    assert_eq!(json["privateKey"]["bytes"], "KEY");
    assert_eq!(json["certificate"], "CERT");
    assert_eq!(json["expiration"], "2099-01-01T00:00:00Z");
    let request = issuer.last.lock().unwrap().clone().unwrap();
    assert_eq!(request.module_id, "$edgeHub");
    assert_eq!(request.subject_alt_names, ["edgehub", "edgehub.dev1.svc"]);
}

#[tokio::test]
async fn server_certificate_needs_a_common_name_and_a_future_expiry() {
    let w = || {
        workload_with(
            Arc::new(AnyLocalCaller),
            Arc::new(RecordingIssuer::default()),
        )
    };
    let uri = "/modules/sensor/genid/g2/certificate/server?api-version=2019-01-30";
    let (status, _) = call(w(), "POST", uri, r#"{"expiration":"2099-01-01T00:00:00Z"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = call(
        w(),
        "POST",
        uri,
        r#"{"commonName":"x","expiration":"2001-01-01T00:00:00Z"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("in the past"), "{body}");
}

#[tokio::test]
async fn identity_certificate_uses_the_module_id_as_common_name() {
    let issuer = Arc::new(RecordingIssuer::default());
    let w = workload_with(Arc::new(AnyLocalCaller), issuer.clone());
    let (status, _) = call(
        w,
        "POST",
        "/modules/sensor/certificate/identity?api-version=2019-01-30",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let request = issuer.last.lock().unwrap().clone().unwrap();
    assert_eq!(request.common_name, "sensor");
    assert_eq!(request.kind, crate::CertKind::Identity);
}
