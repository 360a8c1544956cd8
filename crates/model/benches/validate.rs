//! Validation speed: the fixture manifests, and a large generated one (50 modules with split
//! createOptions, 50 routes), from bytes to the typed `Manifest`, and writing it back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ironedge_model::{Manifest, validate};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests/valid")
        .join(name);
    std::fs::read(path).unwrap()
}

/// A manifest with `n` modules (each with ~1.5 KB of createOptions, so split into chunks) and
/// `n` routes with priorities.
fn large(n: usize) -> Vec<u8> {
    let mut modules = serde_json::Map::new();
    let mut routes = serde_json::Map::new();
    for i in 0..n {
        let labels: serde_json::Map<String, Value> = (0..30)
            .map(|l| {
                (
                    format!("com.example.label{l}"),
                    json!(format!("value-{i}-{l}")),
                )
            })
            .collect();
        let options = json!({"Env": ["A=1", "B=2"], "Labels": labels,
            "HostConfig": {"Binds": [format!("/data/m{i}:/data")], "Memory": 268_435_456}});
        let mut settings = serde_json::Map::new();
        settings.insert(
            "image".into(),
            json!(format!("contosoacr.azurecr.io/m{i}:1.0")),
        );
        let text = options.to_string();
        for (k, chunk) in text.as_bytes().chunks(512).enumerate() {
            let key = if k == 0 {
                "createOptions".to_owned()
            } else {
                format!("createOptions{k:02}")
            };
            settings.insert(key, json!(String::from_utf8(chunk.to_vec()).unwrap()));
        }
        modules.insert(
            format!("module{i}"),
            json!({"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
                   "startupOrder": i, "env": {"LEVEL": {"value": "info"}}, "settings": settings}),
        );
        routes.insert(
            format!("r{i}"),
            json!({"route": format!("FROM /messages/modules/module{i}/outputs/* WHERE as_number(temperature) > 20 INTO $upstream"),
                   "priority": i % 10, "timeToLiveSecs": 3600}),
        );
    }
    let doc = json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
                "edgeHub": {"type": "docker", "status": "running", "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5"}}},
            "modules": modules}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": routes,
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}}});
    serde_json::to_vec(&doc).unwrap()
}

fn bench_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    let cases = [
        ("quickstart", fixture("quickstart-temperature-sensor.json")),
        (
            "filter_pipeline",
            fixture("filter-pipeline-with-priorities.json"),
        ),
        ("large_50_modules_50_routes", large(50)),
    ];
    for (name, bytes) in &cases {
        assert!(validate(bytes).is_valid(), "{name}");
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(*name, |b| b.iter(|| validate(black_box(bytes))));
    }
    group.finish();

    let manifest = validate(&cases[2].1).into_result().unwrap();
    c.bench_function("to_value/large_50_modules_50_routes", |b| {
        b.iter(|| black_box(&manifest).to_value())
    });
    let value = manifest.to_value();
    c.bench_function("from_value/large_50_modules_50_routes", |b| {
        b.iter(|| Manifest::from_value(black_box(&value)).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1));
    targets = bench_validate
}
criterion_main!(benches);
