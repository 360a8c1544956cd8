//! The router: per-endpoint deduplication, priorities, TTLs, and one body parse per message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
use std::sync::Arc;

use ironedge_routing::{
    DEFAULT_PRIORITY, Endpoint, Message, PropertyValue, RoutableMessage, RouteSpec, RouteTable,
    SystemProperty,
};

fn spec(name: &str, route: &str, priority: u32, ttl: u32) -> RouteSpec {
    RouteSpec {
        name: name.into(),
        route: route.into(),
        priority,
        time_to_live_secs: ttl,
    }
}

fn sensor_message(temp: &str) -> Message {
    Message::new("/messages/modules/sensor/outputs/out")
        .with_json_body(format!(r#"{{"temperature":{temp}}}"#))
        .with_system_property("connectionModuleId", "sensor")
}

#[test]
fn each_endpoint_gets_one_delivery_from_the_lowest_priority_number() {
    let table = RouteTable::compile([
        spec(
            "all",
            "FROM /messages/* INTO $upstream",
            DEFAULT_PRIORITY,
            0,
        ),
        spec(
            "hot",
            "FROM /messages/* WHERE $body.temperature > 30 INTO $upstream",
            0,
            60,
        ),
        spec(
            "warm",
            "FROM /messages/* WHERE $body.temperature > 20 INTO $upstream",
            1,
            120,
        ),
        spec(
            "filter",
            r#"FROM /messages/modules/sensor/* INTO BrokeredEndpoint("/modules/filter/inputs/in")"#,
            5,
            0,
        ),
    ])
    .unwrap();

    let hot = sensor_message("35");
    let deliveries = table.route(&hot);
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0].endpoint, &Endpoint::Upstream);
    assert_eq!(
        (
            deliveries[0].route,
            deliveries[0].priority,
            deliveries[0].time_to_live_secs
        ),
        ("hot", 0, 60)
    );
    assert_eq!(deliveries[1].route, "filter");

    let warm = sensor_message("25");
    let deliveries = table.route(&warm);
    assert_eq!(
        (
            deliveries[0].route,
            deliveries[0].priority,
            deliveries[0].time_to_live_secs
        ),
        ("warm", 1, 120)
    );

    let cold = sensor_message("5");
    let deliveries = table.route(&cold);
    assert_eq!(
        (deliveries[0].route, deliveries[0].priority),
        ("all", DEFAULT_PRIORITY)
    );
}

#[test]
fn on_equal_priority_the_first_route_in_the_table_wins() {
    let table = RouteTable::compile([
        spec("first", "FROM /messages/* INTO $upstream", 3, 10),
        spec("second", "FROM /* INTO $UPSTREAM", 3, 20),
    ])
    .unwrap();
    let deliveries = table.route(&Message::new("/messages"));
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        (deliveries[0].route, deliveries[0].time_to_live_secs),
        ("first", 10)
    );
}

#[test]
fn a_message_no_route_matches_gets_no_delivery() {
    let table = RouteTable::compile([spec("m", "FROM /messages/modules/a/* INTO $upstream", 0, 0)])
        .unwrap();
    assert!(
        table
            .route(&Message::new("/messages/modules/b/outputs/o"))
            .is_empty()
    );
    assert!(
        RouteTable::default()
            .route(&Message::new("/messages"))
            .is_empty()
    );
}

#[test]
fn undefined_conditions_do_not_deliver() {
    let table = RouteTable::compile([spec(
        "u",
        "FROM /* WHERE missing = 'x' INTO $upstream",
        0,
        0,
    )])
    .unwrap();
    assert!(table.route(&Message::new("/messages")).is_empty());
}

#[test]
fn one_bad_route_rejects_the_whole_table_and_names_it() {
    let err = RouteTable::compile([
        spec("good", "FROM /* INTO $upstream", 0, 0),
        spec("bad", "FROM /* WHERE temp > 3 INTO $upstream", 0, 0),
    ])
    .unwrap_err();
    assert_eq!(err.name, "bad");
    assert!(
        err.to_string()
            .starts_with("error parsing route 'bad': line 1, column 15"),
        "{err}"
    );
}

