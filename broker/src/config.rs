//! Configuration: one place for every limit, each with its reason.
//!
//! Precedence for the standalone binary: built-in defaults < TOML file (`--config`) <
//! environment (`BROKER_*`) < command-line flags. See `broker.example.toml`.

use std::time::Duration;

use serde::Deserialize;

use crate::protocol::origin::{CheckOrigin, OriginEntry};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port (printed at start).
    pub listen: String,
    /// Socket mount path `P`: WebSocket at `P/websocket`, LongPoll at `P/longpoll`.
    pub socket_path: String,
    /// Serve the LongPoll transport (phoenix.js `longPollFallbackMs`, networks without WS).
    pub longpoll: bool,
    /// `check_origin`: `true` (compare with `url_host`), `false`, `"conn"`, or a list of
    /// origins like `["https://example.com", "//*.example.com"]`.
    pub check_origin: CheckOriginSetting,
    /// The endpoint URL host `check_origin = true` compares against (none: allow all).
    pub url_host: Option<String>,
    /// Accept the `authToken` side channel (`Sec-WebSocket-Protocol` / `X-Phoenix-AuthToken`).
    pub auth_token: bool,
    /// Extra WebSocket subprotocols to accept besides `phoenix`.
    pub subprotocols: Vec<String>,
    /// Serve the demo chat page at `/`.
    pub demo_page: bool,
    /// This node's name: the presence replica name (unique per node in a cluster).
    pub node_name: String,
    /// Serve `/metrics` and `/health` on this separate address (e.g. `127.0.0.1:9100`) instead
    /// of the public one, so they need not face the internet. Unset: served on `listen`.
    pub admin_listen: Option<String>,
    pub limits: Limits,
    pub presence: PresenceConfig,
    pub channels: ChannelsConfig,
    /// `[auth]` (standalone): how connect tokens are verified (a Phoenix.Token or a JWT).
    /// Unset: sockets are anonymous unless `identity.connect_url` decides.
    pub auth: Option<crate::standalone::identity::AuthConfig>,
    /// `[identity]` (standalone): where the token is, the connect webhook, the socket id and
    /// the sender stamp.
    pub identity: IdentityConfig,
    /// `[webhooks]` (standalone): timeouts, retries and concurrency of every webhook call.
    pub webhooks: crate::standalone::webhook::WebhookConfig,
    /// `[api]` (standalone): the HTTP API for backends (broadcast, disconnect, presence, stats).
    pub api: ApiConfig,
}

/// `[api]`: the HTTP API a backend acts on the broker with.
#[derive(Clone, Debug, Deserialize, PartialEq)]
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

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:4000".into(),
            socket_path: "/socket".into(),
            longpoll: true,
            check_origin: CheckOriginSetting::Bool(false),
            url_host: None,
            auth_token: false,
            subprotocols: Vec::new(),
            demo_page: true,
            node_name: "broker".into(),
            admin_listen: None,
            limits: Limits::default(),
            presence: PresenceConfig::default(),
            channels: ChannelsConfig::default(),
            auth: None,
            identity: IdentityConfig::default(),
            webhooks: Default::default(),
            api: ApiConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CheckOriginSetting {
    Bool(bool),
    List(Vec<String>),
    /// Only `"conn"`.
    Mode(String),
}

impl Config {
    pub fn check_origin(&self) -> Result<CheckOrigin, String> {
        Ok(match &self.check_origin {
            CheckOriginSetting::Bool(false) => CheckOrigin::Off,
            CheckOriginSetting::Bool(true) => CheckOrigin::UrlHost(self.url_host.clone()),
            CheckOriginSetting::Mode(m) if m == "conn" => CheckOrigin::Conn,
            CheckOriginSetting::Mode(m) => return Err(format!("check_origin: unknown mode {m:?} (true, false, \"conn\" or a list)")),
            CheckOriginSetting::List(l) => CheckOrigin::List(l.iter().map(|e| OriginEntry::parse(e)).collect::<Result<_, _>>()?),
        })
    }

