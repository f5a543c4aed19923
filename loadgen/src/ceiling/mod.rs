//! `loadgen ceiling`: the highest load a server sustains at a stated SLO. Runs a scenario
//! (fanout: varies `--rate`; connect: varies `--connect-rate` or `--connections`) step by step
//! as child `loadgen` processes, each writing its own report (kept), and picks the next load
//! with [`search`]: expand by a factor while steps pass, then bisect between the highest pass and
//! the lowest fail. Writes a ceiling document (`kind: "ceiling"`, see bench-results/schema.json)
//! and a Markdown summary: the ceiling phrased with its SLO, the knee, and which resource ran
//! out first at the lowest failing load.

pub mod search;

use crate::report::SATURATED_SHARE;
use clap::Args;
use search::{bracket, classify, knee, next_load, violations, Measured, Point, SearchCfg, Slo, Stop, Tried, Usage, Verdict};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const CEILING_SCHEMA_VERSION: u64 = 1;

/// A knee needs a p99 above this fraction of the SLO's p99 (besides `--knee-factor` × the
/// lightest load's): doubling from 12 to 29 ms is noise, not a knee.
pub const KNEE_FLOOR_OF_SLO: f64 = 0.2;

#[derive(Args, Debug, Clone, Serialize)]
pub struct CeilingArgs {
    /// Scenario to search: fanout or connect.
    #[arg(long, value_parser = ["fanout", "connect"])]
    pub scenario: String,
    /// The flag to vary: rate (fanout: broadcasts/s), connect-rate (connect: connections/s) or
    /// connections (connect: count). Default: rate for fanout, connect-rate for connect.
    #[arg(long, value_parser = ["rate", "connect-rate", "connections"])]
    pub vary: Option<String>,
    /// First value of the varied flag.
    #[arg(long)]
    pub start: f64,
    /// Growth (and shrink) factor before the ceiling is bracketed.
    #[arg(long, default_value_t = 2.0)]
    pub factor: f64,
    /// Lowest value to try.
    #[arg(long, default_value_t = 1.0)]
    pub min: f64,
    /// Highest value to try.
    #[arg(long)]
    pub max: f64,
    /// Stop bisecting once (fail - pass) / pass is at most this (fraction).
    #[arg(long, default_value_t = 0.1)]
    pub resolution: f64,
    /// At most this many steps (runs).
    #[arg(long, default_value_t = 10)]
    pub max_steps: usize,
    /// SLO: the latency p99 must stay below this, milliseconds (fanout: delivery p99; connect:
    /// intended connect start to join reply, p99).
    #[arg(long, default_value_t = 500.0)]
    pub slo_p99_ms: f64,
    /// SLO: deliveries lost at most (count).
    #[arg(long, default_value_t = 0)]
    pub slo_max_lost: u64,
    /// SLO: failed connections or joins at most (count).
    #[arg(long, default_value_t = 0)]
    pub slo_max_failures: u64,
    /// SLO: achieved load at least this fraction of the offered load (fanout: deliveries over
    /// the publishing window --duration; connect: connections / time to all connected, or
    /// connections established).
    #[arg(long, default_value_t = 0.9)]
    pub slo_min_throughput: f64,
    /// The knee: the first load whose p99 exceeds this factor × the p99 at the lightest load
    /// (and 20% of --slo-p99-ms), or whose achieved load is below 95% of offered.
    #[arg(long, default_value_t = 2.0)]
    pub knee_factor: f64,
    /// Each step's run is killed after this, seconds (also passed as its --deadline).
    #[arg(long, default_value_t = 300.0)]
    pub step_timeout: f64,
    /// Pause between steps (the server settles, sockets leave TIME_WAIT), seconds.
    #[arg(long, default_value_t = 3.0)]
    pub pause: f64,
    /// Time budget of the whole search, seconds: no step starts once the budget minus the
    /// longest step so far is spent.
    #[arg(long, default_value_t = 900.0)]
    pub budget: f64,
    /// Directory for each step's report (<label>-step<K>.json) and, by default, the ceiling
    /// document and its Markdown.
    #[arg(long)]
    pub out_dir: String,
    /// Name of this search (file names, labels). Default: ceiling-<scenario>-<vary>.
    #[arg(long)]
    pub label: Option<String>,
    /// The ceiling document (JSON). Default: <out-dir>/<label>.json.
    #[arg(long)]
    pub out: Option<String>,
    /// The Markdown summary. Default: <out-dir>/<label>.md.
    #[arg(long)]
    pub markdown: Option<String>,
    /// The loadgen binary that runs each step (default: this one).
    #[arg(long)]
    pub loadgen_bin: Option<String>,
    /// Free text stored in the document and its Markdown (e.g. which server build was measured).
    #[arg(long)]
    pub note: Option<String>,
    /// Run nothing: rebuild the document and its Markdown from the step reports of an earlier
    /// search (the same --out-dir, --label and flags).
    #[arg(long)]
    pub rerender: bool,
    /// The scenario's own flags, after `--` (e.g. `-- -n 19000 --url ws://... --server-pid P`);
    /// the varied flag, --out, --label and --deadline are added per step.
    #[arg(last = true)]
    pub scenario_args: Vec<String>,
}

/// What is varied, and how a step's report reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vary {
    /// fanout --rate (broadcasts/s); headline: deliveries/s
    Rate,
    /// connect --connect-rate (connections/s); headline: connections/s
    ConnectRate,
    /// connect --connections (count); headline: connections
    Connections,
}

