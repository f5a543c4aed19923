//! What a channel task's mailbox carries, including the [`Info`] messages of `handle_info`.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{oneshot, Notify};

use super::stop::StopReason;
use crate::protocol::{Payload, Ref};
use crate::pubsub::Broadcast;

/// What the connection (and pubsub) send to a channel task.
pub enum ChannelMsg {
    /// A client message (boxed: the mailbox's slots are sized by the largest variant).
    In(Box<InMsg>),
    Out(Arc<Broadcast>),
    Info(Info),
    /// `phx_leave` with its ref.
    Leave { ref_: Option<Ref> },
    /// Stop without frames (transport closed, duplicate join, disconnect, drain).
    Shutdown(StopReason),
}

/// A client message for `handle_in`; `handled` is signalled once `handle_in` returned.
pub struct InMsg {
    pub event: String,
    pub payload: Payload,
    pub ref_: Option<Ref>,
    pub handled: Option<oneshot::Sender<()>>,
}

/// A message for [`crate::channel::Channel::handle_info`].
pub enum Info {
    /// A value sent with [`crate::channel::ChannelContext::send_info`] / [`crate::channel::ChannelContext::send_after`] or
    /// through an [`crate::channel::InfoSender`].
    Message(Box<dyn Any + Send>),
    /// A broadcast on an extra topic the channel subscribed to with
    /// [`crate::channel::ChannelContext::subscribe`].
    Broadcast(Arc<Broadcast>),
}

impl Info {
    /// The message as the app's type `T` (what was sent with `send_info` / `send_after` /
    /// [`crate::channel::InfoSender::send`]), or the message back when it is something else:
    ///
    /// ```
    /// # use broker::{ChannelContext, Continue, Info};
    /// enum Tick { Second, Minute }
    /// fn handle_info(msg: Info, _ctx: &mut ChannelContext) -> Continue {
    ///     match msg.downcast::<Tick>() {
    ///         Ok(Tick::Second) => { /* … */ }
    ///         Ok(Tick::Minute) => { /* … */ }
    ///         Err(_other) => {}
    ///     }
    ///     Continue::Continue
    /// }
    /// ```
    pub fn downcast<T: Any>(self) -> Result<T, Info> {
        match self {
            Info::Message(m) => m.downcast::<T>().map(|b| *b).map_err(Info::Message),
            other => Err(other),
        }
    }

    /// A reference to the message as `T`, if it is one.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        match self {
            Info::Message(m) => m.downcast_ref::<T>(),
            Info::Broadcast(_) => None,
        }
    }

    /// Is this message a `T`?
    pub fn is<T: Any>(&self) -> bool {
        self.downcast_ref::<T>().is_some()
    }

    /// A broadcast on an extra subscribed topic: `(topic, event, payload)`.
    pub fn as_broadcast(&self) -> Option<(&str, &str, &Payload)> {
        match self {
            Info::Broadcast(b) => Some((&b.topic, &b.event, &b.payload)),
            Info::Message(_) => None,
        }
    }
}


/// A channel task's mailbox: a bounded queue of [`ChannelMsg`] with any number of senders (the
/// socket, pubsub deliveries of intercepted events, the channel itself, [`crate::channel::InfoSender`]s)
/// and one receiver, the task.
///
/// Hand-rolled rather than tokio's bounded `mpsc`, for memory: every joined channel has one,
/// and tokio's allocates its shared state and a first block of 32 slots up front (1,824 bytes,
/// whatever the bound; `bench-results/memory/breakdown.md`). This one is a lock around a
/// `VecDeque` that allocates on first use and is released once drained, plus two `Notify`s:
/// ~150 bytes while idle. The queue is short-lived and uncontended (one connection's messages
/// for one channel), so a lock costs nothing measurable here.
pub fn mailbox(bound: usize) -> (MailboxSender, MailboxReceiver) {
    let shared = Arc::new(Shared {
        state: parking_lot::Mutex::new(State { queue: VecDeque::new(), closed: false }),
        ready: Notify::new(),
        room: Notify::new(),
        bound: bound.max(1),
        senders: AtomicUsize::new(1),
    });
    (MailboxSender { shared: shared.clone() }, MailboxReceiver { shared })
}

struct Shared {
    state: parking_lot::Mutex<State>,
    /// Wakes the receiver (one waiter; a `notify_one` with no one waiting leaves a permit).
    ready: Notify,
    /// Wakes senders waiting for room.
    room: Notify,
    bound: usize,
    senders: AtomicUsize,
}

impl Shared {
    /// The next message, or `Err(ended)` when nothing is queued.
    fn take(&self) -> Result<ChannelMsg, bool> {
        let mut st = self.state.lock();
        match st.queue.pop_front() {
            Some(msg) => {
                let was_full = st.queue.len() + 1 >= self.bound;
                if st.queue.is_empty() {
                    // Nothing kept while idle.
                    st.queue = VecDeque::new();
                }
                drop(st);
                if was_full {
                    self.room.notify_waiters();
                }
                Ok(msg)
            }
            None => Err(st.closed || self.senders.load(Ordering::Acquire) == 0),
        }
    }
}

