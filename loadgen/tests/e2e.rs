//! End-to-end: run the loadgen binary against a relay server on port 0 (our own tiny relay,
//! also misbehaving in ways the report must show) and against this workspace's debug broker
//! (built by `cargo build -p broker` before the tests; its absence fails the test), and check
//! the counts.

mod common;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

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
    if tag == "broker" {
        // the broker's own fan-out completion time, read from its /metrics at go and at end:
        // one per broadcast of the measured phase
        assert_eq!(metric(&r, "server_fanout_completions"), 60.0, "{text}");
        let p99 = metric(&r, "server_fanout_complete_p99_ms");
        assert!(p99 > 0.0 && p99 < 10_000.0, "server fan-out p99 {p99} ms\n{text}");
    } else {
        // the test relay has no such metric: nothing is reported
        assert!(r["metrics"].get("server_fanout_completions").is_none(), "{text}");
    }
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

        // compare: a copy of the report with a regression injected is flagged; the other way
        // round it is an improvement; a null metric is missing, not 0
        let mut worse = r.clone();
        worse["metrics"]["join_p99_ms"]["value"] = serde_json::json!(metric(&r, "join_p99_ms") * 10.0 + 5.0);
        worse["metrics"]["connection_failures"]["value"] = serde_json::json!(3.0);
        worse["metrics"]["connect_p50_ms"]["value"] = Value::Null;
        let worse_path = tmp("connect-worse.json");
        std::fs::write(&worse_path, worse.to_string()).unwrap();
        let compare = |base: &PathBuf, new: &PathBuf| {
            let o = Command::new(env!("CARGO_BIN_EXE_loadgen"))
                .args(["compare", base.to_str().unwrap(), new.to_str().unwrap(), "--max-regression", "10%"])
                .output()
                .unwrap();
            (o.status.code(), String::from_utf8_lossy(&o.stdout).to_string())
        };
        let row = |table: &str, name: &str| table.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_default().to_string();
        let (code, table) = compare(&out, &worse_path);
        assert_eq!(code, Some(1), "{table}");
        assert!(row(&table, "join_p99_ms").ends_with("REGRESSION"), "{table}");
        assert!(row(&table, "connection_failures").ends_with("REGRESSION"), "{table}");
        assert!(row(&table, "connect_p50_ms").ends_with("missing"), "{table}");
        let (code, table) = compare(&worse_path, &out);
        assert_eq!(code, Some(0), "{table}");
        assert!(row(&table, "join_p99_ms").ends_with("improved"), "{table}");
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

#[test]
fn broker_binary_is_the_debug_build_of_this_workspace_or_a_clear_error() {
    let target = tmp("target-lookup");
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::create_dir_all(target.join("debug")).unwrap();
    // a (possibly stale) release build is not used
    std::fs::write(target.join("release/broker"), "").unwrap();
    let e = common::broker_bin_in(&target.join("debug")).expect_err("a release build must not be used");
    assert!(e.contains("cargo build -p broker") && e.contains("debug/broker"), "{e}");
    std::fs::write(target.join("debug/broker"), "").unwrap();
    assert_eq!(common::broker_bin_in(&target.join("debug")).unwrap(), target.join("debug/broker"));
    let _ = std::fs::remove_dir_all(&target);
}

fn lines_with_timeout(r: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(r).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn fanout_against_broker() {
    let bin = common::broker_bin();
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start broker");
    // a bounded wait for the positive signal (the "listening on" line)
    let lines = lines_with_timeout(child.stdout.take().unwrap());
    let line = lines.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let Some(addr) = line.trim().strip_prefix("listening on ").map(str::to_string) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the broker did not print 'listening on ADDR' within 30 s (first line {line:?})");
    };
    let url = format!("ws://{addr}/socket/websocket");
    let r = std::panic::catch_unwind(|| check_fanout(&url, "1", "broker"));
    let _ = child.kill();
    let _ = child.wait();
    r.unwrap();
}

/// Run loadgen against a relay that misbehaves as `opts` say.
fn against_relay(opts: common::RelayOpts, name: &str, args: &[&str]) -> (i32, Value, String) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let addr = rt.block_on(common::start_relay_with(opts));
    let url = format!("ws://{addr}/socket/websocket");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--url", &url]);
    let r = loadgen(&all, &tmp(name));
    rt.shutdown_background();
    r
}

fn problems(r: &Value) -> Vec<String> {
    r["problems"].as_array().map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

#[test]
fn deliveries_on_a_failed_join_are_not_counted() {
    // the 5 subscribers of lie:1 are told their join failed, but the server sends them lie:1's
    // broadcasts anyway: those are neither expected nor counted as received
    let opts = common::RelayOpts { lie_join_topic: Some("lie:1".into()), ..Default::default() };
    let (code, r, text) = against_relay(
        opts,
        "lie.json",
        &["fanout", "--topic-prefix", "lie:", "-n", "10", "--topics", "2", "--publishers", "1", "--rate", "20", "--duration", "1.5", "--drain", "3"],
    );
    assert_eq!(code, 1, "failed joins are a problem:\n{text}");
    assert_eq!(r["errors"]["join:error"], 5, "{text}");
    let expected = metric(&r, "expected_deliveries");
    assert!(expected > 0.0, "{text}");
    assert_eq!(metric(&r, "deliveries"), expected, "{text}");
    assert_eq!(metric(&r, "lost"), 0.0, "{text}");
    assert!(r["counters"]["deliveries_join_failed"].as_u64().unwrap_or(0) > 0, "{text}");
    let p = problems(&r);
    assert!(p.iter().any(|p| p.contains("5 of 11 connections not established+joined")), "{p:?}");
    assert!(!p.iter().any(|p| p.contains("more than expected")), "{p:?}");
}

#[test]
fn unreplied_pushes_fail_the_run() {
    let opts = common::RelayOpts { no_push_replies: true, ..Default::default() };
    let (code, r, text) = against_relay(
        opts,
        "noreply.json",
        &["fanout", "-n", "4", "--topics", "1", "--publishers", "1", "--rate", "20", "--duration", "1", "--drain", "1"],
    );
    assert_eq!(code, 1, "{text}");
    assert_eq!(metric(&r, "lost"), 0.0, "every broadcast arrived: {text}");
    assert!(r["counters"]["push_unreplied"].as_u64().unwrap_or(0) > 0, "{text}");
    assert!(problems(&r).iter().any(|p| p.contains("push_unreplied")), "{:?}", problems(&r));
}

#[test]
fn heartbeat_timeouts_fail_the_run() {
    let opts = common::RelayOpts { no_heartbeat_replies: true, ..Default::default() };
    let (code, r, text) = against_relay(opts, "nohb.json", &["connect", "-n", "3", "--duration", "1.5", "--heartbeat", "0.2"]);
    assert_eq!(code, 1, "{text}");
    assert!(r["counters"]["heartbeat_timeouts"].as_u64().unwrap_or(0) > 0, "{text}");
    assert!(problems(&r).iter().any(|p| p.contains("heartbeat_timeouts")), "{:?}", problems(&r));
}