    /// Parses a TOML document over the defaults.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn validate(&self) -> Result<(), String> {
        self.check_origin()?;
        if !self.socket_path.starts_with('/') || self.socket_path.ends_with('/') && self.socket_path.len() > 1 {
            return Err(format!("socket_path {:?} must start with '/' and not end with one", self.socket_path));
        }
        for p in self.presence.topics.iter().chain(self.channels.topics.iter()) {
            crate::protocol::TopicPattern::parse(p)?;
        }
        for (i, p) in self.channels.policies.iter().enumerate() {
            if p.topics.is_empty() {
                return Err(format!("channels.policies[{i}].topics must list at least one pattern"));
            }
            for t in &p.topics {
                crate::protocol::TopicPattern::parse(t).map_err(|e| format!("channels.policies[{i}].topics: {e}"))?;
            }
            if p.join == JoinMode::Webhook && p.join_url.is_none() {
                return Err(format!("channels.policies[{i}].join_url is required with join = \"webhook\""));
            }
            if p.events == EventMode::Webhook && p.event_url.is_none() {
                return Err(format!("channels.policies[{i}].event_url is required with events = \"webhook\""));
            }
            if p.join == JoinMode::Claims && !self.identity_on() {
                return Err(format!("channels.policies[{i}].join = \"claims\" needs [auth] or identity.connect_url"));
            }
        }
        if let Some(k) = &self.api.key {
            if k.len() < 16 {
                return Err("api.key must be at least 16 bytes".into());
            }
        }
        if !self.api.path.starts_with('/') || self.api.path.len() < 2 || self.api.path.ends_with('/') {
            return Err(format!("api.path {:?} must start with '/' and not end with one", self.api.path));
        }
        if let Some(a) = &self.admin_listen {
            a.parse::<std::net::SocketAddr>().map_err(|e| format!("admin_listen {a:?}: {e}"))?;
        }
        self.limits.validate()
    }
}

