#!/usr/bin/env bash
# bench/http/run.sh [BUILD_DIR]: creditd over HTTP beside Redis and PostgreSQL, in one run.
#   (a)   creditd single charges, durable           wrk, CONNS keep-alive connections
#   (b)   the same with --no-fsync (the server's ceiling without the disk)
#   (c)   creditd /v1/batch, OPS charges per request, durable
#   (d1)  Redis 7 EVALSHA charge, appendonly yes + appendfsync always, redis-benchmark
#   (d16) the same pipelined by 16
#   (e)   PostgreSQL 15 charge transaction, synchronous_commit = on, pgbench
# Every charge has a fresh idempotency key. Servers run pinned to SERVER_CPU, load
# generators to CLIENT_CPU; ROUNDS rounds, the order of the cases reversed every other
# round; medians are reported. Each creditd measurement starts from a copy of the same
# data dir (accounts + a service key), each Redis one from an empty dir; PostgreSQL runs
# the whole time (CHECKPOINT before each measurement).
# Needs: scripts/install-deps.sh --bench (wrk, redis-server, redis-tools, postgresql-15).
# Environment: ROUNDS (5) DURATION (5, seconds per measurement) CONNS (64) ACCOUNTS (1000)
#   OPS (1024) BATCH_CONNS (8: 8 × 1024 charges in flight) SERVER_CPU (0) CLIENT_CPU (1)
#   BENCH_TMP (/var/tmp) KEEP (0: delete the work dir) CASES ("a b c d1 d16 e")
#   CREDITD_FLAGS (extra creditd flags, e.g. --idempotency-keys-max N)
# Besides rate and latency, each creditd and Redis measurement records the server's CPU
# time per charge (utime + stime from /proc), which does not depend on how much of its CPU
# the server got: the machine may be shared.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
BUILD=$(build_dir "${1:-}")
CREDITD="$BUILD/creditd"
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
ACCOUNTS=${ACCOUNTS:-1000}
OPS=${OPS:-1024}
BATCH_CONNS=${BATCH_CONNS:-8}
read -r -a EXTRA_FLAGS <<<"${CREDITD_FLAGS:-}"
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
CASES=${CASES:-"a b c d1 d16 e"}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
HELPER="python3 $HERE/helper.py"
AMOUNT=1           # credits per charge (1000 millicredits in Redis and PostgreSQL)
PREGEN=${PREGEN:-300000}

for tool in "$CREDITD" wrk redis-server redis-cli redis-benchmark "$PG_BIN/initdb" "$PG_BIN/pgbench" psql taskset python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (make bench-http installs it)" >&2; exit 2; }
done

WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/creditd-bench.XXXXXX")
chmod 755 "$WORK"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
SERVER_PID=""
PG_STARTED=0
PGRUN=()
if [ "$(id -u)" -eq 0 ]; then PGRUN=(runuser -u postgres --); fi


cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ "$PG_STARTED" = 1 ]; then "${PGRUN[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null 2>&1 || true; fi
  if [ "${KEEP:-0}" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---- creditd ------------------------------------------------------------------------
start_creditd() {  # start_creditd DIR [FLAGS...]; sets SERVER_PID and CREDITD_PORT
  local dir=$1; shift
  CREDITD_PORT=$(free_port)
  taskset -c "$SERVER_CPU" "$CREDITD" --data "$dir" --listen "127.0.0.1:$CREDITD_PORT" "$@" >"$dir.log" 2>&1 &
  SERVER_PID=$!
  wait_for 60 grep -q "ready on" "$dir.log" || { cat "$dir.log" >&2; exit 1; }
}

stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=""
}

cpu_ticks() {  # cpu_ticks PID: utime + stime + cutime + cstime, in clock ticks
  awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"
}

cpu_per() {  # cpu_per TICKS0 TICKS1 CHARGES: CPU microseconds per charge
  python3 -c "import os; print(round(($2 - $1) * 1e6 / os.sysconf('SC_CLK_TCK') / max($3, 1), 1))"
}

metric() {  # metric NAME: a value of creditd's /metrics
  curl -s "http://127.0.0.1:$CREDITD_PORT/metrics" | awk -v n="$1" '$1 == n {print $2}'
}

prepare_creditd() {
  log "creditd: preparing a data dir with $ACCOUNTS enterprise accounts and a service key"
  start_creditd "$WORK/template"
  SERVICE_KEY=$($HELPER setup "http://127.0.0.1:$CREDITD_PORT" "$(cat "$WORK/template/admin.key")" "$ACCOUNTS")
  stop_server
}

