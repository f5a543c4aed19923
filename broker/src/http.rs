//! HTTP: the socket endpoints (WebSocket handshake, LongPoll), the demo page and `/metrics`.
//!
//! WebSocket handshake order (spec §2.5): parse query → origin check → auth-token extraction
//! → subprotocol check → vsn negotiation → app `connect` → upgrade validation → 101. Every
//! refusal is an HTTP status with a short text body (403 stays empty, as in Phoenix).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::metrics::METRICS;
use crate::origin::RequestSide;
use crate::outbox::{Outbox, OutboxLimits};
use crate::params::{parse_query, query_param};
use crate::serializer::Serializer;
use crate::server::ServerState;
use crate::socket::{ConnectError, ConnectInfo, Socket, SocketParams, Transport};

pub type Body = Full<Bytes>;

/// The demo page (a chat room with presence, using phoenix.js) and the phoenix.js it loads.
const DEMO_HTML: &str = include_str!("../assets/index.html");
const PHOENIX_JS: &str = include_str!("../assets/phoenix.min.js");

pub(crate) fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    if !body.is_empty() {
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    r
}

fn empty(status: StatusCode) -> Response<Body> {
    text(status, "")
}

/// Routes one HTTP request.
pub async fn handle(state: Arc<ServerState>, req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, Infallible> {
    // RFC 9112 §3.2: an HTTP/1.1 request without a Host header is a 400.
    if req.version() == hyper::Version::HTTP_11 && !req.headers().contains_key(header::HOST) {
        return Ok(text(StatusCode::BAD_REQUEST, "missing host header"));
    }
    let path = req.uri().path();
    let base = state.config.socket_path.as_str();
    let rest = path.strip_prefix(base).unwrap_or("");
    let resp = if path.starts_with(base) && rest == "/websocket" {
        websocket(state, req, peer).await
    } else if path.starts_with(base) && rest == "/longpoll" && state.config.longpoll {
        crate::longpoll::handle(state, req, peer).await
    } else {
        match (req.method(), path) {
            (&Method::GET, "/") if state.config.demo_page => {
                let mut r = text(StatusCode::OK, DEMO_HTML);
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
                r
            }
            (&Method::GET, "/phoenix.min.js") if state.config.demo_page => {
                let mut r = text(StatusCode::OK, PHOENIX_JS);
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
                r
            }
            (&Method::GET, "/metrics" | "/health") if state.config.admin_listen.is_none() => admin_route(&req),
            _ => text(StatusCode::NOT_FOUND, "not found"),
        }
    };
    Ok(resp)
}

/// `/metrics` and `/health`: on the public address, or only on `admin_listen` when it is set.
fn admin_route(req: &Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => text(StatusCode::OK, &METRICS.render()),
        (&Method::GET, "/health") => text(StatusCode::OK, "ok"),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Routes one request on the admin address.
pub async fn handle_admin(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(admin_route(&req))
}

fn header_str<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The request's own scheme/host/port (for `check_origin = "conn"`).
pub(crate) fn request_side<'a>(req: &'a Request<Incoming>, local: u16) -> RequestSide<'a> {
    let host_header = header_str(req, "host").unwrap_or("");
    let (host, port) = match host_header.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or(local)),
        None => (host_header, 80),
    };
    RequestSide { scheme: "http", host, port }
}

pub(crate) fn connect_info(req: &Request<Incoming>, peer: SocketAddr, transport: Transport, auth_token: Option<String>) -> ConnectInfo {
    ConnectInfo {
        peer: Some(peer),
        uri: req.uri().to_string(),
        user_agent: header_str(req, "user-agent").map(str::to_owned),
        x_headers: req
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-"))
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        auth_token,
        transport,
    }
}

const TOKEN_PREFIX: &str = "base64url.bearer.phx.";

