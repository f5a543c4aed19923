#!/usr/bin/env bash
# The criterion benches (benches/benches/*.rs) with criterion's own output committed.
#
# Builds the benches, records the machine state, runs each bench, then copies criterion's own
# files for every benchmark this invocation measured
# ($CARGO_TARGET_DIR/criterion/<group>/<function>/<param>/new/{estimates,benchmark}.json) into
# bench-results/criterion/<group>/<function>/<param>/, writes bench-results/criterion/machine.json
# (commit, dirty flag ignoring bench-results/, date, CPU, load average before and after, rustc,
# the CPU the benches used and what else ran) and regenerates bench-results/criterion.md from
# those files: every figure in it comes from the JSON, none is typed by hand.
#
#   scripts/criterion.sh                       # every bench in benches/Cargo.toml
#   BENCHES=fanout scripts/criterion.sh        # one bench (the other benches' results are kept)
#   CRITERION_ARGS="--warm-up-time 2 --measurement-time 10" scripts/criterion.sh
#   RERENDER=1 scripts/criterion.sh            # only rebuild criterion.md from bench-results/criterion/
#
# Exit status: 0 when every bench ran and produced estimates, 1 otherwise, 2 when the build failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="bench-results/criterion"
MD="bench-results/criterion.md"
ARGS="${CRITERION_ARGS:---warm-up-time 1 --measurement-time 3}"
# per bench; a bench that hangs must fail the script, not hold the machine
BENCH_TIMEOUT="${BENCH_TIMEOUT:-900}"
BENCHES="${BENCHES:-$(awk '/^\[\[bench\]\]/ { b = 1; next } b && /^name *=/ { gsub(/[" ]/, "", $0); sub(/^name=/, "", $0); print; b = 0 }' benches/Cargo.toml | tr '\n' ' ')}"

# The JSON and Markdown work, in Python (the standard library only).
read -r -d '' PY <<'PYEOF'
import glob, json, os, re, shutil, subprocess, sys, time

def sh(*cmd, strip=True):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return out.strip() if strip else out.rstrip("\n")
    except Exception:
        return None

def arg(name, default=None):
    a = sys.argv[2:]
    return a[a.index(name) + 1] if name in a else default

TICK = os.sysconf("SC_CLK_TCK")

def procs():
    """pid -> (ppid, comm, cpu ticks) for every process."""
    out = {}
    for d in glob.glob("/proc/[0-9]*/stat"):
        try:
            s = open(d).read()
        except OSError:
            continue
        pid = int(d.split("/")[2])
        comm = s[s.index("(") + 1:s.rindex(")")]
        f = s[s.rindex(")") + 2:].split()
        out[pid] = (int(f[1]), comm, int(f[11]) + int(f[12]))
    return out

def own(pid, table, self_pid):
    seen = 0
    while pid > 1 and seen < 64:
        if pid == self_pid:
            return True
        pid = table.get(pid, (0,))[0]
        seen += 1
    return False

def proc_stat():
    f = open("/proc/stat").readline().split()[1:]
    v = [int(x) for x in f]
    return {"total": sum(v[:8]), "idle": v[3] + v[4]}

def git_state():
    top = ["--", ":(top)", ":(top,exclude)bench-results"]
    files = sh("git", "status", "--porcelain", "--untracked-files=no", *top, strip=False)
    return {
        "commit": sh("git", "rev-parse", "HEAD"),
        "dirty": None if files is None else files != "",
        "dirty_files": [] if not files else [l[3:] for l in files.splitlines()],
    }

def snapshot():
    self_pid = int(arg("--self-pid"))
    table = procs()
    ps = sh("ps", "-eo", "pid,pcpu,etimes,comm", "--sort=-pcpu", "--no-headers") or ""
    top = []
    for line in ps.splitlines():
        pid, pcpu, etimes, comm = line.split(None, 3)
        if comm == "ps":
            continue
        top.append({"pid": int(pid), "comm": comm, "cpu_percent_over_lifetime": float(pcpu),
                    "elapsed_s": int(etimes), "this_script": own(int(pid), table, self_pid)})
        if len(top) == 5:
            break
    print(json.dumps({
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "unix": time.time(),
        "loadavg": [float(x) for x in open("/proc/loadavg").read().split()[:3]],
        "proc_stat": proc_stat(),
        "top_processes_ps": top,
        **git_state(),
    }))

