//! The versioned JSON report, the summary table and the SVG plot.

use crate::hist::Hist;
use crate::result::WorkerResult;
use crate::sysinfo::ProcSample;
use serde_json::{json, Map, Value};

pub const SCHEMA_VERSION: u64 = 1;

#[derive(Debug, Default, Clone, Copy)]
pub struct ServerSamples {
    /// before the ramp
    pub start: Option<ProcSample>,
    /// all connections established
    pub ready: Option<ProcSample>,
    /// measurement start
    pub go: Option<ProcSample>,
    /// end of measurement + drain
    pub end: Option<ProcSample>,
}

struct Metrics(Map<String, Value>);
impl Metrics {
    fn put(&mut self, name: &str, value: f64, unit: &str, better: &str) {
        let v = if value.is_finite() { (value * 1000.0).round() / 1000.0 } else { 0.0 };
        self.0.insert(name.into(), json!({"value": v, "unit": unit, "better": better}));
    }
    fn lat(&mut self, prefix: &str, h: Option<&Hist>, qs: &[(&str, f64)]) {
        let Some(h) = h.filter(|h| !h.is_empty()) else { return };
        for (n, q) in qs {
            self.put(&format!("{prefix}_{n}_ms"), h.q(*q) as f64 / 1000.0, "ms", "lower");
        }
    }
}

const Q_FULL: &[(&str, f64)] = &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999), ("max", 1.0)];
const Q_SHORT: &[(&str, f64)] = &[("p50", 0.5), ("p99", 0.99), ("max", 1.0)];

pub struct Built {
    pub report: Value,
    pub problems: Vec<String>,
}

