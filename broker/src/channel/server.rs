//! The channel server: one task per joined channel incarnation, owning the app's [`Channel`]
//! value and a bounded mailbox. `join` → on ok, subscribe carrying the join reply →
//! `after_join` → the mailbox loop → `terminate` on a graceful stop → unsubscribe carrying
//! `phx_close` (or `phx_error`) → tell the socket. Panics in app code are caught.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt as _;
use tokio::sync::oneshot;

use super::context::{ChannelContext, SocketInfo};
use super::api::{Channel, Continue, Join, Reply};
use super::mailbox::{mailbox, ChannelMsg, InMsg, MailboxReceiver, MailboxSender};
use super::stop::{ShutdownReason, StopReason};
use crate::metrics::METRICS;
use crate::protocol::{Frame, Payload, Ref, TopicField};
use crate::pubsub::{Broadcast, SubId, SubKind};

/// Everything needed to start one channel incarnation.
pub struct Spawn {
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
    /// The incarnation this one replaces (duplicate join): waited for before `join`.
    pub predecessor: Option<Predecessor>,
}

/// A replaced channel incarnation, already told to stop (spec §4.7).
pub struct Predecessor {
    pub task: tokio::task::JoinHandle<()>,
    /// How long it may take to stop before it is aborted.
    pub grace: std::time::Duration,
}

