#!/usr/bin/env bash
# bench/import/run.sh [BUILD_DIR] [PEER_CREDITD]: the streamed import, mode=analytics.
#   1. `creditctl simulate --profile typical --accounts ACCOUNTS --days DAYS` (about 1,000
#      events per account over 30 days: 1 M events, about 500 MiB, for 1,000 accounts).
#   2. creditd --clock manual on a fresh data dir in BENCH_TMP, pinned to SERVER_CPU;
#      ACCOUNTS accounts on PLAN through POST /v1/accounts (bench/analytics/helper.py).
#   3. POST /v1/admin/import?mode=analytics of the whole file from send.py (pinned to
#      CLIENT_CPU), chunked, PIECE_BYTES per chunk, timed from the request's first byte to
#      the answer: lines/s = imported lines / seconds; from /proc/PID/status, the server's
#      VmRSS before, VmRSS after (what it keeps: the rollups of the imported history, with
#      every imported idempotency key) and VmHWM (peak RSS); peak - after is about what the
#      import itself held.
#   With PEER_CREDITD (another creditd binary, e.g. one built before streaming) the same
#   import runs against it too, on its own fresh data dir, right after.
# Environment: ACCOUNTS (1000) DAYS (30) SEED (7) START (2026-03-01T00:00:00Z)
#   PLAN (enterprise) PIECE_BYTES (65536) SERVER_CPU (0) CLIENT_CPU (1)
#   BENCH_TMP (/var/tmp) KEEP (0)
# Needs: taskset, curl, python3 (standard library only).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
BUILD=$(build_dir "${1:-}")
PEER=${2:-}
CREDITD="$BUILD/creditd"
CREDITCTL="$BUILD/creditctl"
ACCOUNTS=${ACCOUNTS:-1000}
DAYS=${DAYS:-30}
SEED=${SEED:-7}
START=${START:-2026-03-01T00:00:00Z}
PLAN=${PLAN:-enterprise}
PIECE_BYTES=${PIECE_BYTES:-65536}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
HELPER="python3 $ROOT/bench/analytics/helper.py"
END=$(date -u -d "$START + $DAYS days" +%Y-%m-%dT%H:%M:%SZ)

for tool in "$CREDITD" "$CREDITCTL" ${PEER:+"$PEER"} taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing" >&2; exit 2; }
done

WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/creditd-import.XXXXXX")
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

vm_mib() { awk -v f="$2:" '$1 == f {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

log "load average $(cut -d' ' -f1-3 /proc/loadavg); work dir $WORK ($(df -P "$WORK" | awk 'NR==2 {print $1}'))"

MONTH="$WORK/month.ndjson"
t0=$(date +%s.%N)
"$CREDITCTL" simulate --profile typical --accounts "$ACCOUNTS" --days "$DAYS" --seed "$SEED" \
  --start "$START" --plans "$ROOT/config/plans.toml" --rate-card "$ROOT/config/rate_card.toml" \
  --out "$MONTH" 2>/dev/null
EVENTS=$(wc -l <"$MONTH")
MONTH_MIB=$(( $(stat -c %s "$MONTH") / 1048576 ))
log "simulated $EVENTS events ($MONTH_MIB MiB) in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"

run_import() {  # run_import NAME CREDITD_BINARY
  local name=$1 binary=$2 dir="$WORK/$1" port url admin
  port=$(free_port)
  url="http://127.0.0.1:$port"
  taskset -c "$SERVER_CPU" "$binary" --data "$dir" --listen "127.0.0.1:$port" --clock manual \
    >>"$dir.log" 2>&1 &
  SERVER_PID=$!
  wait_for 60 curl -fsS "$url/healthz" || { tail -20 "$dir.log" >&2; exit 1; }
  admin=$(cat "$dir/admin.key")
  $HELPER clock "$url" "$admin" "$START"
  $HELPER setup "$url" "$admin" "$ACCOUNTS" "$PLAN" >/dev/null
  $HELPER clock "$url" "$admin" "$END"
  local before secs imported rejected after hwm
  before=$(vm_mib "$SERVER_PID" VmRSS)
  read -r secs imported rejected < <(taskset -c "$CLIENT_CPU" python3 "$HERE/send.py" "$url" \
    "$admin" "$MONTH" analytics "$PIECE_BYTES")
  after=$(vm_mib "$SERVER_PID" VmRSS)
  hwm=$(vm_mib "$SERVER_PID" VmHWM)
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=""
  python3 - "$name" "$EVENTS" "$MONTH_MIB" "$secs" "$imported" "$rejected" "$before" "$after" \
    "$hwm" <<'PY'
import sys
name, events, mib, secs, imported, rejected, before, after, hwm = sys.argv[1:]
print(f"| {name} | {int(events):,} lines, {int(mib):,} MiB | {float(secs):.1f} | "
      f"{int(int(imported) / float(secs)):,} | {int(imported):,} / {int(rejected):,} | "
      f"{int(before):,} | {int(after):,} | {int(hwm):,} |")
PY
}

echo "| build | body | seconds | lines/s | imported / rejected | RSS before (MiB) | RSS after (MiB) | peak RSS, VmHWM (MiB) |"
echo "|---|---|---|---|---|---|---|---|"
run_import streamed "$CREDITD"
if [ -n "$PEER" ]; then run_import peer "$PEER"; fi
