//! Wire shapes of spec checklist items 88-95 (and 105: sorted keys), compared as parsed JSON.

mod common;

use common::*;
use serde_json::{json, Value};
use tracker::*;

const TOPIC: &str = "room:lobby";

fn state() -> State {
    let mut s = State::new(ReplicaRef::new("n1", 1));
    s.set_now_ns(1_700_000_000_000_000_000);
    s
}

fn parsed<T: serde::Serialize>(x: &T) -> Value {
    serde_json::from_str(&serde_json::to_string(x).unwrap()).unwrap()
}

/// 88. track → a diff with the key under joins and empty leaves.
#[test]
fn item_88_track_diff() {
    let mut s = state();
    let (r, diff) = s
        .track(TOPIC, &OwnerId::new("ch1"), "42", meta(json!({"s": 1})))
        .unwrap();
    let expected = json!({"joins": {"42": {"metas": [{"s": 1, "phx_ref": r}]}}, "leaves": {}});
    assert_eq!(diff.to_json(), expected);
    assert_eq!(parsed(&diff), expected);
}

/// 89. Tracking the same (owner, topic, key) twice → already_tracked, no diff.
#[test]
fn item_89_already_tracked() {
    let mut s = state();
    s.track(TOPIC, &OwnerId::new("ch1"), "42", meta(json!({"s": 1})))
        .unwrap();
    let before = s.list(TOPIC);
    assert!(s
        .track(TOPIC, &OwnerId::new("ch1"), "42", meta(json!({"s": 2})))
        .is_err());
    assert_eq!(s.list(TOPIC), before);
    assert_eq!(s.delta().values.len(), 1);
}

/// 90. list → `{"42":{"metas":[{"s":1,"phx_ref":ref}]}}`.
#[test]
fn item_90_list_shape() {
    let mut s = state();
    let (r, _) = s
        .track(TOPIC, &OwnerId::new("ch1"), "42", meta(json!({"s": 1})))
        .unwrap();
    let expected = json!({"42": {"metas": [{"s": 1, "phx_ref": r}]}});
    let list = s.list(TOPIC);
    assert_eq!(render_presences(&list), expected);
    assert_eq!(parsed(&PresencesJson(&list)), expected);
    assert_eq!(parse_presences(&expected).unwrap(), list);
}

/// 91. update → one diff: new meta (new ref, phx_ref_prev) in joins, old meta in leaves.
#[test]
fn item_91_update_diff() {
    let mut s = state();
    let owner = OwnerId::new("ch1");
    let (r0, _) = s.track(TOPIC, &owner, "42", meta(json!({"s": 1}))).unwrap();
    let (r1, diff) = s
        .update(TOPIC, &owner, "42", meta(json!({"s": 2})))
        .unwrap();
    let expected = json!({
        "joins": {"42": {"metas": [{"s": 2, "phx_ref": r1, "phx_ref_prev": r0}]}},
        "leaves": {"42": {"metas": [{"s": 1, "phx_ref": r0}]}}
    });
    assert_eq!(diff.to_json(), expected);
    assert_eq!(parsed(&diff), expected);
}

/// 92. update on an untracked key → nopresence.
#[test]
fn item_92_update_nopresence() {
    let mut s = state();
    assert_eq!(
        s.update(TOPIC, &OwnerId::new("ch1"), "42", meta(json!({"s": 2}))),
        Err(NoPresence)
    );
    s.track(TOPIC, &OwnerId::new("ch1"), "41", Meta::new())
        .unwrap();
    assert_eq!(
        s.update(TOPIC, &OwnerId::new("ch1"), "42", Meta::new()),
        Err(NoPresence)
    );
    assert_eq!(
        s.update(TOPIC, &OwnerId::new("ch2"), "41", Meta::new()),
        Err(NoPresence)
    );
}

/// 93. The owner leaves or crashes → a diff with its metas under leaves.
#[test]
fn item_93_owner_exit_diff() {
    let mut s = state();
    let ch1 = OwnerId::new("ch1");
    let (r1, _) = s.track(TOPIC, &ch1, "42", meta(json!({"s": 1}))).unwrap();
    let (r2, _) = s
        .track(TOPIC, &OwnerId::new("ch2"), "42", meta(json!({"s": 9})))
        .unwrap();
    let diffs = s.untrack_owner(&ch1);
    assert_eq!(diffs.len(), 1);
    assert_eq!(
        diffs[TOPIC].to_json(),
        json!({"joins": {}, "leaves": {"42": {"metas": [{"s": 1, "phx_ref": r1}]}}})
    );
    // exact metas only (gotcha 41): the other meta of key 42 stays
    assert_eq!(
        render_presences(&s.list(TOPIC)),
        json!({"42": {"metas": [{"s": 9, "phx_ref": r2}]}})
    );
}

