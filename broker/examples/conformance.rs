//! The conformance server: the library API exercised by every channel behaviour the spec's
//! checklist names, driven by the JS conformance tests (`tests/js`). Also a worked example of
//! the `Channel` trait, `SocketHandler`, intercepts, presence and async replies.
//!
//! Run: `cargo run --example conformance -- [config.toml]` (prints `listening on ADDR`). Each
//! stdin line `{"topic","event","payload"}` is an `Endpoint.broadcast` from outside any channel.
//!
//! Routes:
//! * `room:*`, `lobby` → [`TestChannel`]: behaviour chosen by join params and event names.
//! * `intercept:*` → [`InterceptChannel`]: intercepts `secret` (re-pushed, wrapped) and
//!   `filtered` (dropped).
//! * `presence:*` → [`PresenceChannel`]: tracks `params.user` (or the `user_id` connect param)
//!   with meta `params.meta` after the join, then pushes `presence_state`; events `tracked`,
//!   `track_again`, `update`, `update_missing`, `untrack`, `list`, `crash`.
//! * `presence_fetch:*` → [`PresenceChannel`] with a presence `fetch` hook adding
//!   `"user": {"name": key}` next to `"metas"` (checklist 95).
//! * `observer` → [`TestChannel`]; termination reasons of other channels are broadcast here as
//!   `terminated` events.

use std::time::Duration;

use async_trait::async_trait;
use broker::channel::{Info, PushFailed, ShutdownReason};
use broker::{Channel, ChannelContext, Config, ConnectError, ConnectInfo, Continue, Join, Payload, Reply, Router, SocketHandler, StopReason};
use bytes::Bytes;
use serde_json::{json, Map, Value};

struct TestSockets;

#[async_trait]
impl SocketHandler for TestSockets {
    async fn connect(&self, params: &Value, info: &ConnectInfo) -> Result<Map<String, Value>, ConnectError> {
        match params.get("reject").and_then(Value::as_str) {
            Some("429") => return Err(ConnectError::Status(429, "slow down".into())),
            Some(_) => return Err(ConnectError::Forbidden),
            None => {}
        }
        let mut assigns = Map::new();
        if let Some(user) = params.get("user_id") {
            assigns.insert("user_id".into(), user.clone());
        }
        if let Some(token) = &info.auth_token {
            assigns.insert("auth_token".into(), Value::String(token.clone()));
        }
        Ok(assigns)
    }

    fn id(&self, assigns: &Map<String, Value>) -> Option<String> {
        assigns.get("user_id").and_then(Value::as_str).map(|u| format!("user_socket:{u}"))
    }
}

fn obj(p: &Payload) -> Value {
    p.to_value().unwrap_or(Value::Null)
}

async fn report_termination(ctx: &ChannelContext, reason: &StopReason) {
    let reason = match reason {
        StopReason::Normal => "normal".to_string(),
        StopReason::Shutdown(r) => format!("shutdown:{r}"),
        StopReason::Error(e) => format!("error:{e}"),
    };
    let payload = Payload::json(&json!({"topic": ctx.topic(), "reason": reason}));
    let _ = ctx.broadcast_to("observer", "terminated", payload, None).await;
}

#[derive(Default)]
struct TestChannel;

#[async_trait]
impl Channel for TestChannel {
    async fn join(&mut self, _topic: &str, params: Payload, ctx: &mut ChannelContext) -> Join {
        if let Payload::Binary(b) = &params {
            // A binary join: reply with the bytes (kind-1 frame).
            return Join::Ok(Payload::Binary(b.clone()));
        }
        let p = obj(&params);
        if let Some(ms) = p.get("slow_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some(reason) = p.get("reject") {
            return Join::error(json!({ "reason": reason }));
        }
        if p.get("crash").is_some() {
            panic!("join crashed on purpose");
        }
        if p.get("binary_reply").is_some() {
            return Join::Ok(Payload::Binary(Bytes::from_static(&[1, 2, 3])));
        }
        if let Some(token) = ctx.socket_assigns().get("auth_token") {
            return Join::ok_with(json!({ "auth_token": token }));
        }
        match p.get("reply") {
            Some(reply) => Join::ok_with(reply),
            None => Join::ok(),
        }
    }

