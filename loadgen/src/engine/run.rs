//! Run control: the phases of one worker's run (ramp → ready → go → measure → drain → check →
//! close), their timing, and the stop. Scenario-specific behaviour comes in through
//! [`Workload`]; the coordinator is reached through [`Control`].

use super::ctx::{instant_at_unix, now_unix_us, Ctx, Phase};
use super::ipc::Control;
use crate::result::{ProcInfo, WorkerResult};
use crate::sysinfo;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a scenario runs in one worker process: its connection tasks, and what the run control
/// asks it at the phase boundaries. Built by `scenario::Scenario::workload`.
pub trait Workload: Send + Sync + 'static {
    /// Spawn the local connection tasks; returns how many connections this worker opens.
    fn spawn(self: Arc<Self>, ctx: &Arc<Ctx>, tasks: &mut tokio::task::JoinSet<()>) -> usize;
    /// True once what the ramp set in motion has arrived (e.g. every presence observer's view
    /// holds the whole room): the measured phase starts after it, not in the ramp's backlog.
    fn settled(&self, _ctx: &Ctx) -> bool {
        true
    }
    /// Called once the measurement phase starts (e.g. churn driver).
    fn on_go(self: Arc<Self>, _ctx: &Arc<Ctx>, _tasks: &mut tokio::task::JoinSet<()>) {}
    /// True when nothing is in flight any more (drain can stop early).
    fn drained(&self, ctx: &Ctx) -> bool;
    /// Record end-of-run counters.
    fn finish(&self, _ctx: &Ctx) {}
    /// Whether to run a Check phase (before closing) and whether it is complete.
    fn wants_check(&self) -> bool {
        false
    }
    fn check_done(&self) -> bool {
        true
    }
}

/// Run one worker: ramp, ready, go, measure, drain, close.
pub async fn run_worker(ctx: Arc<Ctx>, workload: Arc<dyn Workload>, mut ctl: Control) -> WorkerResult {
    let health_start = sysinfo::sample_self();
    let mut tasks = tokio::task::JoinSet::new();
    let total = workload.clone().spawn(&ctx, &mut tasks) as u64;
    ctx.rec().add("connections_planned", total);

    // progress lines for the coordinator (child processes only)
    let progress_task = ctl.start_progress(&ctx);

    // ramp: until every local connection settled (joined or failed) or the ramp deadline
    loop {
        if ctx.prog.settled.load(Relaxed) >= total || Instant::now() >= ctx.ramp_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_done = now_unix_us();
    {
        let mut r = ctx.rec();
        r.mark_max("ramp_done_unix_us", ramp_done);
        r.add("connections_established", ctx.prog.established.load(Relaxed));
        let unsettled = total.saturating_sub(ctx.prog.settled.load(Relaxed));
        if unsettled > 0 {
            r.add("connections_unsettled_at_ramp_deadline", unsettled);
        }
    }
    // settle: the ramp's backlog delivered (bounded by the ramp deadline, and 60 s)
    let settle_from = Instant::now();
    let settle_deadline = ctx.ramp_deadline.max(settle_from).min(settle_from + Duration::from_secs(60));
    while !workload.settled(&ctx) && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !workload.settled(&ctx) {
        ctx.rec().add("unsettled_at_go", 1);
    }
    ctx.rec().hist("settle").record(settle_from.elapsed().as_micros() as u64);
    let rss_ready = sysinfo::sample_self();
    ctl.ready().await;
    let go_unix = ctl.wait_go().await;
    let go_at = instant_at_unix(go_unix);
    tokio::time::sleep_until(go_at.into()).await;
    ctx.rec().mark_max("go_unix_us", go_unix);
    let health_go = sysinfo::sample_self();
    let _ = ctx.phase.send(Phase::Go { at: go_at, unix_us: go_unix });
    workload.clone().on_go(&ctx, &mut tasks);

    let measure_end = go_at + Duration::from_secs_f64(ctx.common.duration);
    tokio::time::sleep_until(measure_end.into()).await;
    let drain_end = measure_end + Duration::from_secs_f64(ctx.common.drain);
    loop {
        let now = Instant::now();
        if now >= drain_end || workload.drained(&ctx) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = now_unix_us();
    let health_drained = sysinfo::sample_self();
    ctx.rec().mark_max("drained_unix_us", drained);
    ctl.drained().await;
    if workload.wants_check() {
        let _ = ctx.phase.send(Phase::Check);
        let until = Instant::now() + Duration::from_secs(5);
        while !workload.check_done() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    workload.finish(&ctx);
    let _ = ctx.phase.send(Phase::Close);
    let close_deadline = Instant::now() + Duration::from_secs(10);
    while !tasks.is_empty() {
        match tokio::time::timeout_at(close_deadline.into(), tasks.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                ctx.rec().add("tasks_aborted_at_close", tasks.len() as u64);
                tasks.abort_all();
                // aborted connections merge what they recorded when their task is dropped
                let until = Instant::now() + Duration::from_secs(2);
                while let Ok(Some(_)) = tokio::time::timeout_at(until.into(), tasks.join_next()).await {}
                break;
            }
        }
    }
    if let Some(p) = progress_task {
        p.abort();
    }
    // what the connections recorded per frame, still in the per-thread shards
    ctx.flush_shards();
    let health_end = sysinfo::sample_self();
    let mut r = std::mem::take(&mut *ctx.rec());
    r.procs.push(ProcInfo {
        worker: ctx.worker,
        pid: std::process::id(),
        connections: r.counter("connections_established"),
        health_start,
        health_end,
        cpu_us: health_end.cpu_us.saturating_sub(health_start.cpu_us),
        ramp_cpu_us: rss_ready.cpu_us.saturating_sub(health_start.cpu_us),
        measure_cpu_us: health_drained.cpu_us.saturating_sub(health_go.cpu_us),
        peak_rss_bytes: rss_ready.rss_bytes.max(health_end.rss_bytes),
    });
    r
}
