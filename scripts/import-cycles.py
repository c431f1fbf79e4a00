#!/usr/bin/env python3
"""Import cycles between the modules of each crate; exits 1 when there is one.

A module is a file (`foo.rs` or `foo/mod.rs`). Module A depends on module B
when A names something of B: `use crate::b::…`, a path `crate::b::…`,
`super::b::…`, or a name brought in by `use` (`use crate::live; live::hub::…`).
A path is resolved to the deepest module it names; an item a module re-exports
(`pub use child::Item`) is resolved to the module it comes from. Edges between
a module and the modules it contains (or is contained in) are structure, not
layering, and are not counted; nor is test code (`#[cfg(test)]` modules,
inline or in files of their own), which may use every layer.

Usage: scripts/import-cycles.py [crate-root …]   (default: every crate here)
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CRATES = ["src", "crates/*/src", "tools/src"]


def strip(text):
    """Source without comments, string and char literals."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]) or (c == "'" and re.match(r"'\\u\{[0-9a-fA-F]+\}'", text[i:i + 12])):
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            i += len(m.group(0))
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def without_tests(text):
    """`text` without its `#[cfg(test)] mod x { … }` blocks."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def test_only(src, modules, code):
    """Modules declared `#[cfg(test)] mod x;`, and everything inside them."""
    found = set()
    for m, text in code.items():
        for name in re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text):
            found.add(tuple(list(m) + [name]))
    return {m for m in modules if any(m[: len(t)] == t for t in found)}


def modules_of(src):
    """{module path tuple: file} for the crate whose root folder is `src`."""
    modules = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                rel = []
            elif rel[-1] == "mod":
                rel = rel[:-1]
            elif rel[0] == "bin":
                continue
            modules[tuple(rel)] = path
    return modules


def split_use_tree(tree):
    """`a::{b, c::{d, e}}` → ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    m = re.match(r"^(.*?)\{(.*)\}$", tree, re.S)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for part in parts if part.strip() for p in split_use_tree(prefix + part.strip())]


def absolute(segments, here):
    """A path's segments made absolute from module `here`, or None if external."""
    if not segments:
        return None
    if segments[0] == "crate":
        return list(segments[1:])
    base = list(here)
    while segments and segments[0] in ("super", "self"):
        if segments[0] == "super":
            if not base:
                return None
            base = base[:-1]
        segments = segments[1:]
    return base + list(segments)


def deepest(modules, path):
    for k in range(len(path), -1, -1):
        if tuple(path[:k]) in modules:
            return tuple(path[:k]), path[k:]
    return (), path


def analyse(src):
    modules = modules_of(src)
    code = {m: strip(open(p, encoding="utf-8").read()) for m, p in modules.items()}
    for m in test_only(src, modules, code):
        del modules[m], code[m]
    code = {m: without_tests(text) for m, text in code.items()}
    # Re-exports: module → {name: absolute path of what it names}.
    reexports = {}
    uses = {}
    for m, text in code.items():
        names, pub = {}, {}
        for vis, tree in re.findall(r"(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
            for item in split_use_tree(re.sub(r"\s+as\s+", " as ", tree)):
                item, _, alias = item.partition(" as ")
                item, alias = re.sub(r"\s+", "", item), (alias.strip() or None)
                segs = item.split("::")
                if segs[-1] == "*" or segs[-1] == "self":
                    segs = segs[:-1]
                if not segs:
                    continue
                path = absolute(segs, m) if segs[0] in ("crate", "super", "self") or tuple(list(m) + [segs[0]]) in modules else None
                if path is None:
                    continue
                names[alias or segs[-1]] = path
                if vis:
                    pub[alias or segs[-1]] = path
        uses[m] = names
        reexports[m] = pub

    def resolve(path, seen=0):
        mod, rest = deepest(modules, path)
        if rest and rest[0] in reexports.get(mod, {}) and seen < 8:
            return resolve(reexports[mod][rest[0]] + rest[1:], seen + 1)
        return mod

    edges = {m: set() for m in modules}
    for m, text in code.items():
        targets = list(uses[m].values())
        for p in re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", text):
            targets.append(absolute(p.split("::"), m))
        for name, path in uses[m].items():
            for rest in re.findall(r"(?<![\w:])" + re.escape(name) + r"((?:::\w+)+)", text):
                targets.append(path + rest.split("::")[1:])
        for t in targets:
            if t is None:
                continue
            target = resolve(t)
            a, b = m, target
            if a == b or a[: len(b)] == b or b[: len(a)] == a:
                continue
            edges[m].add(target)
    return modules, edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in edges:
                continue
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
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def name(m):
    return "::".join(m) or "(crate root)"


def main():
    import glob

    roots = sys.argv[1:] or [r for pattern in DEFAULT_CRATES for r in sorted(glob.glob(os.path.join(ROOT, pattern)))]
    found = 0
    for src in roots:
        _, edges = analyse(src)
        for comp in cycles(edges):
            found += 1
            members = set(comp)
            print(f"{os.path.relpath(src, ROOT)}: cycle between {', '.join(name(m) for m in comp)}")
            for m in comp:
                inside = sorted(name(t) for t in edges[m] if t in members)
                print(f"    {name(m)} → {', '.join(inside)}")
    if found:
        print(f"{found} import cycle(s)")
        return 1
    print(f"0 import cycles in {len(roots)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
