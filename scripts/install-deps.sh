#!/usr/bin/env bash
# Installs what creditd needs to build and test on a fresh Debian 12 machine.
# Idempotent: installs only packages that are missing. Run as root (or with sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config clang-format
  libboost-dev libsimdjson-dev libtomlplusplus-dev libcli11-dev
  libfmt-dev libspdlog-dev libssl-dev libxxhash-dev
  libgtest-dev libgmock-dev libbenchmark-dev librapidcheck-dev
  python3 curl openssl ca-certificates
  chromium
)
# The dashboard build (web/) and the browser tests (tests/browser/) need node and npm;
# take Debian's only when the machine has none (a newer node may already be installed).
# Debian 12's is node 18: tests/browser/ pins playwright-core 1.61.1, the last release
# that runs on it (1.62 and later require node 20).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi
if [ "${1:-}" = "--bench" ]; then
  packages+=(wrk redis-server redis-tools postgresql-15 postgresql-contrib)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
