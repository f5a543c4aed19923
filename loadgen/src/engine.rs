//! One worker process: opens connections on an open-loop ramp, runs the scenario's connection
//! loops, and returns a [`WorkerResult`].

use crate::cli::Common;
use crate::frame;
use crate::result::{ProcInfo, WorkerResult};
use crate::sysinfo;
use futures_util::{SinkExt, StreamExt};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

pub fn now_unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// The Instant corresponding to a Unix time in µs (same machine clock).
pub fn instant_at_unix(us: u64) -> Instant {
    let now_u = now_unix_us();
    let now_i = Instant::now();
    if us >= now_u {
        now_i + Duration::from_micros(us - now_u)
    } else {
        now_i.checked_sub(Duration::from_micros(now_u - us)).unwrap_or(now_i)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    Ramp,
    /// measurement phase starts at `at` (= `unix_us`)
    Go { at: Instant, unix_us: u64 },
    /// measurement and drain over: observers compare their views with the truth
    Check,
    /// measurement + drain over; connections close
    Close,
}

/// A counter updated per received frame: one cache line per slot, each runtime thread adds to
/// its own slot (no cache-line ping-pong between threads); readers sum the slots.
#[derive(Default)]
pub struct Striped([Slot; STRIPES]);

const STRIPES: usize = 16;

#[derive(Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

fn stripe() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local!(static MINE: usize = (NEXT.fetch_add(1, Relaxed) as usize) % STRIPES);
    MINE.with(|m| *m)
}

impl Striped {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0[stripe()].0.fetch_add(n, Relaxed);
    }
    /// Sum over the slots.
    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Relaxed)).sum()
    }
    /// Keep a per-thread maximum (e.g. a time); [`Striped::get_max`] reads the overall one.
    #[inline]
    pub fn store_max(&self, v: u64) {
        let s = &self.0[stripe()].0;
        if s.load(Relaxed) < v {
            s.store(v, Relaxed);
        }
    }
    pub fn get_max(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Relaxed)).max().unwrap_or(0)
    }
}

/// Live counters for the progress line.
#[derive(Default)]
pub struct Progress {
    pub established: AtomicU64,
    pub failed: AtomicU64,
    pub settled: AtomicU64,
    pub deliveries: Striped,
    pub duplicated: Striped,
    pub last_delivery_us: Striped,
    pub sent: AtomicU64,
    pub open: AtomicU64,
    /// Publishing connections that are done publishing (past the end of the measurement, or
    /// gone): the drain may only end early once every publisher is done, or a push scheduled
    /// before the end but sent late would be cut off by the close.
    pub publishers_done: AtomicU64,
}

pub struct Target {
    pub addr: SocketAddr,
    /// ws://host:port/path (no query)
    pub url: String,
}

/// Parse `ws://host:port/path` and resolve host:port.
pub async fn resolve_target(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let hp = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") };
    let addr = tokio::net::lookup_host(&hp)
        .await
        .map_err(|e| format!("resolve {hp}: {e}"))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| format!("resolve {hp}: no IPv4 address"))?;
    let url = format!("ws://{hostport}{}", path.split('?').next().unwrap_or("/"));
    Ok(Target { addr, url })
}

/// Query-string encoding of one component (encodeURIComponent).
pub fn uri_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub struct Ctx {
    pub common: Common,
    pub target: Target,
    pub src_ips: Vec<Ipv4Addr>,
    pub ws_config: WebSocketConfig,
    /// base query (connect params), each "k=v&"
    pub base_query: String,
    pub rec: Mutex<WorkerResult>,
    pub prog: Progress,
    pub phase: watch::Sender<Phase>,
    pub t0: Instant,
    pub t0_unix: u64,
    pub ramp_deadline: Instant,
    pub worker: u32,
    pub workers: u32,
}

