//! The ceiling search without sockets: which load to try next (expand, then bisect), whether a
//! step met the SLO, the ceiling and the knee over the steps, and which resource ran out first.
//! Everything here is a pure function of numbers, so it is tested without running anything.

use serde::Serialize;

/// How the search moves: from `start`, multiply by `factor` while steps pass (up to `max`),
/// divide while they fail (down to `min`); once a pass and a fail bracket the ceiling, bisect
/// until `(fail - pass) / pass <= resolution`. At most `max_steps` steps in all.
#[derive(Debug, Clone, Serialize)]
pub struct SearchCfg {
    pub start: f64,
    pub factor: f64,
    pub min: f64,
    pub max: f64,
    pub resolution: f64,
    pub max_steps: usize,
    /// loads are counts (connections): rounded to whole numbers
    pub integer: bool,
}

/// One measured step: the value of the varied flag and whether it met the SLO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tried {
    pub load: f64,
    pub pass: bool,
}

/// Where the search stands.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bracket {
    /// highest passing load below the lowest failing one (the ceiling so far)
    pub pass: Option<f64>,
    /// lowest failing load
    pub fail: Option<f64>,
    /// some step passed above a failing one (noise, or a server that recovers at higher load):
    /// the ceiling stays conservative (below the lowest fail)
    pub non_monotonic: bool,
}

pub fn bracket(steps: &[Tried]) -> Bracket {
    let fail = steps.iter().filter(|s| !s.pass).map(|s| s.load).fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.min(x))));
    let below = |x: f64| fail.is_none_or(|f| x < f);
    let pass = steps.iter().filter(|s| s.pass && below(s.load)).map(|s| s.load).fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
    let non_monotonic = steps.iter().any(|s| s.pass && !below(s.load));
    Bracket { pass, fail, non_monotonic }
}

/// Why the search stopped (or None: go on with the returned load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// pass and fail are within the resolution
    Resolved,
    /// every step passed up to `max`: the ceiling is above the range searched
    MaxPassed,
    /// every step failed down to `min`: the SLO is not met at any load searched
    MinFailed,
    /// `max_steps` reached before resolving
    StepLimit,
    /// the time budget ran out (decided by the caller)
    Budget,
}

fn round(cfg: &SearchCfg, x: f64) -> f64 {
    if cfg.integer { x.round() } else { (x * 1000.0).round() / 1000.0 }
}

/// The next load to try, or why to stop.
pub fn next_load(cfg: &SearchCfg, steps: &[Tried]) -> Result<f64, Stop> {
    if steps.is_empty() {
        return Ok(round(cfg, cfg.start.clamp(cfg.min, cfg.max)));
    }
    let b = bracket(steps);
    let next = match (b.pass, b.fail) {
        (Some(p), None) => {
            if p >= cfg.max {
                return Err(Stop::MaxPassed);
            }
            round(cfg, (p * cfg.factor).min(cfg.max))
        }
        (None, Some(f)) => {
            if f <= cfg.min {
                return Err(Stop::MinFailed);
            }
            round(cfg, (f / cfg.factor).max(cfg.min))
        }
        (Some(p), Some(f)) => {
            if (f - p) / p <= cfg.resolution {
                return Err(Stop::Resolved);
            }
            let mid = round(cfg, (p + f) / 2.0);
            if mid <= p || mid >= f {
                return Err(Stop::Resolved);
            }
            mid
        }
        (None, None) => unreachable!("a step is either a pass or a fail"),
    };
    if steps.len() >= cfg.max_steps {
        return Err(Stop::StepLimit);
    }
    Ok(next)
}

/// The service level a step must meet.
#[derive(Debug, Clone, Serialize)]
pub struct Slo {
    /// the latency percentile that must stay below `p99_ms` (e.g. delivery_p99_ms)
    pub latency_metric: String,
    pub p99_ms: f64,
    pub max_lost: u64,
    pub max_failures: u64,
    /// achieved / offered at least this (deliveries/s, connections/s)
    pub min_throughput_ratio: f64,
}

