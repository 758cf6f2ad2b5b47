#!/usr/bin/env python3
"""Product functions longer than a limit (120 lines by default).

A long function hides its steps; this keeps each one short enough to read
as a whole. Product code is everything in src/ except test-only code:
`#[cfg(test)]` items (modules, functions, and module files declared with
`#[cfg(test)] mod x;`), src/testkit/ and src/bin/soakwatch-testkit.rs.

A function's length runs from the line of its `fn` keyword to the line of
its closing brace. Comments, string literals (also raw strings such as
r#"..."#, byte strings) and char literals ('{', '"') are blanked before
braces are counted, so what they contain cannot shift a function's end.
Lifetimes ('a) are not char literals.

Exit 0 when no product function is over the limit, 1 otherwise, listing
each one as `LINES path:line name`, longest first.

Usage: scripts/check-fn-length.py [--limit N] [SRC_DIR]
"""
import re
import sys
from pathlib import Path

TEST_ONLY = ["testkit/", "bin/soakwatch-testkit.rs"]


def is_ident(c: str) -> bool:
    return c.isalnum() or c == "_"


def blank(text: str) -> str:
    """The text with comments and literals replaced by spaces (newlines kept)."""
    out = list(text)
    n = len(text)

    def wipe(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    i = 0
    raw = re.compile(r'r(#*)"')
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            end = text.find("\n", i)
            end = n if end < 0 else end
            wipe(i, end)
            i = end
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            wipe(i, j)
            i = j
        elif c == "r" and (m := raw.match(text, i)) and (
            i == 0
            or not is_ident(text[i - 1])
            or (text[i - 1] == "b" and (i < 2 or not is_ident(text[i - 2])))
        ):
            close = '"' + m.group(1)
            end = text.find(close, m.end())
            end = n if end < 0 else end + len(close)
            wipe(i, end)
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            wipe(i, j + 1)
            i = j + 1
        elif c == "'":
            # '\n', '\u{7f}', 'x', '"', '{' are chars; 'a in `&'a str` is a lifetime.
            if nxt == "\\":
                j = text.find("'", i + 3)
                j = n if j < 0 else j
                wipe(i, j + 1)
                i = j + 1
            elif i + 2 < n and text[i + 2] == "'":
                wipe(i, i + 3)
                i += 3
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def item_end(code: str, start: int) -> int:
    """End offset of the item starting at `start`: its matching `}` or its `;`."""
    nest = 0
    i = start
    n = len(code)
    while i < n:
        c = code[i]
        if c in "([":
            nest += 1
        elif c in ")]":
            nest -= 1
        elif nest == 0 and c == ";":
            return i
        elif nest == 0 and c == "{":
            depth = 0
            while i < n:
                if code[i] == "{":
                    depth += 1
                elif code[i] == "}":
                    depth -= 1
                    if depth == 0:
                        return i
                i += 1
            return n
        i += 1
    return n


CFG_TEST = re.compile(r"#\[cfg\(test\)\]")
ATTR = re.compile(r"\s*#\[[^\]]*\]")
MOD_DECL = re.compile(r"\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_]\w*)\s*;")
FN = re.compile(r"\bfn\s+([A-Za-z_]\w*)")


def test_spans(code: str):
    """(start, end) offsets of `#[cfg(test)]` items, and test-only module files named."""
    spans, files = [], []
    for m in CFG_TEST.finditer(code):
        i = m.end()
        while a := ATTR.match(code, i):
            i = a.end()
        if d := MOD_DECL.match(code, i):
            files.append(d.group(1))
        spans.append((m.start(), item_end(code, i)))
    return spans, files


def module_dir(f: Path) -> Path:
    """Where the files of `mod x;` declared in `f` live."""
    return f.parent if f.name in ("mod.rs", "lib.rs", "main.rs") else f.with_suffix("")


def long_functions(src: Path, limit: int):
    found, skip = [], set()
    files = sorted(src.rglob("*.rs"))
    for f in files:
        rel = f.relative_to(src).as_posix()
        if f in skip or any(rel == t or rel.startswith(t) for t in TEST_ONLY):
            continue
        code = blank(f.read_text())
        spans, test_mods = test_spans(code)
        for name in test_mods:
            d = module_dir(f)
            skip.update([d / f"{name}.rs", d / name / "mod.rs"])
            skip.update((d / name).rglob("*.rs"))
        for m in FN.finditer(code):
            if any(a <= m.start() <= b for a, b in spans):
                continue
            end = item_end(code, m.end())
            if end < len(code) and code[end] == ";":
                continue  # a declaration without a body
            first = code.count("\n", 0, m.start()) + 1
            last = code.count("\n", 0, end) + 1
            if last - first + 1 > limit:
                found.append((last - first + 1, f"{rel}:{first}", m.group(1)))
    # Files declared test-only after they were read (a parent sorted later).
    return [x for x in found if src / x[1].split(":")[0] not in skip]


def main() -> int:
    args = sys.argv[1:]
    limit = 120
    if args[:1] == ["--limit"] and len(args) > 1:
        limit, args = int(args[1]), args[2:]
    src = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "src"
    found = sorted(long_functions(src, limit), reverse=True)
    if not found:
        print(f"check-fn-length: no product function over {limit} lines")
        return 0
    print(f"check-fn-length: {len(found)} product function(s) over {limit} lines:")
    for n, loc, name in found:
        print(f"  {n} {loc} {name}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
