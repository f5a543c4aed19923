#!/usr/bin/env python3
"""Compare a Tsung run and a loadgen run of the same scenario against the same broker build
(written by crosscheck.sh): reads RUN_DIR/params.json, RUN_DIR/<scenario>-<tool>/{samples.csv,
tsung.log | report.json} and writes crosscheck.md and crosscheck.json.

Every server-side figure (time to all connected, CPU, RSS) comes from the same /proc sampler
of the broker (sample_proc.py), whichever tool drove it; the tool-side figures (connections,
deliveries, connect+join latency) come from each tool's own counters.

    analyze.py RUN_DIR OUT.md OUT.json
"""
import csv, json, math, os, sys

run_dir, out_md, out_json = sys.argv[1], sys.argv[2], sys.argv[3]
P = json.load(open(os.path.join(run_dir, "params.json")))


def samples(path):
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            rows.append({k: float(v) for k, v in r.items()})
    return rows


def broker_view(rows, n):
    """From the broker's samples: base, when its descriptors first grew, when base + n were
    open (all connected), CPU and RSS at those points, and the hold window (all connected →
    descriptors start falling)."""
    if not rows:
        return {}
    base = rows[0]
    first = next((r for r in rows if r["fds"] > base["fds"]), None)
    full = next((r for r in rows if r["fds"] >= base["fds"] + n), None)
    out = {"base_fds": base["fds"], "max_fds": max(r["fds"] for r in rows), "samples": len(rows)}
    if first is None or full is None:
        out["all_connected"] = False
        return out
    out["all_connected"] = True
    out["time_to_all_connected_s"] = full["t_s"] - first["t_s"]
    # settled: 1 s after all descriptors are open (the last joins answered)
    settled = next((r for r in rows if r["t_s"] >= full["t_s"] + 1.0), rows[-1])
    out["ramp_cpu_s"] = (settled["cpu_us"] - base["cpu_us"]) / 1e6
    out["cpu_us_per_connection"] = (settled["cpu_us"] - base["cpu_us"]) / n
    out["rss_per_connection_bytes"] = (settled["rss_bytes"] - base["rss_bytes"]) / n
    out["rss_settled_mb"] = settled["rss_bytes"] / 1048576
    peak = max(r["fds"] for r in rows)
    closing = next((r for r in rows if r["t_s"] > settled["t_s"] and r["fds"] < peak - 10), rows[-1])
    out["hold_window_s"] = closing["t_s"] - settled["t_s"]
    out["hold_cpu_s"] = (closing["cpu_us"] - settled["cpu_us"]) / 1e6
    return out


def tsung_stats(path):
    """Totals from tsung.log: count stats (name, interval, total) → total; sample stats (name,
    n, mean, stddev, max, min, ...) aggregated over the dumps → n, mean, max."""
    counts, samples_ = {}, {}
    for line in open(path):
        if not line.startswith("stats: "):
            continue
        parts = line.split()
        name = parts[1]
        if name.startswith("{"):
            continue
        vals = [float(x) for x in parts[2:]]
        if len(vals) == 2:
            counts[name] = max(counts.get(name, 0), vals[1])
        elif len(vals) >= 5:
            n, mean, mx = vals[0], vals[1], vals[3]
            s = samples_.setdefault(name, {"n": 0, "sum": 0.0, "max": 0.0})
            if n > 0:
                s["n"] += n
                s["sum"] += n * mean
                s["max"] = max(s["max"], mx)
    for s in samples_.values():
        s["mean"] = s["sum"] / s["n"] if s["n"] else None
    return counts, samples_


def frame_bytes(text):
    n = len(text.encode())
    return n + (2 if n < 126 else 4)


def rel(a, b):
    if a is None or b is None:
        return None
    if b == 0:
        return 0.0 if a == 0 else math.inf
    return (a - b) / b


def fmt(x, nd=1):
    if x is None:
        return "–"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.{nd}f}"
    return f"{int(x):,}"


rows_md = []
result = {"params": P, "scenarios": {}}

