//! `loadgen summarize`: medians and spread over repeated runs.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Metrics shown in the Markdown table, when present.
const MAIN: &[&str] = &[
    "connections_established",
    "connection_failures",
    "time_to_all_connected_s",
    "connect_p99_ms",
    "join_p99_ms",
    "deliveries_per_s",
    "delivery_p50_ms",
    "delivery_p99_ms",
    "delivery_max_ms",
    "broadcast_complete_p99_ms",
    "lost",
    "duplicated",
    "out_of_order",
    "presence_diff_frames_per_s",
    "convergence_p50_ms",
    "convergence_p99_ms",
    "convergence_unresolved",
    "presence_state_p99_ms",
    "presence_state_bytes_max",
    "server_rss_per_connection_bytes",
    "server_cpu_us_per_delivery",
    "server_cpu_us_per_diff_frame",
    "loadgen_cpu_s",
];

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn summarize(reports: &[Value]) -> Value {
    let mut groups: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in reports {
        let label = r["params"]["common"]["label"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| r["scenario"].as_str().unwrap_or("?").to_string());
        groups.entry(label).or_default().push(r);
    }
    let mut out = Map::new();
    for (label, rs) in groups {
        let mut names: Vec<String> = vec![];
        for r in &rs {
            if let Some(m) = r["metrics"].as_object() {
                for k in m.keys() {
                    if !names.contains(k) {
                        names.push(k.clone());
                    }
                }
            }
        }
        let mut metrics = Map::new();
        for n in names {
            // a null (or absent) value is missing in that run, not 0; `runs` counts the values
            let mut vals: Vec<f64> = rs.iter().filter_map(|r| r["metrics"][&n]["value"].as_f64()).collect();
            let first = rs.iter().map(|r| &r["metrics"][&n]).find(|m| m.is_object()).cloned().unwrap_or_default();
            let unit = first["unit"].clone();
            let better = first["better"].clone();
            let stats = if vals.is_empty() {
                json!({"value": null, "median": null, "min": null, "max": null, "spread_pct": null})
            } else {
                let min = vals.iter().cloned().fold(f64::INFINITY, f64::min);
                let max = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let med = median(&mut vals);
                let spread = if med.abs() > f64::EPSILON { (max - min) / med.abs() * 100.0 } else { 0.0 };
                json!({"value": med, "median": med, "min": min, "max": max, "spread_pct": (spread * 10.0).round() / 10.0})
            };
            let mut e = stats.as_object().cloned().unwrap_or_default();
            e.insert("runs".into(), json!(vals.len()));
            e.insert("unit".into(), unit);
            e.insert("better".into(), better);
            metrics.insert(n, Value::Object(e));
        }
        let ok = rs.iter().all(|r| r["ok"].as_bool() == Some(true));
        out.insert(
            label,
            json!({"scenario": rs[0]["scenario"], "runs": rs.len(), "all_ok": ok, "params": rs[0]["params"], "metrics": metrics}),
        );
    }
    let env = reports.first().map(|r| r["environment"].clone()).unwrap_or(Value::Null);
    // the commits the runs measured (more than one: the medians mix code versions)
    let mut commits: Vec<String> = vec![];
    for r in reports {
        let c = r["environment"]["git_commit"].as_str().unwrap_or("unknown").to_string();
        if !commits.contains(&c) {
            commits.push(c);
        }
    }
    json!({"schema_version": 1, "kind": "summary", "environment": env, "git_commits": commits, "groups": out})
}

pub fn markdown(summary: &Value) -> String {
    let mut s = String::new();
    let groups = summary["groups"].as_object().cloned().unwrap_or_default();
    for (label, g) in groups {
        s.push_str(&format!(
            "### {label} ({}, {} runs{})\n\n| metric | median | min | max | spread | unit |\n|---|---:|---:|---:|---:|---|\n",
            g["scenario"].as_str().unwrap_or(""),
            g["runs"],
            if g["all_ok"].as_bool() == Some(true) { "" } else { ", SOME RUNS REPORTED PROBLEMS" }
        ));
        for name in MAIN {
            let m = &g["metrics"][*name];
            if !m.is_object() {
                continue;
            }
            let f = |v: &Value| {
                let Some(x) = v.as_f64() else { return "-".to_string() };
                if x.fract() == 0.0 { format!("{x:.0}") } else if x.abs() >= 100.0 { format!("{x:.1}") } else { format!("{x:.3}") }
            };
            let spread = if m["spread_pct"].is_number() { format!("{}%", m["spread_pct"]) } else { "-".into() };
            s.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} |\n",
                f(&m["median"]),
                f(&m["min"]),
                f(&m["max"]),
                spread,
                m["unit"].as_str().unwrap_or("")
            ));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn medians_and_spread() {
        let r = |v: f64| json!({"scenario": "fanout", "ok": true, "params": {"common": {"label": "x"}},
                                "metrics": {"delivery_p99_ms": {"value": v, "unit": "ms", "better": "lower"}}});
        let s = summarize(&[r(3.0), r(1.0), r(2.0)]);
        let m = &s["groups"]["x"]["metrics"]["delivery_p99_ms"];
        assert_eq!(m["median"], 2.0);
        assert_eq!(m["min"], 1.0);
        assert_eq!(m["max"], 3.0);
        assert_eq!(m["spread_pct"], 100.0);
        assert!(markdown(&s).contains("| delivery_p99_ms | 2 | 1 | 3 | 100.0% | ms |"));
        let mut even = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&mut even), 2.5);
    }

    #[test]
    fn null_values_are_missing_not_zero() {
        let r = |v: Value| json!({"scenario": "fanout", "ok": true, "params": {"common": {"label": "x"}},
                                  "environment": {"git_commit": "abc"},
                                  "metrics": {"delivery_p99_ms": {"value": v, "unit": "ms", "better": "lower"}}});
        let s = summarize(&[r(Value::Null), r(json!(2.0)), r(json!(4.0))]);
        let m = &s["groups"]["x"]["metrics"]["delivery_p99_ms"];
        assert_eq!(m["median"], 3.0, "{m}");
        assert_eq!(m["min"], 2.0);
        assert_eq!(m["runs"], 2);
        let s = summarize(&[r(Value::Null), r(Value::Null)]);
        let m = &s["groups"]["x"]["metrics"]["delivery_p99_ms"];
        for k in ["value", "median", "min", "max", "spread_pct"] {
            assert!(m[k].is_null(), "{k}: {m}");
        }
        assert_eq!(m["runs"], 0);
        assert!(markdown(&s).contains("| delivery_p99_ms | - | - | - | - | ms |"), "{}", markdown(&s));
    }

    #[test]
    fn commits_of_the_runs_are_listed() {
        let r = |c: &str| json!({"scenario": "connect", "ok": true, "environment": {"git_commit": c, "git_dirty": false},
                                 "metrics": {}});
        let s = summarize(&[r("aaa"), r("bbb"), r("aaa")]);
        assert_eq!(s["git_commits"], json!(["aaa", "bbb"]));
    }
}
