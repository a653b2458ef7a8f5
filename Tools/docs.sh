#!/usr/bin/env bash
# Builds the DocC manual (Sources/GreenThreads/GreenThreads.docc plus the
# public API's doc comments) with swift-docc-plugin, which works offline:
# the plugin comes from the package's dependencies and `docc` from the
# toolchain. Fails on any DocC warning (an unresolved ``symbol`` link, a
# topic that names nothing), so the manual cannot rot silently.
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
