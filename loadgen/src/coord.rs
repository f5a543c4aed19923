//! Coordinator: runs a scenario's worker in process (--procs 1) or as child processes
//! (--procs N, see `engine::ipc`), samples the server at the phase boundaries, merges the
//! workers' results once, and builds and writes the report. Works on any `&dyn Scenario`.

use crate::engine::ipc::{Children, FromWorker, InProcHandle};
use crate::engine::{ipc, now_unix_us, run_worker, Control, Ctx, Progress};
use crate::error::RunError;
use crate::flags::Common;
use crate::report::{self, RunInfo, ServerSamples};
use crate::result::WorkerResult;
use crate::scenario::Scenario;
use crate::sysinfo;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Entry for a re-exec'd worker: lines on stdout, "GO" on stdin, "RESULT <json>" at the end.
pub async fn worker_main(sc: &dyn Scenario) -> i32 {
    let common = sc.common().clone();
    let t0 = common.t0_unix_us.unwrap_or_else(now_unix_us);
    let ctx = match Ctx::new(common, t0).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen worker: {e}");
            return 2;
        }
    };
    let workload = sc.workload(&ctx);
    let r = run_worker(ctx, workload, Control::Stdio).await;
    ipc::send_result(&r);
    0
}

/// Run a scenario: returns the process exit code (0 ok, 1 the report has problems, 2 error).
pub async fn coordinator_main(sc: &dyn Scenario) -> i32 {
    match coordinate(sc).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e}");
            2
        }
    }
}

/// Progress lines on stderr (unless --quiet).
struct Show {
    quiet: bool,
    since: Instant,
    total: usize,
}

impl Show {
    fn line(&self, phase: &str, est: u64, failed: u64, settled: u64, deliveries: u64, open: u64) {
        if self.quiet {
            return;
        }
        eprintln!(
            "[{phase} {:>6.1}s] established {est}/{} failed {failed} settled {settled} open {open} | deliveries {deliveries}",
            self.since.elapsed().as_secs_f64(),
            self.total
        );
    }
    fn progress(&self, phase: &str, p: &Progress) {
        self.line(
            phase,
            p.established.load(Relaxed),
            p.failed.load(Relaxed),
            p.settled.load(Relaxed),
            p.deliveries.get(),
            p.open.load(Relaxed),
        );
    }
}

/// The server's fan-out histogram (its `/metrics`), off the runtime's threads.
async fn sample_fanout(common: &Common) -> Option<crate::scrape::Histo> {
    let url = match common.server_metrics.as_deref() {
        Some("none") | Some("") => return None,
        Some(u) => u.to_string(),
        None => crate::scrape::metrics_url_for(&common.url)?,
    };
    tokio::task::spawn_blocking(move || crate::scrape::fanout(Some(&url))).await.ok().flatten()
}

fn sample_server(pid: Option<u32>) -> Option<sysinfo::ProcSample> {
    pid.and_then(|p| sysinfo::sample(&p.to_string()))
}

/// At ready: the server's open descriptors and their limit.
fn sample_server_fds(pid: Option<u32>, server: &mut ServerSamples) {
    if let Some(p) = pid {
        server.fds_ready = sysinfo::fd_count(&p.to_string());
        server.fd_limit = sysinfo::fd_limit(&p.to_string());
    }
}

async fn coordinate(sc: &dyn Scenario) -> Result<i32, RunError> {
    let common = sc.common().clone();
    let env = sysinfo::environment();
    let started = now_unix_us();
    let procs = common.procs.max(1);
    let total = sc.total_connections();
    if total / procs as usize > 19_900 {
        eprintln!(
            "loadgen: warning: {} connections per process exceeds ~19,900 (fd limit {}); use --procs",
            total / procs as usize,
            env["fd_limit_hard"]
        );
    }
    let mut server = ServerSamples { start: sample_server(common.server_pid), ..Default::default() };
    server.machine[0] = sysinfo::machine_cpu();
    let t0 = now_unix_us() + if procs > 1 { 1_000_000 } else { 100_000 };
    let show = Show { quiet: common.quiet, since: Instant::now(), total };

    let result = if procs == 1 {
        run_in_process(sc, &common, t0, &show, &mut server).await?
    } else {
        run_children(&common, procs, t0, &show, &mut server).await?
    };

    let run = RunInfo {
        scenario: sc.name(),
        timeline_metric: sc.timeline_metric(),
        params: sc.params(),
        env,
        t0_unix: t0,
        started_at_unix: started,
        server,
        server_pid: common.server_pid,
        duration_s: common.duration,
    };
    let built = report::build(run, &result, |r, s| sc.summarize(r, s));
    print!("{}", report::table(&built.report));
    let write = |path: &String, text: String| std::fs::write(path, text).map_err(|source| RunError::Write { path: path.clone(), source });
    if let Some(path) = &common.out {
        write(path, serde_json::to_string_pretty(&built.report).unwrap_or_default())?;
    }
    if let Some(path) = &common.svg {
        write(path, report::svg(&built.report))?;
    }
    Ok(if built.problems.is_empty() { 0 } else { 1 })
}

