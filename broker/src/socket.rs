//! The socket: message handling shared by both transports (spec §4).
//!
//! A [`Socket`] owns a connection's channel table (`topic → (join_ref, channel task)`) and
//! turns each decoded client [`Message`] into an outcome: a heartbeat reply, a join (a channel
//! task is spawned), a leave, a message routed to a channel, or an error reply. It never waits
//! on a channel's app code, so heartbeats are answered even while a join is slow.
//!
//! The transports ([`crate::transport`] for WebSocket, [`crate::longpoll`]) feed it messages and
//! [`SocketCtl`]s and carry the frames it queues on the [`Outbox`] to the client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::channel::{self, Channel, ChannelMsg, StopReason};
use crate::metrics::METRICS;
use crate::outbox::{Outbox, PushError};
use crate::presence::Presence;
use crate::pubsub::{next_sub_id, Broadcast, PubSub, SubId, SubKind};
use crate::serializer::{encode_message, encode_reply, Frame, Message, Payload, Ref, Serializer, TopicField};

/// Which transport carries a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    LongPoll,
}

/// What `connect` sees about the request (Phoenix's `connect_info`, spec §2.5).
#[derive(Clone, Debug)]
pub struct ConnectInfo {
    pub peer: Option<SocketAddr>,
    pub uri: String,
    pub user_agent: Option<String>,
    /// All `x-*` request headers.
    pub x_headers: Vec<(String, String)>,
    /// The `authToken` side channel (spec §2.4), when enabled.
    pub auth_token: Option<String>,
    pub transport: Transport,
}

/// Why `connect` refused a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// `:error`: HTTP 403 (LongPoll `{"status":403}`).
    Forbidden,
    /// `{:error, reason}` with a custom HTTP status (e.g. 429) and body for WebSocket;
    /// LongPoll still answers `{"status":403}`.
    Status(u16, String),
}

/// The app's socket handler: `connect/3` and `id/1`.
#[async_trait]
pub trait SocketHandler: Send + Sync + 'static {
    /// Accepts or refuses a socket; returns the socket assigns.
    async fn connect(&self, params: &Value, info: &ConnectInfo) -> Result<Map<String, Value>, ConnectError>;

    /// The socket id (`"user_socket:42"`); a `"disconnect"` broadcast to it closes the socket.
    fn id(&self, _assigns: &Map<String, Value>) -> Option<String> {
        None
    }
}

/// Accepts every socket, with no id.
pub struct AllowAll;

#[async_trait]
impl SocketHandler for AllowAll {
    async fn connect(&self, _params: &Value, _info: &ConnectInfo) -> Result<Map<String, Value>, ConnectError> {
        Ok(Map::new())
    }
}

type Factory = Arc<dyn Fn(&str) -> Box<dyn Channel> + Send + Sync>;

/// A topic pattern: an exact topic, or a prefix ending in one trailing `*` (spec §1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicPattern {
    Exact(String),
    Prefix(String),
}

impl TopicPattern {
    /// Parses `"room:*"` or `"lobby"`; a `*` anywhere but at the end is an error.
    pub fn parse(p: &str) -> Result<TopicPattern, String> {
        match p.find('*') {
            None => Ok(TopicPattern::Exact(p.to_owned())),
            Some(i) if i == p.len() - 1 => Ok(TopicPattern::Prefix(p[..i].to_owned())),
            Some(_) => Err(format!("invalid topic pattern {p:?}: '*' is only allowed at the end")),
        }
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicPattern::Exact(t) => t == topic,
            TopicPattern::Prefix(p) => topic.starts_with(p.as_str()),
        }
    }
}

/// Topic patterns → channel factories; first match wins, in declaration order.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<(TopicPattern, Factory)>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Routes `pattern` (`"room:*"`) to channels made by `factory`. Panics on an invalid
    /// pattern (a configuration error, found at startup).
    pub fn channel<C, F>(mut self, pattern: &str, factory: F) -> Router
    where
        C: Channel,
        F: Fn(&str) -> C + Send + Sync + 'static,
    {
        let pattern = TopicPattern::parse(pattern).unwrap_or_else(|e| panic!("{e}"));
        self.routes.push((pattern, Arc::new(move |topic: &str| Box::new(factory(topic)) as Box<dyn Channel>)));
        self
    }

    fn route(&self, topic: &str) -> Option<&Factory> {
        self.routes.iter().find(|(p, _)| p.matches(topic)).map(|(_, f)| f)
    }
}