def sample():
    self_pid = int(arg("--self-pid"))
    interval = float(arg("--interval", "5"))
    prev, prev_stat = procs(), proc_stat()
    while True:
        time.sleep(interval)
        cur, cur_stat = procs(), proc_stat()
        total = cur_stat["total"] - prev_stat["total"]
        busy = total - (cur_stat["idle"] - prev_stat["idle"])
        rows = []
        for pid, (ppid, comm, ticks) in cur.items():
            # a process that appeared during the interval spent all its ticks in it
            d = ticks - prev[pid][2] if pid in prev else ticks
            if d > 0:
                rows.append({"pid": pid, "comm": comm, "cores": round(d / TICK / interval, 3),
                             "this_script": own(pid, cur, self_pid)})
        rows.sort(key=lambda r: -r["cores"])
        print(json.dumps({"unix": time.time(), "machine_busy_share": round(busy / total, 3) if total else None,
                          "top": rows[:5]}), flush=True)
        prev, prev_stat = cur, cur_stat

def collect():
    crit, out = arg("--criterion"), arg("--out")
    stamp = os.path.getmtime(arg("--stamp"))
    before = json.load(open(arg("--before")))
    after = json.load(open(arg("--after")))
    benches = arg("--benches").split()
    tmp = arg("--tmp")
    found = []
    for est in glob.glob(os.path.join(crit, "**", "new", "estimates.json"), recursive=True):
        if os.path.getmtime(est) < stamp:
            continue  # an earlier invocation's benchmark
        d = os.path.dirname(est)
        meta = json.load(open(os.path.join(d, "benchmark.json")))
        found.append((d, meta))
    if not found:
        print("no criterion estimates written by this run", file=sys.stderr)
        return 1
    # replace whole groups that this run measured (a benchmark renamed or removed since must not linger)
    for g in {m["directory_name"].split("/")[0] for _, m in found}:
        shutil.rmtree(os.path.join(out, g), ignore_errors=True)
    for d, meta in found:
        dest = os.path.join(out, meta["directory_name"])
        os.makedirs(dest, exist_ok=True)
        for f in ("estimates.json", "benchmark.json"):
            shutil.copyfile(os.path.join(d, f), os.path.join(dest, f))
    # lines the benches print besides criterion's (fanout: allocations per delivery)
    for b in benches:
        path = os.path.join(tmp, f"out-{b}.txt")
        lines = [l.rstrip("\n") for l in open(path)] if os.path.exists(path) else []
        rows = []
        for l in lines:
            m = re.match(r"allocations: dispatch to (\d+) subscribers delivered (\d+) frames with (\d+) allocations", l)
            if m:
                rows.append({"subscribers": int(m[1]), "delivered": int(m[2]), "allocations": int(m[3])})
        if rows:
            json.dump({"bench": b, "source": f"printed by benches/benches/{b}.rs after its timed runs",
                       "lines": [l for l in lines if l.startswith("allocations:")], "rows": rows},
                      open(os.path.join(out, f"{b}-allocations.json"), "w"), indent=2)
            print("", file=open(os.path.join(out, f"{b}-allocations.json"), "a"))
    ncpu = os.cpu_count()
    wall = after["unix"] - before["unix"]
    dt = after["proc_stat"]["total"] - before["proc_stat"]["total"]
    busy = dt - (after["proc_stat"]["idle"] - before["proc_stat"]["idle"])
    times = {}
    for b in benches:
        try:
            times[b] = json.load(open(os.path.join(tmp, f"time-{b}.json")))
        except Exception:
            times[b] = None
    own_cpu = sum((t["user_s"] + t["sys_s"]) for t in times.values() if t)
    machine_share = busy / dt if dt else None
    own_share = own_cpu / (wall * ncpu) if wall > 0 else None
    heavy = {}
    samples = [json.loads(l) for l in open(arg("--samples")) if l.strip()]
    for s in samples:
        for r in s["top"]:
            if r["this_script"]:
                continue
            k = (r["pid"], r["comm"])
            heavy[k] = max(heavy.get(k, 0), r["cores"])
    others = sorted(({"pid": p, "comm": c, "max_cores": v} for (p, c), v in heavy.items() if v >= 0.25),
                    key=lambda r: -r["max_cores"])
    dirty_files = sorted(set(before["dirty_files"]) | set(after["dirty_files"]))
    run = {
        "commit": before["commit"],
        "commit_after": after["commit"],
        "dirty": bool(before["dirty"] or after["dirty"]),
        "dirty_ignores": "bench-results/ and untracked files",
        "dirty_files": dirty_files,
        "date": before["time"],
        "finished": after["time"],
        "criterion_args": arg("--args"),
    }
    m = {
        **run,
        "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None),
        "nproc": ncpu,
        "kernel": os.uname().release,
        "rustc": sh("rustc", "--version"),
        "cargo": sh("cargo", "--version"),
        "loadavg_before": before["loadavg"],
        "loadavg_after": after["loadavg"],
        "wall_s": round(wall, 1),
        "machine_cpu_busy_share": round(machine_share, 3) if machine_share is not None else None,
        "benches_cpu_share": round(own_share, 3) if own_share is not None else None,
        "others_cpu_share": round(max(0.0, machine_share - own_share), 3) if None not in (machine_share, own_share) else None,
        "cpu_shares_note": "shares of all nproc cores over the run: machine from /proc/stat, benches from /usr/bin/time of each cargo bench (cargo included), others = the difference",
        "other_heavy_processes": bool(others),
        "other_processes_over_quarter_core": others,
        "top_processes_before": before["top_processes_ps"],
        "top_processes_after": after["top_processes_ps"],
        "top_processes_note": "before/after: ps -eo pcpu (CPU over each process's lifetime); other_processes_over_quarter_core: from /proc every 5 s during the run, cores used over each interval, this script's own processes excluded",
        "samples": samples,
        "benches": {},
    }
    # benches not run this time keep the entry (and provenance) of the run that measured them
    path = os.path.join(out, "machine.json")
    try:
        prev = json.load(open(path))
        for b, e in prev.get("benches", {}).items():
            if b not in benches:
                m["benches"][b] = e
    except Exception:
        pass
    for b in benches:
        m["benches"][b] = {**run, "time": times[b],
                           "benchmarks": sorted(meta["full_id"] for _, meta in found
                                                if meta["group_id"] == b or meta["directory_name"].startswith(b + "/"))}
    json.dump(m, open(path, "w"), indent=2)
    open(path, "a").write("\n")
    return 0