/// Every limit, with its reason.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest client message in bytes; larger closes the socket with 1009. Phoenix's effective
    /// default (websock_adapter) is 10 000 000 (spec §2.6).
    pub max_frame_size: usize,
    /// Close a socket that sent nothing for this long (inbound-only rule, spec §2.6):
    /// phoenix.js heartbeats every 30 s, so 60 s tolerates one lost heartbeat.
    pub idle_timeout_ms: u64,
    /// `max_channels_per_transport` (spec §2.9).
    pub max_channels: usize,
    /// Outbox bound in frames per connection. At one frame per broadcast, a client may fall
    /// this many broadcasts behind before it is closed as a slow consumer (1008). 4096 covers a
    /// 4 s stall of a topic at 1k msg/s; each queued frame costs 32 bytes of queue plus a
    /// shared (not copied) frame.
    pub outbox_max_frames: usize,
    /// Outbox bound in bytes, counting frames until they are written (frames are shared, so
    /// this bounds what one slow client pins): 16 MiB. It must hold the largest frame the
    /// server can be asked to send, or that frame could never be delivered: at least
    /// `max_frame_size` (a relayed client message) and `presence_max_state_bytes` (a
    /// `presence_state`), plus [`Limits::envelope_bytes`]. A message larger than this is
    /// refused at its sender with an error reply, never fanned out into disconnects.
    pub outbox_max_bytes: usize,
    /// Process-wide budget of queued outbound bytes (all outboxes together; a frame shared by
    /// many queues counts in each): 1 GiB. Per-connection bounds times many connections could
    /// otherwise add up past memory. Past the budget the slowest consumers (those whose
    /// writer has made no progress for longest, at least `outbound_stall_ms`) are closed
    /// first, with 1008, until the total is back under 90 % of it.
    pub outbound_budget_bytes: usize,
    /// A consumer counts as stalled (a candidate for the budget) once its writer has made no
    /// progress for this long while bytes were queued: fast readers of a large legitimate
    /// broadcast are never closed.
    pub outbound_stall_ms: u64,
    /// Connect params (query string) nest at most this deep (`a[b][c]=1` is 3); deeper → 400.
    /// Plug-style nesting in real apps is 2-3 levels.
    pub max_param_depth: usize,
    /// Longest topic a client may join, in bytes (the topic is kept per channel, per
    /// subscription and per presence). Real topics are tens of bytes.
    pub max_topic_bytes: usize,
    /// Longest event name in a client message, in bytes.
    pub max_event_bytes: usize,
    /// Longest `ref` / `join_ref` in a client message, in bytes (phoenix.js sends counters).
    pub max_ref_bytes: usize,
    /// Client messages per second per connection (heartbeats, joins and leaves aside), as a
    /// token bucket of `messages_burst`; beyond it a message gets the error reply
    /// `rate limited`. 0 = unlimited. phoenix.js apps send a few per second.
    pub messages_per_s: u32,
    pub messages_burst: u32,
    /// Joins per second per connection, as a token bucket of `joins_burst`; 0 = unlimited.
    pub joins_per_s: u32,
    pub joins_burst: u32,
    /// Longest presence key (e.g. a user id) in bytes.
    pub presence_max_key_bytes: usize,
    /// Largest presence meta (as JSON) in bytes.
    pub presence_max_meta_bytes: usize,
    /// Largest presence state of one topic (the `presence_state` JSON) in bytes: 8 MiB holds
    /// ~40,000 members with 200-byte metas. A track that would pass it gets an error.
    pub presence_max_state_bytes: usize,
    /// Bytes read from a socket at a time. The read buffer exists only while bytes are being
    /// decoded; an idle connection holds none (tungstenite's default 128 KiB per connection
    /// costs ~138 KB per idle socket).
    pub read_chunk: usize,
    /// Refuse new WebSocket connections (HTTP 503) beyond this many; 0 = the soft fd limit
    /// (raised to the hard limit at start) minus `fd_reserve`.
    pub max_connections: usize,
    /// File descriptors kept free for listening, logging and LongPoll requests when
    /// `max_connections` is derived from the fd limit.
    pub fd_reserve: usize,
    /// listen(2) backlog: connect storms of thousands per second must not see SYN drops
    /// (the kernel caps it at net.core.somaxconn).
    pub listen_backlog: u32,
    /// Pubsub and presence shards; 0 = one per core (see `pubsub` for why).
    pub shards: usize,
    /// Commands queued per pubsub shard before publishers wait (backpressure instead of
    /// unbounded memory): 65,536 covers a burst of broadcasts and subscriptions while a shard
    /// fans out to tens of thousands of subscribers.
    pub pubsub_queue: usize,
    /// Commands queued per presence shard before callers wait: 16,384.
    pub presence_queue: usize,
    /// A channel's mailbox: client messages and intercepted broadcasts a channel may fall
    /// behind by. Client messages beyond it make the connection's reader wait (backpressure);
    /// intercepted broadcasts beyond it close the connection as a slow consumer. 1024.
    pub channel_mailbox: usize,
    /// Frames per `writev` (at most 1024, Linux's IOV_MAX): a write costs ~8 µs here whatever
    /// its size, so batching is the difference between ~150k and millions of frames/s. 512.
    pub iov_batch: usize,
    /// LongPoll `window_ms`: longest hold of a GET, and per-line dispatch limit of a POST.
    pub longpoll_window_ms: u64,
    /// LongPoll body limit in bytes (Phoenix's HTTP body read limit is ~8 MB): larger → 400.
    pub longpoll_max_body: usize,
    /// LongPoll outbox bound in frames (frames wait here between polls).
    pub longpoll_max_frames: usize,
    /// Live LongPoll sessions at most; 0 = the same number as `max_connections`. Sessions hold
    /// no file descriptor, so they have their own pool: a flood of sessions never takes
    /// capacity from WebSocket connections (and vice versa). Beyond it: 503.
    pub longpoll_max_sessions: usize,
    /// New LongPoll sessions per second per client address (a token bucket of
    /// `longpoll_session_burst`): one keep-alive connection cannot mint thousands of sessions.
    /// phoenix.js creates one per page load and per reconnect. 0 = unlimited. Beyond: 429.
    pub longpoll_sessions_per_ip_per_s: u32,
    pub longpoll_session_burst: u32,
    /// A replaced channel gets this long to stop on a duplicate join, then it is aborted.
    pub duplicate_join_grace_ms: u64,
    /// On SIGINT/SIGTERM: how long connections get to close (1012) before exit.
    pub shutdown_grace_ms: u64,
    /// Reading an HTTP request head may take at most this long (slowloris protection).
    pub http_header_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_size: 10_000_000,
            idle_timeout_ms: 60_000,
            max_channels: 100,
            outbox_max_frames: 4096,
            outbox_max_bytes: 16 << 20,
            outbound_budget_bytes: 1 << 30,
            outbound_stall_ms: 1_000,
            max_param_depth: 32,
            max_topic_bytes: 1024,
            max_event_bytes: 1024,
            max_ref_bytes: 256,
            messages_per_s: 1000,
            messages_burst: 2000,
            joins_per_s: 200,
            joins_burst: 500,
            presence_max_key_bytes: 1024,
            presence_max_meta_bytes: 16 * 1024,
            presence_max_state_bytes: 8 << 20,
            read_chunk: 4096,
            max_connections: 0,
            fd_reserve: 100,
            listen_backlog: 4096,
            shards: 0,
            pubsub_queue: 65_536,
            presence_queue: 16_384,
            channel_mailbox: 1024,
            iov_batch: 512,
            longpoll_window_ms: 10_000,
            longpoll_max_body: 8_000_000,
            longpoll_max_frames: 4096,
            longpoll_max_sessions: 0,
            longpoll_sessions_per_ip_per_s: 10,
            longpoll_session_burst: 100,
            duplicate_join_grace_ms: 5_000,
            shutdown_grace_ms: 10_000,
            http_header_timeout_ms: 10_000,
        }
    }
}

