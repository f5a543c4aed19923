//! The LongPoll transport (spec §6, §12.6).
//!
//! A session is a task owning a [`Socket`], addressed by an unguessable token. GETs take what
//! the session's [`Outbox`] holds (or wait up to `window_ms` for something); POSTs hand frames
//! to the session task one by one and wait for each to be handled. Every response is HTTP 200
//! with the logical status in the JSON body, except CORS preflights and 400s for bad requests.
//!
//! Binary frames cannot travel in LongPoll's JSON envelope; one queued for a session is
//! dropped and counted (`frames_dropped_total`), and the rest of the batch is delivered
//! (Phoenix would fail the whole GET with 500, spec §12.6).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::channel::StopReason;
use crate::http::{connect_info, request_side, Body};
use crate::metrics::METRICS;
use crate::outbox::{Outbox, OutboxLimits, Status};
use crate::params::{parse_query, query_param};
use crate::serializer::{decode_binary, decode_text, Frame, Opcode, Serializer};
use crate::server::ServerState;
use crate::socket::{ConnectError, Socket, SocketParams, Transport};

/// Lines of one POST that are processed (spec §6.4).
const MAX_POST_LINES: usize = 100;

/// Live sessions by token, and the per-address creation rate.
#[derive(Default)]
pub struct LongPoll {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    rate: Mutex<HashMap<IpAddr, Bucket>>,
}

/// A token bucket of session creations for one client address.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Addresses remembered by the rate limiter before idle (full) buckets are forgotten.
const RATE_TABLE_PRUNE: usize = 4096;

impl LongPoll {
    /// Takes one session creation from `ip`'s bucket (`per_s` refill, `burst` capacity);
    /// false when it is empty.
    fn allow_new_session(&self, ip: IpAddr, per_s: u32, burst: u32) -> bool {
        if per_s == 0 {
            return true;
        }
        let now = Instant::now();
        let (per_s, burst) = (per_s as f64, burst.max(1) as f64);
        let mut rate = self.rate.lock();
        if rate.len() >= RATE_TABLE_PRUNE {
            rate.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_s < burst);
        }
        let b = rate.entry(ip).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_s).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Session {
    token: String,
    outbox: Arc<Outbox>,
    dispatch: mpsc::Sender<Dispatch>,
    last_poll: Mutex<Instant>,
    alive: AtomicBool,
}

struct Dispatch {
    body: Bytes,
    binary: bool,
    /// Ok once handled; Err if the frame was undecodable (the session is gone).
    done: oneshot::Sender<Result<(), ()>>,
}

fn json_response(body: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(&body).expect("JSON"))));
    cors(&mut r);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn cors(r: &mut Response<Body>) {
    r.headers_mut().insert("access-control-allow-origin", HeaderValue::from_static("*"));
}

fn status(s: u16) -> Response<Body> {
    json_response(json!({ "status": s }))
}

fn bad_request(msg: &str) -> Response<Body> {
    let mut r = crate::http::text(StatusCode::BAD_REQUEST, msg);
    cors(&mut r);
    r
}

/// Handles a request to `P/longpoll`.
pub async fn handle(state: Arc<ServerState>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    match *req.method() {
        Method::OPTIONS => {
            let mut r = crate::http::text(StatusCode::OK, "");
            cors(&mut r);
            let h = r.headers_mut();
            if let Some(v) = req.headers().get("access-control-request-headers") {
                h.insert("access-control-allow-headers", v.clone());
            }
            h.insert("access-control-allow-methods", HeaderValue::from_static("get, post, options"));
            h.insert("access-control-max-age", HeaderValue::from_static("3600"));
            r
        }
        Method::GET => get(state, req, peer).await,
        Method::POST => post(state, req).await,
        _ => {
            let mut r = crate::http::text(StatusCode::BAD_REQUEST, "");
            cors(&mut r);
            r
        }
    }
}