def fmt_ns(ns):
    for unit, div in (("s", 1e9), ("ms", 1e6), ("µs", 1e3), ("ns", 1)):
        if ns >= div or unit == "ns":
            v = ns / div
            return (f"{v:.3g}" if v < 1000 else f"{v:.0f}") + " " + unit

def render():
    out, md = arg("--out"), arg("--md")
    m = json.load(open(os.path.join(out, "machine.json")))
    groups = {}
    for bj in sorted(glob.glob(os.path.join(out, "**", "benchmark.json"), recursive=True)):
        d = os.path.dirname(bj)
        meta, est = json.load(open(bj)), json.load(open(os.path.join(d, "estimates.json")))
        groups.setdefault(meta["group_id"], []).append((meta, est, os.path.relpath(d, os.path.dirname(md))))
    def key(item):
        v = item[0].get("value_str") or ""
        return (item[0]["function_id"] or "", int(v) if v.isdigit() else 0, v)
    L = []
    L.append("# Criterion benches (in-process, no sockets)")
    L.append("")
    L.append("Generated by `scripts/criterion.sh` from criterion's own estimates, committed under")
    L.append("[criterion/](criterion/) (`<group>/<function>/<input>/estimates.json` and `benchmark.json`, copied")
    L.append("from criterion's `new/` directory) with the machine state in")
    L.append("[criterion/machine.json](criterion/machine.json). Do not edit by hand: rerun the script")
    L.append("(`RERENDER=1` only rebuilds this file from the JSON).")
    L.append("")
    dirty = "yes" if m["dirty"] else "no"
    L.append(f"Measured {m['date']} at commit `{m['commit'][:12] if m['commit'] else 'unknown'}` (work tree dirty outside bench-results/: {dirty}"
             + (f", {len(m['dirty_files'])} files: {', '.join('`'+f+'`' for f in m['dirty_files'])}" if m["dirty_files"] else "") + "),")
    L.append(f"{m['cpu_model']}, {m['nproc']} CPUs, kernel {m['kernel']}, {m['rustc']}; criterion `{m['criterion_args']}`.")
    if m.get("commit_after") and m["commit_after"] != m["commit"]:
        L.append(f"HEAD moved to `{m['commit_after'][:12]}` while the benches ran.")
    L.append(f"Load average {' / '.join(map(str, m['loadavg_before']))} before, {' / '.join(map(str, m['loadavg_after']))} after (1/5/15 min).")
    if m.get("machine_cpu_busy_share") is not None:
        L.append(f"Over the {m['wall_s']} s run the machine's CPUs were {m['machine_cpu_busy_share']:.0%} busy: the benches (with cargo) "
                 f"{m['benches_cpu_share']:.0%}, other processes {m['others_cpu_share']:.0%} of the {m['nproc']} cores.")
    if m["other_heavy_processes"]:
        names = {}
        for r in m["other_processes_over_quarter_core"]:
            names[r["comm"]] = max(names.get(r["comm"], 0), r["max_cores"])
        L.append("Other processes used more than a quarter of a core during the run ("
                 + ", ".join(f"`{c}` up to {v:.2f} cores" for c, v in sorted(names.items(), key=lambda x: -x[1]))
                 + "), so absolute times are noisy: compare figures within one run.")
    else:
        L.append("No other process used more than a quarter of a core during the run.")
    for b, e in sorted(m.get("benches", {}).items()):
        if e.get("commit") != m.get("commit") or e.get("date") != m.get("date"):
            L.append(f"(`{b}` was measured by an earlier invocation: {e.get('date')}, commit `{(e.get('commit') or '')[:12]}`, dirty: {e.get('dirty')}.)")
    L.append("")
    L.append("Each time is criterion's estimate of one iteration: the slope of the linear regression when")
    L.append("criterion sampled linearly, else the mean; with its 95% confidence interval, and the median with")
    L.append("its interval.")
    for g in sorted(groups):
        items = sorted(groups[g], key=key)
        L.append("")
        L.append(f"## {g}")
        L.append("")
        src = None
        for f in sorted(glob.glob("benches/benches/*.rs")):
            if f'benchmark_group("{g}")' in open(f).read():
                src = f
        if src:
            doc = [l[4:].rstrip() if l.startswith("//! ") else "" for l in open(src) if l.startswith("//!")]
            L.append(f"From `{src}`:")
            L.append("")
            L.extend("> " + l if l else ">" for l in doc)
            L.append("")
        has_tp = any(meta.get("throughput") for meta, _, _ in items)
        head = "| benchmark | input | estimate | 95% CI | median | median 95% CI |" + (" per element |" if has_tp else "") + " JSON |"
        L.append(head)
        L.append("|---|---:|---:|---|---:|---|" + ("---:|" if has_tp else "") + "---|")
        for meta, est, rel in items:
            stat = "slope" if est.get("slope") else "mean"
            e, med = est[stat], est["median"]
            ci, mci = e["confidence_interval"], med["confidence_interval"]
            row = (f"| {meta['function_id']} | {meta.get('value_str') or ''} | {fmt_ns(e['point_estimate'])} ({stat}) "
                   f"| {fmt_ns(ci['lower_bound'])} – {fmt_ns(ci['upper_bound'])} | {fmt_ns(med['point_estimate'])} "
                   f"| {fmt_ns(mci['lower_bound'])} – {fmt_ns(mci['upper_bound'])} |")
            if has_tp:
                tp = meta.get("throughput") or {}
                n = tp.get("Elements") or tp.get("Bytes")
                row += f" {fmt_ns(e['point_estimate'] / n)} |" if n else " |"
            row += f" [json]({rel}/estimates.json) |"
            L.append(row)
        fns = {meta["function_id"] for meta, _, _ in items}
        if {"shared_frame", "naive_encode_each"} <= fns:
            L.append("")
            L.append("Naive (encode per subscriber) over shared frame, from the estimates above:")
            L.append("")
            L.append("| input | shared_frame | naive_encode_each | naive / shared |")
            L.append("|---:|---:|---:|---:|")
            by = {}
            for meta, est, _ in items:
                stat = "slope" if est.get("slope") else "mean"
                by.setdefault(meta.get("value_str"), {})[meta["function_id"]] = est[stat]["point_estimate"]
            for v in sorted(by, key=lambda x: int(x) if x and x.isdigit() else 0):
                s, n = by[v].get("shared_frame"), by[v].get("naive_encode_each")
                if s and n:
                    L.append(f"| {v} | {fmt_ns(s)} | {fmt_ns(n)} | {n / s:.2f}x |")
        alloc = os.path.join(out, f"{g}-allocations.json")
        if os.path.exists(alloc):
            a = json.load(open(alloc))
            L.append("")
            L.append(f"Allocations, counted by the bench's global allocator after the timed runs ([{g}-allocations.json](criterion/{g}-allocations.json);")
            L.append("`benches/tests/zero_alloc.rs` asserts the same for 10 vs 10,000 subscribers):")
            L.append("")
            L.append("| subscribers | frames delivered | allocations | per delivery |")
            L.append("|---:|---:|---:|---:|")
            for r in a["rows"]:
                per = f"{r['allocations'] / r['delivered']:.6f}".rstrip("0").rstrip(".")
                L.append(f"| {r['subscribers']} | {r['delivered']} | {r['allocations']} | {per} |")
    open(md, "w").write("\n".join(L) + "\n")
    return 0

