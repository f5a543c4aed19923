//! Property tests of the diff coalescer `Diff::merge` against the phoenix.js syncDiff model.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::json;
use tracker::client::{sync_diff, sync_state};
use tracker::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const DKEYS: [&str; 3] = ["a", "b", "c"];

/// A meta list of one key: distinct refs from a pool of 8, each with a small payload.
fn metas() -> impl Strategy<Value = Vec<Meta>> {
    proptest::collection::vec((0u8..8, 0u8..3), 1..5).prop_map(|v| {
        let mut seen = std::collections::HashSet::new();
        v.into_iter()
            .filter(|(r, _)| seen.insert(*r))
            .map(|(r, x)| meta(json!({"phx_ref": format!("r{r}"), "x": x})))
            .collect()
    })
}

fn presences() -> impl Strategy<Value = Presences> {
    proptest::collection::btree_map(
        proptest::sample::select(DKEYS.to_vec()).prop_map(String::from),
        metas(),
        0..3,
    )
}

fn diff() -> impl Strategy<Value = Diff> {
    (presences(), presences()).prop_map(|(joins, leaves)| Diff { joins, leaves })
}

fn apply(s: &Presences, ds: &[&Diff]) -> Presences {
    let mut s = s.clone();
    for d in ds {
        sync_diff(&mut s, d);
    }
    s
}

/// Diffs and lists of one topic on replica 0 of a 2-replica cluster, along a random history.
fn topic_history(ops: &[Op]) -> (Vec<Diff>, Vec<Presences>) {
    let mut c = Cluster::new(2);
    let mut diffs = Vec::new();
    let mut states = vec![c.states[0].list(TOPICS[0])];
    for op in ops {
        if let Some((0, ds)) = c.apply(op) {
            let d = ds.get(TOPICS[0]).cloned().unwrap_or_default();
            diffs.push(d);
            states.push(c.states[0].list(TOPICS[0]));
        }
    }
    (diffs, states)
}

proptest! {
    #![proptest_config(config())]

    /// For ANY client state (not only consistent ones), applying the coalesced diff equals
    /// applying the two diffs in order — same keys, same metas, same order.
    #[test]
    fn coalesced_equals_sequential_for_any_state(s in presences(), d1 in diff(), d2 in diff()) {
        let seq = apply(&s, &[&d1, &d2]);
        let merged = d1.clone().merge(d2.clone());
        prop_assert_eq!(apply(&s, &[&merged]), seq);
        // never an empty meta list
        prop_assert!(merged.joins.values().chain(merged.leaves.values()).all(|v| !v.is_empty()));
    }

    /// Folding three diffs either way has the same effect.
    #[test]
    fn coalescing_is_associative_in_effect(s in presences(), d1 in diff(), d2 in diff(), d3 in diff()) {
        let left = d1.clone().merge(d2.clone()).merge(d3.clone());
        let right = d1.clone().merge(d2.clone().merge(d3.clone()));
        let seq = apply(&s, &[&d1, &d2, &d3]);
        prop_assert_eq!(apply(&s, &[&left]), seq.clone());
        prop_assert_eq!(apply(&s, &[&right]), seq);
    }

    /// On real tracker histories (local ops, merges, replica down/up): a window's coalesced diff
    /// applied to the state before the window gives exactly the sequential result (which is the
    /// tracker's list up to meta order), and applied to any state *inside* the window (a
    /// presence_state taken mid-window) gives the list after the window.
    #[test]
    fn coalesced_window_on_tracker_histories(
        ops in proptest::collection::vec(op_strategy(2, true), 1..60),
        a in any::<Index>(),
        b in any::<Index>(),
    ) {
        let (diffs, states) = topic_history(&ops);
        prop_assume!(!diffs.is_empty());
        let (mut i, mut j) = (a.index(diffs.len()), b.index(diffs.len()));
        if i > j { std::mem::swap(&mut i, &mut j); }
        let window = &diffs[i..=j];
        let coalesced = window.iter().cloned().fold(Diff::new(), Diff::merge);
        let start = &states[i];
        let end = &states[j + 1];
        let seq = apply(start, &window.iter().collect::<Vec<_>>());
        prop_assert_eq!(&apply(start, &[&coalesced]), &seq);
        prop_assert_eq!(normalize(&seq), normalize(end));
        for mid in &states[i..=j] {
            prop_assert_eq!(normalize(&apply(mid, &[&coalesced])), normalize(end));
        }
        // and a client that syncs a state then gets the diff agrees too
        let mut client = Presences::new();
        sync_state(&mut client, start);
        sync_diff(&mut client, &coalesced);
        prop_assert_eq!(normalize(&client), normalize(end));
    }
}

#[test]
fn joined_then_left_inside_window_is_removed_from_a_mid_window_state() {
    let mut s = State::new(rep(0));
    let o = owner(0, 1);
    let before = s.list("t");
    let (_, d1) = s.track("t", &o, "k", Meta::new()).unwrap();
    let mid = s.list("t"); // a presence_state pushed inside the window
    let d2 = s.untrack("t", &o, "k");
    let c = d1.merge(d2);
    assert!(c.joins.is_empty());
    assert_eq!(
        c.leaves["k"].len(),
        1,
        "kept as a leave: the mid-window client has it"
    );
    assert_eq!(apply(&before, &[&c]), s.list("t"));
    assert_eq!(apply(&mid, &[&c]), s.list("t"), "no ghost presence");
}

#[test]
fn update_then_update_keeps_latest_join() {
    let mut s = State::new(rep(0));
    let o = owner(0, 1);
    let (r0, _) = s.track("t", &o, "k", meta(json!({"v": 0}))).unwrap();
    let before = s.list("t");
    let (r1, d1) = s.update("t", &o, "k", meta(json!({"v": 1}))).unwrap();
    let (r2, d2) = s.update("t", &o, "k", meta(json!({"v": 2}))).unwrap();
    let c = d1.merge(d2);
    assert_eq!(
        c.joins["k"].iter().map(ref_of).collect::<Vec<_>>(),
        vec![r2]
    );
    assert_eq!(
        c.leaves["k"].iter().map(ref_of).collect::<Vec<_>>(),
        vec![r0, r1]
    );
    assert_eq!(apply(&before, &[&c]), s.list("t"));
}

#[test]
fn merge_diffs_folds_per_topic() {
    let mut s = State::new(rep(0));
    let o = owner(0, 1);
    let mut acc = Diffs::new();
    let (_, d) = s.track("t1", &o, "k", Meta::new()).unwrap();
    merge_diffs(&mut acc, Diffs::from([("t1".to_string(), d)]));
    let (_, d) = s.track("t2", &o, "k", Meta::new()).unwrap();
    merge_diffs(&mut acc, Diffs::from([("t2".to_string(), d)]));
    merge_diffs(&mut acc, s.untrack_owner(&o));
    assert_eq!(acc.len(), 2);
    assert!(acc
        .values()
        .all(|d| d.joins.is_empty() && d.leaves["k"].len() == 1));
}
