//! Property test: random sequences of append / peek / ack / ack-through / expire / evict /
//! endpoint changes / restarts, run against the store and against a plain in-memory model
//! (BTreeMaps). After every step both must agree on what each endpoint delivers and on every
//! counter; after every restart the store's tables must be consistent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ironedge_store::{
    AppendError, Appended, Config, EndpointStats, ManualClock, NewMessage, Offset, PeekOptions,
    Store, Target, Timestamp,
};
use proptest::prelude::*;

const ENDPOINTS: [&str; 4] = ["iothub", "m1/in", "m2/in", "m3/in"];
const MAX_MESSAGE: usize = 64;

/// A target: endpoint index, priority, TTL in ms.
type TargetSpec = (usize, u32, Option<u64>);

#[derive(Clone, Debug)]
enum Op {
    AddEndpoint(usize),
    RemoveEndpoint(usize),
    Append {
        len: usize,
        targets: Vec<TargetSpec>,
    },
    /// Several appends in one commit: they share a payload blob.
    AppendBatch(Vec<(usize, Vec<TargetSpec>)>),
    Peek(usize, usize),
    AckSome(usize, u16),
    AckThrough(usize, usize),
    Advance(u64),
    Purge,
    Reopen,
}

fn target() -> impl Strategy<Value = TargetSpec> + Clone {
    (
        0..ENDPOINTS.len(),
        0u32..3,
        prop::option::weighted(0.4, 0u64..4_000),
    )
}

fn batch() -> impl Strategy<Value = Op> {
    prop::collection::vec(
        (
            0usize..MAX_MESSAGE + 8,
            prop::collection::vec(target(), 0..4),
        ),
        1..8,
    )
    .prop_map(Op::AppendBatch)
}

