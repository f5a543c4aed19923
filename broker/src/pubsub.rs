//! PubSub: topic → subscribers, and the fan-out of broadcasts (spec §5.5).
//!
//! ## Sharding, and why this way
//! Subscriptions are sharded **by connection** (`shard = conn_id % shards`), not by topic, and
//! each shard is owned by one task that receives commands over a bounded queue. So:
//! * a broadcast to a big topic is split into `shards` independent loops that run on different
//!   cores at once (one shard per core by default): sharding by topic would put a 19k-member
//!   room on one core;
//! * no lock exists at all: a shard's map is touched only by its owner task, so no lock can be
//!   held across O(subscribers) work or across an `.await`;
//! * every frame for one connection is produced by one shard in command order, which gives the
//!   ordering guarantees of spec §4.4 and §5.5 cheaply: a join's `Subscribe` carries the join
//!   reply (`then_push`), so no broadcast can reach the client before its join reply, and a
//!   leave's `Unsubscribe` carries `phx_close`, so no broadcast follows it (spec §12.3).
//!
//! ## Publish path
//! [`PubSub::broadcast`] wraps the message in an `Arc<Broadcast>` and sends it to every shard.
//! Each shard walks its subscribers of the topic; for a fastlane subscriber whose channel does
//! not intercept the event it takes the frame for the subscriber's serializer — encoded once per
//! broadcast, on first use, by [`Broadcast::frame`] — and pushes a clone (a refcount) onto the
//! subscriber's [`Outbox`]. Intercepted events go to the channel's `handle_out` instead.
//!
//! A channel's own broadcast is queued with [`PubSub::broadcast_queued`], which returns a
//! [`Ticket`] instead of waiting for the fan-out; the channel's following frames go through
//! [`PubSub::try_push_after`] while the ticket is not done. (Waiting for the fan-out instead put
//! every publisher behind its subscribers' writer wake-ups: a lock-step at one frame per write
//! that capped 19k-subscriber fan-out at ~110k deliveries/s; without it, writes batch under load
//! and the same run reaches ~1M/s.)
//!
//! ## Many nodes
//! With a [`Bus`] ([`crate::cluster`], over Redis), [`PubSub::broadcast`] and
//! [`PubSub::broadcast_queued`] also hand the broadcast to the bus, which publishes it once for
//! the other nodes; what arrives from the bus is dispatched here with
//! [`PubSub::local_broadcast`] and `from = None` (the `from` of `broadcast_from` is a
//! subscriber of the publishing node, so other nodes deliver to everyone). A node tells the bus
//! which topics it has subscribers for: [`PubSub::subscribe`] first [`Bus::retain`]s the topic
//! (and waits until the node receives the topic's remote broadcasts, so nothing published after
//! a join reply is missed), and a shard [`Bus::release`]s it for every subscription it removes.
//! Presence diffs are never relayed: every node computes them from its own replica.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::METRICS;
use crate::outbox::{Outbox, PushError};
use crate::protocol::{encode_broadcast, EncodeError, Frame, Payload, Serializer};

/// Identifies one subscription owner (a channel incarnation, or a transport).
pub type SubId = u64;

static NEXT_SUB_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh, process-unique subscription id.
pub fn next_sub_id() -> SubId {
    NEXT_SUB_ID.fetch_add(1, Ordering::Relaxed)
}

/// `Broadcast{topic, event, payload}` with its frames, encoded lazily once per serializer.
pub struct Broadcast {
    pub topic: Arc<str>,
    pub event: String,
    pub payload: Payload,
    /// Skip every subscriber whose socket has this id (the HTTP API's `exclude_socket_id`).
    pub exclude_socket: Option<Arc<str>>,
    frames: [OnceLock<Result<Frame, EncodeError>>; 2],
    /// When this node received the broadcast: the start of its fan-out completion time.
    received: Instant,
    /// Created with the first frame (so a broadcast nobody here receives is not timed).
    clock: OnceLock<Arc<FanoutClock>>,
}

/// A broadcast's fan-out completion time (`phx_broker_fanout_completion_seconds`): shared by
/// the broadcast and its encoded frames, it is dropped with the last of them, i.e. once the
/// last subscriber's copy of the frame has been written and released. It costs nothing per
/// delivery: a copy of a shared frame is a refcount either way.
struct FanoutClock {
    received: Instant,
}

impl Drop for FanoutClock {
    fn drop(&mut self) {
        METRICS.fanout_completion.observe(self.received.elapsed());
    }
}

