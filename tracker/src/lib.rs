//! # tracker — the Presence CRDT (Phoenix.Tracker.State in Rust)
//!
//! A pure, synchronous data structure: no tasks, no I/O, no clock reads (time is always passed
//! in). It is what keeps presence lists identical across nodes (spec §8), and what produces
//! the `presence_diff`s of Phoenix Presence (spec §7). Transport (heartbeat ticks, the bus,
//! `transfer_req` bookkeeping) is left to the caller.
//!
//! ## Model (spec §8.1, §8.3)
//!
//! Every tracker shard instance is a **replica**, identified by a [`ReplicaRef`]
//! `(name, vsn)`: the node name plus an incarnation number. A replica stores **elements**
//! `E = (topic, owner, key)` with a **meta** (a JSON object carrying a unique `phx_ref`,
//! spec §7.2). Owners ([`OwnerId`]) are cluster-unique (Phoenix: the channel pid); only the
//! owner's replica ever adds or removes an element, so there are no conflicting writes.
//!
//! Each add is tagged with a **dot** `(replica, counter)`. A replica's **context** is a version
//! vector `R → n` (all dots `(R, 1..=n)` seen) and its **clouds** hold dots seen beyond that
//! contiguous prefix. A dot is *seen* if the context or the clouds cover it. Elements of replicas
//! marked **down** stay stored but are hidden from [`State::list`] and reported as leaves; they
//! re-join when the replica comes back **up**, and are deleted on **permdown** (§8.7).
//!
//! ## Local operations (§8.4) and replication (§8.5, §8.8)
//!
//! [`State::track`], [`State::untrack`], [`State::untrack_owner`] and [`State::update`] change the
//! state, bump the own context entry and record the change in the **delta** (values added,
//! dots covered). Every operation returns the presence [`Diff`] it caused (`joins`/`leaves`
//! per key; an update has the key on both sides). Periodically the caller gossips
//! [`State::take_delta`] in a heartbeat; receivers [`State::merge`] it. A replica that misses
//! messages asks for a full [`State::extract`] (`transfer_req`/`transfer_ack`), chosen with the
//! clock algebra of §8.6 ([`clock::dominates`], [`ClockSet`], [`State::replicas_to_sync`]).
//! Merging follows §8.8 (adds only from known replicas, removes of what the remote has seen
//! but no longer has, clouds/context union, compaction); merges are commutative, associative
//! and idempotent, and replicas that receive the same deltas in any order, with duplicates,
//! converge. See [`State::merge`] for one deliberate deviation from Phoenix that makes the
//! latter true. Delta generations (§8.9) are not implemented: sending a full extract is
//! always correct.
//!
//! [`State::handle_heartbeat`] and [`State::detect_failures`] implement the up/down/permdown
//! transitions of §8.7; everything they hide or reveal comes back as diffs.
//!
//! ## Presence shapes (§7.2-§7.5, §12.1)
//!
//! [`State::list`] gives `key → [metas]` ([`Presences`], keys sorted); [`render_presences`] and
//! [`Diff::to_json`] (or serde on [`Diff`] / [`PresencesJson`]) give the wire shapes
//! `{"key":{"metas":[…]}}` and `{"joins":{…},"leaves":{…}}` with sorted keys, optionally
//! decorated by a `fetch` hook. [`Diff::merge`] coalesces two successive diffs of one topic
//! into one with the same effect under phoenix.js `syncDiff`, modelled in [`client`].
//!
//! ```
//! use tracker::{OwnerId, ReplicaRef, State};
//! use serde_json::json;
//!
//! let mut a = State::new(ReplicaRef::new("a", 1));
//! let mut b = State::new(ReplicaRef::new("b", 1));
//! b.handle_heartbeat(a.replica(), 0); // b learns about a
//! let owner = OwnerId::for_replica(a.replica(), 1);
//! let meta = json!({"online_at": 1}).as_object().unwrap().clone();
//! let (phx_ref, diff) = a.track("room:lobby", &owner, "42", meta).unwrap();
//! assert_eq!(diff.joins["42"][0]["phx_ref"], json!(phx_ref));
//! let delta = a.take_delta().unwrap();
//! let diffs = b.merge(&delta);
//! assert_eq!(diffs["room:lobby"], diff);
//! assert_eq!(b.list("room:lobby"), a.list("room:lobby"));
//! ```

pub mod clock;
pub mod diff;
pub mod ids;
pub mod state;
pub mod wire;

pub use clock::{dominates, dominates_or_equal, lowerbound, upperbound, ClockSet, Clouds, Context};
pub use diff::{
    client, merge_diffs, parse_presences, phx_ref, render_presences, render_presences_with, Diff,
    Diffs, Meta, Presences, PresencesJson,
};
pub use ids::{encode_phx_ref, Dot, OwnerId, RefGen, ReplicaRef};
pub use state::{AlreadyTracked, NoPresence, ReplicaInfo, ReplicaStatus, State, Timeouts};
pub use wire::{Delta, Element, Extract, Payload, Remote, Values};
