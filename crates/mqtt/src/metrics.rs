//! Counters for Prometheus; atomics only, updated in batches per socket read or write.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Server counters. Register them with [`MqttMetrics::register`].
#[derive(Clone, Debug, Default)]
pub struct MqttMetrics {
    /// Connections accepted (TCP/TLS/WebSocket established).
    pub connections_total: Counter,
    /// Connections currently open and authenticated.
    pub connections_active: Gauge,
    /// CONNECTs refused by the authenticator.
    pub auth_failures_total: Counter,
    /// Packets received.
    pub packets_in_total: Counter,
    /// Packets sent.
    pub packets_out_total: Counter,
    /// PUBLISH packets received.
    pub publishes_in_total: Counter,
    /// PUBLISH packets sent.
    pub publishes_out_total: Counter,
    /// Connections closed for malformed, oversize or forbidden packets.
    pub protocol_errors_total: Counter,
    /// Connections closed because a newer one for the same identity arrived.
    pub takeovers_total: Counter,
}

impl MqttMetrics {
    /// Registers the counters under `registry` (add a prefix such as `ironedge_edgehub_mqtt`
    /// with `Registry::sub_registry_with_prefix`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections",
            "MQTT connections accepted",
            self.connections_total.clone(),
        );
        registry.register(
            "connections_active",
            "MQTT connections open",
            self.connections_active.clone(),
        );
        registry.register(
            "auth_failures",
            "MQTT CONNECTs refused",
            self.auth_failures_total.clone(),
        );
        registry.register(
            "packets_in",
            "MQTT packets received",
            self.packets_in_total.clone(),
        );
        registry.register(
            "packets_out",
            "MQTT packets sent",
            self.packets_out_total.clone(),
        );
        registry.register(
            "publishes_in",
            "MQTT PUBLISH packets received",
            self.publishes_in_total.clone(),
        );
        registry.register(
            "publishes_out",
            "MQTT PUBLISH packets sent",
            self.publishes_out_total.clone(),
        );
        registry.register(
            "protocol_errors",
            "MQTT connections closed for bad packets",
            self.protocol_errors_total.clone(),
        );
        registry.register(
            "takeovers",
            "MQTT connections replaced by a newer one",
            self.takeovers_total.clone(),
        );
    }
}
