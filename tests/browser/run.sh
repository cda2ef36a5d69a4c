#!/usr/bin/env bash
# Runs the dashboard's browser test: ./run.sh PATH/TO/creditd PATH/TO/creditctl
# (creditctl simulates the month the test applies to its account; default: next to creditd).
# Builds web/dist/ when it is missing or older than web/src/, installs playwright-core here
# (npm ci, no browser download: the test drives Debian's chromium) when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
creditd=${1:?usage: run.sh PATH/TO/creditd PATH/TO/creditctl}
creditctl=${2:-$(dirname "$creditd")/creditctl}
creditd=$(realpath -m "$creditd")
creditctl=$(realpath -m "$creditctl")
chromium=${CHROMIUM:-/usr/bin/chromium}

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "browser test: $tool is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
[ -x "$chromium" ] || { echo "browser test: $chromium is missing (scripts/install-deps.sh installs chromium)" >&2; exit 1; }

if [ ! -f "$repo/web/dist/index.html" ] || [ -n "$(find "$repo/web/src" "$repo/web/package.json" -newer "$repo/web/dist/index.html" -print -quit)" ]; then
  "$repo/scripts/web-build.sh"
fi

cd "$here"
if [ ! -f node_modules/playwright-core/package.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi
CHROMIUM="$chromium" CREDITD_WEB="$repo/web/dist" exec node dashboard.test.mjs "$creditd" "$creditctl"
