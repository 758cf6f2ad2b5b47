#!/usr/bin/env python3
"""Import cycles among soakwatch's modules.

Reads every `crate::a::b` path in src/ (in `use` lines and inline), maps it
to the module file it names, and reports each strongly connected component
of more than one module: a module that, through others, imports itself.
It also reports any product module that imports the test kit
(`testkit::*`, built only with the `testkit` feature): the shipped binary
must not depend on it. Exit 0 when there is neither, 1 otherwise. Modules are files: src/probe/db.rs
is `probe::db`, src/probe/mod.rs is `probe`; a child using its parent's
items is not an edge (a folder is one unit), a parent using a child's is. `#[cfg(test)]` blocks at the
end of a file are skipped (tests may reach anywhere).

Usage: scripts/check-layers.py [SRC_DIR]
"""
import re
import sys
from pathlib import Path

src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "src")
modules = {}
for f in sorted(src.rglob("*.rs")):
    rel = f.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        continue
    modules["::".join(parts)] = f

PATH = re.compile(r"crate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*|\{)")
USE_GROUP = re.compile(r"use\s+crate::\{([^;]*)\};", re.S)


def resolve(path: str, known) -> str | None:
    """Longest module prefix of a `a::b::Item` path."""
    parts = path.split("::")
    for n in range(len(parts), 0, -1):
        cand = "::".join(parts[:n])
        if cand in known:
            return cand
    return None


def body(text: str) -> str:
    """The code of a file: no test module, no comments (doc links are not imports)."""
    cuts = [c for c in (text.find("#[cfg(test)]\nmod tests"), text.find("#[cfg(all(test")) if c >= 0]
    text = text[: min(cuts)] if cuts else text
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))


deps = {m: set() for m in modules}
for m, f in modules.items():
    text = body(f.read_text())
    paths = [p for p in PATH.findall(text) if p != "{"]
    for group in USE_GROUP.findall(text):
        for item in re.split(r"[,\s]+", re.sub(r"\{[^}]*\}", "", group)):
            if item:
                paths.append(item.split(" as ")[0])
        # `use crate::{a::{b, c}}`
        for head, inner in re.findall(r"([a-z_:]+)::\{([^}]*)\}", group):
            for item in inner.split(","):
                item = item.strip()
                if item:
                    paths.append(f"{head}::{item}")
    # Paths relative to this module: `super::x::Y`, `self::x::Y`, and `x::Y`
    # for a child `mod x;` declared here (a parent that uses or re-exports
    # a child's items depends on it).
    parent = m.rsplit("::", 1)[0] if "::" in m else ""
    for p in re.findall(r"\bsuper::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", text):
        paths.append(f"{parent}::{p}" if parent else p)
    for child in re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", text, re.M):
        if re.search(rf"(?<![:\w]){child}::", text.replace(f"mod {child};", "")):
            paths.append(f"{m}::{child}")
    for p in paths:
        target = resolve(p, modules)
        # A child using its own parent's items stays inside one folder,
        # which is one unit; every other edge counts.
        if target and target != m and not m.startswith(target + "::"):
            deps[m].add(target)

# Tarjan's strongly connected components.
index, low, stack, on, sccs = {}, {}, [], set(), []
counter = [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(deps[v]):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))


sys.setrecursionlimit(10000)
for v in sorted(deps):
    if v not in index:
        visit(v)

upward = sorted(
    (m, d)
    for m, ds in deps.items()
    if not (m == "testkit" or m.startswith("testkit::"))
    for d in ds
    if d == "testkit" or d.startswith("testkit::")
)
for m, d in upward:
    print(f"check-layers: product module {m} imports the test kit ({d})")

if not sccs and not upward:
    print(f"check-layers: {len(modules)} modules, no import cycle, no product use of testkit")
    sys.exit(0)
for comp in sccs:
    print(f"check-layers: import cycle of {len(comp)} modules:")
    members = set(comp)
    for m in comp:
        inside = sorted(d for d in deps[m] if d in members)
        print(f"  {m} -> {', '.join(inside)}")
sys.exit(1)
