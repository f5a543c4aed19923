//! A connection's bounded outbound queue.
//!
//! Producers (pubsub shards, channel tasks, the socket itself) push ready-made [`Frame`]s; the
//! connection's writer takes *everything* queued at once and writes it with one vectored write.
//! A push is a reference-count increment plus a `VecDeque` push under a per-connection lock held
//! for a few instructions; nobody ever waits on a slow client.
//!
//! Bound: `max_frames` frames and `max_bytes` bytes. Overflow has one named outcome: the outbox
//! is marked [`Overflow::SlowConsumer`], refuses further frames, and the connection closes with
//! close code [`crate::CLOSE_SLOW_CONSUMER`]; the event is counted in [`crate::metrics`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::serializer::Frame;

/// Why a push was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// The outbox is full: the client is not reading fast enough. The connection is closing.
    SlowConsumer,
    /// The connection is already closed.
    Closed,
}

/// Limits of one outbox.
#[derive(Clone, Copy, Debug)]
pub struct OutboxLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
}

#[derive(Default)]
struct Inner {
    frames: VecDeque<Frame>,
    bytes: usize,
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
    /// Set by the writer when it has stopped; the reader selects on it.
    writer_gone: AtomicBool,
    gone: Notify,
    limits: OutboxLimits,
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
        Outbox {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            writer_gone: AtomicBool::new(false),
            gone: Notify::new(),
            limits,
        }
    }

    /// Queues a frame. Never blocks; wakes the writer if the queue was empty.
    pub fn push(&self, frame: Frame) -> Result<(), PushError> {
        self.push_all(std::iter::once(frame))
    }

    /// Queues several frames atomically: no other producer's frame lands between them.
    pub fn push_all(&self, frames: impl IntoIterator<Item = Frame>) -> Result<(), PushError> {
        let mut inner = self.inner.lock();
        let was_empty = inner.frames.is_empty();
        for frame in frames {
            match inner.state {
                State::Open => {}
                State::SlowConsumer => return Err(PushError::SlowConsumer),
                State::Closed { .. } => return Err(PushError::Closed),
            }
            if inner.frames.len() >= self.limits.max_frames || inner.bytes + frame.len() > self.limits.max_bytes {
                inner.state = State::SlowConsumer;
                inner.frames.clear();
                inner.bytes = 0;
                drop(inner);
                crate::metrics::METRICS.slow_consumers.inc();
                self.ready.notify_one();
                return Err(PushError::SlowConsumer);
            }
            inner.bytes += frame.len();
            inner.frames.push_back(frame);
        }
        let now_empty = inner.frames.is_empty();
        drop(inner);
        if was_empty && !now_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Moves every queued frame into `into` (which the writer reuses, so steady state allocates
    /// nothing) and reports the state.
    pub fn drain_into(&self, into: &mut VecDeque<Frame>) -> Status {
        let mut inner = self.inner.lock();
        if into.is_empty() {
            std::mem::swap(into, &mut inner.frames);
        } else {
            into.extend(inner.frames.drain(..));
        }
        inner.bytes = 0;
        // Don't let one burst pin a large queue on an idle connection.
        if inner.frames.capacity() > 1024 {
            inner.frames = VecDeque::new();
        }
        match &mut inner.state {
            State::Open => Status::Open,
            State::SlowConsumer => Status::SlowConsumer,
            State::Closed { flush, last } => Status::Closed { flush: *flush, last: last.take() },
        }
    }

    /// Waits until something is queued (or the state changed).
    pub fn ready(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready.notified()
    }

    /// Marks the outbox overflowed from outside (a channel mailbox that can't keep up).
    pub fn overflow(&self) {
        let mut inner = self.inner.lock();
        if inner.state == State::Open {
            inner.state = State::SlowConsumer;
            inner.frames.clear();
            inner.bytes = 0;
            crate::metrics::METRICS.slow_consumers.inc();
        }
        drop(inner);
        self.ready.notify_one();
    }

    /// Refuses further frames (the connection is going away); queued frames are dropped.
    pub fn close(&self) {
        let mut inner = self.inner.lock();
        if inner.state == State::Open {
            inner.state = State::Closed { flush: false, last: None };
        }
        drop(inner);
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

    /// Called by the writer when it stops.
    pub fn writer_done(&self) {
        self.writer_gone.store(true, Ordering::Release);
        self.gone.notify_waiters();
    }

    /// Resolves once the writer has stopped.
    pub async fn ready_closed(&self) {
        loop {
            let notified = self.gone.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.writer_gone.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serializer::{Frame, Opcode};

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
