//! End-to-end: run the loadgen binary against a relay server on port 0 (our own tiny relay,
//! and the broker binary if it has been built), and check the counts.

mod common;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn loadgen(args: &[&str], out: &PathBuf) -> (i32, Value, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args(["--quiet", "--out", out.to_str().unwrap(), "--deadline", "120"])
        .stdin(Stdio::null())
        .output()
        .expect("run loadgen");
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    let report: Value = std::fs::read_to_string(out).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null);
    (o.status.code().unwrap_or(-1), report, text)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("loadgen-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn metric(r: &Value, name: &str) -> f64 {
    r["metrics"][name]["value"].as_f64().unwrap_or(f64::NAN)
}

fn check_fanout(url: &str, procs: &str, tag: &str) {
    let out = tmp(&format!("fanout-{tag}.json"));
    let (code, r, text) = loadgen(
        &["fanout", "--url", url, "-n", "40", "--topics", "4", "--publishers", "2", "--rate", "40", "--duration", "1.5",
          "--connect-rate", "400", "--procs", procs, "--drain", "5"],
        &out,
    );
    assert_eq!(code, 0, "loadgen failed:\n{text}");
    assert_eq!(r["schema_version"], 1);
    let expected = metric(&r, "expected_deliveries");
    // 60 broadcasts over 4 topics of 10 subscribers
    assert_eq!(metric(&r, "sent"), 60.0, "{text}");
    assert_eq!(expected, 600.0, "{text}");
    assert_eq!(metric(&r, "deliveries"), expected, "{text}");
    assert_eq!(metric(&r, "lost"), 0.0);
    assert_eq!(metric(&r, "duplicated"), 0.0);
    assert_eq!(metric(&r, "connections_established"), 42.0);
    assert_eq!(r["per_process"].as_array().unwrap().len(), procs.parse::<usize>().unwrap());
    assert!(r["histograms"]["delivery"]["count"].as_u64().unwrap() == 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_against_relay_single_process() {
    let addr = common::start_relay().await;
    let url = format!("ws://{addr}/socket/websocket");
    tokio::task::spawn_blocking(move || check_fanout(&url, "1", "p1")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_against_relay_two_processes() {
    let addr = common::start_relay().await;
    let url = format!("ws://{addr}/socket/websocket");
    tokio::task::spawn_blocking(move || check_fanout(&url, "2", "p2")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_presence_and_connect_against_relay() {
    let addr = common::start_relay().await;
    let url = format!("ws://{addr}/socket/websocket");
    tokio::task::spawn_blocking(move || {
        let out = tmp("chat.json");
        let (code, r, text) = loadgen(
            &["chat", "--url", &url, "--rooms", "5", "-k", "4", "--post-interval-ms", "200", "--duration", "1.5", "--source-ips", "127.0.0.1,127.0.0.2"],
            &out,
        );
        assert_eq!(code, 0, "{text}");
        assert!(metric(&r, "deliveries") > 0.0);
        assert_eq!(metric(&r, "deliveries"), metric(&r, "expected_deliveries"));
        assert_eq!(r["connections_per_source_ip"]["127.0.0.2"], 10);

        let out = tmp("presence.json");
        let (code, r, text) = loadgen(
            &["presence", "--url", &url, "--rooms", "2", "-k", "10", "--observers", "3", "--churn-rate", "10", "--duration", "2", "--rejoin-delay-ms", "100"],
            &out,
        );
        assert_eq!(code, 0, "{text}");
        assert!(metric(&r, "churn_ops") > 5.0, "{text}");
        assert!(r["histograms"]["convergence"]["count"].as_u64().unwrap() > 5, "{text}");
        assert_eq!(metric(&r, "convergence_unresolved"), 0.0);
        assert_eq!(metric(&r, "final_view_mismatches"), 0.0);
        assert!(r["counters"]["final_views_checked"].as_u64().unwrap() >= 6, "{text}");

        let out = tmp("connect.json");
        let (code, r, text) = loadgen(&["connect", "--url", &url, "-n", "50", "--joins-per-conn", "3", "--topics", "7", "--duration", "0.5"], &out);
        assert_eq!(code, 0, "{text}");
        assert_eq!(metric(&r, "connections_established"), 50.0);
        assert_eq!(r["histograms"]["join"]["count"], 150);

        // compare: a report against itself never regresses
        let o = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["compare", out.to_str().unwrap(), out.to_str().unwrap(), "--max-regression", "10%"])
            .output()
            .unwrap();
        assert!(o.status.success());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_counted_not_fatal() {
    // a port with nothing listening
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let url = format!("ws://127.0.0.1:{port}/socket/websocket");
    tokio::task::spawn_blocking(move || {
        let out = tmp("refused.json");
        let (code, r, text) = loadgen(&["connect", "--url", &url, "-n", "5", "--retries", "1", "--duration", "0.2"], &out);
        assert_eq!(code, 1, "{text}");
        assert_eq!(r["errors"]["connect:econnrefused"], 10, "{text}");
        assert_eq!(metric(&r, "connection_failures"), 5.0);
    })
    .await
    .unwrap();
}

/// Our broker, if built (target/release/broker or target/debug/broker).
fn broker_bin() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    ["target/release/broker", "target/debug/broker"].iter().map(|p| root.join(p)).find(|p| p.exists())
}

#[test]
fn fanout_against_broker_if_built() {
    let Some(bin) = broker_bin() else {
        eprintln!("broker binary not built; skipping");
        return;
    };
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start broker");
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").map(str::to_string);
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("unexpected broker first line {line:?}");
    };
    let url = format!("ws://{addr}/socket/websocket");
    let r = std::panic::catch_unwind(|| check_fanout(&url, "1", "broker"));
    let _ = child.kill();
    let _ = child.wait();
    r.unwrap();
}
