//! The kubelet endpoint: HTTPS on the node's address and the port published as
//! `status.daemonEndpoints.kubeletEndpoint`. The API server proxies `pods/log` to
//! `/containerLogs/{namespace}/{pod}/{container}`, so `kubectl logs` (and any client of the
//! `pods/log` API, such as the agent) reads the node's log files. `exec`, `attach` and
//! `portforward` are answered 501.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jiff::Timestamp;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::logs::{LogHandle, LogOptions, LogStore, render};

/// The `pods/log` query as the API server forwards it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    follow: Option<String>,
    previous: Option<String>,
    tail_lines: Option<i64>,
    since_seconds: Option<i64>,
    since_time: Option<String>,
    timestamps: Option<String>,
    limit_bytes: Option<i64>,
}

fn flag(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1" | "True"))
}

impl LogQuery {
    /// The read options, or a message for a 400 answer.
    pub fn options(&self, now: Timestamp) -> Result<LogOptions, String> {
        let since = match (&self.since_seconds, &self.since_time) {
            (Some(s), _) => Some(
                now.checked_sub(jiff::SignedDuration::from_secs(*s))
                    .map_err(|e| format!("sinceSeconds {s}: {e}"))?,
            ),
            (None, Some(t)) => Some(
                t.parse::<Timestamp>()
                    .map_err(|e| format!("sinceTime {t:?}: {e}"))?,
            ),
            (None, None) => None,
        };
        Ok(LogOptions {
            follow: flag(&self.follow),
            previous: flag(&self.previous),
            tail_lines: self.tail_lines.map(|n| usize::try_from(n).unwrap_or(0)),
            since,
            timestamps: flag(&self.timestamps),
            limit_bytes: self.limit_bytes.and_then(|n| usize::try_from(n).ok()),
        })
    }
}

/// The endpoint's routes.
pub fn app(store: Arc<LogStore>) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            (
                StatusCode::NOT_IMPLEMENTED,
                "ironedge node serves only /containerLogs and /healthz\n",
            )
        })
        .with_state(store)
}

async fn container_logs(
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
    State(store): State<Arc<LogStore>>,
) -> Response {
    let options = match query.options(Timestamp::now()) {
        Ok(o) => o,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let Some(handle) = store.handle(&namespace, &pod, &container, options.previous) else {
        let what = if options.previous {
            "previous terminated container"
        } else {
            "container"
        };
        return (
            StatusCode::NOT_FOUND,
            format!("{what} {container:?} in pod {pod:?} (namespace {namespace:?}) has no logs on this node\n"),
        )
            .into_response();
    };
    let content = tokio::fs::read(&handle.path).await.unwrap_or_default();
    let complete = content
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let first = render(&String::from_utf8_lossy(&content[..complete]), &options);
    if !options.follow {
        return text(first);
    }
    let stream = follow_stream(store, handle, complete as u64, first, options);
    Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn text(body: String) -> Response {
    ([("content-type", "text/plain; charset=utf-8")], body).into_response()
}

/// The initial text, then every complete record appended while the run is live.
fn follow_stream(
    store: Arc<LogStore>,
    handle: LogHandle,
    offset: u64,
    first: String,
    options: LogOptions,
) -> impl futures::Stream<Item = std::io::Result<String>> {
    let mut remaining = options.limit_bytes.unwrap_or(usize::MAX);
    let first = take_budget(first, &mut remaining);
    let rest_options = LogOptions {
        tail_lines: None,
        since: None,
        limit_bytes: None,
        ..options
    };
    futures::stream::unfold(
        (Some(first), offset, remaining, false),
        move |(pending, offset, remaining, done)| {
            let store = store.clone();
            let handle = handle.clone();
            let options = rest_options.clone();
            async move {
                if let Some(first) = pending {
                    return Some((Ok(first), (None, offset, remaining, false)));
                }
                if done || remaining == 0 {
                    return None;
                }
                loop {
                    let notified = handle.notify.notified();
                    let live = store.is_live(&handle);
                    let (chunk, new_offset) = read_from(&handle.path, offset).await;
                    if !chunk.is_empty() {
                        let mut remaining = remaining;
                        let out = take_budget(render(&chunk, &options), &mut remaining);
                        return Some((Ok(out), (None, new_offset, remaining, false)));
                    }
                    if !live {
                        return None;
                    }
                    // The timeout covers a notification sent between the read and the wait.
                    let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
                }
            }
        },
    )
}

fn take_budget(mut s: String, remaining: &mut usize) -> String {
    if s.len() > *remaining {
        let mut end = *remaining;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    *remaining -= s.len();
    s
}

/// Complete records after `offset`, and the offset after them.
async fn read_from(path: &std::path::Path, offset: u64) -> (String, u64) {
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return (String::new(), offset);
    };
    if f.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return (String::new(), offset);
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).await.is_err() {
        return (String::new(), offset);
    }
    let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    (
        String::from_utf8_lossy(&buf[..complete]).into_owned(),
        offset + complete as u64,
    )
}

/// TLS for the endpoint: a self-signed certificate for `names`; with `client_ca_pem`, clients
/// (the API server's `--kubelet-client-certificate`) must present a certificate it signed.
pub fn tls_config(
    names: &[&str],
    client_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>> {
    let tls = |e: ironedge_pki::Error| Error::Tls(e.to_string());
    let not_after = Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * 365))
        .map_err(|e| Error::Tls(e.to_string()))?;
    let ca = ironedge_pki::CertificateAuthority::new_root("ironedge node kubelet CA", not_after)
        .map_err(tls)?;
    let cert = ca.issue_server(names, not_after).map_err(tls)?;
    let chain = format!("{}{}", cert.chain_pem, ca.cert_pem());
    match client_ca_pem {
        None => ironedge_pki::server_config(&chain, &cert.key_pem).map_err(tls),
        Some(ca_pem) => {
            let provider = ironedge_pki::crypto_provider();
            let mut roots = rustls::RootCertStore::empty();
            for c in
                ironedge_pki::certificates_from_pem(ca_pem, "kubelet client CA").map_err(tls)?
            {
                roots.add(c).map_err(|e| Error::Tls(e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| Error::Tls(e.to_string()))?;
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(ironedge_pki::PROTOCOL_VERSIONS)
                .map_err(|e| Error::Tls(e.to_string()))?
                .with_client_cert_verifier(verifier)
                .with_single_cert(
                    ironedge_pki::certificates_from_pem(&chain, "kubelet certificate")
                        .map_err(tls)?,
                    ironedge_pki::private_key_from_pem(&cert.key_pem, "kubelet key")
                        .map_err(tls)?,
                )
                .map_err(|e| Error::Tls(e.to_string()))?;
            Ok(Arc::new(config))
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a kubelet-endpoint connection failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "kubelet-endpoint TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "kubelet-endpoint connection ended with an error");
                },
                () = stop.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_flags_and_times_become_options() {
        let q = LogQuery {
            follow: Some("true".into()),
            tail_lines: Some(5),
            since_seconds: Some(10),
            ..Default::default()
        };
        let now: Timestamp = "2024-01-01T00:01:00Z".parse().unwrap();
        let o = q.options(now).unwrap();
        assert!(o.follow && !o.previous);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.since, Some("2024-01-01T00:00:50Z".parse().unwrap()));
        let bad = LogQuery {
            since_time: Some("yesterday".into()),
            ..Default::default()
        };
        assert!(bad.options(now).unwrap_err().contains("yesterday"));
    }
}
