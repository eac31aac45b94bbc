#!/usr/bin/env bash
# run.sh: sets up and runs the whole test suite, as CI does (.ci/run).
#
#   1. packages (deploy/setup-debian.sh) and the formatting check
#   2. release build with warnings as errors; every test
#   3. ASan+UBSan build; every test again (the harness fails a test whose
#      process logs hold a sanitizer report)
#   4. TSan build; the tests that run the bundle's threads
#   5. the libFuzzer targets, briefly: the envelope decoder, the JWT
#      verifier and the other sign-in input readers, the mail HTML sanitiser
#
# Each stage prints its timing; the first failure stops the run.
# TESTS_QUICK=1 skips stages 3-5 (a fast local check).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
JWT_FUZZ_SECONDS=${JWT_FUZZ_SECONDS:-20}
HTML_FUZZ_SECONDS=${HTML_FUZZ_SECONDS:-20}

stage() { echo; echo "=== $* ($(date +%T))"; }

stage "setup"
./deploy/setup-debian.sh --tests

stage "format"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find proto runtime broker edge actors deploy tools tests -name '*.[ch]')
clang-format --dry-run -Werror $files

build() { # dir, cmake options...: fails on a failed build and on any warning
    local dir=$1 log rc=0; shift
    cmake -S . -B "$dir" -DAIN_WERROR=ON "$@" >/dev/null
    log=$(mktemp)
    cmake --build "$dir" -j"$JOBS" >"$log" 2>&1 || rc=$?
    if ((rc != 0)) || grep -E "warning|error" "$log"; then
        tail -n 40 "$log"
        rm -f "$log"
        echo "build of $dir failed (exit $rc)"
        return 1
    fi
    rm -f "$log"
}

stage "release build and all tests"
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
(cd build && ctest --output-on-failure -j"$JOBS")

if [[ ${TESTS_QUICK:-0} == 1 ]]; then
    echo "TESTS_QUICK=1: sanitizer and fuzz stages skipped"
    exit 0
fi

stage "ASan+UBSan build and all tests"
build build-asan -DCMAKE_BUILD_TYPE=Debug -DAIN_ASAN=ON
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$JOBS")

stage "TSan build and the bundle's threads"
build build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAIN_TSAN=ON
(cd build-tsan && TSAN_OPTIONS="suppressions=$PWD/../tests/tsan.supp halt_on_error=1 second_deadlock_stack=1" \
    ctest --output-on-failure -j"$JOBS" -L tsan)

stage "fuzz the envelope decoder for ${FUZZ_SECONDS}s"
CC=clang build build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAIN_FUZZ=ON -DAIN_ASAN=ON
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
build-fuzz/proto/ain_fuzz_envelope -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=1024 \
    -malloc_limit_mb=256 -print_final_stats=1 "$work" tests/fuzz/envelope 2>&1 | tail -n 5

stage "fuzz the JWT verifier for ${JWT_FUZZ_SECONDS}s"
mkdir "$work/jwt"
build-fuzz/runtime/ain_fuzz_jwt -max_total_time="$JWT_FUZZ_SECONDS" -rss_limit_mb=1024 \
    -malloc_limit_mb=256 -print_final_stats=1 -dict=runtime/fuzz/jwt.dict \
    "$work/jwt" tests/fuzz/jwt 2>&1 | tail -n 5

stage "fuzz the mail HTML sanitiser for ${HTML_FUZZ_SECONDS}s"
mkdir "$work/html"
build-fuzz/mail/ain_fuzz_html -max_total_time="$HTML_FUZZ_SECONDS" -rss_limit_mb=1024 \
    -malloc_limit_mb=256 -timeout=25 -print_final_stats=1 -dict=mail/fuzz/html.dict \
    "$work/html" tests/fuzz/html 2>&1 | tail -n 5

stage "all stages passed"
