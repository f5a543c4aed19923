//! Presence (temporary minimal shell; replaced by the tracker-backed service).

use serde_json::{Map, Value};

use crate::pubsub::{PubSub, SubId};
use crate::serializer::Payload;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresenceError {
    AlreadyTracked,
    NoPresence,
}

#[derive(Clone)]
pub struct Presence {
    _pubsub: PubSub,
}

impl Presence {
    pub fn start(pubsub: PubSub, _shards: usize, _window_ms: u64) -> Presence {
        Presence { _pubsub: pubsub }
    }
    pub async fn track(&self, _topic: &str, _owner: SubId, _key: &str, _meta: Map<String, Value>) -> Result<String, PresenceError> {
        Err(PresenceError::NoPresence)
    }
    pub async fn update(&self, _topic: &str, _owner: SubId, _key: &str, _meta: Map<String, Value>) -> Result<String, PresenceError> {
        Err(PresenceError::NoPresence)
    }
    pub async fn untrack(&self, _topic: &str, _owner: SubId, _key: &str) {}
    pub async fn untrack_owner(&self, _owner: SubId) {}
    pub fn untrack_owner_nowait(&self, _owner: SubId) {}
    pub async fn list(&self, _topic: &str) -> Value {
        Value::Object(Map::new())
    }
    pub async fn list_payload(&self, _topic: &str) -> Payload {
        Payload::empty_object()
    }
}
