//! The connection driver: what every scenario's per-connection task uses to open its socket
//! (open-loop intended start, retries, failure kinds), keep it alive (refs, heartbeats), join
//! topics, and read frames.

use super::ctx::{Ctx, Phase};
use crate::error::ConnError;
use crate::frame;
use crate::ws::WsStream;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio::sync::watch;

async fn open_once(ctx: &Ctx, idx: usize, src: Option<Ipv4Addr>, query: &str, attempt: u32) -> Result<WsStream, ConnError> {
    let target = ctx.target(idx);
    let sock = TcpSocket::new_v4().map_err(|e| ConnError::from_io(&e))?;
    ctx.ports.bind(&sock, src, idx, attempt)?;
    let _ = sock.set_nodelay(true);
    let stream = sock.connect(target.addr).await.map_err(|e| ConnError::from_io(&e))?;
    let path = format!("{}?{}{}vsn=2.0.0", target.path, ctx.base_query, query);
    crate::ws::handshake(stream, &target.host, &path).await
}

/// Open a WebSocket for connection `idx` (global index) with retries and backoff. Connect
/// latency is measured from the intended start time. Failures are counted by kind.
pub async fn establish(ctx: &Ctx, idx: usize, intended: Instant, query: &str) -> Option<WsStream> {
    let src = ctx.src_ip(idx);
    let timeout = Duration::from_millis(ctx.common.connect_timeout_ms);
    let mut other_failures = 0u32;
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0u32;
    loop {
        if *ctx.phase.borrow() == Phase::Close {
            return None;
        }
        attempt += 1;
        let kind = match tokio::time::timeout(timeout, open_once(ctx, idx, src, query, attempt - 1)).await {
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
    pub ws: WsStream,
    next_ref: u64,
    /// Separate from `ws` so that a receive callback can answer heartbeat replies while `ws`
    /// is borrowed by [`WsStream::recv`].
    pub hb: Heartbeat,
    pub closed: bool,
}

/// The heartbeat in flight: (ref, sent at).
#[derive(Default)]
pub struct Heartbeat {
    pending: Option<(u64, Instant)>,
}

/// Whether the ref text `s` is the decimal number `r` (as the ref was sent: no allocation).
pub fn ref_is(s: &str, r: u64) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.len() <= 20 && (b[0] != b'0' || b.len() == 1) && b.iter().all(u8::is_ascii_digit) && s.parse::<u64>() == Ok(r)
}

impl Heartbeat {
    /// Handle a heartbeat reply; true if the frame was one.
    pub fn on_reply(&mut self, ctx: &Ctx, f: &frame::InFrame) -> bool {
        if f.topic != "phoenix" || f.event != "phx_reply" {
            return false;
        }
        if let (Some((r, at)), Some(fr)) = (self.pending, f.ref_.as_deref()) {
            if ref_is(fr, r) {
                ctx.rec().hist("heartbeat_rtt").record(at.elapsed().as_micros() as u64);
                self.pending = None;
            }
        }
        true
    }
}

impl Conn {
    pub fn new(ws: WsStream) -> Self {
        Conn { ws, next_ref: 1, hb: Heartbeat::default(), closed: false }
    }
    pub fn make_ref(&mut self) -> u64 {
        let r = self.next_ref;
        self.next_ref += 1;
        r
    }
    pub async fn send(&mut self, text: String) -> Result<(), ConnError> {
        self.ws.send_text(text).await
    }
    pub async fn heartbeat(&mut self, ctx: &Ctx) -> Result<(), ConnError> {
        if self.hb.pending.take().is_some() {
            ctx.rec().add("heartbeat_timeouts", 1);
        }
        let r = self.make_ref();
        self.hb.pending = Some((r, Instant::now()));
        self.send(frame::heartbeat(&r.to_string())).await
    }
    /// Handle a heartbeat reply; true if the frame was one.
    pub fn on_heartbeat_reply(&mut self, ctx: &Ctx, f: &frame::InFrame) -> bool {
        self.hb.on_reply(ctx, f)
    }
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close()).await;
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
    let hb = &mut conn.hb;
    while !pending.is_empty() {
        // stop at the last join reply: later frames stay for the caller's loop
        let got = conn.ws.recv_until(|t| {
            let Ok(f) = frame::decode(t) else {
                ctx.rec().error("frame:undecodable");
                return false;
            };
            if f.event == "phx_reply" {
                if let Some(pos) =
                    pending.iter().position(|(r, i, _)| f.ref_.as_deref().is_some_and(|fr| ref_is(fr, *r)) && f.topic == topics[*i])
                {
                    let (r, i, at) = pending.swap_remove(pos);
                    match frame::reply_status(f.payload).as_deref() {
                        Some("ok") => {
                            ctx.rec().hist("join").record(at.elapsed().as_micros() as u64);
                            out[i] = Some(r);
                        }
                        Some(s) => ctx.rec().error(&format!("join:{s}")),
                        None => ctx.rec().error("join:bad_reply"),
                    }
                    return pending.is_empty();
                }
            }
            if !hb.on_reply(ctx, &f) {
                other(&f, t);
            }
            false
        });
        match tokio::time::timeout_at(deadline.into(), got).await {
            Ok(Ok(_)) => {}
            Ok(Err(k)) => {
                ctx.rec().error(&format!("join:{k}"));
                conn.closed = true;
                return out;
            }
            Err(_) => {
                for _ in &pending {
                    ctx.rec().error("join:timeout");
                }
                return out;
            }
        }
    }
    out
}

/// Wait for the next phase change, handing the receiver back.
pub async fn phase_changed(mut rx: watch::Receiver<Phase>) -> (Result<(), watch::error::RecvError>, watch::Receiver<Phase>) {
    let r = rx.changed().await;
    (r, rx)
}
