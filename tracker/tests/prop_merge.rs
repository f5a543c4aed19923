//! Property tests of the CRDT (spec §8.8, §8.11): merge is commutative, associative and
//! idempotent; replicas receiving the same deltas in any order, with duplicates, converge;
//! every reported diff turns the previous list into the next one under phoenix.js syncDiff;
//! down/up round-trips and permdown removes.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use tracker::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Fewer cases for the cheaper algebraic properties (keeps `cargo test -p tracker` fast).
fn light() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        ..config()
    }
}

fn history(with_down: bool) -> impl Strategy<Value = (usize, Vec<Op>)> {
    (2usize..=4).prop_flat_map(move |n| {
        (
            Just(n),
            proptest::collection::vec(op_strategy(n, with_down), 1..48),
        )
    })
}

/// Like [`history`], with many more gossip rounds (small deltas, so that out-of-order and
/// duplicated delivery creates gaps between a replica's deltas).
fn gossipy_history(with_down: bool) -> impl Strategy<Value = (usize, Vec<Op>)> {
    (2usize..=4).prop_flat_map(move |n| {
        (
            Just(n),
            proptest::collection::vec((op_strategy(n, with_down), any::<bool>()), 1..48),
        )
            .prop_map(|(n, v)| {
                let mut ops = Vec::new();
                for (op, gossip) in v {
                    let t = target(&op);
                    ops.push(op);
                    if gossip {
                        ops.push(Op::Gossip { rep: t });
                    }
                }
                (n, ops)
            })
    })
}

fn run(n: usize, ops: &[Op]) -> Cluster {
    let mut c = Cluster::new(n);
    for op in ops {
        c.apply(op);
    }
    c
}

/// Canonical content of a state, without the given (observer) replica: stored values and the
/// seen-dots summary (context + clouds).
type Canon = (Vec<(ReplicaRef, u64, Element)>, Context, Clouds);

fn canon(s: &State, skip: &ReplicaRef) -> Canon {
    let e = s.full_extract();
    let values = e
        .values
        .iter()
        .map(|(r, n, el)| (r.clone(), n, el.clone()))
        .collect();
    let mut ctx = e.context.clone();
    ctx.remove(skip);
    let mut clouds = e.clouds.clone();
    clouds.0.remove(skip);
    (values, ctx, clouds)
}

/// A fresh observer merging `parts` in order.
fn observe(n: usize, name: &str, parts: &[&Extract]) -> State {
    let mut o = observer(n, name);
    for p in parts {
        o.merge(*p);
    }
    o
}

/// Extract of `s` for a fresh observer (all cluster replicas known).
fn ext_for(s: &State, n: usize) -> Extract {
    s.extract(observer(n, "probe").context())
}

