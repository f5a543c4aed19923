//! The setting types of the standalone sections: `check_origin`, `[api]`, `[presence]`,
//! `[channels]` (and its `[[channels.policies]]`) and `[identity]`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CheckOriginSetting {
    Bool(bool),
    List(Vec<String>),
    /// Only `"conn"`.
    Mode(String),
}

/// `[api]`: the HTTP API a backend acts on the broker with.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// The API key (`Authorization: Bearer KEY` or `X-Api-Key: KEY`); unset: no API is served.
    pub key: Option<String>,
    /// Mount path: `PATH/broadcast`, `PATH/broadcasts`, `PATH/disconnect`, `PATH/presence/TOPIC`,
    /// `PATH/stats`.
    pub path: String,
    /// Largest request body in bytes (a batch of broadcasts); larger gets 413.
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { key: None, path: "/api".into(), max_body_bytes: 8 << 20 }
    }
}

/// Standalone mode's presence.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// Topic patterns with presence turned on.
    pub topics: Vec<String>,
    /// The connect param that names the user (the presence key). Without it a socket is
    /// tracked under an anonymous per-socket key.
    pub key_param: String,
    /// Join params copied into the initial meta (besides `online_at`).
    pub meta_params: Vec<String>,
    /// Largest JSON size of a meta taken from a client, in bytes.
    pub max_meta_bytes: usize,
    /// Client event that updates the sender's own meta (payload = allow-listed fields).
    pub update_event: String,
    /// Coalescing window for `presence_diff` in ms; 0 = one diff per change (Phoenix).
    pub diff_window_ms: u64,
    /// The window applies only to rooms with at least this many presence keys; smaller rooms
    /// get Phoenix's one diff per change.
    pub coalesce_min_members: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            topics: vec!["room:*".into()],
            key_param: "user_id".into(),
            meta_params: vec!["name".into(), "status".into(), "typing".into()],
            max_meta_bytes: 1024,
            update_event: "presence:update".into(),
            diff_window_ms: 50,
            coalesce_min_members: 100,
        }
    }
}

/// Standalone mode's built-in relay channel.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    /// Topic patterns clients may join (`"*"` = any topic).
    pub topics: Vec<String>,
    /// Relay client events to every subscriber of the topic (including the sender, like
    /// `broadcast!`), and reply ok. (The events mode of topics without a policy.)
    pub relay: bool,
    /// `[[channels.policies]]`: per topic pattern, who may join and what client events do.
    /// The first policy whose patterns match a topic applies; topics matching none are open
    /// and relayed (`relay`).
    pub policies: Vec<TopicPolicy>,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        ChannelsConfig { topics: vec!["*".into()], relay: true, policies: Vec::new() }
    }
}

/// Who may join a topic.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum JoinMode {
    /// Anyone connected.
    #[default]
    Open,
    /// Sockets whose verified claims list the topic: the claim `join_claim` holds topic
    /// patterns (`["room:42", "user:7:*"]`).
    Claims,
    /// The join webhook answers (`join_url`).
    Webhook,
}

/// What a client event on a topic does.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum EventMode {
    /// Relayed to every subscriber, the sender included (`broadcast!`), then an ok reply.
    #[default]
    Broadcast,
    /// Relayed to every subscriber but the sender (`broadcast_from!`).
    BroadcastFrom,
    /// Forwarded to the event webhook (`event_url`), whose answer gives the reply and any
    /// broadcasts.
    Webhook,
    /// Refused with an error reply.
    Deny,
}

/// One `[[channels.policies]]` entry.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TopicPolicy {
    /// Topic patterns this policy covers.
    pub topics: Vec<String>,
    pub join: JoinMode,
    /// With `join = "claims"`: the claim listing the topic patterns a socket may join.
    pub join_claim: String,
    /// With `join = "webhook"`: POSTed `{topic, payload, user_id, claims}`; answers
    /// `{"status":"ok","response":{…},"meta":{…}}` or `{"status":"error","response":{"reason":…}}`.
    pub join_url: Option<String>,
    pub events: EventMode,
    /// With `events = "webhook"`: POSTed `{topic, event, payload, user_id, claims}`; answers
    /// `{"reply":{"status":"ok","response":{…}},"broadcasts":[{"topic":…,"event":…,"payload":{…}}]}`.
    pub event_url: Option<String>,
    /// Client events allowed on these topics (empty: any); others get `event not allowed`.
    pub allowed_events: Vec<String>,
    /// Largest client event payload in bytes; larger gets `payload too large`.
    pub max_payload_bytes: usize,
}

impl Default for TopicPolicy {
    fn default() -> Self {
        TopicPolicy {
            topics: Vec::new(),
            join: JoinMode::Open,
            join_claim: "topics".into(),
            join_url: None,
            events: EventMode::Broadcast,
            event_url: None,
            allowed_events: Vec::new(),
            max_payload_bytes: 64 * 1024,
        }
    }
}

/// `[identity]`: who a socket is, when `[auth]` or `connect_url` is set.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// The connect param carrying the token (phoenix.js `params: {token}`); the `authToken`
    /// side channel (`Sec-WebSocket-Protocol`, `X-Phoenix-AuthToken`) is read too.
    pub token_param: String,
    /// Connect webhook: POSTed `{params, user_id, claims, transport, peer, user_agent}` (the
    /// verified identity, if `[auth]` is set too); a 2xx `{"user_id":…, "claims":{…}}` accepts
    /// (and may set or replace the identity), `{"error":…}` or a 4xx refuses (403).
    pub connect_url: Option<String>,
    /// The socket id is this prefix + the user id: a `"disconnect"` broadcast to it (or the HTTP
    /// API's disconnect) closes every socket of the user.
    pub socket_id_prefix: String,
    /// Relayed payloads (JSON objects) get this field set to the sender's verified user id, so
    /// no one can post as someone else (a field of that name from the client is overwritten).
    pub sender_field: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            token_param: "token".into(),
            connect_url: None,
            socket_id_prefix: "user_socket:".into(),
            sender_field: "sender".into(),
        }
    }
}
