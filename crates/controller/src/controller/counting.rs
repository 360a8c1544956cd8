//! A tower layer on the kube client that counts write requests by verb and resource, so that
//! "a reconcile with nothing to change writes nothing" is measured, not assumed.

use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::{Method, Request};
use tower::{Layer, Service};

use super::metrics::Metrics;

/// Wraps a client service with [`CountWritesService`].
#[derive(Debug, Clone)]
pub struct CountWrites {
    metrics: Arc<Metrics>,
}

impl CountWrites {
    /// Counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for CountWrites {
    type Service = CountWritesService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountWritesService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Counts every request that is not a GET, then forwards it.
#[derive(Debug, Clone)]
pub struct CountWritesService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for CountWritesService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() != Method::GET {
            self.metrics
                .write(request.method().as_str(), &resource(request.uri().path()));
        }
        self.inner.call(request)
    }
}

/// `deployments` from `/apis/apps/v1/namespaces/ns/deployments/x`, `edgedeployments/status` from a
/// status path.
pub fn resource(path: &str) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let start = match segments.iter().position(|s| *s == "namespaces") {
        Some(i) if segments.len() > i + 2 => i + 2,
        _ => {
            if segments.first() == Some(&"api") {
                2
            } else {
                3
            }
        }
    };
    match (segments.get(start), segments.get(start + 2)) {
        (Some(resource), Some(sub)) => format!("{resource}/{sub}"),
        (Some(resource), None) => (*resource).to_string(),
        (None, _) => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::resource;

    #[test]
    fn resources_are_read_from_paths() {
        assert_eq!(
            resource("/apis/apps/v1/namespaces/a/deployments/x"),
            "deployments"
        );
        assert_eq!(
            resource("/apis/ironedge.io/v1/namespaces/a/edgedeployments/x/status"),
            "edgedeployments/status"
        );
        assert_eq!(resource("/api/v1/namespaces/a/services"), "services");
        assert_eq!(resource("/api/v1/namespaces"), "namespaces");
        assert_eq!(
            resource("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x"),
            "customresourcedefinitions"
        );
    }
}
