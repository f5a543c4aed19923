//! The replica state and its operations (spec §8.3-§8.8).
//!
//! Longer than the ~600-line guideline on purpose: one data structure whose invariants (values,
//! clouds, context and delta kept consistent) span every operation, mirroring
//! Phoenix.Tracker.State function by function; split across files, each invariant would have
//! to be re-read in several places.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::clock::{ClockSet, Clouds, Context};
use crate::diff::{merge_diffs, Diff, Diffs, Meta, Presences};
use crate::ids::{Dot, OwnerId, RefGen, ReplicaRef};
use crate::wire::{Delta, Element, Extract, Remote, Values};

type Str = Arc<str>;

/// Status of a remote replica (spec §8.3/§8.7). Elements of a `Down` replica stay stored but
/// are hidden from [`State::list`]/[`State::get_by_key`] and excluded from [`State::clocks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplicaStatus {
    Up,
    Down,
}

/// What a state knows about a remote replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub status: ReplicaStatus,
    /// Time (caller's ms clock) of the last [`State::handle_heartbeat`]; `None` if the
    /// replica was only brought up with [`State::replica_up`]. Failure detection
    /// ([`State::detect_failures`]) ignores replicas without a heartbeat time.
    pub last_heartbeat_ms: Option<u64>,
}

/// Failure-detection periods (spec §8.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Default 30 000 ms (`broadcast_period × max_silent_periods × 2`).
    pub down_period_ms: u64,
    /// Default 1 200 000 ms (20 min).
    pub permdown_period_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            down_period_ms: 30_000,
            permdown_period_ms: 1_200_000,
        }
    }
}

/// `track` of an element `(topic, owner, key)` that already exists (spec §7.1
/// `{:error, {:already_tracked, pid, topic, key}}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlreadyTracked {
    pub topic: String,
    pub owner: OwnerId,
    pub key: String,
}

impl fmt::Display for AlreadyTracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "already tracked: owner {} topic {:?} key {:?}",
            self.owner, self.topic, self.key
        )
    }
}

impl std::error::Error for AlreadyTracked {}

/// `update` of an element that this replica does not track (`{:error, :nopresence}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoPresence;

impl fmt::Display for NoPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nopresence")
    }
}

impl std::error::Error for NoPresence {}

#[derive(Clone, Debug)]
struct Entry {
    meta: Meta,
    dot: Dot,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ElemKey {
    topic: Str,
    owner: OwnerId,
    key: Str,
}

/// Collects joins and leaves of one operation, ordered by (topic, key, owner).
#[derive(Default)]
struct DiffBuilder {
    joins: BTreeMap<(Str, Str, OwnerId), Meta>,
    leaves: BTreeMap<(Str, Str, OwnerId), Meta>,
}

impl DiffBuilder {
    fn join(&mut self, ek: &ElemKey, meta: Meta) {
        self.joins
            .insert((ek.topic.clone(), ek.key.clone(), ek.owner.clone()), meta);
    }
    fn leave(&mut self, ek: &ElemKey, meta: Meta) {
        self.leaves
            .insert((ek.topic.clone(), ek.key.clone(), ek.owner.clone()), meta);
    }
    fn finish(self) -> Diffs {
        let mut out = Diffs::new();
        for ((topic, key, _), meta) in self.joins {
            out.entry(topic.to_string())
                .or_default()
                .add_join(&key, meta);
        }
        for ((topic, key, _), meta) in self.leaves {
            out.entry(topic.to_string())
                .or_default()
                .add_leave(&key, meta);
        }
        out
    }
}

/// One tracker replica (one shard of one node): the Presence CRDT of spec §8.3.
///
/// Storage: values `E=(topic, owner, key) → (meta, dot)` are held in a topic index
/// (`topic → key → owner → (meta, dot)`), with an owner index (`owner → topic → {key}`) and a
/// dot index (`replica → counter → E`). `list`/`get_by_key` are O(members of the topic),
/// `untrack_owner` is O(elements of the owner), merging a delta is O(delta · log n), and
/// up/down/permdown are O(elements of that replica).
#[derive(Clone, Debug)]
pub struct State {
    replica: ReplicaRef,
    context: Context,
    clouds: Clouds,
    topics: HashMap<Str, BTreeMap<Str, BTreeMap<OwnerId, Entry>>>,
    owners: HashMap<OwnerId, BTreeMap<Str, BTreeSet<Str>>>,
    dots: HashMap<ReplicaRef, BTreeMap<u64, ElemKey>>,
    replicas: BTreeMap<ReplicaRef, ReplicaInfo>,
    down: usize,
    delta: Delta,
    refs: RefGen,
    len: usize,
}

impl State {
    /// A fresh replica: `context = {self: 0}`, empty clouds, values and delta.
    pub fn new(replica: ReplicaRef) -> Self {
        let context: Context = [(replica.clone(), 0)].into_iter().collect();
        State {
            delta: Delta::empty(replica.clone(), 0),
            refs: RefGen::new(&replica),
            replica,
            context,
            clouds: Clouds::new(),
            topics: HashMap::new(),
            owners: HashMap::new(),
            dots: HashMap::new(),
            replicas: BTreeMap::new(),
            down: 0,
            len: 0,
        }
    }

