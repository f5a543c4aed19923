use clap::Parser;
use loadgen::cli::{Cli, Cmd};
use loadgen::coord::{coordinator_main, worker_main};
use loadgen::error::ReportFileError;
use loadgen::{compare, sysinfo};
use serde_json::Value;
use std::time::Duration;

fn main() {
    let cli = Cli::parse();
    let scenario = match cli.cmd {
        Cmd::Compare(a) => std::process::exit(run_compare(&a)),
        Cmd::Summarize(a) => std::process::exit(run_summarize(&a)),
        Cmd::Ceiling(a) => std::process::exit(loadgen::ceiling::run(&a)),
        Cmd::Run(sc) => sc,
    };
    let common = scenario.common().clone();
    sysinfo::raise_nofile();
    // overall deadline: every run ends by itself
    let deadline = common.deadline;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(deadline.max(1.0)));
        eprintln!("loadgen: overall deadline of {deadline} s reached; exiting");
        std::process::exit(3);
    });
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = common.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.build().expect("tokio runtime");
    let code = rt.block_on(async move {
        if common.worker.is_some() {
            worker_main(&*scenario).await
        } else {
            coordinator_main(&*scenario).await
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(code);
}

fn run_compare(a: &loadgen::cli::CompareArgs) -> i32 {
    let load = |p: &str| -> Result<Value, ReportFileError> {
        let v = read_json(p)?;
        if v["schema_version"].as_u64() != Some(1) {
            return Err(ReportFileError::Schema { path: p.to_string(), found: v["schema_version"].to_string() });
        }
        Ok(v)
    };
    let (base, new) = match (load(&a.base), load(&a.new)) {
        (Ok(b), Ok(n)) => (b, n),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("loadgen compare: {e}");
            return 2;
        }
    };
    let pct = match compare::parse_pct(&a.max_regression) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loadgen compare: {e}");
            return 2;
        }
    };
    if base["scenario"] != new["scenario"] {
        eprintln!("loadgen compare: warning: scenarios differ ({} vs {})", base["scenario"], new["scenario"]);
    }
    let (rows, regressed) = compare::compare_ignoring(&base, &new, pct, a.min_abs_ms, &a.ignore);
    print!("{}", compare::render(&rows, "base", "new"));
    if regressed {
        println!("REGRESSION: at least one metric is worse by more than {pct}%");
        1
    } else {
        println!("no regression beyond {pct}%");
        0
    }
}

fn run_summarize(a: &loadgen::cli::SummarizeArgs) -> i32 {
    let mut reports = vec![];
    for p in &a.reports {
        match read_json(p) {
            Ok(v) if v["schema_version"].as_u64() == Some(1) && v["metrics"].is_object() => reports.push(v),
            Ok(_) => eprintln!("loadgen summarize: {p}: not a schema_version 1 report; skipped"),
            Err(e) => {
                eprintln!("loadgen summarize: {e}");
                return 2;
            }
        }
    }
    let s = loadgen::summarize::summarize(&reports);
    let md = loadgen::summarize::markdown(&s);
    if let Some(o) = &a.out {
        if let Err(e) = std::fs::write(o, serde_json::to_string_pretty(&s).unwrap_or_default()) {
            eprintln!("loadgen summarize: {o}: {e}");
            return 2;
        }
    }
    if let Some(o) = &a.markdown {
        if let Err(e) = std::fs::write(o, &md) {
            eprintln!("loadgen summarize: {o}: {e}");
            return 2;
        }
    }
    print!("{md}");
    0
}

fn read_json(path: &str) -> Result<Value, ReportFileError> {
    let s = std::fs::read_to_string(path).map_err(|source| ReportFileError::Read { path: path.to_string(), source })?;
    serde_json::from_str(&s).map_err(|source| ReportFileError::Json { path: path.to_string(), source })
}
