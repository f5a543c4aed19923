//! HTTP routing: the socket endpoints (WebSocket upgrade, LongPoll), the demo page, and
//! `/metrics` and `/health` (here, or on the admin address).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::connect::{text, Body};
use super::state::ServerState;
use crate::metrics::METRICS;

/// The demo page (a chat room with presence, using phoenix.js) and the phoenix.js it loads.
const DEMO_HTML: &str = include_str!("../../assets/index.html");
const PHOENIX_JS: &str = include_str!("../../assets/phoenix.min.js");

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
        super::websocket::upgrade(state, req, peer).await
    } else if path.starts_with(base) && rest == "/longpoll" && state.config.longpoll {
        super::longpoll::handle(state, req, peer).await
    } else if let Some(api_rest) = api_route(&state, path) {
        let api_rest = api_rest.to_owned();
        crate::standalone::api::handle(state, req, &api_rest).await
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
            (&Method::GET, "/metrics" | "/health" | "/healthz" | "/readyz") if state.config.admin_listen.is_none() => admin_route(&state, &req),
            _ => text(StatusCode::NOT_FOUND, "not found"),
        }
    };
    Ok(resp)
}

/// The part of `path` under the API's mount path, when the API is on.
fn api_route<'a>(state: &ServerState, path: &'a str) -> Option<&'a str> {
    state.config.api.key.as_ref()?;
    let rest = path.strip_prefix(state.config.api.path.as_str())?;
    (rest.starts_with('/')).then_some(rest)
}

/// `/metrics`, `/healthz` (the process answers; `/health` is the same), `/readyz` (accepting
/// connections: 503 once draining): on the public address, or only on `admin_listen` when it is
/// set.
fn admin_route(state: &ServerState, req: &Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut r = text(StatusCode::OK, &METRICS.render());
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            r
        }
        (&Method::GET, "/health" | "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") if state.draining() => text(StatusCode::SERVICE_UNAVAILABLE, "draining"),
        (&Method::GET, "/readyz") => text(StatusCode::OK, "ready"),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Routes one request on the admin address.
pub async fn handle_admin(state: Arc<ServerState>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(admin_route(&state, &req))
}

