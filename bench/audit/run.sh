#!/usr/bin/env bash
# bench/audit/run.sh: creditctl's offline work at scale (docs/benchmarks.md, "Audit,
# simulate, replay"). Targets: audit of a 1-million-event month <= 2 s; simulate >= 1M
# events/s (to tmpfs); replay >= 2M events/s (input in the page cache); peak memory on a
# 10-million-event file < 1 GiB.
#   bench/audit/run.sh [BUILD_DIR] [WORK_DIR]     (defaults: build, /dev/shm/creditd-bench)
# Run from the repository root (creditctl reads config/ from the working directory).
set -euo pipefail
BUILD=${1:-build}
WORK=${2:-/dev/shm/creditd-bench}
CTL="$BUILD/creditctl"
START=2026-03-01T00:00:00Z
mkdir -p "$WORK"
now() { date +%s.%N; }
rate() { python3 -c "import sys; e,t=float(sys.argv[1]),float(sys.argv[2]); print(f'{t:.2f} s, {e/t/1e6:.3f} M events/s')" "$1" "$2"; }
events() { wc -l < "$1" | tr -d ' '; }

echo "== simulate: 1000 accounts x 30 days (typical) -> $WORK/month-1m.ndjson"
t0=$(now)
"$CTL" simulate --profile typical --accounts 1000 --days 30 --start $START --out "$WORK/month-1m.ndjson" 2>/dev/null
t1=$(now)
N1=$(events "$WORK/month-1m.ndjson")
echo "simulate: $N1 events, $(rate "$N1" "$(echo "$t1 - $t0" | bc)")"

cat "$WORK/month-1m.ndjson" > /dev/null  # in the page cache (tmpfs already is)
echo "== audit of the 1M-event month (json)"
t0=$(now)
"$CTL" audit "$WORK/month-1m.ndjson" --format json --out "$WORK/audit-1m.json"
t1=$(now)
echo "audit: $(rate "$N1" "$(echo "$t1 - $t0" | bc)")"

echo "== replay --policy cache of the 1M-event month"
t0=$(now)
"$CTL" replay "$WORK/month-1m.ndjson" --policy cache --json > /dev/null
t1=$(now)
echo "replay: $(rate "$N1" "$(echo "$t1 - $t0" | bc)")"

echo "== 10M events: 10000 accounts x 30 days; peak memory of audit and replay"
"$CTL" simulate --profile typical --accounts 10000 --days 30 --start $START --out "$WORK/month-10m.ndjson" 2>/dev/null
N10=$(events "$WORK/month-10m.ndjson")
echo "file: $N10 events, $(du -m "$WORK/month-10m.ndjson" | cut -f1) MiB"
for cmd in "audit $WORK/month-10m.ndjson --format json --out $WORK/audit-10m.json" \
           "replay $WORK/month-10m.ndjson --policy cache --json"; do
  /usr/bin/time -v "$CTL" $cmd > /dev/null 2> "$WORK/time.txt" || true
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/time.txt")
  echo "${cmd%% *}: peak RSS $((rss / 1024)) MiB, wall $wall"
done
echo "(files left in $WORK; remove with rm -r $WORK)"
