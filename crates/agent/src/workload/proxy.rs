//! `ironedge workload-proxy`: the sidecar in every module pod. It serves the module's workload
//! socket (a `unix://` path in an in-memory volume only this pod mounts) and forwards each request
//! over TLS to the agent, adding `Authorization: Bearer <the pod's projected token>`.
//!
//! The token and the trust bundle are read again whenever they change on disk, so the kubelet's
//! token refresh and a CA rotation need no restart. Whatever `Authorization` header the module
//! sends is dropped: the module cannot choose whose token goes to the agent.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ironedge_workload::WorkloadListener;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Largest request body forwarded (sign requests are tiny; certificate requests a few hundred bytes).
const MAX_BODY: usize = 1024 * 1024;

/// How the sidecar runs.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The socket to serve, `unix:///var/run/iotedge/workload.sock`.
    pub listen: String,
    /// The agent's workload API, `https://ironedge-agent.<ns>.svc:15581`.
    pub agent_url: String,
    /// The projected ServiceAccount token.
    pub token_file: PathBuf,
    /// PEM bundle the agent's certificate chains to.
    pub trust_bundle: PathBuf,
    /// Timeout of one forwarded request.
    pub timeout: Duration,
}

struct ClientCache {
    bundle: String,
    client: reqwest::Client,
}

struct Proxy {
    settings: ProxySettings,
    client: Mutex<Option<ClientCache>>,
}

impl Proxy {
    fn client(&self) -> std::result::Result<reqwest::Client, String> {
        let bundle = std::fs::read_to_string(&self.settings.trust_bundle).map_err(|e| {
            format!(
                "cannot read the trust bundle {}: {e}",
                self.settings.trust_bundle.display()
            )
        })?;
        let mut cache = match self.client.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = cache.as_ref().filter(|c| c.bundle == bundle) {
            return Ok(c.client.clone());
        }
        let tls = ironedge_pki::client_config(&bundle, None)
            .map_err(|e| format!("unusable trust bundle: {e}"))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .connect_timeout(Duration::from_secs(5))
            .timeout(self.settings.timeout)
            .build()
            .map_err(|e| e.to_string())?;
        *cache = Some(ClientCache {
            bundle,
            client: client.clone(),
        });
        Ok(client)
    }

    fn token(&self) -> std::result::Result<String, String> {
        std::fs::read_to_string(&self.settings.token_file)
            .map(|t| t.trim().to_string())
            .map_err(|e| {
                format!(
                    "cannot read the pod's token {}: {e}",
                    self.settings.token_file.display()
                )
            })
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "message": message })),
    )
        .into_response()
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let client = match proxy.client() {
        Ok(c) => c,
        Err(message) => {
            tracing::error!(%message, "workload proxy cannot reach the agent");
            return error(StatusCode::INTERNAL_SERVER_ERROR, &message);
        }
    };
    let token = match proxy.token() {
        Ok(t) => t,
        Err(message) => {
            tracing::error!(%message, "workload proxy has no token");
            return error(StatusCode::INTERNAL_SERVER_ERROR, &message);
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let url = format!("{}{path}", proxy.settings.agent_url.trim_end_matches('/'));
    let mut upstream = client
        .request(parts.method.clone(), &url)
        .bearer_auth(token)
        .body(body);
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        upstream = upstream.header(header::CONTENT_TYPE, ct.clone());
    }
    let answer = match upstream.send().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "workload proxy: the agent did not answer");
            return error(
                StatusCode::BAD_GATEWAY,
                &format!("the edge agent's workload API did not answer: {e}"),
            );
        }
    };
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = answer.bytes().await.unwrap_or_default();
    tracing::debug!(method = %parts.method, path = parts.uri.path(), %status, "forwarded");
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/json")),
    );
    response
}

/// The sidecar's HTTP app (tests drive it without a socket).
pub fn app(settings: ProxySettings) -> Router {
    let proxy = Arc::new(Proxy {
        settings,
        client: Mutex::new(None),
    });
    Router::new().fallback(forward).with_state(proxy)
}

/// Serves the socket until `shutdown`.
pub async fn run(settings: ProxySettings, shutdown: CancellationToken) -> Result<()> {
    if !settings.listen.starts_with("unix://") {
        return Err(Error::Provisioning(format!(
            "--listen {:?} must be a unix:// socket path (the module's IOTEDGE_WORKLOADURI)",
            settings.listen
        )));
    }
    let listener = WorkloadListener::bind(&settings.listen)
        .await
        .map_err(|e| Error::Serve {
            what: "the workload proxy",
            addr: settings.listen.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let WorkloadListener::Unix(listener, path) = listener else {
        return Err(Error::Provisioning(
            "the workload proxy serves unix sockets only".into(),
        ));
    };
    tracing::info!(socket = %path.display(), agent = %settings.agent_url, "workload proxy serving");
    let result = axum::serve(listener, app(settings))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    let _ = tokio::fs::remove_file(&path).await;
    result.map_err(|source| Error::Serve {
        what: "the workload proxy",
        addr: path.display().to_string(),
        source,
    })
}