pub fn build(
    scenario: &str,
    params: Value,
    env: Value,
    r: &WorkerResult,
    t0_unix: u64,
    started_at_unix: u64,
    server: ServerSamples,
    server_pid: Option<u32>,
    duration_s: f64,
) -> Built {
    let mut m = Metrics(Map::new());
    let mut problems = vec![];
    let c = |n: &str| r.counter(n);
    let established = c("connections_established");
    let planned = c("connections_planned");
    let failed = c("connections_failed") + c("connections_join_failed");
    m.put("connections_established", established as f64, "count", "higher");
    m.put("connection_failures", failed as f64, "count", "lower");
    if failed > 0 || established < planned {
        problems.push(format!("{} of {} connections not established+joined", planned - established.min(planned), planned));
    }
    let ramp_done = r.marks.get("ramp_done_unix_us").copied().unwrap_or(t0_unix);
    m.put("time_to_all_connected_s", ramp_done.saturating_sub(t0_unix) as f64 / 1e6, "s", "lower");
    m.lat("connect", r.hists.get("connect"), Q_SHORT);
    m.lat("join", r.hists.get("join"), Q_SHORT);
    let go = r.marks.get("go_unix_us").copied().unwrap_or(0);
    let drained = r.marks.get("drained_unix_us").copied().unwrap_or(0);
    let measured_s = if go > 0 && drained > go { ((drained - go) as f64 / 1e6).max(duration_s) } else { duration_s };

    let mut deliveries_for_cpu = 0u64;
    match scenario {
        "fanout" | "chat" => {
            let expected = r.expected_deliveries();
            let unique = r.unique_deliveries();
            let lost = expected.saturating_sub(unique);
            let unexpected = unique.saturating_sub(expected);
            deliveries_for_cpu = unique;
            m.put("sent", c("sent") as f64, "count", "info");
            m.put("expected_deliveries", expected as f64, "count", "info");
            m.put("deliveries", unique as f64, "count", "info");
            m.put("deliveries_per_s", unique as f64 / measured_s.max(1e-9), "1/s", "higher");
            m.put("lost", lost as f64, "count", "lower");
            m.put("duplicated", c("duplicated") as f64, "count", "lower");
            m.put("out_of_order", c("out_of_order") as f64, "count", "lower");
            m.lat("delivery", r.hists.get("delivery"), Q_FULL);
            m.lat("push_reply", r.hists.get("push_reply"), Q_SHORT);
            // time until the last subscriber has each broadcast
            let mut complete = Hist::default();
            let mut incomplete = 0u64;
            for (key, (mx, n)) in &r.msgs {
                let stream = (key >> 32) as u32;
                let subs = r
                    .sent_per_stream
                    .get(&stream)
                    .and_then(|(t, _)| r.subs_per_topic.get(t))
                    .copied()
                    .unwrap_or(0);
                if *n as u64 >= subs {
                    complete.record(*mx);
                } else {
                    incomplete += 1;
                }
            }
            m.lat("broadcast_complete", Some(&complete), Q_SHORT);
            m.put("broadcasts_incomplete", incomplete as f64, "count", "lower");
            if expected == 0 {
                problems.push("no deliveries were expected (nothing published or nobody subscribed)".into());
            }
            if lost > 0 {
                problems.push(format!("{lost} deliveries lost of {expected} expected"));
            }
            if unexpected > 0 {
                problems.push(format!("{unexpected} deliveries more than expected"));
            }
            if c("duplicated") > 0 {
                problems.push(format!("{} duplicated deliveries", c("duplicated")));
            }
            if c("out_of_order") > 0 {
                problems.push(format!("{} out-of-order deliveries", c("out_of_order")));
            }
        }
        "presence" => {
            let diffs = c("presence_diff_frames_measured");
            deliveries_for_cpu = diffs;
            m.put("churn_ops", c("churn_ops") as f64, "count", "info");
            m.put("presence_diff_frames_per_s", diffs as f64 / measured_s.max(1e-9), "1/s", "info");
            m.lat("convergence", r.hists.get("convergence"), Q_FULL);
            m.put("convergence_unresolved", c("convergence_unresolved") as f64, "count", "lower");
            m.put("final_view_mismatches", c("final_view_mismatches") as f64, "count", "lower");
            m.lat("presence_state", r.hists.get("presence_state"), Q_SHORT);
            m.lat("ramp_presence_state", r.hists.get("ramp_presence_state"), Q_SHORT);
            if let Some(h) = r.hists.get("presence_state_bytes").or(r.hists.get("ramp_presence_state_bytes")) {
                m.put("presence_state_bytes_p50", h.q(0.5) as f64, "bytes", "info");
                m.put("presence_state_bytes_max", h.q(1.0) as f64, "bytes", "info");
            }
            if c("convergence_unresolved") > 0 {
                problems.push(format!("{} presence changes never converged", c("convergence_unresolved")));
            }
            if c("final_view_mismatches") > 0 {
                problems.push(format!("{} observer views differ from the truth at the end", c("final_view_mismatches")));
            }
            if c("churn_ops") > 0 && r.hists.get("convergence").map(|h| h.is_empty()).unwrap_or(true) {
                problems.push("churn happened but no convergence was measured".into());
            }
        }
        _ => {}
    }
    for (k, v) in &r.errors {
        if k.starts_with("disconnected:") || k.starts_with("channel:") || k.starts_with("push:") || k.starts_with("frame:") || k.starts_with("presence:") {
            problems.push(format!("{v} × {k}"));
        }
    }

    // loadgen health
    let lg_cpu: u64 = r.procs.iter().map(|p| p.cpu_us).sum();
    let lg_rss: u64 = r.procs.iter().map(|p| p.peak_rss_bytes).sum();
    m.put("loadgen_cpu_s", lg_cpu as f64 / 1e6, "s", "info");
    m.put("loadgen_peak_rss_mb", lg_rss as f64 / 1048576.0, "MB", "info");
    let lg_rss_start: u64 = r.procs.iter().map(|p| p.health_start.rss_bytes).sum();
    if established > 0 {
        let per = lg_rss.saturating_sub(lg_rss_start) as f64 / established as f64;
        m.put("loadgen_rss_per_connection_bytes", per, "bytes", "info");
    }

    // server health
    let mut server_json = Value::Null;
    if let Some(pid) = server_pid {
        let mut s = Map::new();
        s.insert("pid".into(), json!(pid));
        for (k, v) in [("start", server.start), ("ready", server.ready), ("go", server.go), ("end", server.end)] {
            s.insert(k.into(), json!(v));
        }
        if let (Some(a), Some(b)) = (server.start, server.ready) {
            if established > 0 {
                let per = b.rss_bytes.saturating_sub(a.rss_bytes) as f64 / established as f64;
                m.put("server_rss_per_connection_bytes", per, "bytes", "lower");
            }
            m.put("server_rss_ready_mb", b.rss_bytes as f64 / 1048576.0, "MB", "lower");
            m.put("server_ramp_cpu_s", b.cpu_us.saturating_sub(a.cpu_us) as f64 / 1e6, "s", "lower");
        }
        if let (Some(a), Some(b)) = (server.go, server.end) {
            let cpu = b.cpu_us.saturating_sub(a.cpu_us);
            m.put("server_measure_cpu_s", cpu as f64 / 1e6, "s", "info");
            if deliveries_for_cpu > 0 {
                let name = if scenario == "presence" { "server_cpu_us_per_diff_frame" } else { "server_cpu_us_per_delivery" };
                m.put(name, cpu as f64 / deliveries_for_cpu as f64, "us", "lower");
            }
        }
        server_json = Value::Object(s);
    }

    let mut hists = Map::new();
    for (k, h) in &r.hists {
        hists.insert(k.clone(), if k.ends_with("_bytes") { h.summary_raw() } else { h.summary_ms() });
    }
    let timeline: Vec<Value> = r
        .timeline
        .iter()
        .enumerate()
        .map(|(i, h)| {
            json!({"t_s": i, "count": h.len(), "p50_ms": h.q(0.5) as f64 / 1e3, "p90_ms": h.q(0.9) as f64 / 1e3,
                   "p99_ms": h.q(0.99) as f64 / 1e3, "max_ms": h.q(1.0) as f64 / 1e3})
        })
        .collect();
    let per_process: Vec<Value> = r.procs.iter().map(|p| json!(p)).collect();
    let report = json!({
        "schema_version": SCHEMA_VERSION,
        "tool": "loadgen",
        "scenario": scenario,
        "started_at_unix_s": started_at_unix / 1_000_000,
        "params": params,
        "environment": env,
        "ok": problems.is_empty(),
        "problems": problems,
        "metrics": Value::Object(m.0),
        "histograms": Value::Object(hists),
        "counters": r.counters,
        "errors": r.errors,
        "connections_per_source_ip": r.by_source_ip,
        "per_process": per_process,
        "server": server_json,
        "timeline_metric": match scenario { "connect" => "connect_and_join", "presence" => "convergence", _ => "delivery" },
        "timeline": timeline,
        "marks_unix_us": r.marks,
    });
    Built { report, problems }
}