impl Vary {
    pub fn parse(scenario: &str, vary: Option<&str>) -> Result<Vary, String> {
        match (scenario, vary) {
            ("fanout", None | Some("rate")) => Ok(Vary::Rate),
            ("connect", None | Some("connect-rate")) => Ok(Vary::ConnectRate),
            ("connect", Some("connections")) => Ok(Vary::Connections),
            (s, Some(v)) => Err(format!("--vary {v} does not apply to the {s} scenario")),
            (s, None) => Err(format!("no ceiling search for the {s} scenario")),
        }
    }
    pub fn flag(self) -> &'static str {
        match self {
            Vary::Rate => "--rate",
            Vary::ConnectRate => "--connect-rate",
            Vary::Connections => "--connections",
        }
    }
    /// other spellings of the flag a user might pass
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Vary::Rate => &["--rate"],
            Vary::ConnectRate => &["--connect-rate"],
            Vary::Connections => &["--connections", "-n"],
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Vary::Rate => "rate",
            Vary::ConnectRate => "connect-rate",
            Vary::Connections => "connections",
        }
    }
    /// unit of the headline load
    pub fn unit(self) -> &'static str {
        match self {
            Vary::Rate => "deliveries/s",
            Vary::ConnectRate => "connections/s",
            Vary::Connections => "connections",
        }
    }
    fn integer(self) -> bool {
        self == Vary::Connections
    }
    /// the phase whose CPU tells what ran out: the measured phase for a rate of messages, the
    /// ramp for a connect storm
    fn phase(self) -> &'static str {
        match self {
            Vary::Rate => "measure",
            _ => "ramp",
        }
    }
    pub fn latency_metric(self) -> &'static str {
        match self {
            Vary::Rate => "delivery_p99_ms",
            _ => "connect_and_join_p99_ms",
        }
    }
}

fn metric(r: &Value, name: &str) -> Option<f64> {
    r["metrics"][name]["value"].as_f64()
}

/// Read one step's report: what the SLO check needs, the point on the load curve, and the
/// resources used (each as a fraction of its limit).
pub fn read_step(r: &Value, vary: Vary) -> (Measured, Point, Usage) {
    let p = &r["params"];
    let count = |n: &str| metric(r, n).unwrap_or(0.0).max(0.0) as u64;
    let established = metric(r, "connections_established").unwrap_or(0.0);
    let (offered, achieved) = match vary {
        Vary::Rate => {
            let subs = p["subscribers"].as_f64().unwrap_or(0.0);
            let topics = p["topics"].as_f64().unwrap_or(1.0).max(1.0);
            // delivered over the publishing window (--duration): deliveries_per_s divides by the
            // measured phase including the drain, which would count lateness twice (the p99
            // already does) and depends on how soon the drain notices the end
            let window = p["common"]["duration"].as_f64().filter(|d| *d > 0.0);
            let achieved = metric(r, "deliveries").zip(window).map(|(n, d)| n / d).or_else(|| metric(r, "deliveries_per_s"));
            (p["rate"].as_f64().unwrap_or(0.0) * subs / topics, achieved)
        }
        Vary::ConnectRate => {
            let t = metric(r, "time_to_all_connected_s").filter(|t| *t > 0.0);
            (p["common"]["connect_rate"].as_f64().unwrap_or(0.0), t.map(|t| established / t))
        }
        Vary::Connections => (p["connections"].as_f64().unwrap_or(0.0), Some(established)),
    };
    let lat = vary.latency_metric();
    let p99 = metric(r, lat).or_else(|| {
        // reports from before the connect_and_join metric: its histogram
        (vary != Vary::Rate).then(|| r["histograms"]["connect_and_join"]["p99_ms"].as_f64()).flatten()
    });
    let problems: Vec<String> = r["problems"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
    let m = Measured {
        report: r.is_object(),
        ok: r["ok"].as_bool().unwrap_or(false),
        problems,
        p99_ms: p99,
        lost: count("lost"),
        failures: count("connection_failures"),
        offered,
        achieved,
    };
    let point = Point { offered, achieved, p99_ms: p99 };

    let phase = vary.phase();
    let mem = r["environment"]["mem_total_bytes"].as_f64().filter(|m| *m > 0.0);
    let rss = ["ready", "end"].iter().filter_map(|k| r["server"][k]["rss_bytes"].as_f64()).fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
    let fd_limit_lg = r["environment"]["fd_limit_soft"].as_f64().filter(|x| *x > 0.0);
    let max_per_proc = r["per_process"].as_array().and_then(|a| a.iter().filter_map(|p| p["connections"].as_f64()).reduce(f64::max));
    let errs = |pat: &str| -> u64 {
        r["errors"].as_object().map(|e| e.iter().filter(|(k, _)| k.contains(pat)).map(|(_, v)| v.as_u64().unwrap_or(0)).sum()).unwrap_or(0)
    };
    let u = Usage {
        server_cpu: metric(r, &format!("server_{phase}_cpu_share")),
        loadgen_cpu: metric(r, &format!("loadgen_{phase}_cpu_share")),
        host_cpu: metric(r, &format!("host_{phase}_cpu_share")),
        machine_cpu: metric(r, &format!("machine_{phase}_cpu_share")),
        server_memory: rss.zip(mem).map(|(a, b)| a / b),
        server_fds: r["server"]["fds_ready"].as_f64().zip(r["server"]["fd_limit"].as_f64().filter(|x| *x > 0.0)).map(|(a, b)| a / b),
        loadgen_fds: max_per_proc.zip(fd_limit_lg).map(|(a, b)| a / b),
        loadgen_fd_errors: errs("emfile") + errs("enfile"),
        server_capacity_errors: errs("http_503"),
        port_errors: errs("eaddrnotavail"),
    };
    (m, point, u)
}

/// One step of a search, as the ceiling document records it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: usize,
    /// value of the varied flag
    pub value: f64,
    /// headline load offered and achieved (deliveries/s, connections/s, connections)
    pub offered: f64,
    pub achieved: Option<f64>,
    pub p99_ms: Option<f64>,
    pub lost: u64,
    pub failures: u64,
    pub pass: bool,
    pub violations: Vec<String>,
    pub usage: Usage,
    pub verdict: Verdict,
    pub loadgen_saturated: bool,
    pub warnings: Vec<String>,
    /// the step's report, relative to the ceiling document
    pub report: Option<String>,
    pub exit_code: Option<i32>,
    pub wall_s: f64,
}

