#!/usr/bin/env bash
# Builds the dashboard into web/dist/ (served by creditd at /ui/): installs web/'s npm
# dependencies (Chart.js) from the lock file when they are missing or older than the lock,
# then runs web/'s own build script (`npm run build`).
set -euo pipefail
cd "$(dirname "$0")/../web"
if ! command -v npm >/dev/null 2>&1; then
  echo "web-build: npm is missing (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
if [ -f package-lock.json ]; then
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
else
  npm install --no-audit --no-fund --loglevel=error
fi
npm run --silent build
