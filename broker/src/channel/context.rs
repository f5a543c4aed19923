//! [`ChannelContext`]: Phoenix's `socket` as a channel sees it (push, reply, broadcast,
//! subscribe, presence, assigns), and what it is made of: the per-connection [`SocketInfo`]
//! shared by a socket and its channel tasks, and the per-endpoint [`ChannelEnv`].

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::mailbox::{ChannelMsg, Info, MailboxSender};
use crate::config::SocketLimits;
use crate::metrics::METRICS;
use crate::outbox::{Outbox, PushError};
use crate::presence::{Presence, PresenceError};
use crate::protocol::params::ConnectParams;
use crate::protocol::{encode_message, encode_reply, EncodeError, Frame, Payload, Ref, Serializer, TopicField, Transport};
use crate::pubsub::{Broadcast, PubSub, SubId, SubKind};

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
    pub params: ConnectParams,
    pub env: Arc<ChannelEnv>,
    pub outbox: Arc<Outbox>,
    /// The pubsub shard holding this socket's subscriptions.
    pub shard: usize,
    /// Unbounded, but bounded in practice: at most one `ChannelExit` per channel (≤
    /// `max_channels` live) and one `Disconnect` (guarded by `disconnect_sent`). A lock and a
    /// `Notify` (~80 bytes) rather than a tokio channel (~1.3 KB per connection: its shared
    /// state and a first block of 32 slots).
    ctl: parking_lot::Mutex<std::collections::VecDeque<SocketCtl>>,
    ctl_ready: tokio::sync::Notify,
    disconnect_sent: std::sync::atomic::AtomicBool,
}

/// What every channel of one endpoint shares: the pubsub, the presence service and the limits.
pub struct ChannelEnv {
    pub pubsub: PubSub,
    pub presence: Presence,
    pub limits: SocketLimits,
}

/// The facts of a new socket (after `connect` succeeded).
pub struct NewSocketInfo {
    pub conn_id: u64,
    pub id: Option<String>,
    pub serializer: Serializer,
    pub transport: Transport,
    pub assigns: Map<String, Value>,
    pub params: ConnectParams,
    pub env: Arc<ChannelEnv>,
    pub outbox: Arc<Outbox>,
    pub shard: usize,
}

impl SocketInfo {
    /// The shared facts; the socket takes its control messages with [`SocketInfo::next_ctl`].
    pub fn new(n: NewSocketInfo) -> Arc<SocketInfo> {
        let info = SocketInfo {
            conn_id: n.conn_id,
            id: n.id,
            serializer: n.serializer,
            transport: n.transport,
            assigns: n.assigns,
            params: n.params,
            env: n.env,
            outbox: n.outbox,
            shard: n.shard,
            ctl: Default::default(),
            ctl_ready: Default::default(),
            disconnect_sent: Default::default(),
        };
        Arc::new(info)
    }

    fn send_ctl(&self, ctl: SocketCtl) {
        self.ctl.lock().push_back(ctl);
        self.ctl_ready.notify_one();
    }

    /// Waits for the next control message (the socket's side: one receiver).
    pub(crate) async fn next_ctl(&self) -> SocketCtl {
        loop {
            // Registered before the check: a message queued in between is not missed (and a
            // `notify_one` with no one waiting leaves a permit for the next wait).
            let notified = self.ctl_ready.notified();
            {
                let mut q = self.ctl.lock();
                if let Some(ctl) = q.pop_front() {
                    if q.is_empty() {
                        *q = Default::default();
                    }
                    return ctl;
                }
            }
            notified.await;
        }
    }