run_creditd() {  # run_creditd ROUND CASE
  local round=$1 case=$2 script=charge.lua flags=("${EXTRA_FLAGS[@]}") dir="$WORK/c-$1-$2" conns=$CONNS
  [ "$case" = b ] && flags+=(--no-fsync)
  [ "$case" = c ] && { script=batch.lua; conns=$BATCH_CONNS; }
  rm -rf "$WORK"/c-*
  cp -a "$WORK/template" "$dir"
  start_creditd "$dir" "${flags[@]}"
  local out="$WORK/out-$round-$case.txt" cpu0 cpu1
  cpu0=$(cpu_ticks "$SERVER_PID")
  KEY=$SERVICE_KEY ACCOUNTS=$ACCOUNTS RUN="r$round$case" PREGEN=$PREGEN OPS=$OPS AMOUNT=$AMOUNT \
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 30s --latency -s "$HERE/$script" \
    "http://127.0.0.1:$CREDITD_PORT" >"$out" 2>&1
  cpu1=$(cpu_ticks "$SERVER_PID")
  local used batches ops sent fsyncs fsync_us
  used=$($HELPER used "http://127.0.0.1:$CREDITD_PORT" "$SERVICE_KEY")
  batches=$(metric creditd_batches_total)
  ops=$(metric creditd_ops_total)
  fsyncs=$(metric creditd_fsyncs_total)
  fsync_us=$(metric creditd_fsync_seconds_total_micro)
  stop_server
  rm -rf "$dir"
  sent=$(awk '/requests in/ {print $1}' "$out")
  [ "$case" = c ] && sent=$((sent * OPS))
  local r
  r=$($HELPER wrk "$out")
  # Charges applied (credits used / amount) against what wrk counted as answered: fewer
  # applied than answered means some charges were refused (reported as errors).
  local applied errors
  applied=$(python3 -c "print(int(round($used / $AMOUNT)))")
  errors=$(echo "$r" | awk '{print $4}')
  if [ "$applied" -lt "$sent" ]; then errors=$((errors + sent - applied)); fi
  local rate p50 p99 _
  read -r rate p50 p99 _ <<<"$r"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$case" "$rate" "$p50" "$p99" "$errors" \
    "answered=$sent applied=$applied engine_batches=$batches engine_ops=$ops cpu_us_per_charge=$(cpu_per "$cpu0" "$cpu1" "$ops") fsyncs=${fsyncs:-0} fsync_us_total=${fsync_us:-0}" >>"$RESULTS"
  log "($case) round $round: $(echo "$r" | awk '{print $1}') req/s p50 $(echo "$r" | awk '{print $2}') ms p99 $(echo "$r" | awk '{print $3}') ms; answered $sent, applied $applied; engine ops/batch $(python3 -c "print(round($ops / max($batches, 1), 1))"); ops/fsync $(python3 -c "print(round($ops / max(${fsyncs:-0}, 1), 1))"), fsync mean $(python3 -c "print(round(${fsync_us:-0} / max(${fsyncs:-0}, 1)))") us"
}

# ---- Redis --------------------------------------------------------------------------
start_redis() {
  local dir="$WORK/redis"
  rm -rf "$dir"; mkdir -p "$dir"
  REDIS_PORT=$(free_port)
  taskset -c "$SERVER_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" \
    --appendonly yes --appendfsync always --save "" --auto-aof-rewrite-percentage 0 \
    --daemonize no --logfile "$dir/redis.log" &
  SERVER_PID=$!
  wait_for 30 redis-cli -p "$REDIS_PORT" ping
  # shellcheck disable=SC2046
  redis-cli -p "$REDIS_PORT" MSET $(for i in $(seq 1 "$ACCOUNTS"); do echo "bal:$i 100000000000"; done) >/dev/null
  REDIS_SHA=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD "$(cat "$HERE/charge.redis.lua")")
}

redis_bench() {  # redis_bench PIPELINE N OUT
  taskset -c "$CLIENT_CPU" redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$CONNS" -n "$2" -P "$1" \
    -r 2147483647 --csv EVALSHA "$REDIS_SHA" 1 idem:__rand_int__ $((AMOUNT * 1000)) "$ACCOUNTS" >"$3" 2>&1
}

calibrate_redis() {  # redis-benchmark runs a count, not a time: size it to DURATION
  start_redis
  local rps
  redis_bench 1 20000 "$WORK/cal1.txt"
  rps=$($HELPER redis "$WORK/cal1.txt" | awk '{print $1}')
  REDIS_N1=$(python3 -c "print(max(10000, int($rps * $DURATION)))")
  redis_bench 16 200000 "$WORK/cal16.txt"
  rps=$($HELPER redis "$WORK/cal16.txt" | awk '{print $1}')
  REDIS_N16=$(python3 -c "print(max(50000, int($rps * $DURATION)))")
  stop_server
  log "redis: $REDIS_N1 commands unpipelined, $REDIS_N16 pipelined (about ${DURATION}s each)"
}

