//! Prometheus metrics of the controller (`ironedge_controller_*`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`crate::Error::metric_label`].
    pub error: String,
}

/// Labels of the API write counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// HTTP method.
    pub verb: String,
    /// Resource, e.g. `deployments` or `edgedeployments/status`.
    pub resource: String,
}

/// Every metric the controller exports, and the registry that serves them.
#[derive(Debug)]
pub struct Metrics {
    /// The registry behind `/metrics`.
    pub registry: Registry,
    /// Reconciles run.
    pub reconciles: Counter,
    /// Failed reconciles by error kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration.
    pub duration: Histogram,
    /// API write requests by verb and resource.
    pub writes: Family<WriteLabels, Counter>,
    /// 1 while this process holds the leader lease.
    pub leader: Gauge,
    /// Writes other than lease renewals, for tests and the load tool.
    object_writes: Arc<AtomicU64>,
    /// Reconciles finished (successfully or not).
    completed: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ironedge_controller");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let writes = Family::<WriteLabels, Counter>::default();
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "EdgeDeployment reconciles run",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        registry.register(
            "api_writes",
            "Write requests sent to the API server",
            writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this instance holds the leader lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            writes,
            leader,
            object_writes: Arc::default(),
            completed: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Reconciles finished so far.
    pub fn reconcile_count(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Counts a reconcile and times it until the guard drops.
    pub fn reconcile_timer(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn error(&self, label: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                error: label.to_string(),
            })
            .inc();
    }

    /// Counts one write request.
    pub fn write(&self, verb: &str, resource: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                verb: verb.to_string(),
                resource: resource.to_string(),
            })
            .inc();
        if !resource.starts_with("leases") {
            self.object_writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes so far, lease renewals excluded.
    pub fn writes_excluding_leases(&self) -> u64 {
        self.object_writes.load(Ordering::Relaxed)
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Observes the reconcile duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics.completed.fetch_add(1, Ordering::Relaxed);
    }
}
