//! A topic's presences as a joiner sees them: a persistent (`imbl`) snapshot of `key → metas`
//! whose entries carry their wire form, rendered into `presence_state` by the caller.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};
use tracker::Meta;

/// Phoenix's `fetch/2`: decorates a presence entry (`{"metas": […]}`) of `key` on `topic`,
/// e.g. adding `"user"`. Applied to `list`, `presence_state` and each side of every diff.
pub type Fetch = Arc<dyn Fn(&str, &str, &mut Map<String, Value>) + Send + Sync>;

/// A topic's presences at one instant: `key → metas`, sorted by key. Cheap to clone.
pub type Snapshot = imbl::OrdMap<String, Arc<KeyEntry>>;

/// The metas of one presence key, with their wire form rendered once per change, so that a
/// `presence_state` is a concatenation of ready-made pieces.
#[derive(Debug)]
pub struct KeyEntry {
    pub metas: Vec<Meta>,
    /// `{"metas":[…]}`
    pub(crate) json: Bytes,
}

impl KeyEntry {
    pub fn new(metas: Vec<Meta>) -> KeyEntry {
        let mut out = BytesMut::with_capacity(16 + metas.len() * 80);
        out.put_slice(b"{\"metas\":");
        serde_json::to_writer((&mut out).writer(), &metas).expect("metas serialize");
        out.put_u8(b'}');
        KeyEntry { metas, json: out.freeze() }
    }
}

/// Renders a snapshot as the `presence_state` payload (sorted keys), with an optional `fetch`.
pub fn render(topic: &str, snap: &Snapshot, fetch: Option<&Fetch>) -> Bytes {
    let size: usize = match fetch {
        None => snap.iter().map(|(k, e)| k.len() + e.json.len() + 4).sum(),
        Some(_) => snap.len() * 128,
    };
    let mut out = BytesMut::with_capacity(2 + size);
    out.put_u8(b'{');
    for (i, (key, entry)) in snap.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        crate::protocol::message::write_json_str(key, &mut out);
        out.put_u8(b':');
        match fetch {
            None => out.put_slice(&entry.json),
            Some(f) => {
                let metas = &entry.metas;
                let mut entry = Map::new();
                entry.insert("metas".into(), Value::Array(metas.iter().cloned().map(Value::Object).collect()));
                f(topic, key, &mut entry);
                serde_json::to_writer((&mut out).writer(), &entry).expect("entry serialize");
            }
        }
    }
    out.put_u8(b'}');
    out.freeze()
}

/// JSON length of a value (a meta).
pub(crate) fn json_len(v: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// `"key":` plus a comma, around an entry in `presence_state` (escapes aside).
pub(crate) fn entry_len(key: &str) -> usize {
    key.len() + 4
}

/// What a tracked meta adds besides the app's fields: `phx_ref` (and `phx_ref_prev`), and the
/// `{"metas":[…]}` wrapper.
pub(crate) const META_OVERHEAD: usize = 96;

