//! Mounting the socket endpoint into the app's own HTTP service, so one port serves the app's
//! pages, its HTTP endpoints and its sockets (Phoenix's `Endpoint`: `socket "/socket", …`
//! followed by `plug MyAppWeb.Router`).
//!
//! Give [`crate::Builder::http_service`] an [`AppService`] (make one with [`service`]). The
//! broker keeps the paths it owns ([`is_broker_path`]: the socket's `/websocket` and
//! `/longpoll`, the HTTP API when it is on, `/metrics` and the health checks unless they moved
//! to `admin_listen`); every other request goes to the app's service, which then also replaces
//! the demo page. Handlers broadcast through a [`crate::BrokerHandle`] taken from
//! [`crate::Builder::handle`] before `bind`.
//!
//! The request is hyper's ([`Request<Incoming>`]); the answer a [`Response<Body>`] with a
//! whole body ([`Body`] is `http_body_util::Full<Bytes>`). An axum `Router` mounts the same
//! way: call it with `tower::ServiceExt::oneshot` inside [`service`] and collect its body.
//!
//! ```no_run
//! use broker::mount::{self, Method, StatusCode};
//!
//! # async fn run() -> std::io::Result<()> {
//! let builder = broker::Builder::new(broker::Config::default());
//! let endpoint = builder.handle();
//! let app = mount::service(move |req| {
//!     let endpoint = endpoint.clone();
//!     async move {
//!         match (req.method().clone(), req.uri().path()) {
//!             (Method::GET, "/") => mount::html("<h1>hello</h1>"),
//!             (Method::POST, "/announce") => {
//!                 let _ = endpoint.broadcast_json("room:lobby", "announce", &serde_json::json!({"text": "hi"})).await;
//!                 mount::json(StatusCode::OK, &serde_json::json!({"ok": true}))
//!             }
//!             _ => mount::not_found(),
//!         }
//!     }
//! });
//! let server = builder.http_service(app).bind().await?;
//! server.run_until(std::future::pending()).await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http_body_util::BodyExt as _;

pub use bytes::Bytes;
pub use hyper::body::Incoming;
pub use hyper::{header, Method, Request, Response, StatusCode};

use crate::config::Config;

/// The body of an app's response: a whole body.
pub type Body = http_body_util::Full<Bytes>;

/// The future an [`AppService`] returns.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// The app's HTTP service: every request the broker does not own.
pub type AppService = Arc<dyn Fn(Request<Incoming>) -> ResponseFuture + Send + Sync>;

/// Makes an [`AppService`] from an async function of the request.
pub fn service<F, Fut>(f: F) -> AppService
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)) as ResponseFuture)
}

/// Does the broker answer `path` itself (rather than the mounted app)? The socket transports
/// under `socket_path`, the HTTP API under `api.path` when an API key is set, and `/metrics`,
/// `/health`, `/healthz`, `/readyz` unless `admin_listen` serves them.
pub fn is_broker_path(config: &Config, path: &str) -> bool {
    if let Some(rest) = path.strip_prefix(config.socket_path.as_str()) {
        if rest == "/websocket" || rest == "/longpoll" {
            return true;
        }
    }
    if config.api.key.is_some() && path.strip_prefix(config.api.path.as_str()).is_some_and(|r| r.starts_with('/')) {
        return true;
    }
    config.admin_listen.is_none() && matches!(path, "/metrics" | "/health" | "/healthz" | "/readyz")
}

/// A response with this status, content type and body.
pub fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r
}

/// `200 text/html`.
pub fn html(body: impl Into<Bytes>) -> Response<Body> {
    respond(StatusCode::OK, "text/html; charset=utf-8", body)
}

/// `200 text/javascript` (an ES module or a script).
pub fn javascript(body: impl Into<Bytes>) -> Response<Body> {
    respond(StatusCode::OK, "text/javascript; charset=utf-8", body)
}

/// A JSON response.
pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    respond(status, "application/json", serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec()))
}

/// `404 not found`.
pub fn not_found() -> Response<Body> {
    respond(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found")
}

/// Reads a request body of at most `limit` bytes; a longer one is a `413`, a broken one a `400`.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Response<Body>> {
    let too_large = || respond(StatusCode::PAYLOAD_TOO_LARGE, "text/plain; charset=utf-8", "body too large");
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(req.into_body(), limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(respond(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", "unreadable body")),
    }
}

/// Reads a JSON request body (at most `limit` bytes) into `T`; a bad one is a `400`.
pub async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>, limit: usize) -> Result<T, Response<Body>> {
    let body = read_body(req, limit).await?;
    serde_json::from_slice(&body).map_err(|e| respond(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", format!("bad JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_paths() {
        let mut c = Config::default();
        assert!(is_broker_path(&c, "/socket/websocket"));
        assert!(is_broker_path(&c, "/socket/longpoll"));
        assert!(is_broker_path(&c, "/metrics"));
        assert!(!is_broker_path(&c, "/"));
        assert!(!is_broker_path(&c, "/socket"));
        assert!(!is_broker_path(&c, "/api/broadcast"), "no API key: the app owns /api");
        c.api.key = Some("k".into());
        assert!(is_broker_path(&c, "/api/broadcast"));
        c.admin_listen = Some("127.0.0.1:0".into());
        assert!(!is_broker_path(&c, "/metrics"));
    }
}
