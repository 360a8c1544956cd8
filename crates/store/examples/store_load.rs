//! Load tool: group-commit append throughput and replay (read + ack) rate of the store, printed
//! as a table. Run in release mode:
//!
//! ```sh
//! cargo run --release -p ironedge-store --example store_load -- [--seconds 3] [--replay 200000] [--dir PATH]
//! ```
//!
//! Appends: N tokio tasks each append one message at a time and wait for its durable commit
//! (as a broker connection waits before PUBACK), for 256 B and 4 KiB payloads.
//! Replay: an endpoint pre-filled with messages is drained by peek + ack batches.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ironedge_store::{Config, NewMessage, PeekOptions, Store, StoreHandle, SystemClock, Target};

struct Args {
    seconds: f64,
    replay: u64,
    dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        seconds: 3.0,
        replay: 200_000,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--seconds" => args.seconds = value.parse().expect("--seconds takes a number"),
            "--replay" => args.replay = value.parse().expect("--replay takes a count"),
            "--dir" => args.dir = Some(PathBuf::from(value)),
            other => panic!("unknown flag {other}; flags: --seconds N --replay N --dir PATH"),
        }
    }
    args
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

async fn appends(dir: &std::path::Path, appenders: usize, size: usize, seconds: f64) {
    let path = dir.join(format!("append-{appenders}-{size}.redb"));
    let _ = std::fs::remove_file(&path);
    let store = StoreHandle::open(&path, Config::default(), Arc::new(SystemClock)).unwrap();
    store.add_endpoint("upstream").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let payload = bytes::Bytes::from(vec![0x5a; size]);
    let started = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|_| {
            let (store, stop, count, payload) =
                (store.clone(), stop.clone(), count.clone(), payload.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let message = NewMessage::new(payload.clone(), vec![Target::new("upstream")]);
                    let t = Instant::now();
                    store.append(message).await.unwrap();
                    latencies.push(t.elapsed());
                    count.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let n = count.load(Ordering::Relaxed);
    let writer = store.writer_stats();
    println!(
        "append  {appenders:>3} appenders {size:>5} B  {:>9.0} msg/s  {:>7.1} MiB/s  commits/s {:>6.0}  avg batch {:>6.1}  p50 {:>8.2?}  p99 {:>8.2?}",
        n as f64 / elapsed,
        (n as f64 * size as f64) / elapsed / (1024.0 * 1024.0),
        writer.commits_total as f64 / elapsed,
        writer.operations_total as f64 / writer.batches_total.max(1) as f64,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
    store.close().await.unwrap();
}

async fn replay(dir: &std::path::Path, total: u64, size: usize, batch: usize) {
    let path = dir.join(format!("replay-{size}.redb"));
    let _ = std::fs::remove_file(&path);
    {
        // Fill in large transactions: the fill is not what is measured.
        let mut store = Store::open(&path, Config::default(), Arc::new(SystemClock)).unwrap();
        store.add_endpoint("upstream").unwrap();
        let payload = bytes::Bytes::from(vec![0x5a; size]);
        let mut left = total;
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
    let store = StoreHandle::open(&path, Config::default(), Arc::new(SystemClock)).unwrap();
    let started = Instant::now();
    let mut replayed = 0u64;
    loop {
        let peeked = store
            .peek("upstream", PeekOptions::head(batch))
            .await
            .unwrap();
        let Some(last) = peeked.deliveries.last() else {
            break;
        };
        replayed += peeked.deliveries.len() as u64;
        store.ack_through("upstream", last.offset).await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(replayed, total);
    println!(
        "replay  {total} msgs {size:>5} B, batches of {batch:>4}  {:>9.0} msg/s  {:>7.1} MiB/s",
        total as f64 / elapsed,
        (total as f64 * size as f64) / elapsed / (1024.0 * 1024.0),
    );
    store.close().await.unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let tmp = tempfile::tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir)).unwrap();
    println!(
        "ironedge-store load: {} s per append run, files in {} (fsync per commit)",
        args.seconds,
        tmp.path().display()
    );
    for size in [256, 4096] {
        for appenders in [1, 16, 64] {
            appends(tmp.path(), appenders, size, args.seconds).await;
        }
    }
    for (size, batch) in [(256, 500), (4096, 500)] {
        replay(tmp.path(), args.replay, size, batch).await;
    }
}
