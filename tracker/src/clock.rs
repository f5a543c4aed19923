//! Causal contexts, dot clouds and the clock algebra of spec §8.6.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::ReplicaRef;

/// A causal context / version vector `R → n`: all dots `(R, 1..=n)` have been seen
/// (spec §8.3). A replica absent from the map counts as 0 in comparisons, but *membership*
/// matters too: a replica is "known" to a state iff it is a key of its context (§8.8).
///
/// Serialized as a JSON array of `[replica, n]` pairs (JSON objects need string keys).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Context(pub BTreeMap<ReplicaRef, u64>);

impl Context {
    pub fn new() -> Self {
        Context(BTreeMap::new())
    }

    /// `context[r]`, 0 when absent.
    pub fn get(&self, r: &ReplicaRef) -> u64 {
        self.0.get(r).copied().unwrap_or(0)
    }

    pub fn contains(&self, r: &ReplicaRef) -> bool {
        self.0.contains_key(r)
    }

    pub fn set(&mut self, r: ReplicaRef, n: u64) {
        self.0.insert(r, n);
    }

    pub fn remove(&mut self, r: &ReplicaRef) -> Option<u64> {
        self.0.remove(r)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ReplicaRef, u64)> {
        self.0.iter().map(|(r, n)| (r, *n))
    }

    pub fn replicas(&self) -> impl Iterator<Item = &ReplicaRef> {
        self.0.keys()
    }

    /// The entries whose replica is a key of `keys_of` (Phoenix `Map.take(c, Map.keys(k))`).
    pub fn restrict_to(&self, keys_of: &Context) -> Context {
        Context(
            self.0
                .iter()
                .filter(|(r, _)| keys_of.contains(r))
                .map(|(r, n)| (r.clone(), *n))
                .collect(),
        )
    }

    /// See [`dominates`].
    pub fn dominates(&self, other: &Context) -> bool {
        dominates(self, other)
    }

    /// See [`dominates_or_equal`].
    pub fn dominates_or_equal(&self, other: &Context) -> bool {
        dominates_or_equal(self, other)
    }
}

impl FromIterator<(ReplicaRef, u64)> for Context {
    fn from_iter<I: IntoIterator<Item = (ReplicaRef, u64)>>(iter: I) -> Self {
        Context(iter.into_iter().collect())
    }
}

impl Serialize for Context {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<(ReplicaRef, u64)> = Vec::deserialize(d)?;
        Ok(Context(v.into_iter().collect()))
    }
}

/// `dominates(a, b)` (spec §8.6, Phoenix `Clock.dominates?`): false if `a` has fewer entries
/// than `b`; else true iff for every `r` in `b`, `a[r]` (0 if absent) `≥ b[r]`.
pub fn dominates(a: &Context, b: &Context) -> bool {
    if a.len() < b.len() {
        return false;
    }
    b.0.iter().all(|(r, n)| a.get(r) >= *n)
}

/// `dominates_or_equal(a, b)` (spec §8.6): true if both are empty; false if only `a` is empty;
/// else true iff for every `r` in `a`, `a[r] ≥ b[r]` (0 if absent).
pub fn dominates_or_equal(a: &Context, b: &Context) -> bool {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => true,
        (true, false) => false,
        _ => a.0.iter().all(|(r, n)| *n >= b.get(r)),
    }
}

/// Pointwise max over the union of keys.
pub fn upperbound(a: &Context, b: &Context) -> Context {
    let mut out = a.clone();
    for (r, n) in b.iter() {
        let e = out.0.entry(r.clone()).or_insert(n);
        *e = (*e).max(n);
    }
    out
}

/// Pointwise min over the union of keys; a key present in only one clock keeps its value
/// (Phoenix `Map.merge(c1, c2, &min/2)`).
pub fn lowerbound(a: &Context, b: &Context) -> Context {
    let mut out = a.clone();
    for (r, n) in b.iter() {
        let e = out.0.entry(r.clone()).or_insert(n);
        *e = (*e).min(n);
    }
    out
}

