//! Real TLS handshakes over loopback with the configurations this crate builds, including the
//! TLS 1.2-only client the Python IoT SDK uses (Python's `ssl`, i.e. OpenSSL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ironedge_pki::{
    CertificateAuthority, Error, IssuedCertificate, client_config, not_after, server_config,
    server_config_with_optional_client_auth, write_dev_ca,
};
use jiff::{SignedDuration, Timestamp};
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn in_days(d: i64) -> Timestamp {
    Timestamp::now() + SignedDuration::from_hours(24 * d)
}

/// Serves one TLS connection that echoes 4 bytes; returns the port and the handshake result.
async fn echo_server(
    config: Arc<rustls::ServerConfig>,
) -> (u16, tokio::task::JoinHandle<Result<Option<String>, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = TlsAcceptor::from(config)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let peer_cn = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.len().to_string());
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.shutdown().await.ok();
        Ok(peer_cn)
    });
    (port, task)
}

async fn connect(port: u16, name: &str, config: Arc<rustls::ClientConfig>) -> Result<(), String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let mut tls = TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    assert_eq!(&buf, b"ping");
    Ok(())
}

fn server_cert(ca: &CertificateAuthority) -> IssuedCertificate {
    ca.issue_server(&["localhost", "edgehub", "127.0.0.1"], in_days(1))
        .unwrap()
}

#[tokio::test]
async fn client_trusting_the_root_connects_by_dns_name_and_ip() {
    let ca = CertificateAuthority::new_root("Test CA", in_days(2)).unwrap();
    let server = server_cert(&ca);
    for name in ["localhost", "edgehub", "127.0.0.1"] {
        let (port, task) =
            echo_server(server_config(&server.chain_pem, &server.key_pem).unwrap()).await;
        connect(port, name, client_config(&ca.root_pem(), None).unwrap())
            .await
            .unwrap();
        task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn name_not_in_the_certificate_is_refused() {
    let ca = CertificateAuthority::new_root("Test CA", in_days(2)).unwrap();
    let server = server_cert(&ca);
    let (port, _task) =
        echo_server(server_config(&server.chain_pem, &server.key_pem).unwrap()).await;
    let err = connect(
        port,
        "other.example",
        client_config(&ca.root_pem(), None).unwrap(),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for name"),
        "{err}"
    );
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let ca = CertificateAuthority::new_root("Test CA", in_days(2)).unwrap();
    let other = CertificateAuthority::new_root("Other CA", in_days(2)).unwrap();
    let server = server_cert(&ca);
    let (port, _task) =
        echo_server(server_config(&server.chain_pem, &server.key_pem).unwrap()).await;
    let err = connect(
        port,
        "localhost",
        client_config(other.cert_pem(), None).unwrap(),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("invalid peer certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn intermediate_ca_chain_verifies_against_the_root() {
    let root = CertificateAuthority::new_root("Fleet CA", in_days(3)).unwrap();
    let edge = root.new_intermediate("dev1 edge CA", in_days(2)).unwrap();
    assert_eq!(edge.root_pem(), root.cert_pem());
    let server = edge.issue_server(&["localhost"], in_days(1)).unwrap();
    assert_eq!(server.chain_pem.matches("BEGIN CERTIFICATE").count(), 3);
    let (port, task) =
        echo_server(server_config(&server.chain_pem, &server.key_pem).unwrap()).await;
    connect(
        port,
        "localhost",
        client_config(&root.root_pem(), None).unwrap(),
    )
    .await
    .unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn client_certificates_are_verified_when_presented_and_optional_otherwise() {
    let ca = CertificateAuthority::new_root("Test CA", in_days(2)).unwrap();
    let server = server_cert(&ca);
    let client = ca.issue_client("dev1/mod1", in_days(1)).unwrap();
    let config = || {
        server_config_with_optional_client_auth(&server.chain_pem, &server.key_pem, ca.cert_pem())
            .unwrap()
    };

    let (port, task) = echo_server(config()).await;
    connect(
        port,
        "localhost",
        client_config(ca.cert_pem(), Some((&client.chain_pem, &client.key_pem))).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        task.await.unwrap().unwrap().as_deref(),
        Some("2"),
        "leaf and CA presented"
    );

    let (port, task) = echo_server(config()).await;
    connect(
        port,
        "localhost",
        client_config(ca.cert_pem(), None).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(task.await.unwrap().unwrap(), None);

    let stranger = CertificateAuthority::new_root("Stranger", in_days(2))
        .unwrap()
        .issue_client("x", in_days(1))
        .unwrap();
    let (port, task) = echo_server(config()).await;
    let _ = connect(
        port,
        "localhost",
        client_config(
            ca.cert_pem(),
            Some((&stranger.chain_pem, &stranger.key_pem)),
        )
        .unwrap(),
    )
    .await;
    assert!(
        task.await.unwrap().is_err(),
        "a client certificate from an unknown CA must fail the handshake"
    );
}

#[tokio::test]
async fn python_ssl_pinned_to_tls12_with_hostname_check_connects() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_dev_ca(dir.path(), "ironedge dev CA", &["localhost", "127.0.0.1"]).unwrap();
    let chain = std::fs::read_to_string(&files.server_cert).unwrap();
    let key = std::fs::read_to_string(&files.server_key).unwrap();
    let (port, task) = echo_server(server_config(&chain, &key).unwrap()).await;
    // Exactly what azure-iot-device's mqtt_transport does: PROTOCOL_TLSv1_2, CERT_REQUIRED, check_hostname.
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLSv1_2)
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.check_hostname = True
ctx.load_verify_locations(cafile={ca:?})
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {port})), server_hostname="localhost")
s.sendall(b"ping"); assert s.recv(4) == b"ping"
print(s.version())
"#,
        ca = files.ca_cert.display().to_string(),
    );
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "TLSv1.2");
    task.await.unwrap().unwrap();
}

