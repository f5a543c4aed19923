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

use std::collections::VecDeque;
use std::net::SocketAddr;
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

use super::connect::{self, text, Body, Refused};
use super::sessions::{Dispatch, Session};
use super::state::ServerState;
use crate::channel::{ShutdownReason, StopReason};
use crate::metrics::METRICS;
use crate::outbox::{Outbox, OutboxLimits, Status};
use crate::protocol::params::query_param;
use crate::protocol::{decode_binary, decode_text, Frame, Opcode};
use crate::protocol::Transport;
use crate::socket::{Socket, SocketParams};

/// Lines of one POST that are processed (spec §6.4).
const MAX_POST_LINES: usize = 100;

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
    with_cors(text(StatusCode::BAD_REQUEST, msg))
}

fn with_cors(mut r: Response<Body>) -> Response<Body> {
    cors(&mut r);
    r
}

/// A refused connect: `{"status":403}` as Phoenix answers, an HTTP status for the rest
/// (phoenix.js treats a non-JSON answer like a 500 and reconnects with backoff).
fn refused(r: Refused) -> Response<Body> {
    match r {
        Refused::Forbidden | Refused::Status(..) => status(403),
        Refused::BadRequest(msg) => bad_request(&msg),
        Refused::AtCapacity => with_cors(text(StatusCode::SERVICE_UNAVAILABLE, "longpoll session capacity reached; retry later")),
    }
}

/// Handles a request to `P/longpoll`.
pub async fn handle(state: Arc<ServerState>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    match *req.method() {
        Method::OPTIONS => {
            let mut r = with_cors(text(StatusCode::OK, ""));
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
        _ => with_cors(text(StatusCode::BAD_REQUEST, "")),
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

async fn get(state: Arc<ServerState>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if let Err(r) = connect::check_origin(&state, &req) {
        return refused(r);
    }
    match state.longpoll.find(token_of(&req).as_deref()) {
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
            METRICS.messages_out.add(messages.len() as u64);
            METRICS.bytes_out.add(messages.iter().filter_map(Value::as_str).map(str::len).sum::<usize>() as u64);
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
    // Each address may create only so many sessions per second (one keep-alive connection
    // could otherwise mint thousands), and sessions have their own pool (see `connect`).
    let limits = &state.config.limits;
    let rate = crate::rate::Rate { per_s: limits.longpoll_sessions_per_ip_per_s, burst: limits.longpoll_session_burst };
    if !state.longpoll.allow_new_session(peer.ip(), rate) {
        METRICS.longpoll_refused.inc();
        return with_cors(text(StatusCode::TOO_MANY_REQUESTS, "too many new longpoll sessions from this address; retry later"));
    }
    let auth_token = if state.config.auth_token || state.config.identity_on() {
        req.headers().get("x-phoenix-authtoken").and_then(|v| v.to_str().ok()).map(str::to_owned)
    } else {
        None
    };
    let c = match connect::connect(&state, &req, peer, Transport::LongPoll, auth_token).await {
        Ok(c) => c,
        Err(r) => {
            if r == Refused::AtCapacity {
                METRICS.longpoll_refused.inc();
            }
            return refused(r);
        }
    };
    let outbox = Outbox::registered(OutboxLimits { max_frames: limits.longpoll_max_frames, max_bytes: limits.outbox_max_bytes });
    let conn_id = state.next_conn_id();
    let socket = Socket::start(
        state.endpoint.clone(),
        SocketParams {
            conn_id,
            serializer: c.serializer,
            transport: Transport::LongPoll,
            assigns: c.assigns,
            params: c.params,
            outbox: outbox.clone(),
        },
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
        permit: c.permit,
    });
    state.longpoll.insert(session.clone());
    tokio::spawn(run_session(state.clone(), session, socket, rx));
    json_response(json!({"status": 410, "token": token, "messages": []}))
}

fn new_token() -> String {
    let bytes: [u8; 24] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn post(state: Arc<ServerState>, req: Request<Incoming>) -> Response<Body> {
    if let Err(r) = connect::check_origin(&state, &req) {
        return refused(r);
    }
    let Some(session) = state.longpoll.find(token_of(&req).as_deref()) else {
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
                let Some(d) = d else { break StopReason::Shutdown(ShutdownReason::Closed) };
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
                        break StopReason::Shutdown(ShutdownReason::Disconnected);
                    }
                }
            }
            _ = check.tick() => {
                if session.last_poll.lock().elapsed() > inactive_after {
                    break StopReason::Shutdown(ShutdownReason::Inactive);
                }
            }
            _ = shutdown.changed() => break StopReason::Shutdown(ShutdownReason::Draining),
            // Frames piled up between polls past the bound: the session ends and frees its
            // place (its next poll gets 410 and phoenix.js starts a new one).
            _ = session.outbox.overflowed() => break StopReason::Shutdown(ShutdownReason::Closed),
        }
    };
    session.alive.store(false, Ordering::Release);
    state.longpoll.remove(&session.token);
    socket.close(reason).await;
    // Wake a held GET so it answers at once.
    session.outbox.close();
}