/// What the SLO check needs from one step's report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measured {
    /// a report was written (the run finished)
    pub report: bool,
    /// the report's own verdict (no problems)
    pub ok: bool,
    pub problems: Vec<String>,
    pub p99_ms: Option<f64>,
    pub lost: u64,
    pub failures: u64,
    /// offered and achieved load in the headline unit (deliveries/s, connections/s, connections)
    pub offered: f64,
    pub achieved: Option<f64>,
}

/// The reasons a step misses the SLO (empty: it passes).
pub fn violations(slo: &Slo, m: &Measured) -> Vec<String> {
    if !m.report {
        return vec!["no report (the run did not finish)".into()];
    }
    let mut v = vec![];
    match m.p99_ms {
        Some(p) if p < slo.p99_ms => {}
        Some(p) => v.push(format!("{} {p:.1} ms >= {} ms", slo.latency_metric, slo.p99_ms)),
        None => v.push(format!("no {}", slo.latency_metric)),
    }
    if m.lost > slo.max_lost {
        v.push(format!("{} lost > {}", m.lost, slo.max_lost));
    }
    if m.failures > slo.max_failures {
        v.push(format!("{} connection failures > {}", m.failures, slo.max_failures));
    }
    if let Some(a) = m.achieved {
        if m.offered > 0.0 && a < slo.min_throughput_ratio * m.offered {
            v.push(format!("achieved {a:.0} < {:.0}% of offered {:.0}", slo.min_throughput_ratio * 100.0, m.offered));
        }
    }
    if !m.ok {
        for p in &m.problems {
            v.push(format!("report problem: {p}"));
        }
    }
    v
}

/// A measured point of the load curve.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub offered: f64,
    pub achieved: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Where latency or throughput stops scaling with the load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Knee {
    /// the last load before the knee (index into the points, and its offered load)
    pub before: usize,
    pub before_offered: f64,
    /// the first load past it
    pub at: usize,
    pub at_offered: f64,
    pub reason: String,
}

/// The knee: the first point (by offered load) whose p99 exceeds both `factor` × the p99 at the
/// lightest load and `floor_ms` (so that 12 → 29 ms is not a knee), or whose achieved load falls
/// below `min_ratio` of the offered one. None when the curve stays flat over the loads measured
/// (or fewer than two points).
pub fn knee(points: &[Point], factor: f64, floor_ms: f64, min_ratio: f64) -> Option<Knee> {
    let mut idx: Vec<usize> = (0..points.len()).collect();
    idx.sort_by(|&a, &b| points[a].offered.total_cmp(&points[b].offered));
    let base = points[*idx.first()?].p99_ms;
    for w in idx.windows(2) {
        let (b, a) = (w[0], w[1]);
        let p = points[a];
        let reason = match (base, p.p99_ms) {
            (Some(base), Some(x)) if x > factor * base && x > floor_ms => {
                Some(format!("p99 {x:.1} ms > {factor} x {base:.1} ms at the lightest load"))
            }
            (_, None) => Some("no latency measured".to_string()),
            _ => None,
        }
        .or_else(|| match p.achieved {
            Some(got) if got < min_ratio * p.offered => {
                Some(format!("achieved {got:.0}/s < {:.0}% of offered {:.0}/s", min_ratio * 100.0, p.offered))
            }
            _ => None,
        });
        if let Some(reason) = reason {
            return Some(Knee { before: b, before_offered: points[b].offered, at: a, at_offered: p.offered, reason });
        }
    }
    None
}

/// A resource that can run out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    ServerCpu,
    LoadgenCpu,
    /// server + loadgen together on the CPUs they share
    HostCpu,
    /// the machine's CPUs, busy with other processes too (a shared machine)
    MachineCpu,
    ServerMemory,
    ServerFds,
    LoadgenFds,
    /// local ports / source addresses (EADDRNOTAVAIL)
    LocalPorts,
}

