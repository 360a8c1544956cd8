//! A small HTTPS client for the hub's REST API (the CLI's client commands, tests, the load tool).
//!
//! Authenticates with a service connection string (`HostName=…;SharedAccessKeyName=…;
//! SharedAccessKey=…`), minting a fresh SAS token per request.

use std::time::Duration;

use ironedge_protocol::{ConnectionString, SasToken, SymmetricKey};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The `api-version` the client sends (the Python and Node service SDKs' value).
pub const API_VERSION: &str = "2021-04-12";

/// A failed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection string is unusable.
    #[error("invalid hub connection string: {0}")]
    ConnectionString(String),
    /// The CA file or TLS set-up failed.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// The request did not complete.
    #[error("request to the hub failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The hub answered with an error.
    #[error("hub answered {status}: {message}")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The `Message` of the IoT Hub error body (or the raw body).
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("unexpected answer from the hub: {0}")]
    Decode(String),
}

/// A client for one hub.
#[derive(Clone)]
pub struct HubClient {
    http: reqwest::Client,
    base: String,
    host_name: String,
    key_name: String,
    key: SymmetricKey,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("base", &self.base)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

/// A response: status, headers and the JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Value,
}

impl HubClient {
    /// A client from a policy connection string; `url` overrides `https://{HostName}`;
    /// `ca_pem` is the CA to trust (the system roots are not used).
    pub fn new(
        connection_string: &str,
        url: Option<&str>,
        ca_pem: &str,
    ) -> Result<Self, ClientError> {
        let cs = ConnectionString::parse(connection_string)
            .map_err(|e| ClientError::ConnectionString(e.to_string()))?;
        let key_name = cs.key_name.clone().ok_or_else(|| {
            ClientError::ConnectionString(
                "it has no SharedAccessKeyName; use a policy such as iothubowner".into(),
            )
        })?;
        let key = cs
            .key()
            .cloned()
            .ok_or_else(|| ClientError::ConnectionString("it has no SharedAccessKey".into()))?;
        ironedge_pki::install_default_provider();
        let tls = ironedge_pki::client_config(ca_pem, None)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let base = url.map_or_else(
            || format!("https://{}", cs.host_name),
            |u| u.trim_end_matches('/').to_owned(),
        );
        Ok(Self {
            http,
            base,
            host_name: cs.host_name,
            key_name,
            key,
        })
    }

    /// The hub host name from the connection string (what device connection strings carry).
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    fn token(&self) -> String {
        let expiry = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0) + 3600;
        SasToken::build(&self.host_name, &self.key, expiry, Some(&self.key_name)).to_string()
    }

    fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}api-version={API_VERSION}", self.base)
    }

    /// Sends a request with a JSON body (or none) and returns the reply, errors included.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ClientError> {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header(AUTHORIZATION, self.token());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Like [`send`](Self::send), but non-2xx answers become [`ClientError::Api`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ClientError> {
        let reply = self.send(method, path, body, headers).await?;
        if reply.status.is_success() {
            return Ok(reply);
        }
        let message = reply
            .body
            .get("Message")
            .and_then(Value::as_str)
            .map_or_else(|| reply.body.to_string(), str::to_owned);
        Err(ClientError::Api {
            status: reply.status,
            message,
        })
    }

    /// `POST` raw bytes (C2D bodies) with extra headers; non-2xx answers are errors.
    pub async fn post_bytes(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ClientError> {
        let mut req = self
            .http
            .post(self.url(path))
            .header(AUTHORIZATION, self.token())
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body.get("Message").and_then(Value::as_str).map_or_else(
                || String::from_utf8_lossy(&bytes).into_owned(),
                str::to_owned,
            );
            return Err(ClientError::Api { status, message });
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `PUT` with `If-Match: "*"` when `overwrite`, else create-only.
    pub async fn put(
        &self,
        path: &str,
        body: &Value,
        overwrite: bool,
    ) -> Result<Value, ClientError> {
        let headers: &[(&str, &str)] = if overwrite {
            &[("If-Match", "\"*\"")]
        } else {
            &[]
        };
        Ok(self
            .call(Method::PUT, path, Some(body), headers)
            .await?
            .body)
    }

    /// `GET` a JSON document.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        Ok(self.call(Method::GET, path, None, &[]).await?.body)
    }

    /// `DELETE` (unconditional).
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, path, None, &[(IF_MATCH.as_str(), "\"*\"")])
            .await
            .map(|_| ())
    }

    /// `POST` a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        Ok(self.call(Method::POST, path, Some(body), &[]).await?.body)
    }

    /// Runs a query, following continuation tokens.
    pub async fn query(&self, query: &str) -> Result<Vec<Value>, ClientError> {
        let mut out = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let mut headers = vec![("x-ms-max-item-count", "1000")];
            if let Some(c) = &continuation {
                headers.push(("x-ms-continuation", c.as_str()));
            }
            let reply = self
                .call(
                    Method::POST,
                    "/devices/query",
                    Some(&serde_json::json!({"query": query})),
                    &headers,
                )
                .await?;
            match reply.body {
                Value::Array(items) => out.extend(items),
                other => {
                    return Err(ClientError::Decode(format!(
                        "query answer is not an array: {other}"
                    )));
                }
            }
            continuation = reply
                .headers
                .get("x-ms-continuation")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if continuation.is_none() {
                return Ok(out);
            }
        }
    }

    /// Opens the NDJSON telemetry stream (`/_ext/messages/events/stream`) with `query` filters.
    pub async fn stream_events(&self, query: &str) -> Result<reqwest::Response, ClientError> {
        let path = format!("/_ext/messages/events/stream?{query}");
        let resp = self
            .http
            .get(self.url(&path))
            .header(
                AUTHORIZATION,
                HeaderValue::from_str(&self.token())
                    .map_err(|e| ClientError::Decode(e.to_string()))?,
            )
            .send()
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(ClientError::Api {
                status,
                message: text,
            });
        }
        Ok(resp)
    }
}