fn fmt_num(x: f64) -> String {
    let r = x.round() as i64;
    if (x - r as f64).abs() < 1e-9 || x.abs() >= 100.0 {
        let s = r.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if r < 0 { format!("-{out}") } else { out }
    } else {
        format!("{x:.2}")
    }
}

/// The ceiling in one sentence, with its SLO.
pub fn statement(vary: Vary, slo: &Slo, steps: &[Step], ceiling: Option<&Step>, params: &Value, stop: Stop) -> String {
    let slo_txt = match vary {
        Vary::Rate => format!("while delivery p99 < {} ms, {} lost", fmt_num(slo.p99_ms), slo.max_lost),
        _ => format!("while connect+join p99 < {} ms, {} failed", fmt_num(slo.p99_ms), slo.max_failures),
    };
    let subject = |s: &Step| match vary {
        Vary::Rate => format!(
            "{} deliveries/s to {} subscribers ({} broadcasts/s)",
            fmt_num(s.achieved.unwrap_or(s.offered)),
            fmt_num(params["subscribers"].as_f64().unwrap_or(0.0)),
            fmt_num(s.value)
        ),
        Vary::ConnectRate => format!(
            "{} connections/s offered ({} connections, each joining {} topic(s))",
            fmt_num(s.value),
            fmt_num(params["connections"].as_f64().unwrap_or(0.0)),
            params["joins_per_conn"].as_u64().unwrap_or(1)
        ),
        Vary::Connections => format!(
            "{} connections joined at {} connections/s",
            fmt_num(s.value),
            fmt_num(params["common"]["connect_rate"].as_f64().unwrap_or(0.0))
        ),
    };
    match ceiling {
        Some(c) => {
            let p99 = c.p99_ms.map(|p| format!(" (p99 {} ms)", fmt_num(p))).unwrap_or_default();
            let more = match stop {
                Stop::MaxPassed => " — the highest load tried; the ceiling is higher".to_string(),
                Stop::StepLimit | Stop::Budget => " — search stopped before it resolved".to_string(),
                _ => String::new(),
            };
            let lg = if c.loadgen_saturated || steps.iter().any(|s| s.value > c.value && s.verdict.resource == Some(search::Resource::LoadgenCpu)) {
                " [loadgen-bound: the server's ceiling is at least this]"
            } else {
                ""
            };
            format!("{} {slo_txt}{p99}{more}{lg}", subject(c))
        }
        None => format!("SLO ({slo_txt}) not met at any load tried (lowest: {})", steps.iter().map(|s| s.value).fold(f64::INFINITY, f64::min)),
    }
}

/// What ran out, in words: at a failing step, the resource (or latency alone); at a passing
/// one (nothing failed in the range), what was closest to its limit.
fn limit_detail(s: &Step) -> String {
    match (s.pass, s.verdict.resource) {
        (false, Some(_)) => s.verdict.detail.clone(),
        (false, None) => format!("{}: the SLO was missed by latency (queueing), not by an exhausted resource", s.verdict.detail),
        (true, _) => format!("nothing failed in the range searched; at the highest load tried, {}", s.verdict.detail),
    }
}