#[test]
fn dev_ca_is_reused_and_keys_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_dev_ca(dir.path(), "dev CA", &["localhost"]).unwrap();
    let ca_pem = std::fs::read_to_string(&first.ca_cert).unwrap();
    let server1 = std::fs::read_to_string(&first.server_cert).unwrap();
    let second = write_dev_ca(dir.path(), "dev CA", &["localhost", "edgehub"]).unwrap();
    assert_eq!(
        std::fs::read_to_string(&second.ca_cert).unwrap(),
        ca_pem,
        "CA must survive restarts"
    );
    assert_ne!(
        std::fs::read_to_string(&second.server_cert).unwrap(),
        server1
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for key in [&second.ca_key, &second.server_key] {
            assert_eq!(
                std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}

#[test]
fn not_after_reads_the_expiry_capped_by_the_ca() {
    let ca_expiry = in_days(2);
    let ca = CertificateAuthority::new_root("Test CA", ca_expiry).unwrap();
    assert_eq!(
        not_after(ca.cert_pem()).unwrap().as_second(),
        ca_expiry.as_second()
    );
    let leaf = ca.issue_server(&["localhost"], in_days(30)).unwrap();
    assert_eq!(
        not_after(&leaf.chain_pem).unwrap().as_second(),
        ca_expiry.as_second()
    );
    assert_eq!(leaf.not_after.as_second(), ca_expiry.as_second());
}

#[test]
fn loaded_ca_issues_certificates_that_chain_to_it() {
    let ca = CertificateAuthority::new_root("Test CA", in_days(2)).unwrap();
    let loaded = CertificateAuthority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
    let leaf = loaded.issue_client("dev1", in_days(1)).unwrap();
    assert!(leaf.chain_pem.ends_with(ca.cert_pem()));
    assert!(client_config(ca.cert_pem(), Some((&leaf.chain_pem, &leaf.key_pem))).is_ok());
}

#[test]
fn bad_inputs_give_clear_errors() {
    let ca = CertificateAuthority::new_root("Test CA", in_days(2)).unwrap();
    assert!(
        matches!(ca.issue_server(&["bad name!"], in_days(1)), Err(Error::InvalidName(n)) if n == "bad name!")
    );
    assert!(matches!(
        server_config("", "x"),
        Err(Error::NoCertificate(_))
    ));
    let leaf = server_cert(&ca);
    assert!(matches!(
        server_config(&leaf.chain_pem, "nothing here"),
        Err(Error::NoPrivateKey(_))
    ));
    assert!(matches!(
        not_after("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        Err(Error::X509(_))
    ));
    assert!(CertificateAuthority::from_pem(ca.cert_pem(), "junk").is_err());
    let dbg = format!("{leaf:?}");
    assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
}
