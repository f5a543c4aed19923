//! Channels (spec §5): the [`Channel`] trait apps implement, the [`ChannelContext`] they act
//! through (Phoenix's `socket` inside a channel), and the task that runs one channel
//! incarnation.
//!
//! One task per joined channel owns the channel value and a bounded mailbox. The connection
//! routes client messages into the mailbox; pubsub shards route intercepted broadcasts into it;
//! everything else (fastlane broadcasts) bypasses the channel entirely.
//!
//! Lifecycle of the task: `join` → on ok, subscribe to the topic with the join reply as the
//! first frame (see [`crate::pubsub`]) → `after_join` → loop over the mailbox → `terminate` on
//! a graceful stop → unsubscribe carrying `phx_close` (or `phx_error` on a crash) → tell the
//! connection it is gone. Panics in app code are caught: `join` → `{"reason":"join crashed"}`,
//! anything later → `phx_error {"reason":"channel_crash"}`; other channels never notice.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt as _;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::METRICS;
use crate::outbox::PushError;
use crate::presence::{Presence, PresenceError};
use crate::pubsub::{Broadcast, PubSub, SubId, SubKind};
use crate::serializer::{encode_message, encode_reply, EncodeError, Frame, Payload, Ref, Serializer, TopicField};
use crate::socket::SocketInfo;

/// Result of [`Channel::join`].
#[derive(Debug)]
pub enum Join {
    /// Joined; the reply's `response` (`{}` for a plain ok).
    Ok(Payload),
    /// Refused; the reply's `response`. The channel is discarded.
    Error(Payload),
}

impl Join {
    pub fn ok() -> Join {
        Join::Ok(Payload::empty_object())
    }
    pub fn ok_with(response: impl serde::Serialize) -> Join {
        Join::Ok(Payload::json(&response))
    }
    pub fn error(response: impl serde::Serialize) -> Join {
        Join::Error(Payload::json(&response))
    }
}

/// Why a channel stops. `Normal` and `Shutdown(_)` are graceful (`phx_close`, `terminate`
/// runs); `Error(_)` is not (`phx_error`, the client rejoins). Spec §4.8, gotcha 25.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    Normal,
    /// `{:shutdown, reason}`: "left", "closed", "duplicate_join", "disconnected", "draining",
    /// or the app's own.
    Shutdown(String),
    Error(String),
}

impl StopReason {
    pub fn is_graceful(&self) -> bool {
        !matches!(self, StopReason::Error(_))
    }
}

/// Result of [`Channel::handle_in`] (spec §5.3).
#[derive(Debug)]
pub enum Reply {
    /// `{:reply, {status, payload}}`.
    Reply { status: String, response: Payload },
    /// `{:noreply, socket}`: nothing now (the app may reply later through a [`SocketRef`]).
    NoReply,
    /// `{:stop, reason, [reply,] socket}`: the reply (if any) first, then `phx_close` or
    /// `phx_error` depending on the reason.
    Stop { reason: StopReason, reply: Option<(String, Payload)> },
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Reply { status: "ok".into(), response: Payload::empty_object() }
    }
    pub fn ok_with(response: impl serde::Serialize) -> Reply {
        Reply::Reply { status: "ok".into(), response: Payload::json(&response) }
    }
    pub fn error(response: impl serde::Serialize) -> Reply {
        Reply::Reply { status: "error".into(), response: Payload::json(&response) }
    }
    pub fn stop(reason: StopReason) -> Reply {
        Reply::Stop { reason, reply: None }
    }
}

/// Result of `handle_out` / `handle_info`.
#[derive(Debug)]
pub enum Continue {
    Continue,
    Stop(StopReason),
}

/// A message for [`Channel::handle_info`].
pub enum Info {
    /// A value sent with [`ChannelContext::send_info`] / [`ChannelContext::send_after`] or
    /// through an [`InfoSender`].
    Message(Box<dyn Any + Send>),
    /// A broadcast on an extra topic the channel subscribed to with
    /// [`ChannelContext::subscribe`].
    Broadcast(Arc<Broadcast>),
}

