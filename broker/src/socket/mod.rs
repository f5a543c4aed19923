//! The socket: message handling shared by both transports (spec §4).
//!
//! A [`Socket`] owns a connection's channel table (`topic → (join_ref, channel task)`) and
//! turns each decoded client [`Message`] into an outcome: a heartbeat reply, a join (a channel
//! task is spawned), a leave, a message routed to a channel, or an error reply. It never waits
//! on a channel's app code, so heartbeats are answered even while a join is slow.
//!
//! The transports (WebSocket and LongPoll, above this layer) feed it messages and
//! [`SocketCtl`]s and carry the frames it queues on the [`Outbox`] to the client.

pub mod handler;
pub mod router;

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::channel::mailbox::{ChannelMsg, InMsg, MailboxSender};
use crate::channel::server::{self as channel_server, Predecessor};
use crate::channel::{ChannelEnv, NewSocketInfo, ShutdownReason, SocketCtl, SocketInfo, StopReason};
use crate::metrics::METRICS;
use crate::outbox::Outbox;
use crate::protocol::{encode_message, Message, Payload, Ref, Serializer, TopicField, Transport};
use crate::protocol::params::ConnectParams;
use crate::pubsub::{next_sub_id, Broadcast, SubId, SubKind};
use crate::rate::TokenBucket;

pub use handler::{assigns, AllowAll, ConnectError, ConnectInfo, SocketHandler};
pub use crate::protocol::TopicPattern;
pub use router::Router;

/// State shared by every socket of one endpoint: the routes, the app's socket handler, and
/// what its channels share.
pub struct Endpoint {
    pub router: Router,
    pub handler: Arc<dyn SocketHandler>,
    pub env: Arc<ChannelEnv>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Joining or joined.
    Active,
    /// `phx_leave` forwarded; the channel will send `phx_close` itself.
    Leaving,
}

/// A socket's joined channels by topic: a vector searched in order rather than a hash map.
/// A socket has a few channels (at most `max_channels`, 100 by default), and a map's first
/// allocation (4 buckets, ~370 bytes) would sit with every idle connection; one slot here is
/// ~90 bytes.
#[derive(Default)]
struct Channels(Vec<(Box<str>, Slot)>);

impl Channels {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn position(&self, topic: &str) -> Option<usize> {
        self.0.iter().position(|(t, _)| &**t == topic)
    }

    fn get(&self, topic: &str) -> Option<&Slot> {
        self.0.iter().find(|(t, _)| &**t == topic).map(|(_, s)| s)
    }

    fn get_mut(&mut self, topic: &str) -> Option<&mut Slot> {
        self.0.iter_mut().find(|(t, _)| &**t == topic).map(|(_, s)| s)
    }

    fn remove(&mut self, topic: &str) -> Option<Slot> {
        let slot = self.position(topic).map(|i| self.0.swap_remove(i).1);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        slot
    }

    /// Adds a topic not present (the caller removed any old slot first).
    fn insert(&mut self, topic: String, slot: Slot) {
        debug_assert!(self.position(&topic).is_none());
        if self.0.len() == self.0.capacity() && self.0.len() < 4 {
            // One slot at a time for the usual one to four channels.
            self.0.reserve_exact(1);
        }
        self.0.push((topic.into_boxed_str(), slot));
    }

    fn drain(&mut self) -> impl Iterator<Item = Slot> + '_ {
        self.0.drain(..).map(|(_, s)| s)
    }
}

struct Slot {
    join_ref: Option<Ref>,
    sub_id: SubId,
    mailbox: MailboxSender,
    task: tokio::task::JoinHandle<()>,
    state: SlotState,
}

/// One connection's (or LongPoll session's) socket state.
pub struct Socket {
    endpoint: Arc<Endpoint>,
    info: Arc<SocketInfo>,
    channels: Channels,
    /// Per-connection rates (`Limits::messages_per_s`, `Limits::joins_per_s`).
    messages: TokenBucket,
    joins: TokenBucket,
}

/// Parameters of a new socket (after `connect` succeeded).
pub struct SocketParams {
    pub conn_id: u64,
    pub serializer: Serializer,
    pub transport: Transport,
    pub assigns: Map<String, Value>,
    pub params: ConnectParams,
    pub outbox: Arc<Outbox>,
}

