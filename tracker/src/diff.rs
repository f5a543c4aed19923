//! Presence maps and diffs: the shapes of `presence_state` / `presence_diff` (spec §7.2-§7.4),
//! the diff coalescer, and a model of the phoenix.js `Presence` helper (§7.5).

use std::collections::{BTreeMap, HashSet};

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// A presence meta: the app's JSON object plus `"phx_ref"` (and `"phx_ref_prev"` after an
/// update). `serde_json::Map` keeps keys sorted (the workspace does not enable serde_json's
/// `preserve_order` feature; a unit test guards that), as spec §12.1 requires.
pub type Meta = Map<String, Value>;

/// `key → [meta, …]` for one topic: the content of `presence_state`, or one side of a diff.
/// Keys are sorted (BTreeMap); within a key, metas are in a deterministic order (owner order
/// for [`crate::State::list`]).
pub type Presences = BTreeMap<String, Vec<Meta>>;

/// Diffs per topic, as reported by one tracker operation (`topic → Diff`).
pub type Diffs = BTreeMap<String, Diff>;

/// The `phx_ref` of a meta (`None` if missing). Refs are compared as JSON values, like
/// phoenix.js compares them with `===`.
pub fn phx_ref(meta: &Meta) -> Option<&Value> {
    meta.get("phx_ref")
}

/// A presence diff for one topic: `joins` and `leaves`, each `key → [metas]`. An update has
/// the key on both sides (new meta in `joins`, old meta in `leaves`). Keys with an empty meta
/// list are never produced.
///
/// Serializes (serde) as the wire shape `{"joins":{"k":{"metas":[…]}},"leaves":{…}}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diff {
    pub joins: Presences,
    pub leaves: Presences,
}