/// Channel callbacks (spec §5). One value per join; its fields are the per-join state.
#[async_trait]
pub trait Channel: Send + 'static {
    /// Events this channel intercepts: broadcasts of these go through [`Channel::handle_out`]
    /// (per subscriber) instead of the shared fastlane frame. Read once, at join.
    fn intercepts(&self) -> Vec<String> {
        Vec::new()
    }

    /// `join(topic, params, socket)`. `ctx.push` is not allowed here (the client has not seen
    /// the join reply yet); push from [`Channel::after_join`].
    async fn join(&mut self, topic: &str, params: Payload, ctx: &mut ChannelContext) -> Join;

    /// Runs right after the join reply is queued: the place to `track` presence and push
    /// `presence_state` (Phoenix apps do this from a message sent to self after join).
    async fn after_join(&mut self, _ctx: &mut ChannelContext) -> Continue {
        Continue::Continue
    }

    /// `handle_in(event, payload, socket)`.
    async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply;

    /// `handle_out(event, payload, socket)` for intercepted events. The default pushes the
    /// broadcast unchanged (a push: it carries the channel's join_ref).
    async fn handle_out(&mut self, event: &str, payload: &Payload, ctx: &mut ChannelContext) -> Continue {
        let _ = ctx.push(event, payload.clone());
        Continue::Continue
    }

    /// `handle_info(msg, socket)`. The default ignores the message.
    async fn handle_info(&mut self, _msg: Info, _ctx: &mut ChannelContext) -> Continue {
        Continue::Continue
    }

    /// `terminate(reason, socket)`: called on graceful stops, not after a crash.
    async fn terminate(&mut self, _reason: &StopReason, _ctx: &mut ChannelContext) {}
}

/// What the connection (and pubsub) send to a channel task.
pub(crate) enum ChannelMsg {
    /// A client message (boxed: the mailbox's slots are sized by the largest variant).
    In(Box<InMsg>),
    Out(Arc<Broadcast>),
    Info(Info),
    /// `phx_leave` with its ref.
    Leave { ref_: Option<Ref> },
    /// Stop without frames (transport closed, duplicate join, disconnect, drain).
    Shutdown(StopReason),
}

/// A client message for `handle_in`; `handled` is signalled once `handle_in` returned.
pub(crate) struct InMsg {
    pub event: String,
    pub payload: Payload,
    pub ref_: Option<Ref>,
    pub handled: Option<oneshot::Sender<()>>,
}

/// Mailbox bound: a channel this far behind applies backpressure to its connection's reader
/// (client messages) or is treated as a slow consumer (intercepted broadcasts).
pub(crate) const MAILBOX: usize = 1024;

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
}

impl std::fmt::Display for PushFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushFailed::PayloadNotObject => f.write_str("payload must be a JSON object or binary"),
            PushFailed::Encode(e) => write!(f, "cannot encode: {e:?}"),
            PushFailed::Outbox(e) => write!(f, "not queued: {e}"),
            PushFailed::NotJoined => f.write_str("not joined yet"),
            PushFailed::TooLarge => f.write_str("message too large"),
        }
    }
}

impl std::error::Error for PushFailed {}

/// An upper bound of a broadcast's frame size under any serializer: the payload as it is,
/// topic and event possibly escaped (doubled), the envelope and WebSocket header.
pub fn broadcast_frame_bound(topic: &str, event: &str, payload: &Payload) -> usize {
    payload.len() + 2 * (topic.len() + event.len()) + 96
}

