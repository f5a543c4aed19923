//! Shared helpers for the integration tests: a small cluster of replicas driven by random
//! operation histories, and checks of diffs against the phoenix.js model.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{json, Value};
use tracker::client::sync_diff;
use tracker::{Delta, Diffs, Meta, OwnerId, Presences, ReplicaRef, State};

pub const TOPICS: [&str; 2] = ["room:a", "room:b"];
pub const KEYS: [&str; 3] = ["42", "alice", "bob"];
pub const OWNERS: usize = 3;

pub fn meta(v: Value) -> Meta {
    v.as_object().expect("meta must be an object").clone()
}

pub fn rep(i: usize) -> ReplicaRef {
    ReplicaRef::new(format!("n{i}"), 1)
}

pub fn owner(rep_i: usize, o: usize) -> OwnerId {
    OwnerId::for_replica(&rep(rep_i), o as u64)
}

pub fn ref_of(m: &Meta) -> String {
    m["phx_ref"].as_str().expect("phx_ref").to_owned()
}

/// Metas of every key sorted by phx_ref (list order vs. syncDiff order is not meaningful).
pub fn normalize(p: &Presences) -> Presences {
    p.iter()
        .map(|(k, ms)| {
            let mut ms = ms.clone();
            ms.sort_by_key(ref_of);
            (k.clone(), ms)
        })
        .collect()
}

pub fn lists(s: &State) -> BTreeMap<String, Presences> {
    TOPICS.iter().map(|t| (t.to_string(), s.list(t))).collect()
}

