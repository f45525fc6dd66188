#!/usr/bin/env bash
# test.sh - run every test: installs what is missing (deps.sh), then builds
# and runs ctest (unit + integration) twice: a normal build in build/ and an
# ASan+UBSan build in build-asan/.  Exits non-zero when anything failed.
#
# Environment:
#   WERROR=1   warnings are errors (-DWERROR=ON), as in CI
#   ASAN=0     skip the sanitizer build
#   JOBS=N     build and ctest parallelism, default 2
#   CTEST_ARGS extra ctest arguments, e.g. "-L unit" or "-R fib"
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

JOBS=${JOBS:-2}
cmake_args=()
[ "${WERROR:-0}" = 1 ] && cmake_args+=(-DWERROR=ON)
read -r -a ctest_args <<<"${CTEST_ARGS:-}"

summary=()
failed=0
T0=$SECONDS

banner() { printf '\n==== %s\n' "$*"; }

# step NAME COMMAND...: runs COMMAND, records PASS/FAIL with its duration.
step() {
    local name=$1 t0=$SECONDS rc=0
    shift
    banner "$name: $*"
    "$@" || rc=$?
    if [ "$rc" = 0 ]; then
        summary+=("PASS  $name ($((SECONDS - t0)) s)")
    else
        summary+=("FAIL  $name (exit $rc, $((SECONDS - t0)) s)")
        failed=1
    fi
    return "$rc"
}

# ctest, keeping its output in DIR/ctest.log for the summary.
run_ctest() {
    local dir=$1
    ctest --test-dir "$dir" --output-on-failure -j "$JOBS" "${ctest_args[@]}" 2>&1 |
        tee "$dir/ctest.log"
}

# suite LABEL DIR CMAKE_ARGS...: configure, build and test one build tree.
suite() {
    local label=$1 dir=$2 line
    shift 2
    step "$label: configure" cmake -S . -B "$dir" "${cmake_args[@]}" "$@" || return
    step "$label: build" cmake --build "$dir" -j "$JOBS" || return
    step "$label: ctest" run_ctest "$dir"
    line=$(grep -E 'tests passed' "$dir/ctest.log" | tail -n 1)
    [ -n "$line" ] && summary+=("      $label: $line")
    while IFS= read -r line; do
        summary+=("      $label FAILED: ${line#"${line%%[![:space:]]*}"}")
    done < <(sed -n '/The following tests FAILED:/,$p' "$dir/ctest.log" | grep -E '^\s+[0-9]+ - ')
}

if step "dependencies" bash scripts/deps.sh; then
    suite "default" build
    if [ "${ASAN:-1}" != 0 ]; then
        suite "asan+ubsan" build-asan -DSANITIZE=ON
    else
        summary+=("SKIP  asan+ubsan (ASAN=0)")
    fi
fi

banner "summary ($((SECONDS - T0)) s${WERROR:+, WERROR=$WERROR})"
printf '%s\n' "${summary[@]}"
if [ "$failed" = 0 ]; then
    echo "ALL PASSED"
else
    echo "FAILED"
fi
exit "$failed"
