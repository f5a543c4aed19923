//! Command line. Every flag states its unit.

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug)]
#[command(name = "loadgen", version, about = "Open-loop load generator for Phoenix Channels + Presence servers (V2 JSON serializer over WebSocket)")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Ramp to N connections at a given rate, each joining T topics; connect/join latency,
    /// failures by kind, time to all-connected; then hold them (heartbeating) for --duration.
    Connect(ConnectArgs),
    /// N subscribers over T topics, P publishers pushing at a total rate; the server relays
    /// every push to every subscriber of the topic. Per-delivery latency, time until the last
    /// subscriber has each broadcast, deliveries/s, lost/duplicated/out-of-order deliveries.
    Fanout(FanoutArgs),
    /// Rooms of K members with Presence; members leave and rejoin at a churn rate.
    /// presence_diff frames/s, convergence of members' views (phoenix.js syncDiff model),
    /// presence_state size and time for a joiner.
    Presence(PresenceArgs),
    /// Many small rooms; every member posts at random (Poisson) intervals and receives the
    /// room's messages.
    Chat(ChatArgs),
    /// Compare two JSON reports; exit 1 if a metric regressed by more than --max-regression.
    Compare(CompareArgs),
    /// Summarize repeated runs: median, min, max and spread of every metric, per label.
    Summarize(SummarizeArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SummarizeArgs {
    /// Reports (JSON) to summarize; grouped by --label (else by scenario).
    #[arg(required = true)]
    pub reports: Vec<String>,
    /// Write the summary JSON here.
    #[arg(long)]
    pub out: Option<String>,
    /// Write a Markdown table of the main metrics here.
    #[arg(long)]
    pub markdown: Option<String>,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct Common {
    /// WebSocket endpoint: the socket path plus "/websocket". "vsn=2.0.0" and the connect
    /// params are appended as the query string.
    #[arg(long, default_value = "ws://127.0.0.1:4000/socket/websocket")]
    pub url: String,
    /// Connect param KEY=VALUE added to every connection's query string (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Topic name prefix; topics are PREFIX0, PREFIX1, ...
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// Worker processes (each holds at most ~19,900 sockets); results are merged.
    #[arg(long, default_value_t = 1)]
    pub procs: u32,
    /// Tokio worker threads per process (default: number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Local source addresses to spread connections over: "127.0.0.2,127.0.0.3",
    /// a range "127.0.0.2-127.0.0.9", or a start and count "127.0.0.2+8".
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Connection ramp rate, connections per second (all processes together).
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,
    /// Timeout for TCP connect + WebSocket handshake, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
    /// Timeout for a join reply, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub join_timeout_ms: u64,
    /// Further attempts after a failed connect or join (count). Resource errors
    /// (EMFILE, EADDRNOTAVAIL) are retried with backoff until --ramp-timeout instead.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Deadline for the ramp (all connections established and joined), seconds.
    #[arg(long, default_value_t = 120.0)]
    pub ramp_timeout: f64,
    /// Measurement phase length (publishing / churn / hold), seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// After the measurement phase, wait at most this long for in-flight deliveries, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Overall deadline for the whole run; the process exits with an error past it, seconds.
    #[arg(long, default_value_t = 900.0)]
    pub deadline: f64,
    /// Heartbeat interval, seconds (phoenix.js: 30).
    #[arg(long, default_value_t = 30.0)]
    pub heartbeat: f64,
    /// Server process id: its RSS and CPU are sampled from /proc/PID/{stat,status}.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write the JSON report (schema_version 1) to this file.
    #[arg(long)]
    pub out: Option<String>,
    /// Write an SVG plot of latency percentiles over time to this file.
    #[arg(long)]
    pub svg: Option<String>,
    /// Free-form label stored in the report.
    #[arg(long)]
    pub label: Option<String>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Random seed (choice of churners, Poisson intervals).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Internal: run as worker I of N (re-exec by --procs).
    #[arg(long, hide = true)]
    pub worker: Option<String>,
    /// Internal: common ramp start time, Unix microseconds.
    #[arg(long, hide = true)]
    pub t0_unix_us: Option<u64>,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open (count, all processes together).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: usize,
    /// Topics each connection joins (count).
    #[arg(long, default_value_t = 1)]
    pub joins_per_conn: usize,
    /// Distinct topics (count); connection i joins topics (i*J + j) mod T.
    #[arg(long, default_value_t = 1)]
    pub topics: usize,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Subscriber connections (count); subscriber i joins topic i mod T.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub subscribers: usize,
    /// Topics (count).
    #[arg(long, default_value_t = 1)]
    pub topics: usize,
    /// Publisher connections (count); each publishes to its share of the topics.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Publish rate, broadcasts per second (all publishers together).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Approximate payload size, bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Event name of the pushes.
    #[arg(long, default_value = "msg")]
    pub event: String,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct PresenceArgs {
    #[command(flatten)]
    pub common: Common,
    /// Rooms (count).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Members per room (count); one connection per member, presence key = connect param
    /// `user_id`.
    #[arg(long, short = 'k', default_value_t = 100)]
    pub room_size: usize,
    /// Churn rate, leave+rejoin operations per second (all rooms together).
    #[arg(long, default_value_t = 10.0)]
    pub churn_rate: f64,
    /// Time between a churning member's leave and its rejoin, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub rejoin_delay_ms: u64,
    /// Members per room that keep a full phoenix.js Presence model and measure convergence
    /// (count; the others only count frames, to keep loadgen memory bounded).
    #[arg(long, default_value_t = 20)]
    pub observers: usize,
    /// Connect param name carrying the presence key.
    #[arg(long, default_value = "user_id")]
    pub key_param: String,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct ChatArgs {
    #[command(flatten)]
    pub common: Common,
    /// Rooms (count).
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Members per room (count); each member is one connection joined to its room.
    #[arg(long, short = 'k', default_value_t = 10)]
    pub room_size: usize,
    /// Mean interval between a member's posts, milliseconds (exponentially distributed).
    #[arg(long, default_value_t = 5000.0)]
    pub post_interval_ms: f64,
    /// Approximate payload size, bytes.
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// Event name of the posts.
    #[arg(long, default_value = "new_msg")]
    pub event: String,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Baseline report (JSON).
    pub base: String,
    /// New report (JSON).
    pub new: String,
    /// Allowed worsening per metric, percent ("10%" or "10").
    #[arg(long, default_value = "10%")]
    pub max_regression: String,
    /// Ignore latency differences smaller than this, milliseconds (noise floor).
    #[arg(long, default_value_t = 0.0)]
    pub min_abs_ms: f64,
    /// Report but never gate on metrics whose name contains this (repeatable), e.g. "_max_ms".
    #[arg(long)]
    pub ignore: Vec<String>,
}

/// Parse "127.0.0.2,127.0.0.3", "127.0.0.2-127.0.0.9" or "127.0.0.2+8".
pub fn parse_source_ips(s: &str) -> Result<Vec<std::net::Ipv4Addr>, String> {
    use std::net::Ipv4Addr;
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().map_err(|e| format!("{part}: {e}"))?;
            let b: Ipv4Addr = b.trim().parse().map_err(|e| format!("{part}: {e}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 65_536 {
                return Err(format!("{part}: bad range"));
            }
            out.extend((a..=b).map(Ipv4Addr::from));
        } else if let Some((a, n)) = part.split_once('+') {
            let a: Ipv4Addr = a.trim().parse().map_err(|e| format!("{part}: {e}"))?;
            let n: u32 = n.trim().parse().map_err(|e| format!("{part}: {e}"))?;
            if n == 0 || n > 65_536 {
                return Err(format!("{part}: bad count"));
            }
            out.extend((0..n).map(|i| Ipv4Addr::from(u32::from(a) + i)));
        } else {
            out.push(part.parse().map_err(|e| format!("{part}: {e}"))?);
        }
    }
    if out.is_empty() {
        return Err("no source address".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn source_ip_forms() {
        let v = parse_source_ips("127.0.0.2,127.0.0.3").unwrap();
        assert_eq!(v.len(), 2);
        let v = parse_source_ips("127.0.0.2-127.0.0.9").unwrap();
        assert_eq!(v.len(), 8);
        assert_eq!(v[7].to_string(), "127.0.0.9");
        let v = parse_source_ips("127.0.0.250+10").unwrap();
        assert_eq!(v[9].to_string(), "127.0.1.3");
        assert!(parse_source_ips("x").is_err());
        assert!(parse_source_ips("127.0.0.9-127.0.0.2").is_err());
    }
    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["loadgen", "fanout", "-n", "5", "--rate", "2.5", "--worker", "0/2"]).unwrap();
        match c.cmd {
            Cmd::Fanout(f) => {
                assert_eq!(f.subscribers, 5);
                assert_eq!(f.common.worker.as_deref(), Some("0/2"));
            }
            _ => panic!(),
        }
    }
}
