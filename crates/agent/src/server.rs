//! The operations endpoints: `/healthz` (the process serves), `/readyz` (identities, CA and the
//! in-process controller are up) and `/metrics` (the agent's and the controller's metrics).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What `/readyz` reports.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
}

impl Readiness {
    /// Marks the agent ready or not.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the agent is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    controller: Option<Arc<ironedge_controller::controller::Metrics>>,
    controller_health: Option<Arc<ironedge_controller::controller::Health>>,
    readiness: Arc<Readiness>,
}

/// The router (tests call it directly).
pub fn app(
    metrics: Arc<Metrics>,
    controller: Option<(
        Arc<ironedge_controller::controller::Metrics>,
        Arc<ironedge_controller::controller::Health>,
    )>,
    readiness: Arc<Readiness>,
) -> Router {
    let (controller, controller_health) = match controller {
        Some((m, h)) => (Some(m), Some(h)),
        None => (None, None),
    };
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            metrics,
            controller,
            controller_health,
            readiness,
        })
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = state.metrics.encode();
    match &state.controller {
        Some(controller) => body.push_str(&controller.encode()),
        None => body.push_str("# EOF\n"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let controller_ready = state
        .controller_health
        .as_ref()
        .is_none_or(|h| h.is_ready());
    if state.readiness.is_ready() && controller_ready {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: identities, certificates or the controller are not ready",
        )
    }
}

/// Serves [`app`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
