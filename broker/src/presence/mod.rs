//! Presence (spec §7): `track`/`untrack`/`update`/`list`, and `presence_diff` broadcasts.
//!
//! ## Shape
//! Topics are sharded by hash over `shards` tasks (one per core by default), like the pubsub
//! subscriber sets. Each shard task owns a [`tracker::State`], the CRDT modelled on
//! Phoenix.Tracker (pure, no I/O), and applies local operations to it. Every operation yields
//! a diff, which is broadcast as `presence_diff` through [`PubSub::local_broadcast`] (node-local:
//! every node computes diffs from its own replica, spec §7.4).
//!
//! ## Replication
//! With a single node the CRDT's delta is dropped after every change (which keeps it from
//! growing). With a [`ReplicationBus`] ([`crate::cluster`]) each shard is a tracker replica
//! that sends its deltas at once and merges what the other nodes send ([`replication`]).
//!
//! ## Big rooms
//! * `presence_state` for a joiner: the shard keeps, next to the CRDT, a persistent (`imbl`)
//!   per-topic map `key → metas`, updated in O(log n) per change. A `list` hands out a
//!   snapshot in O(1) and the *caller* renders it, so a 100k-member state never blocks the
//!   shard (and the other topics on it).
//! * Diff coalescing: with `diff_window_ms > 0`, the diffs of one topic within the window are
//!   folded ([`tracker::Diff::merge`], exact under phoenix.js `syncDiff`) into one
//!   `presence_diff`. In a 10k-member room with 100 changes/s, Phoenix sends 1M frames/s;
//!   a 50 ms window sends at most 20 diffs/s per room, i.e. 200k frames/s, and a person
//!   cannot tell 50 ms of presence latency apart. 0 restores Phoenix's one diff per change,
//!   and rooms below `coalesce_min_members` keys (100 by default) always get it.
//!   One visible difference in coalesced rooms: after a duplicate join, the socket's new
//!   incarnation may receive the leave of its own old meta inside the next coalesced diff
//!   (Phoenix never shows it, spec §12.3). It names only the old `phx_ref`, so phoenix.js
//!   state stays correct; a leave is never dropped, because a client that got its
//!   `presence_state` inside the window needs it.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracker::{Diff, Meta, OwnerId, ReplicaRef, State};

pub mod replication;
pub mod typed;
pub mod view;

pub use replication::{Replication, ReplicationBus, ReplicationOptions};
use replication::Replicator;

pub use view::{render, Fetch, KeyEntry, Snapshot};
use view::{entry_len, json_len, META_OVERHEAD};

use crate::metrics::METRICS;
use crate::pubsub::{Broadcast, PubSub, SubId};
use crate::protocol::Payload;

/// Errors of `track` / `update`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresenceError {
    /// `{:error, {:already_tracked, …}}`: this owner already tracks this key on this topic.
    AlreadyTracked,
    /// `{:error, :nopresence}`: `update` of a key this owner does not track.
    NoPresence,
    /// The presence service is gone (shutting down).
    Unavailable,
    /// The key is longer than `presence_max_key_bytes`.
    KeyTooLarge,
    /// The meta's JSON is larger than `presence_max_meta_bytes`.
    MetaTooLarge,
    /// The topic's presence state would pass `presence_max_state_bytes`.
    StateFull,
    /// A typed meta that is not a JSON object ([`typed::meta_map`]).
    BadMeta,
}

impl std::fmt::Display for PresenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PresenceError {}

/// Bounds on what one presence may cost (attacker-chosen keys and metas must not grow a
/// topic's `presence_state` without bound: every joiner receives it).
#[derive(Clone, Copy, Debug)]
pub struct PresenceLimits {
    pub max_key_bytes: usize,
    pub max_meta_bytes: usize,
    /// Bytes of one topic's `presence_state` JSON.
    pub max_state_bytes: usize,
    /// Commands queued per shard before callers wait (`Limits::presence_queue`).
    pub queue: usize,
}

impl Default for PresenceLimits {
    fn default() -> Self {
        let l = crate::config::Limits::default();
        PresenceLimits {
            max_key_bytes: l.presence_max_key_bytes,
            max_meta_bytes: l.presence_max_meta_bytes,
            max_state_bytes: l.presence_max_state_bytes,
            queue: l.presence_queue,
        }
    }
}