async fn websocket(state: Arc<ServerState>, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if req.method() != Method::GET {
        return empty(StatusCode::BAD_REQUEST);
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    let side = request_side(&req, state.local_addr.port());
    if !state.check_origin.allows(header_str(&req, "origin"), &side) {
        return empty(StatusCode::FORBIDDEN);
    }

    // Auth token side channel and subprotocol negotiation (spec §2.4).
    let mut offered: Option<Vec<String>> = header_str(&req, "sec-websocket-protocol")
        .map(|h| h.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect());
    let mut auth_token = None;
    if state.config.auth_token {
        if let Some(list) = &mut offered {
            let tokens: Vec<usize> = list.iter().enumerate().filter(|(_, p)| p.starts_with(TOKEN_PREFIX)).map(|(i, _)| i).collect();
            if let [i] = tokens[..] {
                let encoded = list.remove(i);
                let raw = encoded[TOKEN_PREFIX.len()..].trim_end_matches('=');
                match base64::engine::general_purpose::STANDARD_NO_PAD.decode(raw) {
                    Ok(bytes) => auth_token = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    Err(_) => return text(StatusCode::BAD_REQUEST, "invalid auth token encoding"),
                }
            }
        }
    }
    let mut chosen_protocol = None;
    let allowed: Option<Vec<&str>> = (state.config.auth_token || !state.config.subprotocols.is_empty())
        .then(|| std::iter::once("phoenix").chain(state.config.subprotocols.iter().map(String::as_str)).collect());
    if let (Some(list), Some(allowed)) = (&offered, &allowed) {
        match allowed.iter().find(|a| list.iter().any(|o| o == *a)) {
            Some(p) => chosen_protocol = Some(p.to_string()),
            None if list.is_empty() => {}
            None => return empty(StatusCode::FORBIDDEN),
        }
    }

    let Some(serializer) = Serializer::negotiate(query_param(&query, "vsn").as_deref()) else {
        return empty(StatusCode::FORBIDDEN);
    };
    let params = match parse_query(&query, state.config.limits.max_param_depth) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let info = connect_info(&req, peer, Transport::WebSocket, auth_token);
    let assigns = match state.endpoint.handler.connect(&params, &info).await {
        Ok(a) => a,
        Err(ConnectError::Forbidden) => return empty(StatusCode::FORBIDDEN),
        Err(ConnectError::Status(code, body)) => {
            return text(StatusCode::from_u16(code).unwrap_or(StatusCode::FORBIDDEN), &body);
        }
    };

    // Upgrade validation (after connect, as in Phoenix: gotcha 3).
    if req.version() != hyper::Version::HTTP_11 {
        return text(StatusCode::BAD_REQUEST, "websocket upgrade requires HTTP/1.1");
    }
    let has_token = |name: &str, token: &str| {
        header_str(&req, name).is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("connection", "upgrade") {
        return text(StatusCode::BAD_REQUEST, "'connection' header must contain 'upgrade'");
    }
    if !has_token("upgrade", "websocket") {
        return text(StatusCode::BAD_REQUEST, "'upgrade' header must contain 'websocket'");
    }
    if header_str(&req, "sec-websocket-version") != Some("13") {
        return text(StatusCode::BAD_REQUEST, "'sec-websocket-version' header must be '13'");
    }
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()) else {
        return text(StatusCode::BAD_REQUEST, "'sec-websocket-key' header is missing");
    };
    if !crate::ws::valid_key(&key) {
        return text(StatusCode::BAD_REQUEST, "'sec-websocket-key' header must be base64 of 16 bytes");
    }
    // Reserve a place first, then check: two upgrades at the edge cannot both pass.
    let Some(guard) = ConnGuard::reserve(&state) else {
        METRICS.refused_at_capacity.inc();
        return text(StatusCode::SERVICE_UNAVAILABLE, "server at connection capacity; retry later");
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    let conn_id = state.next_conn_id();
    let limits = state.config.limits.clone();
    let outbox = Outbox::registered(OutboxLimits { max_frames: limits.outbox_max_frames, max_bytes: limits.outbox_max_bytes });
    let endpoint = state.endpoint.clone();
    let shutdown = state.shutdown_rx();
    tokio::spawn(async move {
        let _count = guard;
        let Ok(upgraded) = on_upgrade.await else { return };
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            tracing::error!("upgraded connection is not a TCP stream");
            return;
        };
        let stream = parts.io.into_inner();
        let socket = Socket::start(
            endpoint,
            SocketParams { conn_id, serializer, transport: Transport::WebSocket, assigns, params, outbox },
        )
        .await;
        crate::transport::run(stream, parts.read_buf, socket, limits, shutdown).await;
    });

    let mut resp = empty(StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert("sec-websocket-accept", HeaderValue::from_str(&crate::ws::accept_key(&key)).expect("base64 is a header value"));
    if let Some(p) = chosen_protocol {
        if let Ok(v) = HeaderValue::from_str(&p) {
            h.insert("sec-websocket-protocol", v);
        }
    }
    resp
}

/// A WebSocket connection's place in the capacity: taken before the 101, given back (and the
/// gauge decremented) when the connection ends, however it ends.
struct ConnGuard(Arc<ServerState>);

impl ConnGuard {
    fn reserve(state: &Arc<ServerState>) -> Option<ConnGuard> {
        let before = state.open_connections.fetch_add(1, Ordering::AcqRel);
        if before >= state.max_connections {
            state.open_connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        METRICS.connections.inc();
        METRICS.connections_total.inc();
        Some(ConnGuard(state.clone()))
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        METRICS.connections.dec();
        self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}
