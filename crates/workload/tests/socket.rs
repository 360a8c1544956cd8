//! The workload API served on a real unix socket and a real TCP port, spoken to with raw HTTP/1.1
//! the way the SDKs' HTTP clients do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ironedge_workload::{
    AnyLocalCaller, MemoryKeyStore, ModuleKeys, StaticTrustBundle, Workload, WorkloadListener,
    hmac_sha256, serve,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

fn workload() -> Workload {
    let keys = MemoryKeyStore::default();
    keys.insert(
        "mod1",
        ModuleKeys::new(Some("gen123".into()), vec![5; 32], vec![6; 32]),
    );
    Workload::new(
        Arc::new(keys),
        Arc::new(StaticTrustBundle::new("-----BEGIN CERTIFICATE-----\nX\n")),
        Arc::new(AnyLocalCaller),
    )
}

async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    path: &str,
    body: &str,
) -> String {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn sign_and_trust_bundle_work_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("unix://{}/workload.sock", dir.path().display());
    let listener = WorkloadListener::bind(&uri).await.unwrap();
    assert_eq!(listener.uri().unwrap(), uri);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, workload(), async {
        let _ = stopped.await;
    }));
    let path = dir.path().join("workload.sock");

    let conn = tokio::net::UnixStream::connect(&path).await.unwrap();
    let res = http(conn, "GET", "/trust-bundle?api-version=2019-01-30", "").await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.contains("BEGIN CERTIFICATE"), "{res}");

    let data = "myhub%2Fdevices%2Fdev1%2Fmodules%2Fmod1\n1795940188";
    let body = format!(
        r#"{{"keyId":"primary","algo":"HMACSHA256","data":"{}"}}"#,
        STANDARD.encode(data)
    );
    let conn = tokio::net::UnixStream::connect(&path).await.unwrap();
    let res = http(
        conn,
        "POST",
        "/modules/mod1/genid/gen123/sign?api-version=2019-01-30",
        &body,
    )
    .await;
    let expected = STANDARD.encode(hmac_sha256(&[5; 32], data.as_bytes()));
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.contains(&expected), "{res}");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!path.exists(), "the socket file is removed on shutdown");
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.sock");
    std::fs::write(&path, b"stale").unwrap();
    let listener = WorkloadListener::bind(&format!("unix://{}", path.display())).await;
    assert!(listener.is_ok());
}

#[tokio::test]
async fn sign_works_over_plain_http() {
    let listener = WorkloadListener::bind("http://127.0.0.1:0").await.unwrap();
    let addr = listener
        .uri()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, workload(), async {
        let _ = stopped.await;
    }));
    let conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let res = http(
        conn,
        "POST",
        "/modules/mod1/genid/gen123/sign?api-version=2018-06-28",
        r#"{"data":"eA=="}"#,
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unknown_uri_scheme_is_a_clear_error() {
    let err = WorkloadListener::bind("tcp://127.0.0.1:1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unix:// or http://"), "{err}");
}