/// Socket-level limits and options (one place for every number, with its reason, lives in
/// [`crate::config`]).
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
}

impl SocketLimits {
    pub fn from_config(l: &crate::config::Limits) -> SocketLimits {
        SocketLimits {
            max_channels: l.max_channels,
            duplicate_join_grace: Duration::from_millis(l.duplicate_join_grace_ms),
            max_topic_bytes: l.max_topic_bytes,
            max_event_bytes: l.max_event_bytes,
            max_ref_bytes: l.max_ref_bytes,
            max_outbound_frame: l.outbox_max_bytes,
        }
    }
}

impl Default for SocketLimits {
    fn default() -> SocketLimits {
        SocketLimits::from_config(&crate::config::Limits::default())
    }
}

/// State shared by every socket of one endpoint.
pub struct Endpoint {
    pub router: Router,
    pub handler: Arc<dyn SocketHandler>,
    pub pubsub: PubSub,
    pub presence: Presence,
    pub limits: SocketLimits,
}

/// What channels and pubsub deliveries tell their socket.
pub enum SocketCtl {
    /// A channel task ended (join refused, left, stopped, crashed).
    ChannelExit { topic: Arc<str>, sub_id: SubId },
    /// A `"disconnect"` broadcast arrived on the socket id topic (spec §2.7).
    Disconnect,
}

/// The per-socket facts channels need; shared by the socket and its channel tasks.
pub struct SocketInfo {
    pub conn_id: u64,
    pub id: Option<String>,
    pub serializer: Serializer,
    pub transport: Transport,
    pub assigns: Map<String, Value>,
    pub params: Value,
    pub endpoint: Arc<Endpoint>,
    pub outbox: Arc<Outbox>,
    /// The pubsub shard holding this socket's subscriptions.
    pub shard: usize,
    /// Unbounded, but bounded in practice: at most one `ChannelExit` per channel (≤
    /// `max_channels` live) and one `Disconnect` (guarded by `disconnect_sent`).
    ctl: mpsc::UnboundedSender<SocketCtl>,
    disconnect_sent: std::sync::atomic::AtomicBool,
}

impl SocketInfo {
    pub fn push_frame(&self, frame: Frame) -> Result<(), PushError> {
        self.outbox.push(frame)
    }

    pub(crate) fn channel_exit(&self, topic: &Arc<str>, sub_id: SubId) {
        let _ = self.ctl.send(SocketCtl::ChannelExit { topic: topic.clone(), sub_id });
    }

