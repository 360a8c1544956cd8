//! Group-commit append throughput: N concurrent appenders (as broker connections waiting for
//! PUBACK), each appending one message at a time and waiting for its durable commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ironedge_store::{Config, NewMessage, StoreHandle, SystemClock, Target};

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("append_group_commit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for size in [256usize, 4096] {
        for appenders in [1u64, 16, 64] {
            let dir = tempfile::tempdir().unwrap();
            let store = runtime.block_on(async {
                let store = StoreHandle::open(
                    dir.path().join("bench.redb"),
                    Config::default(),
                    Arc::new(SystemClock),
                )
                .unwrap();
                store.add_endpoint("upstream").await.unwrap();
                store
            });
            let payload = bytes::Bytes::from(vec![0x5a; size]);
            group.throughput(Throughput::Elements(1));
            group.bench_function(BenchmarkId::new(format!("{size}B"), appenders), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let per_task = iters.div_ceil(appenders);
                        let started = Instant::now();
                        let tasks: Vec<_> = (0..appenders)
                            .map(|_| {
                                let (store, payload) = (store.clone(), payload.clone());
                                tokio::spawn(async move {
                                    for _ in 0..per_task {
                                        let targets = vec![Target::new("upstream")];
                                        store
                                            .append(NewMessage::new(payload.clone(), targets))
                                            .await
                                            .unwrap();
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.unwrap();
                        }
                        // Scale to the requested count (per_task rounds up).
                        started
                            .elapsed()
                            .mul_f64(iters as f64 / (per_task * appenders) as f64)
                    })
                });
            });
            runtime.block_on(store.close()).unwrap();
        }
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
