//! The connection driver: what every scenario's per-connection task uses to open its socket
//! (open-loop intended start, retries, failure kinds), keep it alive (refs, heartbeats), join
//! topics, and read frames.

use super::ctx::{Ctx, Phase};
use crate::error::ConnError;
use crate::frame;
use futures_util::{SinkExt, StreamExt};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

async fn open_once(ctx: &Ctx, idx: usize, src: Option<Ipv4Addr>, query: &str) -> Result<Ws, ConnError> {
    let target = ctx.target(idx);
    let sock = TcpSocket::new_v4().map_err(|e| ConnError::from_io(&e))?;
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip.into(), 0)).map_err(|e| ConnError::from_io(&e))?;
    }
    let _ = sock.set_nodelay(true);
    let stream = sock.connect(target.addr).await.map_err(|e| ConnError::from_io(&e))?;
    let _ = stream.set_nodelay(true);
    let url = format!("{}?{}{}vsn=2.0.0", target.url, ctx.base_query, query);
    let (ws, _resp) = tokio_tungstenite::client_async_with_config(url, stream, Some(ctx.ws_config))
        .await
        .map_err(|e| ConnError::from_ws(&e))?;
    Ok(ws)
}

/// Open a WebSocket for connection `idx` (global index) with retries and backoff. Connect
/// latency is measured from the intended start time. Failures are counted by kind.
pub async fn establish(ctx: &Ctx, idx: usize, intended: Instant, query: &str) -> Option<Ws> {
    let src = ctx.src_ip(idx);
    let timeout = Duration::from_millis(ctx.common.connect_timeout_ms);
    let mut other_failures = 0u32;
    let mut backoff = Duration::from_millis(50);
    loop {
        if *ctx.phase.borrow() == Phase::Close {
            return None;
        }
        let kind = match tokio::time::timeout(timeout, open_once(ctx, idx, src, query)).await {
            Ok(Ok(ws)) => {
                ctx.rec().hist("connect").record(intended.elapsed().as_micros() as u64);
                let ip = src.map(|s| s.to_string()).unwrap_or_else(|| "default".into());
                *ctx.rec().by_source_ip.entry(ip).or_default() += 1;
                return Some(ws);
            }
            Ok(Err(kind)) => kind,
            Err(_) => ConnError::ConnectTimeout,
        };
        ctx.rec().error(&format!("connect:{kind}"));
        let resource = kind.is_resource();
        if !resource {
            other_failures += 1;
        }
        let give_up = if resource { Instant::now() + backoff > ctx.ramp_deadline } else { other_failures > ctx.common.retries };
        if give_up {
            ctx.rec().add("connections_failed", 1);
            return None;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// A connection's refs and heartbeat state.
pub struct Conn {
    pub ws: Ws,
    next_ref: u64,
    hb_pending: Option<(u64, Instant)>,
    pub closed: bool,
}

impl Conn {
    pub fn new(ws: Ws) -> Self {
        Conn { ws, next_ref: 1, hb_pending: None, closed: false }
    }
    pub fn make_ref(&mut self) -> u64 {
        let r = self.next_ref;
        self.next_ref += 1;
        r
    }
    pub async fn send(&mut self, text: String) -> Result<(), ConnError> {
        self.ws.send(Message::Text(text)).await.map_err(|e| ConnError::from_ws(&e))
    }
    pub async fn heartbeat(&mut self, ctx: &Ctx) -> Result<(), ConnError> {
        if self.hb_pending.take().is_some() {
            ctx.rec().add("heartbeat_timeouts", 1);
        }
        let r = self.make_ref();
        self.hb_pending = Some((r, Instant::now()));
        self.send(frame::heartbeat(&r.to_string())).await
    }
    /// Handle a heartbeat reply; true if the frame was one.
    pub fn on_heartbeat_reply(&mut self, ctx: &Ctx, f: &frame::InFrame) -> bool {
        if f.topic != "phoenix" || f.event != "phx_reply" {
            return false;
        }
        if let (Some((r, at)), Some(fr)) = (self.hb_pending, f.ref_.as_deref()) {
            if fr == r.to_string() {
                ctx.rec().hist("heartbeat_rtt").record(at.elapsed().as_micros() as u64);
                self.hb_pending = None;
            }
        }
        true
    }
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// A heartbeat timer with a per-connection offset so heartbeats don't come in bursts.
pub fn heartbeat_timer(ctx: &Ctx, idx: usize) -> tokio::time::Interval {
    let period = ctx.heartbeat_period();
    let frac = ((idx as u64).wrapping_mul(2654435761) % 1000) as f64 / 1000.0;
    let first = Instant::now() + period.mul_f64(0.5 + frac * 0.5);
    let mut iv = tokio::time::interval_at(first.into(), period);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    iv
}

pub enum WsEvent {
    Text(String),
    Closed(ConnError),
    Other,
}

pub fn classify(msg: Option<Result<Message, tungstenite::Error>>) -> WsEvent {
    match msg {
        Some(Ok(Message::Text(t))) => WsEvent::Text(t),
        Some(Ok(Message::Binary(_))) => {
            WsEvent::Other // the V2 binary serializer is not used by loadgen's pushes
        }
        Some(Ok(Message::Close(_))) | None => WsEvent::Closed(ConnError::ClosedByServer),
        Some(Ok(_)) => WsEvent::Other,
        Some(Err(e)) => WsEvent::Closed(ConnError::from_ws(&e)),
    }
}

/// Join `topics` pipelined; returns, per topic, the join_ref if the join was ok.
/// Frames that are not join replies are handed to `other`.
pub async fn join_topics(
    ctx: &Ctx,
    conn: &mut Conn,
    topics: &[String],
    params_json: &str,
    mut other: impl FnMut(&frame::InFrame, &str),
) -> Vec<Option<u64>> {
    let mut out: Vec<Option<u64>> = vec![None; topics.len()];
    let mut pending: Vec<(u64, usize, Instant)> = Vec::with_capacity(topics.len());
    for (i, t) in topics.iter().enumerate() {
        let r = conn.make_ref();
        let at = Instant::now();
        if let Err(k) = conn.send(frame::join(&r.to_string(), t, params_json)).await {
            ctx.rec().error(&format!("join:send_{k}"));
            conn.closed = true;
            return out;
        }
        pending.push((r, i, at));
    }
    let deadline = Instant::now() + Duration::from_millis(ctx.common.join_timeout_ms);
    while !pending.is_empty() {
        let msg = match tokio::time::timeout_at(deadline.into(), conn.ws.next()).await {
            Ok(m) => m,
            Err(_) => {
                for _ in &pending {
                    ctx.rec().error("join:timeout");
                }
                return out;
            }
        };
        match classify(msg) {
            WsEvent::Text(t) => {
                let Ok(f) = frame::decode(&t) else {
                    ctx.rec().error("frame:undecodable");
                    continue;
                };
                if f.event == "phx_reply" {
                    if let Some(pos) = pending.iter().position(|(r, i, _)| {
                        f.ref_.as_deref() == Some(r.to_string().as_str()) && f.topic == topics[*i]
                    }) {
                        let (r, i, at) = pending.swap_remove(pos);
                        match frame::reply_status(f.payload).as_deref() {
                            Some("ok") => {
                                ctx.rec().hist("join").record(at.elapsed().as_micros() as u64);
                                out[i] = Some(r);
                            }
                            Some(s) => ctx.rec().error(&format!("join:{s}")),
                            None => ctx.rec().error("join:bad_reply"),
                        }
                        continue;
                    }
                }
                if conn.on_heartbeat_reply(ctx, &f) {
                    continue;
                }
                other(&f, &t);
            }
            WsEvent::Closed(k) => {
                ctx.rec().error(&format!("join:{k}"));
                conn.closed = true;
                return out;
            }
            WsEvent::Other => {}
        }
    }
    out
}

/// Wait for the next phase change, handing the receiver back.
pub async fn phase_changed(mut rx: watch::Receiver<Phase>) -> (Result<(), watch::error::RecvError>, watch::Receiver<Phase>) {
    let r = rx.changed().await;
    (r, rx)
}

/// `ws.next()` under a name that reads well in select!.
pub trait NextMsg {
    fn next_msg(&mut self) -> futures_util::stream::Next<'_, Ws>;
}
impl NextMsg for Ws {
    fn next_msg(&mut self) -> futures_util::stream::Next<'_, Ws> {
        futures_util::StreamExt::next(self)
    }
}
