//! Identities: replica refs, dots, owner ids and `phx_ref` generation (spec §7.2, §8.1).

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A replica: one incarnation of one tracker shard on one node (spec §8.1).
///
/// `name` is the node name (stable across restarts), `vsn` identifies the incarnation
/// (chosen at shard start, e.g. a µs timestamp combined with a unique integer). A restarted
/// node has the same `name` and a new `vsn`; its old incarnation is permdowned by peers on the
/// first heartbeat of the new one (§8.7).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplicaRef {
    pub name: String,
    pub vsn: u64,
}

impl ReplicaRef {
    pub fn new(name: impl Into<String>, vsn: u64) -> Self {
        ReplicaRef {
            name: name.into(),
            vsn,
        }
    }
}

impl fmt::Display for ReplicaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.vsn)
    }
}

/// A dot `(replica, counter)`: the unique tag of one add made by `replica` (spec §8.3/§8.4).
/// Counters start at 1.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub replica: ReplicaRef,
    pub counter: u64,
}

impl Dot {
    pub fn new(replica: ReplicaRef, counter: u64) -> Self {
        Dot { replica, counter }
    }
}

/// The owner of tracked elements (Phoenix: the channel pid).
///
/// An `OwnerId` is an opaque, **cluster-unique** string that is never reused, not even by a
/// restarted node: two replicas must never track elements for the same owner. The
/// recommended shape is [`OwnerId::for_replica`], `"<node name>/<vsn>/<local id>"`, where the
/// local id is e.g. the channel/connection id on that node; including the replica's `vsn` keeps
/// ids unique across restarts even when local counters start again at 0.
///
/// Cheap to clone (shared `Arc<str>`); ordered, hashed and compared as the string, and
/// serialized as a plain JSON string. Metas of one presence key are listed in owner order.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerId(Arc<str>);

impl OwnerId {
    pub fn new(id: impl AsRef<str>) -> Self {
        OwnerId(Arc::from(id.as_ref()))
    }

    /// `"<name>/<vsn>/<local>"`: unique as long as `local` is unique within the incarnation.
    pub fn for_replica(replica: &ReplicaRef, local: u64) -> Self {
        OwnerId::new(format!("{}/{}/{}", replica.name, replica.vsn, local))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for OwnerId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for OwnerId {
    fn from(s: &str) -> Self {
        OwnerId::new(s)
    }
}

impl From<String> for OwnerId {
    fn from(s: String) -> Self {
        OwnerId(Arc::from(s))
    }
}

impl fmt::Debug for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for OwnerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OwnerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(OwnerId::from)
    }
}

/// Generator of `phx_ref` strings (spec §7.2).
///
/// A ref is the URL-safe base64 (no padding; exactly 16 characters) of 12 bytes:
/// 64-bit big-endian nanosecond timestamp ‖ 16-bit hash of the replica ‖ 16-bit counter.
/// The generator never reads a clock: the timestamp is the last value given to
/// [`RefGen::set_now_ns`] (0 if never given). The pair (timestamp, counter) strictly increases
/// with every ref, so refs of one generator are unique even when thousands are made within the
/// same nanosecond: when the 16-bit counter wraps within one timestamp, the timestamp is
/// advanced by one. The replica hash (name and vsn) separates replicas and incarnations.
#[derive(Clone, Debug)]
pub struct RefGen {
    hash: u16,
    counter: u16,
    last_ts: u64,
    now_ns: u64,
}

impl RefGen {
    pub fn new(replica: &ReplicaRef) -> Self {
        RefGen {
            hash: replica_hash16(replica),
            counter: 0,
            last_ts: 0,
            now_ns: 0,
        }
    }

    /// Advances the generator's notion of time (monotonic: an older value is ignored).
    pub fn set_now_ns(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
    }

    /// A fresh, never repeated `phx_ref`.
    pub fn next_ref(&mut self) -> String {
        let (ts, counter) = if self.now_ns > self.last_ts {
            (self.now_ns, self.counter.wrapping_add(1))
        } else {
            match self.counter.checked_add(1) {
                Some(c) => (self.last_ts, c),
                None => (self.last_ts + 1, 0),
            }
        };
        self.last_ts = ts;
        self.counter = counter;
        encode_phx_ref(ts, self.hash, counter)
    }
}

/// 16-bit FNV-1a based hash of a replica ref (name and vsn).
pub fn replica_hash16(replica: &ReplicaRef) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in replica
        .name
        .as_bytes()
        .iter()
        .chain(replica.vsn.to_be_bytes().iter())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) as u16
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Encodes `ts ‖ hash ‖ counter` (12 bytes, big-endian) as 16 URL-safe base64 characters.
pub fn encode_phx_ref(ts: u64, hash: u16, counter: u16) -> String {
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&ts.to_be_bytes());
    bytes[8..10].copy_from_slice(&hash.to_be_bytes());
    bytes[10..].copy_from_slice(&counter.to_be_bytes());
    let mut out = String::with_capacity(16);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        for shift in [18u32, 12, 6, 0] {
            out.push(B64URL[((n >> shift) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn phx_ref_shape() {
        let r = encode_phx_ref(0x1234_5678_9abc_def0, 0xbeef, 7);
        assert_eq!(r.len(), 16);
        assert!(r
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        // known vector: 12 zero bytes
        assert_eq!(encode_phx_ref(0, 0, 0), "AAAAAAAAAAAAAAAA");
        // all ones
        assert_eq!(
            encode_phx_ref(u64::MAX, u16::MAX, u16::MAX),
            "________________"
        );
        // 0xfb 0xff at the front exercises '-' and '_'
        assert!(encode_phx_ref(0xfbef_be00_0000_0000, 0, 0).starts_with("----A"));
    }

    #[test]
    fn refs_unique_within_one_nanosecond() {
        let mut g = RefGen::new(&ReplicaRef::new("a", 1));
        g.set_now_ns(1_700_000_000_000_000_000);
        let mut seen = HashSet::new();
        for _ in 0..200_000 {
            assert!(seen.insert(g.next_ref()));
        }
        // time going backwards does not break uniqueness
        g.set_now_ns(5);
        for _ in 0..1000 {
            assert!(seen.insert(g.next_ref()));
        }
        g.set_now_ns(1_700_000_000_000_000_001);
        for _ in 0..1000 {
            assert!(seen.insert(g.next_ref()));
        }
    }

    #[test]
    fn replicas_hash_differently() {
        let a = replica_hash16(&ReplicaRef::new("a", 1));
        let b = replica_hash16(&ReplicaRef::new("a", 2));
        let c = replica_hash16(&ReplicaRef::new("b", 1));
        assert!(a != b && a != c);
    }

    #[test]
    fn owner_id_serde_and_order() {
        let o = OwnerId::for_replica(&ReplicaRef::new("n1", 9), 3);
        assert_eq!(o.as_str(), "n1/9/3");
        assert_eq!(serde_json::to_string(&o).unwrap(), "\"n1/9/3\"");
        let back: OwnerId = serde_json::from_str("\"n1/9/3\"").unwrap();
        assert_eq!(back, o);
        assert!(OwnerId::from("a") < OwnerId::from("b"));
    }
}