# ---- connect storm -------------------------------------------------------------------------
c = P["connect"]
n = c["n"]
ct = os.path.join(run_dir, "connect-tsung")
cl = os.path.join(run_dir, "connect-loadgen")
t_counts, t_samples = tsung_stats(os.path.join(ct, "tsung.log"))
lg = json.load(open(os.path.join(cl, "report.json")))
bt = broker_view(samples(os.path.join(ct, "samples.csv")), n)
bl = broker_view(samples(os.path.join(cl, "samples.csv")), n)
m = lambda r, k: (r["metrics"].get(k) or {}).get("value")
cj = lg["histograms"].get("connect_and_join", {})
tcj = t_samples.get("tr_connect_join", {})
per_conn_overhead = t_counts.get("size_rcv", 0) / max(t_counts.get("websocket_succ", 1), 1)
connect_rows = [
    ("connections established (WebSocket handshakes)", t_counts.get("websocket_succ"), m(lg, "connections_established"), "count",
     "Tsung: websocket_succ; loadgen: connections_established (joined)"),
    ("joins answered ok", t_counts.get("match"), m(lg, "connections_established"), "count",
     "Tsung: replies matching \"status\":\"ok\"; loadgen: joined connections"),
    ("connection failures", sum(v for k, v in t_counts.items() if k.startswith("error")), m(lg, "connection_failures"), "count",
     "Tsung: error_* counters; loadgen: connection_failures"),
    ("time to all connected, broker view (s)", bt.get("time_to_all_connected_s"), bl.get("time_to_all_connected_s"), "s",
     "from the broker's first new descriptor to base + N open, sampled every 0.25 s"),
    ("connect+join latency, mean (ms)", tcj.get("mean"), cj.get("mean_ms"), "ms",
     "Tsung: transaction connect_join (handshake start → join reply); loadgen: connect_and_join from the intended start"),
    ("connect+join latency, max (ms)", tcj.get("max"), cj.get("max_ms"), "ms", "as above"),
    ("server CPU per connection+join (µs)", bt.get("cpu_us_per_connection"), bl.get("cpu_us_per_connection"), "us",
     "broker CPU from before the ramp to 1 s after all connected, / N"),
    ("server RSS per connection (bytes)", bt.get("rss_per_connection_bytes"), bl.get("rss_per_connection_bytes"), "bytes",
     "broker RSS 1 s after all connected minus before, / N"),
]
result["scenarios"]["connect"] = {"broker_tsung": bt, "broker_loadgen": bl, "tsung_counts": t_counts, "tsung_samples": t_samples,
                                  "tsung_bytes_per_connection": per_conn_overhead,
                                  "loadgen_report": "connect-loadgen/report.json"}