/// Build the ceiling document from the steps (pure: the search's result, knee and verdict).
#[allow(clippy::too_many_arguments)]
pub fn document(a: &CeilingArgs, vary: Vary, slo: &Slo, cfg: &SearchCfg, steps: &[Step], stop: Stop, env: Value, params: Value, started: u64) -> Value {
    let tried: Vec<Tried> = steps.iter().map(|s| Tried { load: s.value, pass: s.pass }).collect();
    let b = bracket(&tried);
    let ceiling = b.pass.and_then(|v| steps.iter().find(|s| s.pass && s.value == v));
    let first_fail = b.fail.and_then(|v| steps.iter().find(|s| !s.pass && s.value == v));
    let points: Vec<Point> = steps.iter().map(|s| Point { offered: s.offered, achieved: s.achieved, p99_ms: s.p99_ms }).collect();
    let k = knee(&points, a.knee_factor, a.slo_p99_ms * KNEE_FLOOR_OF_SLO, 0.95);
    // what ran out first: at the lowest failing load, else (the ceiling is above the range) at
    // the highest passing one
    let limit_step = first_fail.or(ceiling);
    let label = a.label.clone().unwrap_or_else(|| format!("ceiling-{}-{}", a.scenario, vary.name()));
    let stmt = statement(vary, slo, steps, ceiling, &params, stop);
    let mut notes = vec![];
    if b.non_monotonic {
        let top = steps.iter().filter(|s| s.pass).max_by(|x, y| x.value.total_cmp(&y.value));
        let contended: Vec<String> = steps
            .iter()
            .filter(|s| !s.pass && top.is_some_and(|t| s.value < t.value) && s.verdict.resource == Some(search::Resource::MachineCpu))
            .map(|s| fmt_num(s.value))
            .collect();
        let mut n = format!(
            "non-monotonic: a step passed above a failing one (highest pass: --{} {}, {} {}{}); the ceiling stated is the conservative one, the highest pass below the lowest fail",
            vary.name(),
            top.map(|t| fmt_num(t.value)).unwrap_or_default(),
            top.map(|t| fmt_num(t.achieved.unwrap_or(t.offered))).unwrap_or_default(),
            vary.unit(),
            top.and_then(|t| t.p99_ms).map(|p| format!(", p99 {} ms", fmt_num(p))).unwrap_or_default()
        );
        if !contended.is_empty() {
            n.push_str(&format!(
                "; the failures below it (--{} {}) ran while the machine's CPUs were saturated with other processes' work (machine CPU column), so the ceiling on a quiet machine is likely nearer the highest pass",
                vary.name(),
                contended.join(", ")
            ));
        }
        notes.push(n);
    }
    if steps.iter().any(|s| s.loadgen_saturated) {
        notes.push(format!("loadgen CPU above {:.0}% of its cores in some steps (see each step's warnings)", SATURATED_SHARE * 100.0));
    }
    json!({
        "schema_version": CEILING_SCHEMA_VERSION,
        "kind": "ceiling",
        "tool": "loadgen",
        "label": label,
        "scenario": a.scenario,
        "vary": vary.name(),
        "unit": vary.unit(),
        "started_at_unix_s": started,
        "environment": env,
        "scenario_params": params,
        "scenario_args": a.scenario_args,
        "slo": slo,
        "search": cfg,
        "stop": stop,
        "steps": steps,
        "ceiling": ceiling.map(|c| json!({
            "step": c.step, "value": c.value, "offered": c.offered, "achieved": c.achieved, "p99_ms": c.p99_ms,
            "loadgen_saturated": c.loadgen_saturated,
        })),
        "first_failure": first_fail.map(|f| json!({"step": f.step, "value": f.value, "offered": f.offered, "violations": f.violations})),
        "bracket": b,
        "knee": k.map(|k| json!({
            "before_value": steps[k.before].value, "before_offered": k.before_offered,
            "at_value": steps[k.at].value, "at_offered": k.at_offered, "reason": k.reason,
        })),
        "limiting_resource": limit_step.map(|s| json!({
            "step": s.step, "value": s.value,
            "resource": s.verdict.resource, "utilization": s.verdict.utilization, "detail": limit_detail(s),
        })),
        "loadgen_bound": limit_step.is_some_and(|s| s.verdict.resource == Some(search::Resource::LoadgenCpu)),
        "statement": stmt,
        "note": a.note,
        "notes": notes,
    })
}

