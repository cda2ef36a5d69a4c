#!/usr/bin/env bash
# `make run`: starts creditd on 127.0.0.1:PORT with its data dir under the repo; on the
# first start it creates a demo account and writes its read key to DATA/demo.key.
set -euo pipefail
build=${1:-build}
data=${2:-data}
port=${3:-8080}
if [ ! -x "$build/creditd" ]; then
  echo "run: $build/creditd is not built yet" >&2
  exit 1
fi
exec scripts/demo.sh "$build" "$data" "$port"
