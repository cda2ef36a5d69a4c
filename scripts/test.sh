#!/usr/bin/env bash
# Runs every test of the build dir with CTest and prints its summary.
set -euo pipefail
build=${1:-build}
cd "$build"
ctest --output-on-failure -j "$(nproc)" --timeout 900
