//! Unit tests of every operation of the state (spec §8.3-§8.8).
//!
//! One file over ~600 lines: one test per operation and edge case of `state.rs`, in the same
//! order, so a reader can walk both side by side.

mod common;

use common::*;
use serde_json::json;
use tracker::*;

fn a() -> ReplicaRef {
    ReplicaRef::new("a", 1)
}
fn b() -> ReplicaRef {
    ReplicaRef::new("b", 1)
}
fn c() -> ReplicaRef {
    ReplicaRef::new("c", 1)
}
fn o(n: &str) -> OwnerId {
    OwnerId::new(n)
}
fn refs(p: &[Meta]) -> Vec<String> {
    p.iter().map(ref_of).collect()
}
/// Two states that know each other.
fn pair() -> (State, State) {
    let mut sa = State::new(a());
    let mut sb = State::new(b());
    sa.handle_heartbeat(&b(), 0);
    sb.handle_heartbeat(&a(), 0);
    (sa, sb)
}

#[test]
fn new_state() {
    let s = State::new(a());
    assert_eq!(s.context().get(&a()), 0);
    assert!(s.context().contains(&a()));
    assert!(s.is_empty());
    assert!(!s.has_delta());
    assert_eq!(s.replica_status(&a()), Some(ReplicaStatus::Up));
    assert_eq!(s.clocks(), (a(), s.context().clone()));
}