/// A frame's bytes, holding the broadcast's clock.
struct ClockedBytes {
    bytes: Bytes,
    _clock: Arc<FanoutClock>,
}

impl AsRef<[u8]> for ClockedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Broadcast {
    pub fn new(topic: impl Into<Arc<str>>, event: impl Into<String>, payload: Payload) -> Broadcast {
        Broadcast {
            topic: topic.into(),
            event: event.into(),
            payload,
            exclude_socket: None,
            frames: [OnceLock::new(), OnceLock::new()],
            received: Instant::now(),
            clock: OnceLock::new(),
        }
    }

    /// The fastlane frame for a serializer, encoded on first use and shared after that.
    pub fn frame(&self, ser: Serializer) -> Result<&Frame, EncodeError> {
        self.frames[ser.index()]
            .get_or_init(|| {
                METRICS.broadcast_encodes.inc();
                let clock = self.clock.get_or_init(|| Arc::new(FanoutClock { received: self.received })).clone();
                encode_broadcast(ser, &self.topic, &self.event, &self.payload)
                    .map(|f| f.map_bytes(|bytes| Bytes::from_owner(ClockedBytes { bytes, _clock: clock })))
            })
            .as_ref()
            .map_err(|e| e.clone())
    }
}

/// The multi-node bus as pubsub sees it ([`crate::cluster`] implements it over Redis).
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes a broadcast for the other nodes (queued; never waits for the network).
    fn publish(&self, msg: &Broadcast);
    /// One more local subscription of `topic`; resolves once the topic's broadcasts from other
    /// nodes reach this node (or at once when the bus is down: local traffic never waits).
    async fn retain(&self, topic: &Arc<str>);
    /// One local subscription of `topic` fewer (each [`Bus::retain`] is matched by one).
    fn release(&self, topic: &Arc<str>);
}

/// Called with a broadcast for subscribers that are not plain fastlane deliveries.
pub type Deliver = Arc<dyn Fn(&Arc<Broadcast>) + Send + Sync>;

/// How a subscriber receives broadcasts.
#[derive(Clone)]
pub enum SubKind {
    /// A joined channel: frames go straight to its connection's outbox, except for events the
    /// channel intercepts, which go to `handle_out`.
    Fastlane { outbox: Arc<Outbox>, serializer: Serializer, intercepts: Arc<[String]>, handle_out: Deliver, socket_id: Option<Arc<str>> },
    /// Anything else (a transport's socket-id topic, a channel's extra subscription).
    Plain(Deliver),
}

enum Command {
    Subscribe { topic: Arc<str>, id: SubId, kind: SubKind, then_push: Vec<Frame>, done: oneshot::Sender<()> },
    Unsubscribe { topic: Arc<str>, id: SubId, then_push: Option<(Arc<Outbox>, Vec<Frame>)>, done: Option<oneshot::Sender<()>> },
    Publish { msg: Arc<Broadcast>, from: Option<SubId>, done: Option<oneshot::Sender<()>> },
    /// Frames for one outbox, queued behind the shard's earlier work (a channel's reply after
    /// its own broadcast).
    Push { outbox: Arc<Outbox>, frames: Vec<Frame> },
    /// The topics this shard has subscribers for.
    Topics { reply: oneshot::Sender<Vec<Arc<str>>> },
}

/// One shard's command queue, with counters that let a sender learn, without waiting, whether
/// the shard has processed a command it queued (see [`Ticket`]).
struct ShardHandle {
    tx: mpsc::Sender<Command>,
    /// Commands handed to `tx` (incremented just before each send).
    enqueued: AtomicU64,
    /// Commands the shard has handled.
    processed: Arc<AtomicU64>,
}

/// Proof of a queued broadcast on one shard: done once the shard has processed everything
/// queued up to and including it. A channel that broadcast routes its own following frames
/// through the shard while its ticket is not done, instead of waiting for the fan-out.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    shard: usize,
    target: u64,
}

impl Ticket {
    pub fn new(shard: usize, target: u64) -> Ticket {
        Ticket { shard, target }
    }
    pub fn target(&self) -> u64 {
        self.target
    }
}

/// The sharded subscription registry. Cheap to clone.
#[derive(Clone)]
pub struct PubSub {
    shards: Arc<[ShardHandle]>,
    bus: Option<Arc<dyn Bus>>,
}

