//! Bad input over the wire: malformed MQTT packets and REST bodies get clear errors, never a
//! panic, and nothing already stored is lost; a lost connection's Will is telemetry only on its own topic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::TestHub;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn error_code(v: &Value) -> String {
    v["Message"]
        .as_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rest_bodies_get_400s_that_say_where_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start_in(4, dir.path()).await;
    let c = hub.client();
    let dev = c
        .put(
            "/devices/keep",
            &json!({"deviceId": "keep", "capabilities": {"iotEdge": true}}),
            false,
        )
        .await
        .unwrap();
    c.call(
        Method::PATCH,
        "/twins/keep",
        Some(&json!({"tags": {"env": "a"}})),
        &[],
    )
    .await
    .unwrap();
    let twin_before = c.get("/twins/keep").await.unwrap();

    // Not JSON at all.
    let r = c
        .post_bytes(
            "/devices/query",
            b"{not json".to_vec(),
            &[("content-type", "application/json")],
        )
        .await;
    match r {
        Err(ironedge_hub::client::ClientError::Api { status, message }) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(
                message.starts_with("ErrorCode:ArgumentInvalid;invalid JSON body"),
                "{message}"
            );
            assert!(message.contains("line 1 column 2"), "{message}");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    // A twin key IoT Hub forbids, named by its path.
    let r = c
        .send(
            Method::PATCH,
            "/twins/keep",
            Some(&json!({"properties": {"desired": {"a": {"b.c": 1}}}})),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&r.body), "ErrorCode:ArgumentInvalid");
    assert!(
        r.body["Message"]
            .as_str()
            .unwrap()
            .contains("properties.desired.a.b.c"),
        "{}",
        r.body
    );
    // Wrong types in an identity.
    let r = c
        .send(
            Method::PUT,
            "/devices/keep",
            Some(&json!({"deviceId": "keep", "status": 7})),
            &[("If-Match", "*")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // An id mismatch, a bad id, a bad key.
    let r = c
        .send(
            Method::PUT,
            "/devices/other",
            Some(&json!({"deviceId": "keep"})),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .send(Method::PUT, "/devices/x", Some(&json!({"authentication": {"type": "sas", "symmetricKey": {"primaryKey": "short"}}})), &[])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["Message"].as_str().unwrap().contains("primary key"),
        "{}",
        r.body
    );
    // A deployment the agent would refuse: every error with its JSON path.
    let bad_manifest = json!({"content": {"modulesContent": {
        "$edgeAgent": {"properties.desired": {"schemaVersion": "9.0"}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {}}}}}});
    let r = c
        .send(Method::PUT, "/configurations/bad", Some(&bad_manifest), &[])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["Message"]
            .as_str()
            .unwrap()
            .contains("$.modulesContent.$edgeAgent"),
        "{}",
        r.body
    );
    // A query with a syntax error says where.
    let r = c
        .send(
            Method::POST,
            "/devices/query",
            Some(&json!({"query": "SELECT * FROM devices WHERE tags.x = "})),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["Message"].as_str().unwrap().contains("position 37"),
        "{}",
        r.body
    );
    // Direct methods: unknown device 404, known but offline 404 DeviceNotOnline, bad timeout 400.
    let call = json!({"methodName": "x", "responseTimeoutInSeconds": 5});
    let r = c
        .send(Method::POST, "/twins/nobody/methods", Some(&call), &[])
        .await
        .unwrap();
    assert_eq!(
        (r.status, error_code(&r.body)),
        (StatusCode::NOT_FOUND, "ErrorCode:DeviceNotFound".into())
    );
    let r = c
        .send(Method::POST, "/twins/keep/methods", Some(&call), &[])
        .await
        .unwrap();
    assert_eq!(
        (r.status, error_code(&r.body)),
        (StatusCode::NOT_FOUND, "ErrorCode:DeviceNotOnline".into())
    );
    let r = c
        .send(
            Method::POST,
            "/twins/keep/methods",
            Some(&json!({"methodName": "x", "responseTimeoutInSeconds": 0})),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // No or bad credentials.
    let anon = reqwest::Client::builder()
        .tls_backend_preconfigured(
            (*ironedge_pki::client_config(&std::fs::read_to_string(hub.ca_path()).unwrap(), None)
                .unwrap())
            .clone(),
        )
        .build()
        .unwrap();
    let r = anon
        .get(format!(
            "https://{}/devices/keep?api-version=2021-04-12",
            hub.rest_host()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = anon
        .get(format!(
            "https://{}/devices/keep?api-version=2021-04-12",
            hub.rest_host()
        ))
        .header("Authorization", "SharedAccessSignature sr=x&sig=y")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Nothing that was stored changed.
    assert_eq!(c.get("/devices/keep").await.unwrap()["etag"], dev["etag"]);
    assert_eq!(c.get("/twins/keep").await.unwrap(), twin_before);
    assert!(c.get("/configurations/bad").await.is_err());
    hub.stop().await;
}

async fn tls_stream(hub: &TestHub) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let ca = std::fs::read_to_string(hub.ca_path()).unwrap();
    let config = ironedge_pki::client_config(&ca, None).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config));
    let tcp = tokio::net::TcpStream::connect((hub.ip, 8883))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(hub.ip.into());
    connector.connect(name, tcp).await.unwrap()
}

