//! Routing one message through route tables of 1, 10 and 100 routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ironedge_routing::{Message, RouteSpec, RouteTable};

fn message() -> Message {
    Message::new("/messages/modules/sensor/outputs/out")
        .with_property("alert", "high")
        .with_property("temp", "31.5")
        .with_system_property("connectionModuleId", "sensor")
        .with_json_body(r#"{"temperature":31.5,"machine":{"state":"running"}}"#)
}

/// `n` routes to distinct module inputs; a quarter match. Half read application properties,
/// half the body, a realistic mix of sources.
fn table(n: usize, body: bool) -> RouteTable {
    let specs = (0..n).map(|i| {
        let source = match i % 3 {
            0 => "/messages/*".to_owned(),
            1 => "/messages/modules/sensor/*".to_owned(),
            _ => format!("/messages/modules/other{i}/*"),
        };
        let threshold = if i % 4 == 0 { 10 } else { 50 };
        let condition = if body && i % 2 == 0 {
            format!("$body.temperature > {threshold} AND $body.machine.state = 'running'")
        } else {
            format!("alert = 'high' AND as_number(temp) > {threshold}")
        };
        RouteSpec::new(
            format!("r{i}"),
            format!(r#"FROM {source} WHERE {condition} INTO BrokeredEndpoint("/modules/m{i}/inputs/in")"#),
        )
    });
    RouteTable::compile(specs).unwrap()
}

fn bench_routing(c: &mut Criterion) {
    let message = message();
    let mut group = c.benchmark_group("route_message");
    group.throughput(Throughput::Elements(1));
    for body in [false, true] {
        for n in [1, 10, 100] {
            let table = table(n, body);
            let label = if body {
                "properties_and_body"
            } else {
                "properties"
            };
            let mut out = Vec::with_capacity(n);
            group.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                b.iter(|| {
                    table.route_into(black_box(&message), &mut out);
                    out.len()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
