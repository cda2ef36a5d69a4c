#!/usr/bin/env bash
# Starts creditd for `make run`. On the first start (no DATA) it creates the demo account
# with a simulated month that ends now, applied through the ledger:
#   a manual clock at the month's start, the account created, the clock set to now, the
#   month imported with mode=apply; then a restart on the system clock.
# The setup runs in DATA.setup, renamed to DATA once it is complete: an interrupted setup
# leaves no DATA, and the next start begins it again. A DATA without demo.key (deleted)
# gets a new read key for the demo account.
set -euo pipefail
build=$1
data=$2
# "data/" and "data" are one directory (the setup renames DATA.setup to it).
while [[ "$data" == */ && "$data" != / ]]; do data=${data%/}; done
port=$3
url="http://127.0.0.1:$port"
# The data and the setup's files are the owner's alone, as creditd keeps its own.
umask 077

# Waits for the creditd started as $pid to answer (not another server on the port).
wait_ready() {
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run: creditd stopped during the setup (its output: $data/setup.log)" >&2
      return 1
    fi
    curl -fsS "$url/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "run: creditd did not become ready on $url" >&2
  return 1
}

if curl -fsS "$url/healthz" >/dev/null 2>&1; then
  echo "run: something already answers on $url: stop it, or run on another port" >&2
  exit 1
fi

# A new read key of account demo into $data/demo.key; creditd runs at $url with admin key $1.
demo_key() {
  local answer
  answer=$(curl -fsS -H "Authorization: Bearer $1" -H "Content-Type: application/json" \
    -X POST "$url/v1/accounts/demo/keys" \
    -d "{\"idempotency_key\":\"demo-key-$(date +%s%N)\",\"role\":\"read\",\"label\":\"demo\"}") ||
    return 1
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' <<<"$answer" >"$data/demo.key"
}

if [ -d "$data" ] && [ ! -f "$data/admin.key" ]; then
  # Not creditd's (never started on it): an empty directory made beforehand is taken, any
  # other is left alone.
  if [ -n "$(ls -A "$data")" ]; then
    echo "run: $data exists and is not a creditd data directory: move it away or give make run another" >&2
    exit 1
  fi
  rmdir "$data"
fi

if [ -f "$data/admin.key" ] && [ ! -f "$data/demo.key" ]; then
  # Set up before, and demo.key deleted since: a new read key (the clock cannot go back to
  # set the account up again).
  "$build/creditd" --data "$data" --listen "127.0.0.1:$port" >>"$data/setup.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  wait_ready
  if demo_key "$(cat "$data/admin.key")"; then
    echo "run: $data/demo.key was missing: a new read key of account demo is in it"
  else
    rm -f "$data/demo.key"
    echo "run: $data has no demo account to make a key for (remove $data for a new demo)" >&2
  fi
  kill -TERM $pid
  wait $pid || true
  trap - EXIT
fi

if [ ! -d "$data" ]; then
  echo "run: first start: creating the demo account with a simulated month"
  final=$data
  data=$final.setup
  rm -rf "$data"
  mkdir -p "$data"
  "$build/creditd" --data "$data" --listen "127.0.0.1:$port" --clock manual >"$data/setup.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  wait_ready
  admin=$(cat "$data/admin.key")
  auth=(-H "Authorization: Bearer $admin" -H "Content-Type: application/json")
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  # The account opens an hour before the history's first day, 26 days ago: its first cycle
  # (28 to 31 days) ends one to five days from now, so the gauges show a nearly spent month.
  # No cycle boundary may fall before now: the server's sweep would apply it at the
  # clock's now, and the import of the older lines would then be 409 backfill_out_of_order
  # (with 29 days it did, in every month after a month of 30 days or fewer).
  first_day=$(date -u -d "$(date -u +%Y-%m-%d) 26 days ago" +%Y-%m-%dT00:00:00Z)
  opened=$(date -u -d "$first_day 1 hour ago" +%Y-%m-%dT%H:%M:%SZ)
  curl -fsS "${auth[@]}" -X POST "$url/v1/admin/clock" -d "{\"now\":\"$opened\"}" >/dev/null
  curl -fsS "${auth[@]}" -X POST "$url/v1/accounts" \
    -d '{"account_id":"demo","plan":"pro","idempotency_key":"demo-create"}' >/dev/null
  curl -fsS "${auth[@]}" -X POST "$url/v1/admin/clock" -d "{\"now\":\"$now\"}" >/dev/null
  month="$data/demo-month.ndjson"
  : >"$month"
  # A typical month, plus a regression loop and an invokeLLM call on every page load.
  for spec in typical:26:44 regression-heavy:6:45 llm-on-page-load:4:46; do
    IFS=: read -r profile days seed <<<"$spec"
    from=$(date -u -d "$(date -u +%Y-%m-%d) $days days ago" +%Y-%m-%dT00:00:00Z)
    "$build/creditctl" simulate --profile "$profile" --accounts 1 --days "$days" \
      --seed "$seed" --start "$from" 2>/dev/null |
      sed -e 's/"account_id":"acct-001"/"account_id":"demo"/' >>"$month"
  done
  code=$(curl -sS -o "$data/import.json" -w '%{http_code}' "${auth[@]}" \
    -X POST "$url/v1/admin/import?mode=apply" --data-binary "@$month")
  echo "run: applied a simulated month to account demo (HTTP $code): $(head -c 160 "$data/import.json")"
  demo_key "$admin"
  kill -TERM $pid
  wait $pid || true
  trap - EXIT
  mv "$data" "$final"
  data=$final
fi

if [ -f "$data/demo.key" ]; then
  cat <<MSG
creditd on $url
  dashboard:   $url/ui/?account=demo   (paste the key from $data/demo.key)
  admin key:   $data/admin.key
  demo key:    $data/demo.key (read key of account "demo")
  try:         curl -H "Authorization: Bearer \$(cat $data/demo.key)" $url/v1/accounts/demo
MSG
else
  cat <<MSG
creditd on $url (no demo account in $data: remove $data for a new demo)
  dashboard:   $url/ui/
  admin key:   $data/admin.key
MSG
fi
exec "$build/creditd" --data "$data" --listen "127.0.0.1:$port"
