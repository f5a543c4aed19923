//! The versioned JSON report, the summary table and the SVG plot.

use crate::hist::Hist;
use crate::result::WorkerResult;
use crate::sysinfo::ProcSample;
use serde_json::{json, Map, Value};

pub const SCHEMA_VERSION: u64 = 1;

#[derive(Debug, Default, Clone)]
pub struct ServerSamples {
    /// before the ramp
    pub start: Option<ProcSample>,
    /// all connections established
    pub ready: Option<ProcSample>,
    /// measurement start
    pub go: Option<ProcSample>,
    /// end of measurement + drain
    pub end: Option<ProcSample>,
    /// open file descriptors when all connections are established (ready)
    pub fds_ready: Option<u64>,
    /// the server's RLIMIT_NOFILE soft limit (from /proc/PID/limits)
    pub fd_limit: Option<u64>,
    /// the whole machine's CPU (/proc/stat) at start, ready, go and end: other processes
    /// compete for the same CPUs
    pub machine: [Option<crate::sysinfo::MachineCpu>; 4],
    /// The server's fan-out completion histogram at go and at end (its `/metrics`).
    pub fanout: [Option<crate::scrape::Histo>; 2],
}

/// A share of CPU above this (of the cores a process could use) counts as saturated.
pub const SATURATED_SHARE: f64 = 0.9;

/// CPU use over a window: seconds of CPU / (window × cores), or None without a window.
pub fn cpu_share(cpu_s: f64, window_s: f64, cores: f64) -> Option<f64> {
    (window_s > 0.0 && cores > 0.0).then(|| cpu_s / (window_s * cores))
}

/// Cores the loadgen processes can use: min(CPUs, processes × tokio worker threads), where
/// worker threads default to the CPU count.
pub fn loadgen_cores(cpus: u64, procs: u64, threads: Option<u64>) -> f64 {
    let cpus = cpus.max(1);
    (procs.max(1) * threads.unwrap_or(cpus).max(1)).min(cpus) as f64
}

/// The `metrics` object of a report: name → {value, unit, better}.
#[derive(Debug, Default)]
pub struct Metrics(Map<String, Value>);

impl Metrics {
    /// A metric; a value that is not finite (NaN, ±inf: nothing to measure it from) is written
    /// as `null`, which `compare` and `summarize` treat as missing (never as 0).
    pub fn put(&mut self, name: &str, value: f64, unit: &str, better: &str) {
        let v = if value.is_finite() { json!((value * 1000.0).round() / 1000.0) } else { Value::Null };
        self.0.insert(name.into(), json!({"value": v, "unit": unit, "better": better}));
    }
    /// `{prefix}_{q}_ms` for each quantile, if the histogram has values.
    pub fn lat(&mut self, prefix: &str, h: Option<&Hist>, qs: &[(&str, f64)]) {
        let Some(h) = h.filter(|h| !h.is_empty()) else { return };
        for (n, q) in qs {
            self.put(&format!("{prefix}_{n}_ms"), h.q(*q) as f64 / 1000.0, "ms", "lower");
        }
    }
}

/// Counters that make a run not ok when non-zero (see `build`): pushes never answered (or
/// dropped from tracking, over 10,000 unanswered on one connection), sequence holes still open
/// at close, heartbeats not answered within a period, connection tasks aborted at close.
pub const UNHEALTHY_COUNTERS: &[&str] =
    &["push_unreplied", "push_untracked", "holes_at_close", "heartbeat_timeouts", "tasks_aborted_at_close"];

pub const Q_FULL: &[(&str, f64)] = &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999), ("max", 1.0)];
pub const Q_SHORT: &[(&str, f64)] = &[("p50", 0.5), ("p99", 0.99), ("max", 1.0)];

pub struct Built {
    pub report: Value,
    pub problems: Vec<String>,
}

/// What the coordinator knows about a run besides its merged result.
pub struct RunInfo<'a> {
    /// scenario name (the report's `scenario`)
    pub scenario: &'a str,
    /// histogram shown per second in `timeline`
    pub timeline_metric: &'a str,
    pub params: Value,
    pub env: Value,
    pub t0_unix: u64,
    pub started_at_unix: u64,
    pub server: ServerSamples,
    pub server_pid: Option<u32>,
    pub duration_s: f64,
}

