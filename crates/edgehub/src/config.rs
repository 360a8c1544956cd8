//! The edge hub's routing configuration: routes and store-and-forward settings, as the device's
//! `EdgeDeployment` carries them (written by the agent from the `$edgeHub` desired properties) or
//! as a JSON file for runs without Kubernetes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ironedge_routing::{DEFAULT_PRIORITY, RouteSpec, RouteTable, RouteTableError};
use serde::Deserialize;

/// Routes and store-and-forward settings, before compiling.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubConfig {
    /// Routes by name.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteConfig>,
    /// Store-and-forward settings.
    #[serde(default)]
    pub store_and_forward: Option<StoreAndForward>,
}

/// One route: a string, or `{route, priority, timeToLiveSecs}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RouteConfig {
    /// `FROM … INTO …` with default priority and the global TTL.
    Text(String),
    /// A route with priority (0–9) and TTL (0 = global).
    #[serde(rename_all = "camelCase")]
    Spec {
        /// Route text.
        route: String,
        /// 0 (highest) to 9.
        #[serde(default)]
        priority: Option<u8>,
        /// Seconds; 0 or absent means the global TTL.
        #[serde(default)]
        time_to_live_secs: Option<u32>,
    },
}

/// `storeAndForwardConfiguration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreAndForward {
    /// Global message TTL in seconds; negative means forever.
    pub time_to_live_secs: i64,
    /// Byte quota of the store.
    #[serde(default)]
    pub max_size_bytes: Option<u64>,
}

/// IoT Edge's default global TTL (7200 s) when no store-and-forward section is given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7200);

/// A compiled configuration, swapped atomically as a whole.
#[derive(Debug, Clone)]
pub struct CompiledConfig {
    /// The route table.
    pub table: Arc<RouteTable>,
    /// The global TTL; `None` keeps messages forever.
    pub default_ttl: Option<Duration>,
    /// The store byte quota, if any.
    pub max_size_bytes: Option<u64>,
}

impl Default for CompiledConfig {
    fn default() -> Self {
        Self {
            table: Arc::new(RouteTable::default()),
            default_ttl: Some(DEFAULT_TTL),
            max_size_bytes: None,
        }
    }
}

impl HubConfig {
    /// Compiles every route; any failure rejects the whole configuration (the running one stays).
    pub fn compile(&self) -> Result<CompiledConfig, Box<RouteTableError>> {
        let specs = self.routes.iter().map(|(name, r)| match r {
            RouteConfig::Text(text) => RouteSpec::new(name.clone(), text.clone()),
            RouteConfig::Spec {
                route,
                priority,
                time_to_live_secs,
            } => RouteSpec {
                name: name.clone(),
                route: route.clone(),
                priority: priority.map_or(DEFAULT_PRIORITY, u32::from),
                time_to_live_secs: time_to_live_secs.unwrap_or(0),
            },
        });
        let table = RouteTable::compile(specs).map_err(Box::new)?;
        let default_ttl = match self.store_and_forward {
            None => Some(DEFAULT_TTL),
            Some(s) if s.time_to_live_secs < 0 => None,
            Some(s) => Some(Duration::from_secs(s.time_to_live_secs.unsigned_abs())),
        };
        Ok(CompiledConfig {
            table: Arc::new(table),
            default_ttl,
            max_size_bytes: self.store_and_forward.and_then(|s| s.max_size_bytes),
        })
    }
}

impl CompiledConfig {
    /// The TTL of a delivery: the route's own, else the global one.
    pub fn ttl(&self, route_ttl_secs: u32) -> Option<Duration> {
        if route_ttl_secs > 0 {
            Some(Duration::from_secs(u64::from(route_ttl_secs)))
        } else {
            self.default_ttl
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_as_strings_and_objects_compile_with_their_priorities_and_ttls() {
        let cfg: HubConfig = serde_json::from_str(
            r#"{"routes": {
                "a": "FROM /messages/modules/sensor/outputs/out1 INTO BrokeredEndpoint(\"/modules/filter/inputs/in1\")",
                "b": {"route": "FROM /messages/* INTO $upstream", "priority": 0, "timeToLiveSecs": 60}
            }, "storeAndForward": {"timeToLiveSecs": 100}}"#,
        )
        .unwrap();
        let compiled = cfg.compile().unwrap();
        assert_eq!(compiled.table.entries().len(), 2);
        assert_eq!(compiled.ttl(60), Some(Duration::from_secs(60)));
        assert_eq!(compiled.ttl(0), Some(Duration::from_secs(100)));
    }

    #[test]
    fn a_bad_route_rejects_the_whole_configuration_naming_it() {
        let cfg: HubConfig = serde_json::from_str(
            r#"{"routes": {"good": "FROM /* INTO $upstream", "bad": "FROM /* WHERE INTO $upstream"}}"#,
        )
        .unwrap();
        let err = cfg.compile().unwrap_err();
        assert_eq!(err.name, "bad");
    }

    #[test]
    fn a_negative_ttl_keeps_messages_forever() {
        let cfg = HubConfig {
            store_and_forward: Some(StoreAndForward {
                time_to_live_secs: -1,
                max_size_bytes: None,
            }),
            ..HubConfig::default()
        };
        assert_eq!(cfg.compile().unwrap().default_ttl, None);
    }
}
