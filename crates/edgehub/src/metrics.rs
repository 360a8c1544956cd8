//! Prometheus metrics, named `ironedge_edgehub_<what>_<unit>`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label: an endpoint id (`iothub`, `{device}/{module}/{input}`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    /// Endpoint id.
    pub endpoint: String,
}

/// Label: a route name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// Route name.
    pub route: String,
}

/// Label: a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: String,
}

/// Every metric the edge hub exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connected clients.
    pub connections: Gauge,
    /// Messages accepted from clients.
    pub messages_received: Counter,
    /// Messages routed, per route.
    pub messages_routed: Family<RouteLabel, Counter>,
    /// Messages delivered and acknowledged, per endpoint.
    pub messages_sent: Family<EndpointLabel, Counter>,
    /// Messages dropped, per reason (`no_route`, `too_large`, `corrupt`, `store_full`).
    pub messages_dropped: Family<ReasonLabel, Counter>,
    /// Messages queued per endpoint.
    pub queue_length: Family<EndpointLabel, Gauge>,
    /// Messages expired per endpoint (TTL), since start of the store.
    pub messages_expired: Family<EndpointLabel, Gauge>,
    /// Messages evicted per endpoint (byte quota), since start of the store.
    pub messages_evicted: Family<EndpointLabel, Gauge>,
    /// Payload bytes in the store.
    pub store_bytes: Gauge,
    /// Payload bytes the store file holds, including acknowledged payloads that share a blob
    /// with queued ones (compaction keeps it under about twice `store_bytes`).
    pub store_blob_bytes: Gauge,
    /// Store commits (one fsync each) since start; operations per commit is the group-commit
    /// batch size.
    pub store_commits: Gauge,
    /// Store operations (appends, acknowledgements, ...) committed since start.
    pub store_operations: Gauge,
    /// The most operations one store commit held.
    pub store_largest_batch: Gauge,
    /// Refused CONNECTs, per reason.
    pub auth_failures: Family<ReasonLabel, Counter>,
    /// Refused PUBLISH/SUBSCRIBE.
    pub authorization_failures: Counter,
    /// Upstream connections that are up.
    pub upstream_connected: Gauge,
    /// 1 while an upstream link is configured.
    pub upstream_configured: Gauge,
    /// Route configurations applied.
    pub config_applied: Counter,
    /// Route configurations rejected (the running one stayed).
    pub config_rejected: Counter,
    /// Server certificates reloaded from disk while running.
    pub server_cert_reloads: Counter,
    /// New server certificate files refused (the serving certificate stayed).
    pub server_cert_reload_failures: Counter,
    /// When the serving certificate expires, in Unix seconds.
    pub server_cert_expiry: Gauge,
}

impl Metrics {
    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("ironedge_edgehub");
        r.register("connections", "Connected clients", self.connections.clone());
        r.register(
            "messages_received",
            "Messages accepted from clients",
            self.messages_received.clone(),
        );
        r.register(
            "messages_routed",
            "Messages routed per route",
            self.messages_routed.clone(),
        );
        r.register(
            "messages_sent",
            "Messages delivered and acknowledged per endpoint",
            self.messages_sent.clone(),
        );
        r.register(
            "messages_dropped",
            "Messages dropped per reason",
            self.messages_dropped.clone(),
        );
        r.register(
            "queue_length_messages",
            "Messages queued per endpoint",
            self.queue_length.clone(),
        );
        r.register(
            "messages_expired",
            "Messages expired (TTL) per endpoint",
            self.messages_expired.clone(),
        );
        r.register(
            "messages_evicted",
            "Messages evicted (byte quota) per endpoint",
            self.messages_evicted.clone(),
        );
        r.register(
            "store_bytes",
            "Payload bytes in the store",
            self.store_bytes.clone(),
        );
        r.register(
            "store_blob_bytes",
            "Payload bytes the store file holds, including acknowledged ones sharing a blob with queued ones",
            self.store_blob_bytes.clone(),
        );
        r.register(
            "store_commits",
            "Store commits (one fsync each) since start",
            self.store_commits.clone(),
        );
        r.register(
            "store_operations",
            "Store operations committed since start",
            self.store_operations.clone(),
        );
        r.register(
            "store_largest_batch",
            "Most operations in one store commit",
            self.store_largest_batch.clone(),
        );
        r.register(
            "auth_failures",
            "Refused CONNECTs per reason",
            self.auth_failures.clone(),
        );
        r.register(
            "authorization_failures",
            "Refused PUBLISH or SUBSCRIBE",
            self.authorization_failures.clone(),
        );
        r.register(
            "upstream_connected_connections",
            "Upstream connections that are up",
            self.upstream_connected.clone(),
        );
        r.register(
            "upstream_configured",
            "1 when an upstream link is configured",
            self.upstream_configured.clone(),
        );
        r.register(
            "server_cert_reloads",
            "Server certificates reloaded from disk",
            self.server_cert_reloads.clone(),
        );
        r.register(
            "server_cert_reload_failures",
            "New server certificate files refused (the serving one stayed)",
            self.server_cert_reload_failures.clone(),
        );
        r.register(
            "server_cert_expiry_timestamp_seconds",
            "When the serving certificate expires (Unix seconds)",
            self.server_cert_expiry.clone(),
        );
    }

    /// Counts a drop.
    pub fn dropped(&self, reason: &str) {
        self.messages_dropped
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
