#!/usr/bin/env bash
# Installs what the build needs beyond a Swift toolchain: libunwind's
# development files (the CUnwind system-library target), found through
# pkg-config, with apt-get (Debian, Ubuntu) or dnf/yum (Fedora, RHEL).
# Called by the README's commands and by .ci/run; does nothing when
# everything is present.
set -euo pipefail

if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libunwind; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing libunwind-dev and pkg-config (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends libunwind-dev pkg-config >/dev/null
elif command -v dnf >/dev/null 2>&1 || command -v yum >/dev/null 2>&1; then
    # Fedora, RHEL and Amazon Linux: the names Package.swift gives as `.yum`.
    installer=$(command -v dnf || command -v yum)
    echo "setup: installing libunwind-devel and pkgconf ($(basename "$installer"))" >&2
    $SUDO "$installer" install -y -q libunwind-devel pkgconf-pkg-config >/dev/null
else
    echo "setup: install libunwind's development files and pkg-config with your package manager" >&2
    exit 1
fi
pkg-config --exists libunwind || { echo "setup: libunwind still not found by pkg-config" >&2; exit 1; }
