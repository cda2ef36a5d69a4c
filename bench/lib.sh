# bench/lib.sh: the shell helpers the bench scripts share (sourced, not run).
#   log MESSAGE...            a timestamped line on stderr
#   free_port                 a free TCP port on 127.0.0.1
#   wait_for SECONDS CMD...   until CMD succeeds (returns 1 after SECONDS)
#   build_dir [DIR]           DIR (default "build") as an absolute path, relative to $ROOT

build_dir() {
  local dir=${1:-build}
  case "$dir" in /*) ;; *) dir="$ROOT/$dir" ;; esac
  printf '%s\n' "$dir"
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { log "timed out waiting for: $*"; return 1; }
    sleep 0.05
  done
}
