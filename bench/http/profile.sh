#!/usr/bin/env bash
# bench/http/profile.sh BUILD_DIR: `perf record` of CPU 0 while wrk drives creditd as
# run.sh does (creditd pinned to CPU 0, wrk to CPU 1, 64 connections, fresh keys), for the
# cases in CASES ("a b": durable and --no-fsync single charges; "c": /v1/batch). The
# recordings stay in $OUT (default /var/tmp/creditd-profile) as a.perf, b.perf, c.perf;
# read them with `perf report -i $OUT/a.perf --comm creditd --no-children`. CALL_GRAPH
# (default "fp") is passed to `perf record --call-graph`: "dwarf" gives whole stacks
# through code built without frame pointers, at a larger recording.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:?usage: profile.sh BUILD_DIR}" && pwd)
OUT=${OUT:-/var/tmp/creditd-profile}
ACCOUNTS=1000
PORT=${PORT:-18931}
rm -rf "$OUT"
mkdir -p "$OUT"
start() {  # start DIR [FLAGS...]
  taskset -c 0 "$BUILD/creditd" --data "$1" --listen "127.0.0.1:$PORT" "${@:2}" >"$1.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do grep -q "ready on" "$1.log" 2>/dev/null && return; sleep 0.2; done
  echo "profile.sh: creditd did not start" >&2
  exit 1
}
stop() { kill -TERM "$PID"; wait "$PID" || true; }
cd "$HERE/../.."
start "$OUT/template"
KEY=$(python3 "$HERE/helper.py" setup "http://127.0.0.1:$PORT" "$(cat "$OUT/template/admin.key")" "$ACCOUNTS")
stop
for c in ${CASES:-a b}; do
  rm -rf "$OUT/data"
  cp -a "$OUT/template" "$OUT/data"
  flags=()
  script=charge.lua
  conns=64
  [ "$c" = b ] && flags=(--no-fsync)
  [ "$c" = c ] && { script=batch.lua; conns=8; }
  start "$OUT/data" "${flags[@]}"
  perf record -C 0 -a --call-graph "${CALL_GRAPH:-fp}" -o "$OUT/$c.perf" -- sleep 6 >/dev/null 2>&1 &
  rec=$!
  KEY=$KEY ACCOUNTS=$ACCOUNTS RUN="p$c" PREGEN=300000 OPS=1024 AMOUNT=1 taskset -c 1 \
    wrk -t1 -c"$conns" -d5s --timeout 30s --latency -s "$HERE/$script" "http://127.0.0.1:$PORT" \
    >"$OUT/$c.wrk" 2>&1
  wait "$rec"
  echo "($c) $(grep Requests/sec "$OUT/$c.wrk")"
  stop
done
