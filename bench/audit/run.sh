#!/usr/bin/env bash
# bench/audit/run.sh: creditctl's offline work at scale (docs/benchmarks.md, "Audit,
# simulate, replay"). Targets: audit of a 1-million-event month <= 2 s; simulate >= 1M
# events/s (to tmpfs); replay >= 2M events/s (input in the page cache); peak memory on a
# 10-million-event file < 1 GiB.
#   bench/audit/run.sh [BUILD_DIR] [WORK_DIR] [--no-10m]   (defaults: build, /dev/shm/creditd-bench)
# Every command is timed by /usr/bin/time: wall time, CPU time (user + sys) and peak RSS;
# rates are given per wall second and per CPU second (the machine may be shared).
# creditctl finds config/ from any directory (beside its executable or its source tree).
set -euo pipefail
BUILD=${1:-build}
WORK=${2:-/dev/shm/creditd-bench}
TEN_M=1
[[ "${3:-}" == "--no-10m" ]] && TEN_M=0
CTL="$BUILD/creditctl"
START=2026-03-01T00:00:00Z
mkdir -p "$WORK"
events() { wc -l < "$1" | tr -d ' '; }

# run NAME EVENTS CMD...: runs CMD (stdout to /dev/null) under /usr/bin/time and prints
# wall, CPU, peak RSS and the rates.
run() {
  local name=$1 n=$2
  shift 2
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.txt" "$@" > /dev/null 2> "$WORK/stderr.txt" || true
  read -r wall user sys rss < "$WORK/time.txt"
  python3 - "$name" "$n" "$wall" "$user" "$sys" "$rss" <<'PY'
import sys
name, n, wall, user, sys_, rss = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
cpu = user + sys_
print(f"{name}: {n} events, wall {wall:.2f} s ({n / wall / 1e6:.3f} M/s), "
      f"cpu {cpu:.2f} s ({n / cpu / 1e6:.3f} M/cpu-s), peak RSS {rss / 1024:.0f} MiB")
PY
}

echo "== simulate: 1000 accounts x 30 days (typical) -> $WORK/month-1m.ndjson"
run simulate 1008947 "$CTL" simulate --profile typical --accounts 1000 --days 30 --start $START \
  --out "$WORK/month-1m.ndjson"
N1=$(events "$WORK/month-1m.ndjson")
[[ "$N1" == 1008947 ]] || echo "(the file has $N1 events: the rate above assumed 1008947)"

cat "$WORK/month-1m.ndjson" > /dev/null  # in the page cache (tmpfs already is)
echo "== audit of the 1M-event month (json)"
run audit "$N1" "$CTL" audit "$WORK/month-1m.ndjson" --format json --out "$WORK/audit-1m.json"
echo "== replay --policy cache of the 1M-event month"
run replay "$N1" "$CTL" replay "$WORK/month-1m.ndjson" --policy cache --json

[[ $TEN_M == 1 ]] || exit 0
echo "== 10M events: 10000 accounts x 30 days; peak memory of audit and replay"
run simulate-10m 10098822 "$CTL" simulate --profile typical --accounts 10000 --days 30 \
  --start $START --out "$WORK/month-10m.ndjson"
N10=$(events "$WORK/month-10m.ndjson")
echo "file: $N10 events, $(du -m "$WORK/month-10m.ndjson" | cut -f1) MiB"
run audit-10m "$N10" "$CTL" audit "$WORK/month-10m.ndjson" --format json --out "$WORK/audit-10m.json"
run replay-10m "$N10" "$CTL" replay "$WORK/month-10m.ndjson" --policy cache --json
echo "(files left in $WORK; remove with rm -r $WORK)"