proptest! {
    #![proptest_config(config())]

    /// Every operation's diffs turn list(before) into list(after) (syncDiff model), report only
    /// touched topics, leave only visible metas and join only new ones.
    #[test]
    fn diffs_match_list_changes((n, ops) in gossipy_history(true)) {
        let mut c = Cluster::new(n);
        for op in &ops {
            let before: Vec<_> = c.states.iter().map(lists).collect();
            if let Some((i, diffs)) = c.apply(op) {
                let after = lists(&c.states[i]);
                if let Err(e) = check_diffs(&before[i], &diffs, &after) {
                    prop_assert!(false, "op {:?}: {}", op, e);
                }
            }
            for (j, s) in c.states.iter().enumerate() {
                if j != target(op) {
                    prop_assert_eq!(&lists(s), &before[j], "replica {} changed by {:?}", j, op);
                }
            }
        }
    }

    /// All deltas, delivered in any order and with duplicates, make observers converge to the
    /// elements each replica owns; so do full extracts.
    #[test]
    fn deltas_in_any_order_with_duplicates_converge(
        (n, ops) in gossipy_history(false),
        prefixes in proptest::collection::vec(proptest::collection::vec(any::<Index>(), 0..64), 3),
        seeds in proptest::collection::vec(any::<u64>(), 3),
        masks in proptest::collection::vec(any::<u64>(), 3),
    ) {
        let mut c = run(n, &ops);
        c.flush();
        let expected = truth(&c);
        let m = c.log.len();
        let mut lists_seen: Vec<BTreeMap<String, Presences>> = Vec::new();
        for ((prefix, seed), mask) in prefixes.iter().zip(&seeds).zip(&masks) {
            // random deliveries (any order, duplicates) from a random subset of the log (so
            // that some deltas are withheld: gaps), then every delta once more in a shuffled
            // order so that each is delivered at least once
            let allowed: Vec<usize> = (0..m).filter(|k| mask & (1 << (k % 64)) != 0).collect();
            let mut order: Vec<usize> =
                if allowed.is_empty() { Vec::new() } else { prefix.iter().map(|i| allowed[i.index(allowed.len())]).collect() };
            let mut all: Vec<usize> = (0..m).collect();
            let mut x = seed | 1;
            for k in (1..all.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                all.swap(k, (x % (k as u64 + 1)) as usize);
            }
            order.extend(all);
            let mut o = observer(n, "obs");
            for k in order {
                o.merge(&c.log[k]);
            }
            lists_seen.push(lists(&o));
        }
        for l in &lists_seen {
            prop_assert_eq!(l, &expected);
        }
        // the replicas themselves converge once they receive every delta
        for s in c.states.iter_mut() {
            for d in &c.log {
                s.merge(d);
            }
            prop_assert_eq!(&lists(s), &expected);
        }
        // and full extracts of the replicas' own states give the same
        let mut o = observer(n, "obs2");
        for s in &c.states {
            o.merge(&s.extract(o.context()));
        }
        prop_assert_eq!(&lists(&o), &expected);
    }

}

