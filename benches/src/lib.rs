//! Shared helpers for the criterion benches: an allocation-counting global allocator and
//! in-memory subscribers for fan-out.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use broker::outbox::{Outbox, OutboxLimits};
use broker::pubsub::{SubId, SubKind};
use broker::protocol::{Frame, Serializer};

/// Counts allocations (install with `#[global_allocator]`).
pub struct CountingAlloc;

pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// `n` in-memory subscribers (outboxes) of one topic, all V2, plus reusable drain queues.
pub struct Subscribers {
    pub subs: Vec<(SubId, SubKind)>,
    pub outboxes: Vec<Arc<Outbox>>,
    queues: Vec<VecDeque<Frame>>,
}

impl Subscribers {
    pub fn new(n: usize) -> Subscribers {
        let limits = OutboxLimits { max_frames: 1 << 20, max_bytes: 1 << 30 };
        let outboxes: Vec<_> = (0..n).map(|_| Arc::new(Outbox::new(limits))).collect();
        let subs = outboxes
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let kind = SubKind::Fastlane {
                    outbox: o.clone(),
                    serializer: Serializer::V2,
                    intercepts: Arc::from(Vec::<String>::new()),
                    handle_out: Arc::new(|_| {}),
                    socket_id: None,
                };
                (i as SubId, kind)
            })
            .collect();
        let queues = (0..n).map(|_| VecDeque::with_capacity(16)).collect();
        Subscribers { subs, outboxes, queues }
    }

    /// Takes every queued frame (what the connection writers do), keeping queue capacity so
    /// that steady state allocates nothing. Returns the number of frames taken.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        for (o, q) in self.outboxes.iter().zip(self.queues.iter_mut()) {
            o.drain_into(q);
            n += q.len();
            q.clear();
        }
        n
    }
}
