//! What telemetry ingestion needs per message, prepared once per route configuration: the
//! counter of every route and the store name of every endpoint, so that routing a message
//! allocates nothing beyond the message itself. Also the hub's `edgeMessageId`s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ironedge_routing::Delivery;
use prometheus_client::metrics::counter::Counter;

use crate::config::CompiledConfig;
use crate::metrics::{Metrics, RouteLabel};

/// The route configuration in force, with its per-route counters and endpoint names.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    /// The compiled configuration.
    pub(crate) config: Arc<CompiledConfig>,
    /// `ironedge_edgehub_messages_routed{route}` by route entry index.
    route_counters: Vec<Counter>,
    /// Store endpoint names by the table's endpoint index.
    endpoint_ids: Vec<String>,
}

impl Routing {
    /// Prepares `config` for `edge_device_id`'s hub.
    pub(crate) fn new(
        config: Arc<CompiledConfig>,
        metrics: &Metrics,
        edge_device_id: &str,
    ) -> Self {
        let route_counters = config
            .table
            .entries()
            .iter()
            .map(|e| {
                metrics
                    .messages_routed
                    .get_or_create(&RouteLabel {
                        route: e.name.clone(),
                    })
                    .clone()
            })
            .collect();
        let endpoint_ids = config
            .table
            .endpoints()
            .iter()
            .map(|e| e.id(edge_device_id))
            .collect();
        Self {
            config,
            route_counters,
            endpoint_ids,
        }
    }

    /// Counts a delivery for its route.
    pub(crate) fn count(&self, delivery: &Delivery<'_>) {
        let index = self
            .config
            .table
            .entries()
            .iter()
            .position(|e| std::ptr::eq(e.name.as_str(), delivery.route));
        if let Some(counter) = index.and_then(|i| self.route_counters.get(i)) {
            counter.inc();
        }
    }

    /// The store name of a delivery's endpoint.
    pub(crate) fn endpoint_id(&self, delivery: &Delivery<'_>) -> Option<&str> {
        let index = self
            .config
            .table
            .endpoints()
            .iter()
            .position(|e| std::ptr::eq(e, delivery.endpoint))?;
        self.endpoint_ids.get(index).map(String::as_str)
    }
}

/// `edgeMessageId`s: GUIDs as IoT Edge gives them, made from a random per-process prefix and a
/// counter, so that ingestion needs no system call for randomness per message.
#[derive(Debug)]
pub(crate) struct MessageIds {
    prefix: u64,
    next: AtomicU64,
}

impl Default for MessageIds {
    fn default() -> Self {
        let random = uuid::Uuid::new_v4().as_u64_pair();
        Self {
            prefix: random.0,
            next: AtomicU64::new(random.1),
        }
    }
}

impl MessageIds {
    /// A new id, unique within this process and, by its random prefix, across restarts.
    pub(crate) fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.prefix.to_be_bytes());
        bytes[8..].copy_from_slice(&n.to_be_bytes());
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        id.hyphenated().encode_lower(&mut buf).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HubConfig;

    #[test]
    fn message_ids_are_distinct_version_4_guids() {
        let ids = MessageIds::default();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn deliveries_find_their_route_counter_and_endpoint_name() {
        let config: HubConfig = serde_json::from_value(serde_json::json!({"routes": {
            "a": "FROM /messages/* INTO $upstream",
            "b": "FROM /messages/* INTO BrokeredEndpoint(\"/modules/m/inputs/i\")"
        }}))
        .unwrap();
        let metrics = Metrics::default();
        let routing = Routing::new(Arc::new(config.compile().unwrap()), &metrics, "edge");
        let msg = crate::message::EdgeMessage::new(&b"x"[..]);
        let deliveries = routing.config.table.route(&msg);
        let mut ids: Vec<&str> = deliveries
            .iter()
            .filter_map(|d| routing.endpoint_id(d))
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, ["edge/m/i", "iothub"]);
        for d in &deliveries {
            routing.count(d);
        }
        let routed = |r: &str| {
            metrics
                .messages_routed
                .get_or_create(&RouteLabel { route: r.into() })
                .get()
        };
        assert_eq!((routed("a"), routed("b")), (1, 1));
    }
}
