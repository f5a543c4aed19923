//! Phoenix's `ChannelTest` for this crate: test a channel without sockets or a network.
//!
//! | Phoenix (`Phoenix.ChannelTest`) | here |
//! |---|---|
//! | `socket(UserSocket, id, assigns)` | [`ChannelTest::socket`] |
//! | `connect(UserSocket, params)` | [`ChannelTest::connect`] (runs the [`SocketHandler`]) |
//! | `subscribe_and_join(socket, "room:1", params)` | [`TestSocket::join`] (`Ok(reply)` / `Err(reply)`) |
//! | `push(socket, "event", payload)` | [`TestSocket::push`] → a ref |
//! | `assert_reply ref, :ok, payload` | [`TestSocket::assert_reply`] → the response |
//! | `assert_push "event", payload` | [`TestSocket::assert_push`] → the payload |
//! | `assert_broadcast "event", payload` | [`TestSocket::assert_broadcast`] → the payload |
//! | `refute_push` / `refute_broadcast` | [`TestSocket::refute_push`] / [`TestSocket::refute_broadcast`] |
//! | `leave(socket)` / `close(socket)` | [`TestSocket::leave`] / [`TestSocket::close`] |
//! | `broadcast_from(socket, …)`, `Endpoint.broadcast` | [`ChannelTest::broadcast`] |
//!
//! The channel runs exactly as in the server (its task, intercepts, presence, replies), over
//! in-memory pubsub and presence; what the client would receive is read back as JSON
//! (`[join_ref, ref, topic, event, payload]`, V2). The assertions wait up to
//! [`TestSocket::timeout`] (1 s by default) and panic with everything received otherwise.
//!
//! ```
//! use broker::channel_test::ChannelTest;
//! use broker::{async_trait, Channel, ChannelContext, Join, Payload, Reply, Router};
//! use serde_json::json;
//!
//! struct Room;
//!
//! #[async_trait]
//! impl Channel for Room {
//!     async fn join(&mut self, _topic: &str, _params: Payload, _ctx: &mut ChannelContext) -> Join {
//!         Join::ok_with(json!({"welcome": true}))
//!     }
//!     async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
//!         match event {
//!             "ping" => Reply::ok_with(json!({"pong": true})),
//!             "shout" => {
//!                 let _ = ctx.broadcast("shout", payload).await;
//!                 Reply::NoReply
//!             }
//!             _ => Reply::error(json!({"reason": "unknown"})),
//!         }
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let t = ChannelTest::new(Router::new().channel("room:*", |_| Room));
//! let mut socket = t.socket(serde_json::Map::new()).await;
//! assert_eq!(socket.join("room:lobby", json!({})).await, Ok(json!({"welcome": true})));
//! let r = socket.push("room:lobby", "ping", json!({})).await;
//! assert_eq!(socket.assert_reply(&r, "ok").await, json!({"pong": true}));
//! socket.push("room:lobby", "shout", json!({"text": "hi"})).await;
//! assert_eq!(socket.assert_broadcast("room:lobby", "shout").await, json!({"text": "hi"}));
//! assert_eq!(socket.assert_push("room:lobby", "shout").await, json!({"text": "hi"}));
//! # });
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use serde_json::{Map, Value};

use crate::channel::{ChannelEnv, ShutdownReason, StopReason};
use crate::config::SocketLimits;
use crate::outbox::{Outbox, OutboxLimits};
use crate::presence::Presence;
use crate::protocol::{Message, Payload, Ref, Serializer, TopicField, Transport};
use crate::pubsub::{next_sub_id, Broadcast, PubSub, SubKind};
use crate::socket::{AllowAll, ConnectError, ConnectInfo, Endpoint, Router, Socket, SocketHandler, SocketParams};

/// An endpoint for tests: the app's router and socket handler over in-memory pubsub and
/// presence. Create it inside a tokio runtime (`#[tokio::test]`).
pub struct ChannelTest {
    endpoint: Arc<Endpoint>,
    conn_ids: AtomicU64,
}

