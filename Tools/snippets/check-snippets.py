#!/usr/bin/env python3
"""Compiles every Swift example in the README, docs/ and the DocC comments of
the library in Swift 6 language mode, so an example that no longer builds (or
that Swift 6's data-race checks reject) fails CI.

Usage: Tools/snippets/check-snippets.py [--build-dir .build/debug] [--coverage] [files...]
Run `swift build --target GreenThreads` first (the script says so if the
module is missing).

Each ```swift block becomes the main.swift of its own compilation (a block
with an @main type is compiled as a library file instead), with
`import GreenThreads` added when missing and Tools/snippets/Prelude.swift
beside it (stand-ins for the helpers examples call: compute(), process(_:),
...). `swiftc -emit-sil` runs the type checker and the SIL diagnostics, where
Swift 6's region-based isolation checks live (`-typecheck` alone would miss
"sending 'x' risks causing data races"); nothing is linked or run.

A block that opens with `// swift-tools-version:` is a package manifest (the
README's "Add it"): it is type-checked alone against the toolchain's
PackageDescription module, in the tools version it names.

A block fenced ```swift fragment is shown, not compiled (a piece of a larger
program); the script lists how many it skipped.

--coverage also lists every public declaration of the GreenThreads library
(Sources/GreenThreads) that no compiling example covers, and then exits
non-zero. The rule, per declaration that is `public` or `open` (cases of a
public enum included; `@_spi` declarations, which are not API, and
deprecated ones, which an example should not teach, excluded):
- it is covered by a ```swift block (not a fragment) in its own doc comment
  that compiled in this run;
- or by a compiled example in the doc comment of an enclosing type (its own
  type first, then outwards; a member declared in an extension belongs to
  the extended type) that names it:
  - a property, method or static member as `.name` (`mutex.name`,
    `.high`, `GreenThread.spawn`), with every argument label that has no
    default value written as `label:` somewhere in the example
    (so `lock()` does not cover `lock(timeout:)`);
  - an initializer as `TypeName(` or `.init(`, with its required labels;
  - a nested type or typealias by its name;
- an enum case is covered by any compiled example of its enum (catching or
  switching over one case shows how all are used);
- `description`, `hash(into:)` and operators (`<`) are covered by any
  compiled example of their type: `print(x)`, "\(x)" and `a < b` use them
  without naming them.
Mentions are matched as text in the example's code with its // comments
removed: naming a member in a comment covers nothing, but `.close` on a
value of another type counts (write examples that use what they cover).
The declarations come from a line-based reading of the sources (braces,
attributes, modifiers), not the compiler; a line that starts a public
declaration it did not recognize is reported (NOT PARSED) and fails the
check rather than escaping it.
"""
import argparse
import glob
import os
import re
import shutil
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


# ---------------------------------------------------------------- coverage

# Modifiers that may stand before a declaration keyword (`class` is one
# only when another keyword follows it: `class func`).
MODIFIERS = {"public", "open", "package", "internal", "private", "fileprivate", "static", "class", "final",
             "override", "mutating", "nonmutating", "convenience", "required", "nonisolated", "indirect",
             "lazy", "weak", "unowned", "dynamic", "consuming", "borrowing", "prefix", "postfix", "infix"}
TYPE_KEYWORDS = {"struct", "class", "enum", "protocol", "actor"}
MEMBER_KEYWORDS = {"func", "init", "var", "let", "subscript", "typealias", "case"}
# Protocol witnesses that examples use without naming them: `print(x)` and
# "\(x)" call `description`, a Set or Dictionary `hash(into:)`.
IMPLICIT_WITNESSES = {"description", "debugDescription", "hash"}
# A line that declares something public (attributes and modifiers first):
# the cross-check that the parser below saw every such line.
PUBLIC_LINE = re.compile(r"^\s*(@\w+(\([^)]*\))?\s+)*((nonisolated(\(unsafe\))?|static|final|class)\s+)*"
                         r"(public|open)\s+[A-Za-z_@]")


