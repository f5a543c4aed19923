//! scripts/bench.sh summarizes exactly the runs it wrote: stale `*-run*.json` files in its
//! output directory (another label, or a run number this invocation did not reach) stay out of
//! the medians.

mod common;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn stale_report(label: &str) -> Value {
    json!({"schema_version": 1, "tool": "loadgen", "scenario": "connect", "ok": true, "problems": [],
           "params": {"common": {"label": label}}, "environment": {"git_commit": "stale"},
           "metrics": {"connections_established": {"value": 1.0, "unit": "count", "better": "higher"}}})
}

#[test]
fn bench_summarizes_only_its_own_runs() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::temp_dir().join(format!("loadgen-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let label = "connect-storm-19k";
    // left over from earlier invocations: another scenario, and a third run of this one
    std::fs::write(out.join("stale-label-run1.json"), stale_report("stale-label").to_string()).unwrap();
    std::fs::write(out.join(format!("{label}-run3.json")), stale_report(label).to_string()).unwrap();

    let mut child = Command::new("bash")
        .arg(root.join("scripts/bench.sh"))
        .current_dir(&root)
        .env("SKIP_BUILD", "1")
        .env("BROKER_BIN", common::broker_bin())
        .env("LOADGEN_BIN", env!("CARGO_BIN_EXE_loadgen"))
        .env("OUT", &out)
        .env("RUNS", "1")
        .env("ONLY", label)
        .env("SCALE", "0.001")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/bench.sh");
    // bounded: a hung suite fails the test instead of hanging it
    let until = Instant::now() + Duration::from_secs(240);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            panic!("scripts/bench.sh did not finish within 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "bench.sh failed:\n{text}");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary.json")).unwrap();
    let groups = s["groups"].as_object().unwrap();
    assert_eq!(groups.keys().collect::<Vec<_>>(), vec![label], "only this invocation's label:\n{s:#}");
    assert_eq!(groups[label]["runs"], 1, "only this invocation's run:\n{s:#}");
    assert_ne!(s["git_commits"], json!(["stale"]), "{s:#}");
    let _ = std::fs::remove_dir_all(&out);
}