/// The Markdown summary of a ceiling document.
pub fn markdown(d: &Value) -> String {
    let mut s = String::new();
    let f = |v: &Value| v.as_f64().map(fmt_num).unwrap_or_else(|| "–".into());
    let pct = |v: &Value| v.as_f64().map(|x| format!("{:.0}%", x * 100.0)).unwrap_or_else(|| "–".into());
    s.push_str(&format!("# Ceiling: {}\n\n", d["label"].as_str().unwrap_or("")));
    s.push_str(&format!("**{}**\n\n", d["statement"].as_str().unwrap_or("")));
    if let Some(n) = d["note"].as_str() {
        s.push_str(&format!("{n}\n\n"));
    }
    let slo = &d["slo"];
    s.push_str(&format!(
        "SLO: `{}` < {} ms, lost ≤ {}, failed connections ≤ {}, achieved ≥ {:.0}% of offered. Varied: `--{}` ({}), search stopped: {}.\n\n",
        slo["latency_metric"].as_str().unwrap_or(""),
        f(&slo["p99_ms"]),
        slo["max_lost"],
        slo["max_failures"],
        slo["min_throughput_ratio"].as_f64().unwrap_or(0.0) * 100.0,
        d["vary"].as_str().unwrap_or(""),
        d["unit"].as_str().unwrap_or(""),
        d["stop"].as_str().unwrap_or("")
    ));
    if let Some(k) = d["knee"].as_object() {
        s.push_str(&format!(
            "Knee: between --{} {} and {} ({} → {} {} offered): {}.\n\n",
            d["vary"].as_str().unwrap_or(""),
            f(&k["before_value"]),
            f(&k["at_value"]),
            f(&k["before_offered"]),
            f(&k["at_offered"]),
            d["unit"].as_str().unwrap_or(""),
            k["reason"].as_str().unwrap_or("")
        ));
    } else {
        s.push_str("Knee: none within the loads measured.\n\n");
    }
    if let Some(l) = d["limiting_resource"].as_object() {
        s.push_str(&format!("What ran out first (step {}, --{} {}): {}.\n\n", l["step"], d["vary"].as_str().unwrap_or(""), f(&l["value"]), l["detail"].as_str().unwrap_or("")));
    }
    for n in d["notes"].as_array().into_iter().flatten() {
        s.push_str(&format!("Note: {}\n\n", n.as_str().unwrap_or("")));
    }
    s.push_str(&format!(
        "| step | --{} | offered {} | achieved | p99 ms | lost | failed | SLO | server CPU | loadgen CPU | host CPU | machine CPU | server fds | verdict | report |\n",
        d["vary"].as_str().unwrap_or(""),
        d["unit"].as_str().unwrap_or("")
    ));
    s.push_str("|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|\n");
    let mut steps: Vec<&Value> = d["steps"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    steps.sort_by(|a, b| a["value"].as_f64().unwrap_or(0.0).total_cmp(&b["value"].as_f64().unwrap_or(0.0)));
    for st in steps {
        let u = &st["usage"];
        let verdict = match st["verdict"]["resource"].as_str() {
            Some(r) => r.to_string(),
            None => "–".into(),
        };
        let slo = if st["pass"].as_bool() == Some(true) {
            "pass".to_string()
        } else {
            format!("FAIL: {}", st["violations"].as_array().map(|v| v.iter().filter_map(|x| x.as_str()).take(2).collect::<Vec<_>>().join("; ")).unwrap_or_default())
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} |\n",
            st["step"],
            f(&st["value"]),
            f(&st["offered"]),
            f(&st["achieved"]),
            f(&st["p99_ms"]),
            st["lost"],
            st["failures"],
            slo,
            pct(&u["server_cpu"]),
            pct(&u["loadgen_cpu"]),
            if st["loadgen_saturated"].as_bool() == Some(true) { " (saturated)" } else { "" },
            pct(&u["host_cpu"]),
            pct(&u["machine_cpu"]),
            pct(&u["server_fds"]),
            verdict,
            st["report"].as_str().map(|r| format!("[{r}]({r})")).unwrap_or_else(|| "–".into())
        ));
    }
    s.push_str(
        "\nCPU columns are shares of a limit: server and host (server + loadgen) CPU over all of the machine's CPUs, loadgen CPU over the cores its processes could use, machine CPU every process's (others' included, /proc/stat) over all CPUs; in the measured phase for a publish rate, in the ramp for a connect storm. Server fds: open descriptors when all connections were up, over its limit.\n",
    );
    s
}

/// Run the search: returns the exit code (0: a ceiling was found, 1: none, 2: error).
pub fn run(a: &CeilingArgs) -> i32 {
    match run_inner(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen ceiling: {e}");
            2
        }
    }
}

fn run_inner(a: &CeilingArgs) -> Result<i32, String> {
    let vary = Vary::parse(&a.scenario, a.vary.as_deref())?;
    if let Some(f) = a.scenario_args.iter().find(|x| {
        vary.aliases().iter().any(|al| *x == al || x.starts_with(&format!("{al}=")))
            || ["--out", "--label", "--deadline"].iter().any(|al| *x == al || x.starts_with(&format!("{al}=")))
    }) {
        return Err(format!("{f} is set per step by the search; leave it out of the scenario's flags"));
    }
    // negated comparisons: NaN is rejected too
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    let bad = !(a.factor > 1.0) || !(a.min > 0.0) || a.max < a.min || a.resolution < 0.0 || a.max_steps == 0;
    if bad {
        return Err("need --factor > 1, --min > 0, --max >= --min, --resolution >= 0, --max-steps >= 1".into());
    }
    let slo = Slo {
        latency_metric: vary.latency_metric().into(),
        p99_ms: a.slo_p99_ms,
        max_lost: a.slo_max_lost,
        max_failures: a.slo_max_failures,
        min_throughput_ratio: a.slo_min_throughput,
    };
    let cfg = SearchCfg { start: a.start, factor: a.factor, min: a.min, max: a.max, resolution: a.resolution, max_steps: a.max_steps, integer: vary.integer() };
    let label = a.label.clone().unwrap_or_else(|| format!("ceiling-{}-{}", a.scenario, vary.name()));
    let dir = PathBuf::from(&a.out_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = a.out.clone().map(PathBuf::from).unwrap_or_else(|| dir.join(format!("{label}.json")));
    let md = a.markdown.clone().map(PathBuf::from).unwrap_or_else(|| dir.join(format!("{label}.md")));
    if a.rerender {
        return rerender(a, vary, &slo, &cfg, &out, &md);
    }
    let exe = match &a.loadgen_bin {
        Some(b) => PathBuf::from(b),
        None => std::env::current_exe().map_err(|e| format!("current exe: {e}"))?,
    };
    let started = crate::engine::now_unix_us() / 1_000_000;
    let t_start = Instant::now();
    let budget = Duration::from_secs_f64(a.budget);
    let mut steps: Vec<Step> = vec![];
    let mut tried: Vec<Tried> = vec![];
    let mut longest = Duration::ZERO;
    let mut env = Value::Null;
    let mut params = Value::Null;
    let stop = loop {
        let value = match next_load(&cfg, &tried) {
            Ok(v) => v,
            Err(stop) => break stop,
        };
        if !steps.is_empty() && t_start.elapsed() + longest + Duration::from_secs_f64(a.pause) > budget {
            break Stop::Budget;
        }
        if !steps.is_empty() {
            std::thread::sleep(Duration::from_secs_f64(a.pause));
        }
        let k = steps.len() + 1;
        let report_name = format!("{label}-step{k}.json");
        let report_path = dir.join(&report_name);
        let _ = std::fs::remove_file(&report_path);
        let vtxt = if vary.integer() { format!("{}", value as u64) } else { format!("{value}") };
        eprintln!("== ceiling {label} step {k}: {} {vtxt}", vary.flag());
        let t = Instant::now();
        let code = run_step(&exe, a, vary, &vtxt, &report_path, &format!("{label}-step{k}"))?;
        let wall = t.elapsed();
        longest = longest.max(wall);
        let report: Value = std::fs::read_to_string(&report_path).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null);
        if env.is_null() && report.is_object() {
            env = report["environment"].clone();
            params = report["params"].clone();
        }
        let step = make_step(k, value, &report, vary, &slo, report.is_object().then(|| relative(&report_path, out.parent())), code, wall.as_secs_f64());
        eprintln!(
            "   {} offered {} achieved {} p99 {} ms lost {} failed {} -> {}{}",
            vary.flag(),
            fmt_num(step.offered),
            step.achieved.map(fmt_num).unwrap_or_else(|| "-".into()),
            step.p99_ms.map(fmt_num).unwrap_or_else(|| "-".into()),
            step.lost,
            step.failures,
            if step.pass { "pass".to_string() } else { format!("FAIL ({})", step.violations.join("; ")) },
            step.verdict.resource.map(|r| format!(" [{}]", r.describe())).unwrap_or_default()
        );
        tried.push(Tried { load: value, pass: step.pass });
        steps.push(step);
        // the document after every step: an interrupted search keeps what it measured
        let d = document(a, vary, &slo, &cfg, &steps, Stop::Budget, env.clone(), params.clone(), started);
        let _ = std::fs::write(&out, serde_json::to_string_pretty(&d).unwrap_or_default());
    };
    let d = document(a, vary, &slo, &cfg, &steps, stop, env, params, started);
    std::fs::write(&out, serde_json::to_string_pretty(&d).unwrap_or_default()).map_err(|e| format!("{}: {e}", out.display()))?;
    let text = markdown(&d);
    std::fs::write(&md, &text).map_err(|e| format!("{}: {e}", md.display()))?;
    println!("{text}");
    Ok(if d["ceiling"].is_null() { 1 } else { 0 })
}

