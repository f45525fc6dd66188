#!/usr/bin/env bash
# lint.sh - quick static checks of docker/ (seconds; no container engine):
#   docker-compose -f docker/compose*.yaml config -q  the compose files are valid
#   dockerfilelint                                    on every Dockerfile here
#   bash -n, and shellcheck                           on the scripts here
# Installs what is missing: docker-compose and shellcheck with apt-get,
# dockerfilelint with npm (the npm registry), as root.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

DOCKERFILELINT_VERSION=1.8.0
dockerfiles=(docker/gateway.Dockerfile docker/worker.Dockerfile tests/docker/rabbitmq-standin.Dockerfile)
scripts=(docker/gateway-healthcheck.sh docker/worker-healthcheck.sh tests/docker/test_compose.sh tests/docker/lint.sh)

say() { printf '[docker-lint] %s\n' "$*" >&2; }
passed=0
failed=0
check() {
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        say "ok: $name"
    else
        failed=$((failed + 1))
        say "FAILED: $name"
    fi
}

apt_install() {
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
if ! command -v dockerfilelint >/dev/null 2>&1; then
    command -v npm >/dev/null 2>&1 || apt_install npm
    say "installing dockerfilelint@$DOCKERFILELINT_VERSION (npm)"
    npm install -g --no-audit --no-fund "dockerfilelint@$DOCKERFILELINT_VERSION" >/dev/null
fi

for f in docker/compose.yaml docker/compose.cluster.yaml; do
    check "docker-compose -f $f config -q" docker-compose -f "$f" config -q
done
for f in "${dockerfiles[@]}"; do
    check "dockerfilelint $f" dockerfilelint "$f"
done
for f in "${scripts[@]}"; do
    check "bash -n $f" bash -n "$f"
done
check "shellcheck" shellcheck "${scripts[@]}"

echo "docker-lint: $passed passed, $failed failed"
[ "$failed" = 0 ]
