//! The HTTP API a backend acts on the broker with (Phoenix's `Endpoint.broadcast` and
//! `disconnect`, Pusher's and Centrifugo's HTTP APIs): broadcast one or many messages
//! (optionally excluding a socket id), disconnect a socket id, list a topic's presence, and
//! counts. JSON in, JSON out; every error is `{"error": "…"}` with its status. The API key comes
//! as `Authorization: Bearer KEY` or `X-Api-Key: KEY`: 401 without one, 403 with a wrong one.
//! The routes are described in `docs/openapi.json`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::channel::broadcast_frame_bound;
use crate::metrics::METRICS;
use crate::protocol::Payload;
use crate::pubsub::Broadcast;
use crate::transport::connect::Body;
use crate::transport::ServerState;

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    bytes_response(status, Bytes::from(serde_json::to_vec(body).expect("JSON")))
}

fn bytes_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

/// 405 with the `Allow` header RFC 9110 requires.
fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, &format!("method not allowed (use {allow})"));
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Compares in constant time (the key must not leak through timing).
fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(a.ct_eq(b))
}

/// One message to broadcast.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    topic: String,
    event: String,
    payload: Value,
    /// Every socket with this id (`identity.socket_id_prefix` + user id) is skipped.
    #[serde(default)]
    exclude_socket_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    messages: Vec<Message>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Disconnect {
    socket_id: String,
}

/// Handles a request under `api.path` (`rest` is the part after it).
pub async fn handle(state: Arc<ServerState>, req: Request<Incoming>, rest: &str) -> Response<Body> {
    let Some(key) = &state.config.api.key else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let offered = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, k)| k))
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()));
    match offered {
        None => {
            let mut r = error(StatusCode::UNAUTHORIZED, "missing API key (Authorization: Bearer KEY)");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        Some(k) if !same(k.trim().as_bytes(), key.as_bytes()) => return error(StatusCode::FORBIDDEN, "invalid API key"),
        Some(_) => {}
    }
    let method = req.method().clone();
    let rest = rest.to_owned();
    match (method, rest.as_str()) {
        (Method::POST, "/broadcast") => match body::<Message>(&state, req).await {
            Ok(m) => match broadcast(&state, m).await {
                Ok(()) => json_response(StatusCode::OK, &json!({ "ok": true })),
                Err(r) => r,
            },
            Err(r) => r,
        },
        (Method::POST, "/broadcasts") => match body::<Batch>(&state, req).await {
            Ok(batch) => {
                // All are checked before any is sent: a batch is accepted or refused whole.
                for (i, m) in batch.messages.iter().enumerate() {
                    if let Err(e) = check(&state, m) {
                        return error(e.0, &format!("messages[{i}]: {}", e.1));
                    }
                }
                let n = batch.messages.len();
                for m in batch.messages {
                    if let Err(r) = broadcast(&state, m).await {
                        return r;
                    }
                }
                json_response(StatusCode::OK, &json!({ "ok": true, "count": n }))
            }
            Err(r) => r,
        },
        (Method::POST, "/disconnect") => match body::<Disconnect>(&state, req).await {
            Ok(d) if d.socket_id.is_empty() => error(StatusCode::BAD_REQUEST, "socket_id must not be empty"),
            Ok(d) => {
                // Phoenix's `Endpoint.broadcast(socket_id, "disconnect", %{})`: every socket with
                // this id closes (WebSocket 1001; LongPoll sessions end).
                let msg = Broadcast::new(d.socket_id.as_str(), "disconnect", Payload::empty_object());
                state.endpoint.env.pubsub.broadcast(msg, None, None).await;
                json_response(StatusCode::OK, &json!({ "ok": true }))
            }
            Err(r) => r,
        },
        (Method::GET, "/stats") => {
            let topics = state.endpoint.env.pubsub.topic_count().await;
            json_response(
                StatusCode::OK,
                &json!({
                    "connections": state.connections.open(),
                    "longpoll_sessions": state.sessions.open(),
                    "channels": METRICS.channels.get().max(0),
                    "topics": topics,
                }),
            )
        }
        (Method::GET, p) if p.starts_with("/presence/") => {
            let raw = &p["/presence/".len()..];
            let topic = percent_decode(raw);
            if topic.is_empty() {
                return error(StatusCode::BAD_REQUEST, "a topic is required: /presence/TOPIC");
            }
            let list = state.endpoint.env.presence.list_payload(&topic).await;
            let Payload::Json(list) = list else { return error(StatusCode::INTERNAL_SERVER_ERROR, "presence is not JSON") };
            let mut out = Vec::with_capacity(list.len() + topic.len() + 32);
            out.extend_from_slice(b"{\"topic\":");
            out.extend_from_slice(&serde_json::to_vec(&topic).expect("JSON"));
            out.extend_from_slice(b",\"presences\":");
            out.extend_from_slice(&list);
            out.push(b'}');
            bytes_response(StatusCode::OK, Bytes::from(out))
        }
        (_, "/broadcast" | "/broadcasts" | "/disconnect") => not_allowed("POST"),
        (_, "/stats") => not_allowed("GET"),
        (_, p) if p.starts_with("/presence/") => not_allowed("GET"),
        _ => error(StatusCode::NOT_FOUND, "no such API route"),
    }
}

/// Reads and parses a JSON body within `api.max_body_bytes`.
async fn body<T: serde::de::DeserializeOwned>(state: &ServerState, req: Request<Incoming>) -> Result<T, Response<Body>> {
    let limit = state.config.api.max_body_bytes;
    let bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(error(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body larger than {limit} bytes"))),
    };
    serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid request body: {e}")))
}

/// Whether a message can be broadcast: (status, reason) if not.
fn check(state: &ServerState, m: &Message) -> Result<Payload, (StatusCode, String)> {
    if m.topic.is_empty() || m.topic.len() > state.config.limits.max_topic_bytes {
        return Err((StatusCode::BAD_REQUEST, format!("topic must be 1 to {} bytes", state.config.limits.max_topic_bytes)));
    }
    if m.event.is_empty() || m.event.len() > state.config.limits.max_event_bytes {
        return Err((StatusCode::BAD_REQUEST, format!("event must be 1 to {} bytes", state.config.limits.max_event_bytes)));
    }
    if !m.payload.is_object() {
        return Err((StatusCode::BAD_REQUEST, "payload must be a JSON object".into()));
    }
    let payload = Payload::json(&m.payload);
    if broadcast_frame_bound(&m.topic, &m.event, &payload) > state.endpoint.env.limits.max_outbound_frame {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "message too large for any client".into()));
    }
    Ok(payload)
}

async fn broadcast(state: &ServerState, m: Message) -> Result<(), Response<Body>> {
    let payload = check(state, &m).map_err(|(s, e)| error(s, &e))?;
    let mut msg = Broadcast::new(m.topic.as_str(), m.event, payload);
    msg.exclude_socket = m.exclude_socket_id.map(|s| Arc::from(s.as_str()));
    state.endpoint.env.pubsub.broadcast(msg, None, None).await;
    Ok(())
}

/// Decodes `%XX` escapes (a topic like `room:lobby` arrives as `room%3Alobby` or as is).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_in_full() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert_eq!(percent_decode("room%3Alobby"), "room:lobby");
        assert_eq!(percent_decode("room:lobby"), "room:lobby");
    }
}
