//! Replay rate after an outage: an endpoint holding a backlog is drained by peek + ack batches
//! through the async handle, as the edge hub's upstream pump does when the link returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ironedge_store::{Config, NewMessage, PeekOptions, Store, StoreHandle, SystemClock, Target};

const BATCH: usize = 500;
/// Smallest backlog drained per sample, so a sample is a replay and not one fsync.
const MIN_BACKLOG: u64 = 50_000;

fn fill(path: &std::path::Path, count: u64, size: usize) {
    let mut store = Store::open(path, Config::default(), Arc::new(SystemClock)).unwrap();
    store.add_endpoint("upstream").unwrap();
    let payload = bytes::Bytes::from(vec![0x5a; size]);
    let mut left = count;
    while left > 0 {
        let chunk = left.min(10_000);
        store
            .write(|tx| {
                for _ in 0..chunk {
                    let targets = vec![Target::new("upstream")];
                    tx.append(&NewMessage::new(payload.clone(), targets))
                        .unwrap();
                }
            })
            .unwrap();
        left -= chunk;
    }
}

fn replay(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("replay_peek_ack");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    for size in [256usize, 4096] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new(format!("{size}B"), BATCH), |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("bench.redb");
                let backlog = iters.max(MIN_BACKLOG);
                fill(&path, backlog, size);
                runtime.block_on(async {
                    let store =
                        StoreHandle::open(&path, Config::default(), Arc::new(SystemClock)).unwrap();
                    let started = Instant::now();
                    loop {
                        let batch = store
                            .peek("upstream", PeekOptions::head(BATCH))
                            .await
                            .unwrap();
                        let Some(last) = batch.deliveries.last() else {
                            break;
                        };
                        store.ack_through("upstream", last.offset).await.unwrap();
                    }
                    let elapsed = started.elapsed();
                    store.close().await.unwrap();
                    elapsed.mul_f64(iters as f64 / backlog as f64)
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
