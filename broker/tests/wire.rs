//! Wire tests against an in-process broker on port 0, with a raw WebSocket client
//! (tokio-tungstenite): behaviour that the phoenix.js suite can't observe well.

use std::time::Duration;

use broker::config::Config;
use broker::standalone::relay::RelayPolicy;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

struct TestServer {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl TestServer {
    async fn start(mut config: Config) -> TestServer {
        config.listen = "127.0.0.1:0".into();
        let router = RelayPolicy::router(&config).unwrap();
        let server = broker::Builder::new(config).router(router).bind().await.unwrap();
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(server.run_until(async move {
            let _ = rx.await;
        }));
        TestServer { addr, stop: Some(tx), done }
    }

    async fn ws(&self, query: &str) -> Ws {
        let url = format!("ws://{}/socket/websocket?{query}", self.addr);
        tokio_tungstenite::connect_async(url).await.expect("connect").0
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.done).await;
    }
}

async fn send(ws: &mut Ws, v: serde_json::Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Reads text frames until one satisfies `pred`.
async fn recv_until(ws: &mut Ws, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if pred(&v) {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("timed out")
}

async fn join(ws: &mut Ws, topic: &str) {
    send(ws, serde_json::json!(["1", "1", topic, "phx_join", {}])).await;
    let reply = recv_until(ws, |v| v[3] == "phx_reply").await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");
}

/// Reads until the close frame; returns its code.
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(frame)) => return frame.map(|f| f.code),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("no close frame in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_with_1008_and_others_keep_receiving() {
    let mut config = Config::default();
    // Room for the fast readers to fall briefly behind on a loaded machine (debug build, two
    // shared cores); the slow one never reads, so it overflows all the same.
    config.limits.outbox_max_frames = 256;
    config.presence.topics.clear();
    let server = TestServer::start(config).await;

    // The slow client joins and then stops reading.
    let mut slow = server.ws("vsn=2.0.0").await;
    join(&mut slow, "fan:1").await;
    let mut fast = server.ws("vsn=2.0.0").await;
    join(&mut fast, "fan:1").await;
    let mut publisher = server.ws("vsn=2.0.0").await;
    join(&mut publisher, "fan:1").await;

    // ~39 MB of broadcasts: more than the kernel buffers plus 256 queued frames hold.
    let body = "x".repeat(64 * 1024);
    let n = 600;
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < n {
            match fast.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"big\"") => seen += 1,
                Some(Ok(_)) => {}
                other => panic!("fast client lost its connection: {other:?}"),
            }
        }
        seen
    });
    // The publisher reads everything it is sent (its own broadcasts too) while it publishes.
    let (mut publish, mut publisher_rx) = publisher.split();
    let drain_publisher = tokio::spawn(async move { while let Some(Ok(_)) = publisher_rx.next().await {} });
    for i in 0..n {
        let frame = serde_json::json!(["1", (i + 2).to_string(), "fan:1", "big", {"b": body}]);
        publish.send(Message::text(frame.to_string())).await.unwrap();
    }
    assert_eq!(tokio::time::timeout(Duration::from_secs(30), reader).await.unwrap().unwrap(), n);
    // 1008 if the write the client stalled could still finish within the grace; a client that
    // reads nothing at all is dropped without a close frame (it would never see one).
    let code = close_code(&mut slow).await;
    assert!(matches!(code, Some(CloseCode::Policy) | None), "slow consumer closed with {code:?}");
    assert!(broker::metrics::METRICS.slow_consumers.get() >= 1);
    drain_publisher.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_get_503() {
    let mut config = Config::default();
    config.limits.max_connections = 2;
    let server = TestServer::start(config).await;
    let _a = server.ws("vsn=2.0.0").await;
    let _b = server.ws("vsn=2.0.0").await;
    let url = format!("ws://{}/socket/websocket?vsn=2.0.0", server.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let body = String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("capacity"), "{body}");
        }
        other => panic!("expected 503, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_sockets_with_1012() {
    let server = TestServer::start(Config::default()).await;
    let mut ws = server.ws("vsn=2.0.0").await;
    join(&mut ws, "room:drain").await;
    let stop = tokio::spawn(server.shutdown());
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Restart));
    stop.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_get_on_websocket_path_is_400_with_reason_and_non_get_400() {
    let server = TestServer::start(Config::default()).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("upgrade"), "{out}");
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"POST /socket/websocket HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broadcast_is_encoded_once_for_many_subscribers() {
    let mut config = Config::default();
    config.presence.topics.clear();
    let server = TestServer::start(config).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut ws = server.ws("vsn=2.0.0").await;
        join(&mut ws, "enc:1").await;
        clients.push(ws);
    }
    let before = broker::metrics::METRICS.broadcast_encodes.get();
    send(&mut clients[0], serde_json::json!(["1", "9", "enc:1", "ev", {"n": 1}])).await;
    for ws in clients.iter_mut() {
        let v = recv_until(ws, |v| v[3] == "ev").await;
        assert_eq!(v, serde_json::json!([null, null, "enc:1", "ev", {"n": 1}]));
    }
    // Other tests in this binary may broadcast concurrently, so allow for them: what matters is
    // that 20 deliveries did not cost 20 encodes.
    let encodes = broker::metrics::METRICS.broadcast_encodes.get() - before;
    assert!(encodes < 5, "encodes: {encodes}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longpoll_sessions_have_their_own_pool() {
    let mut config = Config::default();
    config.limits.max_connections = 2;
    config.limits.longpoll_max_sessions = 1;
    let server = TestServer::start(config).await;
    let _ws = server.ws("vsn=2.0.0").await;
    let get = |addr: std::net::SocketAddr| async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /socket/longpoll?vsn=2.0.0 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        out
    };
    let first = get(server.addr).await;
    assert!(first.starts_with("HTTP/1.1 200") && first.contains("\"status\":410"), "{first}");
    let second = get(server.addr).await;
    assert!(second.starts_with("HTTP/1.1 503"), "{second}");
    assert!(second.contains("capacity"), "{second}");
    // The session took nothing from WebSocket capacity: a second socket still fits.
    let _ws2 = server.ws("vsn=2.0.0").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_from_the_builder_works_once_the_server_is_bound() {
    let mut config = Config::default();
    config.listen = "127.0.0.1:0".into();
    let router = RelayPolicy::router(&config).unwrap();
    let builder = broker::Builder::new(config).router(router);
    // Handed out before bind (to the app's HTTP handlers, say): refuses clearly until then.
    let handle = builder.handle();
    let early = handle.broadcast_json("room:h", "ev", &serde_json::json!({})).await;
    assert_eq!(early, Err(broker::PushFailed::NotStarted));
    let server = builder.bind().await.unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server.run_until(async move {
        let _ = stopped.await;
    }));
    let url = format!("ws://{addr}/socket/websocket?vsn=2.0.0");
    let mut ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
    join(&mut ws, "room:h").await;
    handle.broadcast_json("room:h", "ev", &serde_json::json!({"from": "outside"})).await.unwrap();
    let got = recv_until(&mut ws, |v| v[3] == "ev").await;
    assert_eq!(got[4]["from"], "outside");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
}
