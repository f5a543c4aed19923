//! Two in-process broker nodes over a real Redis: what the library's `BrokerHandle` does across
//! nodes (checklist §11 item 51: `local_broadcast` stays on its node, `broadcast` does not).
//!
//! Redis: `REDIS_URL` if set (this test uses a channel prefix of its own), else a private
//! `redis-server` on a free port (`REDIS_SERVER_BIN`, default `redis-server` on PATH).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use broker::config::Config;
use broker::standalone::relay::RelayPolicy;
use broker::{BrokerHandle, Payload};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A private redis-server, killed on drop.
struct RedisGuard(Option<Child>);

impl Drop for RedisGuard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn redis() -> (String, RedisGuard) {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return (url, RedisGuard(None));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
    let child = Command::new(&bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e} (install redis-server, or set REDIS_URL)"));
    let guard = RedisGuard(Some(child));
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return (format!("redis://127.0.0.1:{port}"), guard);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not listen on {port}");
}

async fn node(name: &str, redis_url: &str, prefix: &str) -> (std::net::SocketAddr, BrokerHandle) {
    let mut config = Config::default();
    config.listen = "127.0.0.1:0".into();
    config.node_name = name.into();
    config.cluster.redis_url = Some(redis_url.into());
    config.cluster.channel_prefix = prefix.into();
    let router = RelayPolicy::router(&config).unwrap();
    let server = broker::Builder::new(config).router(router).bind().await.unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    tokio::spawn(server.run_until(std::future::pending()));
    (addr, handle)
}

async fn joined(addr: std::net::SocketAddr, topic: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/socket/websocket?vsn=2.0.0")).await.unwrap();
    ws.send(Message::text(serde_json::json!(["1", "1", topic, "phx_join", {}]).to_string())).await.unwrap();
    let reply = next_text(&mut ws, Duration::from_secs(5)).await.expect("join reply");
    assert_eq!(reply[3], "phx_reply", "{reply}");
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    ws
}

/// The next text frame as JSON, or `None` within `wait`.
async fn next_text(ws: &mut Ws, wait: Duration) -> Option<serde_json::Value> {
    tokio::time::timeout(wait, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_broadcast_stays_on_its_node_and_broadcast_reaches_every_node() {
    let (url, _redis) = redis().await;
    let prefix = format!("rt{}x{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let (addr_a, a) = node("a", &url, &prefix).await;
    let (addr_b, _b) = node("b", &url, &prefix).await;
    let mut on_a = joined(addr_a, "news:1").await;
    let mut on_b = joined(addr_b, "news:1").await;

    a.local_broadcast("news:1", "local", Payload::json(&serde_json::json!({"n": 1}))).await.unwrap();
    let got = next_text(&mut on_a, Duration::from_secs(5)).await.expect("node a's subscriber gets the local broadcast");
    assert_eq!(got[3], "local");
    assert!(next_text(&mut on_b, Duration::from_millis(500)).await.is_none(), "node b's subscriber must not get a local_broadcast of node a");

    a.broadcast("news:1", "everywhere", Payload::json(&serde_json::json!({"n": 2}))).await.unwrap();
    for ws in [&mut on_a, &mut on_b] {
        let got = next_text(ws, Duration::from_secs(5)).await.expect("broadcast reaches both nodes");
        assert_eq!((got[2].as_str(), got[3].as_str()), (Some("news:1"), Some("everywhere")), "{got}");
        assert_eq!(got[4]["n"], 2);
    }
}
