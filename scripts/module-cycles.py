#!/usr/bin/env python3
"""Lists import cycles between the modules (files) of a crate's src/ tree.

An edge A -> B means file A names `crate::B…` or `super::B…` outside comments and test
modules. A parent's `pub mod`/`pub use` of its own children is not an edge (that is how a
folder exposes its files). Usage: scripts/module-cycles.py broker/src [loadgen/src …]
Exits 1 if any cycle is found.
"""
import os, re, sys, collections

def module_of(root, path):
    p = path[len(root) + 1:-3]
    if p.endswith('/mod') or p == 'lib' or p == 'main':
        p = p[:-4] if p.endswith('/mod') else ''
    return p.replace('/', '::')

def strip(src):
    src = re.sub(r'#\[cfg\(test\)\]\s*mod \w+\s*\{.*', '', src, flags=re.S)  # test modules are last
    src = re.sub(r'#\[cfg\(test\)\]\s*(pub(\(crate\))? )?mod \w+;', '', src)
    return '\n'.join(l for l in src.split('\n') if not l.lstrip().startswith('//'))

def graph(root):
    files = {}
    for dp, _, fns in os.walk(root):
        for f in fns:
            if f.endswith('.rs') and '/bin' not in dp:
                path = os.path.join(dp, f)
                files[module_of(root, path)] = strip(open(path).read())
    mods = set(files)
    g = collections.defaultdict(set)
    for m, src in files.items():
        parent = '::'.join(m.split('::')[:-1])
        refs = [r for r in re.findall(r'\bcrate::((?:[a-z_]+::)*[a-z_]+)', src)]
        refs += [(parent + '::' if parent else '') + r for r in re.findall(r'\bsuper::((?:[a-z_]+::)*[a-z_]+)', src)]
        for r in refs:
            parts = r.split('::')
            for k in range(len(parts), 0, -1):
                cand = '::'.join(parts[:k])
                if cand in mods:
                    is_child = cand.startswith(m + '::') if m else True
                    if cand != m and not is_child:
                        g[m].add(cand)
                    break
    return g

def cycles(g):
    found, seen = [], set()
    def dfs(n, stack):
        for x in sorted(g.get(n, ())):
            if x in stack:
                c = stack[stack.index(x):] + [x]
                key = frozenset(c)
                if key not in seen:
                    seen.add(key)
                    found.append(c)
            else:
                dfs(x, stack + [x])
    for n in sorted(g):
        dfs(n, [n])
    return found

bad = 0
for root in sys.argv[1:] or ['broker/src']:
    for c in cycles(graph(root.rstrip('/'))):
        print(f'{root}: cycle: ' + ' -> '.join(c))
        bad += 1
print(f'{bad} cycles')
sys.exit(1 if bad else 0)
