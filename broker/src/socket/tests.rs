//! The socket's decisions (spec §4), tested without sockets: messages in, frames out of an
//! in-memory outbox, tokio time paused where timers matter.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::channel::{Channel, ChannelContext, Join, Reply, StopReason};
use crate::protocol::{decode_text, Message, Payload, Serializer};
use crate::socket::{Router, Socket};
use crate::config::SocketLimits;
use crate::testing::{drain, endpoint, endpoint_with, socket};

/// Joins anything except `refused:*`; echoes `ping` with a reply; its `terminate` never
/// returns for topics starting with `stuck:` (a channel that ignores being told to stop).
struct Probe;

#[async_trait]
impl Channel for Probe {
    async fn join(&mut self, topic: &str, _params: Payload, _ctx: &mut ChannelContext) -> Join {
        if topic.starts_with("refused:") {
            Join::error(json!({"reason": "no"}))
        } else {
            Join::ok()
        }
    }
    async fn handle_in(&mut self, event: &str, payload: Payload, _ctx: &mut ChannelContext) -> Reply {
        match event {
            "ping" => Reply::Reply { status: "ok".into(), response: payload },
            _ => Reply::NoReply,
        }
    }
    async fn terminate(&mut self, _reason: &StopReason, ctx: &mut ChannelContext) {
        if ctx.topic().starts_with("stuck:") {
            std::future::pending::<()>().await;
        }
    }
}

fn msg(v: Value) -> Message {
    decode_text(Serializer::V2, &Bytes::from(v.to_string())).expect("a V2 message")
}

async fn new_socket() -> (Socket, std::sync::Arc<crate::outbox::Outbox>) {
    socket(endpoint(Router::new().channel("*", |_| Probe)), 1).await
}

/// Lets spawned tasks (channels, pubsub shards) run until they are idle.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn join_replies_ok_and_refusal_replies_error() {
    let (mut s, out) = new_socket().await;
    s.handle(msg(json!(["1", "1", "room:1", "phx_join", {}]))).await;
    s.handle(msg(json!(["2", "2", "refused:1", "phx_join", {}]))).await;
    settle().await;
    let frames = drain(&out);
    assert!(frames.contains(&json!(["1", "1", "room:1", "phx_reply", {"status": "ok", "response": {}}])), "{frames:?}");
    assert!(frames.contains(&json!(["2", "2", "refused:1", "phx_reply", {"status": "error", "response": {"reason": "no"}}])), "{frames:?}");
    settle().await;
    // The refused channel is gone (its ChannelExit reached the socket), the joined one stays.
    while let Ok(Some(ctl)) = tokio::time::timeout(Duration::from_millis(10), s.next_ctl()).await {
        s.handle_ctl(ctl);
    }
    assert_eq!(s.channel_count(), 1);
}

#[tokio::test]
async fn heartbeat_unmatched_topic_and_stale_join_ref() {
    let (mut s, out) = new_socket().await;
    s.handle(msg(json!([null, "1", "phoenix", "heartbeat", {}]))).await;
    s.handle(msg(json!([null, "2", "nowhere:1", "ping", {}]))).await;
    s.handle(msg(json!(["3", "3", "room:1", "phx_join", {}]))).await;
    settle().await;
    // Same topic, another join_ref: dropped silently (spec §4.5).
    s.handle(msg(json!(["99", "4", "room:1", "ping", {"a": 1}]))).await;
    s.handle(msg(json!(["3", "5", "room:1", "ping", {"a": 2}]))).await;
    settle().await;
    let frames = drain(&out);
    assert_eq!(frames[0], json!([null, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}]));
    assert_eq!(frames[1], json!([null, "2", "nowhere:1", "phx_reply", {"status": "error", "response": {"reason": "unmatched topic"}}]));
    assert!(!frames.iter().any(|f| f[1] == "4"), "the stale message was answered: {frames:?}");
    assert!(frames.contains(&json!(["3", "5", "room:1", "phx_reply", {"status": "ok", "response": {"a": 2}}])), "{frames:?}");
}

