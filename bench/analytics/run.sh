#!/usr/bin/env bash
# bench/analytics/run.sh [BUILD_DIR]: analytics read latency with 1 M events loaded, and
# durable single-charge throughput of a server with that history beside a fresh one.
#
#   1. `creditctl simulate --profile typical --accounts ACCOUNTS --days DAYS` (about 1,000
#      events per account over 30 days: 1 M events for 1,000 accounts).
#   2. creditd --clock manual on a data dir in LOAD_TMP (tmpfs: the import's one fdatasync
#      per distinct instant costs nothing there): clock at START, ACCOUNTS accounts created
#      on PLAN through POST /v1/accounts, clock at START + DAYS, then
#      POST /v1/admin/import?mode=IMPORT_MODE (apply: every line is a charge through the
#      ledger, so balances, the burn series and forecasts are live). Clean stop (snapshot).
#      The same without the import gives the "fresh" data dir. Both are copied to
#      BENCH_TMP (a real disk) for the charge rounds.
#   3. Latency: the loaded server on BENCH_TMP; REQUESTS GETs of every `usage` grouping,
#      `hot-files`, `burn` and `forecast` over one keep-alive connection from a Python
#      client (helper.py latency), each request on the next account, 20 warm-up requests
#      per route; p50/p99/max per route (client-side, so they include the client's own
#      overhead, about 0.1 ms).
#   4. Throughput: ROUNDS rounds of DURATION s of durable single charges
#      (POST /v1/accounts/{id}/charges, backend_function, amount 1, fresh idempotency key,
#      spread over the accounts) from wrk with CONNS keep-alive connections, on a copy of
#      the loaded dir and on a copy of the fresh dir, the order alternating per round.
#      Analytics cannot be switched off in creditd, so "loaded vs fresh" is the closest
#      proxy for "analytics on vs off": both run the analytics sink on every charge; the
#      loaded one has 1 M events in memory and full rollups.
# The server runs pinned to SERVER_CPU, the clients to CLIENT_CPU.
# Environment: ACCOUNTS (1000) DAYS (30) SEED (7) START (2026-03-01T00:00:00Z)
#   PLAN (enterprise) IMPORT_MODE (apply) REQUESTS (200) ROUNDS (4) DURATION (5) CONNS (64)
#   SERVER_CPU (0) CLIENT_CPU (1) LOAD_TMP (/dev/shm) BENCH_TMP (/var/tmp) KEEP (0)
#   SKIP_CHARGES (0)
# Needs: wrk, taskset, curl, python3 (standard library only).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
BUILD=$(build_dir "${1:-}")
CREDITD="$BUILD/creditd"
CREDITCTL="$BUILD/creditctl"
ACCOUNTS=${ACCOUNTS:-1000}
DAYS=${DAYS:-30}
SEED=${SEED:-7}
START=${START:-2026-03-01T00:00:00Z}
PLAN=${PLAN:-enterprise}
IMPORT_MODE=${IMPORT_MODE:-apply}
REQUESTS=${REQUESTS:-200}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PREGEN=${PREGEN:-300000}
HELPER="python3 $HERE/helper.py"
END=$(date -u -d "$START + $DAYS days" +%Y-%m-%dT%H:%M:%SZ)

for tool in "$CREDITD" "$CREDITCTL" wrk taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing" >&2; exit 2; }
done

LOAD=$(mktemp -d "${LOAD_TMP:-/dev/shm}/creditd-analytics.XXXXXX")
WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/creditd-analytics.XXXXXX")
RESULTS="$WORK/results.tsv"
LATENCY="$WORK/latency.tsv"
: >"$RESULTS"
SERVER_PID=""


cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$LOAD"
  if [ "${KEEP:-0}" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

start_creditd() {  # start_creditd DIR: --clock manual, pinned; sets SERVER_PID, URL
  local dir=$1
  local port
  port=$(free_port)
  URL="http://127.0.0.1:$port"
  taskset -c "$SERVER_CPU" "$CREDITD" --data "$dir" --listen "127.0.0.1:$port" --clock manual >>"$dir.log" 2>&1 &
  SERVER_PID=$!
  wait_for 300 curl -fsS "$URL/healthz" || { tail -20 "$dir.log" >&2; exit 1; }
  ADMIN=$(cat "$dir/admin.key")
}

stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=""
}

cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
cpu_per() { python3 -c "import os; print(round(($2 - $1) * 1e6 / os.sysconf('SC_CLK_TCK') / max($3, 1), 1))"; }
metric() { curl -s "$URL/metrics" | awk -v n="$1" '$1 == n {print $2}'; }
rss_mb() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$1/status"; }

log "load average $(cut -d' ' -f1-3 /proc/loadavg); load dir $LOAD, work dir $WORK ($(df -P "$WORK" | awk 'NR==2 {print $1}'))"

# ---- 1. the simulated month -----------------------------------------------------------
MONTH="$LOAD/month.ndjson"
t0=$(date +%s.%N)
"$CREDITCTL" simulate --profile typical --accounts "$ACCOUNTS" --days "$DAYS" --seed "$SEED" \
  --start "$START" --plans "$ROOT/config/plans.toml" --rate-card "$ROOT/config/rate_card.toml" \
  --out "$MONTH" 2>/dev/null