/// One step from its report (Null: the run wrote none).
#[allow(clippy::too_many_arguments)]
fn make_step(k: usize, value: f64, report: &Value, vary: Vary, slo: &Slo, report_rel: Option<String>, code: Option<i32>, wall_s: f64) -> Step {
    let (mut m, point, usage) = read_step(report, vary);
    if !report.is_object() {
        m.offered = value;
    }
    let v = violations(slo, &m);
    let warnings: Vec<String> = report["warnings"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
    Step {
        step: k,
        value,
        offered: point.offered,
        achieved: point.achieved,
        p99_ms: point.p99_ms,
        lost: m.lost,
        failures: m.failures,
        pass: v.is_empty(),
        violations: v,
        verdict: classify(&usage, SATURATED_SHARE),
        usage,
        loadgen_saturated: report["loadgen_saturated"].as_bool().unwrap_or(false),
        warnings,
        report: report_rel,
        exit_code: code,
        wall_s: (wall_s * 10.0).round() / 10.0,
    }
}

/// --rerender: rebuild the document and its Markdown from an earlier search's step reports
/// (same flags), without running anything.
fn rerender(a: &CeilingArgs, vary: Vary, slo: &Slo, cfg: &SearchCfg, out: &Path, md: &Path) -> Result<i32, String> {
    let old: Value = std::fs::read_to_string(out).ok().and_then(|s| serde_json::from_str(&s).ok()).ok_or_else(|| format!("{}: no ceiling document to rerender", out.display()))?;
    let base = out.parent().unwrap_or(Path::new("."));
    let mut steps = vec![];
    for st in old["steps"].as_array().into_iter().flatten() {
        let rel = st["report"].as_str().map(String::from);
        let report: Value = rel.as_ref().and_then(|r| std::fs::read_to_string(base.join(r)).ok()).and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null);
        let k = st["step"].as_u64().unwrap_or(0) as usize;
        let value = st["value"].as_f64().unwrap_or(0.0);
        steps.push(make_step(k, value, &report, vary, slo, rel, st["exit_code"].as_i64().map(|c| c as i32), st["wall_s"].as_f64().unwrap_or(0.0)));
    }
    let stop: Stop = serde_json::from_value(old["stop"].clone()).map_err(|e| format!("stop: {e}"))?;
    // the flags the steps ran with, not this invocation's
    let mut a = a.clone();
    if let Some(args) = old["scenario_args"].as_array() {
        a.scenario_args = args.iter().filter_map(|x| x.as_str().map(String::from)).collect();
    }
    let a = &a;
    let d = document(a, vary, slo, cfg, &steps, stop, old["environment"].clone(), old["scenario_params"].clone(), old["started_at_unix_s"].as_u64().unwrap_or(0));
    std::fs::write(out, serde_json::to_string_pretty(&d).unwrap_or_default()).map_err(|e| format!("{}: {e}", out.display()))?;
    let text = markdown(&d);
    std::fs::write(md, &text).map_err(|e| format!("{}: {e}", md.display()))?;
    println!("{text}");
    Ok(if d["ceiling"].is_null() { 1 } else { 0 })
}