#[tokio::test]
async fn leave_replies_ok_then_closes_and_later_messages_are_unmatched() {
    let (mut s, out) = new_socket().await;
    s.handle(msg(json!(["1", "1", "room:1", "phx_join", {}]))).await;
    settle().await;
    s.handle(msg(json!(["1", "2", "room:1", "phx_leave", {}]))).await;
    settle().await;
    while let Ok(Some(ctl)) = tokio::time::timeout(Duration::from_millis(10), s.next_ctl()).await {
        s.handle_ctl(ctl);
    }
    s.handle(msg(json!(["1", "3", "room:1", "ping", {}]))).await;
    settle().await;
    let frames = drain(&out);
    let events: Vec<(&str, &str)> = frames.iter().map(|f| (f[3].as_str().unwrap(), f[1].as_str().unwrap_or(""))).collect();
    assert_eq!(events, vec![("phx_reply", "1"), ("phx_reply", "2"), ("phx_close", "1"), ("phx_reply", "3")], "{frames:?}");
    assert_eq!(frames[3][4]["response"]["reason"], "unmatched topic");
    // Leaving a topic that was never joined is answered ok all the same (spec §4.6).
    s.handle(msg(json!(["7", "8", "other:1", "phx_leave", {}]))).await;
    assert_eq!(drain(&out)[0][4]["status"], "ok");
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_join_never_blocks_the_socket() {
    let (mut s, out) = new_socket().await;
    s.handle(msg(json!(["1", "1", "stuck:1", "phx_join", {}]))).await;
    settle().await;
    // The old incarnation never stops by itself (its terminate hangs): the socket must go on
    // at once; the new join waits for the old one (up to the grace), not the socket.
    tokio::time::timeout(Duration::from_millis(1), s.handle(msg(json!(["2", "2", "stuck:1", "phx_join", {}]))))
        .await
        .expect("the duplicate join blocked the socket");
    s.handle(msg(json!([null, "3", "phoenix", "heartbeat", {}]))).await;
    settle().await;
    let frames = drain(&out);
    assert_eq!(frames.last().unwrap()[1], "3", "the heartbeat is answered while the old channel hangs: {frames:?}");
    assert!(!frames.iter().any(|f| f[1] == "2"), "no new join reply before the old channel is gone");
    // After the grace (5 s) the old one is aborted; the new join reply comes, then the old
    // incarnation's phx_close (spec §4.7).
    tokio::time::sleep(Duration::from_secs(6)).await;
    settle().await;
    let frames = drain(&out);
    assert_eq!(frames[0], json!(["2", "2", "stuck:1", "phx_reply", {"status": "ok", "response": {}}]));
    assert_eq!(frames[1], json!(["1", "1", "stuck:1", "phx_close", {}]));
}

#[tokio::test]
async fn oversized_fields_get_an_error_reply() {
    let (mut s, out) = new_socket().await;
    let long_topic = format!("room:{}", "x".repeat(2000));
    s.handle(msg(json!(["1", "1", long_topic, "phx_join", {}]))).await;
    s.handle(msg(json!(["2", "2", "room:1", "e".repeat(2000), {}]))).await;
    let frames = drain(&out);
    assert_eq!(frames[0][4]["response"]["reason"], "topic too long");
    assert_eq!(frames[1][4]["response"]["reason"], "event too long");
    assert_eq!(s.channel_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn messages_and_joins_beyond_the_rate_get_an_error_reply() {
    let limits = SocketLimits { messages_per_s: 10, messages_burst: 5, joins_per_s: 1, joins_burst: 2, ..SocketLimits::default() };
    let (mut s, out) = socket(endpoint_with(Router::new().channel("*", |_| Probe), limits), 1).await;
    for i in 0..3 {
        s.handle(msg(json!([i.to_string(), i.to_string(), format!("room:{i}"), "phx_join", {}]))).await;
    }
    settle().await;
    let frames = drain(&out);
    let limited: Vec<&Value> = frames.iter().filter(|f| f[4]["response"]["reason"] == "rate limited").collect();
    assert_eq!(limited.len(), 1, "the third join is over the burst of 2: {frames:?}");
    assert_eq!(limited[0][2], "room:2");
    // Five messages pass (the burst), the sixth is refused, heartbeats never are.
    for i in 0..6 {
        s.handle(msg(json!(["0", format!("m{i}"), "room:0", "ping", {}]))).await;
        s.handle(msg(json!([null, format!("h{i}"), "phoenix", "heartbeat", {}]))).await;
    }
    settle().await;
    let frames = drain(&out);
    let refused: Vec<&str> = frames.iter().filter(|f| f[4]["response"]["reason"] == "rate limited").map(|f| f[1].as_str().unwrap()).collect();
    assert_eq!(refused, vec!["m5"], "{frames:?}");
    assert_eq!(frames.iter().filter(|f| f[1].as_str().unwrap().starts_with('h')).count(), 6);
    // A second later the bucket has refilled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.handle(msg(json!(["0", "later", "room:0", "ping", {}]))).await;
    settle().await;
    assert_eq!(drain(&out)[0][4]["status"], "ok");
}