class Decl:
    """One declaration: where it is, what it is, the types it is nested in
    (`parents`), its argument labels, and the fence lines of the compiled
    (non-fragment) ```swift blocks of its doc comment."""

    def __init__(self, path, line, kind, name, parents, doc_blocks, public, excluded, labels=None):
        self.path, self.line, self.kind, self.name, self.parents = path, line, kind, name, parents
        self.doc_blocks, self.public, self.excluded = doc_blocks, public, excluded
        self.labels = labels or {"all": [], "required": []}

    def title(self):
        full = ".".join(self.parents + [self.name])
        if self.kind in ("func", "init", "subscript"):
            full += "(" + "".join(f"{l}:" for l in self.labels["all"]) + ")"
        return f"{self.kind} {full}"


def strip_code_line(line):
    """The line without string literals and // comments (for brace counting)."""
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    return line.split("//", 1)[0]


def parameter_labels(text):
    """Argument labels of the first parameter list in `text`: all of them
    ('_' for none) and those a call must spell (no default value)."""
    text = text.replace("->", " ")   # a `>` that closes no generic list
    start = text.find("(")
    if start < 0:
        return {"all": [], "required": []}
    depth, params, current = 0, [], ""
    for ch in text[start:]:
        if ch in "([<":
            depth += 1
            if depth == 1:
                continue
        elif ch in ")]>":
            depth -= 1
            if depth == 0:
                break
        if ch == "," and depth == 1:
            params.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        params.append(current)
    labels, required = [], []
    for p in params:
        names = p.split(":", 1)[0].split()
        if not names:
            continue
        labels.append(names[0])
        # "label: Type = default" may be left out of a call.
        if names[0] != "_" and not re.search(r"=(?!=)", p.split(":", 1)[1] if ":" in p else ""):
            required.append(names[0])
    return {"all": labels, "required": required}


def split_declaration(code):
    """(attributes, modifiers, keyword, text after the keyword) of a line."""
    attributes, rest = [], code
    while m := re.match(r"^(@\w+(?:\([^)]*\))?)\s*", rest):
        attributes.append(m.group(1))
        rest = rest[m.end():]
    words = re.findall(r"[A-Za-z_]\w*(?:\([^)]*\))?|\S", rest)
    modifiers, k = [], 0
    while k < len(words):
        base, following = words[k].split("(")[0], words[k + 1] if k + 1 < len(words) else ""
        if base not in MODIFIERS or (base == "class" and following not in MEMBER_KEYWORDS | MODIFIERS):
            break
        modifiers.append(base)
        k += 1
    keyword = words[k].split("(")[0] if k < len(words) else ""
    after = rest[rest.find(keyword) + len(keyword):] if keyword else ""
    return attributes, modifiers, keyword, after


def member_name_and_labels(keyword, after, lines, i):
    """The name a member is called by, and its argument labels (a
    signature may run over several lines)."""
    if keyword not in ("func", "init", "subscript"):
        m = re.match(r"\s*`?(\w+)`?", after)
        return (m.group(1) if m else "?"), None
    text = "\n".join(strip_code_line(l) for l in lines[i:i + 12])
    text = text[text.find(keyword) + len(keyword):]
    name = keyword
    if keyword == "func":
        m = re.match(r"\s*(`?\w+`?|[^\s(]+)", text)   # an identifier or an operator
        name, text = (m.group(1).strip("`"), text[m.end():]) if m else ("?", text)
    return name, parameter_labels(text)


