//! A client of the workload API (`reference/iotedge-runtime.md` §5.2–5.3): the trust bundle and
//! token signing, over a unix socket (`unix:///path`) or plain HTTP (`http://host:port`), exactly
//! as the SDKs call it: `GET /trust-bundle?api-version=V` and
//! `POST /modules/{m}/genid/{g}/sign?api-version=V` with `{keyId, algo, data}`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ironedge_protocol::encode_component;
use serde::Deserialize;

use crate::error::WorkloadError;

/// How long one workload call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A workload API client.
#[derive(Clone, Debug)]
pub struct WorkloadClient {
    http: reqwest::Client,
    base: String,
    api_version: String,
}

#[derive(Deserialize)]
struct TrustBundle {
    certificate: String,
}

#[derive(Deserialize)]
struct Digest {
    digest: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

impl WorkloadClient {
    /// A client for `uri` (`unix:///path` or `http://host:port`) speaking `api_version`.
    pub fn new(uri: &str, api_version: &str) -> Result<Self, WorkloadError> {
        let builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .use_preconfigured_tls(plain_http_tls()?)
            .no_proxy();
        let (builder, base) = if let Some(path) = uri.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(WorkloadError::Uri(uri.to_owned()));
            }
            (
                builder.unix_socket(std::path::PathBuf::from(path)),
                "http://workload".to_owned(),
            )
        } else if let Some(rest) = uri.strip_prefix("http://") {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() {
                return Err(WorkloadError::Uri(uri.to_owned()));
            }
            (builder, format!("http://{authority}"))
        } else {
            return Err(WorkloadError::Uri(uri.to_owned()));
        };
        let http = builder.build().map_err(|source| WorkloadError::Request {
            operation: "client setup",
            source,
        })?;
        Ok(Self {
            http,
            base,
            api_version: api_version.to_owned(),
        })
    }

    /// The PEM bundle of CAs that modules trust for the edge hub.
    pub async fn trust_bundle(&self) -> Result<String, WorkloadError> {
        const OP: &str = "trust-bundle";
        let url = format!(
            "{}/trust-bundle?api-version={}",
            self.base, self.api_version
        );
        let response =
            self.http
                .get(url)
                .send()
                .await
                .map_err(|source| WorkloadError::Request {
                    operation: OP,
                    source,
                })?;
        let body: TrustBundle = read_json(OP, response).await?;
        if !body.certificate.contains("-----BEGIN CERTIFICATE-----") {
            return Err(WorkloadError::Body {
                operation: OP,
                reason: "the certificate field holds no PEM certificate".into(),
            });
        }
        Ok(body.certificate)
    }

    /// HMAC-SHA256 of `data` with the module's primary key, base64-encoded.
    pub async fn sign(
        &self,
        module_id: &str,
        generation_id: &str,
        data: &[u8],
    ) -> Result<String, WorkloadError> {
        const OP: &str = "sign";
        let url = format!(
            "{}/modules/{}/genid/{}/sign?api-version={}",
            self.base,
            encode_component(module_id),
            encode_component(generation_id),
            self.api_version
        );
        let request = serde_json::json!({
            "keyId": "primary",
            "algo": "HMACSHA256",
            "data": STANDARD.encode(data),
        });
        let response = self
            .http
            .post(url)
            .json(&request)
            .send()
            .await
            .map_err(|source| WorkloadError::Request {
                operation: OP,
                source,
            })?;
        let body: Digest = read_json(OP, response).await?;
        match STANDARD.decode(&body.digest) {
            Ok(bytes) if bytes.len() == 32 => Ok(body.digest),
            _ => Err(WorkloadError::Body {
                operation: OP,
                reason: "digest is not a base64 HMAC-SHA256".into(),
            }),
        }
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    operation: &'static str,
    response: reqwest::Response,
) -> Result<T, WorkloadError> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|source| WorkloadError::Request { operation, source })?;
    if !status.is_success() {
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        return Err(WorkloadError::Status {
            operation,
            status: status.as_u16(),
            message,
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| WorkloadError::Body {
        operation,
        reason: e.to_string(),
    })
}

/// reqwest wants a TLS configuration even for plain HTTP; this one trusts nothing, so it is
/// never used to reach anything.
fn plain_http_tls() -> Result<rustls::ClientConfig, WorkloadError> {
    let config = rustls::ClientConfig::builder_with_provider(ironedge_pki::crypto_provider())
        .with_protocol_versions(ironedge_pki::PROTOCOL_VERSIONS)
        .map_err(|e| WorkloadError::Body {
            operation: "client setup",
            reason: e.to_string(),
        })?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Ok(config)
}
