#!/usr/bin/env bash
# Builds the DocC manual (Sources/GreenThreads/GreenThreads.docc plus the
# public API's doc comments) with swift-docc-plugin, which works offline:
# the plugin comes from the package's dependencies and `docc` from the
# toolchain. Fails on any DocC warning (an unresolved ``symbol`` link, a
# topic that names nothing) and when an article's Swift example does not
# compile, so the manual cannot rot silently.
#
#   Tools/docs.sh            # archive in .build/plugins/Swift-DocC/outputs/
#   Tools/docs.sh --preview  # serve it at http://localhost:8080 instead
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--preview" ]; then
    exec swift package --disable-sandbox preview-documentation --target GreenThreads
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift package --disable-sandbox generate-documentation --target GreenThreads \
    --warnings-as-errors 2>&1 | tee "$log"
archive=.build/plugins/Swift-DocC/outputs/GreenThreads.doccarchive
[ -d "$archive" ] || { echo "docs: no archive at $archive" >&2; exit 1; }
echo "docs: $archive"

# The articles' Swift examples must compile: each ```swift block (but the
# Package.swift excerpts) becomes the body of a function, after stubs for
# the few placeholder functions the prose calls, and the lot is type-checked
# in Swift 6 mode against the library as built.
swift build --target GreenThreads >/dev/null
bin=$(swift build --show-bin-path)
check=$(mktemp -d)
trap 'rm -rf "$log" "$check"' EXIT
python3 - "$check/examples.swift" Sources/GreenThreads/GreenThreads.docc/*.md <<'PY'
import re, sys
out = ["import GreenThreads", "import GTSnapshot",
       # Placeholders the articles' prose calls: what they do is not the point.
       "func crunch() -> Int { 0 }", "func answer() {}", "func transmit() {}",
       "func collect() {}", "func serve() {}", "func log(_ message: String) {}"]
count = 0
for path in sys.argv[2:]:
    for block in re.findall(r"```swift\n(.*?)```", open(path).read(), re.S):
        if ".package(" in block:
            continue
        count += 1
        body = "\n".join(l for l in block.splitlines() if not l.startswith("import "))
        out.append(f"// {path}\nfunc example{count}() throws {{\n{body}\n}}")
open(sys.argv[1], "w").write("\n".join(out) + "\n")
print(f"docs: type-checking {count} article examples")
PY
if ! swiftc -typecheck -swift-version 6 -I "$bin/Modules" \
    -Xcc -fmodule-map-file="$bin/CGreenCore.build/module.modulemap" -Xcc -ISources/CGreenCore/include \
    "$check/examples.swift" > "$check/errors.txt" 2>&1; then
    grep -E "error" -A3 "$check/errors.txt" >&2 || cat "$check/errors.txt" >&2
    echo "docs: an article example does not compile" >&2
    exit 1
fi
echo "docs: article examples compile"
