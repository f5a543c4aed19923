//! Worker IPC: how a worker and its coordinator talk. In process (`--procs 1`) through
//! oneshot channels; across processes (`--procs N`) through a line protocol:
//!
//! ```text
//! worker → coordinator (stdout)   PROGRESS <established> <failed> <settled> <deliveries> <open>
//!                                 READY | DRAINED | RESULT <WorkerResult as JSON>
//! coordinator → worker (stdin)    GO <unix µs>
//! ```
//!
//! The worker side is [`Control`]; the coordinator side is [`InProcHandle`] or [`Children`].

use super::ctx::{now_unix_us, Ctx};
use crate::error::RunError;
use crate::result::WorkerResult;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, oneshot};

/// How a worker talks to its coordinator.
pub enum Control {
    InProc {
        ready: Option<oneshot::Sender<()>>,
        go: Option<oneshot::Receiver<u64>>,
        drained: Option<oneshot::Sender<()>>,
    },
    /// child process: lines on stdout, "GO <unix_us>" on stdin
    Stdio,
}

/// The coordinator's ends of an in-process worker's [`Control`].
pub struct InProcHandle {
    pub ready: oneshot::Receiver<()>,
    pub go: oneshot::Sender<u64>,
    pub drained: oneshot::Receiver<()>,
}

impl Control {
    /// A worker in the coordinator's process, and the coordinator's ends of its channels.
    pub fn in_proc() -> (Control, InProcHandle) {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        let (drained_tx, drained_rx) = oneshot::channel();
        let ctl = Control::InProc { ready: Some(ready_tx), go: Some(go_rx), drained: Some(drained_tx) };
        (ctl, InProcHandle { ready: ready_rx, go: go_tx, drained: drained_rx })
    }

    pub async fn ready(&mut self) {
        match self {
            Control::InProc { ready, .. } => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            Control::Stdio => println!("READY"),
        }
    }

    pub async fn wait_go(&mut self) -> u64 {
        match self {
            Control::InProc { go, .. } => match go.take() {
                Some(rx) => rx.await.unwrap_or_else(|_| now_unix_us()),
                None => now_unix_us(),
            },
            Control::Stdio => {
                let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
                loop {
                    match lines.next_line().await {
                        Ok(Some(l)) => {
                            if let Some(v) = l.strip_prefix("GO ") {
                                return v.trim().parse().unwrap_or_else(|_| now_unix_us());
                            }
                        }
                        _ => return now_unix_us(),
                    }
                }
            }
        }
    }

    pub async fn drained(&mut self) {
        match self {
            Control::InProc { drained, .. } => {
                if let Some(tx) = drained.take() {
                    let _ = tx.send(());
                }
            }
            Control::Stdio => println!("DRAINED"),
        }
    }

    /// Child processes: a PROGRESS line every second until the task is aborted. (In process the
    /// coordinator reads the counters itself.)
    pub fn start_progress(&self, ctx: &Arc<Ctx>) -> Option<tokio::task::JoinHandle<()>> {
        if !matches!(self, Control::Stdio) {
            return None;
        }
        let c = ctx.clone();
        Some(tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_millis(1000));
            loop {
                iv.tick().await;
                println!(
                    "PROGRESS {} {} {} {} {}",
                    c.prog.established.load(Relaxed),
                    c.prog.failed.load(Relaxed),
                    c.prog.settled.load(Relaxed),
                    c.prog.deliveries.get(),
                    c.prog.open.load(Relaxed)
                );
            }
        }))
    }
}

/// A child worker's last line: its result.
pub fn send_result(r: &WorkerResult) {
    println!("RESULT {}", serde_json::to_string(r).unwrap_or_default());
}

/// A line from a child worker, as the coordinator sees it.
#[derive(Debug)]
pub enum FromWorker {
    /// established, failed, settled, deliveries, open (numbers that do not parse are skipped)
    Progress(Vec<u64>),
    Ready,
    Drained,
    Result(Box<WorkerResult>),
    BadResult(serde_json::Error),
    /// the worker's stdout closed
    Exited,
    /// anything else (ignored)
    Other,
}

impl FromWorker {
    pub fn parse(line: &str) -> FromWorker {
        if let Some(rest) = line.strip_prefix("PROGRESS ") {
            FromWorker::Progress(rest.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        } else if line == "READY" {
            FromWorker::Ready
        } else if line == "DRAINED" {
            FromWorker::Drained
        } else if let Some(js) = line.strip_prefix("RESULT ") {
            match serde_json::from_str::<WorkerResult>(js) {
                Ok(r) => FromWorker::Result(Box::new(r)),
                Err(e) => FromWorker::BadResult(e),
            }
        } else {
            FromWorker::Other
        }
    }
}

/// The worker processes of a `--procs N` run: this executable re-run with the same arguments
/// plus `--worker I/N --t0-unix-us T0`; their lines arrive on one channel.
pub struct Children {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    rx: mpsc::UnboundedReceiver<(usize, FromWorker)>,
}

impl Children {
    pub fn spawn(procs: u32, t0: u64) -> Result<Children, RunError> {
        let exe = std::env::current_exe().map_err(RunError::CurrentExe)?;
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut children = vec![];
        let (tx, rx) = mpsc::unbounded_channel::<(usize, FromWorker)>();
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
            let mut child = cmd.spawn().map_err(|source| RunError::Spawn { worker: i, source })?;
            let out = child.stdout.take().unwrap();
            stdins.push(child.stdin.take().unwrap());
            let tx = tx.clone();
            let idx = i as usize;
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(out).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if tx.send((idx, FromWorker::parse(&l))).is_err() {
                        break;
                    }
                }
                let _ = tx.send((idx, FromWorker::Exited));
            });
            children.push(child);
        }
        Ok(Children { children, stdins, rx })
    }

    /// The next line of any worker; None once every reader is done.
    pub async fn recv(&mut self) -> Option<(usize, FromWorker)> {
        self.rx.recv().await
    }

    /// Start the measurement phase of every worker at `go_unix`.
    pub async fn go(&mut self, go_unix: u64) {
        for s in self.stdins.iter_mut() {
            let _ = s.write_all(format!("GO {go_unix}\n").as_bytes()).await;
            let _ = s.flush().await;
        }
    }

    /// Reap the processes.
    pub async fn wait(self) {
        for mut c in self.children {
            let _ = c.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_lines() {
        assert!(matches!(FromWorker::parse("PROGRESS 1 2 x 4"), FromWorker::Progress(v) if v == vec![1, 2, 4]));
        assert!(matches!(FromWorker::parse("READY"), FromWorker::Ready));
        assert!(matches!(FromWorker::parse("DRAINED"), FromWorker::Drained));
        assert!(matches!(FromWorker::parse("RESULT {"), FromWorker::BadResult(_)));
        assert!(matches!(FromWorker::parse("hello"), FromWorker::Other));
        let mut r = WorkerResult::default();
        r.add("sent", 3);
        let line = format!("RESULT {}", serde_json::to_string(&r).unwrap());
        match FromWorker::parse(&line) {
            FromWorker::Result(back) => assert_eq!(back.counter("sent"), 3),
            other => panic!("{other:?}"),
        }
    }
}