cmd = sys.argv[1]
sys.exit({"snapshot": snapshot, "sample": sample, "collect": collect, "render": render}[cmd]() or 0)
PYEOF
py() { python3 -c "$PY" "$@"; }

if [[ -n "${RERENDER:-}" ]]; then
  py render --out "$OUT" --md "$MD"
  exit $?
fi

TMP="$(mktemp -d)"
SAMPLER_PID=""
cleanup() {
  if [[ -n "$SAMPLER_PID" ]]; then kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

bench_flags=()
for b in $BENCHES; do bench_flags+=(--bench "$b"); done
echo "== building benches: $BENCHES"
cargo bench -p benches "${bench_flags[@]}" --no-run || exit 2

export CRITERION_HOME="$TARGET/criterion"
mkdir -p "$OUT" "$CRITERION_HOME"

# The machine before; the sampler records what used the CPUs while the benches ran (every
# process, this script's own included, from /proc every 5 s).
py snapshot --self-pid $$ > "$TMP/before.json" || exit 1
py sample --self-pid $$ --interval 5 > "$TMP/samples.jsonl" &
SAMPLER_PID=$!
touch "$TMP/stamp"
sleep 1 # files written in the stamp's second would not compare newer

status=0
for b in $BENCHES; do
  echo "== cargo bench -p benches --bench $b -- $ARGS"
  # shellcheck disable=SC2086
  /usr/bin/time -f '{"bench": "'"$b"'", "user_s": %U, "sys_s": %S, "elapsed_s": %e, "exit": %x}' -o "$TMP/time-$b.json" \
    timeout "$BENCH_TIMEOUT" cargo bench -p benches --bench "$b" -- $ARGS 2>&1 | tee "$TMP/out-$b.txt"
  rc=${PIPESTATUS[0]}
  if [[ $rc -ne 0 ]]; then echo "   bench $b failed (exit $rc)"; status=1; fi
done

kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; SAMPLER_PID=""
py snapshot --self-pid $$ > "$TMP/after.json" || exit 1

py collect --criterion "$CRITERION_HOME" --stamp "$TMP/stamp" --out "$OUT" \
  --before "$TMP/before.json" --after "$TMP/after.json" --samples "$TMP/samples.jsonl" \
  --tmp "$TMP" --benches "$BENCHES" --args "$ARGS" || status=1
py render --out "$OUT" --md "$MD" || status=1
echo "== wrote $OUT/ and $MD"
exit $status
