#!/usr/bin/env python3
"""Compiles every Swift example in the README, docs/ and the DocC comments of
the library in Swift 6 language mode, so an example that no longer builds (or
that Swift 6's data-race checks reject) fails CI.

Usage: Tools/snippets/check-snippets.py [--build-dir .build/debug] [files...]
Run `swift build --target GreenThreads` first (the script says so if the
module is missing).

Each ```swift block becomes the main.swift of its own compilation (a block
with an @main type is compiled as a library file instead), with
`import GreenThreads` added when missing and Tools/snippets/Prelude.swift
beside it (stand-ins for the helpers examples call: compute(), process(_:),
...). `swiftc -emit-sil` runs the type checker and the SIL diagnostics, where
Swift 6's region-based isolation checks live (`-typecheck` alone would miss
"sending 'x' risks causing data races"); nothing is linked or run.

A block fenced ```swift fragment is shown, not compiled (a piece of a larger
program); the script lists how many it skipped.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def markdown_snippets(path):
    """(line, info, code) for each fenced swift block of a Markdown file."""
    out, lines = [], open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(swift.*)$", lines[i])
        if m:
            indent, info, start, body = len(m.group(1)), m.group(2).strip(), i + 1, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i][indent:])
                i += 1
            out.append((start, info, "\n".join(body)))
        i += 1
    return out


def docc_snippets(path):
    """(line, info, code) for each ```swift block inside /// comments."""
    out, lines = [], open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*/// ?```(swift.*)$", lines[i])
        if m:
            info, start, body = m.group(1).strip(), i + 1, []
            i += 1
            while i < len(lines) and not re.match(r"^\s*/// ?```\s*$", lines[i]):
                body.append(re.sub(r"^\s*/// ?", "", lines[i]))
                i += 1
            out.append((start, info, "\n".join(body)))
        i += 1
    return out


def compiler_flags(build_dir):
    triple_dir = os.path.realpath(build_dir)
    modules = os.path.join(triple_dir, "Modules")
    if not os.path.exists(os.path.join(modules, "GreenThreads.swiftmodule")):
        sys.exit(f"no GreenThreads module in {modules}: run `swift build --target GreenThreads` first")
    flags = ["-swift-version", "6", "-I", modules]
    # The C modules GreenThreads imports: SwiftPM's generated map for
    # CGreenCore, and CUnwind's own.
    for mm in [os.path.join(triple_dir, "CGreenCore.build", "module.modulemap"),
               os.path.join(ROOT, "Sources", "CUnwind", "module.modulemap")]:
        flags += ["-Xcc", f"-fmodule-map-file={mm}"]
    return flags


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-dir", default=os.path.join(ROOT, ".build", "debug"))
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    files = args.files or (
        [os.path.join(ROOT, "README.md")]
        + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
        + sorted(glob.glob(os.path.join(ROOT, "Sources", "GreenThreads", "**", "*.swift"), recursive=True)))
    flags = compiler_flags(args.build_dir)
    prelude = os.path.join(ROOT, "Tools", "snippets", "Prelude.swift")
    compiled = skipped = 0
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            snippets = docc_snippets(path) if path.endswith(".swift") else markdown_snippets(path)
            for line, info, code in snippets:
                where = f"{os.path.relpath(path, ROOT)}:{line}"
                if "fragment" in info.split():
                    skipped += 1
                    continue
                if not re.search(r"^import GreenThreads", code, re.M):
                    code = "import GreenThreads\n" + code
                main = os.path.join(tmp, "main.swift")
                with open(main, "w", encoding="utf-8") as f:
                    f.write(code + "\n")
                # An @main type cannot sit in a file of top-level code.
                mode = ["-parse-as-library"] if re.search(r"^@main", code, re.M) else []
                result = subprocess.run(["swiftc", "-emit-sil", "-wmo", "-o", os.devnull, *mode, *flags, main, prelude],
                                        capture_output=True, text=True)
                compiled += 1
                if result.returncode != 0:
                    errors = [l for l in result.stderr.split("\n") if "error:" in l]
                    failures.append((where, errors[:3] or result.stderr.split("\n")[:3]))
                    print(f"FAIL {where}")
                    for e in failures[-1][1]:
                        print(f"    {e.replace(main, 'snippet')}")
                else:
                    print(f"ok   {where}")
    print(f"{compiled} compiled, {len(failures)} failed, {skipped} fragments skipped")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