    /// Tells the socket, once, that a `"disconnect"` arrived for its id (spec §2.7).
    pub fn disconnect(&self) {
        if !self.disconnect_sent.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.send_ctl(SocketCtl::Disconnect);
        }
    }

    pub fn push_frame(&self, frame: Frame) -> Result<(), PushError> {
        self.outbox.push(frame)
    }

    pub(crate) fn channel_exit(&self, topic: &Arc<str>, sub_id: SubId) {
        self.send_ctl(SocketCtl::ChannelExit { topic: topic.clone(), sub_id });
    }

    /// `[null, ref, topic, "phx_reply", {"status":"error","response":{"reason":"unmatched topic"}}]`
    pub(crate) fn reply_unmatched(&self, topic: &TopicField, ref_: Option<Ref>) {
        let response = Payload::Json(bytes::Bytes::from_static(br#"{"reason":"unmatched topic"}"#));
        if let Ok(f) = encode_reply(self.serializer, &None, &ref_, topic, "error", &response) {
            let _ = self.outbox.push(f);
        }
    }

    pub(crate) fn reply(&self, join_ref: &Option<Ref>, ref_: &Option<Ref>, topic: &TopicField, status: &str, response: Payload) {
        if let Ok(f) = encode_reply(self.serializer, join_ref, ref_, topic, status, &response) {
            let _ = self.outbox.push(f);
        }
    }
}


/// Errors of [`ChannelContext::push`] and friends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushFailed {
    /// V2 pushes and broadcasts need a JSON object or binary payload (spec §3.5).
    PayloadNotObject,
    Encode(EncodeError),
    Outbox(PushError),
    /// `push` inside `join`.
    NotJoined,
    /// The frame would be larger than any outbox accepts (`limits.outbox_max_bytes`): no
    /// subscriber could ever receive it, so it is refused here instead of fanned out.
    TooLarge,
    /// A [`crate::BrokerHandle`] used before its server was bound.
    NotStarted,
}

impl std::fmt::Display for PushFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushFailed::PayloadNotObject => f.write_str("payload must be a JSON object or binary"),
            PushFailed::Encode(e) => write!(f, "cannot encode: {e:?}"),
            PushFailed::Outbox(e) => write!(f, "not queued: {e}"),
            PushFailed::NotJoined => f.write_str("not joined yet"),
            PushFailed::TooLarge => f.write_str("message too large"),
            PushFailed::NotStarted => f.write_str("the server is not bound yet"),
        }
    }
}

impl std::error::Error for PushFailed {}

/// An outbox refusal as the app sees it.
pub(crate) fn push_failed(e: PushError) -> PushFailed {
    match e {
        PushError::TooLarge => PushFailed::TooLarge,
        e => PushFailed::Outbox(e),
    }
}



/// An upper bound of a broadcast's frame size under any serializer: the payload as it is,
/// topic and event possibly escaped (doubled), the envelope and WebSocket header.
pub fn broadcast_frame_bound(topic: &str, event: &str, payload: &Payload) -> usize {
    payload.len() + 2 * (topic.len() + event.len()) + 96
}


/// Phoenix's `socket` as seen from inside a channel.
pub struct ChannelContext {
    pub(super) topic: Arc<str>,
    /// The join_ref exactly as the client sent it: used for `phx_close`/`phx_error` and the
    /// stale check (spec §12.4).
    pub(super) join_ref: Option<Ref>,
    /// `join_ref || ref`: stamped on pushes and replies.
    pub(super) reply_join_ref: Option<Ref>,
    /// The ref of the message being handled (`None` outside `handle_in`).
    pub(super) ref_: Option<Ref>,
    pub(super) joined: bool,
    /// Per-join assigns, starting as a copy of the socket's assigns.
    pub assigns: Map<String, Value>,
    pub(super) socket: Arc<SocketInfo>,
    pub(super) sub_id: SubId,
    pub(super) self_tx: MailboxSender,
    pub(super) extra_subscriptions: Vec<Arc<str>>,
    /// Whether this channel ever tracked a presence (then its exit untracks them).
    pub(super) tracked: bool,
    /// Presence key → the `phx_ref` of this channel's current meta under it (what
    /// [`ChannelContext::update_presence_with`] reads back).
    pub(super) presence_refs: Vec<(String, String)>,
    /// The [`crate::pubsub::Ticket`] target of this channel's last broadcast on its own shard
    /// (0: none in flight). While the shard has not processed it, this channel's own frames go
    /// through the shard (behind the broadcast) instead of straight to the outbox, so the
    /// broadcast reaches this socket first without the channel waiting for the fan-out.
    pub(super) pending_broadcast: std::sync::atomic::AtomicU64,
}

impl ChannelContext {
    pub fn topic(&self) -> &str {
        &self.topic
    }
    pub fn join_ref(&self) -> Option<&Ref> {
        self.reply_join_ref.as_ref()
    }
    /// The ref of the client message being handled, if any.
    pub fn message_ref(&self) -> Option<&Ref> {
        self.ref_.as_ref()
    }
    /// The socket id (`id/1` of the socket handler), if any.
    pub fn socket_id(&self) -> Option<&str> {
        self.socket.id.as_deref()
    }
    pub fn serializer(&self) -> Serializer {
        self.socket.serializer
    }
    pub fn transport(&self) -> Transport {
        self.socket.transport
    }
    /// Assigns returned by the socket handler's `connect`.
    pub fn socket_assigns(&self) -> &Map<String, Value> {
        &self.socket.assigns
    }
    /// The connect params (query string parsed like Plug).
    pub fn connect_params(&self) -> &Value {
        self.socket.params.get()
    }
    /// The owner id of this channel incarnation (presence owner, broadcast_from key).
    pub fn owner(&self) -> SubId {
        self.sub_id
    }
    pub fn pubsub(&self) -> &PubSub {
        &self.socket.env.pubsub
    }
    pub fn presence(&self) -> &Presence {
        &self.socket.env.presence
    }