/// The session token: the `x-phoenix-longpoll-token` header wins over the `token` param.
fn token_of(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get("x-phoenix-longpoll-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|t| !t.is_empty())
        .or_else(|| query_param(req.uri().query().unwrap_or(""), "token").filter(|t| !t.is_empty()))
}

fn find(state: &ServerState, token: Option<&str>) -> Option<Arc<Session>> {
    let token = token?;
    state.longpoll.sessions.lock().get(token).filter(|s| s.alive.load(Ordering::Acquire)).cloned()
}

async fn get(state: Arc<ServerState>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let side = request_side(&req, state.local_addr.port());
    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
    if !state.check_origin.allows(origin, &side) {
        return status(403);
    }
    match find(&state, token_of(&req).as_deref()) {
        Some(session) => poll(&state, session).await,
        None => new_session(state, req, peer).await,
    }
}

async fn poll(state: &ServerState, session: Arc<Session>) -> Response<Body> {
    *session.last_poll.lock() = Instant::now();
    let deadline = Instant::now() + state.config.limits.longpoll_window();
    let mut frames = VecDeque::new();
    loop {
        let ready = session.outbox.ready();
        tokio::pin!(ready);
        ready.as_mut().enable();
        let st = session.outbox.drain_into(&mut frames);
        let drained: usize = frames.iter().map(Frame::len).sum();
        let messages: Vec<Value> = frames
            .drain(..)
            .filter_map(|f: Frame| {
                if f.opcode() == Opcode::Text {
                    Some(Value::String(String::from_utf8_lossy(&f.body()).into_owned()))
                } else {
                    METRICS.frames_dropped.inc();
                    None
                }
            })
            .collect();
        session.outbox.release(drained);
        if !messages.is_empty() {
            return json_response(json!({"status": 200, "token": session.token, "messages": messages}));
        }
        if !matches!(st, Status::Open) {
            // The session ended (or its buffer overflowed, which ends it): the client must
            // start over.
            return json_response(json!({"status": 410}));
        }
        if tokio::time::timeout_at(deadline, ready).await.is_err() {
            return json_response(json!({"status": 204, "token": session.token, "messages": []}));
        }
    }
}

async fn new_session(state: Arc<ServerState>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    // Sessions hold no file descriptor: they have their own pool, so that a flood of them
    // never takes capacity from WebSocket connections, and each address may create only so
    // many per second. phoenix.js treats a non-JSON answer like a 500: it reconnects with
    // backoff.
    let limits = &state.config.limits;
    if !state.longpoll.allow_new_session(peer.ip(), limits.longpoll_sessions_per_ip_per_s, limits.longpoll_session_burst) {
        METRICS.longpoll_refused.inc();
        let mut r = crate::http::text(StatusCode::TOO_MANY_REQUESTS, "too many new longpoll sessions from this address; retry later");
        cors(&mut r);
        return r;
    }
    if state.longpoll.len() >= state.max_longpoll_sessions {
        METRICS.longpoll_refused.inc();
        let mut r = crate::http::text(StatusCode::SERVICE_UNAVAILABLE, "longpoll session capacity reached; retry later");
        cors(&mut r);
        return r;
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    let Some(serializer) = Serializer::negotiate(query_param(&query, "vsn").as_deref()) else {
        return status(403);
    };
    let auth_token = if state.config.auth_token {
        req.headers().get("x-phoenix-authtoken").and_then(|v| v.to_str().ok()).map(str::to_owned)
    } else {
        None
    };
    let params = match parse_query(&query, state.config.limits.max_param_depth) {
        Ok(p) => p,
        Err(e) => return bad_request(&e.to_string()),
    };
    let info = connect_info(&req, peer, Transport::LongPoll, auth_token);
    let assigns = match state.endpoint.handler.connect(&params, &info).await {
        Ok(a) => a,
        Err(ConnectError::Forbidden | ConnectError::Status(..)) => return status(403),
    };
    let outbox = Outbox::registered(OutboxLimits { max_frames: limits.longpoll_max_frames, max_bytes: limits.outbox_max_bytes });
    let conn_id = state.next_conn_id();
    let socket = Socket::start(
        state.endpoint.clone(),
        SocketParams { conn_id, serializer, transport: Transport::LongPoll, assigns, params, outbox: outbox.clone() },
    )
    .await;
    let token = new_token();
    let (tx, rx) = mpsc::channel(MAX_POST_LINES);
    let session = Arc::new(Session {
        token: token.clone(),
        outbox,
        dispatch: tx,
        last_poll: Mutex::new(Instant::now()),
        alive: AtomicBool::new(true),
    });
    state.longpoll.sessions.lock().insert(token.clone(), session.clone());
    METRICS.longpoll_sessions.inc();
    tokio::spawn(run_session(state.clone(), session, socket, rx));
    json_response(json!({"status": 410, "token": token, "messages": []}))
}

fn new_token() -> String {
    let bytes: [u8; 24] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn post(state: Arc<ServerState>, req: Request<Incoming>) -> Response<Body> {
    let side = request_side(&req, state.local_addr.port());
    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
    if !state.check_origin.allows(origin, &side) {
        return status(403);
    }
    let Some(session) = find(&state, token_of(&req).as_deref()) else {
        return status(410);
    };
    let ndjson = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim() == "application/x-ndjson"));
    let body = match Limited::new(req.into_body(), state.config.limits.longpoll_max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return bad_request("request body too large or unreadable"),
    };
    let mut frames = Vec::new();
    if ndjson {
        for line in body.split(|b| *b == b'\n').take(MAX_POST_LINES) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            if line[0] == b'[' {
                frames.push((body.slice_ref(line), false));
            } else {
                match base64::engine::general_purpose::STANDARD.decode(line) {
                    Ok(bin) => frames.push((Bytes::from(bin), true)),
                    Err(_) => return bad_request("invalid base64 line in ndjson body"),
                }
            }
        }
    } else {
        frames.push((body, false));
    }
    let window = state.config.limits.longpoll_window();
    for (body, binary) in frames {
        let (done, wait) = oneshot::channel();
        let deadline = Instant::now() + window;
        if tokio::time::timeout_at(deadline, session.dispatch.send(Dispatch { body, binary, done })).await.is_err() {
            return status(408);
        }
        match tokio::time::timeout_at(deadline, wait).await {
            Err(_) => return status(408),
            Ok(Ok(Ok(()))) => {}
            Ok(_) => return status(410),
        }
    }
    status(200)
}

