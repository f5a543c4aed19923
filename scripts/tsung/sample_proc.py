#!/usr/bin/env python3
"""Sample a process every INTERVAL s until it exits or DURATION s pass: one CSV line per sample,
t_s (monotonic, since start), cpu_us (user+system), rss_bytes, fds (open descriptors).
Used by crosscheck.sh on the broker, the same way whichever tool drives it.

    sample_proc.py PID OUT.csv [INTERVAL=0.25] [DURATION=600]
"""
import os, sys, time

pid, out = sys.argv[1], sys.argv[2]
interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.25
duration = float(sys.argv[4]) if len(sys.argv) > 4 else 600.0
tck = os.sysconf("SC_CLK_TCK")
t0 = time.monotonic()
with open(out, "w") as f:
    f.write("t_s,cpu_us,rss_bytes,fds\n")
    while time.monotonic() - t0 < duration:
        try:
            stat = open(f"/proc/{pid}/stat").read()
            rest = stat[stat.rindex(")") + 2:].split()
            cpu_us = (int(rest[11]) + int(rest[12])) * 1_000_000 // tck
            rss = 0
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            break
        f.write(f"{time.monotonic() - t0:.3f},{cpu_us},{rss},{fds}\n")
        f.flush()
        time.sleep(interval)