    /// `push(socket, event, payload)`: one frame to this client, `[join_ref, null, topic,
    /// event, payload]`.
    pub fn push(&self, event: &str, payload: Payload) -> Result<(), PushFailed> {
        if !self.joined {
            return Err(PushFailed::NotJoined);
        }
        if self.socket.serializer == Serializer::V2 && !payload.is_object_or_binary() {
            return Err(PushFailed::PayloadNotObject);
        }
        let frame = encode_message(
            self.socket.serializer,
            &self.reply_join_ref,
            &None,
            &*self.topic,
            event,
            &payload,
        )
        .map_err(PushFailed::Encode)?;
        self.deliver(frame).map_err(push_failed)
    }

    /// Queues one of this channel's own frames: straight to the outbox, or behind this
    /// channel's last broadcast in its shard while that broadcast is still being fanned out.
    pub(super) fn deliver(&self, frame: Frame) -> Result<(), PushError> {
        use std::sync::atomic::Ordering::{AcqRel, Acquire};
        let target = self.pending_broadcast.load(Acquire);
        if target != 0 {
            let ticket = crate::pubsub::Ticket::new(self.socket.shard, target);
            let pubsub = self.pubsub();
            if !pubsub.is_done(&ticket) {
                return match pubsub.try_push_after(self.socket.shard, &self.socket.outbox, vec![frame]) {
                    Ok(()) => Ok(()),
                    // The shard is 65k commands behind: deliver directly rather than block
                    // (ordering against the broadcast is then not guaranteed).
                    Err(frames) => self.socket.outbox.push_all(frames),
                };
            }
            let _ = self.pending_broadcast.compare_exchange(target, 0, AcqRel, Acquire);
        }
        self.socket.push_frame(frame)
    }

    /// A handle to reply to the message being handled, later and from any task (spec §5.4).
    /// `None` outside `handle_in`.
    pub fn socket_ref(&self) -> Option<SocketRef> {
        self.ref_.as_ref().map(|r| SocketRef {
            socket: self.socket.clone(),
            topic: self.topic.clone(),
            join_ref: self.reply_join_ref.clone(),
            ref_: r.clone(),
        })
    }

    /// `broadcast!`: every subscriber of this topic, including this channel's own socket. The
    /// frame reaches this socket before anything this channel pushes afterwards.
    pub async fn broadcast(&self, event: &str, payload: Payload) -> Result<(), PushFailed> {
        self.broadcast_to(&self.topic.clone(), event, payload, None).await
    }

    /// `broadcast_from!`: every subscriber except this channel.
    pub async fn broadcast_from(&self, event: &str, payload: Payload) -> Result<(), PushFailed> {
        self.broadcast_to(&self.topic.clone(), event, payload, Some(self.sub_id)).await
    }

    /// Broadcast to any topic (Phoenix's `Endpoint.broadcast`), optionally skipping this
    /// channel.
    pub async fn broadcast_to(&self, topic: &str, event: &str, payload: Payload, from: Option<SubId>) -> Result<(), PushFailed> {
        if !payload.is_object_or_binary() {
            return Err(PushFailed::PayloadNotObject);
        }
        if broadcast_frame_bound(topic, event, &payload) > self.socket.env.limits.max_outbound_frame {
            METRICS.refused_messages.inc();
            return Err(PushFailed::TooLarge);
        }
        let shard = self.socket.shard;
        let ticket = self.pubsub().broadcast_queued(Broadcast::new(topic, event, payload), from, shard).await;
        self.pending_broadcast.fetch_max(ticket.target(), std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Subscribes this channel to another topic; its broadcasts arrive in `handle_info` as
    /// [`Info::Broadcast`]. Dropped when the channel stops.
    pub async fn subscribe(&mut self, topic: &str) {
        let tx = self.self_tx.clone();
        let outbox = self.socket.outbox.clone();
        let deliver = Arc::new(move |b: &Arc<Broadcast>| {
            if tx.try_send(ChannelMsg::Info(Info::Broadcast(b.clone()))).is_err() {
                // Same named outcome as an intercepted event the channel can't keep up with.
                outbox.overflow();
            }
        });
        let topic: Arc<str> = topic.into();
        self.pubsub().subscribe(self.socket.shard, topic.clone(), self.sub_id, SubKind::Plain(deliver), vec![]).await;
        self.extra_subscriptions.push(topic);
    }

    /// A sender of [`Info::Message`]s to this channel, usable from any task.
    pub fn info_sender(&self) -> InfoSender {
        InfoSender(self.self_tx.clone())
    }

    /// Sends a message to this channel's own `handle_info`; false if its mailbox is full.
    pub fn send_info<T: Any + Send>(&self, msg: T) -> bool {
        self.self_tx.try_send(ChannelMsg::Info(Info::Message(Box::new(msg)))).is_ok()
    }

    /// Sends a message to this channel's `handle_info` after a delay.
    pub fn send_after<T: Any + Send>(&self, delay: Duration, msg: T) {
        let tx = self.self_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(ChannelMsg::Info(Info::Message(Box::new(msg)))).await;
        });
    }

