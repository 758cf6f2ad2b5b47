#!/usr/bin/env python3
"""Meaning carried in types, not strings, in product code.

Two rules, over the same product code as check-fn-length.py (src/ without
`#[cfg(test)]` items, src/testkit/ and src/bin/soakwatch-testkit.rs;
comments and string literals blanked first):

1. No `Result<_, String>`: an error is a type (thiserror) whose variants
   say what went wrong, so a caller matches on a variant, never on text.
   The ones still there are listed in scripts/typed-allowlist.txt as
   `path:item count` (item: the enclosing fn, or the struct, enum, type or
   trait the occurrence is declared in). The list only shrinks: a new
   occurrence fails, and so does an entry whose count is higher than what
   is left (lower it or remove the line once the code is converted).
2. No role, state, status or mode held as `&'static str` (a field or a
   parameter named `role`, `state`, `status`, `mode`, `phase`, or ending in
   `_role`, `_state`, ...): an enum names the cases, and its `as_str` is
   the one place that spells them. No allowlist.

Exit 0 when both hold, 1 otherwise, listing each finding.

Usage: scripts/check-typed.py [SRC_DIR]
"""
import importlib.util
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("fnlen", HERE / "check-fn-length.py")
fnlen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fnlen)

ALLOWLIST = HERE / "typed-allowlist.txt"
RESULT = re.compile(r"\bResult\s*<")
ITEM = re.compile(r"\b(?:fn|struct|enum|type|trait)\s+([A-Za-z_]\w*)")
STR_STATE = re.compile(
    r"\b(\w*(?:role|state|status|mode|phase))\s*:\s*(?:Option\s*<\s*)?&\s*'static\s+str\b"
)


def last_arg(code: str, open_at: int) -> str:
    """The last top-level argument of the generic list opened at `open_at` (`<`)."""
    depth, start, i = 0, open_at + 1, open_at
    args = []
    while i < len(code):
        c = code[i]
        if c in "<([":
            depth += 1
        elif c in ")]" or (c == ">" and code[i - 1] != "-"):
            depth -= 1
            if depth == 0:
                args.append(code[start:i])
                # A trailing comma leaves an empty last argument.
                args = [a.strip() for a in args if a.strip()]
                return args[-1] if args else ""
        elif c == "," and depth == 1:
            args.append(code[start:i])
            start = i + 1
        i += 1
    return ""


def product_files(src: Path):
    """(relative path, blanked code without test-only items) of each product file."""
    skip = set()
    for f in sorted(src.rglob("*.rs")):
        rel = f.relative_to(src).as_posix()
        if f in skip or any(rel == t or rel.startswith(t) for t in fnlen.TEST_ONLY):
            continue
        code = fnlen.blank(f.read_text())
        spans, test_mods = fnlen.test_spans(code)
        for name in test_mods:
            d = fnlen.module_dir(f)
            skip.update([d / f"{name}.rs", d / name / "mod.rs"])
            skip.update((d / name).rglob("*.rs"))
        out = list(code)
        for a, b in spans:
            for k in range(a, min(b + 1, len(out))):
                if out[k] != "\n":
                    out[k] = " "
        yield f, "src/" + rel, "".join(out)
    # Files declared test-only by a parent read later are dropped by the caller.
    product_files.skip = skip


def findings(src: Path):
    string_results, str_states = Counter(), []
    where = {}
    files = list(product_files(src))
    skip = getattr(product_files, "skip", set())
    for f, rel, code in files:
        if f in skip:
            continue
        for m in RESULT.finditer(code):
            if last_arg(code, m.end() - 1) != "String":
                continue
            items = ITEM.findall(code, 0, m.start())
            key = f"{rel}:{items[-1] if items else '-'}"
            string_results[key] += 1
            where.setdefault(key, code.count("\n", 0, m.start()) + 1)
        for m in STR_STATE.finditer(code):
            line = code.count("\n", 0, m.start()) + 1
            str_states.append(f"{rel}:{line} `{m.group(1)}`")
    return string_results, where, str_states


def read_allowlist():
    allowed = Counter()
    if not ALLOWLIST.exists():
        return allowed
    for raw in ALLOWLIST.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, n = line.rpartition(" ")
        allowed[key.strip()] = int(n)
    return allowed


def main() -> int:
    args = sys.argv[1:]
    src = Path(args[0]) if args else HERE.parent / "src"
    found, where, str_states = findings(src)
    allowed = read_allowlist()
    problems = []
    for key, n in sorted(found.items()):
        if n > allowed.get(key, 0):
            problems.append(
                f"new Result<_, String> in {key} (line {where[key]}): {n} found, "
                f"{allowed.get(key, 0)} allowed; return a thiserror type"
            )
    for key, n in sorted(allowed.items()):
        if found.get(key, 0) < n:
            problems.append(
                f"stale allowlist entry `{key} {n}`: {found.get(key, 0)} left; "
                f"lower or remove it in {ALLOWLIST.relative_to(HERE.parent)}"
            )
    for s in str_states:
        problems.append(f"a role, state or mode as &'static str at {s}: use an enum")
    if problems:
        print(f"check-typed: {len(problems)} problem(s):")
        for p in problems:
            print(f"  {p}")
        return 1
    print(
        f"check-typed: no new Result<_, String> ({sum(found.values())} left, allowlisted), "
        "no role or state as &'static str"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
