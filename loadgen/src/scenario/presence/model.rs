//! A model of the phoenix.js `Presence` helper (spec §7.5): `syncState`, `syncDiff`, and the
//! pending-diff buffer used until the `presence_state` for the current join arrives.
//! Only what matters for convergence is kept: key → list of `phx_ref`s (meta contents are never
//! compared by phoenix.js).

use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};

/// key → metas' phx_refs, in order
pub type Presences = Vec<(String, Vec<String>)>;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Diff {
    pub joins: Presences,
    pub leaves: Presences,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    phx_ref: Option<String>,
}
#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    metas: Vec<Meta>,
}

/// Parse a presences map `{key: {"metas": [{"phx_ref": ..}, ..]}, ..}`.
pub fn parse_presences(json: &str) -> Result<Presences, serde_json::Error> {
    let m: BTreeMap<String, Entry> = serde_json::from_str(json)?;
    Ok(m.into_iter()
        .map(|(k, e)| (k, e.metas.into_iter().map(|m| m.phx_ref.unwrap_or_default()).collect()))
        .collect())
}

/// Parse a `presence_diff` payload `{"joins": {..}, "leaves": {..}}`.
pub fn parse_diff(payload: &str) -> Result<Diff, serde_json::Error> {
    #[derive(Deserialize)]
    struct D<'a> {
        #[serde(borrow, default)]
        joins: Option<&'a RawValue>,
        #[serde(borrow, default)]
        leaves: Option<&'a RawValue>,
    }
    let d: D = serde_json::from_str(payload)?;
    Ok(Diff {
        joins: match d.joins { Some(j) => parse_presences(j.get())?, None => vec![] },
        leaves: match d.leaves { Some(l) => parse_presences(l.get())?, None => vec![] },
    })
}

/// A change of a key's visibility in a view: `(key, present_now)`.
pub type Transition = (String, bool);

#[derive(Debug, Default)]
pub struct PresenceView {
    pub state: HashMap<String, Vec<String>>,
    pending: Vec<Diff>,
    synced: bool,
}

impl PresenceView {
    pub fn new() -> Self {
        Self::default()
    }
    /// Whether a `presence_state` was received for the current join.
    pub fn synced(&self) -> bool {
        self.synced
    }
    pub fn contains(&self, key: &str) -> bool {
        self.state.contains_key(key)
    }
    pub fn len(&self) -> usize {
        self.state.len()
    }
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The channel (re)joined with a new join_ref: diffs queue until the next `presence_state`.
    pub fn on_rejoin(&mut self) {
        self.synced = false;
    }

    /// Channel left: phoenix.js drops the Presence with the channel.
    pub fn on_leave(&mut self) {
        self.synced = false;
        self.state.clear();
        self.pending.clear();
    }

    /// `presence_state`: syncState, then apply pending diffs in arrival order.
    pub fn on_state(&mut self, new: Presences) -> Vec<Transition> {
        let mut touched = Touched::default();
        let diff = state_to_diff(&self.state, &new);
        sync_diff(&mut self.state, &diff, &mut touched);
        for d in std::mem::take(&mut self.pending) {
            sync_diff(&mut self.state, &d, &mut touched);
        }
        self.synced = true;
        touched.transitions(&self.state)
    }

    /// `presence_diff`: queued while pending, else syncDiff.
    pub fn on_diff(&mut self, diff: Diff) -> Vec<Transition> {
        if !self.synced {
            self.pending.push(diff);
            return vec![];
        }
        let mut touched = Touched::default();
        sync_diff(&mut self.state, &diff, &mut touched);
        touched.transitions(&self.state)
    }
}