    async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
        let p = obj(&payload);
        match event {
            "echo" => match payload {
                Payload::Binary(b) => Reply::Reply { status: "ok".into(), response: Payload::Binary(b) },
                json => Reply::ok_with(json!({ "echo": obj(&json) })),
            },
            "reply_ok" => Reply::ok(),
            "reply_status" => Reply::Reply { status: "custom".into(), response: Payload::json(&json!({"x": 1})) },
            "noreply" => Reply::NoReply,
            "stop_normal" => Reply::stop(StopReason::Normal),
            "stop_shutdown_reply" => Reply::Stop {
                reason: StopReason::Shutdown(ShutdownReason::App("x".into())),
                reply: Some(("error".into(), Payload::json(&json!({"r": 1})))),
            },
            "stop_error" => Reply::stop(StopReason::Error("boom".into())),
            "crash" => panic!("handle_in crashed on purpose"),
            "push" => {
                let _ = ctx.push("pushed", payload);
                Reply::ok()
            }
            // V2 refuses a non-object push payload (spec §3.5); V1 sends it.
            "push_non_object" => match ctx.push("x", Payload::json(&json!(1))) {
                Ok(()) => Reply::ok(),
                Err(PushFailed::PayloadNotObject) => Reply::error(json!({"reason": "payload not object"})),
                Err(other) => Reply::error(json!({"reason": format!("{other:?}")})),
            },
            // A binary push; a push the server cannot encode (V1, header field > 255 bytes) is
            // reported in the reply instead of being sent.
            "push_binary" => match ctx.push("bin", Payload::Binary(Bytes::from_static(&[9, 8, 7]))) {
                Ok(()) => Reply::ok(),
                Err(e) => Reply::error(json!({"reason": format!("{e:?}")})),
            },
            // What handle_in received: bytes (binary push) or the JSON payload.
            "describe" => match &payload {
                Payload::Binary(b) => Reply::ok_with(json!({"binary": true, "bytes": b.to_vec()})),
                json => Reply::ok_with(json!({"binary": false, "payload": obj(json)})),
            },
            "broadcast" => {
                let _ = ctx.broadcast("broadcasted", payload).await;
                Reply::ok()
            }
            "broadcast_binary" => {
                let _ = ctx.broadcast("bin_broadcast", Payload::Binary(Bytes::from_static(&[4, 5, 6]))).await;
                Reply::ok()
            }
            "broadcast_from" => {
                let _ = ctx.broadcast_from("broadcasted", payload).await;
                Reply::ok()
            }
            "endpoint_broadcast" => {
                let topic = p.get("topic").and_then(Value::as_str).unwrap_or("").to_owned();
                let event = p.get("event").and_then(Value::as_str).unwrap_or("ev").to_owned();
                let body = p.get("payload").cloned().unwrap_or(json!({}));
                let _ = ctx.broadcast_to(&topic, &event, Payload::json(&body), None).await;
                Reply::ok()
            }
            "async_reply_twice" => {
                let r = ctx.socket_ref().expect("inside handle_in");
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let _ = r.reply("ok", Payload::json(&json!({"n": 1})));
                    let _ = r.reply("ok", Payload::json(&json!({"n": 2})));
                });
                Reply::NoReply
            }
            "info_stop" => {
                ctx.send_info("stop");
                Reply::ok()
            }
            "slow" => {
                let ms = p.get("ms").and_then(Value::as_u64).unwrap_or(100);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Reply::ok()
            }
            other => Reply::error(json!({"reason": format!("unknown event {other}")})),
        }
    }

    async fn handle_info(&mut self, msg: Info, _ctx: &mut ChannelContext) -> Continue {
        match msg {
            Info::Message(m) if m.downcast_ref::<&str>() == Some(&"stop") => Continue::Stop(StopReason::Shutdown(ShutdownReason::App("x".into()))),
            _ => Continue::Continue,
        }
    }

    async fn terminate(&mut self, reason: &StopReason, ctx: &mut ChannelContext) {
        if ctx.topic() != "observer" {
            report_termination(ctx, reason).await;
        }
    }
}

struct InterceptChannel;

#[async_trait]
impl Channel for InterceptChannel {
    fn intercepts(&self) -> Vec<String> {
        vec!["secret".into(), "filtered".into()]
    }

    async fn join(&mut self, _topic: &str, _params: Payload, _ctx: &mut ChannelContext) -> Join {
        Join::ok()
    }

    async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
        let _ = ctx.broadcast(event, payload).await;
        Reply::ok()
    }

    async fn handle_out(&mut self, event: &str, payload: &Payload, ctx: &mut ChannelContext) -> Continue {
        if event == "secret" {
            let _ = ctx.push("secret", Payload::json(&json!({"intercepted": obj(payload)})));
        }
        Continue::Continue
    }
}

