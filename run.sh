#!/usr/bin/env bash
# One entry point for everything:
#   ./run.sh                  serve (demo mode against the emulator when NOTION_TOKEN is unset)
#   ./run.sh test [args]      set up, then run the test suite (pytest args pass through)
#   ./run.sh setup            only create .venv/, install the pinned requirements and the page's
#                             npm packages (npm ci into node_modules/)
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

# The upload page's npm packages (package.json, pinned by package-lock.json) go into
# node_modules/ with `npm ci`, only when what is installed differs from the lockfile (missing,
# or another version). `setup_npm serve` needs only the page's own packages, not the test
# tools, and without npm it only warns: a platform may have installed them when it built the
# app (README, "Deploying on a PaaS"); the page then says what is missing.
setup_npm() {
  local mode=${1:-all}
  if "$PY" - "$mode" <<'EOF'
import json, sys
lock = json.load(open("package-lock.json"))
for path, meta in lock.get("packages", {}).items():
    if not path or (sys.argv[1] == "serve" and meta.get("dev")):
        continue
    try:
        with open(f"{path}/package.json") as f:
            installed = json.load(f).get("version")
    except (OSError, ValueError):
        sys.exit(1)
    if installed != meta.get("version"):
        sys.exit(1)
EOF
  then return 0; fi
  if command -v npm >/dev/null 2>&1; then
    echo "run.sh: installing the upload page's npm packages (npm ci, from package-lock.json)" >&2
    npm ci --no-audit --no-fund --loglevel=error >&2 && return 0
    echo "run.sh: npm ci failed" >&2
  else
    echo "run.sh: npm is missing, so node_modules/ (tus-js-client for the upload page) cannot be installed; install Node.js 18+ with npm" >&2
  fi
  [ "$mode" = serve ] && return 0
  exit 1
}

# Debian packages the tests need: chromium (the browser tests) and faketime (a relay whose
# clock is off). Installed when missing (root, apt-get).
ensure_test_packages() {
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 ] \
    || missing+=(faketime)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "run.sh: installing ${missing[*]} for the tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >&2 \
      || echo "run.sh: could not install ${missing[*]}; the tests that need them will fail" >&2
  else
    echo "run.sh: ${missing[*]} missing and cannot be installed here (needs root and apt-get)" >&2
  fi
}

# Runs a command in a session of its own. Why: a Ctrl-C in a terminal sends SIGINT to the
# whole foreground process group; a child in it would get the signal as well as run.sh, then
# run.sh's TERM would be a second signal to it ("exiting now"). In their own session the
# children hear only from run.sh, which stops the relay first and the emulator after it.
# Call it with `&` only: the exec makes $! the command's own pid (not a subshell's).
detached() {
  exec "$PY" -c 'import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])' "$@"
}

# Demo mode: start the emulator, wait for its line, and point the relay at it. Its data (and,
# with --port-file, its port) under DATA_DIR/emulator outlive a restart: the relay's uploads
# in progress go on where they were.
start_demo_emulator() {
  local data_dir=${DATA_DIR:-./data}
  mkdir -p "$data_dir/emulator"
  local log="$data_dir/emulator/emulator.log"
  : > "$log"
  detached "$PY" -m emulator --host 127.0.0.1 --port "${EMULATOR_PORT:-0}" \
      --port-file "$data_dir/emulator/port" --data-dir "$data_dir/emulator" \
      </dev/null >"$log" 2>&1 &
  EMULATOR_PID=$!
  local url=""
  for _ in $(seq 1 100); do
    url=$(sed -n 's/^emulator listening on \(http[^ ]*\).*/\1/p' "$log" | head -n1)
    [ -n "$url" ] && break
    kill -0 "$EMULATOR_PID" 2>/dev/null || { cat "$log" >&2; echo "run.sh: emulator failed to start" >&2; EMULATOR_PID=; exit 1; }
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
    setup_npm serve
    if [ -z "${NOTION_TOKEN:-}" ]; then
      # The relay and the emulator run as children in sessions of their own (see detached):
      # the first INT/TERM/HUP asks the relay for a graceful shutdown (TERM), a second one
      # makes it exit at once; the emulator is stopped once the relay is gone.
      EMULATOR_PID=
      RELAY_PID=
      on_stop_signal() {
        if [ -n "$RELAY_PID" ]; then
          kill -TERM "$RELAY_PID" 2>/dev/null || true
        else
          exit 130  # still starting: the EXIT trap stops the emulator
        fi
      }
      stop_emulator() {
        [ -n "$EMULATOR_PID" ] || return 0
        kill -TERM "$EMULATOR_PID" 2>/dev/null || true
        wait "$EMULATOR_PID" 2>/dev/null || true
        EMULATOR_PID=
      }
      trap on_stop_signal INT TERM HUP
      trap stop_emulator EXIT
      start_demo_emulator
      detached "$PY" server.py "$@" </dev/null &
      RELAY_PID=$!
      # `wait` returns early when a trapped signal arrives: wait again until the relay is gone,
      # then once more for its exit status (bash keeps it).
      while kill -0 "$RELAY_PID" 2>/dev/null; do wait "$RELAY_PID" || true; done
      rc=0
      wait "$RELAY_PID" || rc=$?
      stop_emulator
      exit "$rc"
    else
      exec "$PY" server.py "$@"
    fi
    ;;
  setup)
    setup requirements-dev.txt
    setup_npm
    ;;
  test)
    setup requirements-dev.txt
    setup_npm
    ensure_test_packages
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
