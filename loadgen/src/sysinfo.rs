//! Process health from /proc and the environment description for reports.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ProcSample {
    /// user + system CPU time, microseconds
    pub cpu_us: u64,
    /// resident set size, bytes
    pub rss_bytes: u64,
}

fn clk_tck() -> u64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Sample `/proc/<pid>/stat` (utime, stime) and `/proc/<pid>/status` (VmRSS).
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the ")" of comm: state is field 3; utime 14, stime 15 (1-based)
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(ProcSample { cpu_us: (utime + stime) * 1_000_000 / clk_tck(), rss_bytes: rss_kb * 1024 })
}

/// Open file descriptors of a process (entries of /proc/PID/fd), if readable.
pub fn fd_count(pid: &str) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The soft "Max open files" limit of a process (from /proc/PID/limits); None if unlimited or
/// unreadable.
pub fn fd_limit(pid: &str) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// The whole machine's CPU time from /proc/stat: (busy, total) in clock ticks over all CPUs
/// (busy = total - idle - iowait). Other processes on the machine count too.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MachineCpu {
    pub busy_ticks: u64,
    pub total_ticks: u64,
}

impl MachineCpu {
    /// Share of the machine's CPU time that was busy between `self` and a later sample.
    pub fn busy_share_until(&self, later: &MachineCpu) -> Option<f64> {
        let total = later.total_ticks.checked_sub(self.total_ticks)?;
        let busy = later.busy_ticks.checked_sub(self.busy_ticks)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

pub fn parse_proc_stat(stat: &str) -> Option<MachineCpu> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some(MachineCpu { busy_ticks: total - idle, total_ticks: total })
}

pub fn machine_cpu() -> Option<MachineCpu> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

pub fn sample_self() -> ProcSample {
    sample("self").unwrap_or_default()
}

/// Raise the soft RLIMIT_NOFILE to the hard limit. Returns (soft, hard) after the change.
pub fn raise_nofile() -> (u64, u64) {
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return (0, 0);
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
        (r.rlim_cur as u64, r.rlim_max as u64)
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git").args(args).stderr(std::process::Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit of the work tree at `dir` and whether it has uncommitted changes to tracked
/// files, ignoring `bench-results/` at the top of the work tree (the benchmark suite rewrites
/// its tracked result files: they say nothing about the code measured). ("unknown", None)
/// outside a git work tree.
pub fn git_provenance(dir: &std::path::Path) -> (String, Option<bool>) {
    let d = dir.to_string_lossy();
    let commit = git(&["-C", &d, "rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // pathspecs from the top of the work tree, whatever the directory
    let dirty = git(&["-C", &d, "status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)bench-results"])
        .map(|s| !s.is_empty());
    (commit, dirty)
}

pub fn environment() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let (soft, hard) = unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        (r.rlim_cur as u64, r.rlim_max as u64)
    };
    let mem_total_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (commit, dirty) = git_provenance(std::path::Path::new("."));
    // the machine's load when the run started (other processes compete for the same CPUs)
    let loadavg: Vec<f64> = read_trim("/proc/loadavg").split_whitespace().take(3).filter_map(|x| x.parse().ok()).collect();
    serde_json::json!({
        "cpu_model": cpu_model,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "mem_total_bytes": mem_total_kb * 1024,
        "kernel": read_trim("/proc/sys/kernel/osrelease"),
        "hostname": read_trim("/proc/sys/kernel/hostname"),
        "fd_limit_soft": soft,
        "fd_limit_hard": hard,
        "sysctls": {
            "net.core.somaxconn": read_trim("/proc/sys/net/core/somaxconn"),
            "net.ipv4.ip_local_port_range": read_trim("/proc/sys/net/ipv4/ip_local_port_range"),
            "net.ipv4.tcp_max_syn_backlog": read_trim("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
            "net.ipv4.tcp_tw_reuse": read_trim("/proc/sys/net/ipv4/tcp_tw_reuse"),
            "fs.file-max": read_trim("/proc/sys/fs/file-max"),
            "fs.nr_open": read_trim("/proc/sys/fs/nr_open"),
        },
        "loadavg_1_5_15m": loadavg,
        "git_commit": commit,
        "git_dirty": dirty,
        "loadgen_version": env!("CARGO_PKG_VERSION"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn self_sample_is_plausible() {
        let s = super::sample_self();
        assert!(s.rss_bytes > 1024 * 1024);
        let (soft, hard) = super::raise_nofile();
        assert_eq!(soft, hard);
        let env = super::environment();
        assert!(env["kernel"].as_str().unwrap().len() > 1);
        assert_eq!(env["loadavg_1_5_15m"].as_array().unwrap().len(), 3);
        // this process has stdin/out/err at least, and its limit is the one just raised
        assert!(super::fd_count("self").unwrap() >= 3);
        assert_eq!(super::fd_limit("self"), Some(soft));
    }

    #[test]
    fn machine_cpu_share() {
        let a = super::parse_proc_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5\n").unwrap();
        assert_eq!((a.busy_ticks, a.total_ticks), (150, 1000));
        let b = super::parse_proc_stat("cpu  400 0 150 1300 150 0 0 0 0 0\n").unwrap();
        // 400 busy ticks of 1000 elapsed
        assert_eq!(a.busy_share_until(&b), Some(0.4));
        assert_eq!(b.busy_share_until(&a), None);
        assert!(super::machine_cpu().is_some());
    }

    /// A scratch git repository with `src.txt` and `bench-results/r.json` committed.
    fn scratch_repo() -> Option<std::path::PathBuf> {
        let d = std::env::temp_dir().join(format!("loadgen-git-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("bench-results")).unwrap();
        std::fs::write(d.join("src.txt"), "a").unwrap();
        std::fs::write(d.join("bench-results/r.json"), "{}").unwrap();
        let run = |args: &[&str]| {
            std::process::Command::new("git")
                .arg("-C")
                .arg(&d)
                .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"])
                .args(args)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        (run(&["init", "-q"]) && run(&["add", "."]) && run(&["commit", "-q", "-m", "x"])).then_some(d)
    }

    #[test]
    fn dirty_flag_ignores_bench_results() {
        let Some(d) = scratch_repo() else { panic!("git is needed for this test") };
        let (commit, dirty) = super::git_provenance(&d);
        assert_eq!(commit.len(), 40, "{commit}");
        assert_eq!(dirty, Some(false));
        // the suite rewrites tracked result files: still clean
        std::fs::write(d.join("bench-results/r.json"), "{\"new\": 1}").unwrap();
        assert_eq!(super::git_provenance(&d).1, Some(false));
        // from a subdirectory too
        assert_eq!(super::git_provenance(&d.join("bench-results")).1, Some(false));
        // a change to the code is dirty
        std::fs::write(d.join("src.txt"), "b").unwrap();
        assert_eq!(super::git_provenance(&d).1, Some(true));
        assert_eq!(super::git_provenance(&d.join("bench-results")).1, Some(true));
        // outside any repository: unknown
        let (c, dirty) = super::git_provenance(std::path::Path::new("/"));
        assert_eq!((c.as_str(), dirty), ("unknown", None));
        let _ = std::fs::remove_dir_all(&d);
    }
}