impl Socket {
    /// Creates the socket and subscribes it to its id topic, if the handler gives one.
    pub async fn start(endpoint: Arc<Endpoint>, p: SocketParams) -> Socket {
        let id = endpoint.handler.id(&p.assigns);
        let env = endpoint.env.clone();
        let shard = env.pubsub.shard_of(p.conn_id);
        let info = SocketInfo::new(NewSocketInfo {
            conn_id: p.conn_id,
            id,
            serializer: p.serializer,
            transport: p.transport,
            assigns: p.assigns,
            params: p.params,
            env: env.clone(),
            outbox: p.outbox,
            shard,
        });
        if let Some(id) = &info.id {
            let weak = Arc::downgrade(&info);
            let deliver = Arc::new(move |b: &Arc<Broadcast>| {
                if b.event == "disconnect" {
                    if let Some(info) = weak.upgrade() {
                        info.disconnect();
                    }
                }
            });
            env.pubsub.subscribe(shard, id.as_str().into(), transport_sub_id(p.conn_id), SubKind::Plain(deliver), vec![]).await;
        }
        let (messages, joins) = (TokenBucket::full(env.limits.messages_rate()), TokenBucket::full(env.limits.joins_rate()));
        Socket { endpoint, info, channels: Channels::default(), messages, joins }
    }

    pub fn info(&self) -> &Arc<SocketInfo> {
        &self.info
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Waits for the next control message.
    pub async fn next_ctl(&mut self) -> Option<SocketCtl> {
        Some(self.info.next_ctl().await)
    }

    /// Applies a control message; returns true if the socket must close (disconnect).
    pub fn handle_ctl(&mut self, ctl: SocketCtl) -> bool {
        match ctl {
            SocketCtl::ChannelExit { topic, sub_id } => {
                if self.channels.get(&topic).is_some_and(|s| s.sub_id == sub_id) {
                    self.channels.remove(&topic);
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
        let limits = &self.info.env.limits;
        let allowed = match msg.event.as_str() {
            "phx_join" => self.joins.take(limits.joins_rate()),
            "phx_leave" => true,
            _ => self.messages.take(limits.messages_rate()),
        };
        if !allowed {
            METRICS.rate_limited.inc();
            let response = Payload::Json(bytes::Bytes::from_static(br#"{"reason":"rate limited"}"#));
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
        let l = &self.info.env.limits;
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
        let mut predecessor = None;
        if let Some(old) = self.channels.remove(&topic) {
            // Duplicate join (spec §4.7): the old incarnation is told to stop and handed to the
            // new one, which waits for it (up to the grace, then aborts it) before its own
            // join: the socket itself never waits. The old one's phx_close follows the new
            // join reply, unless it is already leaving (then it sends its own).
            let _ = old.mailbox.try_send(ChannelMsg::Shutdown(StopReason::Shutdown(ShutdownReason::DuplicateJoin)));
            predecessor = Some(Predecessor { task: old.task, grace: self.info.env.limits.duplicate_join_grace });
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
        let Some(factory) = self.endpoint.router.route(&topic).cloned() else {
            if let Some(p) = predecessor {
                tokio::spawn(p.finish());
            }
            self.info.reply_unmatched(&msg.topic, msg.ref_);
            let _ = self.info.outbox.push_all(after_reply);
            return;
        };
        if self.channels.len() >= self.info.env.limits.max_channels {
            if let Some(p) = predecessor {
                tokio::spawn(p.finish());
            }
            let response = Payload::Json(bytes::Bytes::from_static(br#"{"reason":"too many channels joined"}"#));
            self.info.reply(&msg.join_ref, &msg.ref_, &msg.topic, "error", response);
            let _ = self.info.outbox.push_all(after_reply);
            return;
        }
        let sub_id = next_sub_id();
        let topic_arc: Arc<str> = topic.as_str().into();
        let (mailbox, task) = channel_server::spawn(channel_server::Spawn {
            channel: factory(&topic),
            topic: topic_arc,
            join_ref: msg.join_ref.clone(),
            ref_: msg.ref_,
            params: msg.payload,
            socket: self.info.clone(),
            sub_id,
            after_reply,
            joined: handled,
            predecessor,
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
        let sent = slot.mailbox.send(ChannelMsg::In(Box::new(InMsg { event: msg.event, payload: msg.payload, ref_, handled }))).await;
        if sent.is_err() {
            self.info.reply_unmatched(&msg.topic, msg.ref_);
        }
    }

    /// Stops every channel (transport closed, disconnect, drain) and drops the socket's own
    /// subscription. Channels run `terminate` with `reason` and send nothing to the client.
    pub async fn close(mut self, reason: StopReason) {
        self.info.outbox.close();
        let mut tasks = Vec::with_capacity(self.channels.len());
        for slot in self.channels.drain() {
            if slot.mailbox.try_send(ChannelMsg::Shutdown(reason.clone())).is_err() {
                slot.task.abort();
            }
            tasks.push(slot.task);
        }
        if let Some(id) = &self.info.id {
            let conn_sub = transport_sub_id(self.info.conn_id);
            self.info.env.pubsub.unsubscribe(self.info.shard, id.as_str().into(), conn_sub, None).await;
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

#[cfg(test)]
mod tests;
