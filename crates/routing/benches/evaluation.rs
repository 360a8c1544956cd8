//! Condition evaluation: on application properties, on system properties, and on `$body`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ironedge_routing::{Message, MessageContext, compile_condition};

fn message() -> Message {
    Message::new("/messages/modules/sensor/outputs/out")
        .with_property("alert", "high")
        .with_property("temp", "31.5")
        .with_property("site", "plant-7")
        .with_system_property("connectionModuleId", "sensor")
        .with_json_body(r#"{"temperature":31.5,"machine":{"pressure":1.2,"state":"running"},"ambient":[20.1,20.4]}"#)
}

fn bench_conditions(c: &mut Criterion) {
    let message = message();
    let mut group = c.benchmark_group("condition");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("app_property_equals", "alert = 'high'"),
        (
            "app_property_and_number",
            "alert = 'high' AND as_number(temp) > 30",
        ),
        ("system_property", "$connectionModuleId = 'sensor'"),
        (
            "string_functions",
            "starts_with(lower(site), 'plant') AND length(site) = 7",
        ),
        (
            "missing_property_undefined",
            "missing = 'x' OR alert = 'low'",
        ),
    ];
    for (name, text) in cases {
        let condition = compile_condition(text).unwrap();
        assert!(condition.evaluate(&message).is_true() || name == "missing_property_undefined");
        group.bench_function(name, |b| b.iter(|| condition.evaluate(black_box(&message))));
    }
    group.finish();
}

fn bench_body(c: &mut Criterion) {
    let message = message();
    let mut group = c.benchmark_group("body");
    group.throughput(Throughput::Elements(1));
    let condition =
        compile_condition("$body.temperature > 30 AND $body.machine.state = 'running'").unwrap();
    assert!(condition.evaluate(&message).is_true());
    // A fresh message context per iteration: parses the body every time (first route of a message).
    group.bench_function("query_with_parse", |b| {
        b.iter(|| condition.evaluate(black_box(&message)))
    });
    // One shared context: the body is already parsed (every further route of the same message).
    let context = MessageContext::new(&message);
    condition.evaluate_in(&context);
    group.bench_function("query_parsed_body", |b| {
        b.iter(|| condition.evaluate_in(black_box(&context)))
    });
    group.finish();
}

criterion_group!(benches, bench_conditions, bench_body);
criterion_main!(benches);