impl PresenceError {
    /// The reason string a channel replies with (Phoenix's atoms).
    pub fn reason(&self) -> &'static str {
        match self {
            PresenceError::AlreadyTracked => "already_tracked",
            PresenceError::NoPresence => "nopresence",
            PresenceError::Unavailable => "unavailable",
            PresenceError::KeyTooLarge => "presence key too large",
            PresenceError::MetaTooLarge => "presence meta too large",
            PresenceError::StateFull => "presence state of this topic is full",
            PresenceError::BadMeta => "presence meta must be an object",
        }
    }
}


/// How the presence service runs.
#[derive(Clone)]
pub struct PresenceOptions {
    /// Shards (tasks), topics spread by hash.
    pub shards: usize,
    /// Coalescing window for `presence_diff` per topic; 0 = one diff per change.
    pub diff_window_ms: u64,
    /// Coalesce only in rooms with at least this many presence keys: small rooms keep Phoenix's
    /// exact behaviour (one diff per change), big rooms, where every change costs a frame per
    /// member, get the window.
    pub coalesce_min_members: usize,
    pub fetch: Option<Fetch>,
    /// Replica name (the node name in a cluster).
    pub node: String,
    pub limits: PresenceLimits,
    /// Replicate to the other nodes of a cluster.
    pub replication: Option<ReplicationOptions>,
}

enum Cmd {
    Track { topic: String, owner: SubId, key: String, meta: Meta, reply: oneshot::Sender<Result<String, PresenceError>> },
    Update { topic: String, owner: SubId, key: String, meta: Meta, reply: oneshot::Sender<Result<String, PresenceError>> },
    Untrack { topic: String, owner: SubId, key: String, reply: oneshot::Sender<()> },
    UntrackOwner { owner: SubId, reply: Option<oneshot::Sender<()>> },
    List { topic: String, reply: oneshot::Sender<Snapshot> },
    /// Shutting down: tell the other nodes to forget this replica.
    Goodbye { reply: oneshot::Sender<()> },
}


/// Gossip period (Phoenix's `broadcast_period`).
const BROADCAST_PERIOD: Duration = Duration::from_millis(1500);

/// The presence service (Phoenix's `MyApp.Presence`). Cheap to clone. Inside a channel use the
/// [`crate::ChannelContext`] helpers (`track`/`track_as`, `update_presence_with` for
/// `Presence.update(socket, key, fn)`, `push_presence_state`); from anywhere,
/// `list`/[`Presence::list_as`] (typed metas):
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Meta { typing: bool }
/// let presence = broker::Presence::start(broker::pubsub::PubSub::start(1), 1, 0);
/// let meta = broker::presence::typed::meta_map(&Meta { typing: true }).unwrap();
/// presence.track("room:1", 1, "alice", meta).await.unwrap();
/// let list = presence.list_as::<Meta>("room:1").await.unwrap();
/// assert_eq!(list["alice"], vec![Meta { typing: true }]);
/// # });
/// ```
#[derive(Clone)]
pub struct Presence {
    shards: Arc<[mpsc::Sender<Cmd>]>,
    /// Per shard: messages from other nodes (cluster only).
    remote: Arc<[mpsc::Sender<Replication>]>,
    fetch: Option<Fetch>,
    limits: PresenceLimits,
}

impl Presence {
    /// Starts `shards` presence shards publishing diffs through `pubsub`, coalescing diffs
    /// over `diff_window_ms` in every room.
    pub fn start(pubsub: PubSub, shards: usize, diff_window_ms: u64) -> Presence {
        Presence::start_with(pubsub, PresenceOptions {
            shards,
            diff_window_ms,
            coalesce_min_members: 0,
            fetch: None,
            node: "node".into(),
            limits: PresenceLimits::default(),
            replication: None,
        })
    }