/// --procs 1: the worker is a task of this process.
async fn run_in_process(
    sc: &dyn Scenario,
    common: &Common,
    t0: u64,
    show: &Show,
    server: &mut ServerSamples,
) -> Result<WorkerResult, RunError> {
    let ctx = Ctx::new(common.clone(), t0).await?;
    let (ctl, InProcHandle { ready: mut ready_rx, go: go_tx, drained: mut drained_rx }) = Control::in_proc();
    let mut worker = tokio::spawn(run_worker(ctx.clone(), sc.workload(&ctx), ctl));
    let mut iv = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = iv.tick() => show.progress("ramp", &ctx.prog),
            r = &mut ready_rx => { if r.is_err() { return Err(RunError::WorkerEndedEarly); } break; }
        }
    }
    show.progress("ready", &ctx.prog);
    server.ready = sample_server(common.server_pid);
    server.machine[1] = sysinfo::machine_cpu();
    sample_server_fds(common.server_pid, server);
    server.fanout[0] = sample_fanout(common).await;
    let go = now_unix_us() + 100_000;
    server.go = sample_server(common.server_pid);
    server.machine[2] = sysinfo::machine_cpu();
    let _ = go_tx.send(go);
    loop {
        tokio::select! {
            _ = iv.tick() => show.progress("measure", &ctx.prog),
            _ = &mut drained_rx => break,
        }
    }
    server.end = sample_server(common.server_pid);
    server.fanout[1] = sample_fanout(common).await;
    server.machine[3] = sysinfo::machine_cpu();
    (&mut worker).await.map_err(RunError::WorkerFailed)
}

/// --procs N: N child processes; GO once all are ready; their results merged once.
async fn run_children(common: &Common, procs: u32, t0: u64, show: &Show, server: &mut ServerSamples) -> Result<WorkerResult, RunError> {
    let mut children = Children::spawn(procs, t0)?;
    let n = procs as usize;
    let mut prog = vec![[0u64; 5]; n];
    let mut ready = vec![false; n];
    let mut drained = vec![false; n];
    let mut results: Vec<Option<WorkerResult>> = (0..n).map(|_| None).collect();
    let mut exited = vec![false; n];
    let mut iv = tokio::time::interval(Duration::from_secs(1));
    let mut phase = "ramp";
    let mut go_sent = false;
    loop {
        tokio::select! {
            _ = iv.tick() => {
                let s = |k: usize| prog.iter().map(|p| p[k]).sum::<u64>();
                show.line(phase, s(0), s(1), s(2), s(3), s(4));
            }
            m = children.recv() => {
                let Some((i, msg)) = m else { break };
                match msg {
                    FromWorker::Progress(v) => {
                        for (k, x) in v.into_iter().enumerate().take(5) { prog[i][k] = x; }
                    }
                    FromWorker::Ready => ready[i] = true,
                    FromWorker::Drained => {
                        drained[i] = true;
                        if drained.iter().all(|d| *d) {
                            server.end = sample_server(common.server_pid);
                            server.machine[3] = sysinfo::machine_cpu();
                            server.fanout[1] = sample_fanout(common).await;
                        }
                    }
                    FromWorker::Result(r) => results[i] = Some(*r),
                    FromWorker::BadResult(source) => return Err(RunError::BadResult { worker: i, source }),
                    FromWorker::Exited => {
                        exited[i] = true;
                        if results[i].is_none() { return Err(RunError::NoResult { worker: i }); }
                    }
                    FromWorker::Other => {}
                }
                if !go_sent && ready.iter().all(|r| *r) {
                    server.ready = sample_server(common.server_pid);
                    server.machine[1] = sysinfo::machine_cpu();
                    sample_server_fds(common.server_pid, server);
                    server.fanout[0] = sample_fanout(common).await;
                    let go = now_unix_us() + 200_000;
                    server.go = sample_server(common.server_pid);
                    server.machine[2] = sysinfo::machine_cpu();
                    children.go(go).await;
                    go_sent = true;
                    phase = "measure";
                }
                if exited.iter().all(|e| *e) { break; }
            }
        }
    }
    children.wait().await;
    let mut merged = WorkerResult::default();
    for r in results.into_iter().flatten() {
        merged.merge(r);
    }
    if server.end.is_none() {
        server.end = sample_server(common.server_pid);
        server.machine[3] = sysinfo::machine_cpu();
        server.fanout[1] = sample_fanout(common).await;
    }
    Ok(merged)
}