# ---- fan-out -------------------------------------------------------------------------------
f = P["fanout"]
n = f["n"]
ft = os.path.join(run_dir, "fanout-tsung")
fl = os.path.join(run_dir, "fanout-loadgen")
ft_counts, ft_samples = tsung_stats(os.path.join(ft, "tsung.log"))
flg = json.load(open(os.path.join(fl, "report.json")))
fbt = broker_view(samples(os.path.join(ft, "samples.csv")), n)
fbl = broker_view(samples(os.path.join(fl, "samples.csv")), n)
pad = "x" * f["pad"]
delivery = frame_bytes('[null,null,"%s","msg",{"pad":"%s"}]' % (f["topic"], pad))
reply = frame_bytes('["p","m","%s","phx_reply",{"response":{},"status":"ok"}]' % f["topic"])
sent_t = ft_counts.get("request_noack", 0)
sessions = ft_counts.get("websocket_succ", 0)
# bytes received = every session's handshake + join reply + close (per_conn_overhead, measured
# in the connect run) + the publisher's replies and its own copy of each broadcast + deliveries
deliveries_t = (ft_counts.get("size_rcv", 0) - sessions * per_conn_overhead - sent_t * (delivery + reply)) / delivery
expected_t = sent_t * ft_counts.get("match", 0)
deliveries_l = m(flg, "deliveries")
sent_l = m(flg, "sent")
fan_rows = [
    ("subscribers joined", ft_counts.get("match"), m(flg, "connections_established") - f["publishers"] if m(flg, "connections_established") is not None else None, "count",
     "Tsung: join replies ok; loadgen: established minus the publisher"),
    ("broadcasts published", sent_t, sent_l, "count", "Tsung: request_noack (the publisher's pushes); loadgen: sent"),
    ("deliveries received", deliveries_t, deliveries_l, "count",
     f"Tsung: from size_rcv (fixed {delivery}-byte frames, see method); loadgen: unique deliveries"),
    ("deliveries / expected", deliveries_t / expected_t if expected_t else None, deliveries_l / m(flg, "expected_deliveries") if m(flg, "expected_deliveries") else None, "ratio",
     "expected = broadcasts × subscribers joined"),
    ("time to all connected, broker view (s)", fbt.get("time_to_all_connected_s"), fbl.get("time_to_all_connected_s"), "s", "as in the connect storm"),
    ("server CPU per connection+join during the ramp (µs)", fbt.get("cpu_us_per_connection"), fbl.get("cpu_us_per_connection"), "us",
     "as in the connect storm (the same quantity, measured again)"),
    ("server CPU per delivery (µs)", fbt["hold_cpu_s"] * 1e6 / deliveries_t if fbt.get("hold_cpu_s") is not None and deliveries_t else None,
     fbl["hold_cpu_s"] * 1e6 / deliveries_l if fbl.get("hold_cpu_s") is not None and deliveries_l else None, "us",
     "broker CPU while all subscribers are connected (publishing + idle hold), / deliveries"),
    ("server RSS per connection (bytes)", fbt.get("rss_per_connection_bytes"), fbl.get("rss_per_connection_bytes"), "bytes", "as in the connect storm"),
]
result["scenarios"]["fanout"] = {"broker_tsung": fbt, "broker_loadgen": fbl, "tsung_counts": ft_counts, "tsung_samples": ft_samples,
                                 "delivery_frame_bytes": delivery, "reply_frame_bytes": reply, "tsung_deliveries": deliveries_t,
                                 "loadgen_report": "fanout-loadgen/report.json",
                                 "loadgen_delivery_p99_ms": m(flg, "delivery_p99_ms"), "loadgen_lost": m(flg, "lost")}


def table(rows, key):
    out = ["| metric | Tsung | loadgen | difference | within 10% | how measured |", "|---|---:|---:|---:|---|---|"]
    res = []
    for name, t, l, unit, how in rows:
        d = rel(t, l)
        ok = d is not None and abs(d) <= 0.10
        res.append({"metric": name, "tsung": t, "loadgen": l, "unit": unit, "rel_diff": d, "agree": ok})
        nd = 3 if unit == "ratio" else 1
        out.append(f"| {name} | {fmt(t, nd)} | {fmt(l, nd)} | {'–' if d is None else f'{d * 100:+.1f}%'} | {'yes' if ok else '**no**'} | {how} |")
    result["scenarios"][key]["rows"] = res
    return "\n".join(out)


explain = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "explanations.json")))


def explanations(key):
    lines = []
    for r in result["scenarios"][key]["rows"]:
        if not r["agree"]:
            why = explain.get(key, {}).get(r["metric"], "no explanation recorded: investigate")
            lines.append(f"* **{r['metric']}** ({fmt(r['tsung'])} vs {fmt(r['loadgen'])}): {why}")
    return "\n".join(lines) if lines else "* every figure agrees within 10%."


