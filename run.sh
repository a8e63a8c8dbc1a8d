#!/usr/bin/env bash
# One entry point for everything:
#   ./run.sh                  serve (demo mode against the emulator when NOTION_TOKEN is unset)
#   ./run.sh test [args]      set up, then run the test suite (pytest args pass through)
#   ./run.sh setup            only create .venv/ and install the pinned requirements
#   ./run.sh emulator [args]  run the Notion API emulator
#   ./run.sh bench [name]     run the benchmarks in bench/
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

# glibc allocator settings (malloc.env says why); a value already in the environment wins.
while IFS='=' read -r key value; do
  case "$key" in ''|\#*) continue ;; esac
  [ -z "${!key:-}" ] && export "$key=$value"
done < "$ROOT/malloc.env"
export PYTHONUNBUFFERED=1

python_for_venv() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then echo "$candidate"; return; fi
  done
  echo "run.sh: no python3 found on PATH" >&2; exit 1
}

# Installs only when a requirements file changed since the last install (a stamp holds the hash).
setup() {
  local reqs=("$@")
  if [ ! -x "$PY" ]; then
    echo "run.sh: creating .venv/" >&2
    "$(python_for_venv)" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(echo "${reqs[*]}" | tr ' /' '__')"
  local want
  want=$(cat "${reqs[@]}" requirements.txt | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "run.sh: installing ${reqs[*]}" >&2
    "$PY" -m pip install --quiet --disable-pip-version-check $(printf -- '-r %s ' "${reqs[@]}")
    echo "$want" > "$stamp"
  fi
}

# The browser tests drive Debian's chromium; install it when it is missing (root, apt).
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "run.sh: installing chromium for the browser tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2 \
      || echo "run.sh: could not install chromium; the browser tests will fail" >&2
  else
    echo "run.sh: chromium is missing and cannot be installed here (needs root and apt-get)" >&2
  fi
}

# Demo mode: start the emulator on a free port, wait for its line, and point the relay at it.
start_demo_emulator() {
  local data_dir=${DATA_DIR:-./data}
  mkdir -p "$data_dir/emulator"
  local log="$data_dir/emulator/emulator.log"
  : > "$log"
  "$PY" -m emulator --host 127.0.0.1 --port "${EMULATOR_PORT:-0}" \
      --data-dir "$data_dir/emulator" >"$log" 2>&1 &
  EMULATOR_PID=$!
  trap 'kill "$EMULATOR_PID" 2>/dev/null || true' EXIT
  local url=""
  for _ in $(seq 1 100); do
    url=$(sed -n 's/^emulator listening on \(http[^ ]*\).*/\1/p' "$log" | head -n1)
    [ -n "$url" ] && break
    kill -0 "$EMULATOR_PID" 2>/dev/null || { cat "$log" >&2; echo "run.sh: emulator failed to start" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { echo "run.sh: emulator did not start in 10 s" >&2; exit 1; }
  export NOTION_API_BASE="$url"
  export NOTION_TOKEN="emulator-token"
  export NOTION_PARENT_PAGE_ID=${NOTION_PARENT_PAGE_ID:-00000000-0000-4000-8000-000000000001}
  echo "demo mode: NOTION_TOKEN is unset, so uploads go to the Notion emulator at $url (data in $data_dir/emulator)" >&2
}

cmd=${1:-serve}
[ $# -gt 0 ] && shift
case "$cmd" in
  serve)
    setup requirements.txt
    if [ -z "${NOTION_TOKEN:-}" ]; then
      start_demo_emulator
      # The relay runs as a child so the emulator can be stopped after it; signals are passed on.
      "$PY" server.py "$@" &
      RELAY_PID=$!
      trap 'kill -TERM "$RELAY_PID" 2>/dev/null || true' TERM INT
      rc=0
      while kill -0 "$RELAY_PID" 2>/dev/null; do wait "$RELAY_PID" && rc=0 || rc=$?; done
      exit "$rc"
    else
      exec "$PY" server.py "$@"
    fi
    ;;
  setup)
    setup requirements-dev.txt
    ;;
  test)
    setup requirements-dev.txt
    ensure_chromium
    exec "$PY" -m pytest "$@"
    ;;
  emulator)
    setup requirements.txt
    exec "$PY" -m emulator "$@"
    ;;
  bench)
    setup requirements-dev.txt
    exec "$PY" -m bench "$@"
    ;;
  *)
    echo "usage: ./run.sh [serve|test|setup|emulator|bench] [args...]" >&2
    exit 2
    ;;
esac
