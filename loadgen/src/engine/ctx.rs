//! What one worker process shares between its connection tasks and its run control: the
//! context ([`Ctx`]: flags, target, phase, result), the live progress counters, and the clock
//! helpers (intended times are Unix µs so that worker processes agree on them).

use crate::error::SetupError;
use crate::flags::{parse_source_ips, Common};
use crate::result::WorkerResult;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use super::ports::Ports;
use crate::local::{stripe, Local, Shards, STRIPES};

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

#[derive(Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

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
    /// Largest delivery latency seen (µs): how long a worker without publishers keeps waiting
    /// in the drain after its last delivery.
    pub max_delivery_latency_us: Striped,
    pub sent: AtomicU64,
    /// Pushes answered, or given up on (untracked, or their connection closed): the drain of a
    /// publishing scenario waits until this reaches `sent`.
    pub pushes_settled: AtomicU64,
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
    /// the `Host` header: host, or host:port as in the URL
    pub host: String,
    /// the path, from `/` (no query)
    pub path: String,
}

/// Parse `ws://host:port/path` and resolve host:port.
pub async fn resolve_target(url: &str) -> Result<Target, SetupError> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| SetupError::UnsupportedUrl(url.to_string()))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let hp = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") };
    let addr = tokio::net::lookup_host(&hp)
        .await
        .map_err(|source| SetupError::Resolve { host: hp.clone(), source })?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| SetupError::NoIpv4 { host: hp.clone() })?;
    let path = path.split('?').next().unwrap_or("/").to_string();
    let url = format!("ws://{hostport}{path}");
    Ok(Target { addr, url, host: hostport.to_string(), path })
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
    /// Every `--url` (several broker nodes of one cluster); connection `i` opens on
    /// `targets[i % len]`.
    pub targets: Vec<Target>,
    pub src_ips: Vec<Ipv4Addr>,
    /// local port choice (see `ports`)
    pub ports: Ports,
    /// base query (connect params), each "k=v&"
    pub base_query: String,
    pub rec: Mutex<WorkerResult>,
    /// per-thread buffers of what connections record per received frame, merged into `rec`
    /// in batches and at the end (see `local`)
    pub shards: Shards,
    pub prog: Progress,
    pub phase: watch::Sender<Phase>,
    pub t0: Instant,
    pub t0_unix: u64,
    pub ramp_deadline: Instant,
    pub worker: u32,
    pub workers: u32,
}

impl Ctx {
    pub async fn new(common: Common, t0_unix: u64) -> Result<Arc<Ctx>, SetupError> {
        let mut targets = Vec::new();
        for url in common.url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            targets.push(resolve_target(url).await?);
        }
        if targets.is_empty() {
            return Err(SetupError::UnsupportedUrl(common.url.clone()));
        }
        let src_ips = match &common.source_ips {
            Some(s) => parse_source_ips(s)?,
            None => vec![],
        };
        let (worker, workers) = match &common.worker {
            Some(w) => {
                let (a, b) = w.split_once('/').ok_or(SetupError::BadWorker)?;
                (a.parse().map_err(|_| SetupError::BadWorker)?, b.parse().map_err(|_| SetupError::BadWorker)?)
            }
            None => (0, 1),
        };
        let mut base_query = String::new();
        for p in &common.params {
            let (k, v) = p.split_once('=').ok_or_else(|| SetupError::BadParam(p.clone()))?;
            base_query.push_str(&format!("{}={}&", uri_component(k), uri_component(v)));
        }
        // the same start in the port range for every worker process of a run, another per run
        let ports = Ports::from_system(src_ips.len(), t0_unix);
        let t0 = instant_at_unix(t0_unix);
        let ramp_deadline = t0 + Duration::from_secs_f64(common.ramp_timeout);
        let (phase, _) = watch::channel(Phase::Ramp);
        Ok(Arc::new(Ctx {
            common,
            targets,
            src_ips,
            ports,
            base_query,
            rec: Mutex::new(WorkerResult::default()),
            shards: Shards::default(),
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

    /// Merge what the per-thread shards hold into the result.
    pub fn flush_shards(&self) {
        self.shards.flush_into(&self.rec);
    }

    /// The node connection `global_idx` opens on.
    pub fn target(&self, global_idx: usize) -> &Target {
        &self.targets[global_idx % self.targets.len()]
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

/// What a connection records per frame, into its thread's shard of the worker's [`Ctx`].
pub struct ConnRec {
    ctx: Arc<Ctx>,
}

impl ConnRec {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        ConnRec { ctx }
    }
    /// Record several things under one lock of the shard.
    #[inline]
    pub fn with<R>(&mut self, f: impl FnOnce(&mut Local) -> R) -> R {
        self.ctx.shards.with(&self.ctx.rec, f)
    }
    pub fn add(&mut self, name: &'static str, n: u64) {
        self.with(|l| l.add(name, n))
    }
    pub fn error(&mut self, kind: &'static str) {
        self.with(|l| l.error(kind))
    }
    #[inline]
    pub fn delivery(&mut self, d: crate::local::Delivery) {
        self.with(|l| l.delivery(d));
    }
    pub fn sample(&mut self, hist: &'static str, v: u64) {
        self.with(|l| l.sample(hist, v));
    }
}