impl Diff {
    pub fn new() -> Self {
        Diff::default()
    }

    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }

    /// Adds a joined meta under `key`.
    pub fn add_join(&mut self, key: &str, meta: Meta) {
        self.joins.entry(key.to_owned()).or_default().push(meta);
    }

    /// Adds a left meta under `key`.
    pub fn add_leave(&mut self, key: &str, meta: Meta) {
        self.leaves.entry(key.to_owned()).or_default().push(meta);
    }

    /// Folds a *later* diff of the same topic into this one, giving one diff that has exactly
    /// the effect of applying `self` then `later` with phoenix.js `syncDiff` (joins before
    /// leaves, metas matched by `phx_ref`, spec §7.5).
    ///
    /// Rule, per key, writing `J1/L1` for the refs joined/left by `self` and `J2/L2` for
    /// `later`:
    /// 1. *Normalise* each diff: a ref both joined and left by one diff is dropped from its
    ///    joins (syncDiff adds it and removes it again: the net effect is "absent").
    /// 2. `joins = (J1 − J2 − L2) ++ J2`: a meta joined first and left (or re-joined) later is
    ///    dropped from the first part; the later join wins, in its later position.
    /// 3. `leaves = (L1 − J2) ∪ L2` (deduplicated by ref, first occurrence kept): a meta
    ///    that left and then joined again with the **same** ref (replica down then up) is not a
    ///    leave any more; everything else that left stays a leave.
    ///
    /// So a ref ends up in `joins` iff its last event in the window is a join, and in `leaves`
    /// iff its last event is a leave. Consequences: joined-then-left ⇒ only in `leaves`;
    /// left-then-new-meta-joined ⇒ old ref in `leaves`, new ref in `joins`; update then update
    /// ⇒ the latest meta in `joins`, the original and the intermediate meta in `leaves`.
    ///
    /// Why a meta that joined and left inside the window stays in `leaves` (instead of
    /// vanishing from both sides): the coalesced diff is then exactly equivalent (same keys,
    /// same metas, same order) to the two diffs in sequence for **every** client state, and
    /// it is also correct (same keys and metas) for a client whose `presence_state` was taken
    /// *inside* the window — that client has the meta, and must be told it left. For a client
    /// that never saw it the leave is a no-op (syncDiff removes nothing). Dropping it from both
    /// sides would leave a ghost presence on such a client forever.
    pub fn merge(self, later: Diff) -> Diff {
        let first = self.normalized();
        let later = later.normalized();
        let mut joins = Presences::new();
        let mut leaves = Presences::new();
        let keys: std::collections::BTreeSet<&String> = first
            .joins
            .keys()
            .chain(first.leaves.keys())
            .chain(later.joins.keys())
            .chain(later.leaves.keys())
            .collect();
        let empty: Vec<Meta> = Vec::new();
        for key in keys {
            let j1 = first.joins.get(key).unwrap_or(&empty);
            let l1 = first.leaves.get(key).unwrap_or(&empty);
            let j2 = later.joins.get(key).unwrap_or(&empty);
            let l2 = later.leaves.get(key).unwrap_or(&empty);
            let j2_refs = refs(j2);
            let l2_refs = refs(l2);
            let mut j: Vec<Meta> = j1
                .iter()
                .filter(|m| !j2_refs.contains(&phx_ref(m)) && !l2_refs.contains(&phx_ref(m)))
                .cloned()
                .collect();
            j.extend(j2.iter().cloned());
            let mut seen = HashSet::new();
            let l: Vec<Meta> = l1
                .iter()
                .filter(|m| !j2_refs.contains(&phx_ref(m)))
                .chain(l2.iter())
                .filter(|m| seen.insert(phx_ref(m)))
                .cloned()
                .collect();
            if !j.is_empty() {
                joins.insert(key.clone(), j);
            }
            if !l.is_empty() {
                leaves.insert(key.clone(), l);
            }
        }
        Diff { joins, leaves }
    }

    /// Step 1 of [`Diff::merge`]: drops from `joins` the refs that this same diff also leaves,
    /// and keys left with no metas. Equivalent under syncDiff.
    pub fn normalized(mut self) -> Diff {
        for (key, left) in &self.leaves {
            if let Some(j) = self.joins.get_mut(key) {
                let l = refs(left);
                j.retain(|m| !l.contains(&phx_ref(m)));
            }
        }
        self.joins.retain(|_, v| !v.is_empty());
        self.leaves.retain(|_, v| !v.is_empty());
        self
    }

    /// `{"joins": …, "leaves": …}` as a JSON value (both keys always present).
    pub fn to_json(&self) -> Value {
        self.to_json_with(|_, _| {})
    }

    /// Like [`Diff::to_json`], with a `fetch` hook (Phoenix `fetch/2`, spec §7.1) called for
    /// every presence object (`{"metas": […]}`) of each side with its key; it may add fields
    /// next to `"metas"` (e.g. `"user"`), and must keep `"metas"`.
    pub fn to_json_with<F: FnMut(&str, &mut Map<String, Value>)>(&self, mut fetch: F) -> Value {
        let mut out = Map::new();
        out.insert(
            "joins".into(),
            render_presences_with(&self.joins, &mut fetch),
        );
        out.insert(
            "leaves".into(),
            render_presences_with(&self.leaves, &mut fetch),
        );
        Value::Object(out)
    }

    /// Parses the wire shape `{"joins":{k:{"metas":[…]}},"leaves":{…}}` (extra fields next to
    /// `metas` are ignored).
    pub fn from_json(v: &Value) -> Result<Diff, String> {
        let obj = v.as_object().ok_or("diff is not an object")?;
        let side = |name: &str| -> Result<Presences, String> {
            match obj.get(name) {
                None => Ok(Presences::new()),
                Some(p) => parse_presences(p),
            }
        };
        Ok(Diff {
            joins: side("joins")?,
            leaves: side("leaves")?,
        })
    }
}

fn refs(metas: &[Meta]) -> HashSet<Option<&Value>> {
    metas.iter().map(phx_ref).collect()
}

/// Folds a later set of per-topic diffs into `into`, topic by topic, with [`Diff::merge`].
pub fn merge_diffs(into: &mut Diffs, later: Diffs) {
    for (topic, d) in later {
        match into.remove(&topic) {
            Some(first) => {
                let m = first.merge(d);
                if !m.is_empty() {
                    into.insert(topic, m);
                }
            }
            None => {
                if !d.is_empty() {
                    into.insert(topic, d);
                }
            }
        }
    }
}

/// Renders presences as the wire shape `{"key": {"metas": [...]}}` (keys sorted).
pub fn render_presences(p: &Presences) -> Value {
    render_presences_with(p, |_, _| {})
}