impl ChannelTest {
    /// An endpoint with these routes; sockets are accepted as they are (no handler).
    pub fn new(router: Router) -> ChannelTest {
        ChannelTest::with_handler(router, AllowAll)
    }

    /// An endpoint with these routes and this socket handler (for [`ChannelTest::connect`]).
    pub fn with_handler(router: Router, handler: impl SocketHandler) -> ChannelTest {
        let pubsub = PubSub::start(1);
        let env = Arc::new(ChannelEnv { presence: Presence::start(pubsub.clone(), 1, 0), pubsub, limits: SocketLimits::default() });
        ChannelTest { endpoint: Arc::new(Endpoint { router, handler: Arc::new(handler), env }), conn_ids: AtomicU64::new(1) }
    }

    /// Phoenix's `socket(UserSocket, id, assigns)`: a socket with these assigns, without
    /// running the socket handler.
    pub async fn socket(&self, assigns: Map<String, Value>) -> TestSocket {
        self.start(assigns, Value::Object(Map::new())).await
    }

    /// Phoenix's `connect(UserSocket, params)`: runs the socket handler's `connect` with these
    /// params (as a WebSocket from nowhere would bring them).
    pub async fn connect(&self, params: Value) -> Result<TestSocket, ConnectError> {
        let info = ConnectInfo {
            peer: None,
            uri: "/socket/websocket".into(),
            user_agent: None,
            x_headers: Vec::new(),
            auth_token: None,
            transport: Transport::WebSocket,
        };
        let assigns = self.endpoint.handler.connect(&params, &info).await?;
        Ok(self.start(assigns, params).await)
    }

    async fn start(&self, assigns: Map<String, Value>, params: Value) -> TestSocket {
        let outbox = Arc::new(Outbox::new(OutboxLimits { max_frames: 10_000, max_bytes: 16 << 20 }));
        let socket = Socket::start(
            self.endpoint.clone(),
            SocketParams {
                conn_id: self.conn_ids.fetch_add(1, Ordering::Relaxed),
                serializer: Serializer::V2,
                transport: Transport::WebSocket,
                assigns,
                params: crate::protocol::params::ConnectParams::from_value(params),
                outbox: outbox.clone(),
            },
        )
        .await;
        TestSocket {
            env: self.endpoint.env.clone(),
            socket: Some(socket),
            outbox,
            received: Vec::new(),
            broadcasts: HashMap::new(),
            next_ref: 1,
            join_refs: HashMap::new(),
            timeout: Duration::from_secs(1),
        }
    }

    /// `Endpoint.broadcast(topic, event, payload)` from the test.
    pub async fn broadcast(&self, topic: &str, event: &str, payload: Value) {
        self.endpoint.env.pubsub.broadcast(Broadcast::new(topic, event, Payload::json(&payload)), None, None).await;
    }

    /// The presence service the channels use.
    pub fn presence(&self) -> &Presence {
        &self.endpoint.env.presence
    }
}

/// A socket of a [`ChannelTest`]: join, push, and assert on what the client receives.
pub struct TestSocket {
    env: Arc<ChannelEnv>,
    socket: Option<Socket>,
    outbox: Arc<Outbox>,
    /// Frames received and not yet asserted on, as JSON.
    received: Vec<Value>,
    /// Per joined topic: what a subscriber of the topic (the test itself) received.
    broadcasts: HashMap<String, (Arc<Outbox>, Vec<Value>)>,
    next_ref: u64,
    join_refs: HashMap<String, String>,
    /// How long the assertions wait.
    pub timeout: Duration,
}

fn drain(outbox: &Outbox, into: &mut Vec<Value>) {
    let mut q = VecDeque::new();
    outbox.drain_into(&mut q);
    let n: usize = q.iter().map(|f| f.len()).sum();
    outbox.release(n);
    into.extend(q.iter().filter_map(|f| serde_json::from_slice::<Value>(&f.body()).ok()));
}