    /// `Presence.track(socket, key, meta)` for this channel.
    pub async fn track(&mut self, key: &str, meta: Map<String, Value>) -> Result<String, PresenceError> {
        self.tracked = true;
        let r = self.presence().track(&self.topic, self.sub_id, key, meta).await;
        self.remember_ref(key, &r);
        r
    }

    /// `Presence.update(socket, key, meta)` for this channel.
    pub async fn update_presence(&mut self, key: &str, meta: Map<String, Value>) -> Result<String, PresenceError> {
        let r = self.presence().update(&self.topic, self.sub_id, key, meta).await;
        self.remember_ref(key, &r);
        r
    }

    /// `Presence.untrack(socket, key)` for this channel.
    pub async fn untrack(&mut self, key: &str) {
        self.presence_refs.retain(|(k, _)| k != key);
        self.presence().untrack(&self.topic, self.sub_id, key).await
    }

    fn remember_ref(&mut self, key: &str, r: &Result<String, PresenceError>) {
        if let Ok(phx_ref) = r {
            match self.presence_refs.iter_mut().find(|(k, _)| k == key) {
                Some((_, old)) => *old = phx_ref.clone(),
                None => self.presence_refs.push((key.to_owned(), phx_ref.clone())),
            }
        }
    }

    /// The `phx_ref` of this channel's current meta under `key` (tracked through this
    /// context), if any.
    pub fn presence_ref(&self, key: &str) -> Option<&str> {
        self.presence_refs.iter().find(|(k, _)| k == key).map(|(_, r)| r.as_str())
    }

    /// Pushes `presence_state` (the current list of this topic) to this client.
    pub async fn push_presence_state(&self) -> Result<(), PushFailed> {
        let state = self.presence().list_payload(&self.topic).await;
        self.push("presence_state", state)
    }

    pub(super) fn reply_frame(&self, ref_: &Option<Ref>, status: &str, response: &Payload) -> Result<Frame, EncodeError> {
        encode_reply(
            self.socket.serializer,
            &self.reply_join_ref,
            ref_,
            &*self.topic,
            status,
            response,
        )
    }

    pub(super) fn control_frame(&self, event: &str, payload: &Payload) -> Frame {
        encode_message(
            self.socket.serializer,
            &self.join_ref,
            &self.join_ref,
            &*self.topic,
            event,
            payload,
        )
        .expect("control frames are JSON")
    }
}

/// Sends [`Info::Message`]s to a channel from anywhere.
#[derive(Clone)]
pub struct InfoSender(MailboxSender);

impl InfoSender {
    /// Returns false if the channel is gone or its mailbox is full.
    pub fn send<T: Any + Send>(&self, msg: T) -> bool {
        self.0.try_send(ChannelMsg::Info(Info::Message(Box::new(msg)))).is_ok()
    }
}

/// Phoenix's `socket_ref`: replies to one client message, any number of times, from any task.
#[derive(Clone)]
pub struct SocketRef {
    socket: Arc<SocketInfo>,
    topic: Arc<str>,
    join_ref: Option<Ref>,
    ref_: Ref,
}

impl SocketRef {
    pub fn reply(&self, status: &str, response: Payload) -> Result<(), PushFailed> {
        let frame = encode_reply(
            self.socket.serializer,
            &self.join_ref,
            &Some(self.ref_.clone()),
            &*self.topic,
            status,
            &response,
        )
        .map_err(PushFailed::Encode)?;
        self.socket.push_frame(frame).map_err(push_failed)
    }
}