#[test]
fn endpoints_are_listed_once() {
    let table = RouteTable::compile([
        spec("a", "FROM /* INTO $upstream", 0, 0),
        spec(
            "b",
            r#"FROM /* INTO BrokeredEndpoint("/modules/m/inputs/i")"#,
            0,
            0,
        ),
        spec(
            "c",
            r#"FROM /* INTO brokeredendpoint("modules/m/inputs/i/")"#,
            0,
            0,
        ),
    ])
    .unwrap();
    assert_eq!(table.endpoints().len(), 2);
    assert_eq!(table.route(&Message::new("/messages")).len(), 2);
}

/// Counts how often routing asks for the body.
struct CountingMessage {
    inner: Message,
    body_reads: Cell<usize>,
}

impl RoutableMessage for CountingMessage {
    fn source(&self) -> &str {
        self.inner.source()
    }

    fn body(&self) -> &[u8] {
        self.body_reads.set(self.body_reads.get() + 1);
        self.inner.body()
    }

    fn application_property(&self, name: &str) -> PropertyValue<'_> {
        self.inner.application_property(name)
    }

    fn system_property(&self, property: SystemProperty<'_>) -> Option<&str> {
        self.inner.system_property(property)
    }
}

#[test]
fn the_body_is_read_and_parsed_once_per_message_however_many_routes_query_it() {
    let specs: Vec<RouteSpec> = (0..100)
        .map(|i| {
            spec(
                &format!("r{i}"),
                &format!(r#"FROM /messages/* WHERE $body.temperature > {i} INTO BrokeredEndpoint("/modules/m{i}/inputs/in")"#),
                0,
                0,
            )
        })
        .collect();
    let table = RouteTable::compile(specs).unwrap();
    let message = CountingMessage {
        inner: sensor_message("50"),
        body_reads: Cell::new(0),
    };
    let deliveries = table.route(&message);
    assert_eq!(deliveries.len(), 50);
    assert_eq!(message.body_reads.get(), 1);

    // A second routing call is a new message context: it reads the body again, once.
    table.route(&message);
    assert_eq!(message.body_reads.get(), 2);
}

#[test]
fn routes_that_do_not_read_the_body_never_read_it() {
    let table =
        RouteTable::compile([spec("p", "FROM /* WHERE alert = 'x' INTO $upstream", 0, 0)]).unwrap();
    let message = CountingMessage {
        inner: Message::new("/messages").with_property("alert", "x"),
        body_reads: Cell::new(0),
    };
    assert_eq!(table.route(&message).len(), 1);
    assert_eq!(message.body_reads.get(), 0);
}

#[test]
fn the_table_is_shared_across_threads_and_swapped_whole() {
    let first = RouteTable::compile([spec("a", "FROM /* INTO $upstream", 0, 0)])
        .unwrap()
        .into_shared();
    let current = std::sync::RwLock::new(Arc::clone(&first));
    let reader = Arc::clone(&first);
    let handle = std::thread::spawn(move || reader.route(&Message::new("/messages")).len());
    *current.write().unwrap() = RouteTable::default().into_shared();
    assert_eq!(
        handle.join().unwrap(),
        1,
        "a reader keeps the table it started with"
    );
    assert!(
        current
            .read()
            .unwrap()
            .route(&Message::new("/messages"))
            .is_empty()
    );
}

#[test]
fn route_into_reuses_the_buffer() {
    let table = RouteTable::compile([spec("a", "FROM /* INTO $upstream", 0, 0)]).unwrap();
    let mut out = Vec::with_capacity(4);
    table.route_into(&Message::new("/messages"), &mut out);
    table.route_into(&Message::new("/messages"), &mut out);
    assert_eq!(out.len(), 1);
}