EVENTS=$(wc -l <"$MONTH")
log "simulated $EVENTS events ($((  $(stat -c %s "$MONTH") / 1048576 )) MiB) in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"

# ---- 2. loaded and fresh data dirs ----------------------------------------------------
for which in fresh loaded; do
  dir="$LOAD/$which"
  start_creditd "$dir"
  $HELPER clock "$URL" "$ADMIN" "$START"
  SERVICE_KEY=$($HELPER setup "$URL" "$ADMIN" "$ACCOUNTS" "$PLAN")
  echo "$SERVICE_KEY" >"$dir.service-key"
  $HELPER clock "$URL" "$ADMIN" "$END"
  if [ "$which" = loaded ]; then
    log "loaded: POST /v1/admin/import?mode=$IMPORT_MODE ($EVENTS lines)"
    read -r secs imported rejected < <($HELPER import "$URL" "$ADMIN" "$MONTH" "$IMPORT_MODE")
    IMPORT_LINE="mode=$IMPORT_MODE: $imported imported, $rejected rejected in $secs s on tmpfs"
    log "loaded: $IMPORT_LINE; RSS $(rss_mb "$SERVER_PID") MB"
    printf '#\timport\t%s\n' "$IMPORT_LINE" >>"$RESULTS"
  fi
  stop_server
  cp -a "$dir" "$WORK/$which"
  cp "$dir.service-key" "$WORK/$which.service-key"
  rm -rf "$dir"
done
rm -f "$MONTH"
log "data dirs: loaded $(du -sm "$WORK/loaded" | cut -f1) MB, fresh $(du -sm "$WORK/fresh" | cut -f1) MB (on $(df -P "$WORK" | awk 'NR==2 {print $1}'))"

# ---- 3. latency of the analytics reads ------------------------------------------------
cp -a "$WORK/loaded" "$WORK/run"
t0=$(date +%s.%N)
start_creditd "$WORK/run"
log "loaded server ready in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s, RSS $(rss_mb "$SERVER_PID") MB"
$HELPER clock "$URL" "$ADMIN" "$END"
curl -fsS -H "Authorization: Bearer $ADMIN" "$URL/v1/accounts/acct-001" >"$WORK/acct-001.json"
log "acct-001: $(head -c 300 "$WORK/acct-001.json")"
taskset -c "$CLIENT_CPU" $HELPER latency "$URL" "$ADMIN" "$ACCOUNTS" "$REQUESTS" "$LATENCY" >&2
stop_server
rm -rf "$WORK/run" "$WORK/run.log"

# ---- 4. durable single charges: loaded vs fresh ---------------------------------------
run_charges() {  # run_charges ROUND CASE
  local round=$1 case=$2 dir="$WORK/run"
  rm -rf "$dir" "$dir.log"
  cp -a "$WORK/$case" "$dir"
  start_creditd "$dir"
  $HELPER clock "$URL" "$ADMIN" "$END"
  local key used0 used1 out="$WORK/out-$round-$case.txt" cpu0 cpu1
  key=$(cat "$WORK/$case.service-key")
  used0=$($HELPER used "$URL" "$key")
  local ops0
  ops0=$(metric creditd_ops)
  cpu0=$(cpu_ticks "$SERVER_PID")
  KEY=$key ACCOUNTS=$ACCOUNTS ACCOUNT_FORMAT="acct-%03d" RUN="r$round$case" PREGEN=$PREGEN AMOUNT=1 \
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 30s --latency -s "$HERE/../http/charge.lua" \
    "$URL" >"$out" 2>&1
  cpu1=$(cpu_ticks "$SERVER_PID")
  local ops1
  ops1=$(metric creditd_ops)
  used1=$($HELPER used "$URL" "$key")
  stop_server
  local r sent applied errors rate p50 p99 _
  r=$($HELPER wrk "$out")
  sent=$(awk '/requests in/ {print $1}' "$out")
  applied=$(python3 -c "print(int(round($used1 - $used0)))")
  read -r rate p50 p99 errors <<<"$r"
  if [ "$applied" -lt "$sent" ]; then errors=$((errors + sent - applied)); fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$case" "$rate" "$p50" "$p99" "$errors" \
    "answered=$sent applied=$applied cpu_us_per_charge=$(cpu_per "$cpu0" "$cpu1" "$((ops1 - ops0))")" >>"$RESULTS"
  log "($case) round $round: $rate charges/s p50 $p50 ms p99 $p99 ms; answered $sent, applied $applied"
  rm -rf "$dir" "$dir.log"
}

if [ "${SKIP_CHARGES:-0}" != 1 ]; then
  for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="loaded fresh"; else order="fresh loaded"; fi
    for c in $order; do run_charges "$round" "$c"; done
  done
fi

log "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
grep '^#' "$RESULTS" | cut -f3- || true
$HELPER table <(grep -v '^#' "$RESULTS") "$LATENCY" "$ACCOUNTS accounts, $EVENTS events loaded"
