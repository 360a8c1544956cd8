//! Start-up order: the edge hub accepts modules only once its routes are known, so a message
//! published right after a restart is routed by the real routes instead of being acknowledged
//! and dropped by an empty table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use ironedge_edgehub::config_source::ConfigSource;
use serde_json::json;
use support::{EdgeHub, EdgeHubSpec, Module, RawModule, dropped};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn modules_are_accepted_only_once_the_routes_are_known_so_no_message_is_dropped_unrouted() {
    let sender = Module::new("sender");
    let receiver = Module::new("receiver");
    let routes_dir = tempfile::tempdir().unwrap();
    let routes = routes_dir.path().join("routes.json");
    let hub = EdgeHub::start_with_source(
        EdgeHubSpec {
            modules: vec![sender.clone(), receiver.clone()],
            routes: json!({}),
            upstream: None,
            registry: None,
        },
        // The file does not exist yet: no configuration is in force.
        ConfigSource::File(routes.clone()),
    )
    .await;
    assert!(!*hub.hub.configured().borrow());

    let mut connecting = Box::pin(async {
        let mut module = RawModule::connect(&hub, &sender).await;
        module.send(&sender, "out", "first").await;
        module
    });
    // Not accepted while the routes are unknown (an early CONNACK would come at once).
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut connecting)
            .await
            .is_err(),
        "the edge hub accepted a module before it had routes"
    );

    std::fs::write(
        &routes,
        json!({"routes": {"r": "FROM /messages/modules/sender/outputs/out INTO BrokeredEndpoint(\"/modules/receiver/inputs/in\")"}})
            .to_string(),
    )
    .unwrap();
    let _sender = connecting.await;
    assert!(*hub.hub.configured().borrow());
    assert_eq!(dropped(&hub.hub, "no_route"), 0);

    let mut rx = RawModule::connect(&hub, &receiver).await;
    rx.subscribe_inputs(&receiver).await;
    let (topic, body) = rx.receive().await;
    assert!(topic.contains("/modules/receiver/inputs/in/"), "{topic}");
    assert_eq!(body, "first");
    hub.stop().await;
}