#[derive(Default)]
struct PresenceChannel {
    key: String,
    meta: Map<String, Value>,
    /// What `track` returned after the join: `Ok(phx_ref)` or the error's name.
    tracked: Option<Result<String, String>>,
}

#[async_trait]
impl Channel for PresenceChannel {
    async fn join(&mut self, _topic: &str, params: Payload, ctx: &mut ChannelContext) -> Join {
        let p = obj(&params);
        self.key = p
            .get("user")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| ctx.socket_assigns().get("user_id").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "anonymous".into());
        self.meta = p.get("meta").and_then(Value::as_object).cloned().unwrap_or_default();
        Join::ok()
    }

    async fn after_join(&mut self, ctx: &mut ChannelContext) -> Continue {
        self.tracked = Some(ctx.track(&self.key, self.meta.clone()).await.map_err(|e| e.reason().to_string()));
        let _ = ctx.push_presence_state().await;
        Continue::Continue
    }

    async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
        let p = obj(&payload);
        match event {
            "update" => {
                let meta = p.as_object().cloned().unwrap_or_default();
                match ctx.update_presence(&self.key, meta).await {
                    Ok(r) => Reply::ok_with(json!({"phx_ref": r})),
                    Err(e) => Reply::error(json!({"reason": e.reason()})),
                }
            }
            "track_again" => match ctx.track(&self.key, self.meta.clone()).await {
                Ok(r) => Reply::ok_with(json!({"phx_ref": r})),
                Err(e) => Reply::error(json!({"reason": e.reason()})),
            },
            "untrack" => {
                ctx.untrack(&self.key).await;
                Reply::ok()
            }
            "update_missing" => match ctx.update_presence("nobody", Map::new()).await {
                Ok(_) => Reply::ok(),
                Err(e) => Reply::error(json!({"reason": e.reason()})),
            },
            // The result of the `track` made after the join.
            "tracked" => match &self.tracked {
                Some(Ok(r)) => Reply::ok_with(json!({"phx_ref": r})),
                Some(Err(e)) => Reply::error(json!({"reason": e})),
                None => Reply::error(json!({"reason": "not tracked"})),
            },
            "crash" => panic!("presence channel crashed on purpose"),
            "list" => Reply::ok_with(ctx.presence().list(ctx.topic()).await),
            _ => Reply::error(json!({"reason": "unknown event"})),
        }
    }
}

/// `Endpoint.broadcast` from outside any channel: each stdin line
/// `{"topic": …, "event": …, "payload": {…}}` is broadcast through the server's
/// [`broker::BrokerHandle`] (`"disconnect"` through `BrokerHandle::disconnect`). Ends at EOF.
async fn endpoint_broadcasts(handle: broker::BrokerHandle) {
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
        let topic = msg.get("topic").and_then(Value::as_str).unwrap_or_default();
        let event = msg.get("event").and_then(Value::as_str).unwrap_or_default();
        if event == "disconnect" {
            let _ = handle.disconnect(topic).await;
        } else {
            let _ = handle.broadcast_json(topic, event, msg.get("payload").unwrap_or(&json!({}))).await;
        }
    }
}

fn main() {
    let config = match std::env::args().nth(1) {
        Some(path) => Config::from_toml(&std::fs::read_to_string(&path).expect("config file")).expect("valid config"),
        None => Config { listen: "127.0.0.1:0".into(), ..Config::default() },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let router = Router::new()
            .channel("room:*", |_| TestChannel)
            .channel("lobby", |_| TestChannel)
            .channel("observer", |_| TestChannel)
            .channel("intercept:*", |_| InterceptChannel)
            .channel("presence:*", |_| PresenceChannel::default())
            // Presence with a `fetch` hook (below): checklist 95.
            .channel("presence_fetch:*", |_| PresenceChannel::default());
        let server = broker::Builder::new(config)
            .router(router)
            .socket_handler(TestSockets)
            // Phoenix's fetch/2: on `presence_fetch:*`, add {"user": {"name": key}} next to "metas".
            .presence_fetch(|topic, key, entry| {
                if topic.starts_with("presence_fetch:") {
                    entry.insert("user".into(), json!({ "name": key }));
                }
            })
            .bind()
            .await
            .expect("bind");
        println!("listening on {}", server.local_addr());
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        tokio::spawn(endpoint_broadcasts(server.handle()));
        server
            .run_until(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .await;
    });
}
