//! The broker's own fan-out completion time (`phx_broker_fanout_completion_seconds`, issue
//! #17 goal 4): one observation per broadcast that had subscribers on this node, whatever
//! the number of subscribers and serializers, none for a broadcast nobody received; served
//! on `/metrics`. (Its own test binary: the metrics are process-wide.)

use std::time::Duration;

use broker::config::Config;
use broker::metrics::METRICS;
use broker::standalone::relay::RelayPolicy;
use broker::Payload;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn joined(addr: std::net::SocketAddr, vsn: &str, topic: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/socket/websocket?vsn={vsn}")).await.unwrap();
    let join = if vsn == "1.0.0" {
        serde_json::json!({"topic": topic, "event": "phx_join", "payload": {}, "ref": "1"})
    } else {
        serde_json::json!(["1", "1", topic, "phx_join", {}])
    };
    ws.send(Message::text(join.to_string())).await.unwrap();
    let reply = next_text(&mut ws).await;
    assert!(reply.contains("phx_reply") && reply.contains("\"ok\""), "{reply}");
    ws
}

async fn next_text(ws: &mut Ws) -> String {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a frame within 5 s")
}

/// Waits until the histogram has `n` observations (the last frame copy is released right
/// after its write, which races with the client's read).
async fn count_reaches(n: u64) {
    for _ in 0..200 {
        if METRICS.fanout_completion.count() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fan-out completions: {} observed, expected {n}", METRICS.fanout_completion.count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_completion_per_broadcast_with_subscribers() {
    let config = Config { listen: "127.0.0.1:0".into(), ..Default::default() };
    let router = RelayPolicy::router(&config).unwrap();
    let server = broker::Builder::new(config).router(router).bind().await.unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    tokio::spawn(server.run_until(std::future::pending()));

    // Two V2 subscribers and a V1 one: two encoded frames, one broadcast.
    let mut subs = vec![joined(addr, "2.0.0", "news:1").await, joined(addr, "2.0.0", "news:1").await, joined(addr, "1.0.0", "news:1").await];
    assert_eq!(METRICS.fanout_completion.count(), 0);

    handle.broadcast("nobody:here", "e", Payload::json(&serde_json::json!({"n": 0}))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(METRICS.fanout_completion.count(), 0, "a broadcast without subscribers is not a fan-out");

    for n in 1..=3u64 {
        handle.broadcast("news:1", "e", Payload::json(&serde_json::json!({"n": n}))).await.unwrap();
        for ws in &mut subs {
            let got = next_text(ws).await;
            assert!(got.contains(&format!("\"n\":{n}")), "{got}");
        }
        count_reaches(n).await;
    }
    // Stays at one per broadcast (no late observation per subscriber or per serializer).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(METRICS.fanout_completion.count(), 3);

    let mut http = TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    http.read_to_string(&mut text).await.unwrap();
    assert!(text.contains("phx_broker_fanout_completion_seconds_count 3"), "{text}");
    assert!(text.contains("phx_broker_fanout_completion_seconds_bucket{le=\"0.175\"}"), "fine buckets between 10 ms and 1 s");
}