/// 94. Two sockets tracking key "42" → one key with two metas, distinct phx_refs.
#[test]
fn item_94_two_metas_one_key() {
    let mut s = state();
    let (r1, _) = s
        .track(TOPIC, &OwnerId::new("ch1"), "42", meta(json!({"s": 1})))
        .unwrap();
    let (r2, _) = s
        .track(TOPIC, &OwnerId::new("ch2"), "42", meta(json!({"s": 1})))
        .unwrap();
    assert_ne!(r1, r2);
    assert_eq!(
        render_presences(&s.list(TOPIC)),
        json!({"42": {"metas": [{"s": 1, "phx_ref": r1}, {"s": 1, "phx_ref": r2}]}})
    );
}

/// 95. A fetch hook adding "user" decorates presence_state entries and each side of a diff.
#[test]
fn item_95_fetch_decorates_state_and_both_diff_sides() {
    let mut s = state();
    let owner = OwnerId::new("ch1");
    let (r0, _) = s.track(TOPIC, &owner, "42", meta(json!({"s": 1}))).unwrap();
    let fetch = |key: &str, entry: &mut serde_json::Map<String, Value>| {
        entry.insert("user".into(), json!({"id": key}));
    };
    assert_eq!(
        render_presences_with(&s.list(TOPIC), fetch),
        json!({"42": {"metas": [{"s": 1, "phx_ref": r0}], "user": {"id": "42"}}})
    );
    let (r1, diff) = s
        .update(TOPIC, &owner, "42", meta(json!({"s": 2})))
        .unwrap();
    assert_eq!(
        diff.to_json_with(fetch),
        json!({
            "joins": {"42": {"metas": [{"s": 2, "phx_ref": r1, "phx_ref_prev": r0}], "user": {"id": "42"}}},
            "leaves": {"42": {"metas": [{"s": 1, "phx_ref": r0}], "user": {"id": "42"}}}
        })
    );
    // parsing ignores the extras
    assert_eq!(Diff::from_json(&diff.to_json_with(fetch)).unwrap(), diff);
}

/// §12.1 / item 105: presence_state, diffs and metas come out with sorted keys.
#[test]
fn keys_are_sorted_in_rendered_json() {
    let mut s = state();
    for (i, k) in ["carol", "alice", "bob"].iter().enumerate() {
        s.track(
            TOPIC,
            &OwnerId::new(format!("ch{i}")),
            k,
            meta(json!({"zz": 1, "aa": 2})),
        )
        .unwrap();
    }
    let text = serde_json::to_string(&PresencesJson(&s.list(TOPIC))).unwrap();
    let (a, b, c) = (
        text.find("alice").unwrap(),
        text.find("bob").unwrap(),
        text.find("carol").unwrap(),
    );
    assert!(a < b && b < c, "{text}");
    let first_meta = &text[text.find('[').unwrap()..];
    assert!(
        first_meta.starts_with(r#"[{"aa":2,"phx_ref":"#),
        "{first_meta}"
    );
    let text = serde_json::to_string(&render_presences(&s.list(TOPIC))).unwrap();
    assert!(text.find("alice").unwrap() < text.find("bob").unwrap());
    let diff = s.untrack(TOPIC, &OwnerId::new("ch0"), "carol");
    let text = serde_json::to_string(&diff).unwrap();
    assert!(
        text.starts_with(r#"{"joins":{},"leaves":{"carol":{"metas":[{"aa":2,"phx_ref":"#),
        "{text}"
    );
}

/// A remote change arrives at another node as the same diff shape (spec §7.4).
#[test]
fn remote_diff_shape_matches_local() {
    let mut a = state();
    let mut b = State::new(ReplicaRef::new("n2", 1));
    b.handle_heartbeat(a.replica(), 0);
    let (r, local) = a
        .track(TOPIC, &OwnerId::new("ch1"), "42", meta(json!({"s": 1})))
        .unwrap();
    let diffs = b.merge(&a.take_delta().unwrap());
    assert_eq!(
        diffs[TOPIC].to_json(),
        json!({"joins": {"42": {"metas": [{"s": 1, "phx_ref": r}]}}, "leaves": {}})
    );
    assert_eq!(diffs[TOPIC], local);
}