/// Reads until the server closes the stream; true when it did within 20 s.
async fn closed_by_server(s: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> bool {
    let mut buf = [0u8; 256];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mqtt_packets_close_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start_in(6, dir.path()).await;
    let cases: [&[u8]; 4] = [
        b"\xff\xff\xff\xff\xff", // reserved packet type, bad length
        b"\x10\x05\x00\x04MQ",   // truncated CONNECT, then silence
        b"\x10\x0c\x00\x04MQTT\x03\x02\x00\x3c\x00\x00", // protocol level 3
        b"\x30\x03\x00\x01a",    // PUBLISH before CONNECT
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let mut s = tls_stream(&hub).await;
        s.write_all(bytes).await.unwrap();
        if i == 1 {
            // An incomplete CONNECT is dropped when the connect timeout passes.
            s.flush().await.unwrap();
        }
        assert!(
            closed_by_server(&mut s).await,
            "case {i}: the hub closes a connection sending {bytes:?}"
        );
    }
    // The hub still serves REST and stored nothing.
    let page = hub.client().get("/_ext/messages/events").await.unwrap();
    assert_eq!(page["messages"], json!([]));
    hub.stop().await;
}

/// CONNECT as `device` over TLS with a Will on `will_topic`; returns the stream after CONNACK 0.
async fn connect_with_will(
    hub: &TestHub,
    device: &str,
    key: &str,
    will_topic: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rumqttc::mqttbytes::QoS;
    use rumqttc::mqttbytes::v4::{Connect, LastWill};
    let key = ironedge_protocol::SymmetricKey::from_base64(key).unwrap();
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = ironedge_protocol::SasToken::build(
        &format!("{}/devices/{device}", common::HUB_NAME),
        &key,
        expiry,
        None,
    );
    let mut c = Connect::new(device);
    c.clean_session = false;
    c.keep_alive = 60;
    c.set_login(
        format!("{}/{device}/?api-version=2021-04-12", common::HUB_NAME),
        token.to_string(),
    );
    c.last_will = Some(LastWill::new(
        will_topic,
        "offline",
        QoS::AtLeastOnce,
        false,
    ));
    let mut buf = bytes::BytesMut::new();
    c.write(&mut buf).unwrap();
    let mut s = tls_stream(hub).await;
    s.write_all(&buf).await.unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await.unwrap();
    // Byte 2 is session-present, which a second connection of the same device has.
    assert_eq!(
        [connack[0], connack[1], connack[3]],
        [0x20, 2, 0],
        "CONNACK accepted: {connack:?}"
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connection_publishes_its_will_as_telemetry_only_on_its_own_topic() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start_in(10, dir.path()).await;
    let c = hub.client();
    let mut keys = Vec::new();
    for id in ["will-dev", "polite-dev"] {
        let key = common::new_key();
        let body = json!({"deviceId": id, "authentication": {"type": "sas",
                          "symmetricKey": {"primaryKey": key, "secondaryKey": common::new_key()}}});
        c.put(&format!("/devices/{id}"), &body, false)
            .await
            .unwrap();
        keys.push(key);
    }
    // A client that says DISCONNECT does not fire its Will.
    let mut s = connect_with_will(
        &hub,
        "polite-dev",
        &keys[1],
        "devices/polite-dev/messages/events/",
    )
    .await;
    s.write_all(&[0xe0, 0]).await.unwrap();
    assert!(closed_by_server(&mut s).await);
    common::eventually(20, "polite-dev disconnected", || async {
        let d = hub.client().get("/devices/polite-dev").await.unwrap();
        (d["connectionState"] == "Disconnected").then_some(())
    })
    .await;
    // A Will on another device's topic is dropped; one on its own topic becomes telemetry.
    let s = connect_with_will(
        &hub,
        "will-dev",
        &keys[0],
        "devices/polite-dev/messages/events/",
    )
    .await;
    drop(s);
    let s = connect_with_will(
        &hub,
        "will-dev",
        &keys[0],
        "devices/will-dev/messages/events/a=1",
    )
    .await;
    drop(s);

    let stored = common::eventually(20, "the Will stored as telemetry", || async {
        let page = hub.client().get("/_ext/messages/events").await.unwrap();
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        (!messages.is_empty()).then_some(messages)
    })
    .await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["deviceId"], "will-dev");
    assert_eq!(
        stored[0]["properties"],
        json!({"a": "1", "iothub-MessageType": "Will"})
    );
    assert_eq!(stored[0]["bodyBase64"], "b2ZmbGluZQ==");
    hub.stop().await;
}