#[test]
fn track_stores_meta_with_phx_ref_and_records_delta() {
    let mut s = State::new(a());
    let (r, diff) = s.track("t", &o("p1"), "42", meta(json!({"s": 1}))).unwrap();
    assert_eq!(r.len(), 16);
    assert!(r
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let expected = meta(json!({"s": 1, "phx_ref": r}));
    assert_eq!(
        diff.joins,
        Presences::from([("42".into(), vec![expected.clone()])])
    );
    assert!(diff.leaves.is_empty());
    assert_eq!(
        s.list("t"),
        Presences::from([("42".into(), vec![expected.clone()])])
    );
    assert_eq!(s.get_by_key("t", "42"), vec![expected.clone()]);
    assert!(s.get_by_key("t", "nope").is_empty());
    assert!(s.list("other").is_empty());
    assert_eq!(s.context().get(&a()), 1);
    let (m, dot) = s.get("t", &o("p1"), "42").unwrap();
    assert_eq!((m, dot), (&expected, &Dot::new(a(), 1)));
    // delta: value at dot 1, dot 1 in clouds, range 0 → 1
    let d = s.delta();
    assert_eq!(d.values.get(&a(), 1).unwrap().meta, expected);
    assert!(d.clouds.contains(&a(), 1));
    assert_eq!(d.range.0.get(&a()), 0);
    assert_eq!(d.range.1.get(&a()), 1);
    assert!(s.has_delta());
}

#[test]
fn track_twice_is_already_tracked_and_changes_nothing() {
    let mut s = State::new(a());
    s.track("t", &o("p1"), "42", Meta::new()).unwrap();
    let ctx = s.context().clone();
    let err = s.track("t", &o("p1"), "42", Meta::new()).unwrap_err();
    assert_eq!(
        err,
        AlreadyTracked {
            topic: "t".into(),
            owner: o("p1"),
            key: "42".into()
        }
    );
    assert_eq!(s.context(), &ctx);
    assert_eq!(s.len(), 1);
    // same owner, other key or other topic: fine; other owner, same key: fine
    s.track("t", &o("p1"), "43", Meta::new()).unwrap();
    s.track("u", &o("p1"), "42", Meta::new()).unwrap();
    s.track("t", &o("p2"), "42", Meta::new()).unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(s.get_by_key("t", "42").len(), 2);
    assert_eq!(
        s.owner_elements(&o("p1")),
        vec![
            ("t".into(), "42".into()),
            ("t".into(), "43".into()),
            ("u".into(), "42".into())
        ]
    );
}

#[test]
fn metas_of_a_key_are_in_owner_order_and_refs_distinct() {
    let mut s = State::new(a());
    let (r2, _) = s.track("t", &o("p2"), "k", meta(json!({"n": 2}))).unwrap();
    let (r1, _) = s.track("t", &o("p1"), "k", meta(json!({"n": 1}))).unwrap();
    assert_ne!(r1, r2);
    assert_eq!(refs(&s.list("t")["k"]), vec![r1, r2]);
}

#[test]
fn untrack_reports_leave_and_records_removal() {
    let mut s = State::new(a());
    let (r, _) = s.track("t", &o("p1"), "42", meta(json!({"s": 1}))).unwrap();
    s.take_delta().unwrap();
    let diff = s.untrack("t", &o("p1"), "42");
    assert_eq!(diff.leaves["42"], vec![meta(json!({"s": 1, "phx_ref": r}))]);
    assert!(diff.joins.is_empty());
    assert!(s.list("t").is_empty());
    assert!(s.is_empty());
    assert_eq!(s.topics().count(), 0);
    assert!(s.owner_elements(&o("p1")).is_empty());
    // removal: dot 1 recorded as removed, bump to 2
    assert_eq!(s.context().get(&a()), 2);
    let d = s.delta();
    assert!(d.values.is_empty());
    assert!(d.clouds.contains(&a(), 1) && d.clouds.contains(&a(), 2));
    assert_eq!((d.range.0.get(&a()), d.range.1.get(&a())), (1, 2));
}

#[test]
fn untrack_absent_is_noop() {
    let mut s = State::new(a());
    assert!(s.untrack("t", &o("p1"), "42").is_empty());
    assert_eq!(s.context().get(&a()), 0);
    assert!(!s.has_delta());
}

#[test]
fn unsent_add_vanishes_from_delta_on_untrack() {
    let mut s = State::new(a());
    s.track("t", &o("p1"), "42", Meta::new()).unwrap();
    s.untrack("t", &o("p1"), "42");
    let d = s.take_delta().unwrap();
    assert!(d.values.is_empty());
    assert_eq!(d.clouds.dot_count(), 2);
    // a receiver that gets this delta sees nothing, and never will
    let (_, mut sb) = pair();
    assert!(sb.merge(&d).is_empty());
    assert!(sb.list("t").is_empty());
    assert_eq!(sb.context().get(&a()), 2);
}

#[test]
fn untrack_owner_removes_everything_of_the_owner() {
    let mut s = State::new(a());
    s.track("t1", &o("p1"), "k1", Meta::new()).unwrap();
    s.track("t1", &o("p1"), "k2", Meta::new()).unwrap();
    s.track("t2", &o("p1"), "k1", Meta::new()).unwrap();
    let (keep, _) = s.track("t1", &o("p2"), "k1", Meta::new()).unwrap();
    let diffs = s.untrack_owner(&o("p1"));
    assert_eq!(diffs.len(), 2);
    assert_eq!(
        diffs["t1"].leaves.keys().collect::<Vec<_>>(),
        vec!["k1", "k2"]
    );
    assert_eq!(diffs["t2"].leaves.keys().collect::<Vec<_>>(), vec!["k1"]);
    assert!(diffs.values().all(|d| d.joins.is_empty()));
    assert_eq!(refs(&s.list("t1")["k1"]), vec![keep]);
    assert!(s.list("t2").is_empty());
    assert!(s.untrack_owner(&o("p1")).is_empty());
}

#[test]
fn update_gives_new_ref_with_prev_and_one_diff() {
    let mut s = State::new(a());
    let (r0, _) = s.track("t", &o("p1"), "42", meta(json!({"s": 1}))).unwrap();
    s.take_delta();
    let (r1, diff) = s
        .update("t", &o("p1"), "42", meta(json!({"s": 2})))
        .unwrap();
    assert_ne!(r0, r1);
    let new = meta(json!({"s": 2, "phx_ref": r1, "phx_ref_prev": r0}));
    assert_eq!(diff.joins["42"], vec![new.clone()]);
    assert_eq!(
        diff.leaves["42"],
        vec![meta(json!({"s": 1, "phx_ref": r0}))]
    );
    assert_eq!(s.list("t")["42"], vec![new.clone()]);
    // dots: 1 = add, 2 = removal bump, 3 = new add
    assert_eq!(s.context().get(&a()), 3);
    assert_eq!(s.get("t", &o("p1"), "42").unwrap().1, &Dot::new(a(), 3));
    let d = s.delta();
    assert_eq!(d.values.len(), 1);
    assert_eq!(d.values.get(&a(), 3).unwrap().meta, new);
    assert_eq!(
        d.clouds
            .get(&a())
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[test]
fn update_with_sees_current_meta_and_nopresence_when_absent() {
    let mut s = State::new(a());
    assert_eq!(s.update("t", &o("p1"), "42", Meta::new()), Err(NoPresence));
    let (r0, _) = s.track("t", &o("p1"), "42", meta(json!({"n": 1}))).unwrap();
    let (r1, _) = s
        .update_with("t", &o("p1"), "42", |cur| {
            assert_eq!(cur["phx_ref"], json!(r0));
            let mut m = cur.clone();
            m.insert("n".into(), json!(cur["n"].as_i64().unwrap() + 1));
            m
        })
        .unwrap();
    let (r2, _) = s
        .update_with("t", &o("p1"), "42", |cur| cur.clone())
        .unwrap();
    let m = &s.get_by_key("t", "42")[0];
    assert_eq!(m["n"], json!(2));
    assert_eq!(m["phx_ref"], json!(r2));
    assert_eq!(m["phx_ref_prev"], json!(r1));
    assert_eq!(s.len(), 1);
}

#[test]
fn take_delta_resets_and_is_none_when_nothing_happened() {
    let mut s = State::new(a());
    assert!(s.take_delta().is_none());
    s.track("t", &o("p1"), "k", Meta::new()).unwrap();
    s.track("t", &o("p2"), "k", Meta::new()).unwrap();
    let d = s.take_delta().unwrap();
    assert_eq!(d.values.len(), 2);
    assert_eq!(d.size(), 4);
    assert!(s.take_delta().is_none());
    let fresh = s.delta();
    assert!(fresh.values.is_empty() && fresh.clouds.is_empty());
    assert_eq!((fresh.range.0.get(&a()), fresh.range.1.get(&a())), (2, 2));
}

#[test]
fn deltas_from_unknown_replicas_are_ignored_until_up() {
    let mut sa = State::new(a());
    let mut sb = State::new(b());
    sa.track("t", &o("a1"), "k", Meta::new()).unwrap();
    let d = sa.take_delta().unwrap();
    assert!(sb.merge(&d).is_empty());
    assert!(sb.list("t").is_empty());
    assert!(
        !sb.context().contains(&a()),
        "clouds/context of unknown replicas are ignored"
    );
    sb.handle_heartbeat(&a(), 0);
    let diffs = sb.merge(&d);
    assert_eq!(diffs["t"].joins["k"].len(), 1);
    assert_eq!(sb.list("t"), sa.list("t"));
    assert_eq!(sb.context().get(&a()), 1);
}

#[test]
fn merge_is_idempotent_for_duplicates() {
    let (mut sa, mut sb) = pair();
    sa.track("t", &o("a1"), "k", Meta::new()).unwrap();
    let d = sa.take_delta().unwrap();
    assert!(!sb.merge(&d).is_empty());
    assert!(sb.merge(&d).is_empty());
    assert!(sb.merge(&sa.full_extract()).is_empty());
    assert!(sa.merge(&sa.full_extract()).is_empty());
    assert!(sa.merge(&sb.full_extract()).is_empty());
    assert_eq!(sb.list("t"), sa.list("t"));
}

#[test]
fn remote_untrack_and_update_through_deltas() {
    let (mut sa, mut sb) = pair();
    sa.track("t", &o("a1"), "k", meta(json!({"v": 1}))).unwrap();
    sb.merge(&sa.take_delta().unwrap());
    let (r1, local) = sa
        .update("t", &o("a1"), "k", meta(json!({"v": 2})))
        .unwrap();
    let diffs = sb.merge(&sa.take_delta().unwrap());
    assert_eq!(diffs.len(), 1);
    assert_eq!(
        diffs["t"], local,
        "an update arrives as one diff with the key on both sides"
    );
    assert_eq!(sb.list("t")["k"][0]["phx_ref"], json!(r1));
    let local = sa.untrack("t", &o("a1"), "k");
    let diffs = sb.merge(&sa.take_delta().unwrap());
    assert_eq!(diffs["t"], local);
    assert!(sb.list("t").is_empty());
    assert!(sb.is_empty());
}

#[test]
fn removals_are_regossiped() {
    let mut sa = State::new(a());
    let mut sb = State::new(b());
    let mut sc = State::new(c());
    for (s, others) in [
        (&mut sa, [b(), c()]),
        (&mut sb, [a(), c()]),
        (&mut sc, [a(), b()]),
    ] {
        for r in others {
            s.handle_heartbeat(&r, 0);
        }
    }
    sa.track("t", &o("a1"), "k", Meta::new()).unwrap();
    let add = sa.take_delta().unwrap();
    sb.merge(&add);
    sc.merge(&add);
    sa.untrack("t", &o("a1"), "k");
    let removal = sa.take_delta().unwrap();
    sb.merge(&removal); // c never gets a's removal delta
    let relay = sb.take_delta().expect("b re-gossips the removal");
    assert!(relay.clouds.contains(&a(), 1));
    assert!(relay.values.is_empty());
    let diffs = sc.merge(&relay);
    assert_eq!(diffs["t"].leaves["k"].len(), 1);
    assert!(sc.list("t").is_empty());
}

#[test]
fn a_replica_never_removes_its_own_elements_because_of_a_remote() {
    let (mut sa, mut sb) = pair();
    sa.track("t", &o("a1"), "k", Meta::new()).unwrap();
    // b claims to have seen a's dot 1 and not to have it
    let mut ctx = Context::new();
    ctx.set(a(), 5);
    ctx.set(b(), 0);
    let bogus = Extract {
        replica: b(),
        context: ctx.clone(),
        clouds: Clouds::new(),
        values: Values::new(),
    };
    assert!(sa.merge(&bogus).is_empty());
    assert_eq!(sa.list("t")["k"].len(), 1);
    let mut clouds = Clouds::new();
    clouds.insert(&a(), 1);
    let bogus = Delta {
        replica: b(),
        values: Values::new(),
        clouds,
        range: (Context::new(), Context::new()),
    };
    assert!(sa.merge(&bogus).is_empty());
    assert_eq!(sa.len(), 1);
    // and an add targeting an element a owns does not replace it
    let mut values = Values::new();
    values.insert(
        Dot::new(b(), 1),
        Element {
            owner: o("a1"),
            topic: "t".into(),
            key: "k".into(),
            meta: Meta::new(),
        },
    );
    let mut clouds = Clouds::new();
    clouds.insert(&b(), 1);
    let clash = Delta {
        replica: b(),
        values,
        clouds,
        range: (Context::new(), Context::new()),
    };
    assert!(sa.merge(&clash).is_empty());
    assert_eq!(sa.get("t", &o("a1"), "k").unwrap().1.replica, a());
    // untrack/update of another replica's element is not possible either
    sb.merge(&sa.take_delta().unwrap());
    assert!(sb.untrack("t", &o("a1"), "k").is_empty());
    assert_eq!(sb.update("t", &o("a1"), "k", Meta::new()), Err(NoPresence));
    assert_eq!(sb.len(), 1);
}

#[test]
fn extract_is_restricted_to_the_requesters_replicas() {
    let mut sa = State::new(a());
    let mut sb = State::new(b());
    sa.handle_heartbeat(&b(), 0);
    sa.handle_heartbeat(&c(), 0);
    sb.handle_heartbeat(&a(), 0);
    let mut sc = State::new(c());
    sc.handle_heartbeat(&a(), 0);
    sc.track("t", &o("c1"), "k", Meta::new()).unwrap();
    sa.merge(&sc.take_delta().unwrap());
    sa.track("t", &o("a1"), "k", Meta::new()).unwrap();
    assert_eq!(sa.len(), 2);
    // b does not know c: it gets only a's elements and no c entries
    let e = sa.extract(sb.context());
    assert_eq!(e.values.len(), 1);
    assert!(e.values.get(&a(), 1).is_some());
    assert!(!e.context.contains(&c()));
    assert_eq!(e.context.get(&a()), 1);
    let diffs = sb.merge(&e);
    assert_eq!(diffs["t"].joins["k"].len(), 1);
    // a full extract for a requester that knows everyone has both
    assert_eq!(sa.full_extract().values.len(), 2);
}

#[test]
fn full_extract_catches_up_a_replica_that_missed_deltas() {
    let (mut sa, mut sb) = pair();
    sa.track("t", &o("a1"), "k1", Meta::new()).unwrap();
    sb.merge(&sa.take_delta().unwrap());
    // b misses the next two deltas
    sa.untrack("t", &o("a1"), "k1");
    sa.take_delta();
    sa.track("t", &o("a2"), "k2", Meta::new()).unwrap();
    sa.track("u", &o("a2"), "k2", Meta::new()).unwrap();
    sa.take_delta();
    // clocks tell b it is behind
    let mut pending = ClockSet::new();
    let (ra, ca) = sa.clocks();
    pending.append(ra, ca);
    assert_eq!(sb.replicas_to_sync(&pending), vec![a()]);
    let diffs = sb.merge(&sa.extract(sb.context()));
    assert_eq!(diffs["t"].leaves.keys().collect::<Vec<_>>(), vec!["k1"]);
    assert_eq!(diffs["t"].joins.keys().collect::<Vec<_>>(), vec!["k2"]);
    assert_eq!(diffs["u"].joins.keys().collect::<Vec<_>>(), vec!["k2"]);
    for t in ["t", "u"] {
        assert_eq!(sb.list(t), sa.list(t));
    }
    let (rb, cb) = sb.clocks();
    let mut pending = ClockSet::new();
    pending.append(rb, cb);
    assert!(
        sa.replicas_to_sync(&pending).is_empty(),
        "own clock dominates: nothing to request"
    );
}

#[test]
fn out_of_order_deltas_are_absorbed_by_clouds() {
    let (mut sa, mut sb) = pair();
    sa.track("t", &o("a1"), "k1", Meta::new()).unwrap();
    let d1 = sa.take_delta().unwrap();
    sa.track("t", &o("a2"), "k2", Meta::new()).unwrap();
    let d2 = sa.take_delta().unwrap();
    sb.merge(&d2);
    assert_eq!(sb.context().get(&a()), 0);
    assert!(sb.clouds().contains(&a(), 2));
    sb.merge(&d1);
    assert_eq!(
        sb.context().get(&a()),
        2,
        "compaction folds the cloud into the context"
    );
    assert!(sb.clouds().get(&a()).is_none());
    assert_eq!(sb.list("t"), sa.list("t"));
}

/// Phoenix deletes a removed dot from the clouds; with a gap before it, a duplicated old delta
/// then resurrects the element. This implementation keeps the dot seen.
#[test]
fn duplicated_add_after_removal_does_not_resurrect() {
    let (mut sa, mut sb) = pair();
    sa.track("t", &o("a0"), "k0", Meta::new()).unwrap();
    let d0 = sa.take_delta().unwrap();
    sa.track("t", &o("a1"), "k1", Meta::new()).unwrap();
    let d1 = sa.take_delta().unwrap();
    sa.untrack("t", &o("a1"), "k1");
    let d2 = sa.take_delta().unwrap();
    sb.merge(&d1);
    sb.merge(&d2);
    assert!(sb.list("t").is_empty());
    assert!(
        sb.merge(&d1).is_empty(),
        "duplicate of the add must not resurrect"
    );
    sb.merge(&d0);
    assert_eq!(sb.list("t"), sa.list("t"));
    assert_eq!(sb.context().get(&a()), 3);
}

/// The same element untracked and tracked again, with the deltas crossing: the newer add
/// replaces the older element (leave + join), and a late older add is ignored.
#[test]
fn retracked_element_with_reordered_deltas() {
    let (mut sa, mut sb) = pair();
    let (r1, _) = sa.track("t", &o("a1"), "k", meta(json!({"v": 1}))).unwrap();
    let d_add1 = sa.take_delta().unwrap();
    sa.untrack("t", &o("a1"), "k");
    let d_remove1 = sa.take_delta().unwrap();
    let (r3, _) = sa.track("t", &o("a1"), "k", meta(json!({"v": 3}))).unwrap();
    let d_add3 = sa.take_delta().unwrap();

    // b: add1, then add3 before the removal of 1
    let mut b1 = sb.clone();
    b1.merge(&d_add1);
    let diffs = b1.merge(&d_add3);
    assert_eq!(refs(&diffs["t"].leaves["k"]), vec![r1.clone()]);
    assert_eq!(refs(&diffs["t"].joins["k"]), vec![r3.clone()]);
    assert!(b1.merge(&d_remove1).is_empty());
    assert_eq!(b1.list("t"), sa.list("t"));

    // b: add3 first, then the late add1 (ignored), then the removal
    assert_eq!(refs(&sb.merge(&d_add3)["t"].joins["k"]), vec![r3]);
    assert!(
        sb.merge(&d_add1).is_empty(),
        "a late add of an older dot does not replace the newer one"
    );
    assert!(sb.merge(&d_remove1).is_empty());
    assert_eq!(sb.list("t"), sa.list("t"));
}

#[test]
fn down_hides_up_restores_permdown_deletes() {
    let (mut sa, mut sb) = pair();
    let (ra, _) = sa.track("t", &o("a1"), "k", meta(json!({"x": 1}))).unwrap();
    sb.track("t", &o("b1"), "k", Meta::new()).unwrap();
    sb.merge(&sa.take_delta().unwrap());
    let before = sb.list("t");
    assert_eq!(before["k"].len(), 2);

    let diffs = sb.replica_down(&a());
    assert_eq!(refs(&diffs["t"].leaves["k"]), vec![ra.clone()]);
    assert!(diffs["t"].joins.is_empty());
    assert_eq!(sb.replica_status(&a()), Some(ReplicaStatus::Down));
    assert_eq!(sb.list("t")["k"].len(), 1);
    assert_eq!(sb.get_by_key("t", "k").len(), 1);
    assert_eq!(sb.len(), 2, "hidden, not deleted");
    assert!(
        !sb.clocks().1.contains(&a()),
        "clocks exclude down replicas"
    );
    assert!(sb.context().contains(&a()));
    assert!(sb.replica_down(&a()).is_empty(), "already down");
    // a down replica's elements still travel in extracts
    assert_eq!(sb.full_extract().values.len(), 2);

    let diffs = sb.replica_up(&a());
    assert_eq!(refs(&diffs["t"].joins["k"]), vec![ra]);
    assert_eq!(sb.list("t"), before);
    assert!(
        sb.replica_up(&a()).is_empty(),
        "already up: nothing re-reported"
    );

    let diffs = sb.replica_permdown(&a());
    assert_eq!(diffs["t"].leaves["k"].len(), 1);
    assert_eq!(sb.len(), 1);
    assert!(!sb.context().contains(&a()));
    assert_eq!(sb.replica_status(&a()), None);
    // later messages from a are ignored
    sa.track("t", &o("a2"), "k2", Meta::new()).unwrap();
    assert!(sb.merge(&sa.take_delta().unwrap()).is_empty());
    assert!(sb.merge(&sa.full_extract()).is_empty());
    // permdown of self / down of unknown: no-ops
    assert!(sb.replica_permdown(&b()).is_empty());
    assert!(sb.replica_down(&c()).is_empty());
}

#[test]
fn permdown_of_a_down_replica_reports_nothing_more() {
    let (mut sa, mut sb) = pair();
    sa.track("t", &o("a1"), "k", Meta::new()).unwrap();
    sb.merge(&sa.take_delta().unwrap());
    assert!(!sb.replica_down(&a()).is_empty());
    assert!(sb.replica_permdown(&a()).is_empty());
    assert!(sb.is_empty());
}

#[test]
fn merges_from_down_replicas_are_stored_hidden_and_not_reported() {
    let (mut sa, mut sb) = pair();
    sb.replica_down(&a());
    sa.track("t", &o("a1"), "k", Meta::new()).unwrap();
    assert!(sb.merge(&sa.take_delta().unwrap()).is_empty());
    assert_eq!(sb.len(), 1);
    assert!(sb.list("t").is_empty());
    let diffs = sb.replica_up(&a());
    assert_eq!(diffs["t"].joins["k"].len(), 1);
}

#[test]
fn handle_heartbeat_transitions() {
    let mut sa = State::new(a());
    sa.track("t", &o("a1"), "k", Meta::new()).unwrap();
    let mut sb = State::new(b());
    // unknown → up
    assert!(sb.handle_heartbeat(&a(), 10).is_empty());
    assert_eq!(sb.replica_status(&a()), Some(ReplicaStatus::Up));
    assert_eq!(sb.replicas().next().unwrap().1.last_heartbeat_ms, Some(10));
    sb.merge(&sa.take_delta().unwrap());
    // same vsn, up → only the time
    assert!(sb.handle_heartbeat(&a(), 20).is_empty());
    assert_eq!(sb.replicas().next().unwrap().1.last_heartbeat_ms, Some(20));
    // same vsn, down → up: joins
    sb.replica_down(&a());
    let diffs = sb.handle_heartbeat(&a(), 30);
    assert_eq!(diffs["t"].joins["k"].len(), 1);
    // new vsn, old up → down + permdown old (leaves), up new
    let a2 = ReplicaRef::new("a", 2);
    let diffs = sb.handle_heartbeat(&a2, 40);
    assert_eq!(diffs["t"].leaves["k"].len(), 1);
    assert!(sb.is_empty());
    assert!(!sb.context().contains(&a()));
    assert_eq!(sb.context().get(&a2), 0);
    assert_eq!(sb.replicas().count(), 1);
    // new vsn, old down → permdown old (nothing more to report), up new
    let mut sa2 = State::new(a2.clone());
    sa2.track("t", &o("a2-1"), "k", Meta::new()).unwrap();
    sb.merge(&sa2.take_delta().unwrap());
    sb.replica_down(&a2);
    let a3 = ReplicaRef::new("a", 3);
    assert!(sb.handle_heartbeat(&a3, 50).is_empty());
    assert!(sb.is_empty());
    assert_eq!(sb.replica_status(&a3), Some(ReplicaStatus::Up));
    assert_eq!(sb.replica_status(&a2), None);
    // own heartbeat ignored
    assert!(sb.handle_heartbeat(&b(), 60).is_empty());
    assert_eq!(sb.replicas().count(), 1);
}

#[test]
fn graceful_permdown_needs_exact_vsn() {
    let (mut sa, mut sb) = pair();
    sa.track("t", &o("a1"), "k", Meta::new()).unwrap();
    sb.merge(&sa.take_delta().unwrap());
    assert!(sb.graceful_permdown(&ReplicaRef::new("a", 99)).is_empty());
    assert_eq!(sb.len(), 1);
    let diffs = sb.graceful_permdown(&a());
    assert_eq!(diffs["t"].leaves["k"].len(), 1);
    assert!(sb.is_empty());
    assert_eq!(sb.replica_status(&a()), None);
}

#[test]
fn failure_detection_down_then_permdown() {
    let (mut sa, mut sb) = pair();
    let t = Timeouts::default();
    assert_eq!(
        (t.down_period_ms, t.permdown_period_ms),
        (30_000, 1_200_000)
    );
    sb.handle_heartbeat(&a(), 1_000);
    sa.track("t", &o("a1"), "k", Meta::new()).unwrap();
    sb.merge(&sa.take_delta().unwrap());
    assert!(
        sb.detect_failures(31_000, &t).is_empty(),
        "exactly down_period: still up"
    );
    let diffs = sb.detect_failures(31_001, &t);
    assert_eq!(diffs["t"].leaves["k"].len(), 1);
    assert_eq!(sb.replica_status(&a()), Some(ReplicaStatus::Down));
    assert!(sb.detect_failures(40_000, &t).is_empty());
    // heartbeat again: back up
    let diffs = sb.handle_heartbeat(&a(), 50_000);
    assert_eq!(diffs["t"].joins["k"].len(), 1);
    // silent for > permdown_period while up: down (leaves) then permdown
    let diffs = sb.detect_failures(50_000 + 1_200_001, &t);
    assert_eq!(diffs["t"].leaves["k"].len(), 1);
    assert!(sb.is_empty());
    assert_eq!(sb.replica_status(&a()), None);
}

#[test]
fn clocks_and_sync_targets() {
    let (mut sa, mut sb) = pair();
    sa.track("t", &o("a1"), "k", Meta::new()).unwrap();
    let (ra, ca) = sa.clocks();
    let mut pending = ClockSet::new();
    pending.append(ra.clone(), ca.clone());
    assert_eq!(sb.replicas_to_sync(&pending), vec![a()]);
    sb.merge(&sa.extract(sb.context()));
    assert!(sb.replicas_to_sync(&pending).is_empty());
    assert!(sb.replicas_to_sync(&ClockSet::new()).is_empty());
}

#[test]
fn wire_types_roundtrip_through_json() {
    let (mut sa, mut sb) = pair();
    sa.track(
        "t",
        &o("a1"),
        "k",
        meta(json!({"nested": {"z": 1, "a": [1, 2]}})),
    )
    .unwrap();
    sa.track("t", &o("a2"), "k", Meta::new()).unwrap();
    sa.untrack("t", &o("a2"), "k");
    let d = sa.take_delta().unwrap();
    let json = serde_json::to_string(&d).unwrap();
    let back: Delta = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d);
    let e = sa.extract(sb.context());
    let back: Extract = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
    assert_eq!(back, e);
    let p = Payload::Delta(d.clone());
    let pj = serde_json::to_value(&p).unwrap();
    assert_eq!(pj["kind"], json!("delta"));
    let back: Payload = serde_json::from_value(pj).unwrap();
    assert_eq!(back, p);
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(
        v["values"][0]["dot"],
        json!({"replica": {"name": "a", "vsn": 1}, "counter": 1})
    );
    assert_eq!(v["values"][0]["owner"], json!("a1"));
    let diffs = sb.merge(&back);
    assert_eq!(diffs["t"].joins["k"].len(), 1);
    assert_eq!(sb.list("t"), sa.list("t"));
    let (r, c) = sa.clocks();
    let cj = serde_json::to_string(&(r.clone(), c.clone())).unwrap();
    assert_eq!(
        serde_json::from_str::<(ReplicaRef, Context)>(&cj).unwrap(),
        (r, c)
    );
}
