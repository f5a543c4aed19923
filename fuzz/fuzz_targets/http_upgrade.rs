//! Hostile HTTP at the socket endpoints: the WebSocket upgrade, LongPoll and the query string.
//!
//! Two layers per input:
//! 1. pure: the input as a query string (first line) and header lines (`Name: value`) fed to
//!    `protocol::params::parse_query` / `query_param`, `Serializer::negotiate`,
//!    `protocol::ws::valid_key` / `accept_key` and the origin policies (`OriginEntry::parse`,
//!    `CheckOrigin::allows`);
//! 2. end-to-end: one real broker on 127.0.0.1:0 (started once, in a lazily built tokio
//!    runtime) gets the input as an HTTP/1.x request on a fresh connection, either built from it
//!    (method, path and flags from the first byte) or the bytes unmodified. The property: the
//!    broker never panics (libfuzzer-sys turns a panic on any thread into an abort) and it still
//!    answers `GET /health` with 200 afterwards.
//!
//! Run (needs cargo-fuzz; on stable Rust set RUSTC_BOOTSTRAP=1), from `fuzz/`:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run http_upgrade corpus/http_upgrade seeds/http_upgrade -- -max_total_time=120`
//! (new corpus entries go to the first, git-ignored, directory; `seeds/` holds the committed seeds).
//!
//! Input layout: byte 0 picks the mode; the rest is split on `\n`: line 0 is the query string,
//! every further non-empty line is a header line.
//! - bits 6-7 == 0b11: raw mode, bytes 1.. are written to the server unmodified;
//! - bits 0-1: path (`/socket/websocket`, `/socket/longpoll`, `/`, `/metrics`);
//! - bits 2-3: method (GET, POST, OPTIONS, PUT);
//! - bit 4: HTTP/1.0 instead of HTTP/1.1;
//! - bit 5: add the headers phoenix.js sends for an upgrade (Host, Upgrade, Connection,
//!   Sec-WebSocket-Key, Sec-WebSocket-Version) unless the input already has them.
#![no_main]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use broker::protocol::origin::{CheckOrigin, OriginEntry, RequestSide};
use broker::protocol::params::{parse_query, query_param};
use broker::protocol::ws::{accept_key, valid_key};
use broker::protocol::Serializer;
use broker::standalone::relay::RelayPolicy;
use libfuzzer_sys::fuzz_target;

/// How long one fuzz request may wait for its answer (a request the server is still waiting
/// on, e.g. a cut-off head, ends here).
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(200);
/// The health check must answer within this (generous: ASan and two cores).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
const PATHS: [&str; 4] = ["/socket/websocket", "/socket/longpoll", "/", "/metrics"];
const METHODS: [&str; 4] = ["GET", "POST", "OPTIONS", "PUT"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut lines = rest.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let query = lines.next().unwrap_or(b"");
    let headers: Vec<&[u8]> = lines.filter(|l| !l.is_empty()).collect();

    pure(query, &headers);

    let server = server();
    let request = if mode >> 6 == 0b11 { rest.to_vec() } else { build_request(mode, query, &headers, server.port()) };
    exchange(server, &request);
    health(server);
});

// ---------------------------------------------------------------------------------------------
// Layer 1: the pure functions of the handshake.

fn pure(query: &[u8], headers: &[&[u8]]) {
    let q = String::from_utf8_lossy(query);
    match parse_query(&q, 32) {
        Ok(v) => assert!(v.is_object(), "parse_query must give an object, got {v}"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let vsn = query_param(&q, "vsn");
    let _ = Serializer::negotiate(vsn.as_deref());
    let _ = query_param(&q, "token");

    let header = |name: &str| {
        headers.iter().find_map(|l| {
            let l = std::str::from_utf8(l).ok()?;
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };

    // Every line as a key, a vsn, an origin list entry.
    let mut entries = vec![OriginEntry::parse("https://example.com").unwrap(), OriginEntry::parse("//*.example.com:4000").unwrap()];
    for line in headers {
        if ws_key_checked(line) {
            continue;
        }
        let l = String::from_utf8_lossy(line);
        let _ = Serializer::negotiate(Some(&l));
        if let Ok(e) = OriginEntry::parse(&l) {
            entries.push(e);
        }
    }
    if let Some(key) = header("sec-websocket-key") {
        ws_key_checked(key.as_bytes());
    }

    // The origin policies, with the request side derived from Host as http.rs does.
    let host_header = header("host").unwrap_or("");
    let (host, port) = match host_header.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or(4000)),
        None => (host_header, 80),
    };
    let side = RequestSide { scheme: "http", host, port };
    let policies = [
        CheckOrigin::Off,
        CheckOrigin::UrlHost(None),
        CheckOrigin::UrlHost(Some("localhost".into())),
        CheckOrigin::List(entries),
        CheckOrigin::Conn,
    ];
    let mut origins: Vec<&str> = headers.iter().filter_map(|l| std::str::from_utf8(l).ok()).collect();
    if let Some(o) = header("origin") {
        origins.push(o);
    }
    for p in &policies {
        assert!(p.allows(None, &side), "no Origin header is always allowed");
        for o in &origins {
            let allowed = p.allows(Some(o), &side);
            if matches!(p, CheckOrigin::Off | CheckOrigin::UrlHost(None)) {
                assert!(allowed, "{p:?} must allow every origin");
            }
        }
    }
}

/// `valid_key` on `key`; for a valid key, `accept_key` must be base64 of a SHA-1 (28 chars).
fn ws_key_checked(key: &[u8]) -> bool {
    let valid = valid_key(key);
    if valid {
        assert_eq!(key.len(), 24);
        let accept = accept_key(key);
        assert_eq!(accept.len(), 28, "accept key {accept:?}");
    }
    valid
}

// ---------------------------------------------------------------------------------------------
// Layer 2: a real broker.

struct Server {
    addr: SocketAddr,
    /// A keep-alive connection for the health checks (reopened when the server dropped it).
    health: Mutex<Option<TcpStream>>,
    _rt: tokio::runtime::Runtime,
}

impl Server {
    fn port(&self) -> u16 {
        self.addr.port()
    }
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
        let mut config = broker::Config::default();
        config.listen = "127.0.0.1:0".into();
        config.demo_page = false;
        config.limits.shards = 2;
        // A LongPoll session outlives its creating GET by 1.5-3 windows: a short window keeps
        // the thousands the fuzzer creates from piling up, and bounds a held GET. The session
        // rate limit (10/s per address) is off so that new_session is reached on every input,
        // not only the first hundred (a 429 short-cuts it).
        config.limits.longpoll_window_ms = 200;
        config.limits.longpoll_sessions_per_ip_per_s = 0;
        let router = RelayPolicy::router(&config).expect("relay router");
        let srv = rt.block_on(broker::Builder::new(config).router(router).bind()).expect("bind broker");
        let addr = srv.local_addr();
        rt.spawn(srv.run_until(std::future::pending()));
        Server { addr, health: Mutex::new(None), _rt: rt }
    })
}

