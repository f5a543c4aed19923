//! Presence across nodes: Phoenix.Tracker's replication (spec §8.5-§8.8) over a bus.
//!
//! Every presence shard is a tracker replica `(node name, incarnation)`; shard `i` of one node
//! talks only to shard `i` of the others (topics hash to the same shard on every node, so the
//! nodes must run the same number of presence shards; a message from a node with another count
//! is ignored and counted). What Phoenix does every 1.5 s, this does at once:
//!
//! * **Deltas at once.** After a local track/update/untrack (or a batch of them when commands
//!   queue up), the shard publishes a heartbeat carrying its delta. Peers merge it and emit
//!   `presence_diff`s to their own subscribers from their own replica: diffs are never relayed.
//! * **Heartbeats repair.** Every `heartbeat` period the shard publishes its clock (and any
//!   delta left). A peer that finds it has not seen all of a replica's dots (a lost message, a
//!   gap in a delta, a new node, Redis back after an outage) asks that replica for a
//!   `transfer_req` and merges its `transfer_ack` extract.
//! * **Failures.** A replica silent for `down_period` is marked down (its presences leave the
//!   lists, they return if it comes back), and forgotten after `permdown_period`. A restarted
//!   node (same name, new incarnation) replaces its old incarnation at its first heartbeat; a
//!   node that shuts down cleanly says goodbye and its presences leave at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracker::{Context, Delta, Diffs, Extract, ReplicaRef, Timeouts};

use super::Shard;
use crate::metrics::METRICS;

/// A replication message between the presence shards of two nodes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Replication {
    /// `{:pub, :heartbeat, replica, delta, clocks}`: liveness, the sender's clock, and its
    /// delta if it changed anything since the last one.
    Heartbeat { shard: usize, shards: usize, from: ReplicaRef, clock: Context, delta: Option<Delta> },
    /// "Send me what I miss": the requester's context (sent to one node).
    TransferReq { shard: usize, shards: usize, from: ReplicaRef, context: Context },
    /// The answer to a `transfer_req`: a full extract for the requester's context.
    TransferAck { shard: usize, shards: usize, from: ReplicaRef, extract: Extract },
    /// A clean shutdown: forget this replica now (`graceful_permdown`).
    Goodbye { shard: usize, shards: usize, from: ReplicaRef },
}

impl Replication {
    pub fn shard(&self) -> usize {
        match self {
            Replication::Heartbeat { shard, .. }
            | Replication::TransferReq { shard, .. }
            | Replication::TransferAck { shard, .. }
            | Replication::Goodbye { shard, .. } => *shard,
        }
    }
    fn shards(&self) -> usize {
        match self {
            Replication::Heartbeat { shards, .. }
            | Replication::TransferReq { shards, .. }
            | Replication::TransferAck { shards, .. }
            | Replication::Goodbye { shards, .. } => *shards,
        }
    }
    fn from(&self) -> &ReplicaRef {
        match self {
            Replication::Heartbeat { from, .. }
            | Replication::TransferReq { from, .. }
            | Replication::TransferAck { from, .. }
            | Replication::Goodbye { from, .. } => from,
        }
    }
}

/// Where replication messages go ([`crate::cluster`] publishes them on Redis).
pub trait ReplicationBus: Send + Sync + 'static {
    /// Sends to every node (`to = None`) or to the node named `to`. Never waits.
    fn send(&self, to: Option<&str>, msg: &Replication);
}

/// How presence replicates (with a [`ReplicationBus`]).
#[derive(Clone)]
pub struct ReplicationOptions {
    pub bus: Arc<dyn ReplicationBus>,
    /// Heartbeat period: liveness and repair (not the delta latency: deltas go at once).
    pub heartbeat: Duration,
    pub timeouts: Timeouts,
    /// Remote messages queued per shard; beyond, they are dropped (heartbeats repair).
    pub queue: usize,
}

/// A shard's replication state.
pub(super) struct Replicator {
    pub(super) opts: ReplicationOptions,
    shard: usize,
    shards: usize,
    started: Instant,
    /// Transfers asked for and not yet answered, by replica (asked again after a heartbeat
    /// period without an answer).
    asked: HashMap<ReplicaRef, Instant>,
    /// Local changes since the last published delta.
    pub(super) unsent: usize,
}

