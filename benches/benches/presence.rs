//! Presence at 1k / 10k / 100k members in one room.
//!
//! * `presence/track_untrack`: diff generation for one member joining and leaving a room.
//! * `presence/merge_delta`: a replica merging a peer's delta of 100 changes into a room.
//! * `presence/merge_full_extract`: a new replica merging a peer's whole room (transfer_ack).
//! * `presence/coalesce_100_diffs`: folding 100 successive diffs into one presence_diff.
//! * `presence/join_in_room`: the cost of a join: track + O(1) snapshot + render of the
//!   joiner's `presence_state` (the render runs in the joiner's task, not the shard's).
//!
//! Run: `cargo bench -p benches --bench presence`.

use std::sync::Arc;

use broker::presence::{render, KeyEntry, Snapshot};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::{json, Map, Value};
use tracker::{Diff, OwnerId, ReplicaRef, State};

const TOPIC: &str = "room:big";

fn meta(i: usize) -> Map<String, Value> {
    json!({"online_at": "1700000000", "name": format!("user {i}")}).as_object().unwrap().clone()
}

fn room(n: usize) -> (State, Snapshot) {
    let r = ReplicaRef::new("a", 1);
    let mut s = State::new(r.clone());
    let mut view = Snapshot::new();
    for i in 0..n {
        let owner = OwnerId::for_replica(&r, i as u64);
        let (_, diff) = s.track(TOPIC, &owner, &format!("u{i}"), meta(i)).unwrap();
        for (k, metas) in diff.joins {
            view.insert(k, Arc::new(KeyEntry::new(metas)));
        }
    }
    let _ = s.take_delta();
    (s, view)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("presence");
    g.sample_size(20);
    for n in [1_000usize, 10_000, 100_000] {
        let (mut s, view) = room(n);
        let r = s.replica().clone();
        let joiner = OwnerId::for_replica(&r, 1 << 40);
        g.bench_with_input(BenchmarkId::new("track_untrack", n), &n, |b, _| {
            b.iter(|| {
                let (_, d1) = s.track(TOPIC, &joiner, "joiner", meta(0)).unwrap();
                let d2 = s.untrack(TOPIC, &joiner, "joiner");
                let _ = s.take_delta();
                (d1, d2)
            })
        });

        g.bench_with_input(BenchmarkId::new("join_in_room", n), &n, |b, _| {
            b.iter(|| {
                let (_, diff) = s.track(TOPIC, &joiner, "joiner", meta(0)).unwrap();
                let mut snap = view.clone();
                for (k, metas) in diff.joins {
                    snap.insert(k, Arc::new(KeyEntry::new(metas)));
                }
                let state = render(TOPIC, &snap, None);
                s.untrack(TOPIC, &joiner, "joiner");
                let _ = s.take_delta();
                state.len()
            })
        });

        // A peer that knows the room receives a delta of 100 joins.
        let peer_ref = ReplicaRef::new("b", 1);
        let mut peer = State::new(peer_ref.clone());
        peer.handle_heartbeat(&r, 0);
        peer.merge(&s.full_extract());
        let mut src = s.clone();
        for i in 0..100u64 {
            src.track(TOPIC, &OwnerId::for_replica(&r, (1 << 41) + i), &format!("d{i}"), meta(0)).unwrap();
        }
        let delta = src.take_delta().unwrap();
        g.bench_with_input(BenchmarkId::new("merge_delta", n), &n, |b, _| {
            // Return the state so that dropping 100k elements is not timed.
            b.iter_batched(
                || peer.clone(),
                |mut p| {
                    let d = p.merge(&delta);
                    (p, d)
                },
                criterion::BatchSize::LargeInput,
            )
        });

        let extract = s.full_extract();
        g.bench_with_input(BenchmarkId::new("merge_full_extract", n), &n, |b, _| {
            b.iter_batched(
                || {
                    let mut p = State::new(peer_ref.clone());
                    p.handle_heartbeat(&r, 0);
                    p
                },
                |mut p| {
                    let d = p.merge(&extract);
                    (p, d)
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }

    let diffs: Vec<Diff> = (0..100)
        .map(|i| {
            let mut d = Diff::new();
            d.add_join(&format!("u{}", i % 30), meta(i).into_iter().chain([("phx_ref".to_string(), json!(format!("r{i}")))]).collect());
            if i > 0 {
                d.add_leave(&format!("u{}", (i - 1) % 30), json!({"phx_ref": format!("r{}", i - 1)}).as_object().unwrap().clone());
            }
            d
        })
        .collect();
    g.bench_function("coalesce_100_diffs", |b| {
        b.iter_batched(
            || diffs.clone(),
            |ds| ds.into_iter().reduce(|a, b| a.merge(b)),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
