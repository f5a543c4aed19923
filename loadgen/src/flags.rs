//! The flags every scenario shares (`Common`, flattened into each scenario's arguments) and the
//! parser of `--source-ips`. Every flag states its unit.

use crate::error::SourceIpError;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct Common {
    /// WebSocket endpoint: the socket path plus "/websocket". "vsn=2.0.0" and the connect
    /// params are appended as the query string. Several, comma-separated (the nodes of one
    /// cluster): connection i opens on the (i mod count)-th.
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
    /// The server's Prometheus metrics, read at the start and end of the measured phase for
    /// its own fan-out completion time (`phx_broker_fanout_completion_seconds`; a server
    /// without it reports nothing). Default: `http://HOST:PORT/metrics` of the first --url;
    /// `none` to not ask.
    #[arg(long)]
    pub server_metrics: Option<String>,
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

/// Parse "127.0.0.2,127.0.0.3", "127.0.0.2-127.0.0.9" or "127.0.0.2+8".
pub fn parse_source_ips(s: &str) -> Result<Vec<Ipv4Addr>, SourceIpError> {
    let addr = |part: &str, a: &str| -> Result<Ipv4Addr, SourceIpError> {
        a.trim().parse().map_err(|source| SourceIpError::Addr { part: part.to_string(), source })
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (u32::from(addr(part, a)?), u32::from(addr(part, b)?));
            if b < a || b - a > 65_536 {
                return Err(SourceIpError::BadRange(part.to_string()));
            }
            out.extend((a..=b).map(Ipv4Addr::from));
        } else if let Some((a, n)) = part.split_once('+') {
            let a = addr(part, a)?;
            let n: u32 = n.trim().parse().map_err(|source| SourceIpError::Count { part: part.to_string(), source })?;
            if n == 0 || n > 65_536 {
                return Err(SourceIpError::BadCount(part.to_string()));
            }
            out.extend((0..n).map(|i| Ipv4Addr::from(u32::from(a) + i)));
        } else {
            out.push(part.parse().map_err(|source| SourceIpError::Addr { part: part.to_string(), source })?);
        }
    }
    if out.is_empty() {
        return Err(SourceIpError::Empty);
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
        assert!(matches!(parse_source_ips("x"), Err(SourceIpError::Addr { .. })));
        assert!(matches!(parse_source_ips("127.0.0.9-127.0.0.2"), Err(SourceIpError::BadRange(_))));
        assert!(matches!(parse_source_ips("127.0.0.1+0"), Err(SourceIpError::BadCount(_))));
        assert!(matches!(parse_source_ips(" , "), Err(SourceIpError::Empty)));
        assert_eq!(parse_source_ips("1.2.3").unwrap_err().to_string(), "1.2.3: invalid IPv4 address syntax");
    }
}