impl Replicator {
    pub(super) fn new(opts: ReplicationOptions, shard: usize, shards: usize) -> Replicator {
        Replicator { opts, shard, shards, started: Instant::now(), asked: HashMap::new(), unsent: 0 }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Changes to send before a delta goes out even while commands keep queueing.
const MAX_UNSENT: usize = 64;

impl Shard {
    /// After a local operation: publish the delta now, unless more commands are queued (then
    /// after them, or after [`MAX_UNSENT`] changes).
    pub(super) fn after_local_change(&mut self, more_queued: bool) {
        let Some(r) = self.replication.as_mut() else {
            // Single node: nobody to send the delta to; keep it from growing.
            let _ = self.state.take_delta();
            return;
        };
        r.unsent += 1;
        if more_queued && r.unsent < MAX_UNSENT {
            return;
        }
        self.publish_heartbeat(false);
    }

    /// Publishes a heartbeat with the delta (if any); `always`: even without one.
    pub(super) fn publish_heartbeat(&mut self, always: bool) {
        let Some(r) = self.replication.as_mut() else { return };
        let delta = self.state.take_delta();
        r.unsent = 0;
        if delta.is_none() && !always {
            return;
        }
        let (from, clock) = self.state.clocks();
        let msg = Replication::Heartbeat { shard: r.shard, shards: r.shards, from, clock, delta };
        METRICS.cluster_presence_sent.inc();
        r.opts.bus.send(None, &msg);
    }

    /// The heartbeat tick: publish, then detect failed replicas.
    pub(super) async fn heartbeat_tick(&mut self) {
        let Some(r) = self.replication.as_ref() else {
            let _ = self.state.take_delta();
            return;
        };
        let (now, timeouts) = (r.now_ms(), r.opts.timeouts);
        self.publish_heartbeat(true);
        let diffs = self.state.detect_failures(now, &timeouts);
        self.emit_all(diffs).await;
    }

    /// A clean shutdown: tell the other nodes to forget this replica now.
    pub(super) fn goodbye(&mut self) {
        let Some(r) = self.replication.as_ref() else { return };
        let msg = Replication::Goodbye { shard: r.shard, shards: r.shards, from: self.replica.clone() };
        r.opts.bus.send(None, &msg);
    }

    /// A message from another node.
    pub(super) async fn handle_remote(&mut self, msg: Replication) {
        let Some(r) = self.replication.as_mut() else { return };
        METRICS.cluster_presence_received.inc();
        let from = msg.from().clone();
        if from == self.replica {
            return; // our own, back from the bus
        }
        if msg.shards() != r.shards || msg.shard() != r.shard {
            METRICS.cluster_presence_mismatched.inc();
            tracing::warn!(from = %from, their_shards = msg.shards(), our_shards = r.shards, "presence message from a node with another presence shard count ignored (set limits.shards alike on every node)");
            return;
        }
        if from.name == self.replica.name {
            METRICS.cluster_presence_mismatched.inc();
            tracing::error!(node = %from.name, "another node runs with this node's name: node names must be unique in a cluster");
            return;
        }
        let now = r.now_ms();
        let mut diffs = Diffs::new();
        match msg {
            Replication::Heartbeat { from, clock, delta, .. } => {
                tracker::merge_diffs(&mut diffs, self.state.handle_heartbeat(&from, now));
                if let Some(delta) = delta {
                    let start = delta.range.0.get(&from);
                    if start <= self.state.context().get(&from) {
                        tracker::merge_diffs(&mut diffs, self.state.merge(&delta));
                    } else {
                        // A gap before this delta: merge it anyway (dots are idempotent) and ask
                        // for the rest.
                        tracker::merge_diffs(&mut diffs, self.state.merge(&delta));
                        self.ask_transfer(&from, true);
                    }
                }
                if clock.get(&from) > self.state.context().get(&from) || has_unseen_dots(&self.state, &clock, &from) {
                    self.ask_transfer(&from, false);
                } else if let Some(r) = self.replication.as_mut() {
                    r.asked.remove(&from);
                }
            }
            Replication::TransferReq { from, context, .. } => {
                tracker::merge_diffs(&mut diffs, self.state.handle_heartbeat(&from, now));
                let mut ctx = context;
                // The requester may not know us yet (it asked because of our heartbeat): the
                // extract covers at least our own dots.
                if !ctx.contains(&self.replica) {
                    ctx.set(self.replica.clone(), 0);
                }
                let extract = self.state.extract(&ctx);
                let r = self.replication.as_ref().expect("replicating");
                let ack = Replication::TransferAck { shard: r.shard, shards: r.shards, from: self.replica.clone(), extract };
                METRICS.cluster_presence_transfers.inc();
                r.opts.bus.send(Some(&from.name), &ack);
            }
            Replication::TransferAck { from, extract, .. } => {
                tracker::merge_diffs(&mut diffs, self.state.handle_heartbeat(&from, now));
                tracker::merge_diffs(&mut diffs, self.state.merge(&extract));
                if let Some(r) = self.replication.as_mut() {
                    r.asked.remove(&from);
                }
            }
            Replication::Goodbye { from, .. } => {
                tracker::merge_diffs(&mut diffs, self.state.graceful_permdown(&from));
            }
        }
        self.emit_all(diffs).await;
    }

    /// Sends a `transfer_req` to `from`, at most once per heartbeat period while unanswered
    /// (`now`: ask even if asked recently — a gap was just seen).
    fn ask_transfer(&mut self, from: &ReplicaRef, now: bool) {
        let Some(r) = self.replication.as_mut() else { return };
        let period = r.opts.heartbeat;
        if let Some(at) = r.asked.get(from) {
            if !now && at.elapsed() < period || now && at.elapsed() < period / 4 {
                return;
            }
        }
        r.asked.insert(from.clone(), Instant::now());
        let (_, context) = self.state.clocks();
        let req = Replication::TransferReq { shard: r.shard, shards: r.shards, from: self.replica.clone(), context };
        r.opts.bus.send(Some(&from.name), &req);
    }

    async fn emit_all(&mut self, diffs: Diffs) {
        for (topic, diff) in diffs {
            self.emit(topic, diff).await;
        }
    }
}

/// Has the remote (per its clock) seen dots of replicas other than itself that we have not?
/// Only replicas we know are considered (others announce themselves with their heartbeats).
fn has_unseen_dots(state: &tracker::State, clock: &Context, from: &ReplicaRef) -> bool {
    clock.iter().any(|(r, n)| r != from && *r != *state.replica() && state.context().contains(r) && n > state.context().get(r))
}