    /// Starts the presence shards with all options.
    pub fn start_with(pubsub: PubSub, o: PresenceOptions) -> Presence {
        let PresenceOptions { shards, diff_window_ms, coalesce_min_members, fetch, node, limits, replication } = o;
        let vsn = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        let count = shards.max(1);
        let mut remotes = Vec::new();
        let senders: Vec<_> = (0..count)
            .map(|i| {
                let (tx, rx) = mpsc::channel(limits.queue.max(1));
                let (remote_tx, remote_rx) = mpsc::channel(replication.as_ref().map_or(1, |r| r.queue.max(1)));
                remotes.push(remote_tx);
                let shard = Shard {
                    replication: replication.clone().map(|r| Replicator::new(r, i, count)),
                    state: State::new(ReplicaRef::new(node.clone(), vsn)),
                    replica: ReplicaRef::new(node.clone(), vsn),
                    views: HashMap::new(),
                    view_bytes: HashMap::new(),
                    limits,
                    pubsub: pubsub.clone(),
                    window: Duration::from_millis(diff_window_ms),
                    min_members: coalesce_min_members,
                    pending: HashMap::new(),
                    deadlines: VecDeque::new(),
                    fetch: fetch.clone(),
                };
                tokio::spawn(shard.run(rx, remote_rx));
                tx
            })
            .collect();
        Presence { shards: senders.into(), remote: remotes.into(), fetch, limits }
    }

    /// A replication message from another node, for the shard it names. Never waits: when the
    /// shard is that far behind, the message is dropped and counted (heartbeats repair).
    pub fn deliver(&self, msg: Replication) {
        let Some(tx) = self.remote.get(msg.shard()) else {
            METRICS.cluster_presence_mismatched.inc();
            return;
        };
        if tx.try_send(msg).is_err() {
            METRICS.cluster_presence_dropped.inc();
        }
    }

