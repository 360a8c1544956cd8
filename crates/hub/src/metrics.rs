//! Prometheus metrics of the hub (`/metrics`), named `ironedge_hub_<what>_<unit>`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Every metric the hub exports.
#[derive(Debug)]
pub struct HubMetrics {
    registry: Registry,
    /// Open MQTT connections.
    pub connections: Gauge,
    /// MQTT connections accepted since start.
    pub connections_accepted: Counter,
    /// Device-to-cloud messages accepted (telemetry).
    pub messages_received: Counter,
    /// Messages sent to devices (C2D, desired patches, method requests).
    pub messages_sent: Family<Labels, Counter>,
    /// Authentication failures by endpoint (`mqtt`, `rest`).
    pub auth_failures: Family<Labels, Counter>,
    /// Twin operations by kind.
    pub twin_operations: Family<Labels, Counter>,
    /// Direct method invocations by result.
    pub method_invocations: Family<Labels, Counter>,
    /// REST requests by status class.
    pub rest_requests: Family<Labels, Counter>,
    /// Telemetry messages dropped by retention.
    pub telemetry_pruned: Counter,
}

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_owned(), v.to_owned())]
}

impl Default for HubMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ironedge_hub");
        let m = Self {
            connections: Gauge::default(),
            connections_accepted: Counter::default(),
            messages_received: Counter::default(),
            messages_sent: Family::default(),
            auth_failures: Family::default(),
            twin_operations: Family::default(),
            method_invocations: Family::default(),
            rest_requests: Family::default(),
            telemetry_pruned: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open device MQTT connections",
            m.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "Device MQTT connections accepted",
            m.connections_accepted.clone(),
        );
        registry.register(
            "messages_received",
            "Device-to-cloud messages stored",
            m.messages_received.clone(),
        );
        registry.register(
            "messages_sent",
            "Messages sent to devices by kind",
            m.messages_sent.clone(),
        );
        registry.register(
            "auth_failures",
            "Authentication failures by endpoint",
            m.auth_failures.clone(),
        );
        registry.register(
            "twin_operations",
            "Twin operations by kind",
            m.twin_operations.clone(),
        );
        registry.register(
            "method_invocations",
            "Direct method invocations by result",
            m.method_invocations.clone(),
        );
        registry.register(
            "rest_requests",
            "REST requests by status class",
            m.rest_requests.clone(),
        );
        registry.register(
            "telemetry_pruned",
            "Telemetry messages removed by retention",
            m.telemetry_pruned.clone(),
        );
        Self { registry, ..m }
    }
}

impl HubMetrics {
    /// Counts a message sent to a device.
    pub fn sent(&self, kind: &str) {
        self.messages_sent.get_or_create(&label("kind", kind)).inc();
    }

    /// Counts an authentication failure.
    pub fn auth_failure(&self, endpoint: &str) {
        self.auth_failures
            .get_or_create(&label("endpoint", endpoint))
            .inc();
    }

    /// Counts a twin operation.
    pub fn twin_op(&self, op: &str) {
        self.twin_operations
            .get_or_create(&label("operation", op))
            .inc();
    }

    /// Counts a direct method result.
    pub fn method(&self, result: &str) {
        self.method_invocations
            .get_or_create(&label("result", result))
            .inc();
    }

    /// Counts a REST response.
    pub fn rest(&self, status: u16) {
        let class = format!("{}xx", status / 100);
        self.rest_requests
            .get_or_create(&label("status", &class))
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
