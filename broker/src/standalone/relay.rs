//! The standalone binary's built-in channel. Per topic pattern (`[[channels.policies]]`, first
//! match wins) a policy says who may join (open, by verified claims, or by the join webhook) and
//! what client events do (relayed with `broadcast!` or `broadcast_from!`, forwarded to the event
//! webhook, or refused), with an event allow-list and a payload size limit. Topics without a
//! policy are open and relayed. Relayed payloads carry the sender's verified user id
//! (`identity.sender_field`) when identity is on. Topics with presence track the user (the
//! verified user id when identity is on, never a self-declared param) and push `presence_state`
//! after the join.
//!
//! It is also the example of the [`Channel`] API (see `examples/` for more).

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::handler::{CLAIMS, USER_ID};
use super::webhook::Webhooks;
use crate::channel::{Channel, ChannelContext, Continue, Join, PushFailed, Reply};
use crate::config::{Config, EventMode, JoinMode, TopicPolicy};
use crate::presence::PresenceError;
use crate::protocol::{Payload, TopicPattern};
use crate::socket::Router;

/// The relay policy, shared by every relay channel.
pub struct RelayPolicy {
    relay: bool,
    presence_topics: Vec<TopicPattern>,
    key_param: String,
    meta_params: Vec<String>,
    max_meta_bytes: usize,
    update_event: String,
    identity_on: bool,
    sender_field: String,
    policies: Vec<(Vec<TopicPattern>, TopicPolicy)>,
    webhooks: Option<Webhooks>,
}

impl RelayPolicy {
    pub fn from_config(c: &Config, webhooks: Option<Webhooks>) -> Result<RelayPolicy, String> {
        let patterns = |ps: &[String]| ps.iter().map(|p| TopicPattern::parse(p)).collect::<Result<Vec<_>, _>>();
        Ok(RelayPolicy {
            relay: c.channels.relay,
            presence_topics: patterns(&c.presence.topics)?,
            key_param: c.presence.key_param.clone(),
            meta_params: c.presence.meta_params.clone(),
            max_meta_bytes: c.presence.max_meta_bytes,
            update_event: c.presence.update_event.clone(),
            identity_on: c.identity_on(),
            sender_field: c.identity.sender_field.clone(),
            policies: c.channels.policies.iter().map(|p| Ok((patterns(&p.topics)?, p.clone()))).collect::<Result<_, String>>()?,
            webhooks,
        })
    }

    /// A router sending every allowed topic pattern of the config to the relay channel
    /// (webhooks from `[webhooks]`; [`super::build`] shares one client with the handler).
    pub fn router(c: &Config) -> Result<Router, String> {
        Ok(super::build(c)?.0)
    }

    /// The router, with this policy.
    pub fn router_with(self, c: &Config) -> Result<Router, String> {
        let policy = Arc::new(self);
        let mut router = Router::new();
        for pattern in &c.channels.topics {
            TopicPattern::parse(pattern)?;
            let policy = policy.clone();
            router = router.channel(pattern, move |_topic| RelayChannel::new(policy.clone()));
        }
        Ok(router)
    }

    fn policy_for(&self, topic: &str) -> Option<&TopicPolicy> {
        self.policies.iter().find(|(ps, _)| ps.iter().any(|p| p.matches(topic))).map(|(_, p)| p)
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

    async fn webhook(&self, url: &str, body: Value) -> Result<Map<String, Value>, &'static str> {
        let hooks = self.webhooks.as_ref().ok_or("backend unavailable")?;
        hooks.call(url, &body).await.map_err(|e| e.reason())
    }
}

pub struct RelayChannel {
    policy: Arc<RelayPolicy>,
    /// Set when this topic has presence: the key this channel tracks and its base meta.
    presence_key: Option<(String, Map<String, Value>)>,
    /// The verified sender (identity on).
    user_id: Option<String>,
    claims: Value,
}

impl RelayChannel {
    fn new(policy: Arc<RelayPolicy>) -> RelayChannel {
        RelayChannel { policy, presence_key: None, user_id: None, claims: Value::Null }
    }