/// Checks that `diffs` turn `before` into `after` under phoenix.js syncDiff, that no topic has
/// an empty diff, that every left meta was visible before and every joined meta was not.
pub fn check_diffs(
    before: &BTreeMap<String, Presences>,
    diffs: &Diffs,
    after: &BTreeMap<String, Presences>,
) -> Result<(), String> {
    for (topic, d) in diffs {
        if d.is_empty() {
            return Err(format!("empty diff reported for {topic}"));
        }
        if !TOPICS.contains(&topic.as_str()) {
            return Err(format!("diff for unknown topic {topic}"));
        }
    }
    for topic in TOPICS {
        let b = &before[topic];
        let mut expected = b.clone();
        if let Some(d) = diffs.get(topic) {
            for (key, joined) in &d.joins {
                let had: BTreeSet<String> = b
                    .get(key)
                    .map(|ms| ms.iter().map(ref_of).collect())
                    .unwrap_or_default();
                for m in joined {
                    if had.contains(&ref_of(m)) {
                        return Err(format!(
                            "{topic}/{key}: joined ref {} was already visible",
                            ref_of(m)
                        ));
                    }
                }
            }
            for (key, left) in &d.leaves {
                let had: BTreeSet<String> = b
                    .get(key)
                    .map(|ms| ms.iter().map(ref_of).collect())
                    .unwrap_or_default();
                for m in left {
                    if !had.contains(&ref_of(m)) {
                        return Err(format!(
                            "{topic}/{key}: left ref {} was not visible",
                            ref_of(m)
                        ));
                    }
                }
            }
            sync_diff(&mut expected, d);
        }
        if normalize(&expected) != normalize(&after[topic]) {
            return Err(format!(
                "{topic}: before {before:?}\n diff {:?}\n gives {expected:?}\n but list is {:?}",
                diffs.get(topic),
                after[topic],
                before = b
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub enum Op {
    Track {
        rep: usize,
        topic: usize,
        owner: usize,
        key: usize,
        v: u8,
    },
    Untrack {
        rep: usize,
        topic: usize,
        owner: usize,
        key: usize,
    },
    Update {
        rep: usize,
        topic: usize,
        owner: usize,
        key: usize,
        v: u8,
    },
    UntrackOwner {
        rep: usize,
        owner: usize,
    },
    /// `take_delta` of `rep`, appended to the delta log.
    Gossip {
        rep: usize,
    },
    /// `to` merges the delta log entry `idx % len`.
    Deliver {
        to: usize,
        idx: usize,
    },
    /// `to` merges `from.extract(to.context)`.
    Transfer {
        from: usize,
        to: usize,
    },
    Down {
        rep: usize,
        other: usize,
    },
    Up {
        rep: usize,
        other: usize,
    },
}

pub fn op_strategy(n: usize, with_down: bool) -> BoxedStrategy<Op> {
    let r = 0..n;
    let t = 0..TOPICS.len();
    let o = 0..OWNERS;
    let k = 0..KEYS.len();
    let local = prop_oneof![
        5 => (r.clone(), t.clone(), o.clone(), k.clone(), any::<u8>())
            .prop_map(|(rep, topic, owner, key, v)| Op::Track { rep, topic, owner, key, v }),
        2 => (r.clone(), t.clone(), o.clone(), k.clone())
            .prop_map(|(rep, topic, owner, key)| Op::Untrack { rep, topic, owner, key }),
        2 => (r.clone(), t.clone(), o.clone(), k.clone(), any::<u8>())
            .prop_map(|(rep, topic, owner, key, v)| Op::Update { rep, topic, owner, key, v }),
        1 => (r.clone(), o.clone()).prop_map(|(rep, owner)| Op::UntrackOwner { rep, owner }),
        3 => r.clone().prop_map(|rep| Op::Gossip { rep }),
        3 => (r.clone(), any::<usize>()).prop_map(|(to, idx)| Op::Deliver { to, idx }),
        1 => (r.clone(), r.clone()).prop_map(|(from, to)| Op::Transfer { from, to }),
    ];
    if with_down {
        prop_oneof![
            17 => local,
            1 => (r.clone(), r.clone()).prop_map(|(rep, other)| Op::Down { rep, other }),
            1 => (r.clone(), r).prop_map(|(rep, other)| Op::Up { rep, other }),
        ]
        .boxed()
    } else {
        local.boxed()
    }
}

/// `n` replicas that all know each other, plus the log of every delta gossiped.
pub struct Cluster {
    pub states: Vec<State>,
    pub log: Vec<Delta>,
}

impl Cluster {
    pub fn new(n: usize) -> Self {
        let mut states: Vec<State> = (0..n).map(|i| State::new(rep(i))).collect();
        for (i, s) in states.iter_mut().enumerate() {
            s.set_now_ns(1_700_000_000_000_000_000 + i as u64);
            for j in 0..n {
                if i != j {
                    s.handle_heartbeat(&rep(j), 0);
                }
            }
        }
        Cluster {
            states,
            log: Vec::new(),
        }
    }

    /// Applies `op`; returns the replica whose presences may have changed and the diffs it
    /// reported.
    pub fn apply(&mut self, op: &Op) -> Option<(usize, Diffs)> {
        match *op {
            Op::Track {
                rep,
                topic,
                owner: o,
                key,
                v,
            } => {
                let diffs = match self.states[rep].track(
                    TOPICS[topic],
                    &owner(rep, o),
                    KEYS[key],
                    meta(json!({"v": v})),
                ) {
                    Ok((_, d)) => Diffs::from([(TOPICS[topic].to_string(), d)]),
                    Err(_) => Diffs::new(),
                };
                Some((rep, diffs))
            }
            Op::Untrack {
                rep,
                topic,
                owner: o,
                key,
            } => {
                let d = self.states[rep].untrack(TOPICS[topic], &owner(rep, o), KEYS[key]);
                let diffs = if d.is_empty() {
                    Diffs::new()
                } else {
                    Diffs::from([(TOPICS[topic].to_string(), d)])
                };
                Some((rep, diffs))
            }
            Op::Update {
                rep,
                topic,
                owner: o,
                key,
                v,
            } => {
                let diffs = match self.states[rep].update(
                    TOPICS[topic],
                    &owner(rep, o),
                    KEYS[key],
                    meta(json!({"v": v, "u": true})),
                ) {
                    Ok((_, d)) => Diffs::from([(TOPICS[topic].to_string(), d)]),
                    Err(_) => Diffs::new(),
                };
                Some((rep, diffs))
            }
            Op::UntrackOwner { rep, owner: o } => {
                Some((rep, self.states[rep].untrack_owner(&owner(rep, o))))
            }
            Op::Gossip { rep } => {
                if let Some(d) = self.states[rep].take_delta() {
                    self.log.push(d);
                }
                None
            }
            Op::Deliver { to, idx } => {
                if self.log.is_empty() {
                    return None;
                }
                let d = self.log[idx % self.log.len()].clone();
                Some((to, self.states[to].merge(&d)))
            }
            Op::Transfer { from, to } => {
                let e = self.states[from].extract(self.states[to].context());
                Some((to, self.states[to].merge(&e)))
            }
            Op::Down { rep, other } => Some((rep, self.states[rep].replica_down(&rep_ref(other)))),
            Op::Up { rep, other } => Some((rep, self.states[rep].replica_up(&rep_ref(other)))),
        }
    }

    /// Takes every pending delta into the log.
    pub fn flush(&mut self) {
        for s in &mut self.states {
            if let Some(d) = s.take_delta() {
                self.log.push(d);
            }
        }
    }
}

/// The replica an op may change.
pub fn target(op: &Op) -> usize {
    match *op {
        Op::Track { rep, .. }
        | Op::Untrack { rep, .. }
        | Op::Update { rep, .. }
        | Op::UntrackOwner { rep, .. }
        | Op::Gossip { rep }
        | Op::Down { rep, .. }
        | Op::Up { rep, .. } => rep,
        Op::Deliver { to, .. } | Op::Transfer { to, .. } => to,
    }
}

fn rep_ref(i: usize) -> ReplicaRef {
    rep(i)
}

/// The presences every replica owns itself (the ground truth the cluster must converge to).
pub fn truth(c: &Cluster) -> BTreeMap<String, Presences> {
    let mut out: BTreeMap<String, Presences> = TOPICS
        .iter()
        .map(|t| (t.to_string(), Presences::new()))
        .collect();
    for topic in TOPICS {
        for key in KEYS {
            // owner order, as State::list
            let mut owners: Vec<(OwnerId, Meta)> = Vec::new();
            for (i, s) in c.states.iter().enumerate() {
                for o in 0..OWNERS {
                    let ow = owner(i, o);
                    if let Some((m, dot)) = s.get(topic, &ow, key) {
                        if dot.replica == *s.replica() {
                            owners.push((ow, m.clone()));
                        }
                    }
                }
            }
            owners.sort_by(|a, b| a.0.cmp(&b.0));
            if !owners.is_empty() {
                out.get_mut(topic).unwrap().insert(
                    key.to_string(),
                    owners.into_iter().map(|(_, m)| m).collect(),
                );
            }
        }
    }
    out
}

/// A fresh replica that knows the `n` cluster replicas.
pub fn observer(n: usize, name: &str) -> State {
    let mut o = State::new(ReplicaRef::new(name, 7));
    for j in 0..n {
        o.replica_up(&rep(j));
    }
    o
}
