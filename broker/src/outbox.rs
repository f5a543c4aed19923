//! A connection's bounded outbound queue.
//!
//! Producers (pubsub shards, channel tasks, the socket itself) push ready-made [`Frame`]s; the
//! connection's writer takes *everything* queued at once and writes it with one vectored write.
//! A push is a reference-count increment plus a `VecDeque` push under a per-connection lock held
//! for a few instructions; nobody ever waits on a slow client.
//!
//! Bound: `max_frames` frames and `max_bytes` bytes. Overflow has one named outcome: the outbox
//! is marked a slow consumer, refuses further frames, and the connection closes with
//! [`crate::protocol::CloseReason::SlowConsumer`] (1008); the event is counted in [`crate::metrics`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::metrics::METRICS;
use crate::protocol::Frame;

/// Why a push was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// The outbox is full: the client is not reading fast enough. The connection is closing.
    SlowConsumer,
    /// The connection is already closed.
    Closed,
    /// The frame is larger than the outbox could ever hold; it was dropped, the connection is
    /// unaffected.
    TooLarge,
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushError::SlowConsumer => "slow consumer",
            PushError::Closed => "connection closed",
            PushError::TooLarge => "frame larger than the outbox",
        })
    }
}

impl std::error::Error for PushError {}

/// Limits of one outbox.
#[derive(Clone, Copy, Debug)]
pub struct OutboxLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
}

#[derive(Default)]
struct Inner {
    frames: VecDeque<Frame>,
    /// Bytes of `frames`.
    queued: usize,
    /// Bytes the writer has taken but not yet written ([`Outbox::release`]).
    held: usize,
    /// Coarse time (ms, [`budget_now_ms`]) of the writer's last progress, or of the first
    /// byte queued after it was idle: how long this consumer has been stalled.
    since_ms: u64,
    state: State,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Open,
    SlowConsumer,
    /// Closing: `flush` says whether queued frames are still written; `last` is written after
    /// them (the close frame).
    Closed { flush: bool, last: Option<Frame> },
}

/// The outbound queue of one connection (WebSocket) or session (LongPoll).
pub struct Outbox {
    inner: Mutex<Inner>,
    ready: Notify,
    /// Wakes a writer blocked on a client that does not read once the outbox overflowed.
    kill: Notify,
    /// Set with the slow-consumer state, read without the lock by a writer between writes.
    overflowed: AtomicBool,
    limits: OutboxLimits,
    /// Key in the budget registry (0: not registered).
    budget_key: u64,
}

/// What a drain returned, besides the frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Open,
    /// Overflowed: the writer must close the connection as a slow consumer.
    SlowConsumer,
    /// Closed by [`Outbox::close`] / [`Outbox::close_with`]: flush the drained frames if
    /// `flush`, then write `last`, then stop.
    Closed { flush: bool, last: Option<Frame> },
}

impl Outbox {
    pub fn new(limits: OutboxLimits) -> Outbox {
        Outbox::with_key(limits, 0)
    }

    fn with_key(limits: OutboxLimits, budget_key: u64) -> Outbox {
        Outbox {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            kill: Notify::new(),
            overflowed: AtomicBool::new(false),
            limits,
            budget_key,
        }
    }