/// What a scenario adds to the report (see `scenario::Scenario::summarize`).
#[derive(Debug, Default)]
pub struct Summary {
    pub metrics: Metrics,
    pub problems: Vec<String>,
    /// Length of the measurement, seconds: go → drained, at least --duration.
    pub measured_s: f64,
    /// Server CPU per unit of the scenario's work: (metric name, units). Reported when the server
    /// is sampled and units > 0.
    pub server_cpu_per: Option<(&'static str, u64)>,
}

/// `server_{phase}_cpu_share` and `host_{phase}_cpu_share` (server + loadgen CPU over the
/// machine's CPUs: they share it), and a warning when the host is saturated.
fn host_share(m: &mut Metrics, warnings: &mut Vec<String>, cpus: u64, phase: &str, server_cpu_s: f64, lg_cpu_s: f64, window: f64) {
    if let Some(share) = cpu_share(server_cpu_s, window, cpus as f64) {
        m.put(&format!("server_{phase}_cpu_share"), share, "fraction", "info");
    }
    if let Some(share) = cpu_share(server_cpu_s + lg_cpu_s, window, cpus as f64) {
        m.put(&format!("host_{phase}_cpu_share"), share, "fraction", "info");
        if share > SATURATED_SHARE && window >= 0.5 {
            warnings.push(format!(
                "host CPU saturated in the {phase} phase: server {server_cpu_s:.2} s + loadgen {lg_cpu_s:.2} s of CPU in {window:.2} s = {:.0}% of {cpus} CPUs (they share the machine)",
                share * 100.0
            ));
        }
    }
}

/// Build the report: the common metrics (connections, ramp, loadgen and server health), the
/// scenario's part from `scenario_part`, histograms, timeline. Problems make the run not ok.
pub fn build(run: RunInfo<'_>, r: &WorkerResult, scenario_part: impl FnOnce(&WorkerResult, &mut Summary)) -> Built {
    let RunInfo { scenario, timeline_metric, params, env, t0_unix, started_at_unix, server, server_pid, duration_s } = run;
    let mut s = Summary::default();
    let c = |n: &str| r.counter(n);
    let established = c("connections_established");
    let planned = c("connections_planned");
    let failed = c("connections_failed") + c("connections_join_failed");
    s.metrics.put("connections_established", established as f64, "count", "higher");
    s.metrics.put("connection_failures", failed as f64, "count", "lower");
    if failed > 0 || established < planned {
        s.problems.push(format!("{} of {} connections not established+joined", planned - established.min(planned), planned));
    }
    let ramp_done = r.marks.get("ramp_done_unix_us").copied().unwrap_or(t0_unix);
    s.metrics.put("time_to_all_connected_s", ramp_done.saturating_sub(t0_unix) as f64 / 1e6, "s", "lower");
    s.metrics.lat("connect", r.hists.get("connect"), Q_SHORT);
    s.metrics.lat("join", r.hists.get("join"), Q_SHORT);
    // from the intended start to the join reply (the connect scenario's SLO latency)
    s.metrics.lat("connect_and_join", r.hists.get("connect_and_join"), Q_SHORT);
    let go = r.marks.get("go_unix_us").copied().unwrap_or(0);
    let drained = r.marks.get("drained_unix_us").copied().unwrap_or(0);
    s.measured_s = if go > 0 && drained > go { ((drained - go) as f64 / 1e6).max(duration_s) } else { duration_s };

    scenario_part(r, &mut s);
    let Summary { metrics: mut m, mut problems, server_cpu_per, .. } = s;
    // signs of trouble that are not losses
    for k in UNHEALTHY_COUNTERS {
        if c(k) > 0 {
            problems.push(format!("{} × {k}", c(k)));
        }
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
    // CPU by phase, beside the server's: the ramp (t0 → all connected) and the measured phase
    // (go → drained), as seconds and as a share of the cores each side could use
    let cpus = env["cpus"].as_u64().unwrap_or(1).max(1);
    let procs = params["common"]["procs"].as_u64().unwrap_or(1);
    let lg_cores = loadgen_cores(cpus, procs, params["common"]["threads"].as_u64());
    let ramp_s = ramp_done.saturating_sub(t0_unix) as f64 / 1e6;
    let measure_window_s = if go > 0 && drained > go { (drained - go) as f64 / 1e6 } else { 0.0 };
    let lg_ramp_cpu_s = r.procs.iter().map(|p| p.ramp_cpu_us).sum::<u64>() as f64 / 1e6;
    let lg_measure_cpu_s = r.procs.iter().map(|p| p.measure_cpu_us).sum::<u64>() as f64 / 1e6;
    m.put("loadgen_ramp_cpu_s", lg_ramp_cpu_s, "s", "info");
    m.put("loadgen_measure_cpu_s", lg_measure_cpu_s, "s", "info");
    m.put("loadgen_cores", lg_cores, "count", "info");
    let mut warnings: Vec<String> = vec![];
    let mut loadgen_saturated = false;
    for (phase, cpu_s, window) in [("ramp", lg_ramp_cpu_s, ramp_s), ("measure", lg_measure_cpu_s, measure_window_s)] {
        if let Some(share) = cpu_share(cpu_s, window, lg_cores) {
            m.put(&format!("loadgen_{phase}_cpu_share"), share, "fraction", "info");
            if share > SATURATED_SHARE && window >= 0.5 {
                loadgen_saturated = true;
                warnings.push(format!(
                    "loadgen saturated in the {phase} phase: {cpu_s:.2} s CPU in {window:.2} s = {:.0}% of its {lg_cores} core(s); the figures are the load generator's limit, not the server's",
                    share * 100.0
                ));
            }
        }
    }
    m.put("loadgen_peak_rss_mb", lg_rss as f64 / 1048576.0, "MB", "info");
    let lg_rss_start: u64 = r.procs.iter().map(|p| p.health_start.rss_bytes).sum();
    if established > 0 {
        let per = lg_rss.saturating_sub(lg_rss_start) as f64 / established as f64;
        m.put("loadgen_rss_per_connection_bytes", per, "bytes", "info");
    }

    // the whole machine (other processes included) over the same windows
    for (phase, a, b, window) in [("ramp", server.machine[0], server.machine[1], ramp_s), ("measure", server.machine[2], server.machine[3], measure_window_s)] {
        if let Some(share) = a.zip(b).and_then(|(a, b)| a.busy_share_until(&b)) {
            m.put(&format!("machine_{phase}_cpu_share"), share, "fraction", "info");
            if share > SATURATED_SHARE && window >= 0.5 {
                warnings.push(format!(
                    "machine CPU saturated in the {phase} phase: {:.0}% of {cpus} CPUs busy (every process on the machine counted)",
                    share * 100.0
                ));
            }
        }
    }

    // server health
    let mut server_json = Value::Null;
    if let Some(pid) = server_pid {
        let mut s = Map::new();
        s.insert("pid".into(), json!(pid));
        for (k, v) in [("start", server.start), ("ready", server.ready), ("go", server.go), ("end", server.end)] {
            s.insert(k.into(), json!(v));
        }
        s.insert("fds_ready".into(), json!(server.fds_ready));
        s.insert("fd_limit".into(), json!(server.fd_limit));
        if let Some(n) = server.fds_ready {
            m.put("server_fds_ready", n as f64, "count", "info");
        }
        if let Some(n) = server.fd_limit {
            m.put("server_fd_limit", n as f64, "count", "info");
        }
        // shares of the machine's CPUs (the server may use all of them; so may the loadgen)
        if let (Some(a), Some(b)) = (server.start, server.ready) {
            if established > 0 {
                let per = b.rss_bytes.saturating_sub(a.rss_bytes) as f64 / established as f64;
                m.put("server_rss_per_connection_bytes", per, "bytes", "lower");
            }
            m.put("server_rss_ready_mb", b.rss_bytes as f64 / 1048576.0, "MB", "lower");
            let cpu_s = b.cpu_us.saturating_sub(a.cpu_us) as f64 / 1e6;
            m.put("server_ramp_cpu_s", cpu_s, "s", "lower");
            host_share(&mut m, &mut warnings, cpus, "ramp", cpu_s, lg_ramp_cpu_s, ramp_s);
        }
        if let (Some(a), Some(b)) = (server.go, server.end) {
            let cpu = b.cpu_us.saturating_sub(a.cpu_us);
            m.put("server_measure_cpu_s", cpu as f64 / 1e6, "s", "info");
            m.put("server_rss_end_mb", b.rss_bytes as f64 / 1048576.0, "MB", "info");
            if let Some((name, units)) = server_cpu_per.filter(|(_, n)| *n > 0) {
                m.put(name, cpu as f64 / units as f64, "us", "lower");
            }
            host_share(&mut m, &mut warnings, cpus, "measure", cpu as f64 / 1e6, lg_measure_cpu_s, measure_window_s);
        }
        server_json = Value::Object(s);
    }
    // the server's own time from a broadcast's receipt to its last write (its /metrics),
    // over the measured phase; quantiles interpolated inside the server's buckets
    if let (Some(a), Some(b)) = (&server.fanout[0], &server.fanout[1]) {
        let d = b.since(a);
        if d.count > 0.0 {
            m.put("server_fanout_completions", d.count, "count", "info");
            if let Some(x) = d.mean() {
                m.put("server_fanout_complete_mean_ms", x * 1e3, "ms", "info");
            }
            for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
                if let Some(x) = d.quantile(q) {
                    m.put(&format!("server_fanout_complete_{name}_ms"), x * 1e3, "ms", "info");
                }
            }
        }
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
        "warnings": warnings,
        "loadgen_saturated": loadgen_saturated,
        "metrics": Value::Object(m.0),
        "histograms": Value::Object(hists),
        "counters": r.counters,
        "errors": r.errors,
        "connections_per_source_ip": r.by_source_ip,
        "per_process": per_process,
        "server": server_json,
        "timeline_metric": timeline_metric,
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
                v["value"].as_f64().map(|x| if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.3}") }).unwrap_or_else(|| "-".into()),
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
    if let Some(p) = report["warnings"].as_array() {
        for x in p {
            out.push_str(&format!("  WARNING: {}\n", x.as_str().unwrap_or("")));
        }
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

    fn info(scenario: &str) -> RunInfo<'_> {
        RunInfo {
            scenario,
            timeline_metric: "delivery",
            params: json!({}),
            env: json!({}),
            t0_unix: 0,
            started_at_unix: 0,
            server: ServerSamples::default(),
            server_pid: None,
            duration_s: 1.0,
        }
    }

    #[test]
    fn common_part_and_scenario_part() {
        let mut r = WorkerResult::default();
        r.add("connections_planned", 3);
        r.add("connections_established", 2);
        r.error("disconnected:closed_by_server");
        for s in 0..5u64 {
            r.hist("delivery").record(1000);
            r.timeline_record(s as usize, 1000);
        }
        let b = build(info("x"), &r, |r, s| {
            assert_eq!(s.measured_s, 1.0);
            s.metrics.put("mine", r.counter("connections_planned") as f64, "count", "info");
            s.problems.push("scenario problem".into());
        });
        assert_eq!(b.report["schema_version"], 1);
        assert_eq!(b.report["scenario"], "x");
        assert_eq!(b.report["timeline_metric"], "delivery");
        assert_eq!(b.report["metrics"]["mine"]["value"], 3.0);
        assert_eq!(b.report["metrics"]["connection_failures"]["value"], 0.0);
        assert_eq!(b.problems, vec!["1 of 3 connections not established+joined", "scenario problem", "1 × disconnected:closed_by_server"]);
        assert_eq!(b.report["timeline"].as_array().unwrap().len(), 5);
        assert!(table(&b.report).contains("PROBLEM"));
        let svg = svg(&b.report);
        assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    }

    #[test]
    fn non_finite_metrics_are_null_not_zero() {
        let b = build(info("x"), &WorkerResult::default(), |_, s| {
            s.metrics.put("nan", f64::NAN, "ms", "lower");
            s.metrics.put("inf", f64::INFINITY, "1/s", "higher");
            s.metrics.put("fine", 1.23456, "ms", "lower");
        });
        let m = &b.report["metrics"];
        assert!(m["nan"]["value"].is_null(), "{}", m["nan"]);
        assert!(m["inf"]["value"].is_null(), "{}", m["inf"]);
        assert_eq!(m["nan"]["unit"], "ms");
        assert_eq!(m["fine"]["value"], 1.235);
        // the written text keeps the null (not 0)
        let text = serde_json::to_string(&b.report).unwrap();
        assert!(text.contains(r#""nan":{"better":"lower","unit":"ms","value":null}"#), "{text}");
    }

    #[test]
    fn unreplied_pushes_holes_heartbeat_timeouts_and_aborted_tasks_are_problems() {
        for name in ["push_unreplied", "push_untracked", "holes_at_close", "heartbeat_timeouts", "tasks_aborted_at_close"] {
            let mut r = WorkerResult::default();
            r.add(name, 2);
            let b = build(info("x"), &r, |_, _| {});
            assert_eq!(b.report["ok"], false, "{name} must make the run not ok");
            assert!(b.problems.iter().any(|p| p.contains(name)), "{name}: {:?}", b.problems);
        }
        // and a clean result has none
        let b = build(info("x"), &WorkerResult::default(), |_, _| {});
        assert!(b.problems.is_empty(), "{:?}", b.problems);
    }
}
