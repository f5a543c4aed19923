//! Process-wide counters, served as Prometheus text at `/metrics`.
//!
//! Counters are relaxed atomics bumped once per event (a delivery batch counts once per shard
//! and broadcast, not once per subscriber, so the hot loop touches no shared cache line).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Gauge {
        Gauge(AtomicI64::new(0))
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// A latency histogram with fixed buckets (seconds), Prometheus style (cumulative on render).
pub struct Histogram {
    /// Counts per bucket of [`LATENCY_BUCKETS_MS`], plus one for +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// Upper bounds of the latency buckets, in milliseconds.
pub const LATENCY_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram { buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS_MS.len() + 1], sum_us: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    pub fn observe(&self, d: std::time::Duration) {
        let ms = d.as_millis() as u64;
        let i = LATENCY_BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP phx_broker_{name} {help}\n# TYPE phx_broker_{name} histogram");
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "phx_broker_{name}_bucket{{le=\"{}\"}} {cumulative}", *b as f64 / 1000.0);
        }
        cumulative += self.buckets[LATENCY_BUCKETS_MS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "phx_broker_{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "phx_broker_{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "phx_broker_{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}

pub struct Metrics {
    pub connections: Gauge,
    pub connections_total: Counter,
    pub longpoll_sessions: Gauge,
    pub channels: Gauge,
    pub joins: Counter,
    pub join_errors: Counter,
    pub channel_crashes: Counter,
    pub messages_in: Counter,
    pub broadcasts: Counter,
    pub broadcast_encodes: Counter,
    pub deliveries: Counter,
    pub slow_consumers: Counter,
    pub frames_dropped: Counter,
    pub decode_errors: Counter,
    pub accept_errors: Counter,
    pub refused_at_capacity: Counter,
    pub presence_diffs: Counter,
    /// Consumers closed because the process-wide outbound budget was exceeded.
    pub budget_closes: Counter,
    /// Client messages refused for a limit (too large to fan out, field too long, rate).
    pub refused_messages: Counter,
    /// LongPoll session creations refused (per-address rate or session pool).
    pub longpoll_refused: Counter,
    /// Bytes queued for clients, all outboxes together (set by the outbound budget's reaper).
    pub outbound_queued_bytes: Gauge,
    /// Webhook calls made, and those that failed (timeout, unreachable, non-2xx, garbage).
    pub webhook_calls: Counter,
    pub webhook_failures: Counter,
    pub webhook_latency: Histogram,
    /// Client messages and joins refused by a per-connection rate limit.
    pub rate_limited: Counter,
}

pub static METRICS: Metrics = Metrics {
    connections: Gauge::new(),
    connections_total: Counter::new(),
    longpoll_sessions: Gauge::new(),
    channels: Gauge::new(),
    joins: Counter::new(),
    join_errors: Counter::new(),
    channel_crashes: Counter::new(),
    messages_in: Counter::new(),
    broadcasts: Counter::new(),
    broadcast_encodes: Counter::new(),
    deliveries: Counter::new(),
    slow_consumers: Counter::new(),
    frames_dropped: Counter::new(),
    decode_errors: Counter::new(),
    accept_errors: Counter::new(),
    refused_at_capacity: Counter::new(),
    presence_diffs: Counter::new(),
    budget_closes: Counter::new(),
    refused_messages: Counter::new(),
    longpoll_refused: Counter::new(),
    outbound_queued_bytes: Gauge::new(),
    webhook_calls: Counter::new(),
    webhook_failures: Counter::new(),
    webhook_latency: Histogram::new(),
    rate_limited: Counter::new(),
};

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut g = |name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP phx_broker_{name} {help}\n# TYPE phx_broker_{name} gauge\nphx_broker_{name} {v}");
        };
        g("connections", "Open WebSocket connections.", self.connections.get());
        g("longpoll_sessions", "Live LongPoll sessions.", self.longpoll_sessions.get());
        g("channels", "Joined channels.", self.channels.get());
        g("outbound_queued_bytes", "Bytes queued for clients (a shared frame counts in each queue).", self.outbound_queued_bytes.get());
        let counters: [(&str, &str, &Counter); 20] = [
            ("connections_total", "WebSocket connections accepted.", &self.connections_total),
            ("joins_total", "Successful joins.", &self.joins),
            ("join_errors_total", "Joins refused or crashed.", &self.join_errors),
            ("channel_crashes_total", "Channels that crashed (phx_error).", &self.channel_crashes),
            ("messages_in_total", "Client messages decoded.", &self.messages_in),
            ("broadcasts_total", "Broadcasts dispatched.", &self.broadcasts),
            ("broadcast_encodes_total", "Fastlane frames encoded (once per serializer per broadcast).", &self.broadcast_encodes),
            ("deliveries_total", "Fastlane frames queued to subscribers.", &self.deliveries),
            ("slow_consumers_total", "Connections closed because their outbox overflowed.", &self.slow_consumers),
            ("frames_dropped_total", "Frames that could not be encoded for a subscriber (binary on V1/LongPoll).", &self.frames_dropped),
            ("decode_errors_total", "Undecodable client frames (socket closed 1011).", &self.decode_errors),
            ("accept_errors_total", "accept() failures (EMFILE and others).", &self.accept_errors),
            ("refused_at_capacity_total", "Connections refused with 503 at the connection limit.", &self.refused_at_capacity),
            ("presence_diffs_total", "presence_diff broadcasts sent.", &self.presence_diffs),
            ("budget_closes_total", "Stalled consumers closed (1008) because the outbound budget was exceeded.", &self.budget_closes),
            ("refused_messages_total", "Client messages refused for a size limit.", &self.refused_messages),
            ("longpoll_refused_total", "LongPoll sessions refused (address rate or session pool).", &self.longpoll_refused),
            ("webhook_calls_total", "Webhook calls made (connect, join, event).", &self.webhook_calls),
            ("webhook_failures_total", "Webhook calls that failed (timeout, unreachable, non-2xx, not JSON).", &self.webhook_failures),
            ("rate_limited_total", "Client messages and joins refused by a per-connection rate limit.", &self.rate_limited),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(out, "# HELP phx_broker_{name} {help}\n# TYPE phx_broker_{name} counter\nphx_broker_{name} {}", c.get());
        }
        self.webhook_latency.render(&mut out, "webhook_latency_seconds", "Webhook call latency, retries included.");
        out
    }
}