impl PubSub {
    /// Starts `shards` shard tasks on the current tokio runtime, with the default queue bound.
    pub fn start(shards: usize) -> PubSub {
        PubSub::start_with(shards, crate::config::Limits::default().pubsub_queue)
    }

    /// Starts `shards` shard tasks whose command queues hold `queue` commands each
    /// (`Limits::pubsub_queue`): publishers wait when a shard is this far behind.
    pub fn start_with(shards: usize, queue: usize) -> PubSub {
        PubSub::start_with_bus(shards, queue, None)
    }

    /// Like [`PubSub::start_with`], with a multi-node bus.
    pub fn start_with_bus(shards: usize, queue: usize, bus: Option<Arc<dyn Bus>>) -> PubSub {
        let shards = shards.max(1);
        let handles: Vec<_> = (0..shards)
            .map(|_| {
                let (tx, rx) = mpsc::channel(queue);
                let processed = Arc::new(AtomicU64::new(0));
                let shard = Shard { topics: HashMap::new(), bus: bus.clone() };
                tokio::spawn(shard.run(rx, processed.clone()));
                ShardHandle { tx, enqueued: AtomicU64::new(0), processed }
            })
            .collect();
        PubSub { shards: handles.into(), bus }
    }

    /// Is this node part of a cluster?
    pub fn is_clustered(&self) -> bool {
        self.bus.is_some()
    }

    /// Queues a command on a shard (waiting only if its queue is full).
    async fn send(&self, shard: usize, cmd: Command) -> bool {
        let h = &self.shards[shard];
        h.enqueued.fetch_add(1, Ordering::AcqRel);
        h.tx.send(cmd).await.is_ok()
    }

    /// Has the shard processed everything up to the ticket's broadcast?
    pub fn is_done(&self, t: &Ticket) -> bool {
        self.shards[t.shard].processed.load(Ordering::Acquire) >= t.target
    }

    /// Queues frames for `outbox` behind everything already queued on `shard`.
    pub async fn push_after(&self, shard: usize, outbox: Arc<Outbox>, frames: Vec<Frame>) {
        self.send(shard, Command::Push { outbox, frames }).await;
    }

