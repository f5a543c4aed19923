//! The standalone binary's built-in channel: any allowed topic can be joined; client events are
//! relayed to the topic (`broadcast!`, sender included) and answered with an ok reply; topics
//! with presence turned on track the user and push `presence_state` after the join.
//!
//! It is also the example of the [`Channel`] API (see `examples/` for more).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::channel::{Channel, ChannelContext, Continue, Join, PushFailed, Reply};
use crate::config::Config;
use crate::presence::PresenceError;
use crate::protocol::Payload;
use crate::protocol::TopicPattern;
use crate::socket::Router;

/// The relay policy, shared by every relay channel.
pub struct RelayPolicy {
    relay: bool,
    presence_topics: Vec<TopicPattern>,
    key_param: String,
    meta_params: Vec<String>,
    max_meta_bytes: usize,
    update_event: String,
}

impl RelayPolicy {
    pub fn from_config(c: &Config) -> Result<RelayPolicy, String> {
        Ok(RelayPolicy {
            relay: c.channels.relay,
            presence_topics: c.presence.topics.iter().map(|p| TopicPattern::parse(p)).collect::<Result<_, _>>()?,
            key_param: c.presence.key_param.clone(),
            meta_params: c.presence.meta_params.clone(),
            max_meta_bytes: c.presence.max_meta_bytes,
            update_event: c.presence.update_event.clone(),
        })
    }

    /// A router sending every allowed topic pattern of the config to the relay channel.
    pub fn router(c: &Config) -> Result<Router, String> {
        let policy = Arc::new(RelayPolicy::from_config(c)?);
        let mut router = Router::new();
        for pattern in &c.channels.topics {
            TopicPattern::parse(pattern)?;
            let policy = policy.clone();
            router = router.channel(pattern, move |_topic| RelayChannel { policy: policy.clone(), presence_key: None });
        }
        Ok(router)
    }

    /// Picks the allow-listed fields of a client object, within the size limit.
    fn meta_from(&self, params: &Value) -> Result<Map<String, Value>, &'static str> {
        let mut meta = Map::new();
        if let Value::Object(obj) = params {
            for k in &self.meta_params {
                if let Some(v) = obj.get(k) {
                    meta.insert(k.clone(), v.clone());
                }
            }
        }
        if serde_json::to_vec(&meta).map(|v| v.len()).unwrap_or(usize::MAX) > self.max_meta_bytes {
            return Err("meta too large");
        }
        Ok(meta)
    }
}

pub struct RelayChannel {
    policy: Arc<RelayPolicy>,
    /// Set when this topic has presence: the key this channel tracks.
    presence_key: Option<(String, Map<String, Value>)>,
}

fn online_at() -> Value {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Value::String(secs.to_string())
}

#[async_trait]
impl Channel for RelayChannel {
    async fn join(&mut self, topic: &str, params: Payload, ctx: &mut ChannelContext) -> Join {
        if self.policy.presence_topics.iter().any(|p| p.matches(topic)) {
            let key = match ctx.connect_params().get(&self.policy.key_param) {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => format!("anonymous:{}", ctx.owner()),
            };
            if key.len() > ctx.presence().limits().max_key_bytes {
                return Join::error(serde_json::json!({ "reason": PresenceError::KeyTooLarge.reason() }));
            }
            let mut meta = match self.policy.meta_from(&params.to_value().unwrap_or(Value::Null)) {
                Ok(m) => m,
                Err(reason) => return Join::error(serde_json::json!({ "reason": reason })),
            };
            meta.insert("online_at".into(), online_at());
            self.presence_key = Some((key, meta));
        }
        Join::ok()
    }

    async fn after_join(&mut self, ctx: &mut ChannelContext) -> Continue {
        if let Some((key, meta)) = &self.presence_key {
            // Track first, then push the state: the list then includes this user (its join diff
            // may arrive before or after the state; phoenix.js handles both, spec §12.3).
            if let Err(e) = ctx.track(key, meta.clone()).await {
                // Joined but not listed (the room's presence state is full): say so, once.
                let _ = ctx.push("presence_error", Payload::json(&serde_json::json!({ "reason": e.reason() })));
            }
            let _ = ctx.push_presence_state().await;
        }
        Continue::Continue
    }

    async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
        if let Some((key, base)) = &self.presence_key {
            if event == self.policy.update_event {
                let fields = match self.policy.meta_from(&payload.to_value().unwrap_or(Value::Null)) {
                    Ok(m) => m,
                    Err(reason) => return Reply::error(serde_json::json!({ "reason": reason })),
                };
                let mut meta = base.clone();
                meta.extend(fields);
                return match ctx.update_presence(key, meta).await {
                    Ok(_) => Reply::ok(),
                    Err(e) => Reply::error(serde_json::json!({ "reason": e.reason() })),
                };
            }
        }
        if !self.policy.relay {
            return Reply::error(serde_json::json!({ "reason": "relay disabled" }));
        }
        match ctx.broadcast(event, payload).await {
            Ok(()) => Reply::ok(),
            Err(PushFailed::PayloadNotObject) => Reply::error(serde_json::json!({ "reason": "payload must be an object" })),
            Err(PushFailed::Encode(_)) => Reply::error(serde_json::json!({ "reason": "payload cannot be encoded" })),
            Err(PushFailed::TooLarge) => Reply::error(serde_json::json!({ "reason": "message too large" })),
            Err(PushFailed::Outbox(_) | PushFailed::NotJoined) => Reply::error(serde_json::json!({ "reason": "not joined" })),
        }
    }
}