proptest! {
    #![proptest_config(light())]

    #[test]
    fn merge_is_commutative((n, ops) in history(false), i in any::<Index>(), j in any::<Index>()) {
        let c = run(n, &ops);
        let ei = ext_for(&c.states[i.index(n)], n);
        let ej = ext_for(&c.states[j.index(n)], n);
        let o1 = observe(n, "o", &[&ei, &ej]);
        let o2 = observe(n, "o", &[&ej, &ei]);
        let me = o1.replica().clone();
        prop_assert_eq!(canon(&o1, &me), canon(&o2, &me));
        for t in TOPICS {
            prop_assert_eq!(o1.list(t), o2.list(t));
        }
    }

    #[test]
    fn merge_is_associative((n, ops) in history(false), i in any::<Index>(), j in any::<Index>(), k in any::<Index>()) {
        let c = run(n, &ops);
        let (si, sj, sk) = (&c.states[i.index(n)], &c.states[j.index(n)], &c.states[k.index(n)]);
        let (ei, ej, ek) = (ext_for(si, n), ext_for(sj, n), ext_for(sk, n));
        // (i ⊔ j) ⊔ k
        let ij = observe(n, "ij", &[&ei, &ej]);
        let left = observe(n, "o", &[&ext_for(&ij, n), &ek]);
        // i ⊔ (j ⊔ k)
        let jk = observe(n, "jk", &[&ej, &ek]);
        let right = observe(n, "o", &[&ei, &ext_for(&jk, n)]);
        let me = left.replica().clone();
        prop_assert_eq!(canon(&left, &me), canon(&right, &me));
        for t in TOPICS {
            prop_assert_eq!(left.list(t), right.list(t));
        }
    }

    #[test]
    fn merge_is_idempotent((n, ops) in history(false), i in any::<Index>()) {
        let c = run(n, &ops);
        let ei = ext_for(&c.states[i.index(n)], n);
        let once = observe(n, "o", &[&ei]);
        let mut twice = once.clone();
        prop_assert!(twice.merge(&ei).is_empty());
        let me = once.replica().clone();
        prop_assert_eq!(canon(&once, &me), canon(&twice, &me));
        // a replica merging its own extract, or any peer's extract twice, changes nothing more
        for s in &c.states {
            let mut s2 = s.clone();
            prop_assert!(s2.merge(&s.full_extract()).is_empty());
            prop_assert_eq!(canon(&s2, &rep(99)), canon(s, &rep(99)));
        }
        let mut s0 = c.states[0].clone();
        let e1 = c.states[1].extract(s0.context());
        s0.merge(&e1);
        let snapshot = canon(&s0, &rep(99));
        prop_assert!(s0.merge(&e1).is_empty());
        prop_assert_eq!(canon(&s0, &rep(99)), snapshot);
    }

    /// Anti-entropy alone (full transfers, no deltas) converges too.
    #[test]
    fn transfers_converge((n, ops) in history(false)) {
        let mut c = run(n, &ops);
        let expected = truth(&c);
        for _ in 0..2 {
            for to in 0..n {
                for from in 0..n {
                    if from != to {
                        let e = c.states[from].extract(c.states[to].context());
                        c.states[to].merge(&e);
                    }
                }
            }
        }
        for s in &c.states {
            prop_assert_eq!(&lists(s), &expected);
        }
    }

    #[test]
    fn down_up_round_trip_restores_list((n, ops) in history(true), i in any::<Index>(), j in any::<Index>()) {
        let mut c = run(n, &ops);
        let i = i.index(n);
        let j = (i + 1 + j.index(n - 1)) % n;
        let s = &mut c.states[i];
        let other = rep(j);
        s.replica_up(&other); // normalise: the history may have left it down
        let before = lists(s);
        let stored = s.len();
        let down = s.replica_down(&other);
        let during = lists(s);
        if let Err(e) = check_diffs(&before, &down, &during) { prop_assert!(false, "down: {}", e); }
        prop_assert_eq!(s.len(), stored);
        for p in during.values() {
            for metas in p.values() {
                for m in metas {
                    // nothing of `other` is visible while it is down
                    let r = ref_of(m);
                    let owned_by_other = (0..OWNERS).any(|o| TOPICS.iter().any(|t| KEYS.iter().any(|k| {
                        s.get(t, &owner(j, o), k).is_some_and(|(mm, _)| ref_of(mm) == r)
                    })));
                    prop_assert!(!owned_by_other);
                }
            }
        }
        let up = s.replica_up(&other);
        let after = lists(s);
        if let Err(e) = check_diffs(&during, &up, &after) { prop_assert!(false, "up: {}", e); }
        prop_assert_eq!(&after, &before);
    }

    #[test]
    fn permdown_removes((n, ops) in history(true), i in any::<Index>(), j in any::<Index>()) {
        let mut c = run(n, &ops);
        let i = i.index(n);
        let j = (i + 1 + j.index(n - 1)) % n;
        let other = rep(j);
        let s = &mut c.states[i];
        let before = lists(s);
        let diffs = s.replica_permdown(&other);
        let after = lists(s);
        if let Err(e) = check_diffs(&before, &diffs, &after) { prop_assert!(false, "permdown: {}", e); }
        prop_assert!(!s.context().contains(&other));
        prop_assert!(s.clouds().get(&other).is_none());
        prop_assert_eq!(s.replica_status(&other), None);
        prop_assert!(s.full_extract().values.iter().all(|(r, _, _)| *r != other));
        prop_assert!(s.delta().values.iter().all(|(r, _, _)| *r != other));
        prop_assert!(s.delta().clouds.get(&other).is_none());
        // later messages from it are ignored
        let mut src = c.states[j].clone();
        src.track(TOPICS[0], &owner(j, 9), KEYS[0], Meta::new()).unwrap();
        let d = src.take_delta().unwrap();
        let s = &mut c.states[i];
        // (its messages may still carry third replicas' elements and removals, which apply:
        // only its own elements and clock are ignored)
        s.merge(&d);
        s.merge(&src.full_extract());
        prop_assert!(!s.context().contains(&other));
        prop_assert!(s.full_extract().values.iter().all(|(r, _, _)| *r != other));
    }
}
