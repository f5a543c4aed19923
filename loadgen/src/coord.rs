//! Coordinator: runs the worker in-process (--procs 1) or re-execs itself as P workers,
//! samples the server, merges results once, writes the report.

use crate::cli::{ChatArgs, Common, ConnectArgs, FanoutArgs, PresenceArgs};
use crate::engine::{now_unix_us, run_worker, Control, Ctx, Progress};
use crate::presence_sc::PresenceSc;
use crate::pubsub::{chat_roles, connect_roles, fanout_roles, local_roles, Kind, PubSub};
use crate::report::{self, ServerSamples};
use crate::result::WorkerResult;
use crate::sysinfo;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
pub enum Spec {
    Connect(ConnectArgs),
    Fanout(FanoutArgs),
    Presence(PresenceArgs),
    Chat(ChatArgs),
}

impl Spec {
    pub fn common(&self) -> &Common {
        match self {
            Spec::Connect(a) => &a.common,
            Spec::Fanout(a) => &a.common,
            Spec::Presence(a) => &a.common,
            Spec::Chat(a) => &a.common,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Spec::Connect(_) => "connect",
            Spec::Fanout(_) => "fanout",
            Spec::Presence(_) => "presence",
            Spec::Chat(_) => "chat",
        }
    }
    fn params(&self) -> serde_json::Value {
        let mut v = match self {
            Spec::Connect(a) => serde_json::to_value(a),
            Spec::Fanout(a) => serde_json::to_value(a),
            Spec::Presence(a) => serde_json::to_value(a),
            Spec::Chat(a) => serde_json::to_value(a),
        }
        .unwrap_or_default();
        if let Some(c) = v.get_mut("common").and_then(|c| c.as_object_mut()) {
            c.remove("worker");
            c.remove("t0_unix_us");
            c.insert("topic_prefix_effective".into(), serde_json::json!(self.prefix()));
        }
        v
    }
    fn prefix(&self) -> String {
        if let Some(p) = &self.common().topic_prefix {
            return p.clone();
        }
        match self {
            Spec::Connect(_) | Spec::Fanout(_) => "bench:".into(),
            Spec::Presence(_) => "room:".into(),
            Spec::Chat(_) => "chat:".into(),
        }
    }
    pub fn total_connections(&self) -> usize {
        match self {
            Spec::Connect(a) => a.connections,
            Spec::Fanout(a) => a.subscribers + a.publishers,
            Spec::Presence(a) => a.rooms * a.room_size,
            Spec::Chat(a) => a.rooms * a.room_size,
        }
    }
}

async fn run_local(spec: &Spec, ctx: Arc<Ctx>, ctl: Control) -> WorkerResult {
    let (w, n) = (ctx.worker, ctx.workers);
    let prefix = spec.prefix();
    match spec {
        Spec::Connect(a) => {
            let sc = PubSub {
                kind: Kind::Connect,
                prefix,
                event: "msg".into(),
                payload_bytes: 0,
                roles: local_roles(connect_roles(a.connections, a.joins_per_conn, a.topics), w, n),
                all_local: n == 1,
                seed: a.common.seed,
            };
            run_worker(ctx, Arc::new(sc), ctl).await
        }
        Spec::Fanout(a) => {
            let sc = PubSub {
                kind: Kind::Fanout,
                prefix,
                event: a.event.clone(),
                payload_bytes: a.payload_bytes,
                roles: local_roles(fanout_roles(a.subscribers, a.topics, a.publishers, a.rate), w, n),
                all_local: n == 1,
                seed: a.common.seed,
            };
            run_worker(ctx, Arc::new(sc), ctl).await
        }
        Spec::Chat(a) => {
            let sc = PubSub {
                kind: Kind::Chat,
                prefix,
                event: a.event.clone(),
                payload_bytes: a.payload_bytes,
                roles: local_roles(
                    chat_roles(a.rooms, a.room_size, Duration::from_secs_f64(a.post_interval_ms.max(0.001) / 1000.0)),
                    w,
                    n,
                ),
                all_local: n == 1,
                seed: a.common.seed,
            };
            run_worker(ctx, Arc::new(sc), ctl).await
        }
        Spec::Presence(a) => {
            let sc = PresenceSc::new(
                prefix,
                a.key_param.clone(),
                a.rooms,
                a.room_size,
                a.observers,
                a.churn_rate,
                Duration::from_millis(a.rejoin_delay_ms),
                a.common.seed,
                w,
                n,
            );
            run_worker(ctx, Arc::new(sc), ctl).await
        }
    }
}

/// Entry for a re-exec'd worker: lines on stdout, "GO" on stdin, "RESULT <json>" at the end.
pub async fn worker_main(spec: Spec) -> i32 {
    let common = spec.common().clone();
    let t0 = common.t0_unix_us.unwrap_or_else(now_unix_us);
    let ctx = match Ctx::new(common, t0).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen worker: {e}");
            return 2;
        }
    };
    let r = run_local(&spec, ctx, Control::Stdio).await;
    println!("RESULT {}", serde_json::to_string(&r).unwrap_or_default());
    0
}

fn progress_line(phase: &str, since: Instant, total: usize, est: u64, failed: u64, settled: u64, deliveries: u64, open: u64) {
    eprintln!(
        "[{phase} {:>6.1}s] established {est}/{total} failed {failed} settled {settled} open {open} | deliveries {deliveries}",
        since.elapsed().as_secs_f64()
    );
}

fn sample_server(pid: Option<u32>) -> Option<sysinfo::ProcSample> {
    pid.and_then(|p| sysinfo::sample(&p.to_string()))
}

