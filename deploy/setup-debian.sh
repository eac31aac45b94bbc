#!/usr/bin/env bash
# setup-debian.sh: installs what Ainbox needs to build, run and test on
# Debian 12, as root. Safe to run again; installs only what is missing.
set -euo pipefail

PACKAGES=(
    # build
    build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
    # libraries (see cmake/Dependencies.cmake)
    libzmq3-dev libczmq-dev libmsgpack-dev libcivetweb-dev libjansson-dev libpq-dev libhiredis-dev
    libssl-dev libcurl4-openssl-dev libgumbo-dev libgmime-3.0-dev
    # services the bundle and the tests start privately
    redis-server postgresql
    # the end-to-end tests
    python3 python3-zmq python3-msgpack curl procps
    # the benchmarks (tools/bench/edge-bench.sh)
    wrk
)
# The test command's browser (e2e.demo drives the built-in page in headless Chromium); the
# bundle does not need it, so run-bundle.sh does not install it.
if [[ ${1:-} == --tests ]]; then PACKAGES+=(chromium); fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup-debian: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup-debian: all packages present"