/// Human-readable summary.
pub fn table(report: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "== loadgen {} ({}) ==\n",
        report["scenario"].as_str().unwrap_or("?"),
        if report["ok"].as_bool() == Some(true) { "ok" } else { "PROBLEMS" }
    ));
    if let Some(m) = report["metrics"].as_object() {
        for (k, v) in m {
            out.push_str(&format!(
                "  {:<38} {:>14} {:<6} ({})\n",
                k,
                v["value"].as_f64().map(|x| if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.3}") }).unwrap_or_default(),
                v["unit"].as_str().unwrap_or(""),
                v["better"].as_str().unwrap_or("")
            ));
        }
    }
    if let Some(e) = report["errors"].as_object() {
        if !e.is_empty() {
            out.push_str("  failures by kind:\n");
            for (k, v) in e {
                out.push_str(&format!("    {k:<40} {v}\n"));
            }
        }
    }
    if let Some(p) = report["per_process"].as_array() {
        let s: Vec<String> = p.iter().map(|p| format!("w{}:{}", p["worker"], p["connections"])).collect();
        out.push_str(&format!("  connections per process: {}\n", s.join(" ")));
    }
    if let Some(ips) = report["connections_per_source_ip"].as_object() {
        let s: Vec<String> = ips.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        out.push_str(&format!("  connections per source ip: {}\n", s.join(" ")));
    }
    if let Some(p) = report["problems"].as_array() {
        for x in p {
            out.push_str(&format!("  PROBLEM: {}\n", x.as_str().unwrap_or("")));
        }
    }
    out
}