/// Like [`render_presences`], with a per-key `fetch` hook that may add fields next to
/// `"metas"` (Phoenix `fetch/2`, spec §7.1 / checklist 95).
pub fn render_presences_with<F: FnMut(&str, &mut Map<String, Value>)>(
    p: &Presences,
    mut fetch: F,
) -> Value {
    let mut out = Map::new();
    for (key, metas) in p {
        let mut entry = Map::new();
        entry.insert(
            "metas".into(),
            Value::Array(metas.iter().cloned().map(Value::Object).collect()),
        );
        fetch(key, &mut entry);
        out.insert(key.clone(), Value::Object(entry));
    }
    Value::Object(out)
}

/// Parses `{"key": {"metas": [...]}}` into [`Presences`].
pub fn parse_presences(v: &Value) -> Result<Presences, String> {
    let obj = v.as_object().ok_or("presences is not an object")?;
    let mut out = Presences::new();
    for (key, entry) in obj {
        let metas = entry
            .get("metas")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("presence {key:?} has no metas array"))?;
        let metas = metas
            .iter()
            .map(|m| {
                m.as_object()
                    .cloned()
                    .ok_or_else(|| format!("meta of {key:?} not an object"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(key.clone(), metas);
    }
    Ok(out)
}

/// Serializes presences in the wire shape without building a `Value`:
/// `serde_json::to_string(&PresencesJson(&list))`.
pub struct PresencesJson<'a>(pub &'a Presences);

impl Serialize for PresencesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Entry<'a>(&'a [Meta]);
        impl Serialize for Entry<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("metas", self.0)?;
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, metas) in self.0 {
            m.serialize_entry(k, &Entry(metas))?;
        }
        m.end()
    }
}

impl Serialize for Diff {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("joins", &PresencesJson(&self.joins))?;
        m.serialize_entry("leaves", &PresencesJson(&self.leaves))?;
        m.end()
    }
}

/// A model of the phoenix.js 1.8 `Presence` state functions (spec §7.5), over metas only (no
/// `fetch` extras). Used to check that tracker diffs and coalesced diffs do what clients do.
pub mod client {
    use super::*;

    /// `Presence.syncDiff(state, {joins, leaves})`: joins first — the key's metas become the
    /// current metas whose `phx_ref` is not among the joined ones, followed by the joined ones;
    /// then leaves — for a present key drop the metas whose `phx_ref` is among the left ones and
    /// delete the key when none remain (an absent key is ignored).
    pub fn sync_diff(state: &mut Presences, diff: &Diff) {
        for (key, joined) in &diff.joins {
            let jrefs = refs(joined);
            let mut metas: Vec<Meta> = match state.get(key) {
                Some(cur) => cur
                    .iter()
                    .filter(|m| !jrefs.contains(&phx_ref(m)))
                    .cloned()
                    .collect(),
                None => Vec::new(),
            };
            metas.extend(joined.iter().cloned());
            state.insert(key.clone(), metas);
        }
        for (key, left) in &diff.leaves {
            if let Some(cur) = state.get_mut(key) {
                let lrefs = refs(left);
                cur.retain(|m| !lrefs.contains(&phx_ref(m)));
                if cur.is_empty() {
                    state.remove(key);
                }
            }
        }
    }

    /// `Presence.syncState(state, newState)`: keys only in the old state leave entirely, keys
    /// only in the new one join entirely, and for common keys metas are diffed by `phx_ref`;
    /// the synthetic diff is then applied with [`sync_diff`]. Returns that diff.
    pub fn sync_state(state: &mut Presences, new_state: &Presences) -> Diff {
        let mut diff = Diff::new();
        for (key, cur) in state.iter() {
            if !new_state.contains_key(key) {
                diff.leaves.insert(key.clone(), cur.clone());
            }
        }
        for (key, new) in new_state {
            match state.get(key) {
                Some(cur) => {
                    let new_refs = refs(new);
                    let cur_refs = refs(cur);
                    let joined: Vec<Meta> = new
                        .iter()
                        .filter(|m| !cur_refs.contains(&phx_ref(m)))
                        .cloned()
                        .collect();
                    let left: Vec<Meta> = cur
                        .iter()
                        .filter(|m| !new_refs.contains(&phx_ref(m)))
                        .cloned()
                        .collect();
                    if !joined.is_empty() {
                        diff.joins.insert(key.clone(), joined);
                    }
                    if !left.is_empty() {
                        diff.leaves.insert(key.clone(), left);
                    }
                }
                None => {
                    diff.joins.insert(key.clone(), new.clone());
                }
            }
        }
        sync_diff(state, &diff);
        diff
    }
}