impl Limits {
    /// Bytes a frame adds around a payload: the WebSocket header, the topic, the event, two
    /// refs and the JSON punctuation.
    pub fn envelope_bytes(&self) -> usize {
        self.max_topic_bytes + self.max_event_bytes + 2 * self.max_ref_bytes + 256
    }

    /// The limits must be positive and consistent: an outbox must be able to hold any frame
    /// the server may have to send (see `outbox_max_bytes`).
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_frame_size", self.max_frame_size),
            ("outbox_max_frames", self.outbox_max_frames),
            ("outbox_max_bytes", self.outbox_max_bytes),
            ("outbound_budget_bytes", self.outbound_budget_bytes),
            ("max_param_depth", self.max_param_depth),
            ("max_topic_bytes", self.max_topic_bytes),
            ("max_event_bytes", self.max_event_bytes),
            ("max_ref_bytes", self.max_ref_bytes),
            ("presence_max_key_bytes", self.presence_max_key_bytes),
            ("presence_max_meta_bytes", self.presence_max_meta_bytes),
            ("presence_max_state_bytes", self.presence_max_state_bytes),
            ("longpoll_max_frames", self.longpoll_max_frames),
            ("pubsub_queue", self.pubsub_queue),
            ("presence_queue", self.presence_queue),
            ("channel_mailbox", self.channel_mailbox),
            ("iov_batch", self.iov_batch),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("limits.{name} must be positive"));
        }
        let need = self.max_frame_size.max(self.presence_max_state_bytes) + self.envelope_bytes();
        if self.outbox_max_bytes < need {
            return Err(format!(
                "limits.outbox_max_bytes ({}) must be at least max(max_frame_size, presence_max_state_bytes) + {} bytes of envelope = {need}: a frame larger than an outbox could never be delivered",
                self.outbox_max_bytes,
                self.envelope_bytes()
            ));
        }
        if self.iov_batch > 1024 {
            return Err("limits.iov_batch must be at most 1024 (IOV_MAX)".into());
        }
        if self.outbound_budget_bytes < self.outbox_max_bytes {
            return Err("limits.outbound_budget_bytes must be at least limits.outbox_max_bytes".into());
        }
        Ok(())
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn longpoll_window(&self) -> Duration {
        Duration::from_millis(self.longpoll_window_ms)
    }
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }
}