    // ------------------------------------------------------------------ accessors

    /// This replica's ref (`self` in the spec).
    pub fn replica(&self) -> &ReplicaRef {
        &self.replica
    }

    /// The causal context (version vector). Its keys are the known replicas.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Dots seen beyond the contiguous prefix of the context.
    pub fn clouds(&self) -> &Clouds {
        &self.clouds
    }

    /// The current (not yet gossiped) delta.
    pub fn delta(&self) -> &Delta {
        &self.delta
    }

    /// Number of stored elements, hidden ones (of down replicas) included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds the `phx_ref` generator's timestamp (ns). The state never reads a clock; refs stay
    /// unique without this (see [`RefGen`]).
    pub fn set_now_ns(&mut self, now_ns: u64) {
        self.refs.set_now_ns(now_ns);
    }

    /// `seen(d)`: `context[R] ≥ n` or `d ∈ clouds[R]` (spec §8.3).
    pub fn seen(&self, dot: &Dot) -> bool {
        self.seen_rc(&dot.replica, dot.counter)
    }

    fn seen_rc(&self, r: &ReplicaRef, n: u64) -> bool {
        self.context.get(r) >= n || self.clouds.contains(r, n)
    }

    /// The clocks sent in heartbeats and `transfer_req`: `(self, context minus the replicas
    /// currently marked down)` (spec §8.2, gotcha 46).
    pub fn clocks(&self) -> (ReplicaRef, Context) {
        let ctx = if self.down == 0 {
            self.context.clone()
        } else {
            self.context
                .iter()
                .filter(|(r, _)| self.is_visible(r))
                .map(|(r, n)| (r.clone(), n))
                .collect()
        };
        (self.replica.clone(), ctx)
    }

    /// Status of a replica: `Some(Up)` for self; `None` if unknown.
    pub fn replica_status(&self, r: &ReplicaRef) -> Option<ReplicaStatus> {
        if *r == self.replica {
            return Some(ReplicaStatus::Up);
        }
        self.replicas.get(r).map(|i| i.status)
    }

    /// Known remote replicas.
    pub fn replicas(&self) -> impl Iterator<Item = (&ReplicaRef, &ReplicaInfo)> {
        self.replicas.iter()
    }

    /// Topics with at least one stored element (hidden ones included), in no particular order.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(|t| &**t)
    }

    fn is_visible(&self, r: &ReplicaRef) -> bool {
        self.down == 0
            || !matches!(
                self.replicas.get(r),
                Some(ReplicaInfo {
                    status: ReplicaStatus::Down,
                    ..
                })
            )
    }

    /// Visible presences of `topic`: `key → [meta, …]`, keys sorted, metas in owner order.
    /// O(members of the topic).
    pub fn list(&self, topic: &str) -> Presences {
        let mut out = Presences::new();
        if let Some(keys) = self.topics.get(topic) {
            for (key, owners) in keys {
                let metas: Vec<Meta> = owners
                    .values()
                    .filter(|e| self.is_visible(&e.dot.replica))
                    .map(|e| e.meta.clone())
                    .collect();
                if !metas.is_empty() {
                    out.insert(key.to_string(), metas);
                }
            }
        }
        out
    }