/// Run a scenario: returns the process exit code.
pub async fn coordinator_main(spec: Spec) -> i32 {
    let common = spec.common().clone();
    let env = sysinfo::environment();
    let started = now_unix_us();
    let procs = common.procs.max(1);
    let total = spec.total_connections();
    if total / procs as usize > 19_900 {
        eprintln!(
            "loadgen: warning: {} connections per process exceeds ~19,900 (fd limit {}); use --procs",
            total / procs as usize,
            env["fd_limit_hard"]
        );
    }
    let mut server = ServerSamples { start: sample_server(common.server_pid), ..Default::default() };
    let t0 = now_unix_us() + if procs > 1 { 1_000_000 } else { 100_000 };
    let since = Instant::now();
    let quiet = common.quiet;
    let result: WorkerResult;

    if procs == 1 {
        let ctx = match Ctx::new(common.clone(), t0).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("loadgen: {e}");
                return 2;
            }
        };
        let (ready_tx, mut ready_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel();
        let (drained_tx, mut drained_rx) = tokio::sync::oneshot::channel();
        let ctl = Control::InProc { ready: Some(ready_tx), go: Some(go_rx), drained: Some(drained_tx) };
        let spec2 = spec.clone();
        let c2 = ctx.clone();
        let mut worker = tokio::spawn(async move { run_local(&spec2, c2, ctl).await });
        let show = |phase: &str, p: &Progress| {
            if !quiet {
                progress_line(
                    phase,
                    since,
                    total,
                    p.established.load(Relaxed),
                    p.failed.load(Relaxed),
                    p.settled.load(Relaxed),
                    p.deliveries.get(),
                    p.open.load(Relaxed),
                );
            }
        };
        let mut iv = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = iv.tick() => show("ramp", &ctx.prog),
                r = &mut ready_rx => { if r.is_err() { eprintln!("loadgen: worker ended early"); return 2; } break; }
            }
        }
        show("ready", &ctx.prog);
        server.ready = sample_server(common.server_pid);
        let go = now_unix_us() + 100_000;
        server.go = sample_server(common.server_pid);
        let _ = go_tx.send(go);
        loop {
            tokio::select! {
                _ = iv.tick() => show("measure", &ctx.prog),
                _ = &mut drained_rx => break,
            }
        }
        server.end = sample_server(common.server_pid);
        result = match (&mut worker).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("loadgen: worker failed: {e}");
                return 2;
            }
        };
    } else {
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("loadgen: current_exe: {e}");
                return 2;
            }
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut children = vec![];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
        let mut stdins = vec![];
        for i in 0..procs {
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.args(&args)
                .arg("--worker")
                .arg(format!("{i}/{procs}"))
                .arg("--t0-unix-us")
                .arg(t0.to_string())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::inherit())
                .kill_on_drop(true);
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("loadgen: spawn worker {i}: {e}");
                    return 2;
                }
            };
            let out = child.stdout.take().unwrap();
            stdins.push(child.stdin.take().unwrap());
            let tx = tx.clone();
            let idx = i as usize;
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(out).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if tx.send((idx, l)).is_err() {
                        break;
                    }
                }
                let _ = tx.send((idx, "EXIT".into()));
            });
            children.push(child);
        }
        drop(tx);
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
                    if !quiet {
                        let s = |k: usize| prog.iter().map(|p| p[k]).sum::<u64>();
                        progress_line(phase, since, total, s(0), s(1), s(2), s(3), s(4));
                    }
                }
                m = rx.recv() => {
                    let Some((i, line)) = m else { break };
                    if let Some(rest) = line.strip_prefix("PROGRESS ") {
                        let v: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
                        for (k, x) in v.into_iter().enumerate().take(5) { prog[i][k] = x; }
                    } else if line == "READY" {
                        ready[i] = true;
                    } else if line == "DRAINED" {
                        drained[i] = true;
                        if drained.iter().all(|d| *d) { server.end = sample_server(common.server_pid); }
                    } else if let Some(js) = line.strip_prefix("RESULT ") {
                        match serde_json::from_str::<WorkerResult>(js) {
                            Ok(r) => results[i] = Some(r),
                            Err(e) => { eprintln!("loadgen: bad result from worker {i}: {e}"); return 2; }
                        }
                    } else if line == "EXIT" {
                        exited[i] = true;
                        if results[i].is_none() { eprintln!("loadgen: worker {i} exited without a result"); return 2; }
                    }
                    if !go_sent && ready.iter().all(|r| *r) {
                        server.ready = sample_server(common.server_pid);
                        let go = now_unix_us() + 200_000;
                        server.go = sample_server(common.server_pid);
                        for s in stdins.iter_mut() {
                            let _ = s.write_all(format!("GO {go}\n").as_bytes()).await;
                            let _ = s.flush().await;
                        }
                        go_sent = true;
                        phase = "measure";
                    }
                    if exited.iter().all(|e| *e) { break; }
                }
            }
        }
        for mut c in children {
            let _ = c.wait().await;
        }
        let mut merged = WorkerResult::default();
        for r in results.into_iter().flatten() {
            merged.merge(r);
        }
        if server.end.is_none() {
            server.end = sample_server(common.server_pid);
        }
        result = merged;
    }

    let built = report::build(
        spec.name(),
        spec.params(),
        env,
        &result,
        t0,
        started,
        server,
        common.server_pid,
        common.duration,
    );
    print!("{}", report::table(&built.report));
    if let Some(path) = &common.out {
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&built.report).unwrap_or_default()) {
            eprintln!("loadgen: write {path}: {e}");
            return 2;
        }
    }
    if let Some(path) = &common.svg {
        if let Err(e) = std::fs::write(path, report::svg(&built.report)) {
            eprintln!("loadgen: write {path}: {e}");
            return 2;
        }
    }
    if built.problems.is_empty() {
        0
    } else {
        1
    }
}