def swift_declarations(path):
    """Every type and member declaration of a Swift file (not the locals of
    function bodies), each with its doc comment's compiled examples."""
    lines = open(path, encoding="utf-8").read().split("\n")
    decls = []
    doc_blocks, attributes = [], []  # of the declaration being approached
    scopes = []                      # open type bodies: (type path, brace depth inside, excluded, public)
    depth = 0
    pending_type = None              # a type whose `{` may come on a later line
    in_multiline_string = False
    for i, raw in enumerate(lines):
        stripped = raw.strip()
        # 1. Skip multi-line string literals; collect doc comments.
        if stripped.count('"""') % 2 == 1:
            in_multiline_string = not in_multiline_string
            continue
        if in_multiline_string:
            continue
        if stripped.startswith("///"):
            m = re.match(r"^///\s?```(swift.*)$", stripped)
            if m and "fragment" not in m.group(1).split():
                doc_blocks.append(i + 1)   # the fence's line, as docc_snippets counts it
            continue
        code = strip_code_line(raw).strip()
        if not code:
            if not stripped.startswith("//"):   # a blank line detaches a doc comment
                doc_blocks, attributes = [], []
            continue
        # 2. A declaration at the member level of the innermost type (or at
        # file level): attributes on lines of their own belong to it.
        line_attributes, modifiers, keyword, after = split_declaration(code)
        attributes += line_attributes
        if not keyword and line_attributes:
            continue
        parents, body_depth, scope_excluded, scope_public = scopes[-1] if scopes else ([], 0, False, False)
        excluded = scope_excluded or any(a.startswith("@_spi") or re.match(r"@available\(\*,\s*(deprecated|unavailable)", a)
                                         for a in attributes)
        public = "public" in modifiers or "open" in modifiers
        if depth == body_depth:
            if keyword == "extension":
                m = re.match(r"\s*([\w.]+)", after)
                pending_type = (m.group(1).split(".") if m else ["?"], excluded, False)
            elif keyword in TYPE_KEYWORDS:
                m = re.match(r"\s*(\w+)", after)
                d = Decl(path, i + 1, keyword, m.group(1) if m else "?", parents, doc_blocks, public, excluded)
                decls.append(d)
                pending_type = (parents + [d.name], excluded, public)
            elif keyword == "case":
                # `case a, b(Int)`: cases of a public enum are public.
                for name in re.findall(r"(?:^|,)\s*`?(\w+)`?", re.sub(r"\([^)]*\)", "", after.split("=")[0])):
                    decls.append(Decl(path, i + 1, "case", name, parents, doc_blocks, scope_public, excluded))
            elif keyword in MEMBER_KEYWORDS:
                name, labels = member_name_and_labels(keyword, after, lines, i)
                decls.append(Decl(path, i + 1, keyword, name, parents, doc_blocks, public, excluded, labels))
        doc_blocks, attributes = [], []
        # 3. Braces: open a type's body, close bodies.
        for ch in code:
            if ch == "{":
                if pending_type is not None:
                    scopes.append((pending_type[0], depth + 1, pending_type[1], pending_type[2]))
                    pending_type = None
                depth += 1
            elif ch == "}":
                depth -= 1
                while scopes and scopes[-1][1] > depth:
                    scopes.pop()
    return decls


def without_comments(code):
    """`code` without its // comments (string literals kept whole)."""
    return "\n".join(re.sub(r'("(?:\\.|[^"\\])*")|//.*', lambda m: m.group(1) or "", line)
                     for line in code.split("\n"))


def mentions(decl, text):
    """Whether an example's code names `decl` (see the rule at the top)."""
    if decl.kind in TYPE_KEYWORDS or decl.kind == "typealias":
        return re.search(rf"\b{re.escape(decl.name)}\b", text) is not None
    if decl.kind == "init":
        owner = re.escape(decl.parents[-1])
        called = re.search(rf"(\b{owner}(<[^>]*>)?|\.init)\s*\(", text)
    elif decl.name in IMPLICIT_WITNESSES or not re.match(r"\w", decl.name):
        return True
    else:
        called = re.search(rf"\.{re.escape(decl.name)}\b", text)
    return called is not None and all(re.search(rf"\b{re.escape(l)}\s*:", text) for l in decl.labels["required"])


def coverage(decls, compiled):
    """(covered, missing) public declarations; `compiled` maps (path, line)
    of each block that compiled to its code."""
    types = {tuple(d.parents + [d.name]): d for d in decls if d.kind in TYPE_KEYWORDS}

    def examples(d):
        return [without_comments(compiled[(d.path, line)]) for line in d.doc_blocks if (d.path, line) in compiled]

    covered, missing = [], []
    for d in decls:
        if not d.public or d.excluded:
            continue
        how = "own example" if examples(d) else None
        # The enclosing types' examples, innermost first.
        for n in range(len(d.parents), 0, -1):
            if how:
                break
            owner = types.get(tuple(d.parents[:n]))
            texts = examples(owner) if owner else []
            if texts and (d.kind == "case" and n == len(d.parents) or any(mentions(d, t) for t in texts)):
                how = f"{'.'.join(d.parents[:n])}'s example"
        (covered if how else missing).append((d, how))
    return covered, missing


