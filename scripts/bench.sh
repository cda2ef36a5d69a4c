#!/usr/bin/env bash
# `make bench`: runs every benchmark binary of the build dir (not part of `make test`).
set -euo pipefail
build=${1:-build}
for b in "$build"/bench/*_bench; do
  [ -x "$b" ] || continue
  echo "== $b"
  case "$(basename "$b")" in
    # Its modes take a data dir (docs/benchmarks.md, "Restart"); alone it times the
    # snapshot encode and decode of a state held in memory.
    restart_bench) "$b" encode 1000 1000 ;;
    *) "$b" ;;
  esac
done