async fn run_session(state: Arc<ServerState>, session: Arc<Session>, mut socket: Socket, mut rx: mpsc::Receiver<Dispatch>) {
    let serializer = socket.info().serializer;
    let inactive_after = state.config.limits.longpoll_window().mul_f64(1.5);
    let mut check = tokio::time::interval_at(Instant::now() + inactive_after, inactive_after);
    let mut shutdown = state.shutdown_rx();
    let reason = loop {
        tokio::select! {
            d = rx.recv() => {
                let Some(d) = d else { break StopReason::Shutdown("closed".into()) };
                let decoded = if d.binary { decode_binary(serializer, &d.body) } else { decode_text(serializer, &d.body) };
                match decoded {
                    Ok(msg) => {
                        // Acknowledged once handled: after handle_in returned, or for a join,
                        // once the join completed (spec §6.4).
                        let (handled, wait) = oneshot::channel();
                        socket.handle_acked(msg, Some(handled)).await;
                        let done = d.done;
                        tokio::spawn(async move {
                            let _ = wait.await;
                            let _ = done.send(Ok(()));
                        });
                    }
                    Err(_) => {
                        METRICS.decode_errors.inc();
                        let _ = d.done.send(Err(()));
                        break StopReason::Error("socket crashed".into());
                    }
                }
            }
            ctl = socket.next_ctl() => {
                if let Some(ctl) = ctl {
                    if socket.handle_ctl(ctl) {
                        break StopReason::Shutdown("disconnected".into());
                    }
                }
            }
            _ = check.tick() => {
                if session.last_poll.lock().elapsed() > inactive_after {
                    break StopReason::Shutdown("inactive".into());
                }
            }
            _ = shutdown.changed() => break StopReason::Shutdown("draining".into()),
            // Frames piled up between polls past the bound: the session ends and frees its
            // place (its next poll gets 410 and phoenix.js starts a new one).
            _ = session.outbox.overflowed() => break StopReason::Shutdown("closed".into()),
        }
    };
    session.alive.store(false, Ordering::Release);
    state.longpoll.sessions.lock().remove(&session.token);
    METRICS.longpoll_sessions.dec();
    socket.close(reason).await;
    // Wake a held GET so it answers at once.
    session.outbox.close();
}
