//! Fan-out allocates nothing per delivery: dispatching one broadcast to N subscribers makes the
//! same (small, constant) number of allocations for N = 10 and N = 10 000 — the one encode of
//! the frame and its fan-out clock — not one per subscriber.

use std::sync::Arc;

use benches::{allocations, CountingAlloc, Subscribers};
use broker::pubsub::{dispatch, Broadcast};
use broker::protocol::Payload;
use bytes::Bytes;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocs_for(n: usize) -> (u64, u64) {
    let mut subs = Subscribers::new(n);
    let payload = || Payload::Json(Bytes::from_static(br#"{"body":"hi"}"#));
    for _ in 0..3 {
        dispatch(&Arc::new(Broadcast::new("t", "e", payload())), None, &subs.subs);
        subs.drain();
    }
    let msg = Arc::new(Broadcast::new("t", "e", payload()));
    let before = allocations();
    let delivered = dispatch(&msg, None, &subs.subs);
    let allocs = allocations() - before;
    assert_eq!(subs.drain(), n);
    (delivered, allocs)
}

#[test]
fn dispatch_allocations_do_not_grow_with_subscribers() {
    let (d_small, a_small) = allocs_for(10);
    let (d_big, a_big) = allocs_for(10_000);
    assert_eq!((d_small, d_big), (10, 10_000));
    // per broadcast, whatever the audience: the encoded frame's buffer and its shared form (2),
    // and the fan-out completion clock (`phx_broker_fanout_completion_seconds`): its `Arc`, shared
    // by the broadcast's frames, and the frame's owner holding it (2)
    assert!(a_small <= 4, "encode and the fan-out clock should be the only allocations, got {a_small}");
    assert_eq!(a_small, a_big, "allocations grew with the number of subscribers");
}
