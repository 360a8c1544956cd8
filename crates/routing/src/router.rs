//! The route table and the router (reference §2.9, `Evaluator.cs`, `Router.cs`).
//!
//! A message is delivered to every endpoint with at least one matching route, once per
//! endpoint: of the routes matching for one endpoint the one with the lowest priority number
//! wins (the first in table order on a tie) and its TTL goes with the delivery. A message no
//! route matches is dropped by the caller. The table is immutable: the edge hub builds a new
//! one on every `$edgeHub` update and swaps an `Arc<RouteTable>`, so messages in flight finish
//! on the table they started with.

use std::sync::Arc;

use crate::compile::compile;
use crate::error::RouteError;
use crate::eval::MessageContext;
use crate::message::RoutableMessage;
use crate::route::CompiledRoute;
use crate::sink::Endpoint;

/// The priority of routes given as plain strings (`RouteFactory.DefaultPriority`).
pub const DEFAULT_PRIORITY: u32 = 2_000_000_000;

/// A route as configured in `$edgeHub`: name, text, priority and TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The route's name in the `routes` map.
    pub name: String,
    /// The route text.
    pub route: String,
    /// 0–9, or [`DEFAULT_PRIORITY`]; lower numbers win.
    pub priority: u32,
    /// Seconds a message may wait in the endpoint queue; 0 means the global TTL.
    pub time_to_live_secs: u32,
}

impl RouteSpec {
    /// A route given as a plain string: default priority, global TTL.
    pub fn new(name: impl Into<String>, route: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            route: route.into(),
            priority: DEFAULT_PRIORITY,
            time_to_live_secs: 0,
        }
    }
}

/// A compiled route with its name, priority and TTL.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    /// The route's name.
    pub name: String,
    /// The compiled route.
    pub route: CompiledRoute,
    /// Lower numbers win when several routes reach one endpoint.
    pub priority: u32,
    /// 0 means the global TTL.
    pub time_to_live_secs: u32,
}

/// A route in a table failed to compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error parsing route '{name}': {error}")]
pub struct RouteTableError {
    /// The route's name.
    pub name: String,
    /// What is wrong with it.
    pub error: Box<RouteError>,
}

/// One delivery decided by the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'t> {
    /// Where to deliver.
    pub endpoint: &'t Endpoint,
    /// The winning route's priority (selects the endpoint's priority queue).
    pub priority: u32,
    /// The winning route's TTL in seconds; 0 means the global TTL.
    pub time_to_live_secs: u32,
    /// The winning route's name.
    pub route: &'t str,
}

/// An immutable set of routes; share it as `Arc<RouteTable>` and replace it whole.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    entries: Vec<RouteEntry>,
    endpoints: Vec<Endpoint>,
    /// For each entry, the index of its endpoint in `endpoints`.
    endpoint_of: Vec<usize>,
}

impl RouteTable {
    /// A table of compiled routes, evaluated in the given order.
    pub fn new(entries: Vec<RouteEntry>) -> Self {
        let mut endpoints: Vec<Endpoint> = Vec::new();
        let endpoint_of = entries
            .iter()
            .map(
                |entry| match endpoints.iter().position(|e| e == entry.route.endpoint()) {
                    Some(i) => i,
                    None => {
                        endpoints.push(entry.route.endpoint().clone());
                        endpoints.len() - 1
                    }
                },
            )
            .collect();
        Self {
            entries,
            endpoints,
            endpoint_of,
        }
    }

    /// Compiles every route; the first failure rejects the whole table, as on IoT Edge.
    pub fn compile(specs: impl IntoIterator<Item = RouteSpec>) -> Result<Self, RouteTableError> {
        let entries = specs
            .into_iter()
            .map(|spec| {
                let route = compile(&spec.route).map_err(|error| RouteTableError {
                    name: spec.name.clone(),
                    error: Box::new(error),
                })?;
                Ok(RouteEntry {
                    name: spec.name,
                    route,
                    priority: spec.priority,
                    time_to_live_secs: spec.time_to_live_secs,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(entries))
    }

    /// Wraps the table for sharing between the routing task and its readers.
    pub fn into_shared(self) -> Arc<Self> {
        Arc::new(self)
    }

    /// The routes in evaluation order.
    pub fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    /// The distinct endpoints the routes deliver to.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The deliveries for one message: at most one per endpoint, lowest priority number winning.
    pub fn route<M: RoutableMessage + ?Sized>(&self, message: &M) -> Vec<Delivery<'_>> {
        let mut out = Vec::new();
        self.route_into(message, &mut out);
        out
    }

    /// As [`RouteTable::route`], appending to `out` (cleared first) so a buffer can be reused.
    pub fn route_into<'t, M: RoutableMessage + ?Sized>(
        &'t self,
        message: &M,
        out: &mut Vec<Delivery<'t>>,
    ) {
        out.clear();
        let context = MessageContext::new(message);
        for (entry, &endpoint) in self.entries.iter().zip(&self.endpoint_of) {
            let endpoint = &self.endpoints[endpoint];
            // Endpoints are interned in the table, so identity is pointer equality (no allocation).
            let existing = out.iter().position(|d| std::ptr::eq(d.endpoint, endpoint));
            // A route that cannot beat the delivery already chosen for its endpoint is skipped.
            if existing.is_some_and(|i| out[i].priority <= entry.priority) {
                continue;
            }
            if !entry.route.evaluate_in(&context).matched() {
                continue;
            }
            let delivery = Delivery {
                endpoint,
                priority: entry.priority,
                time_to_live_secs: entry.time_to_live_secs,
                route: &entry.name,
            };
            match existing {
                Some(i) => out[i] = delivery,
                None => out.push(delivery),
            }
        }
    }
}