fn build_request(mode: u8, query: &[u8], headers: &[&[u8]], port: u16) -> Vec<u8> {
    let path = PATHS[(mode & 3) as usize];
    let method = METHODS[((mode >> 2) & 3) as usize];
    let version = if mode & 0x10 != 0 { "HTTP/1.0" } else { "HTTP/1.1" };
    let mut req = Vec::with_capacity(256 + query.len() + headers.iter().map(|h| h.len() + 2).sum::<usize>());
    req.extend_from_slice(method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(path.as_bytes());
    if !query.is_empty() {
        req.push(b'?');
        // Only what cannot be in a request target is escaped: the query parser, not hyper's
        // request-line parser, is what this aims at (raw mode covers the latter).
        for &b in query {
            if (0x21..=0x7e).contains(&b) && b != b'#' {
                req.push(b);
            } else {
                req.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
        }
    }
    req.push(b' ');
    req.extend_from_slice(version.as_bytes());
    req.extend_from_slice(b"\r\n");
    let has = |name: &str| {
        headers.iter().any(|l| l.split(|b| *b == b':').next().is_some_and(|n| n.trim_ascii().eq_ignore_ascii_case(name.as_bytes())))
    };
    for line in headers {
        // The body is framed here (Content-Length: 0), not by the input: a fuzzed length would
        // only make the server wait for bytes that never come.
        let name = line.split(|b| *b == b':').next().unwrap_or(b"").trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding") {
            continue;
        }
        req.extend_from_slice(line);
        req.extend_from_slice(b"\r\n");
    }
    if mode & 0x20 != 0 {
        let host = format!("127.0.0.1:{port}");
        for (name, value) in [
            ("host", host.as_str()),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ] {
            if !has(name) {
                req.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
        }
    }
    if method == "POST" || method == "PUT" {
        req.extend_from_slice(b"content-length: 0\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req
}

/// Closes with RST (SO_LINGER 0): no TIME_WAIT, or a long run would exhaust ephemeral ports.
fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
    Ok(s)
}

/// Writes `request` on a fresh connection and reads until a complete response (head plus
/// Content-Length body), EOF or the timeout. Returns what was read.
fn exchange(server: &Server, request: &[u8]) -> Vec<u8> {
    let Ok(mut s) = connect(server.addr, HEALTH_TIMEOUT) else {
        panic!("cannot connect to the broker");
    };
    if s.write_all(request).is_err() {
        return Vec::new(); // the server closed early (e.g. a 400 before the whole head).
    }
    let resp = read_response(&mut s, Instant::now() + RESPONSE_TIMEOUT);
    if debug() {
        let first = |b: &[u8]| String::from_utf8_lossy(b.split(|c| *c == b'\n').next().unwrap_or(b"")).trim_end().to_owned();
        eprintln!("{:?} -> {:?}", first(request), first(&resp));
    }
    if let Some(status) = status_of(&resp) {
        assert!(status != 500, "500 for a request: {}", String::from_utf8_lossy(&resp));
    }
    resp
}

/// `HTTP_UPGRADE_FUZZ_DEBUG=1`: print each request line and status line (to check seeds).
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("HTTP_UPGRADE_FUZZ_DEBUG").is_some())
}

fn status_of(resp: &[u8]) -> Option<u16> {
    let line = resp.split(|b| *b == b'\n').next()?;
    let code = line.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

fn read_response(s: &mut TcpStream, deadline: Instant) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return buf;
        }
        match s.read(&mut chunk) {
            Ok(0) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return buf,
        }
    }
}

/// `GET /health` must still answer 200: first on the kept-alive connection, and if that one
/// was closed meanwhile, on a new one (only that failing is a finding).
fn health(server: &Server) {
    const REQ: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut slot = server.health.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = slot.as_mut() {
        if s.write_all(REQ).is_ok() && status_of(&read_response(s, Instant::now() + HEALTH_TIMEOUT)) == Some(200) {
            return;
        }
    }
    *slot = None;
    let mut s = connect(server.addr, HEALTH_TIMEOUT).expect("broker stopped accepting connections");
    s.write_all(REQ).expect("write /health");
    let resp = read_response(&mut s, Instant::now() + HEALTH_TIMEOUT);
    assert_eq!(status_of(&resp), Some(200), "/health after the input: {:?}", String::from_utf8_lossy(&resp));
    *slot = Some(s);
}