    /// The payload with the sender stamp (JSON objects, identity on); others as they are.
    fn stamped(&self, payload: Payload) -> Payload {
        let (Some(user_id), Payload::Json(bytes)) = (&self.user_id, &payload) else { return payload };
        match serde_json::from_slice::<Map<String, Value>>(bytes) {
            Ok(mut obj) => {
                obj.insert(self.policy.sender_field.clone(), Value::String(user_id.clone()));
                Payload::json(&obj)
            }
            Err(_) => payload,
        }
    }

    fn may_join_by_claims(&self, topic: &str, claim: &str) -> bool {
        match self.claims.get(claim) {
            Some(Value::Array(list)) => {
                list.iter().filter_map(Value::as_str).any(|p| TopicPattern::parse(p).is_ok_and(|p| p.matches(topic)))
            }
            Some(Value::String(p)) => TopicPattern::parse(p).is_ok_and(|p| p.matches(topic)),
            _ => false,
        }
    }
}

fn online_at() -> Value {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Value::String(secs.to_string())
}

/// A payload as a webhook sees it: the JSON value, or `{"binary": base64}`.
fn payload_json(p: &Payload) -> Value {
    match p {
        Payload::Binary(b) => json!({ "binary": base64::engine::general_purpose::STANDARD.encode(b) }),
        Payload::Json(_) => p.to_value().unwrap_or(Value::Null),
    }
}

fn push_failed_reason(e: PushFailed) -> &'static str {
    match e {
        PushFailed::PayloadNotObject => "payload must be an object",
        PushFailed::Encode(_) => "payload cannot be encoded",
        PushFailed::TooLarge => "message too large",
        PushFailed::Outbox(_) | PushFailed::NotJoined | PushFailed::NotStarted => "not joined",
    }
}

#[async_trait]
impl Channel for RelayChannel {
    async fn join(&mut self, topic: &str, params: Payload, ctx: &mut ChannelContext) -> Join {
        let assigns = ctx.socket_assigns();
        self.user_id = assigns.get(USER_ID).and_then(Value::as_str).map(str::to_owned);
        self.claims = assigns.get(CLAIMS).cloned().unwrap_or(Value::Null);
        let policy = self.policy.clone();
        let mut response = Payload::empty_object();
        let mut webhook_meta = Map::new();
        if let Some(tp) = policy.policy_for(topic) {
            match tp.join {
                JoinMode::Open => {}
                JoinMode::Claims => {
                    if !self.may_join_by_claims(topic, &tp.join_claim) {
                        return Join::error(json!({ "reason": "unauthorized" }));
                    }
                }
                JoinMode::Webhook => {
                    let url = tp.join_url.as_deref().unwrap_or_default();
                    let body = json!({ "topic": topic, "payload": payload_json(&params), "user_id": self.user_id, "claims": self.claims });
                    let answer = match policy.webhook(url, body).await {
                        Ok(a) => a,
                        Err(reason) => return Join::error(json!({ "reason": reason })),
                    };
                    let ok = answer.get("status").and_then(Value::as_str) == Some("ok");
                    let reply = answer.get("response").cloned().unwrap_or_else(|| json!({}));
                    if !ok {
                        let reply = if reply.get("reason").is_some() { reply } else { json!({ "reason": "unauthorized" }) };
                        return Join::error(reply);
                    }
                    if !reply.is_object() {
                        return Join::error(json!({ "reason": "backend unavailable" }));
                    }
                    response = Payload::json(&reply);
                    if let Some(Value::Object(meta)) = answer.get("meta") {
                        webhook_meta = meta.clone();
                    }
                }
            }
        }
        if policy.presence_topics.iter().any(|p| p.matches(topic)) {
            let key = if policy.identity_on {
                // Never a self-declared param when identity is on.
                match &self.user_id {
                    Some(u) => u.clone(),
                    None => return Join::error(json!({ "reason": "unauthorized" })),
                }
            } else {
                match ctx.connect_params().get(&policy.key_param) {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    _ => format!("anonymous:{}", ctx.owner()),
                }
            };
            if key.len() > ctx.presence().limits().max_key_bytes {
                return Join::error(json!({ "reason": PresenceError::KeyTooLarge.reason() }));
            }
            let mut meta = match policy.meta_from(&params.to_value().unwrap_or(Value::Null)) {
                Ok(m) => m,
                Err(reason) => return Join::error(json!({ "reason": reason })),
            };
            meta.extend(webhook_meta);
            meta.insert("online_at".into(), online_at());
            self.presence_key = Some((key, meta));
        }
        Join::Ok(response)
    }

