//! Hostile input: each attack that once crashed the broker, disconnected bystanders or pinned
//! memory, run against the real `broker` binary on port 0 (a crash is then a dead process, and
//! RSS is the broker's own). After every attack a bystander on another topic must still get
//! its replies and broadcasts, the process must be alive, and its RSS within a bound. Every
//! loop is bounded in count and time.
//!
//! One file over ~600 lines: the attacks share one harness (a broker process, raw HTTP, a
//! minimal client that can stop reading, a bystander), and each attack is one test.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

// ---------------------------------------------------------------------------------------------
// A broker process

struct Broker {
    child: Child,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Broker {
    /// Starts the binary with `toml` as its config file, plus `args`.
    fn start(toml: &str, args: &[&str]) -> Broker {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hostile-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("broker.toml");
        std::fs::write(&cfg, toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
            .arg("--config")
            .arg(&cfg)
            .args(["--listen", "127.0.0.1:0", "--no-demo"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("broker binary");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {line:?}")).parse().unwrap();
        let admin = if args.contains(&"--admin-listen") {
            line.clear();
            out.read_line(&mut line).unwrap();
            Some(line.trim().strip_prefix("admin listening on ").expect("admin line").parse().unwrap())
        } else {
            None
        };
        Broker { child, addr, admin, _dir: TempDir(dir) }
    }

    fn assert_alive(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "the broker process died");
    }

    /// Resident set size in KB.
    fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    async fn metric(&self, name: &str) -> i64 {
        let addr = self.admin.unwrap_or(self.addr);
        let resp = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes()).await;
        resp.lines()
            .find_map(|l| l.strip_prefix(&format!("phx_broker_{name} ")))
            .unwrap_or_else(|| panic!("metric {name} missing"))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP and a minimal Phoenix-over-WebSocket client

/// Sends a raw request, returns everything the server answered within 3 s.
async fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = timeout(Duration::from_secs(3), async {
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    // Good enough for the small answers these tests read: the head and a body
                    // announced by Content-Length.
                    if let Some(text) = complete_response(&buf) {
                        let _ = text;
                        break;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn complete_response(buf: &[u8]) -> Option<()> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (body.len() >= len).then_some(())
}

fn status_of(resp: &str) -> u16 {
    resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn upgrade_request(query: &str) -> String {
    format!(
        "GET /socket/websocket?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    next_ref: u64,
}

/// A server frame: opcode and payload.
type ServerFrame = (u8, Vec<u8>);

impl Client {
    async fn connect(addr: SocketAddr, query: &str) -> Client {
        Client::connect_with(TcpStream::connect(addr).await.unwrap(), query).await
    }

    /// Connects with a tiny receive buffer: a client that does not read stalls the server's
    /// writes after a few KB instead of after the kernel's megabytes.
    async fn connect_small_window(addr: SocketAddr, query: &str) -> Client {
        let sock = TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        Client::connect_with(sock.connect(addr).await.unwrap(), query).await
    }

    async fn connect_with(mut s: TcpStream, query: &str) -> Client {
        s.write_all(upgrade_request(query).as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = timeout(Duration::from_secs(5), async {
            loop {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed during the handshake: {}", String::from_utf8_lossy(&buf));
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return i + 4;
                }
            }
        })
        .await
        .expect("handshake timed out");
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert_eq!(status_of(&head), 101, "{head}");
        Client { s, buf: buf[end..].to_vec(), next_ref: 1 }
    }

    async fn send_raw(&mut self, frame: &[u8]) {
        let _ = self.s.write_all(frame).await;
    }

    async fn send_text(&mut self, text: &str) {
        let frame = broker::protocol::ws::client_frame(1, true, text.as_bytes(), [7, 1, 3, 9]);
        self.send_raw(&frame).await;
    }

    /// Sends `[join_ref, ref, topic, event, payload]` and returns the ref.
    async fn push(&mut self, join_ref: &str, topic: &str, event: &str, payload: &str) -> String {
        let r = self.next_ref.to_string();
        self.next_ref += 1;
        let jr = if join_ref.is_empty() { "null".to_string() } else { format!("{join_ref:?}") };
        self.send_text(&format!("[{jr},{r:?},{topic:?},{event:?},{payload}]")).await;
        r
    }

    async fn read_frame(&mut self, within: Duration) -> Option<ServerFrame> {
        timeout(within, async {
            loop {
                if let Some((frame, used)) = parse_server_frame(&self.buf) {
                    self.buf.drain(..used);
                    return Some(frame);
                }
                let mut chunk = vec![0u8; 256 * 1024];
                match self.s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Reads until a text frame satisfies `pred` (skipping others); `None` on close/timeout.
    async fn until(&mut self, within: Duration, pred: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (op, data) = self.read_frame(left).await?;
            match op {
                1 => {
                    let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
                    if pred(&v) {
                        return Some(v);
                    }
                }
                8 => {
                    let code = (data.len() >= 2).then(|| u16::from_be_bytes([data[0], data[1]]));
                    eprintln!("connection closed by the server: {code:?} {}", String::from_utf8_lossy(data.get(2..).unwrap_or_default()));
                    return None;
                }
                _ => {}
            }
        }
    }

    async fn reply_to(&mut self, r: &str) -> serde_json::Value {
        let r = r.to_owned();
        self.until(Duration::from_secs(10), move |v| v[3] == "phx_reply" && v[1] == r.as_str())
            .await
            .expect("no reply")
    }

    /// Joins as phoenix.js does (the join's ref is its join_ref); returns the reply.
    async fn join(&mut self, topic: &str, payload: &str) -> serde_json::Value {
        let r = self.next_ref.to_string();
        self.next_ref += 1;
        self.send_text(&format!("[{r:?},{r:?},{topic:?},\"phx_join\",{payload}]")).await;
        self.reply_to(&r).await
    }

    /// Reads until the close frame; returns its code (`None` if the connection just ended).
    async fn close_code(&mut self) -> Option<u16> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.read_frame(left).await? {
                (8, data) if data.len() >= 2 => return Some(u16::from_be_bytes([data[0], data[1]])),
                (8, _) => return Some(1005),
                _ => {}
            }
        }
    }
}

/// Parses one unmasked server frame from the front of `buf`: ((opcode, payload), bytes used).
fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf[1] & 0x80 != 0 {
        at += 4; // the server never masks; tolerate it anyway
    }
    if buf.len() < at + len {
        return None;
    }
    Some(((opcode, buf[at..at + len].to_vec()), at + len))
}

/// A well-behaved user on its own topic: after each attack it must still get a heartbeat
/// reply and its own relayed message, promptly.
struct Bystander {
    c: Client,
    join_ref: String,
    sent: u32,
}

impl Bystander {
    async fn start(addr: SocketAddr) -> Bystander {
        let mut c = Client::connect(addr, "vsn=2.0.0&user_id=bystander").await;
        let reply = c.join("bystander:1", "{}").await;
        assert_eq!(reply[4]["status"], "ok", "{reply}");
        let join_ref = reply[1].as_str().unwrap().to_owned();
        Bystander { c, join_ref, sent: 0 }
    }

    async fn check(&mut self, after: &str) {
        let started = Instant::now();
        let r = self.c.push("", "phoenix", "heartbeat", "{}").await;
        let hb = self.c.reply_to(&r).await;
        assert_eq!(hb[4]["status"], "ok", "after {after}: {hb}");
        self.sent += 1;
        let n = self.sent;
        let jr = self.join_ref.clone();
        self.c.push(&jr, "bystander:1", "note", &format!("{{\"n\":{n}}}")).await;
        let got = self.c.until(Duration::from_secs(10), move |v| v[3] == "note" && v[4]["n"] == n).await;
        assert!(got.is_some(), "after {after}: the bystander's broadcast did not arrive");
        assert!(started.elapsed() < Duration::from_secs(5), "after {after}: bystander took {:?}", started.elapsed());
    }
}

const DEFAULTS: &str = "";

// ---------------------------------------------------------------------------------------------
// 1. Attacker-shaped nesting

#[tokio::test]
async fn deeply_nested_params_and_payloads_are_refused_and_the_server_keeps_serving() {
    let mut b = Broker::start(DEFAULTS, &[]);
    let mut by = Bystander::start(b.addr).await;
    for path in ["/socket/websocket", "/socket/longpoll"] {
        // 20,000 levels fit in a request head (60 KB): the parser refuses them with a 400.
        let q = format!("a{}=1&vsn=2.0.0", "[a]".repeat(20_000));
        let resp = http(b.addr, upgrade_request(&q).replace("/socket/websocket", path).as_bytes()).await;
        assert_eq!(status_of(&resp), 400, "{path}: {}", &resp[..resp.len().min(200)]);
        assert!(resp.contains("nested deeper than"), "{resp}");
        // 100,000 levels (300 KB) do not even fit in a request head: refused before parsing.
        let q = format!("a{}=1", "[a]".repeat(100_000));
        let resp = http(b.addr, upgrade_request(&q).replace("/socket/websocket", path).as_bytes()).await;
        let status = status_of(&resp);
        assert!(resp.is_empty() || (400..500).contains(&status), "{path}: {status}");
        b.assert_alive();
        by.check("deep params").await;
    }
    // Messages whose payload nests 100,000 arrays deep, as a join and as an event: refused
    // (the JSON parser's depth limit: close 1011) or carried as opaque JSON, never a crash.
    let mut c = Client::connect(b.addr, "vsn=2.0.0").await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    c.send_text(&format!("[\"1\",\"1\",\"room:1\",\"phx_join\",{deep}]")).await;
    c.send_text(&format!("[\"1\",\"2\",\"room:1\",\"presence:update\",{deep}]")).await;
    let _ = c.until(Duration::from_secs(10), |v| v[1] == "2").await;
    b.assert_alive();
    by.check("deep payload").await;
}

// ---------------------------------------------------------------------------------------------
// 2. One big message

#[tokio::test]
async fn a_big_relayed_message_reaches_every_subscriber_without_disconnects() {
    let mut b = Broker::start(DEFAULTS, &[]);
    let mut by = Bystander::start(b.addr).await;
    let mut subs = Vec::new();
    for _ in 0..20 {
        let mut c = Client::connect(b.addr, "vsn=2.0.0").await;
        assert_eq!(c.join("big:1", "{}").await[4]["status"], "ok");
        subs.push(c);
    }
    let mut sender = Client::connect(b.addr, "vsn=2.0.0").await;
    let join = sender.join("big:1", "{}").await;
    let jr = join[1].as_str().unwrap().to_owned();
    // 8.5 MB: over the old 8 MiB outbox bound, under max_frame_size (10 MB).
    let body = "x".repeat(8_500_000);
    let r = sender.push(&jr, "big:1", "blob", &format!("{{\"body\":\"{body}\"}}")).await;
    let reply = sender.reply_to(&r).await;
    assert_eq!(reply[4]["status"], "ok", "{}", &reply.to_string()[..200.min(reply.to_string().len())]);
    for (i, c) in subs.iter_mut().enumerate() {
        let (op, data) = loop {
            let f = c.read_frame(Duration::from_secs(30)).await.unwrap_or_else(|| panic!("subscriber {i} was disconnected"));
            if f.1.len() > 8_000_000 || f.0 == 8 {
                break f;
            }
        };
        assert_eq!(op, 1, "subscriber {i} got a close frame instead");
        assert!(data.len() > 8_500_000);
        let r = c.push("", "phoenix", "heartbeat", "{}").await;
        assert_eq!(c.reply_to(&r).await[4]["status"], "ok");
    }
    b.assert_alive();
    by.check("big relay").await;
}

#[tokio::test]
async fn a_broadcast_no_outbox_could_hold_is_refused_at_the_sender() {
    // The library path: a backend broadcast larger than outbox_max_bytes is an error for the
    // caller, not a fan-out of disconnects.
    let mut config = broker::Config::default();
    config.listen = "127.0.0.1:0".into();
    let max = config.limits.outbox_max_bytes;
    let server = broker::Builder::new(config).bind().await.unwrap();
    let handle = server.handle();
    let big = broker::Payload::Json(format!("{{\"b\":\"{}\"}}", "x".repeat(max)).into());
    assert_eq!(handle.broadcast("t:1", "e", big).await, Err(broker::channel::PushFailed::TooLarge));
    let small = broker::Payload::Json(bytes::Bytes::from_static(b"{\"b\":1}"));
    assert_eq!(handle.broadcast("t:1", "e", small).await, Ok(()));
}

// ---------------------------------------------------------------------------------------------
// 3. LongPoll floods

#[tokio::test]
async fn a_longpoll_session_flood_does_not_lock_out_websocket_users() {
    let mut b = Broker::start("[limits]\nmax_connections = 40\n", &[]);
    let mut by = Bystander::start(b.addr).await;
    // One keep-alive connection minting token-less sessions as fast as it can (bounded).
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let (mut created, mut limited) = (0, 0);
    let started = Instant::now();
    for _ in 0..2_000 {
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
        s.write_all(b"GET /socket/longpoll?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while complete_response(&buf).is_none() {
            let n = timeout(Duration::from_secs(5), s.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        match status_of(&String::from_utf8_lossy(&buf)) {
            200 => created += 1,
            429 => limited += 1,
            503 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(limited > 0, "the per-address rate limit never applied ({created} sessions created)");
    assert!(created <= 100 + 40, "{created} sessions from one address");
    // WebSocket users still get in: sessions have their own pool.
    let mut sockets = Vec::new();
    for _ in 0..30 {
        sockets.push(Client::connect(b.addr, "vsn=2.0.0").await);
    }
    // Many addresses (127.0.0.x): the session pool (40 = max_connections) fills, then 503.
    let mut refused = 0;
    for i in 2..60u8 {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::from(([127, 0, 0, i], 0))).unwrap();
        let mut s = sock.connect(b.addr).await.unwrap();
        s.write_all(b"GET /socket/longpoll?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        let _ = timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
        if status_of(&out) == 503 {
            refused += 1;
        }
    }
    assert!(refused > 0, "the session pool was never full");
    drop(sockets);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut more = Vec::new();
    for _ in 0..30 {
        more.push(Client::connect(b.addr, "vsn=2.0.0").await);
    }
    b.assert_alive();
    by.check("longpoll flood").await;
}

#[tokio::test]
async fn an_overflowed_longpoll_session_ends_and_frees_its_place() {
    let mut b = Broker::start("[limits]\nlongpoll_max_frames = 8\n", &[]);
    // New session, then join through a POST.
    let resp = http(b.addr, b"GET /socket/longpoll?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let body = resp.split_once("\r\n\r\n").unwrap().1;
    let token = serde_json::from_str::<serde_json::Value>(body).unwrap()["token"].as_str().unwrap().to_owned();
    let join = r#"["1","1","flood:1","phx_join",{}]"#;
    let post = format!(
        "POST /socket/longpoll?vsn=2.0.0&token={token} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{join}",
        join.len()
    );
    assert!(http(b.addr, post.as_bytes()).await.contains("\"status\":200"));
    assert_eq!(b.metric("longpoll_sessions").await, 1);
    // More broadcasts than the session may buffer between polls.
    let mut ws = Client::connect(b.addr, "vsn=2.0.0").await;
    let j = ws.join("flood:1", "{}").await;
    let jr = j[1].as_str().unwrap().to_owned();
    for i in 0..20 {
        ws.push(&jr, "flood:1", "m", &format!("{{\"i\":{i}}}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.metric("longpoll_sessions").await != 0 {
        assert!(Instant::now() < deadline, "the overflowed session is still alive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let poll = format!("GET /socket/longpoll?vsn=2.0.0&token={token} HTTP/1.1\r\nHost: x\r\n\r\n");
    let resp = http(b.addr, poll.as_bytes()).await;
    assert!(resp.contains("\"status\":410"), "{resp}");
    b.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// 4. Memory amplification

#[tokio::test]
async fn oversized_topics_events_refs_and_presence_keys_are_refused() {
    let mut b = Broker::start(DEFAULTS, &[]);
    let mut by = Bystander::start(b.addr).await;
    let mut c = Client::connect(b.addr, "vsn=2.0.0").await;
    let topic = format!("t:{}", "x".repeat(1 << 20));
    let r = c.push("", &topic, "phx_join", "{}").await;
    let reply = c.reply_to(&r).await;
    assert_eq!(reply[4]["response"]["reason"], "topic too long");
    let j = c.join("ok:1", "{}").await;
    let jr = j[1].as_str().unwrap().to_owned();
    let r = c.push(&jr, "ok:1", &"e".repeat(2000), "{}").await;
    assert_eq!(c.reply_to(&r).await[4]["response"]["reason"], "event too long");
    c.send_text(&format!("[null,{:?},\"ok:1\",\"e\",{{}}]", "r".repeat(1000))).await;
    let got = c.until(Duration::from_secs(5), |v| v[3] == "phx_reply").await.unwrap();
    assert_eq!(got[4]["response"]["reason"], "ref too long");
    // A 60 KB presence key (the user_id param) on a presence topic.
    let mut p = Client::connect(b.addr, &format!("vsn=2.0.0&user_id={}", "k".repeat(60_000))).await;
    let reply = p.join("room:1", "{}").await;
    assert_eq!(reply[4]["status"], "error");
    assert_eq!(reply[4]["response"]["reason"], "presence key too large");
    b.assert_alive();
    by.check("oversized fields").await;
    // 200 joins of 1 MB topics: refused, and nothing of them stays.
    let before = b.rss_kb();
    for _ in 0..200 {
        let r = c.push("", &topic, "phx_join", "{}").await;
        c.reply_to(&r).await;
    }
    let grown = b.rss_kb().saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KB");
    by.check("1 MB topics").await;
}

#[tokio::test]
async fn a_topics_presence_state_is_bounded() {
    let toml = "[limits]\npresence_max_state_bytes = 65536\n";
    let mut b = Broker::start(toml, &[]);
    let mut by = Bystander::start(b.addr).await;
    let mut clients = Vec::new();
    let mut errors = 0;
    for i in 0..100 {
        let key = format!("{i:04}{}", "k".repeat(900));
        let mut c = Client::connect(b.addr, &format!("vsn=2.0.0&user_id={key}")).await;
        assert_eq!(c.join("room:full", "{}").await[4]["status"], "ok");
        // after_join: either listed, or told why not.
        let ev = c.until(Duration::from_secs(5), |v| v[3] == "presence_state" || v[3] == "presence_error").await.unwrap();
        if ev[3] == "presence_error" {
            assert_eq!(ev[4]["reason"], "presence state of this topic is full");
            errors += 1;
        } else {
            let state_len = ev[4].to_string().len();
            assert!(state_len <= 65536 + 2048, "presence_state is {state_len} bytes");
        }
        clients.push(c);
    }
    assert!(errors >= 20, "only {errors} of 100 tracks were refused");
    b.assert_alive();
    by.check("presence fill").await;
}

#[tokio::test]
async fn the_outbound_budget_closes_stalled_consumers_and_spares_fast_ones() {
    let toml = "[limits]\nmax_frame_size = 1000000\noutbox_max_bytes = 12582912\noutbound_budget_bytes = 16777216\noutbound_stall_ms = 300\n";
    let mut b = Broker::start(toml, &[]);
    let mut by = Bystander::start(b.addr).await;
    let base_rss = b.rss_kb();
    // Eight subscribers that never read, one that reads everything.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut c = Client::connect_small_window(b.addr, "vsn=2.0.0").await;
        assert_eq!(c.join("wide:1", "{}").await[4]["status"], "ok");
        stalled.push(c);
    }
    let mut fast = Client::connect(b.addr, "vsn=2.0.0").await;
    assert_eq!(fast.join("wide:1", "{}").await[4]["status"], "ok");
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < 24 {
            match fast.read_frame(Duration::from_secs(30)).await {
                Some((1, d)) if d.len() > 400_000 => got += 1,
                Some((8, _)) | None => return got,
                _ => {}
            }
        }
        got
    });
    let mut publisher = Client::connect(b.addr, "vsn=2.0.0").await;
    let j = publisher.join("wide:1", "{}").await;
    let jr = j[1].as_str().unwrap().to_owned();
    let body = "y".repeat(500_000);
    // 24 x 500 KB = 12 MB to each subscriber: past the kernel's buffers for the stalled ones
    // (each stays under its own 12 MiB bound), 8 of them together past the 16 MiB budget.
    for _ in 0..24 {
        let r = publisher.push(&jr, "wide:1", "blob", &format!("{{\"b\":\"{body}\"}}")).await;
        assert_eq!(publisher.reply_to(&r).await[4]["status"], "ok");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.metric("budget_closes_total").await == 0 {
        assert!(Instant::now() < deadline, "the budget never closed a stalled consumer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reader.await.unwrap(), 24, "the fast reader lost messages or was closed");
    // The closed consumers' bytes are given back once their writers stop (within a second's
    // grace); the gauge is refreshed every 100 ms.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let used = b.metric("outbound_queued_bytes").await;
        if used <= 16 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "{used} bytes still queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grown = b.rss_kb().saturating_sub(base_rss);
    assert!(grown < 200 * 1024, "RSS grew by {grown} KB");
    b.assert_alive();
    by.check("budget").await;
    drop(stalled);
}

// ---------------------------------------------------------------------------------------------
// 5. Protocol details

#[tokio::test]
async fn invalid_close_codes_are_answered_with_1002() {
    let mut b = Broker::start(DEFAULTS, &[]);
    for (sent, expected) in [
        (Some(999), 1002),
        (Some(1004), 1002),
        (Some(1005), 1002),
        (Some(1006), 1002),
        (Some(1015), 1002),
        (Some(2999), 1002),
        (Some(5000), 1002),
        (Some(1000), 1000),
        (Some(1001), 1001),
        (Some(4000), 4000),
        (None, 1000),
    ] {
        let mut c = Client::connect(b.addr, "vsn=2.0.0").await;
        let body = sent.map(|c: u16| c.to_be_bytes().to_vec()).unwrap_or_default();
        c.send_raw(&broker::protocol::ws::client_frame(8, true, &body, [1, 2, 3, 4])).await;
        assert_eq!(c.close_code().await, Some(expected), "client sent {sent:?}");
    }
    b.assert_alive();
}

#[tokio::test]
async fn malformed_upgrades_get_400_and_prerelease_vsn_as_phoenix() {
    let mut b = Broker::start(DEFAULTS, &[]);
    let ok = upgrade_request("vsn=2.0.0");
    let cases = [
        ("no key", ok.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""), 400),
        ("short key", ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "abc"), 400),
        ("non-base64 key", ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ!!"), 400),
        ("no host", ok.replace("Host: 127.0.0.1\r\n", ""), 400),
        ("HTTP/1.0", ok.replace("HTTP/1.1", "HTTP/1.0"), 400),
        ("vsn 2.0.0-rc.1", upgrade_request("vsn=2.0.0-rc.1"), 403),
        ("vsn 2.1.0-dev", upgrade_request("vsn=2.1.0-dev"), 403),
        ("vsn 2.0.1-rc.1", upgrade_request("vsn=2.0.1-rc.1"), 101),
        ("valid", ok.clone(), 101),
    ];
    for (name, req, want) in cases {
        let resp = http(b.addr, req.as_bytes()).await;
        assert_eq!(status_of(&resp), want, "{name}: {resp}");
    }
    b.assert_alive();
}

#[tokio::test]
async fn malformed_frames_close_with_their_codes_and_hurt_no_one() {
    let mut b = Broker::start(DEFAULTS, &[]);
    let mut by = Bystander::start(b.addr).await;
    let m = [9, 9, 9, 9];
    let mut too_big = broker::protocol::ws::client_frame(1, true, b"", m);
    too_big[1] = 0x80 | 127;
    too_big.splice(2..2, (20_000_000u64).to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("reserved bit", broker::protocol::ws::client_frame(0x41, true, b"x", m), 1002),
        ("unknown opcode", broker::protocol::ws::client_frame(3, true, b"", m), 1002),
        ("fragmented control", broker::protocol::ws::client_frame(9, false, b"", m), 1002),
        ("bad utf-8", broker::protocol::ws::client_frame(1, true, &[0xff, 0xfe], m), 1007),
        ("too big", too_big, 1009),
        ("not json", broker::protocol::ws::client_frame(1, true, b"{nope", m), 1011),
        ("wrong shape", broker::protocol::ws::client_frame(1, true, b"[1,2]", m), 1011),
        ("binary unknown kind", broker::protocol::ws::client_frame(2, true, &[9, 0, 0], m), 1011),
    ];
    for (name, frame, code) in cases {
        let mut c = Client::connect(b.addr, "vsn=2.0.0").await;
        c.send_raw(&frame).await;
        assert_eq!(c.close_code().await, Some(code), "{name}");
    }
    b.assert_alive();
    by.check("malformed frames").await;
}

// ---------------------------------------------------------------------------------------------
// 6. The admin address

#[tokio::test]
async fn metrics_and_health_can_live_on_a_separate_admin_address() {
    let b = Broker::start(DEFAULTS, &["--admin-listen", "127.0.0.1:0"]);
    let admin = b.admin.unwrap();
    for path in ["/metrics", "/health"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status_of(&http(b.addr, req.as_bytes()).await), 404, "{path} on the public address");
        assert_eq!(status_of(&http(admin, req.as_bytes()).await), 200, "{path} on the admin address");
    }
    for path in ["/healthz", "/readyz"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status_of(&http(admin, req.as_bytes()).await), 200, "{path}");
    }
    // Draining: /readyz turns 503 while connections close (a client that does not answer the
    // close keeps its connection for the linger), /healthz stays 200.
    let _held = Client::connect(b.addr, "vsn=2.0.0").await;
    Command::new("kill").arg("-TERM").arg(b.child.id().to_string()).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let ready = status_of(&http(admin, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await);
        if ready == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never said draining (last {ready})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status_of(&http(admin, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await), 200);
    let plain = Broker::start(DEFAULTS, &[]);
    let resp = http(plain.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_of(&resp), 200, "without admin_listen, /health stays on the public address");
    let _ = std::io::stdout().flush();
}