impl Resource {
    pub fn describe(self) -> &'static str {
        match self {
            Resource::ServerCpu => "server CPU",
            Resource::LoadgenCpu => "loadgen CPU (the load generator, not the server, was the limit)",
            Resource::HostCpu => "host CPU (server and loadgen together on the shared cores)",
            Resource::MachineCpu => "machine CPU (other processes on the machine took the rest)",
            Resource::ServerMemory => "server memory",
            Resource::ServerFds => "server file descriptors",
            Resource::LoadgenFds => "loadgen file descriptors",
            Resource::LocalPorts => "local ports / source addresses",
        }
    }
    /// hard limits (a descriptor, a port, memory) explain a failure before CPU does
    fn hard(self) -> bool {
        matches!(self, Resource::ServerMemory | Resource::ServerFds | Resource::LoadgenFds | Resource::LocalPorts)
    }
}

/// What a step used, each as a fraction of its limit (None: not measured).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// server CPU over the machine's CPUs (the server may use all of them)
    pub server_cpu: Option<f64>,
    /// loadgen CPU over the cores it could use
    pub loadgen_cpu: Option<f64>,
    /// server + loadgen CPU over the machine's CPUs
    pub host_cpu: Option<f64>,
    /// every process's CPU over the machine's CPUs (/proc/stat)
    pub machine_cpu: Option<f64>,
    /// server RSS over the machine's memory
    pub server_memory: Option<f64>,
    /// server descriptors over its limit
    pub server_fds: Option<f64>,
    /// loadgen connections per process over its descriptor limit
    pub loadgen_fds: Option<f64>,
    /// failures that name a resource: connect errors emfile/enfile (loadgen side),
    /// http 503 at capacity (server side), eaddrnotavail (ports)
    pub loadgen_fd_errors: u64,
    pub server_capacity_errors: u64,
    pub port_errors: u64,
}

/// The verdict on one step's resources.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// the resource that ran out (None: none was at its limit)
    pub resource: Option<Resource>,
    /// its use as a fraction of its limit
    pub utilization: Option<f64>,
    pub detail: String,
}

/// Descriptors in use over their limit at which they count as exhausted.
pub const FDS_FULL: f64 = 0.99;

