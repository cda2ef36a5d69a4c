#!/usr/bin/env bash
# `make bench`: runs every benchmark binary of the build dir (not part of `make test`).
set -euo pipefail
build=${1:-build}
for b in "$build"/bench/*_bench; do
  [ -x "$b" ] || continue
  echo "== $b"
  "$b"
done
