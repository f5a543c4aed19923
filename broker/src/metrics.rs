//! Process-wide metrics, served as Prometheus text at `/metrics`.
//!
//! Every metric is a [`prometheus`] collector registered in one [`Registry`]; the types here are
//! thin wrappers that keep the crate's call sites short (`METRICS.joins.inc()`). Bumping a
//! counter or a gauge is one relaxed atomic add: no lock, no allocation (the registry's lock is
//! only taken by [`Metrics::render`]). Hot paths still bump once per event (a delivery batch
//! counts once per shard and broadcast, not once per subscriber, so the hot loop touches no
//! shared cache line).

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus::{HistogramOpts, IntCounter, IntGauge, Opts, Registry, TextEncoder};

/// A monotonic counter (a registered [`IntCounter`]).
pub struct Counter(IntCounter);

impl Counter {
    fn registered(registry: &Registry, name: &str, help: &str) -> Counter {
        let c = IntCounter::with_opts(Opts::new(name, help)).expect("valid counter");
        registry.register(Box::new(c.clone())).expect("metric registered once");
        Counter(c)
    }

    #[inline]
    pub fn inc(&self) {
        self.0.inc();
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A gauge (a registered [`IntGauge`]).
///
/// [`Gauge::new`] is `const` so that a free-standing gauge can live in a `static` (tests of code
/// that takes a `&'static Gauge`); such a gauge is registered nowhere and never rendered.
pub struct Gauge(OnceLock<IntGauge>);

impl Gauge {
    /// A gauge registered nowhere (created on first use).
    pub const fn new() -> Gauge {
        Gauge(OnceLock::new())
    }

    fn registered(registry: &Registry, name: &str, help: &str) -> Gauge {
        let g = IntGauge::with_opts(Opts::new(name, help)).expect("valid gauge");
        registry.register(Box::new(g.clone())).expect("metric registered once");
        Gauge(OnceLock::from(g))
    }

    /// The underlying gauge: one acquire load once initialized (registered gauges always are).
    #[inline]
    fn gauge(&self) -> &IntGauge {
        self.0.get_or_init(|| IntGauge::new("phx_broker_unregistered", "A gauge registered nowhere.").expect("valid gauge"))
    }

    #[inline]
    pub fn inc(&self) {
        self.gauge().inc();
    }

    #[inline]
    pub fn dec(&self) {
        self.gauge().dec();
    }

    pub fn get(&self) -> i64 {
        self.gauge().get()
    }

    #[inline]
    pub fn set(&self, v: i64) {
        self.gauge().set(v);
    }
}

impl Default for Gauge {
    fn default() -> Gauge {
        Gauge::new()
    }
}

/// Upper bounds of the latency buckets, in seconds (1 ms … 5 s; `+Inf` is implied).
pub const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Upper bounds of the fan-out completion buckets, in seconds: finer than [`LATENCY_BUCKETS`]
/// between 10 ms and 1 s, where a broadcast to tens of thousands of subscribers completes.
pub const FANOUT_BUCKETS: [f64; 24] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.0, 5.0, 10.0,
];

/// A latency histogram in seconds (a registered [`prometheus::Histogram`] with
/// [`LATENCY_BUCKETS`], or other buckets).
pub struct Histogram(prometheus::Histogram);

impl Histogram {
    fn registered(registry: &Registry, name: &str, help: &str) -> Histogram {
        Histogram::with_buckets(registry, name, help, &LATENCY_BUCKETS)
    }

    fn with_buckets(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let h = prometheus::Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("valid histogram");
        registry.register(Box::new(h.clone())).expect("metric registered once");
        Histogram(h)
    }

    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.get_sample_count()
    }
}

pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub connections_total: Counter,
    pub longpoll_sessions: Gauge,
    pub channels: Gauge,
    pub joins: Counter,
    pub join_errors: Counter,
    pub channel_crashes: Counter,
    pub messages_in: Counter,
    /// Frames handed to clients: WebSocket frames written, LongPoll messages returned by polls.
    pub messages_out: Counter,
    /// Bytes handed to clients: WebSocket bytes written, LongPoll message bytes returned by polls.
    pub bytes_out: Counter,
    pub broadcasts: Counter,
    pub broadcast_encodes: Counter,
    /// Per broadcast with subscribers here: from its creation on this node to the moment the
    /// last copy of its frame was written (or handed to a LongPoll) and dropped.
    pub fanout_completion: Histogram,
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
    /// Cluster (Redis bus): broadcasts published for other nodes, received from them, and
    /// those not published (queue full or Redis unreachable: the gap).
    pub cluster_published: Counter,
    pub cluster_received: Counter,
    pub cluster_publish_dropped: Counter,
    /// Redis connection losses, and whether the bus is connected now (1) or not (0).
    pub cluster_disconnects: Counter,
    pub cluster_connected: Gauge,
    /// Redis channels this node is subscribed to (topics with local subscribers, plus its own
    /// presence channels).
    pub cluster_subscriptions: Gauge,
    /// Presence replication messages sent and received, `transfer_ack`s sent, messages dropped
    /// because a shard was behind, and messages ignored (another shard count, a duplicate name).
    pub cluster_presence_sent: Counter,
    pub cluster_presence_received: Counter,
    pub cluster_presence_transfers: Counter,
    pub cluster_presence_dropped: Counter,
    pub cluster_presence_mismatched: Counter,
}