impl TestSocket {
    fn socket(&mut self) -> &mut Socket {
        let socket = self.socket.as_mut().expect("the socket is closed");
        // Apply the socket's control messages (channels that ended).
        while let Some(Some(ctl)) = socket.next_ctl().now_or_never() {
            socket.handle_ctl(ctl);
        }
        socket
    }

    fn new_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    async fn send(&mut self, join_ref: Option<String>, ref_: &str, topic: &str, event: &str, payload: Value) {
        let msg = Message {
            join_ref: join_ref.map(Ref::Str),
            ref_: Some(Ref::str(ref_)),
            topic: TopicField::Str(topic.into()),
            event: event.into(),
            payload: Payload::json(&payload),
        };
        self.socket().handle(msg).await;
    }

    /// Phoenix's `subscribe_and_join`: joins `topic` with `params`; `Ok(response)` or
    /// `Err(response)` as the join reply says. The test subscribes to the topic too (for
    /// [`TestSocket::assert_broadcast`]).
    pub async fn join(&mut self, topic: &str, params: Value) -> Result<Value, Value> {
        if !self.broadcasts.contains_key(topic) {
            let listener = Arc::new(Outbox::new(OutboxLimits { max_frames: 10_000, max_bytes: 16 << 20 }));
            let kind = SubKind::Fastlane {
                outbox: listener.clone(),
                serializer: Serializer::V2,
                intercepts: Arc::from(Vec::<String>::new()),
                handle_out: Arc::new(|_| {}),
                socket_id: None,
            };
            self.env.pubsub.subscribe(0, topic.into(), next_sub_id(), kind, vec![]).await;
            self.broadcasts.insert(topic.to_owned(), (listener, Vec::new()));
        }
        let r = self.new_ref();
        self.join_refs.insert(topic.to_owned(), r.clone());
        self.send(Some(r.clone()), &r, topic, "phx_join", params).await;
        let reply = self.wait_reply(&r).await;
        let response = reply["response"].clone();
        if reply["status"] == "ok" {
            Ok(response)
        } else {
            self.join_refs.remove(topic);
            Err(response)
        }
    }

    /// Phoenix's `push(socket, event, payload)` on a joined topic; returns the message ref for
    /// [`TestSocket::assert_reply`].
    pub async fn push(&mut self, topic: &str, event: &str, payload: Value) -> String {
        let r = self.new_ref();
        let join_ref = self.join_refs.get(topic).cloned();
        self.send(join_ref, &r, topic, event, payload).await;
        r
    }

    /// `leave(socket)`: leaves `topic`; returns the leave reply's status.
    pub async fn leave(&mut self, topic: &str) -> String {
        let r = self.new_ref();
        let join_ref = self.join_refs.remove(topic);
        self.send(join_ref, &r, topic, "phx_leave", Value::Object(Map::new())).await;
        self.wait_reply(&r).await["status"].as_str().unwrap_or_default().to_owned()
    }

    /// `close(socket)`: the transport closes (channels stop without frames, `terminate` runs).
    pub async fn close(&mut self) {
        if let Some(s) = self.socket.take() {
            s.close(StopReason::Shutdown(ShutdownReason::Closed)).await;
        }
    }

    async fn wait_reply(&mut self, ref_: &str) -> Value {
        let what = format!("a reply to ref {ref_}");
        self.take_received(&what, |m| m[3] == "phx_reply" && m[1] == ref_).await[4].clone()
    }

    /// Phoenix's `assert_reply ref, status`: the reply to `ref_` has `status`; returns its
    /// response.
    pub async fn assert_reply(&mut self, ref_: &str, status: &str) -> Value {
        let reply = self.wait_reply(ref_).await;
        assert_eq!(reply["status"], status, "reply to ref {ref_}: {reply}");
        reply["response"].clone()
    }