impl Ctx {
    pub async fn new(common: Common, t0_unix: u64) -> Result<Arc<Ctx>, String> {
        let target = resolve_target(&common.url).await?;
        let src_ips = match &common.source_ips {
            Some(s) => crate::cli::parse_source_ips(s)?,
            None => vec![],
        };
        let (worker, workers) = match &common.worker {
            Some(w) => {
                let (a, b) = w.split_once('/').ok_or("bad --worker")?;
                (a.parse().map_err(|_| "bad --worker")?, b.parse().map_err(|_| "bad --worker")?)
            }
            None => (0, 1),
        };
        let mut base_query = String::new();
        for p in &common.params {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("--param {p}: expected KEY=VALUE"))?;
            base_query.push_str(&format!("{}={}&", uri_component(k), uri_component(v)));
        }
        // small buffers: one process holds ~19k sockets
        let mut ws_config = WebSocketConfig::default();
        ws_config.write_buffer_size = 0;
        ws_config.max_write_buffer_size = 1 << 20;
        ws_config.max_message_size = Some(64 << 20);
        ws_config.max_frame_size = Some(64 << 20);
        let t0 = instant_at_unix(t0_unix);
        let ramp_deadline = t0 + Duration::from_secs_f64(common.ramp_timeout);
        let (phase, _) = watch::channel(Phase::Ramp);
        Ok(Arc::new(Ctx {
            common,
            target,
            src_ips,
            ws_config,
            base_query,
            rec: Mutex::new(WorkerResult::default()),
            prog: Progress::default(),
            phase,
            t0,
            t0_unix,
            ramp_deadline,
            worker,
            workers,
        }))
    }

    pub fn rec(&self) -> std::sync::MutexGuard<'_, WorkerResult> {
        self.rec.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn src_ip(&self, global_idx: usize) -> Option<Ipv4Addr> {
        if self.src_ips.is_empty() {
            None
        } else {
            Some(self.src_ips[global_idx % self.src_ips.len()])
        }
    }

    /// Intended start of the k-th local connection of the ramp (open loop).
    pub fn ramp_slot(&self, k: usize) -> Instant {
        let rate = (self.common.connect_rate / self.workers as f64).max(0.001);
        self.t0 + Duration::from_secs_f64(k as f64 / rate)
    }

    pub fn heartbeat_period(&self) -> Duration {
        Duration::from_secs_f64(self.common.heartbeat.max(0.1))
    }
}

/// Classify a connect / handshake failure.
pub fn io_kind(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => "emfile".into(),
        Some(libc::EADDRNOTAVAIL) => "eaddrnotavail".into(),
        Some(libc::EADDRINUSE) => "eaddrinuse".into(),
        Some(libc::ECONNREFUSED) => "econnrefused".into(),
        Some(libc::ECONNRESET) => "econnreset".into(),
        Some(libc::ETIMEDOUT) => "etimedout".into(),
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) => "enobufs".into(),
        Some(n) => format!("errno_{n}"),
        None => format!("io_{:?}", e.kind()).to_lowercase(),
    }
}

pub fn ws_kind(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => io_kind(io),
        tungstenite::Error::Http(resp) => format!("http_{}", resp.status().as_u16()),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => "closed".into(),
        tungstenite::Error::Protocol(_) => "ws_protocol".into(),
        tungstenite::Error::Capacity(_) => "ws_capacity".into(),
        _ => "ws_other".into(),
    }
}

fn is_resource_error(kind: &str) -> bool {
    matches!(kind, "emfile" | "eaddrnotavail" | "eaddrinuse" | "enobufs")
}