/// Which resource ran out in a step: a hard limit signalled by errors or at ≥ `threshold` of
/// its limit first; then the loadgen's CPU (a loadgen-bound step says nothing about the
/// server), then the server's, then both together on shared cores, then the whole machine
/// (other processes included). None at or above
/// `threshold`: the SLO was missed by latency alone (queueing), with no resource exhausted.
pub fn classify(u: &Usage, threshold: f64) -> Verdict {
    let errs = [
        (Resource::LoadgenFds, u.loadgen_fd_errors),
        (Resource::ServerFds, u.server_capacity_errors),
        (Resource::LocalPorts, u.port_errors),
    ];
    if let Some((r, n)) = errs.iter().filter(|(_, n)| *n > 0).max_by_key(|(_, n)| *n) {
        let util = match r {
            Resource::ServerFds => u.server_fds,
            Resource::LoadgenFds => u.loadgen_fds,
            _ => None,
        };
        return Verdict { resource: Some(*r), utilization: util, detail: format!("{n} connections failed for want of {}", r.describe()) };
    }
    let all = [
        (Resource::ServerMemory, u.server_memory),
        (Resource::ServerFds, u.server_fds),
        (Resource::LoadgenFds, u.loadgen_fds),
        (Resource::LoadgenCpu, u.loadgen_cpu),
        (Resource::ServerCpu, u.server_cpu),
        (Resource::HostCpu, u.host_cpu),
        (Resource::MachineCpu, u.machine_cpu),
    ];
    // in that order of precedence: hard limits, then loadgen CPU, server CPU, host CPU.
    // Descriptors are held one per connection whatever the load: they count as exhausted only
    // at FDS_FULL (or when connections fail for want of them, above), not at `threshold`.
    let limit = |r: Resource| if matches!(r, Resource::ServerFds | Resource::LoadgenFds) { FDS_FULL.max(threshold) } else { threshold };
    let at_limit = all.iter().filter_map(|(r, x)| x.filter(|x| *x >= limit(*r)).map(|x| (*r, x)));
    let pick = at_limit.clone().find(|(r, _)| r.hard()).or_else(|| at_limit.clone().next());
    match pick {
        Some((r, x)) => Verdict { resource: Some(r), utilization: Some(x), detail: format!("{} at {:.0}% of its limit", r.describe(), x * 100.0) },
        None => {
            let top = all.iter().filter_map(|(r, x)| x.map(|x| (*r, x))).max_by(|a, b| a.1.total_cmp(&b.1));
            let detail = match top {
                Some((r, x)) => format!("no resource at its limit (highest: {} at {:.0}%)", r.describe(), x * 100.0),
                None => "no resource measured (pass --server-pid)".into(),
            };
            Verdict { resource: None, utilization: top.map(|t| t.1), detail }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(start: f64, max: f64) -> SearchCfg {
        SearchCfg { start, factor: 2.0, min: 1.0, max, resolution: 0.1, max_steps: 20, integer: false }
    }

    /// Run the search against a server whose true ceiling is `c` (loads ≤ c pass).
    fn search(cfg: &SearchCfg, c: f64) -> (Vec<Tried>, Stop) {
        let mut steps = vec![];
        loop {
            match next_load(cfg, &steps) {
                Ok(x) => {
                    assert!(steps.iter().all(|s: &Tried| s.load != x), "tried {x} twice: {steps:?}");
                    steps.push(Tried { load: x, pass: x <= c });
                }
                Err(stop) => return (steps, stop),
            }
        }
    }

    #[test]
    fn expands_then_bisects_to_the_true_ceiling() {
        let c = cfg(2.0, 1000.0);
        let (steps, stop) = search(&c, 37.0);
        assert_eq!(stop, Stop::Resolved);
        let loads: Vec<f64> = steps.iter().map(|s| s.load).collect();
        // 2, 4, 8, 16, 32 pass; 64 fails; then bisection: 48 f, 40 f, 36 p, 38 f
        assert_eq!(loads, vec![2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 48.0, 40.0, 36.0, 38.0]);
        let b = bracket(&steps);
        assert_eq!((b.pass, b.fail), (Some(36.0), Some(38.0)));
        assert!(b.pass.unwrap() <= 37.0 && b.fail.unwrap() > 37.0);
        assert!(!b.non_monotonic);
        // for any true ceiling in range, the bracket holds it within the resolution
        for true_c in [1.5, 3.0, 9.9, 100.0, 640.0, 999.0] {
            let (steps, stop) = search(&c, true_c);
            let b = bracket(&steps);
            assert_eq!(stop, Stop::Resolved, "{true_c}: {steps:?}");
            let (p, f) = (b.pass.unwrap(), b.fail.unwrap());
            assert!(p <= true_c && true_c < f, "{true_c}: {p}..{f}");
            assert!((f - p) / p <= 0.1, "{true_c}: {p}..{f}");
        }
    }

    #[test]
    fn goes_down_when_the_start_fails_and_stops_at_the_ends() {
        let c = cfg(16.0, 100.0);
        let (steps, stop) = search(&c, 5.0);
        assert_eq!(steps[..3].iter().map(|s| s.load).collect::<Vec<_>>(), vec![16.0, 8.0, 4.0]);
        assert_eq!(stop, Stop::Resolved);
        let b = bracket(&steps);
        assert!(b.pass.unwrap() <= 5.0 && b.fail.unwrap() > 5.0);
        // nothing passes: stop at min
        let (steps, stop) = search(&c, 0.5);
        assert_eq!(stop, Stop::MinFailed);
        assert_eq!(steps.last().unwrap().load, 1.0);
        assert_eq!(bracket(&steps).pass, None);
        // everything passes: stop at max, having tried max
        let (steps, stop) = search(&c, 1e9);
        assert_eq!(stop, Stop::MaxPassed);
        assert_eq!(steps.iter().map(|s| s.load).collect::<Vec<_>>(), vec![16.0, 32.0, 64.0, 100.0]);
    }

    #[test]
    fn step_limit_and_integer_loads() {
        let mut c = cfg(5000.0, 40000.0);
        c.integer = true;
        c.resolution = 0.01;
        c.max_steps = 6;
        let (steps, stop) = search(&c, 19_900.0);
        assert_eq!(stop, Stop::StepLimit);
        assert_eq!(steps.len(), 6);
        assert!(steps.iter().all(|s| s.load.fract() == 0.0));
        // 5000 p, 10000 p, 20000 f, 15000 p, 17500 p, 18750 p
        assert_eq!(bracket(&steps).pass, Some(18750.0));
        // integer bisection ends when no whole number lies between
        c.max_steps = 100;
        c.resolution = 0.0;
        let (steps, stop) = search(&c, 19_900.0);
        assert_eq!(stop, Stop::Resolved);
        let b = bracket(&steps);
        assert_eq!((b.pass, b.fail), (Some(19_900.0), Some(19_901.0)));
    }

    #[test]
    fn a_pass_above_a_fail_does_not_raise_the_ceiling() {
        let steps = [
            Tried { load: 10.0, pass: true },
            Tried { load: 20.0, pass: false },
            Tried { load: 40.0, pass: true },
        ];
        let b = bracket(&steps);
        assert_eq!((b.pass, b.fail, b.non_monotonic), (Some(10.0), Some(20.0), true));
        assert_eq!(next_load(&cfg(10.0, 100.0), &steps), Ok(15.0));
    }

    fn slo() -> Slo {
        Slo { latency_metric: "delivery_p99_ms".into(), p99_ms: 500.0, max_lost: 0, max_failures: 0, min_throughput_ratio: 0.9 }
    }

    #[test]
    fn slo_violations() {
        let good = Measured { report: true, ok: true, problems: vec![], p99_ms: Some(499.0), lost: 0, failures: 0, offered: 100.0, achieved: Some(95.0) };
        assert!(violations(&slo(), &good).is_empty());
        let v = |f: &dyn Fn(&mut Measured)| {
            let mut m = good.clone();
            f(&mut m);
            violations(&slo(), &m)
        };
        assert_eq!(v(&|m| m.p99_ms = Some(500.0)), vec!["delivery_p99_ms 500.0 ms >= 500 ms"]);
        assert_eq!(v(&|m| m.p99_ms = None), vec!["no delivery_p99_ms"]);
        assert_eq!(v(&|m| m.lost = 1), vec!["1 lost > 0"]);
        assert_eq!(v(&|m| m.failures = 3), vec!["3 connection failures > 0"]);
        assert_eq!(v(&|m| m.achieved = Some(89.0)), vec!["achieved 89 < 90% of offered 100"]);
        assert_eq!(v(&|m| { m.ok = false; m.problems = vec!["2 × heartbeat_timeouts".into()] }), vec!["report problem: 2 × heartbeat_timeouts"]);
        assert_eq!(v(&|m| m.report = false), vec!["no report (the run did not finish)"]);
    }

    #[test]
    fn knee_where_latency_or_throughput_bends() {
        let p = |offered: f64, achieved: f64, p99: f64| Point { offered, achieved: Some(achieved), p99_ms: Some(p99) };
        // given out of order (as a bisection measures them): sorted by load first; 180 ms is
        // within 2 x the 100 ms at the lightest load, 250 ms is not
        let pts = [p(80.0, 79.0, 250.0), p(10.0, 10.0, 100.0), p(40.0, 40.0, 180.0), p(20.0, 20.0, 110.0)];
        let k = knee(&pts, 2.0, 50.0, 0.95).unwrap();
        assert_eq!((k.before, k.at, k.before_offered, k.at_offered), (2, 0, 40.0, 80.0), "{k:?}");
        // measured against the lightest load, not the previous one (150 → 210 is not 2x)
        let pts = [p(10.0, 10.0, 100.0), p(20.0, 20.0, 150.0), p(40.0, 40.0, 210.0), p(80.0, 80.0, 900.0)];
        let k = knee(&pts, 2.0, 50.0, 0.95).unwrap();
        assert_eq!((k.before, k.at, k.before_offered, k.at_offered), (1, 2, 20.0, 40.0));
        assert!(k.reason.starts_with("p99 210.0 ms > 2 x 100.0 ms"), "{}", k.reason);
        // throughput falls behind before latency bends
        let pts = [p(10.0, 10.0, 100.0), p(20.0, 18.0, 120.0), p(40.0, 20.0, 900.0)];
        let k = knee(&pts, 2.0, 50.0, 0.95).unwrap();
        assert_eq!(k.at_offered, 20.0);
        assert!(k.reason.contains("achieved 18/s"), "{}", k.reason);
        // flat: no knee
        assert_eq!(knee(&[p(10.0, 10.0, 100.0), p(20.0, 20.0, 190.0)], 2.0, 50.0, 0.95), None);
        assert_eq!(knee(&[p(10.0, 10.0, 100.0)], 2.0, 50.0, 0.95), None);
        // doubling below the floor is not a knee: 12 → 29 ms with a 50 ms floor
        assert_eq!(knee(&[p(10.0, 10.0, 12.0), p(20.0, 20.0, 29.0)], 2.0, 50.0, 0.95), None);
        assert!(knee(&[p(10.0, 10.0, 12.0), p(20.0, 20.0, 51.0)], 2.0, 50.0, 0.95).is_some());
    }

    #[test]
    fn resource_classification() {
        let v = |u: Usage| classify(&u, 0.9).resource;
        // nothing at its limit: latency alone
        let calm = Usage { server_cpu: Some(0.4), loadgen_cpu: Some(0.3), host_cpu: Some(0.7), server_memory: Some(0.1), server_fds: Some(0.5), ..Default::default() };
        let c = classify(&calm, 0.9);
        assert_eq!(c.resource, None);
        assert!(c.detail.contains("highest: host CPU") && c.detail.contains("70%"), "{}", c.detail);
        // the loadgen saturated before the server: say so (a floor for the server's ceiling)
        assert_eq!(v(Usage { loadgen_cpu: Some(0.95), server_cpu: Some(0.92), host_cpu: Some(0.99), ..calm.clone() }), Some(Resource::LoadgenCpu));
        assert_eq!(v(Usage { server_cpu: Some(0.93), host_cpu: Some(0.99), ..calm.clone() }), Some(Resource::ServerCpu));
        // neither alone, both together on shared cores
        assert_eq!(v(Usage { server_cpu: Some(0.55), loadgen_cpu: Some(0.4), host_cpu: Some(0.95), ..calm.clone() }), Some(Resource::HostCpu));
        // a hard limit comes before CPU
        // (descriptors held by the connections at 95% of the limit: not exhausted, CPU is)
        assert_eq!(v(Usage { server_fds: Some(0.95), host_cpu: Some(0.99), ..calm.clone() }), Some(Resource::HostCpu));
        assert_eq!(v(Usage { server_fds: Some(0.995), host_cpu: Some(0.99), ..calm.clone() }), Some(Resource::ServerFds));
        assert_eq!(v(Usage { server_memory: Some(0.93), loadgen_cpu: Some(0.99), ..calm.clone() }), Some(Resource::ServerMemory));
        // errors naming a resource decide it, whatever the utilization
        assert_eq!(v(Usage { server_capacity_errors: 600, loadgen_cpu: Some(0.99), ..calm.clone() }), Some(Resource::ServerFds));
        assert_eq!(v(Usage { loadgen_fd_errors: 5, port_errors: 2, ..calm.clone() }), Some(Resource::LoadgenFds));
        assert_eq!(v(Usage { port_errors: 7, ..calm.clone() }), Some(Resource::LocalPorts));
        // neither the server nor the loadgen, but other processes on the machine
        assert_eq!(v(Usage { machine_cpu: Some(0.97), ..calm.clone() }), Some(Resource::MachineCpu));
        assert_eq!(v(Usage { machine_cpu: Some(0.97), host_cpu: Some(0.93), ..calm.clone() }), Some(Resource::HostCpu));
        // nothing measured
        assert!(classify(&Usage::default(), 0.9).detail.contains("--server-pid"));
    }
}