run_redis() {  # run_redis ROUND CASE
  local round=$1 case=$2 p=1 n=$REDIS_N1
  [ "$case" = d16 ] && { p=16; n=$REDIS_N16; }
  start_redis
  local out="$WORK/out-$round-$case.txt" cpu0 cpu1
  cpu0=$(cpu_ticks "$SERVER_PID")
  redis_bench "$p" "$n" "$out"
  cpu1=$(cpu_ticks "$SERVER_PID")
  local applied
  applied=$(redis-cli -p "$REDIS_PORT" XLEN events)
  stop_server
  local r
  r=$($HELPER redis "$out")
  local rate p50 p99 _
  read -r rate p50 p99 _ <<<"$r"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$case" "$rate" "$p50" "$p99" 0 \
    "sent=$n applied=$applied cpu_us_per_charge=$(cpu_per "$cpu0" "$cpu1" "$n")" >>"$RESULTS"
  log "($case) round $round: $(echo "$r" | awk '{print $1}') cmd/s p50 $(echo "$r" | awk '{print $2}') ms p99 $(echo "$r" | awk '{print $3}') ms; $applied of $n applied (the rest: random key repeats)"
}

# ---- PostgreSQL ---------------------------------------------------------------------
start_pg() {
  log "postgresql: initdb and start"
  mkdir -p "$WORK/pg/sock" "$WORK/pglog"
  [ "$(id -u)" -eq 0 ] && chown -R postgres "$WORK/pg"
  "${PGRUN[@]}" "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --no-instructions >"$WORK/pg/initdb.log" 2>&1
  PG_PORT=$(free_port)
  "${PGRUN[@]}" taskset -c "$SERVER_CPU" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w \
    -o "-p $PG_PORT -k $WORK/pg/sock -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on -c max_connections=200 -c shared_buffers=256MB" \
    start >/dev/null
  PG_STARTED=1
  psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -v accounts="$ACCOUNTS" -f "$HERE/schema.sql" postgres >/dev/null
}

pg_cpu_ticks() {  # the postmaster with its reaped children (backends) and its live ones
  local pm c total
  pm=$(head -1 "$WORK/pg/data/postmaster.pid")
  total=$(cpu_ticks "$pm")
  for c in $(pgrep -P "$pm"); do total=$((total + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0))); done
  echo "$total"
}

run_pg() {  # run_pg ROUND
  local round=$1 out="$WORK/out-$1-e.txt" cpu0 cpu1 n
  psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c CHECKPOINT postgres >/dev/null
  sleep 0.3
  cpu0=$(pg_cpu_ticks)
  rm -f "$WORK/pglog/"*
  taskset -c "$CLIENT_CPU" "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "$CONNS" -j 1 \
    -T "$DURATION" -M prepared -D accounts="$ACCOUNTS" -f "$HERE/charge.pgbench.sql" \
    -l --log-prefix="$WORK/pglog/e" postgres >"$out" 2>&1
  sleep 0.3  # the backends exit and are reaped
  cpu1=$(pg_cpu_ticks)
  n=$(awk '/number of transactions actually processed/ {split($NF, a, "/"); print a[1]}' "$out")
  local r
  r=$($HELPER pgbench "$out" "$WORK/pglog/"e*)
  local rate p50 p99 failed
  read -r rate p50 p99 failed <<<"$r"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" e "$rate" "$p50" "$p99" "$failed" \
    "transactions=$n cpu_us_per_charge=$(cpu_per "$cpu0" "$cpu1" "$n")" >>"$RESULTS"
  log "(e) round $round: $(echo "$r" | awk '{print $1}') tx/s p50 $(echo "$r" | awk '{print $2}') ms p99 $(echo "$r" | awk '{print $3}') ms"
}

# ---- the run ------------------------------------------------------------------------
printf '#\tops\t%s\n' "$OPS" >>"$RESULTS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "work dir $WORK ($(df -P "$WORK" | awk 'NR==2 {print $1}')); $ROUNDS rounds of ${DURATION}s; load average $LOAD_BEFORE"
prepare_creditd
case " $CASES " in *" d"*) calibrate_redis ;; esac
case " $CASES " in *" e "*) start_pg ;; esac

read -r -a order <<<"$CASES"
for round in $(seq 1 "$ROUNDS"); do
  cases=("${order[@]}")
  if [ $((round % 2)) -eq 0 ]; then
    cases=(); for ((i = ${#order[@]} - 1; i >= 0; i--)); do cases+=("${order[$i]}"); done
  fi
  for c in "${cases[@]}"; do
    case "$c" in
      a | b | c) run_creditd "$round" "$c" ;;
      d1 | d16) run_redis "$round" "$c" ;;
      e) run_pg "$round" ;;
    esac
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "creditd HTTP and peers: $ROUNDS rounds × ${DURATION}s, $CONNS connections/clients, $ACCOUNTS accounts,"
echo "servers on CPU $SERVER_CPU, load generators on CPU $CLIENT_CPU; $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo));"
echo "load average $LOAD_BEFORE before, $LOAD_AFTER after; data on $(df -P "$WORK" | awk 'NR==2 {print $1}')"
echo
$HELPER table "$RESULTS"
echo
echo "per measurement:"
grep -v '^#' "$RESULTS" | awk -F'\t' '{printf "  round %s (%s): %s/s p50 %s ms p99 %s ms errors %s %s\n", $1, $2, $3, $4, $5, $6, $7}'
if [ -n "${RESULTS_OUT:-}" ]; then cp "$RESULTS" "$RESULTS_OUT"; fi
