#!/usr/bin/env python3
"""Sums a dhat heap profile (dhat-heap.json, written by a `--features dhat-heap` broker on
SIGUSR1, see scripts/memory-profile.sh) per component: the bytes and blocks live at that
moment ("t-end"), per connection.

    scripts/memory-breakdown.py dhat-heap.json CONNECTIONS [--top 25]

A call stack is named by what was allocated (a tokio task, a tokio channel, a buffer, ...: the
first of KINDS found in it) and by its owner (the innermost frame of the broker crate)."""
import json
import re
import sys

# What was allocated: the first of these found in the call stack (any frame).
KINDS = [
    ("tokio task (header + future)", r"tokio::runtime::task::core::Cell<.*>::new"),
    ("tokio mpsc channel", r"tokio::sync::mpsc::"),
    ("tokio oneshot", r"tokio::sync::oneshot::"),
    ("tokio I/O registration", r"tokio::runtime::io::|tokio::net::tcp::split_owned"),
    ("tokio timer", r"tokio::runtime::time::"),
    ("hyper", r"\bhyper::"),
    ("bytes buffer", r"bytes::bytes_mut::|bytes::bytes::"),
    ("serde_json map/value", r"serde_json::"),
    ("hash table", r"hashbrown::"),
    ("VecDeque", r"VecDeque"),
]


def frame_name(f):
    m = re.match(r"0x[0-9a-f]+: (.*?)( \(.*\))?$", f)
    name = m.group(1) if m else f
    return re.sub(r"::h[0-9a-f]{16}$", "", name)


def owner(names):
    """The innermost frame of this crate: who asked for the allocation."""
    for n in names:
        if "broker::" in n:
            n = re.sub(r"(::\{\{closure\}\})+$", "", n)
            return n.replace("broker::", "")
    return "(outside the broker crate)"


def main():
    args = sys.argv[1:]
    top = 25
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i : i + 2]
    path, conns = args[0], int(args[1])
    d = json.load(open(path))
    ftbl = d["ftbl"]
    kinds = [(name, re.compile(rx)) for name, rx in KINDS]

    def classify(frames):
        names = [frame_name(ftbl[fi]) for fi in frames]
        # only the frames between the allocation and its owner say what was allocated
        inner = []
        for n in names:
            if "broker::" in n:
                break
            inner.append(n)
        kind = next((k for k, rx in kinds if any(rx.search(n) for n in inner)), "heap")
        return f"{kind} @ {owner(names)}"

    comps = {}
    stacks = []
    total_b = total_k = 0
    for pp in d["pps"]:
        eb, ebk = pp.get("eb", 0), pp.get("ebk", 0)
        if eb == 0:
            continue
        total_b += eb
        total_k += ebk
        c = classify(pp["fs"])
        b, k = comps.get(c, (0, 0))
        comps[c] = (b + eb, k + ebk)
        stacks.append((eb, ebk, c, pp["fs"]))

    print(f"live heap at the snapshot: {total_b} bytes in {total_k} blocks; {conns} connections")
    print(f"per connection: {total_b / conns:.0f} bytes, {total_k / conns:.1f} blocks (requested sizes; allocator overhead and retention not included)\n")
    print("| component | bytes per connection | blocks per connection |")
    print("|---|---:|---:|")
    for c, (b, k) in sorted(comps.items(), key=lambda x: -x[1][0]):
        print(f"| {c} | {b / conns:.0f} | {k / conns:.2f} |")
    print(f"| **total** | **{total_b / conns:.0f}** | **{total_k / conns:.2f}** |")

    print(f"\nTop {top} allocation sites (bytes per connection, blocks per connection, size per block):\n")
    noise = re.compile(r"^(alloc::|core::|std::|dhat::|<alloc::|<core::|hashbrown::|__rust|\[root\]|<dhat)")
    for eb, ebk, c, fs in sorted(stacks, key=lambda s: -s[0])[:top]:
        frames = []
        for fi in fs:
            f = ftbl[fi]
            m = re.match(r"0x[0-9a-f]+: (.*?)( \(.*\))?$", f)
            name = m.group(1) if m else f
            name = re.sub(r"::h[0-9a-f]{16}$", "", name)
            if noise.match(name) or name.startswith("<"):
                short = name[:100]
                if not frames:
                    frames.append(short)
                continue
            frames.append(name[:100])
            if len(frames) >= 6:
                break
        print(f"- {eb / conns:.0f} B, {ebk / conns:.2f} blocks, {eb / max(ebk, 1):.0f} B each [{c}]")
        for f in frames:
            print(f"    {f}")


if __name__ == "__main__":
    main()