/// The process's metrics, registered on first use.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let counter = |name: &str, help: &str| Counter::registered(&r, &format!("phx_broker_{name}"), help);
        let gauge = |name: &str, help: &str| Gauge::registered(&r, &format!("phx_broker_{name}"), help);
        Metrics {
            connections: gauge("connections", "Open WebSocket connections."),
            longpoll_sessions: gauge("longpoll_sessions", "Live LongPoll sessions."),
            channels: gauge("channels", "Joined channels."),
            outbound_queued_bytes: gauge("outbound_queued_bytes", "Bytes queued for clients (a shared frame counts in each queue)."),
            connections_total: counter("connections_total", "WebSocket connections accepted."),
            joins: counter("joins_total", "Successful joins."),
            join_errors: counter("join_errors_total", "Joins refused or crashed."),
            channel_crashes: counter("channel_crashes_total", "Channels that crashed (phx_error)."),
            messages_in: counter("messages_in_total", "Client messages decoded."),
            messages_out: counter("messages_out_total", "Frames handed to clients (WebSocket frames written, LongPoll messages returned by polls)."),
            bytes_out: counter("bytes_out_total", "Bytes handed to clients (WebSocket bytes written, LongPoll message bytes returned by polls)."),
            broadcasts: counter("broadcasts_total", "Broadcasts dispatched."),
            broadcast_encodes: counter("broadcast_encodes_total", "Fastlane frames encoded (once per serializer per broadcast)."),
            deliveries: counter("deliveries_total", "Fastlane frames queued to subscribers."),
            slow_consumers: counter("slow_consumers_total", "Connections closed because their outbox overflowed."),
            frames_dropped: counter("frames_dropped_total", "Frames that could not be encoded for a subscriber (binary on V1/LongPoll)."),
            decode_errors: counter("decode_errors_total", "Undecodable client frames (socket closed 1011)."),
            accept_errors: counter("accept_errors_total", "accept() failures (EMFILE and others)."),
            refused_at_capacity: counter("refused_at_capacity_total", "Connections refused with 503 at the connection limit."),
            presence_diffs: counter("presence_diffs_total", "presence_diff broadcasts sent."),
            budget_closes: counter("budget_closes_total", "Stalled consumers closed (1008) because the outbound budget was exceeded."),
            refused_messages: counter("refused_messages_total", "Client messages refused for a size limit."),
            longpoll_refused: counter("longpoll_refused_total", "LongPoll sessions refused (address rate or session pool)."),
            webhook_calls: counter("webhook_calls_total", "Webhook calls made (connect, join, event)."),
            webhook_failures: counter("webhook_failures_total", "Webhook calls that failed (timeout, unreachable, non-2xx, not JSON)."),
            rate_limited: counter("rate_limited_total", "Client messages and joins refused by a per-connection rate limit."),
            cluster_published: counter("cluster_published_total", "Messages published on the cluster bus (broadcasts and presence)."),
            cluster_received: counter("cluster_received_total", "Broadcasts received from other nodes."),
            cluster_publish_dropped: counter("cluster_publish_dropped_total", "Broadcasts not published to other nodes (bus queue full or Redis unreachable)."),
            cluster_disconnects: counter("cluster_disconnects_total", "Redis connection losses."),
            cluster_connected: gauge("cluster_connected", "1 while the Redis bus is connected."),
            cluster_subscriptions: gauge("cluster_subscriptions", "Redis channels subscribed (topics with local subscribers + presence channels)."),
            cluster_presence_sent: counter("cluster_presence_sent_total", "Presence heartbeats/deltas published."),
            cluster_presence_received: counter("cluster_presence_received_total", "Presence replication messages received."),
            cluster_presence_transfers: counter("cluster_presence_transfers_total", "Presence transfer_acks (full extracts) sent."),
            cluster_presence_dropped: counter("cluster_presence_dropped_total", "Presence replication messages dropped (shard behind)."),
            cluster_presence_mismatched: counter("cluster_presence_mismatched_total", "Presence messages ignored (other shard count or duplicate node name)."),
            fanout_completion: Histogram::with_buckets(
                &r,
                "phx_broker_fanout_completion_seconds",
                "Per broadcast with local subscribers: from its receipt on this node (a channel's broadcast, an HTTP API request, a message from another node) until its frame was written to the last subscriber.",
                &FANOUT_BUCKETS,
            ),
            webhook_latency: Histogram::registered(&r, "phx_broker_webhook_latency_seconds", "Webhook call latency, retries included."),
            registry: r,
        }
    }

    /// Prometheus text exposition (format 0.0.4), families sorted by name.
    pub fn render(&self) -> String {
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of an unlabelled sample line, as printed.
    fn sample<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
    }

    #[test]
    fn every_metric_is_rendered_with_its_type_and_help() {
        // A private registry (METRICS is shared with the crate's other tests).
        let m = Metrics::new();
        m.joins.add(3);
        m.connections.inc();
        m.connections.inc();
        m.connections.dec();
        m.outbound_queued_bytes.set(-7);
        let text = m.render();
        for (name, kind) in [
            ("connections", "gauge"),
            ("longpoll_sessions", "gauge"),
            ("channels", "gauge"),
            ("outbound_queued_bytes", "gauge"),
            ("connections_total", "counter"),
            ("joins_total", "counter"),
            ("join_errors_total", "counter"),
            ("channel_crashes_total", "counter"),
            ("messages_in_total", "counter"),
            ("messages_out_total", "counter"),
            ("bytes_out_total", "counter"),
            ("broadcasts_total", "counter"),
            ("broadcast_encodes_total", "counter"),
            ("deliveries_total", "counter"),
            ("slow_consumers_total", "counter"),
            ("frames_dropped_total", "counter"),
            ("decode_errors_total", "counter"),
            ("accept_errors_total", "counter"),
            ("refused_at_capacity_total", "counter"),
            ("presence_diffs_total", "counter"),
            ("budget_closes_total", "counter"),
            ("refused_messages_total", "counter"),
            ("longpoll_refused_total", "counter"),
            ("webhook_calls_total", "counter"),
            ("webhook_failures_total", "counter"),
            ("rate_limited_total", "counter"),
            ("cluster_published_total", "counter"),
            ("cluster_received_total", "counter"),
            ("cluster_publish_dropped_total", "counter"),
            ("cluster_disconnects_total", "counter"),
            ("cluster_connected", "gauge"),
            ("cluster_subscriptions", "gauge"),
            ("cluster_presence_sent_total", "counter"),
            ("cluster_presence_received_total", "counter"),
            ("cluster_presence_transfers_total", "counter"),
            ("cluster_presence_dropped_total", "counter"),
            ("cluster_presence_mismatched_total", "counter"),
            ("webhook_latency_seconds", "histogram"),
            ("fanout_completion_seconds", "histogram"),
        ] {
            assert!(text.contains(&format!("# TYPE phx_broker_{name} {kind}\n")), "{name} {kind} missing:\n{text}");
            assert!(text.contains(&format!("# HELP phx_broker_{name} ")), "{name} has no help");
        }
        assert_eq!(text.matches("# TYPE ").count(), 39, "{text}");
        // Integer metrics print as integers (clients parse `^name (\d+)$`).
        assert_eq!(sample(&text, "phx_broker_joins_total"), Some("3"));
        assert_eq!(sample(&text, "phx_broker_channels"), Some("0"));
        assert_eq!(sample(&text, "phx_broker_connections"), Some("1"));
        assert_eq!(sample(&text, "phx_broker_outbound_queued_bytes"), Some("-7"));
        assert_eq!((m.joins.get(), m.connections.get()), (3, 1));
    }

    #[test]
    fn latency_histogram_is_in_seconds_with_cumulative_buckets() {
        let m = Metrics::new();
        m.webhook_latency.observe(Duration::from_micros(1500));
        m.webhook_latency.observe(Duration::from_millis(300));
        m.webhook_latency.observe(Duration::from_secs(9));
        assert_eq!(m.webhook_latency.count(), 3);
        let text = m.render();
        let bucket = |le: &str| sample(&text, &format!("phx_broker_webhook_latency_seconds_bucket{{le=\"{le}\"}}"));
        assert_eq!(bucket("0.001"), Some("0"));
        assert_eq!(bucket("0.002"), Some("1"));
        assert_eq!(bucket("0.25"), Some("1"));
        assert_eq!(bucket("0.5"), Some("2"));
        assert_eq!(bucket("5"), Some("2"));
        assert_eq!(bucket("+Inf"), Some("3"));
        assert_eq!(text.matches("phx_broker_webhook_latency_seconds_bucket{").count(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(sample(&text, "phx_broker_webhook_latency_seconds_count"), Some("3"));
        let sum: f64 = sample(&text, "phx_broker_webhook_latency_seconds_sum").unwrap().parse().unwrap();
        assert!((sum - 9.3015).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn the_global_registry_renders() {
        METRICS.messages_out.add(2);
        METRICS.bytes_out.add(10);
        assert!(METRICS.messages_out.get() >= 2);
        let text = METRICS.render();
        assert!(text.contains("# TYPE phx_broker_bytes_out_total counter\n"));
        assert!(text.contains("# TYPE phx_broker_webhook_latency_seconds histogram\n"));
    }

    #[test]
    fn a_free_standing_gauge_works() {
        static G: Gauge = Gauge::new();
        G.inc();
        G.set(5);
        G.dec();
        assert_eq!(G.get(), 4);
    }
}