/// Phoenix's `socket` as seen from inside a channel.
pub struct ChannelContext {
    topic: Arc<str>,
    /// The join_ref exactly as the client sent it: used for `phx_close`/`phx_error` and the
    /// stale check (spec §12.4).
    join_ref: Option<Ref>,
    /// `join_ref || ref`: stamped on pushes and replies.
    reply_join_ref: Option<Ref>,
    /// The ref of the message being handled (`None` outside `handle_in`).
    ref_: Option<Ref>,
    joined: bool,
    /// Per-join assigns, starting as a copy of the socket's assigns.
    pub assigns: Map<String, Value>,
    socket: Arc<SocketInfo>,
    sub_id: SubId,
    self_tx: mpsc::Sender<ChannelMsg>,
    extra_subscriptions: Vec<Arc<str>>,
    /// Whether this channel ever tracked a presence (then its exit untracks them).
    tracked: bool,
    /// The [`crate::pubsub::Ticket`] target of this channel's last broadcast on its own shard
    /// (0: none in flight). While the shard has not processed it, this channel's own frames go
    /// through the shard (behind the broadcast) instead of straight to the outbox, so the
    /// broadcast reaches this socket first without the channel waiting for the fan-out.
    pending_broadcast: std::sync::atomic::AtomicU64,
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
    pub fn transport(&self) -> crate::socket::Transport {
        self.socket.transport
    }
    /// Assigns returned by the socket handler's `connect`.
    pub fn socket_assigns(&self) -> &Map<String, Value> {
        &self.socket.assigns
    }
    /// The connect params (query string parsed like Plug).
    pub fn connect_params(&self) -> &Value {
        &self.socket.params
    }
    /// The owner id of this channel incarnation (presence owner, broadcast_from key).
    pub fn owner(&self) -> SubId {
        self.sub_id
    }
    pub fn pubsub(&self) -> &PubSub {
        &self.socket.endpoint.pubsub
    }
    pub fn presence(&self) -> &Presence {
        &self.socket.endpoint.presence
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
    fn deliver(&self, frame: Frame) -> Result<(), PushError> {
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
        if broadcast_frame_bound(topic, event, &payload) > self.socket.endpoint.limits.max_outbound_frame {
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
        self.presence().track(&self.topic, self.sub_id, key, meta).await
    }

    /// `Presence.update(socket, key, meta)` for this channel.
    pub async fn update_presence(&self, key: &str, meta: Map<String, Value>) -> Result<String, PresenceError> {
        self.presence().update(&self.topic, self.sub_id, key, meta).await
    }

    /// `Presence.untrack(socket, key)` for this channel.
    pub async fn untrack(&self, key: &str) {
        self.presence().untrack(&self.topic, self.sub_id, key).await
    }

    /// Pushes `presence_state` (the current list of this topic) to this client.
    pub async fn push_presence_state(&self) -> Result<(), PushFailed> {
        let state = self.presence().list_payload(&self.topic).await;
        self.push("presence_state", state)
    }

    fn reply_frame(&self, ref_: &Option<Ref>, status: &str, response: &Payload) -> Result<Frame, EncodeError> {
        encode_reply(
            self.socket.serializer,
            &self.reply_join_ref,
            ref_,
            &*self.topic,
            status,
            response,
        )
    }

    fn control_frame(&self, event: &str, payload: &Payload) -> Frame {
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
pub struct InfoSender(mpsc::Sender<ChannelMsg>);

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

/// Everything needed to start one channel incarnation.
pub(crate) struct Spawn {
    pub channel: Box<dyn Channel>,
    pub topic: Arc<str>,
    pub join_ref: Option<Ref>,
    pub ref_: Option<Ref>,
    pub params: Payload,
    pub socket: Arc<SocketInfo>,
    pub sub_id: SubId,
    /// Frames to queue right after the join reply (the `phx_close` of a replaced incarnation).
    pub after_reply: Vec<Frame>,
    /// Signalled once the join completed (ok or error).
    pub joined: Option<oneshot::Sender<()>>,
}

/// Starts a channel task; returns its mailbox and the task handle.
pub(crate) fn spawn(s: Spawn) -> (mpsc::Sender<ChannelMsg>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(MAILBOX);
    let handle = tokio::spawn(run(s, tx.clone(), rx));
    (tx, handle)
}

/// How the loop ended.
enum End {
    /// Graceful stop: terminate ran (unless the reason says otherwise); `phx_close` is sent
    /// unless the transport is going away.
    Stop { reason: StopReason, send_close: bool },
    /// App code panicked: `phx_error`.
    Crash,
}

async fn run(s: Spawn, self_tx: mpsc::Sender<ChannelMsg>, mut rx: mpsc::Receiver<ChannelMsg>) {
    let Spawn { mut channel, topic, join_ref, ref_, params, socket, sub_id, after_reply, joined: join_done } = s;
    let reply_join_ref = join_ref.clone().or_else(|| ref_.clone());
    let mut ctx = ChannelContext {
        topic: topic.clone(),
        join_ref: join_ref.clone(),
        reply_join_ref,
        ref_: ref_.clone(),
        joined: false,
        assigns: socket.assigns.clone(),
        socket: socket.clone(),
        sub_id,
        self_tx,
        extra_subscriptions: Vec::new(),
        tracked: false,
        pending_broadcast: std::sync::atomic::AtomicU64::new(0),
    };
    let mut guard = OwnerGuard { socket: socket.clone(), topic: topic.clone(), sub_id, armed: true };

    // 1. join
    let joined = AssertUnwindSafe(channel.join(&topic, params, &mut ctx)).catch_unwind().await;
    let (ok, response) = match joined {
        Ok(Join::Ok(r)) => (true, r),
        Ok(Join::Error(r)) => (false, r),
        Err(_) => (false, Payload::json(&serde_json::json!({"reason": "join crashed"}))),
    };
    let reply = match ctx.reply_frame(&ref_, if ok { "ok" } else { "error" }, &response) {
        Ok(f) => f,
        Err(_) => ctx
            .reply_frame(&ref_, "error", &Payload::json(&serde_json::json!({"reason": "join crashed"})))
            .expect("JSON reply"),
    };
    let mut first = Vec::with_capacity(1 + after_reply.len());
    first.push(reply);
    first.extend(after_reply);
    if !ok {
        METRICS.join_errors.inc();
        let _ = socket.outbox.push_all(first);
        drop(join_done);
        guard.armed = false;
        socket.channel_exit(&topic, sub_id);
        // Messages queued behind the failed join find no channel.
        rx.close();
        while let Some(msg) = rx.recv().await {
            if let ChannelMsg::In(m) = msg {
                socket.reply_unmatched(&TopicField::Str(topic.to_string()), m.ref_);
            }
        }
        return;
    }
    let intercepts: Arc<[String]> = channel.intercepts().into();
    let handle_out: crate::pubsub::Deliver = {
        let tx = ctx.self_tx.clone();
        let outbox = socket.outbox.clone();
        Arc::new(move |b: &Arc<Broadcast>| {
            if tx.try_send(ChannelMsg::Out(b.clone())).is_err() {
                // A channel that can't keep up with its intercepted events is a slow consumer.
                outbox.overflow();
            }
        })
    };
    let kind = SubKind::Fastlane { outbox: socket.outbox.clone(), serializer: socket.serializer, intercepts, handle_out };
    socket.endpoint.pubsub.subscribe(socket.shard, topic.clone(), sub_id, kind, first).await;
    ctx.joined = true;
    ctx.ref_ = None;
    drop(join_done);
    METRICS.joins.inc();
    METRICS.channels.inc();

    // 2. after_join, then the mailbox.
    let mut end = match AssertUnwindSafe(channel.after_join(&mut ctx)).catch_unwind().await {
        Ok(Continue::Continue) => None,
        Ok(Continue::Stop(reason)) => Some(End::Stop { reason, send_close: true }),
        Err(_) => Some(End::Crash),
    };
    let mut leave_ref = None;
    while end.is_none() {
        let Some(msg) = rx.recv().await else {
            end = Some(End::Stop { reason: StopReason::Shutdown("closed".into()), send_close: false });
            break;
        };
        end = match msg {
            ChannelMsg::In(m) => {
                let InMsg { event, payload, ref_, handled } = *m;
                ctx.ref_ = ref_.clone();
                let r = AssertUnwindSafe(channel.handle_in(&event, payload, &mut ctx)).catch_unwind().await;
                ctx.ref_ = None;
                drop(handled);
                match r {
                    Ok(Reply::NoReply) => None,
                    Ok(Reply::Reply { status, response }) => {
                        push_reply(&ctx, &ref_, &status, &response);
                        None
                    }
                    Ok(Reply::Stop { reason, reply }) => {
                        if let Some((status, response)) = reply {
                            push_reply(&ctx, &ref_, &status, &response);
                        }
                        Some(End::Stop { reason, send_close: true })
                    }
                    Err(_) => Some(End::Crash),
                }
            }
            ChannelMsg::Out(b) => {
                match AssertUnwindSafe(channel.handle_out(&b.event, &b.payload, &mut ctx)).catch_unwind().await {
                    Ok(Continue::Continue) => None,
                    Ok(Continue::Stop(reason)) => Some(End::Stop { reason, send_close: true }),
                    Err(_) => Some(End::Crash),
                }
            }
            ChannelMsg::Info(info) => match AssertUnwindSafe(channel.handle_info(info, &mut ctx)).catch_unwind().await {
                Ok(Continue::Continue) => None,
                Ok(Continue::Stop(reason)) => Some(End::Stop { reason, send_close: true }),
                Err(_) => Some(End::Crash),
            },
            ChannelMsg::Leave { ref_ } => {
                leave_ref = Some(ref_);
                Some(End::Stop { reason: StopReason::Shutdown("left".into()), send_close: true })
            }
            ChannelMsg::Shutdown(reason) => Some(End::Stop { reason, send_close: false }),
        };
    }

    // 3. stop.
    let mut frames = Vec::new();
    match end.expect("loop ends with a reason") {
        End::Stop { reason, send_close } => {
            if let Some(ref_) = &leave_ref {
                push_reply(&ctx, ref_, "ok", &Payload::empty_object());
            }
            let graceful = reason.is_graceful();
            if graceful {
                let _ = AssertUnwindSafe(channel.terminate(&reason, &mut ctx)).catch_unwind().await;
            }
            if send_close {
                if graceful {
                    frames.push(ctx.control_frame("phx_close", &Payload::empty_object()));
                } else {
                    METRICS.channel_crashes.inc();
                    frames.push(ctx.control_frame("phx_error", &Payload::json(&serde_json::json!({"reason": "channel_crash"}))));
                }
            }
        }
        End::Crash => {
            METRICS.channel_crashes.inc();
            frames.push(ctx.control_frame("phx_error", &Payload::json(&serde_json::json!({"reason": "channel_crash"}))));
        }
    }
    // From here on the channel takes no more messages: a client message sent after it saw
    // phx_close/phx_error must get "unmatched topic" (the socket answers when the send fails;
    // what is already queued is answered below, after the close frame).
    rx.close();
    // Unsubscribe (carrying phx_close / phx_error) before untracking, so the socket never sees
    // the leave diff of its own presence (spec §12.3).
    let pubsub = &socket.endpoint.pubsub;
    for extra in ctx.extra_subscriptions.drain(..) {
        pubsub.unsubscribe(socket.shard, extra, sub_id, None).await;
    }
    let then_push = if frames.is_empty() { None } else { Some((socket.outbox.clone(), frames)) };
    pubsub.unsubscribe(socket.shard, topic.clone(), sub_id, then_push).await;
    while let Ok(msg) = rx.try_recv() {
        if let ChannelMsg::In(m) = msg {
            socket.reply_unmatched(&TopicField::Str(topic.to_string()), m.ref_);
        }
    }
    if ctx.tracked {
        socket.endpoint.presence.untrack_owner(sub_id).await;
    }
    METRICS.channels.dec();
    guard.armed = false;
    socket.channel_exit(&topic, sub_id);
    // Pushes from terminate after phx_close are allowed (spec §4.6); anything left in the
    // mailbox is dropped with the task.
}

fn push_failed(e: PushError) -> PushFailed {
    match e {
        PushError::TooLarge => PushFailed::TooLarge,
        e => PushFailed::Outbox(e),
    }
}

fn push_reply(ctx: &ChannelContext, ref_: &Option<Ref>, status: &str, response: &Payload) {
    match ctx.reply_frame(ref_, status, response) {
        Ok(frame) => {
            let _ = ctx.deliver(frame);
        }
        Err(_) => METRICS.frames_dropped.inc(),
    }
}

/// Makes sure the connection forgets the channel even if the task is aborted or panics outside
/// app code.
struct OwnerGuard {
    socket: Arc<SocketInfo>,
    topic: Arc<str>,
    sub_id: SubId,
    armed: bool,
}

impl Drop for OwnerGuard {
    fn drop(&mut self) {
        if self.armed {
            self.socket.channel_exit(&self.topic, self.sub_id);
            self.socket.endpoint.pubsub.unsubscribe_nowait(self.socket.shard, self.topic.clone(), self.sub_id);
            self.socket.endpoint.presence.untrack_owner_nowait(self.sub_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;

    #[async_trait]
    impl Channel for Nop {
        async fn join(&mut self, _topic: &str, _params: Payload, _ctx: &mut ChannelContext) -> Join {
            Join::ok()
        }
        async fn handle_in(&mut self, _event: &str, _payload: Payload, _ctx: &mut ChannelContext) -> Reply {
            Reply::NoReply
        }
    }

    /// A joined channel's task is part of every subscriber's memory: keep its future and its
    /// mailbox slots small.
    #[test]
    fn channel_task_and_mailbox_stay_small() {
        let msg = std::mem::size_of::<ChannelMsg>();
        println!("ChannelMsg: {msg} bytes");
        assert!(msg <= 48, "ChannelMsg is {msg} bytes");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let pubsub = PubSub::start(1);
            let endpoint = Arc::new(crate::socket::Endpoint {
                router: crate::socket::Router::new(),
                handler: Arc::new(crate::socket::AllowAll),
                presence: Presence::start(pubsub.clone(), 1, 0),
                pubsub,
                limits: crate::socket::SocketLimits::default(),
            });
            let outbox = Arc::new(crate::outbox::Outbox::new(crate::outbox::OutboxLimits { max_frames: 10, max_bytes: 1000 }));
            let socket = crate::socket::Socket::start(
                endpoint,
                crate::socket::SocketParams {
                    conn_id: 1,
                    serializer: Serializer::V2,
                    transport: crate::socket::Transport::WebSocket,
                    assigns: Default::default(),
                    params: Value::Null,
                    outbox,
                },
            )
            .await;
            let (tx, rx) = mpsc::channel(MAILBOX);
            let fut = run(
                Spawn {
                    channel: Box::new(Nop),
                    topic: "t".into(),
                    join_ref: None,
                    ref_: None,
                    params: Payload::empty_object(),
                    socket: socket.info().clone(),
                    sub_id: 1,
                    after_reply: vec![],
                    joined: None,
                },
                tx,
                rx,
            );
            let size = std::mem::size_of_val(&fut);
            println!("channel task future: {size} bytes");
            assert!(size < 4096, "channel task future is {size} bytes");
        });
    }
}
