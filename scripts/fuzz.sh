#!/usr/bin/env bash
# fuzz.sh - run every libFuzzer target (tests/fuzz/) for a bounded time,
# seeded with its corpus in tests/fuzz/corpus/<target>/.  Installs clang and
# libFuzzer when missing (deps.sh), builds build-fuzz/ with clang and
# -DFUZZ=ON (libFuzzer, ASan, UBSan), then fuzzes one target after the
# other.  The repo's corpus is only read: new inputs go to a scratch
# directory, unless MERGE=1, which merges what they add into the corpus
# (for a developer to review and commit).
#
# Environment:
#   FUZZ_SECONDS=N  per target, default 20 (CI)
#   TARGETS="..."   default: every fuzz_*.c in tests/fuzz/
#   MERGE=1         merge new inputs into tests/fuzz/corpus/
#   BUILD_DIR       default build-fuzz
# Exits non-zero when a target crashed, hung, leaked or failed its own
# checks; the input that did is in $BUILD_DIR/fuzz-out/<target>/ (replay:
# $BUILD_DIR/bin/fuzz_<target> <file>).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

SECONDS_EACH=${FUZZ_SECONDS:-20}
BUILD_DIR=${BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-2}
if [ -z "${TARGETS:-}" ]; then
    TARGETS=$(cd tests/fuzz && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//' | xargs)
fi

# Debian 12: clang 14; libFuzzer's runtime is in libclang-rt-14-dev.
bash scripts/deps.sh clang libclang-rt-14-dev || exit 1
export CC=clang
cmake -S . -B "$BUILD_DIR" -DFUZZ=ON -DWERROR=ON >/dev/null || exit 1
# shellcheck disable=SC2086  # one target name per word
cmake --build "$BUILD_DIR" -j "$JOBS" --target $(printf 'fuzz_%s ' $TARGETS) || exit 1

failed=0
summary=()
for t in $TARGETS; do
    corpus=tests/fuzz/corpus/$t
    out=$BUILD_DIR/fuzz-out/$t
    scratch=$(mktemp -d)
    rm -rf "$out" && mkdir -p "$out" "$corpus"
    printf '\n==== fuzz_%s: %s s, corpus %s (%s inputs)\n' "$t" "$SECONDS_EACH" "$corpus" \
        "$(find "$corpus" -type f | wc -l)"
    # -timeout: one input may take this long (fuzz_http's own bound is 20 s);
    # the outer timeout catches a target that does not stop at all.
    rc=0
    ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=64} \
        timeout $((SECONDS_EACH + 120)) "$BUILD_DIR/bin/fuzz_$t" \
        -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$out/" \
        "$scratch" "$corpus" >"$out/log" 2>&1 || rc=$?
    tail -n 20 "$out/log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log")
    if [ "$rc" = 0 ]; then
        summary+=("PASS  fuzz_$t (${runs:-?} runs)")
        if [ "${MERGE:-0}" = 1 ] && [ -n "$(ls -A "$scratch")" ]; then
            "$BUILD_DIR/bin/fuzz_$t" -merge=1 "$corpus" "$scratch" >>"$out/log" 2>&1
        fi
    else
        summary+=("FAIL  fuzz_$t (exit $rc; log and input in $out/)")
        failed=1
    fi
    rm -rf "$scratch"
done

printf '\n==== fuzz.sh summary (%s s each)\n' "$SECONDS_EACH"
printf '%s\n' "${summary[@]}"
exit "$failed"