    /// Shutting down: every shard tells the other nodes to forget its replica (their lists
    /// drop this node's presences at once, not after the down period).
    pub async fn goodbye(&self) {
        for shard in self.shards.iter() {
            let (reply, rx) = oneshot::channel();
            if shard.send(Cmd::Goodbye { reply }).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// The bounds this service enforces.
    pub fn limits(&self) -> PresenceLimits {
        self.limits
    }

    /// Checks a key and a meta against the limits (before they reach a shard).
    fn check(&self, key: &str, meta: &Map<String, Value>) -> Result<(), PresenceError> {
        if key.len() > self.limits.max_key_bytes {
            return Err(PresenceError::KeyTooLarge);
        }
        if json_len(meta) > self.limits.max_meta_bytes {
            return Err(PresenceError::MetaTooLarge);
        }
        Ok(())
    }

    fn shard(&self, topic: &str) -> &mpsc::Sender<Cmd> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        topic.hash(&mut h);
        &self.shards[(h.finish() % self.shards.len() as u64) as usize]
    }

    /// `track(owner, topic, key, meta)`: returns the new `phx_ref`.
    pub async fn track(&self, topic: &str, owner: SubId, key: &str, meta: Map<String, Value>) -> Result<String, PresenceError> {
        self.check(key, &meta)?;
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd::Track { topic: topic.into(), owner, key: key.into(), meta, reply };
        self.shard(topic).send(cmd).await.map_err(|_| PresenceError::Unavailable)?;
        rx.await.unwrap_or(Err(PresenceError::Unavailable))
    }

    /// `update(owner, topic, key, meta)`: replaces the meta (new `phx_ref`, `phx_ref_prev`).
    pub async fn update(&self, topic: &str, owner: SubId, key: &str, meta: Map<String, Value>) -> Result<String, PresenceError> {
        self.check(key, &meta)?;
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd::Update { topic: topic.into(), owner, key: key.into(), meta, reply };
        self.shard(topic).send(cmd).await.map_err(|_| PresenceError::Unavailable)?;
        rx.await.unwrap_or(Err(PresenceError::Unavailable))
    }

    /// `untrack(owner, topic, key)`; a no-op if absent.
    pub async fn untrack(&self, topic: &str, owner: SubId, key: &str) {
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd::Untrack { topic: topic.into(), owner, key: key.into(), reply };
        if self.shard(topic).send(cmd).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Removes every presence of an owner (its channel stopped), on every shard.
    pub async fn untrack_owner(&self, owner: SubId) {
        let mut waits = Vec::with_capacity(self.shards.len());
        for shard in self.shards.iter() {
            let (reply, rx) = oneshot::channel();
            if shard.send(Cmd::UntrackOwner { owner, reply: Some(reply) }).await.is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
    }

    /// [`Presence::untrack_owner`] without waiting (from `Drop`).
    pub fn untrack_owner_nowait(&self, owner: SubId) {
        for shard in self.shards.iter() {
            if let Err(mpsc::error::TrySendError::Full(cmd)) = shard.try_send(Cmd::UntrackOwner { owner, reply: None }) {
                let shard = shard.clone();
                tokio::spawn(async move {
                    let _ = shard.send(cmd).await;
                });
            }
        }
    }

    /// A snapshot of a topic's presences (O(1); render it with [`Presence::render`]).
    pub async fn snapshot(&self, topic: &str) -> Snapshot {
        let (reply, rx) = oneshot::channel();
        if self.shard(topic).send(Cmd::List { topic: topic.into(), reply }).await.is_err() {
            return Snapshot::new();
        }
        rx.await.unwrap_or_default()
    }

    /// `list(topic)`: `{"key": {"metas": […]}, …}` (passed through `fetch`).
    pub async fn list(&self, topic: &str) -> Value {
        let snap = self.snapshot(topic).await;
        serde_json::from_slice(&self.render(topic, &snap)).expect("rendered JSON")
    }

    /// `get_by_key(topic, key)`: the presence entry of `key`, or `None`.
    pub async fn get_by_key(&self, topic: &str, key: &str) -> Option<Value> {
        let snap = self.snapshot(topic).await;
        let metas = &snap.get(key)?.metas;
        let mut entry = Map::new();
        entry.insert("metas".into(), Value::Array(metas.iter().cloned().map(Value::Object).collect()));
        if let Some(f) = &self.fetch {
            f(topic, key, &mut entry);
        }
        Some(Value::Object(entry))
    }

    /// The `presence_state` payload of a topic.
    pub async fn list_payload(&self, topic: &str) -> Payload {
        let snap = self.snapshot(topic).await;
        Payload::Json(self.render(topic, &snap))
    }

    /// Renders a snapshot as `{"key":{"metas":[…]}}` (sorted keys), in the caller's task.
    pub fn render(&self, topic: &str, snap: &Snapshot) -> Bytes {
        render(topic, snap, self.fetch.as_ref())
    }
}

struct Shard {
    replication: Option<Replicator>,
    state: State,
    replica: ReplicaRef,
    /// Per-topic persistent view for O(1) snapshots.
    views: HashMap<String, Snapshot>,
    /// Per topic: bytes of its `presence_state` JSON (kept with the view).
    view_bytes: HashMap<String, usize>,
    limits: PresenceLimits,
    pubsub: PubSub,
    window: Duration,
    /// Rooms with fewer members get one diff per change (Phoenix behaviour) even with a window.
    min_members: usize,
    /// Coalescing: the diff waiting to be sent per topic, and send deadlines in order.
    pending: HashMap<String, Diff>,
    deadlines: VecDeque<(Instant, String)>,
    fetch: Option<Fetch>,
}

impl Shard {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, mut remote: mpsc::Receiver<Replication>) {
        let period = self.replication.as_ref().map_or(BROADCAST_PERIOD, |r| r.opts.heartbeat);
        let mut gossip = tokio::time::interval(period);
        gossip.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_flush = self.deadlines.front().map(|(t, _)| *t);
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        self.handle(cmd).await;
                        if self.state.has_delta() {
                            self.after_local_change(!rx.is_empty());
                        }
                    }
                    None => break,
                },
                Some(msg) = remote.recv() => self.handle_remote(msg).await,
                _ = sleep_until_opt(next_flush) => self.flush_due().await,
                _ = gossip.tick() => self.heartbeat_tick().await,
            }
        }
    }

    fn owner(&self, id: SubId) -> OwnerId {
        OwnerId::for_replica(&self.replica, id)
    }

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Track { topic, owner, key, meta, reply } => {
                if self.state_bytes(&topic) + entry_len(&key) + json_len(&meta) + META_OVERHEAD > self.limits.max_state_bytes {
                    let _ = reply.send(Err(PresenceError::StateFull));
                    return;
                }
                let owner = self.owner(owner);
                match self.state.track(&topic, &owner, &key, meta) {
                    Ok((phx_ref, diff)) => {
                        let _ = reply.send(Ok(phx_ref));
                        self.emit(topic, diff).await;
                    }
                    Err(_) => {
                        let _ = reply.send(Err(PresenceError::AlreadyTracked));
                    }
                }
            }
            Cmd::Update { topic, owner, key, meta, reply } => {
                // Conservative: the old meta is still counted while the new one is checked.
                if self.state_bytes(&topic) + json_len(&meta) + META_OVERHEAD > self.limits.max_state_bytes {
                    let _ = reply.send(Err(PresenceError::StateFull));
                    return;
                }
                let owner = self.owner(owner);
                match self.state.update(&topic, &owner, &key, meta) {
                    Ok((phx_ref, diff)) => {
                        let _ = reply.send(Ok(phx_ref));
                        self.emit(topic, diff).await;
                    }
                    Err(_) => {
                        let _ = reply.send(Err(PresenceError::NoPresence));
                    }
                }
            }
            Cmd::Untrack { topic, owner, key, reply } => {
                let owner = self.owner(owner);
                let diff = self.state.untrack(&topic, &owner, &key);
                self.emit(topic, diff).await;
                let _ = reply.send(());
            }
            Cmd::UntrackOwner { owner, reply } => {
                // Emit before replying: the leave is then queued in pubsub before the owner's
                // socket can subscribe a new incarnation of the channel (spec §12.3).
                let owner = self.owner(owner);
                let diffs = self.state.untrack_owner(&owner);
                for (topic, diff) in diffs {
                    self.emit(topic, diff).await;
                }
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Cmd::List { topic, reply } => {
                let _ = reply.send(self.views.get(&topic).cloned().unwrap_or_default());
            }
            Cmd::Goodbye { reply } => {
                self.publish_heartbeat(false);
                self.goodbye();
                let _ = reply.send(());
            }
        }
    }

    /// Applies a diff to the topic's view, then sends it now or folds it into the pending one.
    async fn emit(&mut self, topic: String, diff: Diff) {
        if diff.is_empty() {
            return;
        }
        self.apply_to_view(&topic, &diff);
        let members = self.views.get(&topic).map_or(0, |v| v.len());
        let small = members < self.min_members && !self.pending.contains_key(&topic);
        if self.window.is_zero() || small {
            self.send(&topic, &diff).await;
            return;
        }
        match self.pending.remove(&topic) {
            Some(earlier) => {
                self.pending.insert(topic, earlier.merge(diff));
            }
            None => {
                self.deadlines.push_back((Instant::now() + self.window, topic.clone()));
                self.pending.insert(topic, diff);
            }
        }
    }

    async fn flush_due(&mut self) {
        let now = Instant::now();
        while let Some((t, _)) = self.deadlines.front() {
            if *t > now {
                break;
            }
            let (_, topic) = self.deadlines.pop_front().expect("front");
            if let Some(diff) = self.pending.remove(&topic) {
                if !diff.is_empty() {
                    self.send(&topic, &diff).await;
                }
            }
        }
    }

    async fn send(&self, topic: &str, diff: &Diff) {
        let value = match &self.fetch {
            None => diff.to_json(),
            Some(f) => diff.to_json_with(|key, entry| f(topic, key, entry)),
        };
        METRICS.presence_diffs.inc();
        let msg = Broadcast::new(topic, "presence_diff", Payload::json(&value));
        self.pubsub.local_broadcast(Arc::new(msg), None, None).await;
    }

    fn state_bytes(&self, topic: &str) -> usize {
        self.view_bytes.get(topic).copied().unwrap_or(2)
    }

    /// Keeps the per-topic view equal to `state.list(topic)` (as phoenix.js `syncDiff` would
    /// apply the diff: joins first, then leaves, matched by `phx_ref`).
    fn apply_to_view(&mut self, topic: &str, diff: &Diff) {
        let view = self.views.entry(topic.to_owned()).or_default();
        let bytes = self.view_bytes.entry(topic.to_owned()).or_insert(2);
        let size = |key: &str, e: &KeyEntry| entry_len(key) + e.json.len();
        for (key, metas) in &diff.joins {
            let mut list: Vec<Meta> = view.get(key).map(|v| v.metas.clone()).unwrap_or_default();
            for m in metas {
                let r = m.get("phx_ref");
                list.retain(|x| x.get("phx_ref") != r);
                list.push(m.clone());
            }
            let entry = Arc::new(KeyEntry::new(list));
            *bytes += size(key, &entry);
            if let Some(old) = view.insert(key.clone(), entry) {
                *bytes -= size(key, &old);
            }
        }
        for (key, metas) in &diff.leaves {
            if let Some(current) = view.get(key) {
                let mut list: Vec<Meta> = current.metas.clone();
                list.retain(|x| !metas.iter().any(|m| m.get("phx_ref") == x.get("phx_ref")));
                *bytes -= size(key, current);
                if list.is_empty() {
                    view.remove(key);
                } else {
                    let entry = Arc::new(KeyEntry::new(list));
                    *bytes += size(key, &entry);
                    view.insert(key.clone(), entry);
                }
            }
        }
        if view.is_empty() {
            self.views.remove(topic);
            self.view_bytes.remove(topic);
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Outbox, OutboxLimits};
    use crate::pubsub::SubKind;
    use crate::protocol::Serializer;
    use serde_json::json;
    use std::collections::VecDeque;

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    async fn listener(ps: &PubSub, topic: &str) -> Arc<Outbox> {
        let o = Arc::new(Outbox::new(OutboxLimits { max_frames: 1000, max_bytes: 1 << 20 }));
        let kind = SubKind::Fastlane { outbox: o.clone(), serializer: Serializer::V2, intercepts: Arc::from(vec![]), handle_out: Arc::new(|_| {}), socket_id: None };
        ps.subscribe(0, topic.into(), 999, kind, vec![]).await;
        o
    }

    fn frames(o: &Outbox) -> Vec<Value> {
        let mut q = VecDeque::new();
        o.drain_into(&mut q);
        q.iter().map(|f| serde_json::from_slice::<Value>(&f.body()).unwrap()).collect()
    }

    async fn settle(ps: &PubSub) {
        // A broadcast that waits for shard 0 orders us after everything queued before it.
        ps.local_broadcast(Arc::new(Broadcast::new("_", "_", Payload::empty_object())), None, Some(0)).await;
    }

    #[tokio::test]
    async fn track_update_untrack_produce_phoenix_diffs() {
        let ps = PubSub::start(1);
        let p = Presence::start(ps.clone(), 2, 0);
        let o = listener(&ps, "room:1").await;
        let r1 = p.track("room:1", 1, "42", meta(json!({"s": 1}))).await.unwrap();
        assert_eq!(p.track("room:1", 1, "42", meta(json!({"s": 1}))).await, Err(PresenceError::AlreadyTracked));
        let r2 = p.update("room:1", 1, "42", meta(json!({"s": 2}))).await.unwrap();
        assert_eq!(p.update("room:1", 1, "nobody", Map::new()).await, Err(PresenceError::NoPresence));
        assert_eq!(p.list("room:1").await, json!({"42": {"metas": [{"s": 2, "phx_ref": r2, "phx_ref_prev": r1}]}}));
        p.untrack_owner(1).await;
        settle(&ps).await;
        let got = frames(&o);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], json!([null, null, "room:1", "presence_diff", {"joins": {"42": {"metas": [{"s": 1, "phx_ref": r1}]}}, "leaves": {}}]));
        assert_eq!(
            got[1][4],
            json!({"joins": {"42": {"metas": [{"s": 2, "phx_ref": r2, "phx_ref_prev": r1}]}}, "leaves": {"42": {"metas": [{"s": 1, "phx_ref": r1}]}}})
        );
        assert_eq!(got[2][4], json!({"joins": {}, "leaves": {"42": {"metas": [{"s": 2, "phx_ref": r2, "phx_ref_prev": r1}]}}}));
        assert_eq!(p.list("room:1").await, json!({}));
    }

    #[tokio::test]
    async fn two_owners_one_key_and_sorted_keys() {
        let ps = PubSub::start(1);
        let p = Presence::start(ps.clone(), 1, 0);
        for (owner, key) in [(1, "carol"), (2, "alice"), (3, "bob"), (4, "alice")] {
            p.track("room:x", owner, key, Map::new()).await.unwrap();
        }
        let payload = p.list_payload("room:x").await;
        let Payload::Json(b) = payload else { panic!() };
        let text = std::str::from_utf8(&b).unwrap();
        let alice = text.find("\"alice\"").unwrap();
        let bob = text.find("\"bob\"").unwrap();
        let carol = text.find("\"carol\"").unwrap();
        assert!(alice < bob && bob < carol, "{text}");
        let list = p.list("room:x").await;
        assert_eq!(list["alice"]["metas"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn coalesced_window_sends_one_diff() {
        let ps = PubSub::start(1);
        let p = Presence::start(ps.clone(), 1, 40);
        let o = listener(&ps, "room:c").await;
        let a = p.track("room:c", 1, "a", Map::new()).await.unwrap();
        p.track("room:c", 2, "b", Map::new()).await.unwrap();
        p.untrack("room:c", 2, "b").await; // joined and left inside the window: invisible
        p.update("room:c", 1, "a", meta(json!({"t": 1}))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        settle(&ps).await;
        let got = frames(&o);
        assert_eq!(got.len(), 1, "{got:?}");
        let d = &got[0][4];
        // Leaves are kept even for metas that joined inside the window: a client that got its
        // presence_state during the window has them (a leave of an absent meta is a no-op).
        assert_eq!(d["leaves"]["a"]["metas"][0]["phx_ref"], json!(a));
        assert!(d["leaves"].get("b").is_some());
        assert_eq!(d["joins"]["a"]["metas"].as_array().unwrap().len(), 1);
        assert_eq!(d["joins"]["a"]["metas"][0]["t"], 1);
        assert_eq!(d["joins"]["a"]["metas"][0]["phx_ref_prev"], json!(a));
        assert!(d["joins"].get("b").is_none());
    }

    #[tokio::test]
    async fn small_rooms_are_not_coalesced() {
        let ps = PubSub::start(1);
        let opts = PresenceOptions { shards: 1, diff_window_ms: 10_000, coalesce_min_members: 3, fetch: None, node: "n".into(), limits: PresenceLimits::default(), replication: None };
        let p = Presence::start_with(ps.clone(), opts);
        let o = listener(&ps, "room:s").await;
        p.track("room:s", 1, "a", Map::new()).await.unwrap();
        p.track("room:s", 2, "b", Map::new()).await.unwrap();
        settle(&ps).await;
        assert_eq!(frames(&o).len(), 2, "below the threshold: one diff per change, at once");
        p.track("room:s", 3, "c", Map::new()).await.unwrap();
        settle(&ps).await;
        assert_eq!(frames(&o).len(), 0, "at the threshold the window applies");
    }

    #[tokio::test]
    async fn fetch_decorates_state_and_diffs() {
        let ps = PubSub::start(1);
        let fetch: Fetch = Arc::new(|_topic, key, entry| {
            entry.insert("user".into(), json!({"name": key.to_uppercase()}));
        });
        let p = Presence::start_with(
            ps.clone(),
            PresenceOptions { shards: 1, diff_window_ms: 0, coalesce_min_members: 0, fetch: Some(fetch), node: "n".into(), limits: PresenceLimits::default(), replication: None },
        );
        let o = listener(&ps, "room:f").await;
        p.track("room:f", 1, "ann", Map::new()).await.unwrap();
        settle(&ps).await;
        assert_eq!(p.list("room:f").await["ann"]["user"], json!({"name": "ANN"}));
        assert_eq!(frames(&o)[0][4]["joins"]["ann"]["user"], json!({"name": "ANN"}));
        assert_eq!(p.get_by_key("room:f", "ann").await.unwrap()["user"]["name"], "ANN");
        assert_eq!(p.get_by_key("room:f", "nobody").await, None);
    }
}