    /// `[null, ref, topic, "phx_reply", {"status":"error","response":{"reason":"unmatched topic"}}]`
    pub(crate) fn reply_unmatched(&self, topic: &TopicField, ref_: Option<Ref>) {
        let response = Payload::Json(bytes::Bytes::from_static(br#"{"reason":"unmatched topic"}"#));
        if let Ok(f) = encode_reply(self.serializer, &None, &ref_, topic, "error", &response) {
            let _ = self.outbox.push(f);
        }
    }

    fn reply(&self, join_ref: &Option<Ref>, ref_: &Option<Ref>, topic: &TopicField, status: &str, response: Payload) {
        if let Ok(f) = encode_reply(self.serializer, join_ref, ref_, topic, status, &response) {
            let _ = self.outbox.push(f);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Joining or joined.
    Active,
    /// `phx_leave` forwarded; the channel will send `phx_close` itself.
    Leaving,
}

struct Slot {
    join_ref: Option<Ref>,
    sub_id: SubId,
    mailbox: mpsc::Sender<ChannelMsg>,
    task: tokio::task::JoinHandle<()>,
    state: SlotState,
}

/// One connection's (or LongPoll session's) socket state.
pub struct Socket {
    info: Arc<SocketInfo>,
    channels: HashMap<String, Slot>,
    ctl_rx: mpsc::UnboundedReceiver<SocketCtl>,
}

/// Parameters of a new socket (after `connect` succeeded).
pub struct SocketParams {
    pub conn_id: u64,
    pub serializer: Serializer,
    pub transport: Transport,
    pub assigns: Map<String, Value>,
    pub params: Value,
    pub outbox: Arc<Outbox>,
}

impl Socket {
    /// Creates the socket and subscribes it to its id topic, if the handler gives one.
    pub async fn start(endpoint: Arc<Endpoint>, p: SocketParams) -> Socket {
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let id = endpoint.handler.id(&p.assigns);
        let shard = endpoint.pubsub.shard_of(p.conn_id);
        let info = Arc::new(SocketInfo {
            conn_id: p.conn_id,
            id,
            serializer: p.serializer,
            transport: p.transport,
            assigns: p.assigns,
            params: p.params,
            endpoint: endpoint.clone(),
            outbox: p.outbox,
            shard,
            ctl,
            disconnect_sent: Default::default(),
        });
        if let Some(id) = &info.id {
            let weak = Arc::downgrade(&info);
            let deliver = Arc::new(move |b: &Arc<Broadcast>| {
                if b.event == "disconnect" {
                    if let Some(info) = weak.upgrade() {
                        if !info.disconnect_sent.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            let _ = info.ctl.send(SocketCtl::Disconnect);
                        }
                    }
                }
            });
            endpoint.pubsub.subscribe(shard, id.as_str().into(), transport_sub_id(p.conn_id), SubKind::Plain(deliver), vec![]).await;
        }
        Socket { info, channels: HashMap::new(), ctl_rx }
    }

    pub fn info(&self) -> &Arc<SocketInfo> {
        &self.info
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Waits for the next control message.
    pub async fn next_ctl(&mut self) -> Option<SocketCtl> {
        self.ctl_rx.recv().await
    }

    /// Applies a control message; returns true if the socket must close (disconnect).
    pub fn handle_ctl(&mut self, ctl: SocketCtl) -> bool {
        match ctl {
            SocketCtl::ChannelExit { topic, sub_id } => {
                if self.channels.get(&*topic).is_some_and(|s| s.sub_id == sub_id) {
                    self.channels.remove(&*topic);
                }
                false
            }
            SocketCtl::Disconnect => true,
        }
    }

    /// Handles one decoded client message (spec §4.3-§4.7).
    pub async fn handle(&mut self, msg: Message) {
        self.handle_acked(msg, None).await
    }

    /// Like [`Socket::handle`]; `handled` is signalled (sent, or dropped) once the message has
    /// been handled: after `handle_in` returned, or once a join completed. LongPoll POSTs wait
    /// for it.
    pub async fn handle_acked(&mut self, msg: Message, handled: Option<oneshot::Sender<()>>) {
        METRICS.messages_in.inc();
        let topic = match &msg.topic {
            TopicField::Str(t) => t.clone(),
            TopicField::Invalid(_) => {
                self.info.reply_unmatched(&msg.topic, msg.ref_);
                return;
            }
        };
        if topic == "phoenix" && msg.event == "heartbeat" {
            self.info.reply(&None, &msg.ref_, &msg.topic, "ok", Payload::empty_object());
            return;
        }
        if let Some(reason) = self.oversized(&topic, &msg) {
            // Topics, events and refs are kept per channel, subscription and presence: each
            // is bounded, and a message past a bound gets an error reply.
            METRICS.refused_messages.inc();
            let response = Payload::json(&serde_json::json!({ "reason": reason }));
            self.info.reply(&msg.join_ref, &msg.ref_, &msg.topic, "error", response);
            return;
        }
        match msg.event.as_str() {
            "phx_join" => self.join(topic, msg, handled).await,
            "phx_leave" => self.leave(topic, msg).await,
            _ => self.to_channel(topic, msg, handled).await,
        }
    }

    /// The first field of a client message that passes its limit, as an error reason.
    fn oversized(&self, topic: &str, msg: &Message) -> Option<&'static str> {
        let l = &self.info.endpoint.limits;
        let ref_len = |r: &Option<Ref>| match r {
            None => 0,
            Some(Ref::Str(s) | Ref::Json(s)) => s.len(),
        };
        if topic.len() > l.max_topic_bytes {
            Some("topic too long")
        } else if msg.event.len() > l.max_event_bytes {
            Some("event too long")
        } else if ref_len(&msg.ref_) > l.max_ref_bytes || ref_len(&msg.join_ref) > l.max_ref_bytes {
            Some("ref too long")
        } else {
            None
        }
    }

    async fn join(&mut self, topic: String, msg: Message, handled: Option<oneshot::Sender<()>>) {
        let mut after_reply = Vec::new();
        if let Some(old) = self.channels.remove(&topic) {
            // Duplicate join (spec §4.7): stop the old incarnation first; its phx_close follows
            // the new join reply unless it is already leaving (then it sends its own).
            let _ = old.mailbox.try_send(ChannelMsg::Shutdown(StopReason::Shutdown("duplicate_join".into())));
            let mut task = old.task;
            if tokio::time::timeout(self.info.endpoint.limits.duplicate_join_grace, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
            if old.state == SlotState::Active {
                let close = encode_message(
                    self.info.serializer,
                    &old.join_ref,
                    &old.join_ref,
                    &msg.topic,
                    "phx_close",
                    &Payload::empty_object(),
                )
                .expect("JSON frame");
                after_reply.push(close);
            }
        }
        let Some(factory) = self.info.endpoint.router.route(&topic).cloned() else {
            self.info.reply_unmatched(&msg.topic, msg.ref_);
            let _ = self.info.outbox.push_all(after_reply);
            return;
        };
        if self.channels.len() >= self.info.endpoint.limits.max_channels {
            let response = Payload::Json(bytes::Bytes::from_static(br#"{"reason":"too many channels joined"}"#));
            self.info.reply(&msg.join_ref, &msg.ref_, &msg.topic, "error", response);
            let _ = self.info.outbox.push_all(after_reply);
            return;
        }
        let sub_id = next_sub_id();
        let topic_arc: Arc<str> = topic.as_str().into();
        let (mailbox, task) = channel::spawn(channel::Spawn {
            channel: factory(&topic),
            topic: topic_arc,
            join_ref: msg.join_ref.clone(),
            ref_: msg.ref_,
            params: msg.payload,
            socket: self.info.clone(),
            sub_id,
            after_reply,
            joined: handled,
        });
        self.channels.insert(topic, Slot { join_ref: msg.join_ref, sub_id, mailbox, task, state: SlotState::Active });
    }

    async fn leave(&mut self, topic: String, msg: Message) {
        match self.channels.get_mut(&topic) {
            None => self.info.reply(&msg.join_ref, &msg.ref_, &msg.topic, "ok", Payload::empty_object()),
            Some(slot) if msg.join_ref.is_some() && msg.join_ref != slot.join_ref => {} // stale: dropped
            Some(slot) => {
                slot.state = SlotState::Leaving;
                // Queued behind the channel's earlier messages (backpressure like any message).
                if slot.mailbox.send(ChannelMsg::Leave { ref_: msg.ref_.clone() }).await.is_err() {
                    // The channel is already gone: answer for it.
                    self.info.reply(&msg.join_ref, &msg.ref_, &msg.topic, "ok", Payload::empty_object());
                }
            }
        }
    }

    async fn to_channel(&mut self, topic: String, msg: Message, handled: Option<oneshot::Sender<()>>) {
        let Some(slot) = self.channels.get(&topic) else {
            self.info.reply_unmatched(&msg.topic, msg.ref_);
            return;
        };
        if msg.join_ref.is_some() && msg.join_ref != slot.join_ref {
            return; // stale join_ref: silently dropped (spec §4.5)
        }
        let ref_ = msg.ref_.clone();
        let sent = slot.mailbox.send(ChannelMsg::In(Box::new(channel::InMsg { event: msg.event, payload: msg.payload, ref_, handled }))).await;
        if sent.is_err() {
            self.info.reply_unmatched(&msg.topic, msg.ref_);
        }
    }

    /// Stops every channel (transport closed, disconnect, drain) and drops the socket's own
    /// subscription. Channels run `terminate` with `reason` and send nothing to the client.
    pub async fn close(mut self, reason: StopReason) {
        self.info.outbox.close();
        let mut tasks = Vec::with_capacity(self.channels.len());
        for (_, slot) in self.channels.drain() {
            if slot.mailbox.try_send(ChannelMsg::Shutdown(reason.clone())).is_err() {
                slot.task.abort();
            }
            tasks.push(slot.task);
        }
        if let Some(id) = &self.info.id {
            let conn_sub = transport_sub_id(self.info.conn_id);
            self.info.endpoint.pubsub.unsubscribe(self.info.shard, id.as_str().into(), conn_sub, None).await;
        }
        // Channel tasks finish on their own (they only touch shared state from here on); the
        // socket does not wait for app `terminate` code.
        drop(tasks);
    }
}

/// The subscription id of a transport's socket-id subscription: derived from the connection
/// id, in a range channel ids never reach (they count up from 1).
fn transport_sub_id(conn_id: u64) -> SubId {
    (1u64 << 63) | conn_id
}
