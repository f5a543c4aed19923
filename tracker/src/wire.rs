//! What replicas send each other (spec §8.2, §8.3, §8.8): deltas and full extracts.
//! Everything here is serde-serializable (JSON-friendly) so it can go over a bus.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::{Clouds, Context};
use crate::diff::Meta;
use crate::ids::{Dot, OwnerId, ReplicaRef};

/// One replicated element: `(owner, topic, key, meta)`, the value of a dot (spec §8.3).
/// The meta includes `phx_ref` (and `phx_ref_prev` after an update).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Element {
    pub owner: OwnerId,
    pub topic: String,
    pub key: String,
    pub meta: Meta,
}

/// `values: dot → element`, grouped by replica.
///
/// Serialized as a JSON array of `{"dot":{"replica":…,"counter":n},"owner":…,"topic":…,
/// "key":…,"meta":{…}}` objects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values(pub BTreeMap<ReplicaRef, BTreeMap<u64, Element>>);

impl Values {
    pub fn new() -> Self {
        Values(BTreeMap::new())
    }

    pub fn get(&self, r: &ReplicaRef, counter: u64) -> Option<&Element> {
        self.0.get(r).and_then(|m| m.get(&counter))
    }

    pub fn contains(&self, r: &ReplicaRef, counter: u64) -> bool {
        self.get(r, counter).is_some()
    }

    pub fn insert(&mut self, dot: Dot, el: Element) {
        self.0
            .entry(dot.replica)
            .or_default()
            .insert(dot.counter, el);
    }

    pub fn remove(&mut self, r: &ReplicaRef, counter: u64) -> Option<Element> {
        let m = self.0.get_mut(r)?;
        let el = m.remove(&counter);
        if m.is_empty() {
            self.0.remove(r);
        }
        el
    }

    /// Drops every value of replica `r`.
    pub fn remove_replica(&mut self, r: &ReplicaRef) {
        self.0.remove(r);
    }

    pub fn len(&self) -> usize {
        self.0.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(BTreeMap::is_empty)
    }

    /// `(dot replica, dot counter, element)` in dot order.
    pub fn iter(&self) -> impl Iterator<Item = (&ReplicaRef, u64, &Element)> {
        self.0
            .iter()
            .flat_map(|(r, m)| m.iter().map(move |(c, e)| (r, *c, e)))
    }
}

#[derive(Serialize)]
struct ValueRef<'a> {
    dot: DotRef<'a>,
    owner: &'a OwnerId,
    topic: &'a str,
    key: &'a str,
    meta: &'a Meta,
}

#[derive(Serialize)]
struct DotRef<'a> {
    replica: &'a ReplicaRef,
    counter: u64,
}

#[derive(Deserialize)]
struct ValueOwned {
    dot: Dot,
    owner: OwnerId,
    topic: String,
    key: String,
    meta: Meta,
}

impl Serialize for Values {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(|(r, c, e)| ValueRef {
            dot: DotRef {
                replica: r,
                counter: c,
            },
            owner: &e.owner,
            topic: &e.topic,
            key: &e.key,
            meta: &e.meta,
        }))
    }
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<ValueOwned> = Vec::deserialize(d)?;
        let mut out = Values::new();
        for x in v {
            out.insert(
                x.dot,
                Element {
                    owner: x.owner,
                    topic: x.topic,
                    key: x.key,
                    meta: x.meta,
                },
            );
        }
        Ok(out)
    }
}

/// A delta (spec §8.3): the changes a replica made since its last gossip. `values` are the
/// adds still alive, `clouds` every dot the delta covers (adds and removes, including removes
/// of other replicas' elements observed through merges, so they are re-gossiped), and
/// `range = (start, end)` the sender's own context before/after (used by delta generations,
/// §8.9). A delta has no causal context: its receiver only considers dots in `clouds` seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub replica: ReplicaRef,
    pub values: Values,
    pub clouds: Clouds,
    pub range: (Context, Context),
}

impl Delta {
    /// A fresh, empty delta for `replica` whose own context entry is `n`.
    pub fn empty(replica: ReplicaRef, n: u64) -> Self {
        let ctx: Context = [(replica.clone(), n)].into_iter().collect();
        Delta {
            replica,
            values: Values::new(),
            clouds: Clouds::new(),
            range: (ctx.clone(), ctx),
        }
    }

    /// True iff the delta covers at least one dot (spec §8.5: only then is it gossiped).
    pub fn has_dots(&self) -> bool {
        !self.clouds.is_empty()
    }

    /// Size as in spec §8.9: number of values + total dots in clouds.
    pub fn size(&self) -> usize {
        self.values.len() + self.clouds.dot_count()
    }
}

/// A full state extract made for a requester with context `C_r` (spec §8.8): the sender's
/// context and clouds restricted to the replicas known to `C_r`, and every stored element
/// (visible or hidden) whose dot belongs to one of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extract {
    pub replica: ReplicaRef,
    pub context: Context,
    pub clouds: Clouds,
    pub values: Values,
}

/// A `transfer_ack` payload: a delta or a full extract (spec §8.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    Delta(Delta),
    Extract(Extract),
}

/// Anything [`crate::State::merge`] accepts: values, clouds and (for full states) a context.
pub trait Remote {
    fn remote_values(&self) -> &Values;
    fn remote_clouds(&self) -> &Clouds;
    /// `None` for a delta (its context is empty).
    fn remote_context(&self) -> Option<&Context>;
}

impl Remote for Delta {
    fn remote_values(&self) -> &Values {
        &self.values
    }
    fn remote_clouds(&self) -> &Clouds {
        &self.clouds
    }
    fn remote_context(&self) -> Option<&Context> {
        None
    }
}

impl Remote for Extract {
    fn remote_values(&self) -> &Values {
        &self.values
    }
    fn remote_clouds(&self) -> &Clouds {
        &self.clouds
    }
    fn remote_context(&self) -> Option<&Context> {
        Some(&self.context)
    }
}

impl Remote for Payload {
    fn remote_values(&self) -> &Values {
        match self {
            Payload::Delta(d) => &d.values,
            Payload::Extract(e) => &e.values,
        }
    }
    fn remote_clouds(&self) -> &Clouds {
        match self {
            Payload::Delta(d) => &d.clouds,
            Payload::Extract(e) => &e.clouds,
        }
    }
    fn remote_context(&self) -> Option<&Context> {
        match self {
            Payload::Delta(_) => None,
            Payload::Extract(e) => Some(&e.context),
        }
    }
}