/// The keys a sync touched, with their refs before it.
#[derive(Default)]
struct Touched(HashMap<String, Option<Vec<String>>>);
impl Touched {
    fn note(&mut self, state: &HashMap<String, Vec<String>>, key: &str) {
        if !self.0.contains_key(key) {
            self.0.insert(key.to_string(), state.get(key).cloned());
        }
    }
    /// A key that appeared or disappeared; and a key whose every meta was replaced as both a
    /// leave and a join: phoenix.js calls `onLeave` for the old metas and `onJoin` for the new
    /// ones, and a leave and rejoin coalesced into one diff (a server with a diff window) looks
    /// exactly like that. A meta added beside the old ones (another tab) is no transition.
    fn transitions(self, state: &HashMap<String, Vec<String>>) -> Vec<Transition> {
        let mut out: Vec<Transition> = vec![];
        for (k, before) in self.0 {
            match (before, state.get(&k)) {
                (None, Some(_)) => out.push((k, true)),
                (Some(_), None) => out.push((k, false)),
                (Some(b), Some(now)) if !b.is_empty() && b.iter().all(|r| !now.contains(r)) => {
                    out.push((k.clone(), false));
                    out.push((k, true));
                }
                _ => {}
            }
        }
        out.sort();
        out
    }
}

/// syncState's synthetic diff (§7.5).
fn state_to_diff(current: &HashMap<String, Vec<String>>, new: &Presences) -> Diff {
    let mut diff = Diff::default();
    let new_keys: HashMap<&str, &Vec<String>> = new.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut cur_keys: Vec<&String> = current.keys().collect();
    cur_keys.sort();
    for k in cur_keys {
        let cur = &current[k];
        match new_keys.get(k.as_str()) {
            None => diff.leaves.push((k.clone(), cur.clone())),
            Some(n) => {
                let left: Vec<String> = cur.iter().filter(|r| !n.contains(r)).cloned().collect();
                if !left.is_empty() {
                    diff.leaves.push((k.clone(), left));
                }
            }
        }
    }
    for (k, n) in new {
        match current.get(k) {
            None => diff.joins.push((k.clone(), n.clone())),
            Some(cur) => {
                let joined: Vec<String> = n.iter().filter(|r| !cur.contains(r)).cloned().collect();
                if !joined.is_empty() {
                    diff.joins.push((k.clone(), joined));
                }
            }
        }
    }
    diff
}