/// Mostly batches and acknowledgements: blobs left partly live, which compaction rewrites.
fn compaction_op() -> impl Strategy<Value = Op> {
    let endpoint = 0..ENDPOINTS.len();
    prop_oneof![
        1 => endpoint.clone().prop_map(Op::AddEndpoint),
        10 => batch(),
        2 => (endpoint.clone(), 1usize..8).prop_map(|(e, n)| Op::Peek(e, n)),
        6 => (endpoint.clone(), any::<u16>()).prop_map(|(e, m)| Op::AckSome(e, m)),
        3 => (endpoint.clone(), 0usize..6).prop_map(|(e, k)| Op::AckThrough(e, k)),
        2 => (0u64..3_000).prop_map(Op::Advance),
        1 => Just(Op::Reopen),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let endpoint = 0..ENDPOINTS.len();
    let target = target();
    prop_oneof![
        2 => endpoint.clone().prop_map(Op::AddEndpoint),
        1 => endpoint.clone().prop_map(Op::RemoveEndpoint),
        10 => (0usize..MAX_MESSAGE + 8, prop::collection::vec(target.clone(), 0..4))
            .prop_map(|(len, targets)| Op::Append { len, targets }),
        4 => batch(),
        3 => (endpoint.clone(), 1usize..8).prop_map(|(e, n)| Op::Peek(e, n)),
        3 => (endpoint.clone(), any::<u16>()).prop_map(|(e, m)| Op::AckSome(e, m)),
        2 => (endpoint.clone(), 0usize..6).prop_map(|(e, k)| Op::AckThrough(e, k)),
        2 => (0u64..3_000).prop_map(Op::Advance),
        1 => Just(Op::Purge),
        1 => Just(Op::Reopen),
    ]
}

/// One reference in the model: expiry (ms) and payload size.
#[derive(Clone, Copy, Debug)]
struct Ref {
    expires_at: u64,
}

#[derive(Debug, Default)]
struct ModelEndpoint {
    queue: BTreeMap<(u32, u64), Ref>,
    stats: EndpointStats,
}

#[derive(Debug, Default)]
struct Model {
    now: u64,
    quota: Option<u64>,
    next_seq: u64,
    endpoints: BTreeMap<&'static str, ModelEndpoint>,
    messages: BTreeMap<u64, (Vec<u8>, BTreeSet<&'static str>)>,
    bytes: u64,
    evicted_messages: u64,
}

enum Removal {
    Acked,
    Expired,
    Evicted,
    Dropped,
}

impl Model {
    fn remove_ref(&mut self, endpoint: &'static str, key: (u32, u64), why: Removal) -> bool {
        let Some(e) = self.endpoints.get_mut(endpoint) else {
            return false;
        };
        if e.queue.remove(&key).is_none() {
            return false;
        }
        let (payload, holders) = self.messages.get_mut(&key.1).unwrap();
        let size = payload.len() as u64;
        match why {
            Removal::Acked => e.stats.acked_total += 1,
            Removal::Expired => e.stats.expired_total += 1,
            Removal::Evicted => e.stats.evicted_total += 1,
            Removal::Dropped => {}
        }
        e.stats.len -= 1;
        e.stats.bytes -= size;
        holders.remove(endpoint);
        if holders.is_empty() {
            self.messages.remove(&key.1);
            self.bytes -= size;
        }
        true
    }

    /// Every write first removes what has expired.
    fn sweep(&mut self) {
        let now = self.now;
        let expired: Vec<_> = self
            .endpoints
            .iter()
            .flat_map(|(name, e)| {
                e.queue
                    .iter()
                    .filter(|(_, r)| r.expires_at <= now)
                    .map(|(k, _)| (*name, *k))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (name, key) in expired {
            self.remove_ref(name, key, Removal::Expired);
        }
    }

    fn live(&self, endpoint: &str) -> Option<Vec<((u32, u64), Ref)>> {
        let e = self.endpoints.get(endpoint)?;
        Some(
            e.queue
                .iter()
                .filter(|(_, r)| r.expires_at > self.now)
                .map(|(k, r)| (*k, *r))
                .collect(),
        )
    }

    fn append(
        &mut self,
        payload: Vec<u8>,
        targets: &[(usize, u32, Option<u64>)],
    ) -> Result<u64, &'static str> {
        self.sweep();
        self.append_unswept(payload, targets)
    }

    /// An append inside a commit that already swept: what expired since (a TTL of 0 appended
    /// earlier in the same commit) stays until the next commit.
    fn append_unswept(
        &mut self,
        payload: Vec<u8>,
        targets: &[(usize, u32, Option<u64>)],
    ) -> Result<u64, &'static str> {
        if payload.len() > MAX_MESSAGE {
            return Err("too large");
        }
        if targets.is_empty() {
            return Err("no targets");
        }
        let mut merged: BTreeMap<&'static str, (u32, u64)> = BTreeMap::new();
        for &(e, priority, ttl) in targets {
            let name = ENDPOINTS[e];
            if !self.endpoints.contains_key(name) {
                return Err("unknown endpoint");
            }
            let expires = ttl.map_or(u64::MAX, |ttl| (self.now + ttl).min(u64::MAX - 1));
            merged
                .entry(name)
                .and_modify(|(p, x)| {
                    *p = (*p).min(priority);
                    *x = (*x).max(expires);
                })
                .or_insert((priority, expires));
        }
        let size = payload.len() as u64;
        if let Some(quota) = self.quota {
            if size > quota {
                return Err("quota exceeded");
            }
            while self.bytes + size > quota {
                let (&oldest, (_, holders)) = self.messages.iter().next().unwrap();
                let holders: Vec<_> = holders.iter().copied().collect();
                for name in holders {
                    let key = *self.endpoints[name]
                        .queue
                        .keys()
                        .find(|(_, s)| *s == oldest)
                        .unwrap();
                    self.remove_ref(name, key, Removal::Evicted);
                }
                self.evicted_messages += 1;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        for (name, (priority, expires_at)) in &merged {
            let e = self.endpoints.get_mut(name).unwrap();
            e.queue.insert(
                (*priority, seq),
                Ref {
                    expires_at: *expires_at,
                },
            );
            e.stats.len += 1;
            e.stats.bytes += size;
            e.stats.appended_total += 1;
        }
        self.messages
            .insert(seq, (payload, merged.keys().copied().collect()));
        self.bytes += size;
        Ok(seq)
    }

    fn stats(&self) -> (u64, u64, u64, BTreeMap<String, EndpointStats>) {
        (
            self.messages.len() as u64,
            self.bytes,
            self.evicted_messages,
            self.endpoints
                .iter()
                .map(|(k, e)| ((*k).to_owned(), e.stats))
                .collect(),
        )
    }
}

struct Harness {
    dir: tempfile::TempDir,
    clock: ManualClock,
    config: Config,
    store: Option<Store>,
    model: Model,
}

impl Harness {
    fn new(quota: Option<u64>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_millis(1_000_000));
        let config = Config {
            quota_bytes: quota,
            max_message_bytes: MAX_MESSAGE,
            max_expired_per_commit: usize::MAX,
            // Compaction after two quiet commits, so these short runs reach it often.
            compact_after_commits: 2,
            // Payloads up to 16 bytes inline, larger ones in blobs: both kinds in every run.
            inline_payload_max: 16,
            ..Config::default()
        };
        let store = Store::open(
            dir.path().join("s.redb"),
            config.clone(),
            Arc::new(clock.clone()),
        )
        .unwrap();
        let first_seq = 1;
        Self {
            dir,
            clock,
            config,
            store: Some(store),
            model: Model {
                now: 1_000_000,
                quota,
                next_seq: first_seq,
                ..Model::default()
            },
        }
    }

    fn store(&mut self) -> &mut Store {
        self.store.as_mut().unwrap()
    }

    fn peek(&mut self, endpoint: &str, n: usize) -> Vec<(Offset, Vec<u8>, Option<Timestamp>)> {
        let got = self.store().reader().peek(endpoint, PeekOptions::head(n));
        let want = self.model.live(endpoint);
        let Some(want) = want else {
            assert!(
                got.is_err(),
                "peek of unknown endpoint {endpoint} must fail"
            );
            return Vec::new();
        };
        let got: Vec<_> = got
            .unwrap()
            .deliveries
            .into_iter()
            .map(|d| (d.offset, d.payload.to_vec(), d.expires_at))
            .collect();
        let want: Vec<_> = want
            .into_iter()
            .take(n)
            .map(|((p, s), r)| {
                let expiry =
                    (r.expires_at != u64::MAX).then_some(Timestamp::from_unix_millis(r.expires_at));
                (Offset::new(p, s), self.model.messages[&s].0.clone(), expiry)
            })
            .collect();
        assert_eq!(got, want, "deliveries of {endpoint}");
        got
    }

    fn step(&mut self, op: &Op, step: usize) {
        match op {
            Op::AddEndpoint(e) => {
                let name = ENDPOINTS[*e];
                let added = self.store().add_endpoint(name).unwrap();
                self.model.sweep();
                let model_added = !self.model.endpoints.contains_key(name);
                self.model.endpoints.entry(name).or_default();
                assert_eq!(added, model_added);
            }
            Op::RemoveEndpoint(e) => {
                let name = ENDPOINTS[*e];
                let removed = self.store().remove_endpoint(name).unwrap();
                self.model.sweep();
                let keys: Vec<_> = self
                    .model
                    .endpoints
                    .get(name)
                    .map(|e| e.queue.keys().copied().collect())
                    .unwrap_or_default();
                for key in keys {
                    self.model.remove_ref(name, key, Removal::Dropped);
                }
                assert_eq!(removed, self.model.endpoints.remove(name).is_some());
            }
            Op::Append { len, targets } => {
                let (payload, message) = new_message(*len, targets, step);
                let got = self.store().append(&message);
                let want = self.model.append(payload, targets);
                check_append(got, want);
            }
            Op::AppendBatch(batch) => {
                let messages: Vec<_> = batch
                    .iter()
                    .enumerate()
                    .map(|(i, (len, targets))| new_message(*len, targets, step * 8 + i))
                    .collect();
                let got = self
                    .store()
                    .write(|tx| {
                        let appended: Vec<_> = messages.iter().map(|(_, m)| tx.append(m)).collect();
                        appended
                    })
                    .unwrap();
                // The commit sweeps once, before its appends.
                self.model.sweep();
                for ((payload, _), ((_, targets), got)) in
                    messages.into_iter().zip(batch.iter().zip(got))
                {
                    let want = self.model.append_unswept(payload, targets);
                    check_append(got, want);
                }
            }
            Op::Peek(e, n) => {
                self.peek(ENDPOINTS[*e], *n);
            }
            Op::AckSome(e, mask) => {
                let name = ENDPOINTS[*e];
                let peeked = self.peek(name, 16);
                let chosen: Vec<Offset> = peeked
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, d)| d.0)
                    .collect();
                let got = self.store().ack(name, &chosen);
                self.model.sweep();
                if !self.model.endpoints.contains_key(name) {
                    assert!(got.is_err());
                    return;
                }
                let mut acked = 0;
                for o in &chosen {
                    if self
                        .model
                        .remove_ref(name, (o.priority, o.seq), Removal::Acked)
                    {
                        acked += 1;
                    }
                }
                assert_eq!(got.unwrap(), acked);
            }
            Op::AckThrough(e, k) => {
                let name = ENDPOINTS[*e];
                let peeked = self.peek(name, 8);
                let Some((through, _, _)) = peeked.get(*k).cloned() else {
                    return;
                };
                let got = self.store().ack_through(name, through).unwrap();
                self.model.sweep();
                let keys: Vec<_> = self.model.endpoints[name]
                    .queue
                    .keys()
                    .filter(|(p, s)| *p == through.priority && *s <= through.seq)
                    .copied()
                    .collect();
                for key in &keys {
                    self.model.remove_ref(name, *key, Removal::Acked);
                }
                assert_eq!(got, keys.len() as u64);
            }
            Op::Advance(ms) => {
                self.clock.advance(Duration::from_millis(*ms));
                self.model.now += ms;
            }
            Op::Purge => {
                let before: u64 = self
                    .model
                    .endpoints
                    .values()
                    .map(|e| e.stats.expired_total)
                    .sum();
                let got = self.store().purge_expired().unwrap();
                self.model.sweep();
                let after: u64 = self
                    .model
                    .endpoints
                    .values()
                    .map(|e| e.stats.expired_total)
                    .sum();
                assert_eq!(got, after - before);
            }
            Op::Reopen => {
                drop(self.store.take());
                let store = Store::open(
                    self.dir.path().join("s.redb"),
                    self.config.clone(),
                    Arc::new(self.clock.clone()),
                )
                .unwrap();
                store.verify().unwrap();
                self.store = Some(store);
            }
        }
        let stats = self.store().stats();
        let (messages, bytes, evicted, endpoints) = self.model.stats();
        assert_eq!(
            (
                stats.messages,
                stats.bytes,
                stats.evicted_messages_total,
                &stats.endpoints
            ),
            (messages, bytes, evicted, &endpoints),
            "counters after {op:?}"
        );
    }
}

/// A message of `len` bytes (a pattern that differs per `salt`) to `targets`.
fn new_message(len: usize, targets: &[TargetSpec], salt: usize) -> (Vec<u8>, NewMessage) {
    let payload: Vec<u8> = (0..len).map(|i| (salt + i) as u8).collect();
    let targets = targets
        .iter()
        .map(|&(e, priority, ttl)| {
            let t = Target::new(ENDPOINTS[e]).with_priority(priority);
            match ttl {
                Some(ms) => t.with_ttl(Duration::from_millis(ms)),
                None => t,
            }
        })
        .collect();
    (payload.clone(), NewMessage::new(payload, targets))
}

fn check_append(got: Result<Appended, AppendError>, want: Result<u64, &str>) {
    match (got, want) {
        (Ok(a), Ok(seq)) => assert_eq!(a.seq, seq),
        (Err(AppendError::MessageTooLarge { .. }), Err("too large"))
        | (Err(AppendError::NoTargets), Err("no targets"))
        | (Err(AppendError::UnknownEndpoint { .. }), Err("unknown endpoint"))
        | (Err(AppendError::QuotaExceeded { .. }), Err("quota exceeded")) => {}
        (got, want) => panic!("append: store {got:?}, model {want:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_behaves_like_the_in_memory_model(
        quota in prop::option::of(64u64..400),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(quota, &ops);
    }

    #[test]
    fn compaction_keeps_the_store_like_the_in_memory_model(
        ops in prop::collection::vec(compaction_op(), 1..150),
    ) {
        run(None, &ops);
    }
}

fn run(quota: Option<u64>, ops: &[Op]) {
    let mut h = Harness::new(quota);
    for (step, op) in ops.iter().enumerate() {
        h.step(op, step);
    }
    h.store().verify().unwrap();
    assert_eq!(h.store().reader().stats().unwrap(), h.store().stats());
}