env = lg.get("environment", {})
busy = [m(lg, "machine_ramp_cpu_share"), m(flg, "machine_measure_cpu_share")]
ours = [m(lg, "host_ramp_cpu_share"), m(flg, "host_measure_cpu_share")]
busy_txt = ", ".join(f"{b * 100:.0f}%" for b in busy if b is not None) or "not measured"
ours_txt = ", ".join(f"{b * 100:.0f}%" for b in ours if b is not None) or "not measured"
load_txt = ", ".join(str(x) for x in lg.get("environment", {}).get("loadavg_1_5_15m", [])) or "not recorded"
md = f"""# Tsung cross-check

Produced by `scripts/tsung/crosscheck.sh` on {P['date']}: the same broker build
(`{P['broker_bin']}`, {P['broker_build']}) driven by Tsung {P['tsung_version']} (one Erlang VM,
fd limit {P['tsung_fd_limit']}) and by loadgen (commit {env.get('git_commit', '?')[:12]}), one after the other, a
fresh broker (`--listen 127.0.0.1:0 --no-demo`, default configuration) per run. Machine:
{env.get('cpu_model', '?')}, {env.get('cpus', '?')} CPUs shared by the broker and the load tool, kernel {env.get('kernel', '?')}.
**The machine was not idle**: other people's builds shared the 2 CPUs (load average {load_txt}
at the loadgen connect run); /proc/stat shows the machine {busy_txt} busy during loadgen's
connect ramp and fan-out phase, of which the broker and loadgen together took {ours_txt}. The
same contention applied to the Tsung runs minutes apart, but not necessarily in the same amount.
Server figures (time to all connected, CPU, RSS) come from one /proc sampler of the broker
(`sample_proc.py`, every 0.25 s) used the same way for both tools; connections, deliveries and
latencies from each tool's own counters. Raw output next to this file (`{os.path.basename(P['raw_dir'])}/`).

## Connect storm: {fmt(c['n'])} connections at {fmt(c['rate'])}/s, each joins `{c['topic']}`, hold {c['hold_s']} s

Tsung: `connect.xml` (arrivalphase of {fmt(c['n'])} users at {fmt(c['rate'])}/s). loadgen:
`{P['connect']['loadgen_cmd']}`.

{table(connect_rows, 'connect')}

Differences beyond 10%:

{explanations('connect')}

## Fan-out: {fmt(f['n'])} subscribers on `{f['topic']}`, one publisher, {f['rate']} broadcasts/s for {f['duration_s']} s

Tsung: `fanout.xml` ({fmt(f['n'])} subscriber sessions at {fmt(f['connect_rate'])}/s, a publisher
session started once all are in, {f['msgs']} pushes {f['interval_s']} s apart, {f['pad']}-byte pad).
loadgen: `{P['fanout']['loadgen_cmd']}` (delivery p99 {fmt(m(flg, 'delivery_p99_ms'))} ms, {fmt(m(flg, 'lost'))} lost).

{table(fan_rows, 'fanout')}

Differences beyond 10%:

{explanations('fanout')}

## Method notes

* **Deliveries in Tsung.** Tsung counts bytes received (`size_rcv`) and socket reads
  (`async_unknown_data_rcv`: {fmt(ft_counts.get('async_unknown_data_rcv'))} here, several frames per read), not
  WebSocket frames. Every broadcast frame has the same size ({delivery} bytes on the wire:
  `[null,null,"{f['topic']}","msg",{{"pad":"…"}}]`), so deliveries = (size_rcv − sessions ×
  {per_conn_overhead:.0f} bytes (handshake response + join reply + close, measured as size_rcv per
  session in the Tsung connect run) − pushes × {delivery + reply} bytes (the publisher's reply and
  its own copy of each broadcast)) / {delivery}.
* **The topic** is `{f['topic']}` for both tools, not `room:lobby`: the broker tracks Presence on
  `room:*` by default, which would add a presence_diff stream to every join; loadgen's
  scenarios use `bench:N` topics.
* **Arrivals**: Tsung starts users at exponentially distributed intervals (Poisson, mean rate as
  configured); loadgen at fixed intervals. Tsung times a transaction from when the user actually
  starts; loadgen from the intended start (open loop).
"""
open(out_md, "w").write(md)
json.dump(result, open(out_json, "w"), indent=1, default=str)
print(md)