    /// An outbox the process-wide outbound budget can close when it is exceeded (every
    /// connection's and session's outbox).
    pub fn registered(limits: OutboxLimits) -> Arc<Outbox> {
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::with_key(limits, key));
        REGISTRY.lock().insert(key, Arc::downgrade(&outbox));
        outbox
    }

    /// Queues a frame. Never blocks; wakes the writer if the queue was empty.
    pub fn push(&self, frame: Frame) -> Result<(), PushError> {
        self.push_all(std::iter::once(frame))
    }

    /// Queues several frames atomically: no other producer's frame lands between them.
    pub fn push_all(&self, frames: impl IntoIterator<Item = Frame>) -> Result<(), PushError> {
        let mut added = 0;
        let r = self.push_uncharged(frames, &mut added);
        charge(added);
        r
    }

    /// [`Outbox::push_all`] without charging the process-wide budget: the caller adds `added`
    /// with [`charge`] (a fan-out charges once per broadcast instead of once per subscriber).
    pub fn push_uncharged(&self, frames: impl IntoIterator<Item = Frame>, added: &mut usize) -> Result<(), PushError> {
        let mut inner = self.inner.lock();
        let was_empty = inner.frames.is_empty();
        for frame in frames {
            match inner.state {
                State::Open => {}
                State::SlowConsumer => return Err(PushError::SlowConsumer),
                State::Closed { .. } => return Err(PushError::Closed),
            }
            let len = frame.len();
            if len > self.limits.max_bytes {
                return Err(PushError::TooLarge);
            }
            if inner.frames.len() >= self.limits.max_frames || inner.queued + inner.held + len > self.limits.max_bytes {
                self.overflow_locked(inner);
                return Err(PushError::SlowConsumer);
            }
            if inner.queued + inner.held == 0 {
                inner.since_ms = budget_now_ms();
            }
            inner.queued += len;
            *added += len;
            inner.frames.push_back(frame);
        }
        let now_empty = inner.frames.is_empty();
        drop(inner);
        if was_empty && !now_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Marks the outbox overflowed and drops what is queued (the lock is released here).
    fn overflow_locked(&self, mut inner: parking_lot::MutexGuard<'_, Inner>) {
        if inner.state != State::Open {
            return;
        }
        inner.state = State::SlowConsumer;
        self.overflowed.store(true, Ordering::Release);
        inner.frames.clear();
        let freed = std::mem::take(&mut inner.queued);
        drop(inner);
        uncharge(freed);
        METRICS.slow_consumers.inc();
        self.ready.notify_one();
        self.kill.notify_waiters();
    }

    /// Moves every queued frame into `into` (which the writer reuses, so steady state allocates
    /// nothing) and reports the state. The frames' bytes still count against the bounds until
    /// the writer gives them back: `written` here (what it wrote since its last drain: one lock
    /// per write cycle) or with [`Outbox::release`] during a long write.
    pub fn drain_into(&self, into: &mut VecDeque<Frame>) -> Status {
        self.drain_after(into, 0)
    }

    /// [`Outbox::drain_into`] after the writer wrote `written` bytes of what it held.
    pub fn drain_after(&self, into: &mut VecDeque<Frame>, written: usize) -> Status {
        let mut inner = self.inner.lock();
        let written = written.min(inner.held);
        inner.held -= written;
        if written > 0 {
            inner.since_ms = budget_now_ms();
        }
        if into.is_empty() {
            std::mem::swap(into, &mut inner.frames);
        } else {
            into.extend(inner.frames.drain(..));
        }
        inner.held += std::mem::take(&mut inner.queued);
        // Don't let one burst pin a large queue on an idle connection.
        if inner.frames.capacity() > 1024 {
            inner.frames = VecDeque::new();
        }
        let status = match &mut inner.state {
            State::Open => Status::Open,
            State::SlowConsumer => Status::SlowConsumer,
            State::Closed { flush, last } => Status::Closed { flush: *flush, last: last.take() },
        };
        drop(inner);
        uncharge(written);
        status
    }

    /// The writer wrote (or dropped) `bytes` of what it drained: progress.
    pub fn release(&self, bytes: usize) {
        let mut inner = self.inner.lock();
        let n = bytes.min(inner.held);
        inner.held -= n;
        if n > 0 {
            inner.since_ms = budget_now_ms();
        }
        drop(inner);
        uncharge(n);
    }

    /// Waits until something is queued (or the state changed).
    pub fn ready(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready.notified()
    }

    /// Resolves once the outbox has overflowed (slow consumer): a writer blocked on a client
    /// that does not read stops waiting.
    pub async fn overflowed(&self) {
        loop {
            let notified = self.kill.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.overflowed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Marks the outbox overflowed from outside (a channel mailbox that can't keep up, the
    /// outbound budget).
    pub fn overflow(&self) {
        self.overflow_locked(self.inner.lock());
    }

    /// Refuses further frames (the connection is going away); queued frames are dropped.
    pub fn close(&self) {
        let mut inner = self.inner.lock();
        let mut freed = 0;
        if inner.state == State::Open {
            inner.state = State::Closed { flush: false, last: None };
            inner.frames.clear();
            freed = std::mem::take(&mut inner.queued);
        }
        drop(inner);
        uncharge(freed);
        self.ready.notify_one();
    }

    /// Refuses further frames; the writer writes what is queued (if `flush`), then `last`.
    pub fn close_with(&self, last: Frame, flush: bool) {
        let mut inner = self.inner.lock();
        if inner.state == State::Open {
            inner.state = State::Closed { flush, last: Some(last) };
        }
        drop(inner);
        self.ready.notify_one();
    }

    /// Called by the writer when it stops: what it still held is gone.
    pub fn writer_done(&self) {
        let mut inner = self.inner.lock();
        let freed = std::mem::take(&mut inner.held) + std::mem::take(&mut inner.queued);
        inner.frames.clear();
        drop(inner);
        uncharge(freed);
    }

    pub fn is_open(&self) -> bool {
        self.inner.lock().state == State::Open
    }

    /// Number of queued frames.
    pub fn len(&self) -> usize {
        self.inner.lock().frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes this outbox pins (queued plus held by the writer).
    pub fn pinned_bytes(&self) -> usize {
        let inner = self.inner.lock();
        inner.queued + inner.held
    }

    /// The largest frame this outbox accepts.
    pub fn max_frame_bytes(&self) -> usize {
        self.limits.max_bytes
    }

    /// (pinned bytes, coarse ms since the last progress) for the budget.
    fn stall(&self) -> (usize, u64) {
        let inner = self.inner.lock();
        (inner.queued + inner.held, inner.since_ms)
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        uncharge(inner.queued + inner.held);
        if self.budget_key != 0 {
            REGISTRY.lock().remove(&self.budget_key);
        }
    }
}

// --- The process-wide outbound budget -------------------------------------------------------
//
// Every outbox charges the bytes it queues to one process-wide counter and gives them back as
// they are written or dropped. A reaper task (started with the server) closes the consumers
// stalled for longest while the total is over the budget: per-connection bounds cannot add up
// past memory, and fast readers are never the ones closed.

/// Bytes queued in all outboxes (may dip below 0 for an instant: a fan-out charges after its
/// pushes, and a writer may release first).
static USED: AtomicI64 = AtomicI64::new(0);
/// Coarse clock for stall times, in ms since the reaper started (advanced by the reaper).
static NOW_MS: AtomicU64 = AtomicU64::new(0);
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
static REGISTRY: Mutex<BTreeMap<u64, Weak<Outbox>>> = Mutex::new(BTreeMap::new());
static REAPER: OnceLock<BudgetConfig> = OnceLock::new();

/// Adds bytes queued with [`Outbox::push_uncharged`] to the process-wide total.
pub fn charge(bytes: usize) {
    if bytes > 0 {
        USED.fetch_add(bytes as i64, Ordering::Relaxed);
    }
}

fn uncharge(bytes: usize) {
    if bytes > 0 {
        USED.fetch_sub(bytes as i64, Ordering::Relaxed);
    }
}

/// Bytes queued for clients in this process (the `/metrics` gauge).
pub fn budget_used() -> i64 {
    USED.load(Ordering::Relaxed)
}

fn budget_now_ms() -> u64 {
    NOW_MS.load(Ordering::Relaxed)
}

/// The budget's settings.
#[derive(Clone, Copy, Debug)]
pub struct BudgetConfig {
    pub limit_bytes: usize,
    /// Only consumers stalled at least this long are closed.
    pub min_stall: Duration,
}

/// Starts the budget's reaper (once per process; later calls keep the first settings) on the
/// current tokio runtime.
pub fn start_budget(config: BudgetConfig) {
    if REAPER.set(config).is_err() {
        return;
    }
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            NOW_MS.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            METRICS.outbound_queued_bytes.set(budget_used());
            enforce_budget(config);
        }
    });
}

/// Closes the consumers stalled for longest (at least `min_stall`) until the queued total is
/// back under 90 % of the budget; returns how many were closed.
fn enforce_budget(config: BudgetConfig) -> usize {
    let used = USED.load(Ordering::Relaxed);
    if used <= config.limit_bytes as i64 {
        return 0;
    }
    let now = budget_now_ms();
    let min_stall = config.min_stall.as_millis() as u64;
    let outboxes: Vec<Arc<Outbox>> = REGISTRY.lock().values().filter_map(Weak::upgrade).collect();
    let mut stalled: Vec<(u64, usize, Arc<Outbox>)> = outboxes
        .into_iter()
        .filter_map(|o| {
            let (bytes, since) = o.stall();
            (bytes > 0 && o.is_open() && now.saturating_sub(since) >= min_stall).then_some((since, bytes, o))
        })
        .collect();
    // Slowest first: the longest without progress, then the most bytes.
    stalled.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let target = (config.limit_bytes as i64) / 10 * 9;
    let mut projected = used;
    let mut closed = 0;
    for (_, bytes, outbox) in stalled {
        if projected <= target {
            break;
        }
        outbox.overflow();
        METRICS.budget_closes.inc();
        projected -= bytes as i64;
        closed += 1;
    }
    if closed > 0 {
        tracing::warn!("outbound budget exceeded ({used} bytes queued): closed {closed} stalled consumers");
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Frame, Opcode};

    fn frame(n: usize) -> Frame {
        Frame::from_body(Opcode::Text, &vec![b'a'; n])
    }

    #[test]
    fn bounded_by_frames_and_bytes() {
        let o = Outbox::new(OutboxLimits { max_frames: 2, max_bytes: 1000 });
        o.push(frame(1)).unwrap();
        o.push(frame(1)).unwrap();
        assert_eq!(o.push(frame(1)), Err(PushError::SlowConsumer));
        assert_eq!(o.push(frame(1)), Err(PushError::SlowConsumer));
        let mut q = VecDeque::new();
        assert_eq!(o.drain_into(&mut q), Status::SlowConsumer);

        let o = Outbox::new(OutboxLimits { max_frames: 100, max_bytes: 10 });
        o.push(frame(5)).unwrap(); // 7 bytes with header
        assert_eq!(o.push(frame(5)), Err(PushError::SlowConsumer));
    }

    #[test]
    fn drain_takes_everything_in_order() {
        let o = Outbox::new(OutboxLimits { max_frames: 10, max_bytes: 1000 });
        for i in 0..5 {
            o.push(frame(i)).unwrap();
        }
        let mut q = VecDeque::new();
        assert_eq!(o.drain_into(&mut q), Status::Open);
        assert_eq!(q.iter().map(|f| f.body().len()).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert!(o.is_empty());
        o.close_with(frame(9), true);
        assert_eq!(o.push(frame(1)), Err(PushError::Closed));
        assert_eq!(o.drain_into(&mut q), Status::Closed { flush: true, last: Some(frame(9)) });
    }

    #[test]
    fn a_frame_larger_than_the_outbox_is_refused_without_closing() {
        let o = Outbox::new(OutboxLimits { max_frames: 10, max_bytes: 100 });
        assert_eq!(o.push(frame(200)), Err(PushError::TooLarge));
        assert!(o.is_open());
        o.push(frame(10)).unwrap();
    }

    #[test]
    fn writer_held_bytes_count_until_released() {
        let o = Outbox::new(OutboxLimits { max_frames: 100, max_bytes: 30 });
        o.push(frame(10)).unwrap(); // 12 bytes with header
        let mut q = VecDeque::new();
        o.drain_into(&mut q);
        assert_eq!(o.pinned_bytes(), 12);
        o.push(frame(10)).unwrap();
        assert_eq!(o.push(frame(10)), Err(PushError::SlowConsumer), "held + queued > bound");
        let o = Outbox::new(OutboxLimits { max_frames: 100, max_bytes: 30 });
        o.push(frame(10)).unwrap();
        o.drain_into(&mut q);
        o.release(12);
        assert_eq!(o.pinned_bytes(), 0);
        o.push(frame(10)).unwrap();
        o.push(frame(10)).unwrap();
    }

    #[test]
    fn the_budget_closes_the_stalled_consumers_first() {
        // Registered outboxes in this test only; the budget counts everything in the process,
        // so the limit is set relative to what is queued now.
        let limits = OutboxLimits { max_frames: 100, max_bytes: 1 << 20 };
        let stalled = Outbox::registered(limits);
        let fresh = Outbox::registered(limits);
        NOW_MS.store(10_000, Ordering::Relaxed);
        stalled.push(frame(50_000)).unwrap();
        NOW_MS.store(20_000, Ordering::Relaxed);
        fresh.push(frame(50_000)).unwrap();
        let used = USED.load(Ordering::Relaxed) as usize;
        let config = BudgetConfig { limit_bytes: used - 10_000, min_stall: Duration::from_millis(5_000) };
        assert_eq!(enforce_budget(config), 1);
        assert!(!stalled.is_open(), "stalled 10 s: closed");
        assert!(fresh.is_open(), "queued just now: kept");
        assert_eq!(stalled.pinned_bytes(), 0);
        drop((stalled, fresh));
    }

    #[tokio::test]
    async fn push_wakes_waiter() {
        let o = std::sync::Arc::new(Outbox::new(OutboxLimits { max_frames: 10, max_bytes: 1000 }));
        let o2 = o.clone();
        let t = tokio::spawn(async move {
            o2.ready().await;
            o2.len()
        });
        tokio::task::yield_now().await;
        o.push(frame(1)).unwrap();
        assert_eq!(t.await.unwrap(), 1);
    }
}