async fn open_once(ctx: &Ctx, src: Option<Ipv4Addr>, query: &str) -> Result<Ws, String> {
    let sock = TcpSocket::new_v4().map_err(|e| io_kind(&e))?;
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip.into(), 0)).map_err(|e| io_kind(&e))?;
    }
    let _ = sock.set_nodelay(true);
    let stream = sock.connect(ctx.target.addr).await.map_err(|e| io_kind(&e))?;
    let _ = stream.set_nodelay(true);
    let url = format!("{}?{}{}vsn=2.0.0", ctx.target.url, ctx.base_query, query);
    let (ws, _resp) = tokio_tungstenite::client_async_with_config(url, stream, Some(ctx.ws_config))
        .await
        .map_err(|e| ws_kind(&e))?;
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
        let kind = match tokio::time::timeout(timeout, open_once(ctx, src, query)).await {
            Ok(Ok(ws)) => {
                ctx.rec().hist("connect").record(intended.elapsed().as_micros() as u64);
                let ip = src.map(|s| s.to_string()).unwrap_or_else(|| "default".into());
                *ctx.rec().by_source_ip.entry(ip).or_default() += 1;
                return Some(ws);
            }
            Ok(Err(kind)) => kind,
            Err(_) => "connect_timeout".to_string(),
        };
        ctx.rec().error(&format!("connect:{kind}"));
        let resource = is_resource_error(&kind);
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
    pub async fn send(&mut self, text: String) -> Result<(), String> {
        self.ws.send(Message::Text(text)).await.map_err(|e| ws_kind(&e))
    }
    pub async fn heartbeat(&mut self, ctx: &Ctx) -> Result<(), String> {
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
    Closed(String),
    Other,
}