/// Dot clouds `R → {n}`: dots seen beyond the contiguous prefix of the context (spec §8.3).
/// In a [`crate::Delta`] the clouds hold every dot the delta covers (adds and removes).
///
/// Serialized as a JSON array of `[replica, [n, …]]` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clouds(pub BTreeMap<ReplicaRef, BTreeSet<u64>>);

impl Clouds {
    pub fn new() -> Self {
        Clouds(BTreeMap::new())
    }

    pub fn contains(&self, r: &ReplicaRef, n: u64) -> bool {
        self.0.get(r).is_some_and(|c| c.contains(&n))
    }

    pub fn insert(&mut self, r: &ReplicaRef, n: u64) {
        if let Some(c) = self.0.get_mut(r) {
            c.insert(n);
        } else {
            self.0.insert(r.clone(), BTreeSet::from([n]));
        }
    }

    /// Removes one dot; drops the replica's cloud when it becomes empty.
    pub fn remove(&mut self, r: &ReplicaRef, n: u64) {
        if let Some(c) = self.0.get_mut(r) {
            c.remove(&n);
            if c.is_empty() {
                self.0.remove(r);
            }
        }
    }

    pub fn get(&self, r: &ReplicaRef) -> Option<&BTreeSet<u64>> {
        self.0.get(r)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ReplicaRef, &BTreeSet<u64>)> {
        self.0.iter()
    }

    /// Total number of dots over all replicas.
    pub fn dot_count(&self) -> usize {
        self.0.values().map(BTreeSet::len).sum()
    }

    /// True iff no replica has any dot.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(BTreeSet::is_empty)
    }

    /// Restriction to the replicas that are keys of `keys_of`.
    pub fn restrict_to(&self, keys_of: &Context) -> Clouds {
        Clouds(
            self.0
                .iter()
                .filter(|(r, c)| keys_of.contains(r) && !c.is_empty())
                .map(|(r, c)| (r.clone(), c.clone()))
                .collect(),
        )
    }
}

impl Serialize for Clouds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Clouds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<(ReplicaRef, BTreeSet<u64>)> = Vec::deserialize(d)?;
        Ok(Clouds(
            v.into_iter().filter(|(_, c)| !c.is_empty()).collect(),
        ))
    }
}

/// A set of clocks `(R, context)` heard from replicas, kept reduced to the maximal ones
/// (spec §8.5 step 2 and §8.6 `append`); used to pick whom to send `transfer_req` to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSet(pub Vec<(ReplicaRef, Context)>);

impl ClockSet {
    pub fn new() -> Self {
        ClockSet(Vec::new())
    }

    /// Phoenix `Clock.append_clock/2`: ignore an empty clock. Let `big` = upperbound of the
    /// set. If `dominates(c, big)` the set becomes `[(r, c)]`; else if `dominates(big, c)` it is
    /// unchanged; else every entry dominated by `c` is dropped and `(r, c)` is added if at least
    /// one entry was dropped or at least one remaining entry does not dominate `c`.
    pub fn append(&mut self, r: ReplicaRef, c: Context) {
        if c.is_empty() {
            return;
        }
        let big = self
            .0
            .iter()
            .fold(Context::new(), |acc, (_, x)| upperbound(x, &acc));
        if dominates(&c, &big) {
            self.0 = vec![(r, c)];
        } else if dominates(&big, &c) {
        } else {
            let mut insert = false;
            let mut kept = Vec::with_capacity(self.0.len() + 1);
            for (r2, c2) in self.0.drain(..) {
                if dominates(&c, &c2) {
                    insert = true;
                } else {
                    insert = insert || !dominates(&c2, &c);
                    kept.push((r2, c2));
                }
            }
            if insert {
                kept.insert(0, (r, c));
            }
            self.0 = kept;
        }
    }

    pub fn replicas(&self) -> impl Iterator<Item = &ReplicaRef> {
        self.0.iter().map(|(r, _)| r)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: &str) -> ReplicaRef {
        ReplicaRef::new(n, 1)
    }
    fn ctx(entries: &[(&str, u64)]) -> Context {
        entries.iter().map(|(n, c)| (r(n), *c)).collect()
    }