    /// Visible metas of one key of a topic (empty if none), in owner order.
    pub fn get_by_key(&self, topic: &str, key: &str) -> Vec<Meta> {
        self.topics
            .get(topic)
            .and_then(|keys| keys.get(key))
            .map(|owners| {
                owners
                    .values()
                    .filter(|e| self.is_visible(&e.dot.replica))
                    .map(|e| e.meta.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The stored element `(topic, owner, key)` (hidden or not): its meta and dot.
    pub fn get(&self, topic: &str, owner: &OwnerId, key: &str) -> Option<(&Meta, &Dot)> {
        self.entry(topic, owner, key).map(|e| (&e.meta, &e.dot))
    }

    /// `(topic, key)` of every stored element of `owner`, sorted.
    pub fn owner_elements(&self, owner: &OwnerId) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(ts) = self.owners.get(owner) {
            for (t, ks) in ts {
                for k in ks {
                    out.push((t.to_string(), k.to_string()));
                }
            }
        }
        out
    }

    fn entry(&self, topic: &str, owner: &OwnerId, key: &str) -> Option<&Entry> {
        self.topics.get(topic)?.get(key)?.get(owner)
    }

    fn own_entry(&self, topic: &str, owner: &OwnerId, key: &str) -> Option<&Entry> {
        self.entry(topic, owner, key)
            .filter(|e| e.dot.replica == self.replica)
    }

    // ------------------------------------------------------------------ storage

    /// Inserts (or replaces) an element, maintaining all indexes. Returns the replaced entry.
    fn insert_entry(
        &mut self,
        topic: &str,
        owner: &OwnerId,
        key: &str,
        meta: Meta,
        dot: Dot,
    ) -> (ElemKey, Option<Entry>) {
        let t: Str = match self.topics.get_key_value(topic) {
            Some((t, _)) => t.clone(),
            None => Arc::from(topic),
        };
        let keys = self.topics.entry(t.clone()).or_default();
        let k: Str = match keys.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        };
        let old = keys.entry(k.clone()).or_default().insert(
            owner.clone(),
            Entry {
                meta,
                dot: dot.clone(),
            },
        );
        match &old {
            Some(old) => self.remove_dot_index(&old.dot),
            None => {
                self.len += 1;
                self.owners
                    .entry(owner.clone())
                    .or_default()
                    .entry(t.clone())
                    .or_default()
                    .insert(k.clone());
            }
        }
        let ek = ElemKey {
            topic: t,
            owner: owner.clone(),
            key: k,
        };
        self.dots
            .entry(dot.replica)
            .or_default()
            .insert(dot.counter, ek.clone());
        (ek, old)
    }

    fn remove_dot_index(&mut self, dot: &Dot) {
        if let Some(m) = self.dots.get_mut(&dot.replica) {
            m.remove(&dot.counter);
            if m.is_empty() {
                self.dots.remove(&dot.replica);
            }
        }
    }

    /// Removes an element from all indexes.
    fn remove_entry(&mut self, topic: &str, owner: &OwnerId, key: &str) -> Option<Entry> {
        let keys = self.topics.get_mut(topic)?;
        let by_owner = keys.get_mut(key)?;
        let entry = by_owner.remove(owner)?;
        if by_owner.is_empty() {
            keys.remove(key);
            if keys.is_empty() {
                self.topics.remove(topic);
            }
        }
        if let Some(ts) = self.owners.get_mut(owner) {
            if let Some(ks) = ts.get_mut(topic) {
                ks.remove(key);
                if ks.is_empty() {
                    ts.remove(topic);
                }
            }
            if ts.is_empty() {
                self.owners.remove(owner);
            }
        }
        self.remove_dot_index(&entry.dot);
        self.len -= 1;
        Some(entry)
    }

    fn remove_by_dot(&mut self, r: &ReplicaRef, n: u64) -> Option<(ElemKey, Entry)> {
        let ek = self.dots.get(r)?.get(&n)?.clone();
        let e = self.remove_entry(&ek.topic, &ek.owner, &ek.key)?;
        Some((ek, e))
    }

    /// Stored elements of replica `r`, in dot order.
    fn elements_of(&self, r: &ReplicaRef) -> Vec<(ElemKey, Meta)> {
        let Some(m) = self.dots.get(r) else {
            return Vec::new();
        };
        m.values()
            .filter_map(|ek| {
                self.entry(&ek.topic, &ek.owner, &ek.key)
                    .map(|e| (ek.clone(), e.meta.clone()))
            })
            .collect()
    }

    // ------------------------------------------------------------------ local operations (§8.4)

    /// *bump*: `context[self] += 1`, new dot recorded in the delta's clouds and range end.
    /// (Own dots are not added to the local clouds: the context already covers them, which is
    /// what Phoenix's compaction reduces them to.)
    fn bump(&mut self) -> Dot {
        let n = self.context.get(&self.replica) + 1;
        self.context.set(self.replica.clone(), n);
        self.delta.clouds.insert(&self.replica, n);
        self.delta.range.1.set(self.replica.clone(), n);
        Dot::new(self.replica.clone(), n)
    }

    /// Adds an own element under a fresh dot: stored, and recorded in the delta for gossip
    /// (shared by track and update).
    fn add_own(&mut self, topic: &str, owner: &OwnerId, key: &str, meta: &Meta) {
        let dot = self.bump();
        self.delta.values.insert(
            dot.clone(),
            Element { owner: owner.clone(), topic: topic.to_owned(), key: key.to_owned(), meta: meta.clone() },
        );
        self.insert_entry(topic, owner, key, meta.clone(), dot);
    }

    /// Tracks `(topic, owner, key)` with `meta` (spec §8.4 **track**). The stored and reported
    /// meta is `meta` plus a fresh `"phx_ref"`. Returns the `phx_ref` and the join diff of the
    /// topic; `Err(AlreadyTracked)` (and no change) if the element exists.
    pub fn track(
        &mut self,
        topic: &str,
        owner: &OwnerId,
        key: &str,
        mut meta: Meta,
    ) -> Result<(String, Diff), AlreadyTracked> {
        if self.entry(topic, owner, key).is_some() {
            return Err(AlreadyTracked {
                topic: topic.to_owned(),
                owner: owner.clone(),
                key: key.to_owned(),
            });
        }
        let phx_ref = self.refs.next_ref();
        meta.insert("phx_ref".into(), Value::String(phx_ref.clone()));
        self.add_own(topic, owner, key, &meta);
        let mut diff = Diff::new();
        diff.add_join(key, meta);
        Ok((phx_ref, diff))
    }

    /// *untrack* core: removes an own element and records the removal in the delta.
    fn local_remove(&mut self, topic: &str, owner: &OwnerId, key: &str) -> Option<Entry> {
        self.own_entry(topic, owner, key)?;
        let e = self.remove_entry(topic, owner, key)?;
        self.clouds.remove(&e.dot.replica, e.dot.counter);
        self.delta.values.remove(&e.dot.replica, e.dot.counter);
        self.delta.clouds.insert(&e.dot.replica, e.dot.counter);
        self.bump();
        Some(e)
    }

    /// Untracks `(topic, owner, key)` (spec §8.4 **untrack**): the dot is recorded as removed
    /// in the delta (an unsent add simply vanishes from it). Returns the leave diff of the
    /// topic, empty if the element is absent (no-op). Only elements added by this replica are
    /// touched: a replica never removes another replica's elements.
    pub fn untrack(&mut self, topic: &str, owner: &OwnerId, key: &str) -> Diff {
        let mut diff = Diff::new();
        if let Some(e) = self.local_remove(topic, owner, key) {
            diff.add_leave(key, e.meta);
        }
        diff
    }

    /// Owner exit (spec §8.4): untracks every element of `owner`, reported together
    /// (`topic → leave diff`).
    pub fn untrack_owner(&mut self, owner: &OwnerId) -> Diffs {
        let mut out = Diffs::new();
        for (topic, key) in self.owner_elements(owner) {
            if let Some(e) = self.local_remove(&topic, owner, &key) {
                out.entry(topic).or_default().add_leave(&key, e.meta);
            }
        }
        out
    }

    /// Replaces the meta of `(topic, owner, key)` (spec §8.4 **update**). The new meta gets a
    /// fresh `"phx_ref"` and `"phx_ref_prev"` = the old ref. Returns the new ref and one diff
    /// with the key in both `joins` (new meta) and `leaves` (old meta);
    /// `Err(NoPresence)` if this replica does not track the element.
    pub fn update(
        &mut self,
        topic: &str,
        owner: &OwnerId,
        key: &str,
        meta: Meta,
    ) -> Result<(String, Diff), NoPresence> {
        self.update_with(topic, owner, key, |_| meta)
    }

    /// Like [`State::update`], computing the new meta from the current one (which includes
    /// `phx_ref`), like Phoenix's `update/4` with a function.
    pub fn update_with<F: FnOnce(&Meta) -> Meta>(
        &mut self,
        topic: &str,
        owner: &OwnerId,
        key: &str,
        f: F,
    ) -> Result<(String, Diff), NoPresence> {
        let current = self.own_entry(topic, owner, key).ok_or(NoPresence)?;
        let mut meta = f(&current.meta);
        let old = self.local_remove(topic, owner, key).ok_or(NoPresence)?;
        let new_ref = self.refs.next_ref();
        meta.insert("phx_ref".into(), Value::String(new_ref.clone()));
        match old.meta.get("phx_ref") {
            Some(prev) => meta.insert("phx_ref_prev".into(), prev.clone()),
            None => meta.remove("phx_ref_prev"),
        };
        self.add_own(topic, owner, key, &meta);
        let mut diff = Diff::new();
        diff.add_join(key, meta);
        diff.add_leave(key, old.meta);
        Ok((new_ref, diff))
    }

    // ------------------------------------------------------------------ gossip (§8.5)

    /// True iff the delta covers at least one dot (then it should be gossiped).
    pub fn has_delta(&self) -> bool {
        self.delta.has_dots()
    }

    /// Gossip step of the heartbeat tick (spec §8.5): if the delta covers any dot, returns it
    /// and replaces it by a fresh one (`range = ({self: ctx[self]}, {self: ctx[self]})`), then
    /// compacts. `None` (and no change) if there is nothing to send — the caller then sends an
    /// empty heartbeat when its silent-period count says so.
    pub fn take_delta(&mut self) -> Option<Delta> {
        if !self.has_delta() {
            return None;
        }
        let fresh = Delta::empty(self.replica.clone(), self.context.get(&self.replica));
        let d = std::mem::replace(&mut self.delta, fresh);
        self.compact();
        Some(d)
    }

    // ------------------------------------------------------------------ merge and extract (§8.8)

    /// Full extract for a requester whose context is `for_remote_context` (keys `K`): context
    /// and clouds restricted to `K`, values = every stored element (hidden ones included) whose
    /// dot's replica is in `K`. Cost O(elements of the replicas in `K`).
    pub fn extract(&self, for_remote_context: &Context) -> Extract {
        let mut values = Values::new();
        for r in for_remote_context.replicas() {
            let Some(m) = self.dots.get(r) else { continue };
            for (n, ek) in m {
                if let Some(e) = self.entry(&ek.topic, &ek.owner, &ek.key) {
                    values.insert(
                        Dot::new(r.clone(), *n),
                        Element {
                            owner: ek.owner.clone(),
                            topic: ek.topic.to_string(),
                            key: ek.key.to_string(),
                            meta: e.meta.clone(),
                        },
                    );
                }
            }
        }
        Extract {
            replica: self.replica.clone(),
            context: self.context.restrict_to(for_remote_context),
            clouds: self.clouds.restrict_to(for_remote_context),
            values,
        }
    }

    /// Extract of everything this replica knows (`extract(self.context())`).
    pub fn full_extract(&self) -> Extract {
        self.extract(&self.context)
    }

    /// Merges a remote delta or full extract (spec §8.8) and returns the presence diffs
    /// (`topic → Diff`) it caused:
    ///
    /// 1. **Adds**: a remote value with dot `d=(R',n)` is accepted iff `R'` is known (a key of
    ///    the local context) and `d` is not locally seen.
    /// 2. **Removes**: a local element with dot `d=(R',n)`, `R' ≠ self`, is removed iff `d` is not
    ///    among the remote values and the remote has seen `d` (remote context or clouds). Removed
    ///    dots are added to the local delta's clouds (re-gossiped) and dropped from its values.
    ///    A replica never removes its own elements because of a remote message.
    /// 3. **Clouds**: union with the remote clouds of known replicas other than self.
    /// 4. Apply removes, then adds (an add for an existing element replaces it: update).
    /// 5. **Context**: pointwise max with the remote context restricted to known replicas
    ///    other than self.
    ///
    /// (Skipping self in 3 and 5 changes nothing in a sane cluster — nobody knows more of our
    /// own dots than we do — but a bogus or misrouted message cannot move our own counter.)
    /// 6. **Compact** the touched replicas.
    /// 7. Adds are reported as joins and removes as leaves — except elements of replicas marked
    ///    down, which are hidden and so reported by neither (they re-join on `replica_up`).
    ///
    /// Deviation from Phoenix (deliberate): Phoenix also deletes removed dots from the local
    /// clouds ("minus the removed dots"). When the removed dot is not covered by the context
    /// (a gap before it), that makes it un-seen again, so a duplicated or late copy of the
    /// delta that added it resurrects the element (until a full transfer repairs it). Keeping
    /// the dot in the clouds keeps it seen; compaction folds it into the context once the gap
    /// closes. Likewise, Phoenix lets any add overwrite an existing element with the same
    /// `(topic, owner, key)`; here a late add whose dot is older than the stored one from the
    /// same replica (the owner untracked and re-tracked in between) is ignored instead of
    /// replacing the newer element (which the later removal of the old dot would then lose).
    /// Phoenix relies on ordered delivery between two nodes; with both changes replicas
    /// receiving the same deltas in any order, with duplicates, converge (property-tested).
    pub fn merge<R: Remote + ?Sized>(&mut self, remote: &R) -> Diffs {
        let rv = remote.remote_values();
        let rc = remote.remote_clouds();
        let rx = remote.remote_context();
        let mut b = DiffBuilder::default();

        // 1. adds
        let mut adds: Vec<(&ReplicaRef, u64, &Element)> = Vec::new();
        for (r, m) in &rv.0 {
            if !self.context.contains(r) {
                continue;
            }
            for (n, el) in m {
                if !self.seen_rc(r, *n) {
                    adds.push((r, *n, el));
                }
            }
        }

        // 2. removes (candidates found through the dot index: O(remote dots), not O(values))
        let mut removes: Vec<(ReplicaRef, u64)> = Vec::new();
        if let Some(rx) = rx {
            for (r, upto) in rx.iter() {
                if *r == self.replica {
                    continue;
                }
                if let Some(m) = self.dots.get(r) {
                    for n in m.range(..=upto).map(|(n, _)| *n) {
                        if !rv.contains(r, n) {
                            removes.push((r.clone(), n));
                        }
                    }
                }
            }
        }
        for (r, cloud) in rc.iter() {
            if *r == self.replica {
                continue;
            }
            let upto = rx.map_or(0, |x| x.get(r));
            if let Some(m) = self.dots.get(r) {
                for n in cloud.range(upto + 1..) {
                    if m.contains_key(n) && !rv.contains(r, *n) {
                        removes.push((r.clone(), *n));
                    }
                }
            }
        }

        // 3. clouds
        let mut touched: BTreeSet<ReplicaRef> = BTreeSet::new();
        for (r, cloud) in rc.iter() {
            if *r == self.replica || !self.context.contains(r) || cloud.is_empty() {
                continue;
            }
            match self.clouds.0.get_mut(r) {
                Some(c) => c.extend(cloud.iter().copied()),
                None => {
                    self.clouds.0.insert(r.clone(), cloud.clone());
                }
            }
            touched.insert(r.clone());
        }

        // 4. apply removes, then adds
        for (r, n) in removes {
            if let Some((ek, e)) = self.remove_by_dot(&r, n) {
                self.delta.clouds.insert(&r, n);
                self.delta.values.remove(&r, n);
                if self.is_visible(&r) {
                    b.leave(&ek, e.meta);
                }
            }
        }
        for (r, n, el) in adds {
            if let Some(existing) = self.entry(&el.topic, &el.owner, &el.key) {
                // Owner ids are cluster-unique, so a remote add never targets an element this
                // replica owns; if it does anyway (misconfigured ids), the local element wins.
                if existing.dot.replica == self.replica {
                    continue;
                }
                // A late add of an older incarnation of the same element (the owner untracked
                // it and tracked it again): the newer dot wins; the older one is dead.
                if existing.dot.replica == *r && existing.dot.counter > n {
                    continue;
                }
            }
            let (ek, old) = self.insert_entry(
                &el.topic,
                &el.owner,
                &el.key,
                el.meta.clone(),
                Dot::new(r.clone(), n),
            );
            if let Some(old) = old {
                if self.is_visible(&old.dot.replica) {
                    b.leave(&ek, old.meta);
                }
            }
            if self.is_visible(r) {
                b.join(&ek, el.meta.clone());
            }
        }

        // 5. context
        if let Some(rx) = rx {
            for (r, n) in rx.iter() {
                if *r == self.replica {
                    continue;
                }
                if let Some(local) = self.context.0.get_mut(r) {
                    if n > *local {
                        *local = n;
                        touched.insert(r.clone());
                    }
                }
            }
        }

        // 6. compact
        for r in &touched {
            self.compact_replica(r);
        }

        b.finish()
    }

    /// Compaction (spec §8.8 step 6) of every replica's cloud.
    pub fn compact(&mut self) {
        let rs: Vec<ReplicaRef> = self.clouds.0.keys().cloned().collect();
        for r in &rs {
            self.compact_replica(r);
        }
    }

    /// Walks `clouds[r]` in ascending order: `n = ctx+1` → advance ctx, drop; `n ≤ ctx` → drop;
    /// `r` absent from the context and `n = 1` → ctx = 1, drop; otherwise keep (and stop: every
    /// later dot is kept too).
    fn compact_replica(&mut self, r: &ReplicaRef) {
        let Some(cloud) = self.clouds.0.get_mut(r) else {
            return;
        };
        let mut ctx = self.context.0.get(r).copied();
        while let Some(&n) = cloud.first() {
            match ctx {
                Some(c) if n == c + 1 => ctx = Some(n),
                Some(c) if n <= c => {}
                None if n == 1 => ctx = Some(1),
                _ => break,
            }
            cloud.pop_first();
        }
        if cloud.is_empty() {
            self.clouds.0.remove(r);
        }
        if let Some(c) = ctx {
            self.context.set(r.clone(), c);
        }
    }

    // ------------------------------------------------------------------ replicas (§8.7)

    /// *up(R)*: `context[R]` set to 0 if absent, status up. If `R` was down, every stored
    /// element of `R` is reported again as a join. No-op for self.
    pub fn replica_up(&mut self, r: &ReplicaRef) -> Diffs {
        if *r == self.replica {
            return Diffs::new();
        }
        if !self.context.contains(r) {
            self.context.set(r.clone(), 0);
        }
        let was_down = self.replica_status(r) == Some(ReplicaStatus::Down);
        let info = self.replicas.entry(r.clone()).or_insert(ReplicaInfo {
            status: ReplicaStatus::Up,
            last_heartbeat_ms: None,
        });
        info.status = ReplicaStatus::Up;
        if !was_down {
            return Diffs::new();
        }
        self.down -= 1;
        let mut b = DiffBuilder::default();
        for (ek, meta) in self.elements_of(r) {
            b.join(&ek, meta);
        }
        b.finish()
    }

    /// *down(R)*: status down; every element of `R` stays stored but is hidden and reported
    /// as a leave. No-op for self, for an unknown replica, or one already down.
    pub fn replica_down(&mut self, r: &ReplicaRef) -> Diffs {
        let Some(info) = self.replicas.get_mut(r) else {
            return Diffs::new();
        };
        if info.status == ReplicaStatus::Down {
            return Diffs::new();
        }
        info.status = ReplicaStatus::Down;
        let mut b = DiffBuilder::default();
        for (ek, meta) in self.elements_of(r) {
            b.leave(&ek, meta);
        }
        self.down += 1;
        b.finish()
    }

    /// *permdown(R)*: deletes every element of `R` and forgets `R` (context, clouds, delta,
    /// replicas map). Elements that were still visible (R up) are reported as leaves. After
    /// this, messages from `R` are ignored until it is brought up again. No-op for self.
    pub fn replica_permdown(&mut self, r: &ReplicaRef) -> Diffs {
        if *r == self.replica {
            return Diffs::new();
        }
        let visible = self.is_visible(r);
        let mut b = DiffBuilder::default();
        let dots: Vec<u64> = self
            .dots
            .get(r)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        for n in dots {
            if let Some((ek, e)) = self.remove_by_dot(r, n) {
                if visible {
                    b.leave(&ek, e.meta);
                }
            }
        }
        self.context.remove(r);
        self.clouds.0.remove(r);
        self.delta.clouds.0.remove(r);
        self.delta.values.remove_replica(r);
        self.delta.range.0.remove(r);
        self.delta.range.1.remove(r);
        if let Some(info) = self.replicas.remove(r) {
            if info.status == ReplicaStatus::Down {
                self.down -= 1;
            }
        }
        b.finish()
    }

    /// *handle_heartbeat((name, vsn))* (spec §8.7), to call for every heartbeat received
    /// (before merging its delta): records `now_ms` and then
    /// * unknown name → *up(R)*;
    /// * same vsn, up → nothing else; same vsn, down → *up(R)*;
    /// * different vsn, old up → *down(old)*, *permdown(old)*, *up(new)*;
    /// * different vsn, old down → *permdown(old)*, *up(new)*.
    ///
    /// Returns the combined diffs. A heartbeat from self is ignored.
    pub fn handle_heartbeat(&mut self, r: &ReplicaRef, now_ms: u64) -> Diffs {
        if *r == self.replica {
            return Diffs::new();
        }
        let mut out = Diffs::new();
        let olds: Vec<ReplicaRef> = self
            .replicas
            .keys()
            .filter(|k| k.name == r.name && k.vsn != r.vsn)
            .cloned()
            .collect();
        for old in olds {
            merge_diffs(&mut out, self.replica_down(&old));
            merge_diffs(&mut out, self.replica_permdown(&old));
        }
        match self.replica_status(r) {
            Some(ReplicaStatus::Up) => {}
            _ => merge_diffs(&mut out, self.replica_up(r)),
        }
        if let Some(info) = self.replicas.get_mut(r) {
            info.last_heartbeat_ms = Some(now_ms);
        }
        out
    }

    /// `graceful_permdown(R)` (spec §8.7): if a replica with that name **and** vsn is known,
    /// down then permdown.
    pub fn graceful_permdown(&mut self, r: &ReplicaRef) -> Diffs {
        if !self.replicas.contains_key(r) {
            return Diffs::new();
        }
        let mut out = self.replica_down(r);
        merge_diffs(&mut out, self.replica_permdown(r));
        out
    }

    /// Failure detection of the heartbeat tick (spec §8.5 step 3): for each remote replica with
    /// a heartbeat time, `now − last_heartbeat > permdown_period` → permdown (after down if it
    /// was up); else `> down_period` → down.
    pub fn detect_failures(&mut self, now_ms: u64, t: &Timeouts) -> Diffs {
        let mut out = Diffs::new();
        let candidates: Vec<(ReplicaRef, u64)> = self
            .replicas
            .iter()
            .filter_map(|(r, i)| {
                i.last_heartbeat_ms
                    .map(|at| (r.clone(), now_ms.saturating_sub(at)))
            })
            .collect();
        for (r, elapsed) in candidates {
            if elapsed > t.permdown_period_ms {
                merge_diffs(&mut out, self.replica_down(&r));
                merge_diffs(&mut out, self.replica_permdown(&r));
            } else if elapsed > t.down_period_ms {
                merge_diffs(&mut out, self.replica_down(&r));
            }
        }
        out
    }

    /// Catch-up (spec §8.5 step 2, §8.6): the replicas to send `transfer_req` to, i.e. the refs
    /// left in `append(pending, own clocks)`, minus self. Empty when our own clock dominates
    /// everything heard. The caller clears `pending` afterwards.
    pub fn replicas_to_sync(&self, pending: &ClockSet) -> Vec<ReplicaRef> {
        let mut set = pending.clone();
        let (me, ctx) = self.clocks();
        set.append(me, ctx);
        set.replicas()
            .filter(|r| **r != self.replica)
            .cloned()
            .collect()
    }
}
