//! What one reporting round costs: building the `$edgeAgent` reported properties of a device with
//! many modules from its manifest and EdgeDeployment status, and the diff against the previous
//! report (one module changed), which is all that is sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ironedge_agent::reported::{self, Inputs, LastDesired, Platform};
use ironedge_controller::crd::{EdgeDeploymentStatus, ModuleStatus, RuntimeStatus};
use serde_json::{Map, Value, json};

fn manifest(modules: usize) -> ironedge_model::Manifest {
    let mut user = Map::new();
    for i in 0..modules {
        user.insert(
            format!("module{i}"),
            json!({"type": "docker", "status": "running", "restartPolicy": "always", "version": "1.0",
                   "env": {"LEVEL": {"value": "3"}},
                   "settings": {"image": format!("example.com/m{i}:1.0"),
                                "createOptions": "{\"HostConfig\":{\"Privileged\":false}}"}}),
        );
    }
    let doc = json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {"edgeAgent": {"type": "docker", "settings": {"image": "agent:1"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always", "settings": {"image": "hub:1"}}},
            "modules": Value::Object(user)}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {},
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}}});
    ironedge_model::Manifest::from_value(&doc).unwrap()
}

fn status(modules: usize, crashed: Option<usize>) -> EdgeDeploymentStatus {
    EdgeDeploymentStatus {
        modules: (0..modules)
            .map(|i| ModuleStatus {
                name: format!("module{i}"),
                runtime_status: if Some(i) == crashed {
                    RuntimeStatus::Backoff
                } else {
                    RuntimeStatus::Running
                },
                description: Some("started at 2026-01-01T00:00:00Z".into()),
                exit_code: (Some(i) == crashed).then_some(3),
                restart_count: i32::from(Some(i) == crashed),
                last_start_time: Some("2026-01-01T00:00:00Z".into()),
                last_exit_time: None,
                unsupported: vec![],
            })
            .collect(),
        ..EdgeDeploymentStatus::default()
    }
}

fn bench(c: &mut Criterion) {
    let platform = Platform {
        os: "linux".into(),
        architecture: "x86_64".into(),
        version: "v1.20.2".into(),
    };
    let last = LastDesired {
        version: 7,
        code: 200,
        description: String::new(),
    };
    let mut group = c.benchmark_group("reporting");
    for modules in [10, 50, 200] {
        let manifest = manifest(modules);
        let (healthy, crashed) = (status(modules, None), status(modules, Some(modules / 2)));
        let inputs = |s| Inputs {
            agent_version: "0.1.0",
            platform: &platform,
            last_desired: Some(&last),
            manifest: Some(&manifest),
            status: Some(s),
            agent_started: "2026-01-01T00:00:00Z",
        };
        group.bench_with_input(BenchmarkId::new("build", modules), &modules, |b, _| {
            b.iter(|| reported::edge_agent(inputs(&healthy)));
        });
        let before = reported::edge_agent(inputs(&healthy));
        let after = reported::edge_agent(inputs(&crashed));
        let patch = reported::diff(&before, &after).unwrap();
        eprintln!(
            "{modules} modules: full report {} bytes, patch for one crashed module {} bytes",
            before.to_string().len(),
            patch.to_string().len()
        );
        group.bench_with_input(BenchmarkId::new("diff", modules), &modules, |b, _| {
            b.iter(|| reported::diff(&before, &after));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
