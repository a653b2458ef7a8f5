#!/usr/bin/env bash
# Installs what the build needs beyond a Swift toolchain: libunwind's
# development files (the CUnwind system-library target), found through
# pkg-config. Called by the README's commands and by .ci/run; does nothing
# when everything is present.
set -euo pipefail

if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libunwind; then
    exit 0
fi

echo "setup: installing libunwind-dev and pkg-config" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends libunwind-dev pkg-config >/dev/null
pkg-config --exists libunwind || { echo "setup: libunwind still not found by pkg-config" >&2; exit 1; }
