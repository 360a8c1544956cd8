//! The REST service API over HTTPS (`reference/iot-hub-protocols.md` §3) plus the `/_ext/`
//! extension, `/healthz` and `/metrics`. One route group per file.

mod configurations;
mod devices;
pub mod error;
mod extract;
mod messages;
mod twins;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::Hub;

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The application: every route, with the hub as state.
pub fn app(hub: Hub) -> Router {
    Router::new()
        .route("/devices", get(devices::list))
        .route("/devices/query", post(twins::query))
        .route(
            "/devices/{id}",
            put(devices::put).get(devices::get).delete(devices::delete),
        )
        .route("/devices/{id}/modules", get(devices::list_modules))
        .route(
            "/devices/{id}/modules/{mid}",
            put(devices::put_module)
                .get(devices::get_module)
                .delete(devices::delete_module),
        )
        .route(
            "/devices/{id}/applyConfigurationContent",
            post(devices::apply_content),
        )
        .route("/statistics/devices", get(devices::statistics))
        .route(
            "/twins/{id}",
            get(twins::get).patch(twins::patch).put(twins::put),
        )
        .route("/twins/{id}/methods", post(twins::invoke))
        .route(
            "/twins/{id}/modules/{mid}",
            get(twins::get_module)
                .patch(twins::patch_module)
                .put(twins::put_module),
        )
        .route(
            "/twins/{id}/modules/{mid}/methods",
            post(twins::invoke_module),
        )
        .route("/configurations", get(configurations::list))
        .route(
            "/configurations/testQueries",
            post(configurations::test_queries),
        )
        .route(
            "/configurations/{id}",
            put(configurations::put)
                .get(configurations::get)
                .delete(configurations::delete),
        )
        .route("/_ext/messages/events", get(messages::list))
        .route("/_ext/messages/events/stream", get(messages::stream))
        .route("/_ext/messages/feedback", get(messages::feedback))
        .route(
            "/_ext/devices/{id}/messages/devicebound",
            post(messages::send_c2d),
        )
        .route(
            "/_ext/devices/{id}/messages/devicebound/{mid}",
            get(messages::c2d_status),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(hub.clone(), observe))
        .with_state(hub)
}

async fn healthz(State(hub): State<Hub>) -> Response {
    if hub.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

async fn metrics(State(hub): State<Hub>) -> Response {
    hub.metrics()
        .connections
        .set(i64::try_from(hub.connections().count()).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        hub.metrics().render(),
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    let msg = format!("no such endpoint: {} {}", req.method(), req.uri().path());
    (
        StatusCode::NOT_FOUND,
        axum::Json(error::body("NotFound", &msg)),
    )
        .into_response()
}

async fn observe(State(hub): State<Hub>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    hub.metrics().rest(status);
    tracing::debug!(%method, path, status, elapsed_ms = started.elapsed().as_millis() as u64, "rest request");
    resp
}

/// Serves `app` over TLS on `listener` until `shutdown`, then drains open requests (10 s at most).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a REST connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "REST connection ended with an error");
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("REST connections still open after 10 s; closing"),
    }
}

#[cfg(test)]
mod tests;
