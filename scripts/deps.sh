#!/usr/bin/env bash
# deps.sh - install the Debian 12 packages needed to build, run and test.
#
# Idempotent: when every package is already installed it changes nothing and
# does not touch apt.  Needs root or sudo only when something is missing.
# Packages named as arguments are installed too (scripts/fuzz.sh: clang).
# Installing rabbitmq-server or prometheus does not start their system
# services (we always run a private node, scripts/broker.sh; prometheus is
# here only for promtool).
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config
    libmicrohttpd-dev librabbitmq-dev libjansson-dev uuid-dev libgmp-dev
    libcmocka-dev
    rabbitmq-server python3-pika curl openssl
    # contract tests (tests/contract/): promtool, and the spec read and its
    # schemas applied in Python; the browser test (tests/browser/): headless
    # Chromium driven through chromedriver
    prometheus python3-yaml python3-jsonschema chromium chromium-driver
)
# The contract tests also need Node.js >= 20.19 with npm (prism, redocly:
# tests/contract/package.json; the tests `npm ci` them).  A machine whose
# Node.js came from elsewhere (NodeSource's nodejs, which bundles npm, as on
# our CI image) keeps it; only a machine without node or npm gets Debian's
# (18.x: too old for redocly, so there the contract tests report a skip).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi
PACKAGES+=("$@")

log() { echo "deps.sh: $*" >&2; }

installed() {
    dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    log "all ${#PACKAGES[@]} packages present"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || {
    log "missing: ${missing[*]}; no apt-get here: install them by hand"
    exit 1
}

as_root=()
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        log "missing: ${missing[*]}; run as root or install sudo"
        exit 1
    }
    as_root=(sudo)
fi

# Keep package scripts from starting the system RabbitMQ (and its epmd) or
# Prometheus while installing: the standard policy-rc.d veto, removed
# afterwards.
policy=/usr/sbin/policy-rc.d
added_policy=0
cleanup() {
    if [ "$added_policy" = 1 ]; then
        "${as_root[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT
if [[ " ${missing[*]} " == *" rabbitmq-server "* || " ${missing[*]} " == *" prometheus "* ]] &&
    [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# added by fibrpc scripts/deps.sh while installing\nexit 101\n' |
        "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    added_policy=1
fi

log "installing: ${missing[*]}"
apt_env=(env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a)
"${as_root[@]}" "${apt_env[@]}" apt-get update -q
"${as_root[@]}" "${apt_env[@]}" apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"

for p in "${missing[@]}"; do
    installed "$p" || { log "$p still not installed"; exit 1; }
done
log "done"