#[cfg(test)]
mod tests {
    use super::client::sync_diff;
    use super::*;
    use serde_json::json;

    fn m(r: &str) -> Meta {
        json!({"phx_ref": r}).as_object().unwrap().clone()
    }
    fn d(joins: &[(&str, &[&str])], leaves: &[(&str, &[&str])]) -> Diff {
        let side = |s: &[(&str, &[&str])]| -> Presences {
            s.iter()
                .map(|(k, rs)| (k.to_string(), rs.iter().map(|r| m(r)).collect()))
                .collect()
        };
        Diff {
            joins: side(joins),
            leaves: side(leaves),
        }
    }

    #[test]
    fn meta_keys_are_sorted() {
        // Fails if serde_json's preserve_order feature gets enabled in the workspace.
        let mut meta = Meta::new();
        meta.insert("zeta".into(), json!(1));
        meta.insert("alpha".into(), json!(2));
        meta.insert("phx_ref".into(), json!("r"));
        assert_eq!(
            serde_json::to_string(&meta).unwrap(),
            r#"{"alpha":2,"phx_ref":"r","zeta":1}"#
        );
    }

    #[test]
    fn wire_shape_serialization() {
        let diff = d(&[("b", &["2"]), ("a", &["1"])], &[]);
        let s = serde_json::to_string(&diff).unwrap();
        assert_eq!(
            s,
            r#"{"joins":{"a":{"metas":[{"phx_ref":"1"}]},"b":{"metas":[{"phx_ref":"2"}]}},"leaves":{}}"#
        );
        assert_eq!(serde_json::to_value(&diff).unwrap(), diff.to_json());
        assert_eq!(Diff::from_json(&diff.to_json()).unwrap(), diff);
    }

    #[test]
    fn coalesce_join_then_leave() {
        let c = d(&[("k", &["a"])], &[]).merge(d(&[], &[("k", &["a"])]));
        assert_eq!(c, d(&[], &[("k", &["a"])]));
    }

    #[test]
    fn coalesce_leave_then_new_join() {
        let c = d(&[], &[("k", &["a"])]).merge(d(&[("k", &["b"])], &[]));
        assert_eq!(c, d(&[("k", &["b"])], &[("k", &["a"])]));
    }

    #[test]
    fn coalesce_update_then_update() {
        let c = d(&[("k", &["b"])], &[("k", &["a"])]).merge(d(&[("k", &["c"])], &[("k", &["b"])]));
        assert_eq!(c, d(&[("k", &["c"])], &[("k", &["a", "b"])]));
        // applied to the state before the window it gives the state after
        let mut s: Presences = [("k".to_string(), vec![m("a"), m("x")])].into();
        sync_diff(&mut s, &c);
        assert_eq!(
            s,
            Presences::from([("k".to_string(), vec![m("x"), m("c")])])
        );
    }

    #[test]
    fn coalesce_leave_then_rejoin_same_ref() {
        // replica down (leave a) then up (join a again)
        let c = d(&[], &[("k", &["a"])]).merge(d(&[("k", &["a"])], &[]));
        assert_eq!(c, d(&[("k", &["a"])], &[]));
    }

    #[test]
    fn sync_diff_join_before_leave() {
        let mut s = Presences::new();
        sync_diff(&mut s, &d(&[("k", &["a"])], &[("k", &["a"])]));
        assert!(s.is_empty());
        sync_diff(&mut s, &d(&[], &[("absent", &["z"])]));
        assert!(s.is_empty());
        sync_diff(&mut s, &d(&[("k", &["a", "b"])], &[]));
        sync_diff(&mut s, &d(&[("k", &["a"])], &[]));
        assert_eq!(s["k"], vec![m("b"), m("a")]);
    }
}