pub fn classify(msg: Option<Result<Message, tungstenite::Error>>) -> WsEvent {
    match msg {
        Some(Ok(Message::Text(t))) => WsEvent::Text(t),
        Some(Ok(Message::Binary(_))) => {
            WsEvent::Other // the V2 binary serializer is not used by loadgen's pushes
        }
        Some(Ok(Message::Close(_))) | None => WsEvent::Closed("closed_by_server".into()),
        Some(Ok(_)) => WsEvent::Other,
        Some(Err(e)) => WsEvent::Closed(ws_kind(&e)),
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

/// How a worker talks to its coordinator.
pub enum Control {
    InProc {
        ready: Option<tokio::sync::oneshot::Sender<()>>,
        go: Option<tokio::sync::oneshot::Receiver<u64>>,
        drained: Option<tokio::sync::oneshot::Sender<()>>,
    },
    /// child process: lines on stdout, "GO <unix_us>" on stdin
    Stdio,
}

impl Control {
    pub async fn ready(&mut self) {
        match self {
            Control::InProc { ready, .. } => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            Control::Stdio => println!("READY"),
        }
    }
    pub async fn wait_go(&mut self) -> u64 {
        match self {
            Control::InProc { go, .. } => match go.take() {
                Some(rx) => rx.await.unwrap_or_else(|_| now_unix_us()),
                None => now_unix_us(),
            },
            Control::Stdio => {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
                loop {
                    match lines.next_line().await {
                        Ok(Some(l)) => {
                            if let Some(v) = l.strip_prefix("GO ") {
                                return v.trim().parse().unwrap_or_else(|_| now_unix_us());
                            }
                        }
                        _ => return now_unix_us(),
                    }
                }
            }
        }
    }
    pub async fn drained(&mut self) {
        match self {
            Control::InProc { drained, .. } => {
                if let Some(tx) = drained.take() {
                    let _ = tx.send(());
                }
            }
            Control::Stdio => println!("DRAINED"),
        }
    }
}

/// What a scenario gives the worker loop.
pub trait Scenario: Send + Sync + 'static {
    /// Spawn the local connection tasks; returns how many connections this worker opens.
    fn spawn(self: Arc<Self>, ctx: &Arc<Ctx>, tasks: &mut tokio::task::JoinSet<()>) -> usize;
    /// Called once the measurement phase starts (e.g. churn driver).
    fn on_go(self: Arc<Self>, _ctx: &Arc<Ctx>, _tasks: &mut tokio::task::JoinSet<()>) {}
    /// True when nothing is in flight any more (drain can stop early).
    fn drained(&self, ctx: &Ctx) -> bool;
    /// Record end-of-run counters.
    fn finish(&self, _ctx: &Ctx) {}
    /// Whether to run a Check phase (before closing) and whether it is complete.
    fn wants_check(&self) -> bool {
        false
    }
    fn check_done(&self) -> bool {
        true
    }
}

/// Run one worker: ramp, ready, go, measure, drain, close.
pub async fn run_worker<S: Scenario>(ctx: Arc<Ctx>, scenario: Arc<S>, mut ctl: Control) -> WorkerResult {
    let health_start = sysinfo::sample_self();
    let mut tasks = tokio::task::JoinSet::new();
    let total = scenario.clone().spawn(&ctx, &mut tasks) as u64;
    ctx.rec().add("connections_planned", total);

    // progress lines for the coordinator (child processes only)
    let progress_task = if matches!(ctl, Control::Stdio) {
        let c = ctx.clone();
        Some(tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_millis(1000));
            loop {
                iv.tick().await;
                println!(
                    "PROGRESS {} {} {} {} {}",
                    c.prog.established.load(Relaxed),
                    c.prog.failed.load(Relaxed),
                    c.prog.settled.load(Relaxed),
                    c.prog.deliveries.get(),
                    c.prog.open.load(Relaxed)
                );
            }
        }))
    } else {
        None
    };

    // ramp: until every local connection settled (joined or failed) or the ramp deadline
    loop {
        if ctx.prog.settled.load(Relaxed) >= total || Instant::now() >= ctx.ramp_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_done = now_unix_us();
    {
        let mut r = ctx.rec();
        r.mark_max("ramp_done_unix_us", ramp_done);
        r.add("connections_established", ctx.prog.established.load(Relaxed));
        let unsettled = total.saturating_sub(ctx.prog.settled.load(Relaxed));
        if unsettled > 0 {
            r.add("connections_unsettled_at_ramp_deadline", unsettled);
        }
    }
    let rss_ready = sysinfo::sample_self();
    ctl.ready().await;
    let go_unix = ctl.wait_go().await;
    let go_at = instant_at_unix(go_unix);
    tokio::time::sleep_until(go_at.into()).await;
    ctx.rec().mark_max("go_unix_us", go_unix);
    let _ = ctx.phase.send(Phase::Go { at: go_at, unix_us: go_unix });
    scenario.clone().on_go(&ctx, &mut tasks);

    let measure_end = go_at + Duration::from_secs_f64(ctx.common.duration);
    tokio::time::sleep_until(measure_end.into()).await;
    let drain_end = measure_end + Duration::from_secs_f64(ctx.common.drain);
    loop {
        let now = Instant::now();
        if now >= drain_end || scenario.drained(&ctx) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = now_unix_us();
    ctx.rec().mark_max("drained_unix_us", drained);
    ctl.drained().await;
    if scenario.wants_check() {
        let _ = ctx.phase.send(Phase::Check);
        let until = Instant::now() + Duration::from_secs(5);
        while !scenario.check_done() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    scenario.finish(&ctx);
    let _ = ctx.phase.send(Phase::Close);
    let close_deadline = Instant::now() + Duration::from_secs(10);
    while !tasks.is_empty() {
        match tokio::time::timeout_at(close_deadline.into(), tasks.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                ctx.rec().add("tasks_aborted_at_close", tasks.len() as u64);
                tasks.abort_all();
                // aborted connections merge what they recorded when their task is dropped
                let until = Instant::now() + Duration::from_secs(2);
                while let Ok(Some(_)) = tokio::time::timeout_at(until.into(), tasks.join_next()).await {}
                break;
            }
        }
    }
    if let Some(p) = progress_task {
        p.abort();
    }
    let health_end = sysinfo::sample_self();
    let mut r = std::mem::take(&mut *ctx.rec());
    r.procs.push(ProcInfo {
        worker: ctx.worker,
        pid: std::process::id(),
        connections: r.counter("connections_established"),
        health_start,
        health_end,
        cpu_us: health_end.cpu_us.saturating_sub(health_start.cpu_us),
        peak_rss_bytes: rss_ready.rss_bytes.max(health_end.rss_bytes),
    });
    r
}
