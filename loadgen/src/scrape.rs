//! The server's own fan-out completion time, read from its Prometheus `/metrics`: the broker's
//! `phx_broker_fanout_completion_seconds` histogram (per broadcast with local subscribers, from
//! its receipt to the write of its frame to the last subscriber). Scraped at the start and the
//! end of the measured phase; the difference gives the phase's broadcasts. Beside the loadgen's
//! own time to the last subscriber, it shows which share of a broadcast's latency is the
//! server's and which the clients' (the loadgen's reading included).
//!
//! A server without that metric (Phoenix itself, say) simply has none: nothing is reported.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub const METRIC: &str = "phx_broker_fanout_completion_seconds";

/// One scrape of a Prometheus histogram: cumulative buckets `(le, count)` in order, sum, count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histo {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Histo {
    /// The histogram `name` in a Prometheus text exposition, if present.
    pub fn parse(text: &str, name: &str) -> Option<Histo> {
        let mut h = Histo::default();
        let mut seen = false;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else { continue };
            let (key, value) = match rest.rsplit_once(' ') {
                Some(kv) => kv,
                None => continue,
            };
            let Ok(v) = value.trim().parse::<f64>() else { continue };
            if let Some(labels) = key.strip_prefix("_bucket{") {
                let le = labels.find("le=\"").and_then(|i| labels[i + 4..].split('"').next());
                let le = match le {
                    Some("+Inf") => f64::INFINITY,
                    Some(s) => match s.parse::<f64>() {
                        Ok(x) => x,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                h.buckets.push((le, v));
                seen = true;
            } else if key == "_sum" {
                h.sum = v;
                seen = true;
            } else if key == "_count" {
                h.count = v;
                seen = true;
            }
        }
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        seen.then_some(h)
    }

    /// What was observed between `earlier` and this scrape.
    pub fn since(&self, earlier: &Histo) -> Histo {
        let before = |le: f64| earlier.buckets.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, c)| *c);
        Histo {
            buckets: self.buckets.iter().map(|(le, c)| (*le, (c - before(*le)).max(0.0))).collect(),
            sum: (self.sum - earlier.sum).max(0.0),
            count: (self.count - earlier.count).max(0.0),
        }
    }

    /// The mean observation, seconds.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// Quantile `q` (0..1), seconds, interpolated linearly inside its bucket (Prometheus'
    /// `histogram_quantile`); in the `+Inf` bucket, the last finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = q * self.count;
        let (mut lower, mut below) = (0.0, 0.0);
        for (le, c) in &self.buckets {
            if *c >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let inside = c - below;
                let frac = if inside > 0.0 { (rank - below) / inside } else { 1.0 };
                return Some(lower + (le - lower) * frac);
            }
            if le.is_finite() {
                lower = *le;
            }
            below = *c;
        }
        Some(lower)
    }
}

/// `ws://host:port/...` (the first of a comma list) → `http://host:port/metrics`.
pub fn metrics_url_for(ws_url: &str) -> Option<String> {
    let first = ws_url.split(',').next()?.trim();
    let rest = first.strip_prefix("ws://")?;
    let authority = rest.split('/').next()?;
    (!authority.is_empty()).then(|| format!("http://{authority}/metrics"))
}

/// GET an `http://` URL (1 s to connect, 2 s to read; `Connection: close`); the body, or
/// `None` on any failure or a non-200 status.
pub fn get(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority.to_socket_addrs().ok()?.next()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.take(64 << 20).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_ok = head.lines().next().is_some_and(|l| l.split_whitespace().nth(1) == Some("200"));
    if !status_ok {
        return None;
    }
    // hyper answers a small body with Content-Length; a chunked one is de-chunked here.
    if head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")) {
        return Some(dechunk(body));
    }
    Some(body.to_string())
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

/// The server's fan-out histogram now, if it has one at `url`.
pub fn fanout(url: Option<&str>) -> Option<Histo> {
    Histo::parse(&get(url?)?, METRIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP phx_broker_fanout_completion_seconds x\n# TYPE phx_broker_fanout_completion_seconds histogram\n\
phx_broker_fanout_completion_seconds_bucket{le=\"0.1\"} 2\n\
phx_broker_fanout_completion_seconds_bucket{le=\"0.2\"} 6\n\
phx_broker_fanout_completion_seconds_bucket{le=\"+Inf\"} 10\n\
phx_broker_fanout_completion_seconds_sum 1.9\n\
phx_broker_fanout_completion_seconds_count 10\n\
phx_broker_other_seconds_bucket{le=\"0.1\"} 99\n";

    #[test]
    fn parses_the_histogram_and_only_it() {
        let h = Histo::parse(TEXT, METRIC).unwrap();
        assert_eq!(h.buckets, vec![(0.1, 2.0), (0.2, 6.0), (f64::INFINITY, 10.0)]);
        assert_eq!((h.sum, h.count), (1.9, 10.0));
        assert!(Histo::parse("phx_broker_joins_total 3\n", METRIC).is_none());
    }

    #[test]
    fn quantiles_interpolate_inside_buckets_and_deltas_subtract() {
        let h = Histo::parse(TEXT, METRIC).unwrap();
        // rank 5 of 10: bucket (0.1, 0.2] holds ranks 3..6 → 0.1 + 0.1 * (5-2)/4
        assert!((h.quantile(0.5).unwrap() - 0.175).abs() < 1e-9);
        // rank 9.9 falls in +Inf: the last finite bound
        assert_eq!(h.quantile(0.99), Some(0.2));
        assert!((h.mean().unwrap() - 0.19).abs() < 1e-9);
        let earlier = Histo { buckets: vec![(0.1, 2.0), (0.2, 2.0), (f64::INFINITY, 2.0)], sum: 0.1, count: 2.0 };
        let d = h.since(&earlier);
        assert_eq!(d.buckets, vec![(0.1, 0.0), (0.2, 4.0), (f64::INFINITY, 8.0)]);
        assert_eq!(d.count, 8.0);
        assert!((d.quantile(0.5).unwrap() - 0.2).abs() < 1e-9, "rank 4 of 8 is the top of (0.1, 0.2]");
        assert_eq!(Histo::default().quantile(0.5), None);
    }

    #[test]
    fn metrics_url_from_the_socket_url() {
        assert_eq!(metrics_url_for("ws://127.0.0.1:4000/socket/websocket").as_deref(), Some("http://127.0.0.1:4000/metrics"));
        assert_eq!(metrics_url_for("ws://a:1/s,ws://b:2/s").as_deref(), Some("http://a:1/metrics"));
        assert_eq!(metrics_url_for("wss://x/s"), None);
    }

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world");
    }
}