    async fn after_join(&mut self, ctx: &mut ChannelContext) -> Continue {
        if let Some((key, meta)) = &self.presence_key {
            // Track first, then push the state: the list then includes this user (its join diff
            // may arrive before or after the state; phoenix.js handles both, spec §12.3).
            if let Err(e) = ctx.track(key, meta.clone()).await {
                // Joined but not listed (the room's presence state is full): say so, once.
                let _ = ctx.push("presence_error", Payload::json(&json!({ "reason": e.reason() })));
            }
            let _ = ctx.push_presence_state().await;
        }
        Continue::Continue
    }

    async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
        let policy = self.policy.clone();
        if let Some((key, base)) = &self.presence_key {
            if event == policy.update_event {
                let fields = match policy.meta_from(&payload.to_value().unwrap_or(Value::Null)) {
                    Ok(m) => m,
                    Err(reason) => return Reply::error(json!({ "reason": reason })),
                };
                let mut meta = base.clone();
                meta.extend(fields);
                return match ctx.update_presence(key, meta).await {
                    Ok(_) => Reply::ok(),
                    Err(e) => Reply::error(json!({ "reason": e.reason() })),
                };
            }
        }
        let tp = policy.policy_for(ctx.topic());
        let mode = match tp {
            Some(tp) => {
                if !tp.allowed_events.is_empty() && !tp.allowed_events.iter().any(|e| e == event) {
                    return Reply::error(json!({ "reason": "event not allowed" }));
                }
                if payload.len() > tp.max_payload_bytes {
                    return Reply::error(json!({ "reason": "payload too large" }));
                }
                tp.events
            }
            None if policy.relay => EventMode::Broadcast,
            None => return Reply::error(json!({ "reason": "relay disabled" })),
        };
        match mode {
            EventMode::Deny => Reply::error(json!({ "reason": "not allowed" })),
            EventMode::Broadcast | EventMode::BroadcastFrom => {
                let payload = self.stamped(payload);
                let sent = if mode == EventMode::Broadcast {
                    ctx.broadcast(event, payload).await
                } else {
                    ctx.broadcast_from(event, payload).await
                };
                match sent {
                    Ok(()) => Reply::ok(),
                    Err(e) => Reply::error(json!({ "reason": push_failed_reason(e) })),
                }
            }
            EventMode::Webhook => {
                let url = tp.and_then(|t| t.event_url.as_deref()).unwrap_or_default();
                let body = json!({
                    "topic": ctx.topic(), "event": event, "payload": payload_json(&payload),
                    "user_id": self.user_id, "claims": self.claims,
                });
                let answer = match policy.webhook(url, body).await {
                    Ok(a) => a,
                    Err(reason) => return Reply::error(json!({ "reason": reason })),
                };
                if let Some(reason) = answer.get("error") {
                    let reason = reason.as_str().map(Value::from).unwrap_or_else(|| reason.clone());
                    return Reply::error(json!({ "reason": reason }));
                }
                if let Some(Value::Array(list)) = answer.get("broadcasts") {
                    for b in list {
                        let (Some(ev), Some(p)) = (b.get("event").and_then(Value::as_str), b.get("payload")) else { continue };
                        if !p.is_object() {
                            continue;
                        }
                        let topic = b.get("topic").and_then(Value::as_str).unwrap_or(ctx.topic()).to_owned();
                        if let Err(e) = ctx.broadcast_to(&topic, ev, Payload::json(p), None).await {
                            return Reply::error(json!({ "reason": push_failed_reason(e) }));
                        }
                    }
                }
                match answer.get("reply") {
                    Some(Value::Object(r)) => Reply::Reply {
                        status: r.get("status").and_then(Value::as_str).unwrap_or("ok").to_owned(),
                        response: Payload::json(r.get("response").filter(|v| v.is_object()).unwrap_or(&json!({}))),
                    },
                    _ => Reply::ok(),
                }
            }
        }
    }
}