    /// Phoenix's `assert_push event`: the client received `event` on `topic` (a push, or a
    /// broadcast that reached it); returns its payload. Consumed: the next call waits for
    /// another.
    pub async fn assert_push(&mut self, topic: &str, event: &str) -> Value {
        let what = format!("a push of {event:?} on {topic:?}");
        self.take_received(&what, |m| m[2] == topic && m[3] == event).await[4].clone()
    }

    /// Phoenix's `refute_push`: nothing of `event` on `topic` reaches the client within
    /// `within`.
    pub async fn refute_push(&mut self, topic: &str, event: &str, within: Duration) {
        tokio::time::sleep(within).await;
        drain(&self.outbox, &mut self.received);
        let hit = self.received.iter().find(|m| m[2] == topic && m[3] == event);
        assert!(hit.is_none(), "unexpected push of {event:?} on {topic:?}: {hit:?}");
    }

    /// Phoenix's `assert_broadcast event`: `event` was broadcast on `topic` (a joined topic);
    /// returns its payload.
    pub async fn assert_broadcast(&mut self, topic: &str, event: &str) -> Value {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let (listener, got) = self.broadcasts.get_mut(topic).unwrap_or_else(|| panic!("assert_broadcast: join {topic:?} first"));
            drain(listener, got);
            if let Some(i) = got.iter().position(|m| m[3] == event) {
                return got.remove(i)[4].clone();
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("no broadcast of {event:?} on {topic:?} within {:?}; broadcasts: {got:?}", self.timeout);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Phoenix's `refute_broadcast`: no `event` broadcast on `topic` within `within`.
    pub async fn refute_broadcast(&mut self, topic: &str, event: &str, within: Duration) {
        tokio::time::sleep(within).await;
        let (listener, got) = self.broadcasts.get_mut(topic).unwrap_or_else(|| panic!("refute_broadcast: join {topic:?} first"));
        drain(listener, got);
        let hit = got.iter().find(|m| m[3] == event);
        assert!(hit.is_none(), "unexpected broadcast of {event:?} on {topic:?}: {hit:?}");
    }

    /// Everything the client received and no assertion consumed yet, as
    /// `[join_ref, ref, topic, event, payload]`.
    pub fn received(&mut self) -> &[Value] {
        drain(&self.outbox, &mut self.received);
        &self.received
    }

    async fn take_received(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            drain(&self.outbox, &mut self.received);
            if let Some(i) = self.received.iter().position(&pred) {
                return self.received.remove(i);
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("no {what} within {:?}; received: {:?}", self.timeout, self.received);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{async_trait, Channel, ChannelContext, Continue, Join, Reply};
    use serde_json::json;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct User {
        name: String,
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Meta {
        typing: bool,
    }

    struct Room;

    #[async_trait]
    impl Channel for Room {
        fn intercepts(&self) -> Vec<String> {
            vec!["secret".into()]
        }
        async fn join(&mut self, _topic: &str, params: Payload, ctx: &mut ChannelContext) -> Join {
            if params.to_value().is_some_and(|p| p["refuse"] == true) {
                return Join::error(json!({"reason": "refused"}));
            }
            let user: User = ctx.assigns_as().unwrap();
            Join::ok_with(json!({"hello": user.name}))
        }
        async fn after_join(&mut self, ctx: &mut ChannelContext) -> Continue {
            let name = ctx.assigns_as::<User>().unwrap().name;
            ctx.track_as(&name, &Meta { typing: false }).await.unwrap();
            Continue::Continue
        }
        async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
            let name = ctx.assigns_as::<User>().unwrap().name;
            match event {
                "ping" => Reply::ok_with(json!({"pong": payload.to_value()})),
                "shout" => {
                    ctx.broadcast("shout", payload).await.unwrap();
                    Reply::NoReply
                }
                "typing" => {
                    ctx.update_presence_with(&name, |m: &mut Meta| m.typing = true).await.unwrap();
                    Reply::ok()
                }
                "tick" => {
                    ctx.send_info(42u32);
                    Reply::NoReply
                }
                _ => Reply::error(json!({"reason": "unknown"})),
            }
        }
        async fn handle_out(&mut self, event: &str, payload: &Payload, ctx: &mut ChannelContext) -> Continue {
            let name = ctx.assigns_as::<User>().unwrap().name;
            if name == "boss" {
                let _ = ctx.push(event, payload.clone());
            }
            Continue::Continue
        }
        async fn handle_info(&mut self, msg: crate::Info, ctx: &mut ChannelContext) -> Continue {
            if let Ok(n) = msg.downcast::<u32>() {
                let _ = ctx.push("tock", Payload::json(&json!({"n": n})));
            }
            Continue::Continue
        }
    }

    struct Names;

    #[async_trait]
    impl SocketHandler for Names {
        async fn connect(&self, params: &Value, _info: &ConnectInfo) -> Result<Map<String, Value>, ConnectError> {
            let name = params["name"].as_str().ok_or(ConnectError::Forbidden)?;
            crate::assigns(&User { name: name.into() })
        }
    }

    fn router() -> Router {
        Router::new().channel("room:*", |_| Room)
    }

    #[tokio::test]
    async fn join_push_reply_broadcast_push() {
        let t = ChannelTest::with_handler(router(), Names);
        assert!(t.connect(json!({})).await.is_err());
        let mut s = t.connect(json!({"name": "ann"})).await.unwrap();
        assert_eq!(s.join("room:1", json!({"refuse": true})).await, Err(json!({"reason": "refused"})));
        assert_eq!(s.join("room:1", json!({})).await, Ok(json!({"hello": "ann"})));
        let r = s.push("room:1", "ping", json!({"x": 1})).await;
        assert_eq!(s.assert_reply(&r, "ok").await, json!({"pong": {"x": 1}}));
        let r = s.push("room:1", "nope", json!({})).await;
        assert_eq!(s.assert_reply(&r, "error").await, json!({"reason": "unknown"}));
        s.push("room:1", "shout", json!({"t": "hi"})).await;
        assert_eq!(s.assert_broadcast("room:1", "shout").await, json!({"t": "hi"}));
        assert_eq!(s.assert_push("room:1", "shout").await, json!({"t": "hi"}));
        s.push("room:1", "tick", json!({})).await;
        assert_eq!(s.assert_push("room:1", "tock").await, json!({"n": 42}));
        assert_eq!(s.leave("room:1").await, "ok");
        s.assert_push("room:1", "phx_close").await;
    }

    #[tokio::test]
    async fn intercepts_and_typed_presence() {
        let t = ChannelTest::new(router());
        let mut ann = t.socket(crate::assigns(&User { name: "ann".into() }).unwrap()).await;
        let mut boss = t.socket(crate::assigns(&User { name: "boss".into() }).unwrap()).await;
        ann.join("room:2", json!({})).await.unwrap();
        boss.join("room:2", json!({})).await.unwrap();
        t.broadcast("room:2", "secret", json!({"s": 1})).await;
        assert_eq!(boss.assert_push("room:2", "secret").await, json!({"s": 1}));
        ann.refute_push("room:2", "secret", Duration::from_millis(50)).await;
        let r = ann.push("room:2", "typing", json!({})).await;
        ann.assert_reply(&r, "ok").await;
        let list = t.presence().list_as::<Meta>("room:2").await.unwrap();
        assert_eq!(list["ann"], vec![Meta { typing: true }]);
        assert_eq!(list["boss"], vec![Meta { typing: false }]);
        ann.close().await;
        boss.refute_broadcast("room:2", "shout", Duration::from_millis(10)).await;
    }
}