/// Hand-written SVG: latency percentiles per second of the measurement phase.
pub fn svg(report: &Value) -> String {
    let (w, h, ml, mr, mt, mb) = (900.0f64, 420.0f64, 70.0, 130.0, 40.0, 50.0);
    let pts = report["timeline"].as_array().cloned().unwrap_or_default();
    let series = [("p50_ms", "#1f77b4"), ("p90_ms", "#2ca02c"), ("p99_ms", "#ff7f0e"), ("max_ms", "#d62728")];
    let n = pts.len().max(1) as f64;
    let ymax = pts.iter().map(|p| p["max_ms"].as_f64().unwrap_or(0.0)).fold(0.0f64, f64::max).max(0.001) * 1.1;
    let x = |i: f64| ml + (w - ml - mr) * if n > 1.0 { i / (n - 1.0) } else { 0.5 };
    let y = |v: f64| mt + (h - mt - mb) * (1.0 - v / ymax);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    s.push_str(&format!(
        "<text x=\"{}\" y=\"22\" font-size=\"15\">loadgen {}: {} latency percentiles per second (ms)</text>\n",
        ml,
        report["scenario"].as_str().unwrap_or(""),
        report["timeline_metric"].as_str().unwrap_or("")
    ));
    // axes and grid
    for k in 0..=5 {
        let v = ymax * k as f64 / 5.0;
        s.push_str(&format!(
            "<line x1=\"{ml}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.2}</text>\n",
            w - mr,
            ml - 6.0,
            y(v) + 4.0,
            v,
            yy = y(v)
        ));
    }
    let ticks = 10usize.min(pts.len().max(1));
    for k in 0..=ticks {
        let i = (pts.len().saturating_sub(1)) as f64 * k as f64 / ticks as f64;
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{:.0}</text>\n",
            x(i),
            h - mb + 18.0,
            i
        ));
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds since measurement start (by intended send time)</text>\n",
        (ml + w - mr) / 2.0,
        h - 10.0
    ));
    s.push_str(&format!(
        "<line x1=\"{ml}\" x2=\"{ml}\" y1=\"{mt}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{ml}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - mb,
        w - mr,
        h - mb,
        h - mb
    ));
    for (j, (key, color)) in series.iter().enumerate() {
        let path: Vec<String> = pts
            .iter()
            .enumerate()
            .filter(|(_, p)| p["count"].as_u64().unwrap_or(0) > 0)
            .map(|(i, p)| format!("{:.1},{:.1}", x(i as f64), y(p[*key].as_f64().unwrap_or(0.0))))
            .collect();
        if !path.is_empty() {
            s.push_str(&format!("<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n", path.join(" ")));
        }
        let ly = mt + 20.0 * j as f64 + 10.0;
        s.push_str(&format!(
            "<line x1=\"{}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"3\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
            w - mr + 10.0,
            w - mr + 35.0,
            w - mr + 40.0,
            ly + 4.0,
            key.trim_end_matches("_ms")
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_report_counts_loss() {
        let mut r = WorkerResult::default();
        r.add("connections_planned", 3);
        r.add("connections_established", 3);
        r.subs_per_topic.insert(0, 2);
        r.sent_per_stream.insert(0, (0, 5));
        r.add("deliveries", 9);
        r.add("sent", 5);
        for s in 0..5u64 {
            r.msgs.insert(s, (1000 + s, if s == 4 { 1 } else { 2 }));
            r.hist("delivery").record(1000);
            r.timeline_record(s as usize, 1000);
        }
        let b = build("fanout", json!({}), json!({}), &r, 0, 0, ServerSamples::default(), None, 1.0);
        assert_eq!(b.report["metrics"]["lost"]["value"], 1.0);
        assert_eq!(b.report["metrics"]["broadcasts_incomplete"]["value"], 1.0);
        assert_eq!(b.report["schema_version"], 1);
        assert!(!b.problems.is_empty());
        assert!(table(&b.report).contains("PROBLEM"));
        let svg = svg(&b.report);
        assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    }
}