fn relative(p: &Path, base: Option<&Path>) -> String {
    match base.and_then(|b| p.strip_prefix(b).ok()) {
        Some(r) => r.display().to_string(),
        None => p.display().to_string(),
    }
}

/// One step: the scenario as a child process, bounded by --step-timeout (its own --deadline,
/// and a kill 30 s past it). Returns its exit code (None: killed).
fn run_step(exe: &Path, a: &CeilingArgs, vary: Vary, value: &str, report: &Path, label: &str) -> Result<Option<i32>, String> {
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(&a.scenario)
        .args(&a.scenario_args)
        .arg(vary.flag())
        .arg(value)
        .arg("--out")
        .arg(report)
        .arg("--label")
        .arg(label)
        .arg("--deadline")
        .arg(format!("{}", a.step_timeout))
        .stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", exe.display()))?;
    let until = Instant::now() + Duration::from_secs_f64(a.step_timeout + 30.0);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(st.code()),
            Ok(None) if Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for the step: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fanout_report(rate: f64, p99: f64, lost: f64) -> Value {
        json!({
            "schema_version": 1, "ok": lost == 0.0, "problems": if lost > 0.0 { vec![format!("{lost} lost")] } else { vec![] },
            "params": {"subscribers": 19000, "topics": 1, "rate": rate, "common": {"connect_rate": 4000.0, "procs": 2, "duration": 10.0}},
            "environment": {"mem_total_bytes": 1000.0, "fd_limit_soft": 20000},
            "metrics": {
                "deliveries_per_s": {"value": rate * 19000.0 * 0.9}, "deliveries": {"value": rate * 19000.0 * 0.99 * 10.0}, "delivery_p99_ms": {"value": p99},
                "lost": {"value": lost}, "connection_failures": {"value": 0.0}, "connections_established": {"value": 19001.0},
                "server_measure_cpu_share": {"value": 0.6}, "loadgen_measure_cpu_share": {"value": 0.35}, "host_measure_cpu_share": {"value": 0.95},
                "server_ramp_cpu_share": {"value": 0.1}, "machine_measure_cpu_share": {"value": 0.97},
            },
            "server": {"ready": {"rss_bytes": 400.0, "cpu_us": 1}, "end": {"rss_bytes": 500.0, "cpu_us": 2}, "fds_ready": 19010, "fd_limit": 20000},
            "per_process": [{"connections": 9500}, {"connections": 9501}],
            "errors": {"connect:http_503": 0},
        })
    }

    #[test]
    fn reads_a_fanout_step() {
        let (m, p, u) = read_step(&fanout_report(10.0, 277.0, 0.0), Vary::Rate);
        assert_eq!(m.offered, 190_000.0);
        // over the publishing window (10 s), not deliveries_per_s (which includes the drain)
        assert_eq!(p.achieved, Some(188_100.0));
        assert_eq!((m.p99_ms, m.lost, m.failures, m.ok), (Some(277.0), 0, 0, true));
        // the measured phase's CPU, not the ramp's
        assert_eq!((u.server_cpu, u.loadgen_cpu, u.host_cpu), (Some(0.6), Some(0.35), Some(0.95)));
        assert_eq!(u.server_memory, Some(0.5));
        assert_eq!(u.server_fds, Some(19010.0 / 20000.0));
        assert_eq!(u.loadgen_fds, Some(9501.0 / 20000.0));
        assert_eq!(classify(&u, 0.9).resource, Some(search::Resource::HostCpu));
        // no report: a failing step
        let (m, _, _) = read_step(&Value::Null, Vary::Rate);
        assert!(!m.report);
    }

    #[test]
    fn reads_a_connect_step() {
        let r = json!({
            "ok": false, "problems": ["600 of 20500 connections not established+joined"],
            "params": {"connections": 20500, "joins_per_conn": 1, "common": {"connect_rate": 4000.0}},
            "environment": {},
            "metrics": {"connections_established": {"value": 19900.0}, "connection_failures": {"value": 600.0},
                        "time_to_all_connected_s": {"value": 5.0}, "ramp_cpu_share": {"value": 0.2}},
            "histograms": {"connect_and_join": {"p99_ms": 812.5}},
            "server": {"fds_ready": 19905, "fd_limit": 20000},
            "errors": {"connect:http_503": 600},
        });
        let (m, p, u) = read_step(&r, Vary::Connections);
        assert_eq!((m.offered, p.achieved, m.failures), (20500.0, Some(19900.0), 600));
        assert_eq!(m.p99_ms, Some(812.5)); // from the histogram when the metric is absent
        assert_eq!(classify(&u, 0.9).resource, Some(search::Resource::ServerFds));
        let (m, p, _) = read_step(&r, Vary::ConnectRate);
        assert_eq!((m.offered, p.achieved), (4000.0, Some(3980.0)));
    }

    fn args() -> CeilingArgs {
        CeilingArgs {
            scenario: "fanout".into(),
            vary: None,
            start: 4.0,
            factor: 2.0,
            min: 1.0,
            max: 64.0,
            resolution: 0.1,
            max_steps: 10,
            slo_p99_ms: 500.0,
            slo_max_lost: 0,
            slo_max_failures: 0,
            slo_min_throughput: 0.9,
            knee_factor: 2.0,
            step_timeout: 100.0,
            pause: 0.0,
            budget: 100.0,
            out_dir: "/tmp".into(),
            label: Some("t".into()),
            out: None,
            markdown: None,
            loadgen_bin: None,
            note: None,
            rerender: false,
            scenario_args: vec![],
        }
    }

    #[test]
    fn document_names_the_ceiling_with_its_slo() {
        let a = args();
        let slo = Slo { latency_metric: "delivery_p99_ms".into(), p99_ms: 500.0, max_lost: 0, max_failures: 0, min_throughput_ratio: 0.9 };
        let cfg = SearchCfg { start: 4.0, factor: 2.0, min: 1.0, max: 64.0, resolution: 0.1, max_steps: 10, integer: false };
        // a server whose p99 grows with the rate, and that loses deliveries at 32/s
        let mut steps = vec![];
        for (k, (rate, p99, lost)) in [(4.0, 200.0, 0.0), (8.0, 260.0, 0.0), (16.0, 450.0, 0.0), (32.0, 2900.0, 12.0), (24.0, 700.0, 0.0), (20.0, 480.0, 0.0), (22.0, 560.0, 0.0)].into_iter().enumerate() {
            let r = fanout_report(rate, p99, lost);
            let (m, p, u) = read_step(&r, Vary::Rate);
            let v = violations(&slo, &m);
            steps.push(Step {
                step: k + 1, value: rate, offered: p.offered, achieved: p.achieved, p99_ms: p.p99_ms, lost: m.lost, failures: m.failures,
                pass: v.is_empty(), violations: v, verdict: classify(&u, 0.9), usage: u, loadgen_saturated: false, warnings: vec![],
                report: Some(format!("t-step{}.json", k + 1)), exit_code: Some(0), wall_s: 1.0,
            });
        }
        let params = fanout_report(0.0, 0.0, 0.0)["params"].clone();
        let d = document(&a, Vary::Rate, &slo, &cfg, &steps, Stop::Resolved, json!({}), params, 0);
        assert_eq!(d["kind"], "ceiling");
        assert_eq!(d["ceiling"]["value"], 20.0);
        assert_eq!(d["first_failure"]["value"], 22.0);
        assert_eq!(d["statement"], "376,200 deliveries/s to 19,000 subscribers (20 broadcasts/s) while delivery p99 < 500 ms, 0 lost (p99 480 ms)");
        // p99 first exceeds 2 × 200 ms at 16/s
        assert_eq!(d["knee"]["before_value"], 8.0);
        assert_eq!(d["knee"]["at_value"], 16.0);
        assert_eq!(d["limiting_resource"]["resource"], "host_cpu");
        assert_eq!(d["loadgen_bound"], false);
        let md = markdown(&d);
        assert!(md.contains("**376,200 deliveries/s"), "{md}");
        assert!(md.contains("| 7 | 22 | 418,000 |"), "{md}");
        assert!(md.contains("| 95% | 97% |"), "{md}");
        assert!(md.contains("FAIL: delivery_p99_ms 560.0 ms >= 500 ms"), "{md}");
    }

    #[test]
    fn a_pass_above_contended_failures_is_named() {
        let a = args();
        let slo = Slo { latency_metric: "delivery_p99_ms".into(), p99_ms: 500.0, max_lost: 0, max_failures: 0, min_throughput_ratio: 0.9 };
        let cfg = SearchCfg { start: 8.0, factor: 2.0, min: 1.0, max: 64.0, resolution: 0.1, max_steps: 10, integer: false };
        let mut steps = vec![];
        for (k, (rate, p99, machine)) in [(8.0, 180.0, 0.89), (16.0, 197.0, 0.93), (12.0, 572.0, 1.0), (9.0, 616.0, 1.0)].into_iter().enumerate() {
            let mut r = fanout_report(rate, p99, 0.0);
            r["metrics"]["machine_measure_cpu_share"] = json!({"value": machine});
            r["metrics"]["host_measure_cpu_share"] = json!({"value": 0.45});
            r["metrics"]["server_measure_cpu_share"] = json!({"value": 0.25});
            r["metrics"]["loadgen_measure_cpu_share"] = json!({"value": 0.2});
            steps.push(make_step(k + 1, rate, &r, Vary::Rate, &slo, None, Some(0), 1.0));
        }
        assert_eq!(steps[2].verdict.resource, Some(search::Resource::MachineCpu));
        let d = document(&a, Vary::Rate, &slo, &cfg, &steps, Stop::Resolved, json!({}), fanout_report(0.0, 0.0, 0.0)["params"].clone(), 0);
        // conservative ceiling below the lowest fail, and the higher pass named with the reason
        assert_eq!(d["ceiling"]["value"], 8.0);
        let note = d["notes"][0].as_str().unwrap();
        assert!(note.contains("highest pass: --rate 16, 300,960 deliveries/s, p99 197 ms"), "{note}");
        assert!(note.contains("(--rate 12, 9) ran while the machine's CPUs were saturated"), "{note}");
        assert_eq!(d["limiting_resource"]["resource"], "machine_cpu");
    }

    #[test]
    fn vary_applies_to_its_scenario_only() {
        assert_eq!(Vary::parse("fanout", None), Ok(Vary::Rate));
        assert_eq!(Vary::parse("connect", Some("connections")), Ok(Vary::Connections));
        assert!(Vary::parse("fanout", Some("connections")).is_err());
        assert_eq!(fmt_num(1234567.4), "1,234,567");
        assert_eq!(fmt_num(2.5), "2.50");
    }
}