impl Predecessor {
    /// Waits until it stopped, aborting it after the grace.
    pub async fn finish(self) {
        let mut task = self.task;
        if tokio::time::timeout(self.grace, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Starts a channel task; returns its mailbox and the task handle.
pub fn spawn(s: Spawn) -> (MailboxSender, tokio::task::JoinHandle<()>) {
    // The mailbox bound (`Limits::channel_mailbox`): a channel this far behind applies
    // backpressure to its connection's reader, or is a slow consumer (intercepted broadcasts).
    let (tx, rx) = mailbox(s.socket.env.limits.mailbox);
    // Boxed: an async fn keeps its arguments for its whole life.
    let handle = tokio::spawn(run(Box::new(s), tx.clone(), rx));
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

/// A joined channel: what the mailbox loop works with.
struct Live {
    channel: Box<dyn Channel>,
    ctx: ChannelContext,
    rx: MailboxReceiver,
    guard: OwnerGuard,
    /// The ref of the `phx_leave` that ended the loop, if one did.
    leave_ref: Option<Option<Ref>>,
}

/// The task: join, the mailbox loop, stop. The join and stop phases run once and are boxed:
/// held inline, their state would sit in every idle channel task's future (1,056 bytes with
/// them inline; the loop alone is what stays).
async fn run(s: Box<Spawn>, self_tx: MailboxSender, rx: MailboxReceiver) {
    let Some((mut live, end)) = Box::pin(join(s, self_tx, rx)).await else {
        return;
    };
    let end = match end {
        Some(end) => end,
        None => serve(&mut live).await,
    };
    Box::pin(stop(live, end)).await;
}

/// `join`, then on ok the subscription carrying the join reply and `after_join`. `None` when
/// the join was refused (answered here); else the live channel and, if `after_join` already
/// ended it, how.
async fn join(s: Box<Spawn>, self_tx: MailboxSender, mut rx: MailboxReceiver) -> Option<(Live, Option<End>)> {
    let Spawn { mut channel, topic, join_ref, ref_, params, socket, sub_id, after_reply, joined: join_done, predecessor } = *s;
    if let Some(p) = predecessor {
        // Boxed: the wait is rare.
        Box::pin(p.finish()).await;
    }
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
        presence_refs: Vec::new(),
        pending_broadcast: std::sync::atomic::AtomicU64::new(0),
    };
    let mut guard = OwnerGuard { socket: socket.clone(), topic: topic.clone(), sub_id, armed: true };

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
        return None;
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
    let socket_id = socket.id.as_deref().map(Arc::from);
    let kind = SubKind::Fastlane { outbox: socket.outbox.clone(), serializer: socket.serializer, intercepts, handle_out, socket_id };
    socket.env.pubsub.subscribe(socket.shard, topic.clone(), sub_id, kind, first).await;
    ctx.joined = true;
    ctx.ref_ = None;
    drop(join_done);
    METRICS.joins.inc();
    METRICS.channels.inc();

    let end = match AssertUnwindSafe(channel.after_join(&mut ctx)).catch_unwind().await {
        Ok(Continue::Continue) => None,
        Ok(Continue::Stop(reason)) => Some(End::Stop { reason, send_close: true }),
        Err(_) => Some(End::Crash),
    };
    Some((Live { channel, ctx, rx, guard, leave_ref: None }, end))
}

/// The mailbox loop: `handle_in`, `handle_out`, `handle_info`, leave and shutdown, until one
/// of them ends the channel.
async fn serve(live: &mut Live) -> End {
    let Live { channel, ctx, rx, leave_ref, .. } = live;
    loop {
        let Some(msg) = rx.recv().await else {
            return End::Stop { reason: StopReason::Shutdown(ShutdownReason::Closed), send_close: false };
        };
        let end = match msg {
            ChannelMsg::In(m) => {
                let InMsg { event, payload, ref_, handled } = *m;
                ctx.ref_ = ref_.clone();
                let r = AssertUnwindSafe(channel.handle_in(&event, payload, ctx)).catch_unwind().await;
                ctx.ref_ = None;
                drop(handled);
                match r {
                    Ok(Reply::NoReply) => None,
                    Ok(Reply::Reply { status, response }) => {
                        push_reply(ctx, &ref_, &status, &response);
                        None
                    }
                    Ok(Reply::Stop { reason, reply }) => {
                        if let Some((status, response)) = reply {
                            push_reply(ctx, &ref_, &status, &response);
                        }
                        Some(End::Stop { reason, send_close: true })
                    }
                    Err(_) => Some(End::Crash),
                }
            }
            ChannelMsg::Out(b) => match AssertUnwindSafe(channel.handle_out(&b.event, &b.payload, ctx)).catch_unwind().await {
                Ok(Continue::Continue) => None,
                Ok(Continue::Stop(reason)) => Some(End::Stop { reason, send_close: true }),
                Err(_) => Some(End::Crash),
            },
            ChannelMsg::Info(info) => match AssertUnwindSafe(channel.handle_info(info, ctx)).catch_unwind().await {
                Ok(Continue::Continue) => None,
                Ok(Continue::Stop(reason)) => Some(End::Stop { reason, send_close: true }),
                Err(_) => Some(End::Crash),
            },
            ChannelMsg::Leave { ref_ } => {
                *leave_ref = Some(ref_);
                Some(End::Stop { reason: StopReason::Shutdown(ShutdownReason::Left), send_close: true })
            }
            ChannelMsg::Shutdown(reason) => Some(End::Stop { reason, send_close: false }),
        };
        if let Some(end) = end {
            return end;
        }
    }
}

/// `terminate` on a graceful stop, `phx_close` / `phx_error`, unsubscribe, untrack, and tell
/// the socket.
async fn stop(live: Live, end: End) {
    let Live { mut channel, mut ctx, mut rx, mut guard, leave_ref } = live;
    let socket = ctx.socket.clone();
    let topic = ctx.topic.clone();
    let sub_id = ctx.sub_id;
    let mut frames = Vec::new();
    match end {
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
    let pubsub = &socket.env.pubsub;
    for extra in ctx.extra_subscriptions.drain(..) {
        pubsub.unsubscribe(socket.shard, extra, sub_id, None).await;
    }
    let then_push = if frames.is_empty() { None } else { Some((socket.outbox.clone(), frames)) };
    pubsub.unsubscribe(socket.shard, topic.clone(), sub_id, then_push).await;
    while let Some(msg) = rx.try_recv() {
        if let ChannelMsg::In(m) = msg {
            socket.reply_unmatched(&TopicField::Str(topic.to_string()), m.ref_);
        }
    }
    if ctx.tracked {
        socket.env.presence.untrack_owner(sub_id).await;
    }
    METRICS.channels.dec();
    guard.armed = false;
    socket.channel_exit(&topic, sub_id);
    // Pushes from terminate after phx_close are allowed (spec §4.6); anything left in the
    // mailbox is dropped with the task.
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
            self.socket.env.pubsub.unsubscribe_nowait(self.socket.shard, self.topic.clone(), self.sub_id);
            self.socket.env.presence.untrack_owner_nowait(self.sub_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

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
    ///
    /// The sizes are pinned tightly (measured + at most 64 bytes), not under a loose ceiling: a
    /// loose one let this future grow 3x unnoticed. Measured with `cargo test -p broker
    /// channel_task_and_mailbox_stay_small -- --nocapture` (rustc 1.95, x86_64; the same sizes
    /// in the test profile and with `--release`). If a change makes it fail, growing the pin
    /// must be a deliberate edit of the constants below, with the reason in the commit (what
    /// the task now holds across an `.await` and why it must); a shrink should lower them.
    #[test]
    fn channel_task_and_mailbox_stay_small() {
        // bytes: measured + margin
        const CHANNEL_MSG_PIN: usize = 40 + 8;
        const CHANNEL_TASK_PIN: usize = 576 + 64; // 1,696 before pubsub (un)subscribe and untrack were boxed; 1,056 before the join and stop phases were
        let msg = std::mem::size_of::<ChannelMsg>();
        println!("ChannelMsg: {msg} bytes (pin {CHANNEL_MSG_PIN})");
        assert!(msg <= CHANNEL_MSG_PIN, "ChannelMsg is {msg} bytes, pinned at {CHANNEL_MSG_PIN}: a growth must be a deliberate edit of the pin, with a reason");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (socket, _outbox) = crate::testing::socket(crate::testing::endpoint(crate::socket::Router::new()), 1).await;
            let (tx, rx) = mailbox(16);
            let fut = run(
                Box::new(Spawn {
                    channel: Box::new(Nop),
                    topic: "t".into(),
                    join_ref: None,
                    ref_: None,
                    params: Payload::empty_object(),
                    socket: socket.info().clone(),
                    sub_id: 1,
                    after_reply: vec![],
                    joined: None,
                    predecessor: None,
                }),
                tx,
                rx,
            );
            let size = std::mem::size_of_val(&fut);
            println!("channel task future: {size} bytes (pin {CHANNEL_TASK_PIN})");
            assert!(
                size <= CHANNEL_TASK_PIN,
                "channel task future is {size} bytes, pinned at {CHANNEL_TASK_PIN}: a growth must be a deliberate edit of the pin, with a reason"
            );
        });
    }
}

