//! A tiny Phoenix-protocol relay server for tests: V2 JSON, any topic joinable, pushes are
//! broadcast to every subscriber (sender included) as [null,null,topic,event,payload] and
//! answered with an ok reply; `room:*` topics have Presence keyed by the `user_id` param.
//! [`RelayOpts`] make it misbehave in ways the load generator must notice.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, value::RawValue, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

struct Sub {
    conn: u64,
    tx: UnboundedSender<String>,
    key: String,
    phx_ref: String,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Vec<Sub>>,
}

static NEXT: AtomicU64 = AtomicU64::new(1);

fn presences(subs: &[Sub]) -> Value {
    let mut m = serde_json::Map::new();
    for s in subs {
        let e = m.entry(s.key.clone()).or_insert_with(|| json!({"metas": []}));
        e["metas"].as_array_mut().unwrap().push(json!({"phx_ref": s.phx_ref}));
    }
    Value::Object(m)
}

fn one(key: &str, phx_ref: &str) -> Value {
    json!({ key: {"metas": [{"phx_ref": phx_ref}]} })
}

fn broadcast(subs: &[Sub], topic: &str, event: &str, payload: &str) {
    let f = format!("[null,null,{},{},{}]", json!(topic), json!(event), payload);
    for s in subs {
        let _ = s.tx.send(f.clone());
    }
}

fn leave(state: &Mutex<State>, conn: u64, topic: &str) {
    let mut st = state.lock().unwrap();
    if let Some(subs) = st.topics.get_mut(topic) {
        if let Some(i) = subs.iter().position(|s| s.conn == conn) {
            let s = subs.remove(i);
            if topic.starts_with("room:") {
                let d = json!({"joins": {}, "leaves": one(&s.key, &s.phx_ref)}).to_string();
                broadcast(subs, topic, "presence_diff", &d);
            }
        }
    }
}

/// Ways the relay misbehaves (all off by default).
#[derive(Debug, Clone, Default)]
pub struct RelayOpts {
    /// A connection whose first join is to this topic gets an error reply but is subscribed
    /// anyway (it receives the topic's broadcasts although its join "failed").
    pub lie_join_topic: Option<String>,
    /// Pushes are broadcast but never replied to.
    pub no_push_replies: bool,
    /// Heartbeats are never replied to.
    pub no_heartbeat_replies: bool,
}

/// Start the relay on 127.0.0.1:0; returns its address.
pub async fn start_relay() -> SocketAddr {
    start_relay_with(RelayOpts::default()).await
}

/// Start a relay that misbehaves as `opts` say.
pub async fn start_relay_with(opts: RelayOpts) -> SocketAddr {
    let opts = Arc::new(opts);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let state = Arc::new(Mutex::new(State::default()));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { continue };
            let state = state.clone();
            let opts = opts.clone();
            tokio::spawn(async move {
                let mut user = String::new();
                let cb = |req: &Request, resp: Response| {
                    let q = req.uri().query().unwrap_or("");
                    for kv in q.split('&') {
                        if let Some(v) = kv.strip_prefix("user_id=") {
                            user = v.to_string();
                        }
                    }
                    Ok(resp)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else { return };
                let conn = NEXT.fetch_add(1, Ordering::Relaxed);
                let (mut sink, mut stream) = ws.split();
                let (tx, mut rx) = unbounded_channel::<String>();
                let writer = tokio::spawn(async move {
                    while let Some(m) = rx.recv().await {
                        if sink.send(Message::Text(m)).await.is_err() {
                            break;
                        }
                    }
                });
                let mut joined: HashMap<String, String> = HashMap::new(); // topic -> join_ref
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(t) = msg else { continue };
                    let Ok(parts) = serde_json::from_str::<Vec<&RawValue>>(&t) else { break };
                    if parts.len() < 5 {
                        break;
                    }
                    let jr = parts[0].get().to_string();
                    let r = parts[1].get().to_string();
                    let topic: String = serde_json::from_str(parts[2].get()).unwrap_or_default();
                    let event: String = serde_json::from_str(parts[3].get()).unwrap_or_default();
                    let reply = |jr: &str| format!("[{jr},{r},{},\"phx_reply\",{{\"status\":\"ok\",\"response\":{{}}}}]", json!(topic));
                    match event.as_str() {
                        "heartbeat" => {
                            if !opts.no_heartbeat_replies {
                                let _ = tx.send(reply("null"));
                            }
                        }
                        "phx_join" => {
                            let phx_ref = format!("R{}", NEXT.fetch_add(1, Ordering::Relaxed));
                            if joined.is_empty() && opts.lie_join_topic.as_deref() == Some(topic.as_str()) {
                                let _ = tx.send(format!("[{jr},{r},{},\"phx_reply\",{{\"status\":\"error\",\"response\":{{\"reason\":\"lie\"}}}}]", json!(topic)));
                            } else {
                                let _ = tx.send(reply(&jr));
                            }
                            joined.insert(topic.clone(), jr.clone());
                            let mut st = state.lock().unwrap();
                            let subs = st.topics.entry(topic.clone()).or_default();
                            subs.push(Sub { conn, tx: tx.clone(), key: user.clone(), phx_ref: phx_ref.clone() });
                            if topic.starts_with("room:") {
                                let d = json!({"joins": one(&user, &phx_ref), "leaves": {}}).to_string();
                                broadcast(subs, &topic, "presence_diff", &d);
                                let s = presences(subs).to_string();
                                let _ = tx.send(format!("[{jr},null,{},\"presence_state\",{s}]", json!(topic)));
                            }
                        }
                        "phx_leave" => {
                            let _ = tx.send(reply(&jr));
                            if joined.remove(&topic).is_some() {
                                leave(&state, conn, &topic);
                                let _ = tx.send(format!("[{jr},{jr},{},\"phx_close\",{{}}]", json!(topic)));
                            }
                        }
                        _ => {
                            if joined.contains_key(&topic) {
                                let st = state.lock().unwrap();
                                if let Some(subs) = st.topics.get(&topic) {
                                    broadcast(subs, &topic, &event, parts[4].get());
                                }
                                if !opts.no_push_replies {
                                    let _ = tx.send(reply(&jr));
                                }
                            }
                        }
                    }
                }
                for t in joined.keys() {
                    leave(&state, conn, t);
                }
                writer.abort();
            });
        }
    });
    addr
}

/// The broker binary of `profile_dir` (`<target>/debug` for `cargo test`), as built for this
/// workspace by `cargo build -p broker` (scripts/test.sh builds the workspace first). Never
/// another profile's build (a release build may be stale); an error saying how to build it
/// when it is missing.
pub fn broker_bin_in(profile_dir: &Path) -> Result<PathBuf, String> {
    let p = profile_dir.join("broker");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "no broker binary at {}: build it first with `cargo build -p broker` (scripts/test.sh builds the workspace before the tests)",
            p.display()
        ))
    }
}

/// The broker next to the loadgen binary under test (same target directory, same profile);
/// panics with [`broker_bin_in`]'s message when it is missing (the test fails, never skips).
pub fn broker_bin() -> PathBuf {
    let lg = PathBuf::from(env!("CARGO_BIN_EXE_loadgen"));
    let dir = lg.parent().expect("loadgen binary directory");
    broker_bin_in(dir).unwrap_or_else(|e| panic!("{e}"))
}