struct State {
    queue: VecDeque<ChannelMsg>,
    /// The receiver closed the mailbox or is gone: sends fail.
    closed: bool,
}

/// Why a [`MailboxSender::try_send`] failed; the message comes back.
pub enum TrySendError {
    Full(ChannelMsg),
    Closed(ChannelMsg),
}

/// The sending side of a channel's mailbox; clones share it.
pub struct MailboxSender {
    shared: Arc<Shared>,
}

impl Clone for MailboxSender {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        MailboxSender { shared: self.shared.clone() }
    }
}

impl Drop for MailboxSender {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender: a receiver waiting on an empty mailbox sees the end.
            self.shared.ready.notify_one();
        }
    }
}

impl MailboxSender {
    /// Queues `msg` unless the mailbox is full or closed.
    pub fn try_send(&self, msg: ChannelMsg) -> Result<(), TrySendError> {
        {
            let mut st = self.shared.state.lock();
            if st.closed {
                return Err(TrySendError::Closed(msg));
            }
            if st.queue.len() >= self.shared.bound {
                return Err(TrySendError::Full(msg));
            }
            st.queue.push_back(msg);
        }
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Queues `msg`, waiting for room (backpressure); gives it back if the mailbox is closed.
    pub async fn send(&self, msg: ChannelMsg) -> Result<(), ChannelMsg> {
        let mut msg = msg;
        loop {
            // Registered before the check, so room made in between is not missed.
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(m)) => return Err(m),
                Err(TrySendError::Full(m)) => msg = m,
            }
            room.await;
        }
    }
}

/// The receiving side: the channel task.
pub struct MailboxReceiver {
    shared: Arc<Shared>,
}

impl MailboxReceiver {
    /// The next message; `None` once the mailbox is closed (or every sender is gone) and empty.
    pub async fn recv(&mut self) -> Option<ChannelMsg> {
        loop {
            let ready = self.shared.ready.notified();
            match self.shared.take() {
                Ok(msg) => return Some(msg),
                Err(true) => return None,
                Err(false) => {}
            }
            ready.await;
        }
    }

    /// The next message if one is queued (`None` also when closed and empty).
    pub fn try_recv(&mut self) -> Option<ChannelMsg> {
        self.shared.take().ok()
    }

    /// Refuses further messages; what is queued can still be taken.
    pub fn close(&mut self) {
        self.shared.state.lock().closed = true;
        // Senders waiting for room find it closed.
        self.shared.room.notify_waiters();
    }
}

impl Drop for MailboxReceiver {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn info(n: u32) -> ChannelMsg {
        ChannelMsg::Info(Info::Message(Box::new(n)))
    }

    fn value(msg: Option<ChannelMsg>) -> u32 {
        match msg {
            Some(ChannelMsg::Info(i)) => i.downcast::<u32>().ok().expect("a u32"),
            _ => panic!("expected an Info message"),
        }
    }

    #[tokio::test]
    async fn bounded_in_order_and_backpressure() {
        let (tx, mut rx) = mailbox(2);
        assert!(tx.try_send(info(1)).is_ok());
        assert!(tx.try_send(info(2)).is_ok());
        assert!(matches!(tx.try_send(info(3)), Err(TrySendError::Full(_))));
        // A send at the bound waits until the receiver makes room.
        let tx2 = tx.clone();
        let waiting = tokio::spawn(async move { tx2.send(info(3)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "send must wait while the mailbox is full");
        assert_eq!(value(rx.recv().await), 1);
        assert!(waiting.await.unwrap(), "room made: the waiting send completes");
        assert_eq!(value(rx.recv().await), 2);
        assert_eq!(value(rx.recv().await), 3);
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn recv_waits_for_a_message() {
        let (tx, mut rx) = mailbox(4);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.try_send(info(7)).is_ok()
        });
        assert_eq!(value(rx.recv().await), 7);
        assert!(sender.await.unwrap());
    }

    #[tokio::test]
    async fn close_refuses_new_messages_but_keeps_the_queued_ones() {
        let (tx, mut rx) = mailbox(1);
        tx.try_send(info(1)).ok().unwrap();
        // A sender waiting for room is released with its message when the mailbox closes.
        let tx2 = tx.clone();
        let waiting = tokio::spawn(async move { tx2.send(info(2)).await.is_err() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        rx.close();
        assert!(waiting.await.unwrap(), "a send into a closed mailbox fails");
        assert!(matches!(tx.try_send(info(3)), Err(TrySendError::Closed(_))));
        assert_eq!(value(rx.try_recv()), 1);
        assert!(rx.recv().await.is_none(), "closed and drained: the end");
    }

    #[tokio::test]
    async fn the_end_when_every_sender_is_gone_or_the_receiver_is() {
        let (tx, mut rx) = mailbox(4);
        let tx2 = tx.clone();
        tx.try_send(info(1)).ok().unwrap();
        drop(tx);
        drop(tx2);
        assert_eq!(value(rx.recv().await), 1, "what was queued is still delivered");
        assert!(rx.recv().await.is_none());

        let (tx, rx) = mailbox(4);
        drop(rx);
        assert!(matches!(tx.try_send(info(1)), Err(TrySendError::Closed(_))));
    }
}
