//! The connect step both transports share (spec §2.5): origin check, `vsn` negotiation,
//! connect params, the app's `connect`, and a place in the transport's capacity pool, held as
//! a [`Permit`] for the connection's (or session's) whole life. Auth and connect webhooks plug
//! in here. Also the small HTTP helpers both transports answer with.
//!
//! WebSocket order: origin → auth token and subprotocol (WebSocket only) → `vsn` → params →
//! capacity → `connect` → upgrade validation → 101. LongPoll: origin → session rate → the same.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value};

use crate::protocol::origin::RequestSide;
use super::capacity::{Capacity, Permit};
use super::state::ServerState;
use crate::metrics::METRICS;
use crate::protocol::params::{parse_query, query_param, ConnectParams};
use crate::protocol::Serializer;
use crate::protocol::Transport;
use crate::socket::{ConnectError, ConnectInfo};

pub type Body = Full<Bytes>;

/// A plain-text response (no body and no content type when `body` is empty).
pub fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    if !body.is_empty() {
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    r
}

pub fn header_str<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The request's own scheme/host/port (for `check_origin = "conn"`).
pub fn request_side<'a>(req: &'a Request<Incoming>, local: u16) -> RequestSide<'a> {
    let host_header = header_str(req, "host").unwrap_or("");
    let (host, port) = match host_header.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or(local)),
        None => (host_header, 80),
    };
    RequestSide { scheme: "http", host, port }
}

/// Why a connect was refused; each transport renders it its own way (WebSocket: an HTTP
/// status; LongPoll: `{"status":403}` for refusals, an HTTP status for the rest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Origin, `vsn` or the app's `connect` said no: 403 with an empty body, as Phoenix.
    Forbidden,
    /// The app's `connect` refused with its own status and body (WebSocket only).
    Status(u16, String),
    /// Malformed input: 400 with the reason.
    BadRequest(String),
    /// The transport's pool is full: 503.
    AtCapacity,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Forbidden => f.write_str("forbidden"),
            Refused::Status(code, body) => write!(f, "{code} {body}"),
            Refused::BadRequest(msg) => f.write_str(msg),
            Refused::AtCapacity => f.write_str("server at connection capacity; retry later"),
        }
    }
}

impl std::error::Error for Refused {}

/// A socket the app accepted, with its place in the capacity pool.
pub struct Connected {
    pub serializer: Serializer,
    pub params: ConnectParams,
    pub assigns: Map<String, Value>,
    pub info: ConnectInfo,
    pub permit: Permit,
}

/// The origin check (spec §2.3), first of all.
pub fn check_origin(state: &ServerState, req: &Request<Incoming>) -> Result<(), Refused> {
    let side = request_side(req, state.local_addr.port());
    if state.check_origin.allows(header_str(req, "origin"), &side) {
        Ok(())
    } else {
        Err(Refused::Forbidden)
    }
}

/// `vsn`, params, a place in the transport's pool, then the app's `connect`.
pub async fn connect(
    state: &Arc<ServerState>,
    req: &Request<Incoming>,
    peer: SocketAddr,
    transport: Transport,
    auth_token: Option<String>,
) -> Result<Connected, Refused> {
    let query = req.uri().query().unwrap_or("");
    let serializer = Serializer::negotiate(query_param(query, "vsn").as_deref()).ok_or(Refused::Forbidden)?;
    let params = parse_query(query, state.config.limits.max_param_depth).map_err(|e| Refused::BadRequest(e.to_string()))?;
    // The place is taken before the app's `connect` runs: a flood at capacity costs no app
    // code (nor, later, a webhook call).
    let pool: &Arc<Capacity> = match transport {
        Transport::WebSocket => &state.connections,
        Transport::LongPoll => &state.sessions,
    };
    let Some(permit) = pool.try_acquire() else {
        METRICS.refused_at_capacity.inc();
        return Err(Refused::AtCapacity);
    };
    let info = connect_info(req, peer, transport, auth_token);
    let assigns = match state.endpoint.handler.connect(&params, &info).await {
        Ok(a) => a,
        Err(ConnectError::Forbidden) => return Err(Refused::Forbidden),
        Err(ConnectError::Status(code, body)) => return Err(Refused::Status(code, body)),
    };
    // What the socket keeps is the query string, not the parsed value (parsed again if a
    // channel asks for it).
    drop(params);
    let params = ConnectParams::from_query(query, state.config.limits.max_param_depth);
    Ok(Connected { serializer, params, assigns, info, permit })
}

fn connect_info(req: &Request<Incoming>, peer: SocketAddr, transport: Transport, auth_token: Option<String>) -> ConnectInfo {
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
