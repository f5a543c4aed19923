//! Typed presence: metas as the app's own serde types (Phoenix's metas are maps; here a struct
//! per app), a typed `list`, and reading one meta back by its `phx_ref` (what
//! `ChannelContext::update_presence_with`, Phoenix's `Presence.update(socket, key, fn)`, builds
//! on). Only reads of snapshots: nothing here touches the shards.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Presence, PresenceError};

/// A typed meta as the map the presence service stores; a value that is not a JSON object
/// (a struct or a map) is [`PresenceError::BadMeta`].
pub fn meta_map<M: Serialize + ?Sized>(meta: &M) -> Result<Map<String, Value>, PresenceError> {
    match serde_json::to_value(meta) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(PresenceError::BadMeta),
    }
}

/// A stored meta without the fields the presence service adds (`phx_ref`, `phx_ref_prev`).
pub fn app_fields(meta: &Map<String, Value>) -> Map<String, Value> {
    let mut m = meta.clone();
    m.remove("phx_ref");
    m.remove("phx_ref_prev");
    m
}

impl Presence {
    /// `list(topic)`, typed: key → its metas as `M` (sorted by key). A meta that does not
    /// decode as `M` is an error naming the key.
    pub async fn list_as<M: DeserializeOwned>(&self, topic: &str) -> Result<BTreeMap<String, Vec<M>>, String> {
        let snap = self.snapshot(topic).await;
        let mut out = BTreeMap::new();
        for (key, entry) in snap.iter() {
            let metas = entry
                .metas
                .iter()
                .map(|m| serde_json::from_value(Value::Object(m.clone())).map_err(|e| format!("presence {key:?} on {topic:?}: {e}")))
                .collect::<Result<Vec<M>, String>>()?;
            out.insert(key.clone(), metas);
        }
        Ok(out)
    }

    /// The meta of `key` on `topic` whose `phx_ref` is `phx_ref` (with `phx_ref` fields), if
    /// it is still there.
    pub async fn meta_by_ref(&self, topic: &str, key: &str, phx_ref: &str) -> Option<Map<String, Value>> {
        let snap = self.snapshot(topic).await;
        let entry = snap.get(key)?;
        entry.metas.iter().find(|m| m.get("phx_ref").and_then(Value::as_str) == Some(phx_ref)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::PubSub;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Vote {
        points: Option<u32>,
    }

    #[tokio::test]
    async fn typed_list_and_meta_by_ref() {
        let p = Presence::start(PubSub::start(1), 1, 0);
        let r = p.track("t", 1, "ann", meta_map(&Vote { points: None }).unwrap()).await.unwrap();
        p.track("t", 2, "bob", meta_map(&Vote { points: Some(3) }).unwrap()).await.unwrap();
        let list = p.list_as::<Vote>("t").await.unwrap();
        assert_eq!(list["ann"], vec![Vote { points: None }]);
        assert_eq!(list["bob"], vec![Vote { points: Some(3) }]);
        let m = p.meta_by_ref("t", "ann", &r).await.unwrap();
        assert_eq!(app_fields(&m), meta_map(&Vote { points: None }).unwrap());
        assert!(p.meta_by_ref("t", "ann", "nope").await.is_none());
        assert!(p.list_as::<u32>("t").await.is_err());
        assert_eq!(meta_map(&3), Err(PresenceError::BadMeta));
    }
}