/// syncDiff (§7.5): joins first, then leaves; matching by phx_ref only.
fn sync_diff(state: &mut HashMap<String, Vec<String>>, diff: &Diff, touched: &mut Touched) {
    for (k, refs) in &diff.joins {
        touched.note(state, k);
        let mut metas: Vec<String> = match state.get(k) {
            Some(cur) => cur.iter().filter(|r| !refs.contains(r)).cloned().collect(),
            None => vec![],
        };
        metas.extend(refs.iter().cloned());
        state.insert(k.clone(), metas);
    }
    for (k, refs) in &diff.leaves {
        touched.note(state, k);
        if let Some(cur) = state.get_mut(k) {
            cur.retain(|r| !refs.contains(r));
            if cur.is_empty() {
                state.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leave_and_rejoin_in_one_diff_is_both_transitions() {
        let mut v = PresenceView::new();
        v.on_state(vec![("u1".into(), vec!["r1".into()])]);
        let d = Diff { joins: vec![("u1".into(), vec!["r2".into()])], leaves: vec![("u1".into(), vec!["r1".into()])] };
        assert_eq!(v.on_diff(d), vec![("u1".to_string(), false), ("u1".to_string(), true)]);
        assert!(v.contains("u1"));
        // a second tab joining (the old meta stays) is no transition
        let d = Diff { joins: vec![("u1".into(), vec!["r3".into()])], leaves: vec![] };
        assert_eq!(v.on_diff(d), vec![]);
    }

    fn p(list: &[(&str, &[&str])]) -> Presences {
        list.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    }
    fn refs(v: &PresenceView, k: &str) -> Vec<String> {
        v.state.get(k).cloned().unwrap_or_default()
    }

    #[test]
    fn parse_payloads() {
        let s = r#"{"42":{"metas":[{"online_at":"1","phx_ref":"A"},{"phx_ref":"B","phx_ref_prev":"Z"}]},"57":{"metas":[{"phx_ref":"C"}],"user":{"name":"x"}}}"#;
        assert_eq!(parse_presences(s).unwrap(), p(&[("42", &["A", "B"]), ("57", &["C"])]));
        let raw: Box<RawValue> = serde_json::from_str(r#"{"joins":{"1":{"metas":[{"phx_ref":"X"}]}},"leaves":{}}"#).unwrap();
        let d = parse_diff(raw.get()).unwrap();
        assert_eq!(d.joins, p(&[("1", &["X"])]));
        assert!(d.leaves.is_empty());
    }

    #[test]
    fn diffs_queue_until_state_and_own_diff_before_state() {
        let mut v = PresenceView::new();
        // spec §12.3: the joiner sees its own join diff before presence_state
        let t = v.on_diff(Diff { joins: p(&[("me", &["R1"])]), leaves: vec![] });
        assert!(t.is_empty());
        assert_eq!(v.pending_len(), 1);
        assert!(!v.contains("me"));
        let t = v.on_state(p(&[("me", &["R1"]), ("other", &["R2"])]));
        assert_eq!(t, vec![("me".to_string(), true), ("other".to_string(), true)]);
        assert_eq!(v.pending_len(), 0);
        assert_eq!(refs(&v, "me"), vec!["R1"]); // idempotent: the overlapping join is harmless
    }

    #[test]
    fn join_merges_metas_and_leave_drops_by_ref() {
        let mut v = PresenceView::new();
        v.on_state(p(&[("u", &["A"])]));
        // second device of the same user: one key, two metas; no transition
        let t = v.on_diff(Diff { joins: p(&[("u", &["B"])]), leaves: vec![] });
        assert!(t.is_empty());
        assert_eq!(refs(&v, "u"), vec!["A", "B"]);
        // re-join of an existing ref moves it to the end, no duplicates
        v.on_diff(Diff { joins: p(&[("u", &["A"])]), leaves: vec![] });
        assert_eq!(refs(&v, "u"), vec!["B", "A"]);
        // leave one meta: key stays
        let t = v.on_diff(Diff { joins: vec![], leaves: p(&[("u", &["A"])]) });
        assert!(t.is_empty());
        assert_eq!(refs(&v, "u"), vec!["B"]);
        // leave the last meta: key goes
        let t = v.on_diff(Diff { joins: vec![], leaves: p(&[("u", &["B"])]) });
        assert_eq!(t, vec![("u".to_string(), false)]);
        // leave of an absent key is ignored
        let t = v.on_diff(Diff { joins: vec![], leaves: p(&[("nobody", &["Q"])]) });
        assert!(t.is_empty());
        assert!(v.is_empty());
    }

    #[test]
    fn update_is_join_then_leave_in_one_diff() {
        let mut v = PresenceView::new();
        v.on_state(p(&[("u", &["OLD"])]));
        let t = v.on_diff(Diff { joins: p(&[("u", &["NEW"])]), leaves: p(&[("u", &["OLD"])]) });
        // every meta replaced: phoenix.js calls onLeave for OLD and onJoin for NEW, and a leave
        // plus rejoin coalesced into one diff looks the same; both are reported
        assert_eq!(t, vec![("u".to_string(), false), ("u".to_string(), true)]);
        assert_eq!(refs(&v, "u"), vec!["NEW"]);
    }

    #[test]
    fn sync_state_reconciles_after_rejoin() {
        let mut v = PresenceView::new();
        v.on_state(p(&[("a", &["A1"]), ("b", &["B1", "B2"]), ("c", &["C1"])]));
        v.on_rejoin();
        // diff arriving after the rejoin but before the new state is queued
        assert!(v.on_diff(Diff { joins: p(&[("d", &["D1"])]), leaves: vec![] }).is_empty());
        assert!(!v.contains("d"));
        // while away: a left, b lost B1 and gained B3, e joined
        let t = v.on_state(p(&[("b", &["B2", "B3"]), ("c", &["C1"]), ("e", &["E1"])]));
        assert_eq!(
            t,
            vec![("a".to_string(), false), ("d".to_string(), true), ("e".to_string(), true)]
        );
        assert_eq!(refs(&v, "b"), vec!["B2", "B3"]);
        assert_eq!(v.len(), 4);
    }
}