/// The limits sockets and channels apply, taken from [`Limits`] (whose fields carry the
/// reasons).
#[derive(Clone, Debug)]
pub struct SocketLimits {
    /// `max_channels_per_transport` (spec §2.9).
    pub max_channels: usize,
    /// Grace for a replaced channel to stop on a duplicate join before it is aborted (§4.7).
    pub duplicate_join_grace: Duration,
    /// Longest topic a client may join.
    pub max_topic_bytes: usize,
    /// Longest event in a client message.
    pub max_event_bytes: usize,
    /// Longest `ref` / `join_ref` in a client message.
    pub max_ref_bytes: usize,
    /// Largest frame an outbox accepts: a broadcast or push larger than this is refused at its
    /// sender.
    pub max_outbound_frame: usize,
    /// A channel's mailbox bound.
    pub mailbox: usize,
    /// Per-connection rates (see [`Limits::messages_per_s`]).
    pub messages_per_s: u32,
    pub messages_burst: u32,
    pub joins_per_s: u32,
    pub joins_burst: u32,
}

impl SocketLimits {
    pub fn from_config(l: &Limits) -> SocketLimits {
        SocketLimits {
            max_channels: l.max_channels,
            duplicate_join_grace: Duration::from_millis(l.duplicate_join_grace_ms),
            max_topic_bytes: l.max_topic_bytes,
            max_event_bytes: l.max_event_bytes,
            max_ref_bytes: l.max_ref_bytes,
            max_outbound_frame: l.outbox_max_bytes,
            mailbox: l.channel_mailbox,
            messages_per_s: l.messages_per_s,
            messages_burst: l.messages_burst,
            joins_per_s: l.joins_per_s,
            joins_burst: l.joins_burst,
        }
    }
}

impl Default for SocketLimits {
    fn default() -> SocketLimits {
        SocketLimits::from_config(&Limits::default())
    }
}


/// Standalone mode's built-in relay channel.
#[derive(Clone, Debug, Deserialize)]
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
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
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
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
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
#[derive(Clone, Debug, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Deserialize, PartialEq)]
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

impl Config {
    /// Is identity verified (a token verifier or a connect webhook)?
    pub fn identity_on(&self) -> bool {
        self.auth.is_some() || self.identity.connect_url.is_some()
    }
}

/// Standalone mode's presence.
#[derive(Clone, Debug, Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults() {
        let c = Config::from_toml(
            r#"
            listen = "127.0.0.1:0"
            check_origin = ["https://example.com"]
            [limits]
            max_channels = 5
            [presence]
            diff_window_ms = 50
            "#,
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.limits.max_channels, 5);
        assert_eq!(c.limits.idle_timeout_ms, 60_000);
        assert_eq!(c.presence.diff_window_ms, 50);
        assert!(matches!(c.check_origin().unwrap(), CheckOrigin::List(_)));
        c.validate().unwrap();
        assert!(Config::from_toml("nonsense = 1").is_err());
        let bad = Config { check_origin: CheckOriginSetting::Mode("x".into()), ..Config::default() };
        assert!(bad.validate().is_err());
        // An outbox smaller than the largest client message could never deliver it.
        let mut bad = Config::default();
        bad.limits.outbox_max_bytes = bad.limits.max_frame_size;
        assert!(bad.validate().unwrap_err().contains("outbox_max_bytes"));
        let mut bad = Config::default();
        bad.limits.max_topic_bytes = 0;
        assert!(bad.validate().unwrap_err().contains("max_topic_bytes"));
    }
}

#[cfg(test)]
mod example_file {
    #[test]
    fn example_toml_parses_and_matches_the_defaults() {
        let text = include_str!("../../broker.example.toml");
        let c = super::Config::from_toml(text).unwrap();
        c.validate().unwrap();
        assert_eq!(format!("{c:?}"), format!("{:?}", super::Config::default()));
    }
}
