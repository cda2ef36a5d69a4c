#!/usr/bin/env bash
# scripts/sanitize.sh asan|tsan: the test suites under a sanitizer. Not part of `make test`
# (an instrumented build takes 15-25 minutes on 2 cores); run it before a release and after
# changes to threads, memory layout or parsing. docs/fuzzing.md has the last results.
#   asan  AddressSanitizer + UndefinedBehaviorSanitizer (UB aborts) in build-asan: every
#         CTest test but the browser test and the import stream's RSS bound (ASan's
#         quarantine keeps freed memory, so the process grows with the body).
#   tsan  ThreadSanitizer in build-tsan: creditd and creditctl under the integration
#         tests, but those that need a snapshot worker (a child that starts threads after
#         fork, which TSan cannot follow) or the RSS bound. Fails when a race is reported.
# Needs what `make test` installs (scripts/install-deps.sh). Not under `nice`: three tests
# check that background work runs below the server's priority, which a niced run cannot
# show (at nice 19 there is no lower priority).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=${1:?usage: scripts/sanitize.sh asan|tsan}
cd "$ROOT"
case "$MODE" in
  asan)
    BUILD="$ROOT/build-asan"
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
    ninja -C "$BUILD"
    cd "$BUILD"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest -j2 -LE browser -E 'api_integration_import_stream' --timeout 900
    ;;
  tsan)
    BUILD="$ROOT/build-tsan"
    # GCC refuses atomic_thread_fence under TSan (-Wtsan); Asio uses it.
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCREDITD_TEST_DIRS="" \
      -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer -Wno-tsan" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" >/dev/null
    ninja -C "$BUILD" creditd creditctl
    REPORTS=$(mktemp -d "${TMPDIR:-/tmp}/creditd-tsan.XXXXXX")
    export TSAN_OPTIONS="log_path=$REPORTS/report second_deadlock_stack=1 die_after_fork=0"
    passed=0
    failed=0
    for t in tests/integration/*_test.py; do
      case "$t" in *restart_snapshot_test.py | *import_stream_test.py | *openapi_test.py) continue ;; esac
      if timeout 900 python3 "$t" --creditd "$BUILD/creditd" >"$REPORTS/$(basename "$t").log" 2>&1; then
        passed=$((passed + 1))
      else
        failed=$((failed + 1))
        echo "sanitize: $t failed (log: $REPORTS/$(basename "$t").log)"
      fi
    done
    races=$(cat "$REPORTS"/report.* 2>/dev/null | grep -c "WARNING: ThreadSanitizer" || true)
    echo "$passed passed, $failed failed; ThreadSanitizer reports: $races (in $REPORTS)"
    [ "$failed" -eq 0 ] && [ "$races" -eq 0 ]
    ;;
  *)
    echo "usage: scripts/sanitize.sh asan|tsan" >&2
    exit 2
    ;;
esac
