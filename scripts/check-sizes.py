#!/usr/bin/env python3
"""Checks the size limits of issue 19 over the Rust sources git tracks.

- no source file over 1,000 lines;
- no function over 150 lines (from the line of `fn` to the line of its closing brace).

Functions are found without a Rust parser: a small scanner skips comments, strings (raw ones
too), char literals and lifetimes, and matches the braces of every `fn` item that has a body.
Closures and macro bodies count towards the function that holds them.

Usage: scripts/check-sizes.py [--max-file N] [--max-fn N] [PATH...]
PATHs (files or folders, default: the whole tree) narrow what is read. Prints one line a
finding and exits 1 when there is any, 0 otherwise.
"""

import argparse
import os
import re
import subprocess
import sys

FN_RE = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")


def code_mask(text):
    """The text with comments, strings and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif c in "rb" and raw_string_start(text, i):
            j = raw_string_end(text, i)
            out.append(blank(text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(blank(text[i:j]))
            i = j
        elif c == "'":
            j = char_literal_end(text, i)
            out.append(blank(text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def blank(s):
    return "".join("\n" if ch == "\n" else " " for ch in s)


def raw_string_start(text, i):
    if i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
        return False
    m = re.match(r"b?r#*\"", text[i : i + 260])
    return m is not None


def raw_string_end(text, i):
    m = re.match(r"b?r(#*)\"", text[i:])
    hashes = m.group(1)
    close = '"' + hashes
    j = text.find(close, i + m.end())
    return len(text) if j < 0 else j + len(close)


def char_literal_end(text, i):
    """End of a char literal at i, or i + 1 for a lifetime's quote."""
    n = len(text)
    if i + 1 < n and text[i + 1] == "\\":
        j = text.find("'", i + 2)
        return n if j < 0 else j + 1
    if i + 2 < n and text[i + 2] == "'":
        return i + 3
    # A multi-byte char literal ('é'): a quote within a few characters, no space before it.
    m = re.match(r"'[^'\s\\]{1,4}'", text[i : i + 7])
    if m and not re.match(r"'[A-Za-z_][A-Za-z0-9_]*\b", m.group(0)[:-1] + " "):
        return i + m.end()
    return i + 1


def functions(text):
    """(name, first line, last line) of every fn item with a body."""
    code = code_mask(text)
    found = []
    for m in FN_RE.finditer(code):
        j = m.end()
        depth_paren = 0
        while j < len(code):
            ch = code[j]
            if ch in "([":
                depth_paren += 1
            elif ch in ")]":
                depth_paren -= 1
            elif ch == ";" and depth_paren == 0:
                j = -1
                break
            elif ch == "{" and depth_paren == 0:
                break
            j += 1
        if j < 0 or j >= len(code):
            continue
        depth, k = 0, j
        while k < len(code):
            if code[k] == "{":
                depth += 1
            elif code[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        first = code.count("\n", 0, m.start()) + 1
        last = code.count("\n", 0, k) + 1
        found.append((m.group(1), first, last))
    return found


def tracked_files(paths):
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
    ).stdout.strip()
    cmd = ["git", "-C", top, "ls-files", "--", *(paths or ["."])]
    if paths:
        cmd = ["git", "ls-files", "--full-name", "--", *paths]
    names = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    return top, [f for f in names if f.endswith(".rs")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-file", type=int, default=1000)
    ap.add_argument("--max-fn", type=int, default=150)
    ap.add_argument("paths", nargs="*")
    args = ap.parse_args()
    top, files = tracked_files(args.paths)
    findings = 0
    for rel in sorted(files):
        path = os.path.join(top, rel)
        try:
            text = open(path, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError) as e:
            print(f"{rel}: unreadable ({e})")
            findings += 1
            continue
        lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        if lines > args.max_file:
            print(f"{rel}: {lines} lines (file over {args.max_file})")
            findings += 1
        for name, first, last in functions(text):
            length = last - first + 1
            if length > args.max_fn:
                print(f"{rel}:{first}: fn {name} {length} lines (over {args.max_fn})")
                findings += 1
    print(f"{findings} finding(s) in {len(files)} files")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