    /// Like [`PubSub::push_after`] without waiting; `Err` gives the frames back when the
    /// shard's queue is full.
    pub fn try_push_after(&self, shard: usize, outbox: &Arc<Outbox>, frames: Vec<Frame>) -> Result<(), Vec<Frame>> {
        let h = &self.shards[shard];
        h.enqueued.fetch_add(1, Ordering::AcqRel);
        match h.tx.try_send(Command::Push { outbox: outbox.clone(), frames }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(Command::Push { frames, .. }) | mpsc::error::TrySendError::Closed(Command::Push { frames, .. })) => {
                // Not queued: count it as processed so tickets stay exact.
                h.processed.fetch_add(1, Ordering::AcqRel);
                Err(frames)
            }
            Err(_) => unreachable!("a Push command comes back as a Push"),
        }
    }

    /// Topics with at least one subscriber on this node (an admin query: O(topics)).
    pub async fn topic_count(&self) -> usize {
        let mut all = std::collections::HashSet::new();
        for i in 0..self.shards.len() {
            let (reply, rx) = oneshot::channel();
            if self.send(i, Command::Topics { reply }).await {
                if let Ok(topics) = rx.await {
                    all.extend(topics);
                }
            }
        }
        all.len()
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that holds a connection's subscriptions.
    pub fn shard_of(&self, conn_id: u64) -> usize {
        (conn_id % self.shards.len() as u64) as usize
    }

    /// Subscribes `id` to `topic` in shard `shard`, then pushes `then_push` to the subscriber's
    /// outbox (for a fastlane subscription) before any broadcast can reach it. Resolves once the
    /// subscription is in place.
    pub async fn subscribe(&self, shard: usize, topic: Arc<str>, id: SubId, kind: SubKind, then_push: Vec<Frame>) {
        if let Some(bus) = &self.bus {
            bus.retain(&topic).await;
        }
        let (done, wait) = oneshot::channel();
        let retained = topic.clone();
        if self.send(shard, Command::Subscribe { topic, id, kind, then_push, done }).await {
            let _ = wait.await;
        } else if let Some(bus) = &self.bus {
            bus.release(&retained);
        }
    }

    /// Removes a subscription; then pushes `then_push` to `outbox`, after any broadcast the shard
    /// delivered to it before. Resolves once done.
    pub async fn unsubscribe(&self, shard: usize, topic: Arc<str>, id: SubId, then_push: Option<(Arc<Outbox>, Vec<Frame>)>) {
        let (done, wait) = oneshot::channel();
        let cmd = Command::Unsubscribe { topic, id, then_push, done: Some(done) };
        if self.send(shard, cmd).await {
            let _ = wait.await;
        }
    }

    /// Best-effort removal without waiting (used from `Drop`).
    pub fn unsubscribe_nowait(&self, shard: usize, topic: Arc<str>, id: SubId) {
        let cmd = Command::Unsubscribe { topic, id, then_push: None, done: None };
        let h = &self.shards[shard];
        h.enqueued.fetch_add(1, Ordering::AcqRel);
        match h.tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                let tx = h.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(cmd).await;
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                h.processed.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Broadcasts to every subscriber of the topic in the cluster: hands it to the bus (if
    /// any) for the other nodes, then dispatches it on this one.
    pub async fn broadcast(&self, msg: Broadcast, from: Option<SubId>, wait_for_shard: Option<usize>) {
        if let Some(bus) = &self.bus {
            bus.publish(&msg);
        }
        self.local_broadcast(Arc::new(msg), from, wait_for_shard).await
    }

    /// Dispatches a broadcast to this node's subscribers. `from` is skipped (`broadcast_from`).
    /// With `wait_for_shard`, resolves only once that shard has delivered it: a channel uses it
    /// so that its own broadcast precedes its reply on its own socket (spec §5.5).
    pub async fn local_broadcast(&self, msg: Arc<Broadcast>, from: Option<SubId>, wait_for_shard: Option<usize>) {
        METRICS.broadcasts.inc();
        let mut wait = None;
        for i in 0..self.shards.len() {
            let done = if wait_for_shard == Some(i) {
                let (tx, rx) = oneshot::channel();
                wait = Some(rx);
                Some(tx)
            } else {
                None
            };
            self.send(i, Command::Publish { msg: msg.clone(), from, done }).await;
        }
        if let Some(rx) = wait {
            let _ = rx.await;
        }
    }

    /// Queues a broadcast on every shard without waiting for the fan-out, and returns a
    /// [`Ticket`] for `own_shard`: frames the caller must deliver after its own copy go through
    /// [`PubSub::push_after`] on that shard while the ticket is not done.
    pub async fn broadcast_queued(&self, msg: Broadcast, from: Option<SubId>, own_shard: usize) -> Ticket {
        if let Some(bus) = &self.bus {
            bus.publish(&msg);
        }
        METRICS.broadcasts.inc();
        let msg = Arc::new(msg);
        let mut ticket = Ticket { shard: own_shard, target: 0 };
        for i in 0..self.shards.len() {
            self.send(i, Command::Publish { msg: msg.clone(), from, done: None }).await;
            if i == own_shard {
                // Everything queued before this publish incremented `enqueued` before it was
                // sent, so once `processed` reaches this value the publish has been handled.
                ticket.target = self.shards[i].enqueued.load(Ordering::Acquire);
            }
        }
        ticket
    }
}

struct TopicSubs {
    subs: Vec<(SubId, SubKind)>,
    index: HashMap<SubId, usize>,
}

struct Shard {
    topics: HashMap<Arc<str>, TopicSubs>,
    /// Told of every subscription this shard removes (or replaces), see [`Bus::release`].
    bus: Option<Arc<dyn Bus>>,
}

impl Shard {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, processed: Arc<AtomicU64>) {
        let mut batch = Vec::with_capacity(64);
        while rx.recv_many(&mut batch, 64).await > 0 {
            for cmd in batch.drain(..) {
                self.handle(cmd);
                processed.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Subscribe { topic, id, kind, then_push, done } => {
                if !then_push.is_empty() {
                    if let SubKind::Fastlane { outbox, .. } = &kind {
                        let _ = outbox.push_all(then_push);
                    }
                }
                let entry = self
                    .topics
                    .entry(topic.clone())
                    .or_insert_with(|| TopicSubs { subs: Vec::new(), index: HashMap::new() });
                match entry.index.get(&id) {
                    Some(&i) => {
                        // Replaced: the caller retained the topic once more than it holds it.
                        entry.subs[i].1 = kind;
                        if let Some(bus) = &self.bus {
                            bus.release(&topic);
                        }
                    }
                    None => {
                        entry.index.insert(id, entry.subs.len());
                        entry.subs.push((id, kind));
                    }
                }
                let _ = done.send(());
            }
            Command::Unsubscribe { topic, id, then_push, done } => {
                if let Some(entry) = self.topics.get_mut(&topic) {
                    if let Some(i) = entry.index.remove(&id) {
                        entry.subs.swap_remove(i);
                        if let Some((moved, _)) = entry.subs.get(i) {
                            entry.index.insert(*moved, i);
                        }
                        if let Some(bus) = &self.bus {
                            bus.release(&topic);
                        }
                    }
                    if entry.subs.is_empty() {
                        self.topics.remove(&topic);
                    }
                }
                if let Some((outbox, frames)) = then_push {
                    let _ = outbox.push_all(frames);
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Command::Push { outbox, frames } => {
                let _ = outbox.push_all(frames);
            }
            Command::Topics { reply } => {
                let _ = reply.send(self.topics.keys().cloned().collect());
            }
            Command::Publish { msg, from, done } => {
                if let Some(entry) = self.topics.get(&msg.topic) {
                    let delivered = dispatch(&msg, from, &entry.subs);
                    METRICS.deliveries.add(delivered);
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }
}

/// Delivers one broadcast to a shard's subscribers of its topic; returns the number of frames
/// queued. Per subscriber: a refcount and a queue push (or a `handle_out` hand-off).
pub fn dispatch(msg: &Arc<Broadcast>, from: Option<SubId>, subs: &[(SubId, SubKind)]) -> u64 {
    let mut delivered = 0;
    // The outbound budget is charged once per dispatch, not once per subscriber (one shared
    // counter touched from every core would cost more than the rest of a delivery).
    let mut charged = 0;
    for (id, kind) in subs {
        if Some(*id) == from {
            continue;
        }
        match kind {
            SubKind::Fastlane { outbox, serializer, intercepts, handle_out, socket_id } => {
                if msg.exclude_socket.is_some() && msg.exclude_socket == *socket_id {
                    continue;
                }
                if !intercepts.is_empty() && intercepts.iter().any(|e| *e == msg.event) {
                    handle_out(msg);
                    continue;
                }
                match msg.frame(*serializer) {
                    Ok(frame) => match outbox.push_uncharged(std::iter::once(frame.clone()), &mut charged) {
                        Ok(()) => delivered += 1,
                        Err(PushError::SlowConsumer | PushError::Closed) => {}
                        // Senders are refused before a fan-out (`ChannelContext::broadcast`);
                        // a frame no outbox can hold is dropped here, never a disconnect.
                        Err(PushError::TooLarge) => METRICS.frames_dropped.inc(),
                    },
                    Err(_) => METRICS.frames_dropped.inc(),
                }
            }
            SubKind::Plain(deliver) => deliver(msg),
        }
    }
    crate::outbox::charge(charged);
    delivered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxLimits;
    use std::collections::VecDeque;

    fn outbox() -> Arc<Outbox> {
        Arc::new(Outbox::new(OutboxLimits { max_frames: 100, max_bytes: 1 << 20 }))
    }
    fn fastlane(o: &Arc<Outbox>, ser: Serializer) -> SubKind {
        SubKind::Fastlane { outbox: o.clone(), serializer: ser, intercepts: Arc::from(vec![]), handle_out: Arc::new(|_| {}), socket_id: None }
    }
    fn drain(o: &Outbox) -> Vec<String> {
        let mut q = VecDeque::new();
        o.drain_into(&mut q);
        q.iter().map(|f| String::from_utf8(f.body().to_vec()).unwrap()).collect()
    }

    #[tokio::test]
    async fn broadcast_reaches_subscribers_once_per_serializer_encode() {
        let ps = PubSub::start(2);
        let (a, b, c) = (outbox(), outbox(), outbox());
        ps.subscribe(0, "room:1".into(), 1, fastlane(&a, Serializer::V2), vec![]).await;
        ps.subscribe(1, "room:1".into(), 2, fastlane(&b, Serializer::V2), vec![]).await;
        ps.subscribe(1, "room:1".into(), 3, fastlane(&c, Serializer::V1), vec![]).await;
        let msg = Arc::new(Broadcast::new("room:1", "ev", Payload::Json(bytes::Bytes::from_static(b"{\"a\":1}"))));
        ps.local_broadcast(msg.clone(), Some(2), Some(0)).await;
        ps.local_broadcast(Arc::new(Broadcast::new("room:2", "x", Payload::empty_object())), None, Some(1)).await;
        assert_eq!(drain(&a), vec![r#"[null,null,"room:1","ev",{"a":1}]"#]);
        assert!(drain(&b).is_empty(), "broadcast_from skips the sender");
        assert_eq!(drain(&c), vec![r#"{"event":"ev","payload":{"a":1},"ref":null,"topic":"room:1"}"#]);
        // The same shared frame was handed out: both serializers encoded exactly once.
        assert!(msg.frames[0].get().is_some() && msg.frames[1].get().is_some());
    }

    #[tokio::test]
    async fn subscribe_then_push_precedes_broadcasts_and_unsubscribe_then_push_follows() {
        let ps = PubSub::start(1);
        let a = outbox();
        let reply = Frame::from_body(crate::protocol::Opcode::Text, b"reply");
        ps.subscribe(0, "t".into(), 1, fastlane(&a, Serializer::V2), vec![reply]).await;
        ps.local_broadcast(Arc::new(Broadcast::new("t", "e", Payload::empty_object())), None, None).await;
        let close = Frame::from_body(crate::protocol::Opcode::Text, b"close");
        ps.unsubscribe(0, "t".into(), 1, Some((a.clone(), vec![close]))).await;
        ps.local_broadcast(Arc::new(Broadcast::new("t", "e2", Payload::empty_object())), None, Some(0)).await;
        assert_eq!(drain(&a), vec!["reply", r#"[null,null,"t","e",{}]"#, "close"]);
    }

    #[tokio::test]
    async fn a_ticket_orders_frames_behind_the_broadcast_without_waiting() {
        let ps = PubSub::start(2);
        let a = outbox();
        ps.subscribe(1, "t".into(), 1, fastlane(&a, Serializer::V2), vec![]).await;
        let ticket = ps.broadcast_queued(Broadcast::new("t", "first", Payload::empty_object()), None, 1).await;
        let reply = Frame::from_body(crate::protocol::Opcode::Text, b"reply");
        if ps.is_done(&ticket) {
            a.push(reply).unwrap();
        } else {
            ps.try_push_after(1, &a, vec![reply]).unwrap();
        }
        // Wait until the shard caught up, then check the order.
        for _ in 0..100 {
            if ps.is_done(&Ticket::new(1, ticket.target() + 1)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(drain(&a), vec![r#"[null,null,"t","first",{}]"#, "reply"]);
        assert!(ps.is_done(&ticket));
    }

    #[tokio::test]
    async fn intercepted_events_go_to_handle_out() {
        let ps = PubSub::start(1);
        let a = outbox();
        let seen = Arc::new(parking_lot::Mutex::new(vec![]));
        let s2 = seen.clone();
        let kind = SubKind::Fastlane {
            outbox: a.clone(),
            serializer: Serializer::V2,
            intercepts: Arc::from(vec!["secret".to_string()]),
            handle_out: Arc::new(move |b: &Arc<Broadcast>| s2.lock().push(b.event.clone())),
            socket_id: None,
        };
        ps.subscribe(0, "t".into(), 1, kind, vec![]).await;
        ps.local_broadcast(Arc::new(Broadcast::new("t", "secret", Payload::empty_object())), None, None).await;
        ps.local_broadcast(Arc::new(Broadcast::new("t", "open", Payload::empty_object())), None, Some(0)).await;
        assert_eq!(*seen.lock(), vec!["secret".to_string()]);
        assert_eq!(drain(&a), vec![r#"[null,null,"t","open",{}]"#]);
    }

    #[tokio::test]
    async fn unsubscribe_keeps_index_consistent() {
        let ps = PubSub::start(1);
        let boxes: Vec<_> = (0..5).map(|_| outbox()).collect();
        for (i, o) in boxes.iter().enumerate() {
            ps.subscribe(0, "t".into(), i as u64, fastlane(o, Serializer::V2), vec![]).await;
        }
        ps.unsubscribe(0, "t".into(), 1, None).await;
        ps.unsubscribe(0, "t".into(), 0, None).await;
        ps.unsubscribe(0, "t".into(), 42, None).await;
        ps.local_broadcast(Arc::new(Broadcast::new("t", "e", Payload::empty_object())), None, Some(0)).await;
        let got: Vec<usize> = boxes.iter().map(|o| drain(o).len()).collect();
        assert_eq!(got, vec![0, 0, 1, 1, 1]);
    }
}