def manifest_command(code, path):
    """The swiftc command that type-checks a Package.swift at `path`, or
    None when `code` is not a manifest."""
    m = re.match(r"//\s*swift-tools-version:\s*([\d.]+)", code)
    if not m:
        return None
    # The toolchain keeps PackageDescription beside the compiler:
    # <usr>/bin/swiftc and <usr>/lib/swift/pm/ManifestAPI.
    usr = os.path.dirname(os.path.dirname(os.path.realpath(shutil.which("swiftc"))))
    api = os.path.join(usr, "lib", "swift", "pm", "ManifestAPI")
    return ["swiftc", "-typecheck", "-swift-version", m.group(1).split(".")[0], "-I", api,
            "-package-description-version", m.group(1), path]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-dir", default=os.path.join(ROOT, ".build", "debug"))
    parser.add_argument("--coverage", action="store_true",
                        help="also fail when a public declaration has no compiling example")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    library = sorted(glob.glob(os.path.join(ROOT, "Sources", "GreenThreads", "**", "*.swift"), recursive=True))
    if args.coverage and args.files:
        sys.exit("--coverage checks the whole library: give no files")
    files = args.files or (
        [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) + library)
    flags = compiler_flags(args.build_dir)
    prelude = os.path.join(ROOT, "Tools", "snippets", "Prelude.swift")
    skipped = 0
    failures = []
    compiled = {}   # (path, line) -> code, for each block that compiled
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            snippets = docc_snippets(path) if path.endswith(".swift") else markdown_snippets(path)
            for line, info, code in snippets:
                where = f"{os.path.relpath(path, ROOT)}:{line}"
                if "fragment" in info.split():
                    skipped += 1
                    continue
                manifest = manifest_command(code, os.path.join(tmp, "Package.swift"))
                source = code if manifest or re.search(r"^import GreenThreads", code, re.M) \
                    else "import GreenThreads\n" + code
                main = os.path.join(tmp, "Package.swift" if manifest else "main.swift")
                with open(main, "w", encoding="utf-8") as f:
                    f.write(source + "\n")
                # An @main type cannot sit in a file of top-level code.
                mode = ["-parse-as-library"] if re.search(r"^@main", code, re.M) else []
                command = manifest or ["swiftc", "-emit-sil", "-wmo", "-o", os.devnull, *mode, *flags, main, prelude]
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode != 0:
                    errors = [l for l in result.stderr.split("\n") if "error:" in l]
                    failures.append((where, errors[:3] or result.stderr.split("\n")[:3]))
                    print(f"FAIL {where}")
                    for e in failures[-1][1]:
                        print(f"    {e.replace(main, 'snippet')}")
                else:
                    compiled[(path, line)] = code
                    print(f"ok   {where}")
    print(f"{len(compiled) + len(failures)} compiled, {len(failures)} failed, {skipped} fragments skipped")
    missing, unparsed = [], []
    if args.coverage:
        decls = [d for path in library for d in swift_declarations(path)]
        covered, missing = coverage(decls, compiled)
        for d, _ in missing:
            print(f"NO EXAMPLE {os.path.relpath(d.path, ROOT)}:{d.line} {d.title()}")
        # A line that starts a public declaration the parser did not see
        # would escape the check: say so rather than pass.
        seen = {(d.path, d.line) for d in decls}
        unparsed = [(path, number, text.strip()) for path in library
                    for number, text in enumerate(open(path, encoding="utf-8").read().split("\n"), 1)
                    if PUBLIC_LINE.match(text) and (path, number) not in seen]
        for path, number, text in unparsed:
            print(f"NOT PARSED {os.path.relpath(path, ROOT)}:{number} {text}")
        own = sum(1 for _, how in covered if how == "own example")
        print(f"coverage: {len(covered) + len(missing)} public declarations, {own} with their own example, "
              f"{len(covered) - own} through their type's, {len(missing)} without")
    sys.exit(1 if failures or missing or unparsed else 0)


if __name__ == "__main__":
    main()