    #[test]
    fn dominates_rules() {
        assert!(dominates(
            &ctx(&[("a", 2), ("b", 1)]),
            &ctx(&[("a", 1), ("b", 1)])
        ));
        assert!(dominates(&ctx(&[("a", 1)]), &ctx(&[("a", 1)])));
        assert!(
            !dominates(&ctx(&[("a", 5)]), &ctx(&[("a", 1), ("b", 1)])),
            "fewer entries"
        );
        assert!(!dominates(
            &ctx(&[("a", 5), ("c", 1)]),
            &ctx(&[("a", 1), ("b", 1)])
        ));
        assert!(dominates(
            &ctx(&[("a", 5), ("c", 1)]),
            &ctx(&[("a", 1), ("b", 0)])
        ));
        assert!(dominates(&ctx(&[]), &ctx(&[])));
        assert!(dominates(&ctx(&[("a", 0)]), &ctx(&[])));
    }

    #[test]
    fn dominates_or_equal_rules() {
        assert!(dominates_or_equal(&ctx(&[]), &ctx(&[])));
        assert!(!dominates_or_equal(&ctx(&[]), &ctx(&[("a", 1)])));
        assert!(dominates_or_equal(&ctx(&[("a", 1)]), &ctx(&[])));
        assert!(
            dominates_or_equal(&ctx(&[("a", 2)]), &ctx(&[("a", 2), ("b", 9)])),
            "only a's keys"
        );
        assert!(!dominates_or_equal(&ctx(&[("a", 1)]), &ctx(&[("a", 2)])));
    }

    #[test]
    fn bounds() {
        let a = ctx(&[("a", 1), ("b", 5)]);
        let b = ctx(&[("b", 2), ("c", 3)]);
        assert_eq!(upperbound(&a, &b), ctx(&[("a", 1), ("b", 5), ("c", 3)]));
        assert_eq!(lowerbound(&a, &b), ctx(&[("a", 1), ("b", 2), ("c", 3)]));
    }

    #[test]
    fn clockset_append() {
        let mut s = ClockSet::new();
        s.append(r("x"), Context::new());
        assert!(s.is_empty());
        s.append(r("a"), ctx(&[("a", 1), ("b", 1)]));
        assert_eq!(s.replicas().cloned().collect::<Vec<_>>(), vec![r("a")]);
        // dominated: unchanged
        s.append(r("b"), ctx(&[("a", 1), ("b", 0)]));
        assert_eq!(s.0.len(), 1);
        // concurrent: both kept
        s.append(r("b"), ctx(&[("a", 0), ("b", 2)]));
        assert_eq!(s.0.len(), 2);
        // dominating everything: replaces
        s.append(r("c"), ctx(&[("a", 3), ("b", 3)]));
        assert_eq!(s.replicas().cloned().collect::<Vec<_>>(), vec![r("c")]);
        // concurrent with c but dominating nothing: added
        s.append(r("d"), ctx(&[("a", 4), ("b", 0)]));
        assert_eq!(s.0.len(), 2);
        // dominates d only (not c): d dropped, e added
        s.append(r("e"), ctx(&[("a", 5), ("b", 1)]));
        let mut names: Vec<_> = s.replicas().map(|r| r.name.clone()).collect();
        names.sort();
        assert_eq!(names, vec!["c", "e"]);
    }

    #[test]
    fn serde_roundtrip() {
        let c = ctx(&[("a", 1), ("b", 5)]);
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(j, r#"[[{"name":"a","vsn":1},1],[{"name":"b","vsn":1},5]]"#);
        assert_eq!(serde_json::from_str::<Context>(&j).unwrap(), c);
        let mut cl = Clouds::new();
        cl.insert(&r("a"), 3);
        cl.insert(&r("a"), 7);
        let j = serde_json::to_string(&cl).unwrap();
        assert_eq!(j, r#"[[{"name":"a","vsn":1},[3,7]]]"#);
        assert_eq!(serde_json::from_str::<Clouds>(&j).unwrap(), cl);
    }
}
