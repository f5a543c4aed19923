//! Encode + fan-out of one broadcast to 1 / 1k / 100k in-memory subscribers.
//!
//! * `fanout/shared_frame`: the broker's path (`pubsub::dispatch`): one encode per serializer,
//!   then a refcount and a queue push per subscriber.
//! * `fanout/naive_encode_each`: the baseline it replaces: serialize the message for every
//!   subscriber.
//!
//! After the timed runs it prints the allocations per dispatch measured with a counting
//! allocator (expected: the broadcast's own, once, whatever the number of subscribers; none per
//! delivery). `scripts/criterion.sh` keeps those lines in
//! `bench-results/criterion/fanout-allocations.json`.
//!
//! Run: `cargo bench -p benches --bench fanout`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{allocations, CountingAlloc, Subscribers};
use broker::pubsub::{dispatch, Broadcast};
use broker::protocol::{encode_broadcast, Payload, Serializer};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn payload() -> Payload {
    Payload::Json(Bytes::from_static(br#"{"body":"hello, world","user":"alice","ts":1700000000000,"seq":42}"#))
}

fn bench_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for n in [1usize, 1_000, 100_000] {
        let mut subs = Subscribers::new(n);
        group.throughput(Throughput::Elements(n as u64));
        if n >= 100_000 {
            group.sample_size(20);
        } else {
            group.sample_size(50);
        }
        group.bench_with_input(BenchmarkId::new("shared_frame", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let msg = Arc::new(Broadcast::new("room:lobby", "new_msg", payload()));
                    dispatch(&msg, None, &subs.subs);
                    total += start.elapsed();
                    subs.drain();
                }
                total
            })
        });
        group.bench_with_input(BenchmarkId::new("naive_encode_each", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let p = payload();
                    for o in &subs.outboxes {
                        let f = encode_broadcast(Serializer::V2, "room:lobby", "new_msg", &p).unwrap();
                        let _ = o.push(f);
                    }
                    total += start.elapsed();
                    subs.drain();
                }
                total
            })
        });
    }
    group.finish();

    // Allocations per delivery, in steady state (queues already have capacity).
    for n in [1usize, 1_000, 100_000] {
        let mut subs = Subscribers::new(n);
        for _ in 0..3 {
            dispatch(&Arc::new(Broadcast::new("room:lobby", "new_msg", payload())), None, &subs.subs);
            subs.drain();
        }
        let msg = Arc::new(Broadcast::new("room:lobby", "new_msg", payload()));
        let before = allocations();
        let delivered = dispatch(&msg, None, &subs.subs);
        let allocs = allocations() - before;
        subs.drain();
        println!(
            "allocations: dispatch to {n} subscribers delivered {delivered} frames with {allocs} allocations ({:.4} per delivery; the broadcast's one encode included)",
            allocs as f64 / delivered as f64
        );
    }
}

criterion_group!(benches, bench_fanout);
criterion_main!(benches);
