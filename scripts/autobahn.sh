#!/usr/bin/env bash
# Autobahn|Testsuite (RFC 6455 conformance, RFC 7692 permessage-deflate) against ws-echo, our
# WebSocket layer as an echo server, run with --permessage-deflate: sections 12/13 negotiate it,
# the others offer no extension (so nothing is negotiated there).
#
#   scripts/autobahn.sh            build ws-echo (release), run cases from tests/autobahn/fuzzingclient.json
#   ECHO_BIN=path scripts/autobahn.sh   use that binary instead (skips the Swift build)
#
# Env: AUTOBAHN_TIMEOUT (seconds for wstest, default 2400: sections 12/13 send 1000 compressed
#      messages per case, most of the run, paced by wstest's own Python 2 zlib), PY27 (python2.7 to use),
#      AUTOBAHN_TEMPLATE (config template, default tests/autobahn/fuzzingclient.json; for running
#      a subset while debugging, e.g. a copy with "cases": ["7.1.*"]).
# Installs the suite into .autobahn once (stamp file); see tests/autobahn/EXCLUSIONS.md for why it
# needs Python 2.7 (autobahntestsuite is Python 2 code) and how that was verified.
# Results: reports/servers/index.json (+ per-case HTML/JSON); logs: reports/autobahn/.
# The verdict comes from tests/autobahn/count.py: wstest exits 0 even when cases fail.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TIMEOUT=${AUTOBAHN_TIMEOUT:-2400}
TEMPLATE=${AUTOBAHN_TEMPLATE:-tests/autobahn/fuzzingclient.json}
AUTOBAHN_VERSION=25.10.1
VIRTUALENV_VERSION=20.21.1
# Section 9 sends messages up to 16 MiB, so the echo server must accept that much.
MAX_MESSAGE_BYTES=16777216
LOGDIR=reports/autobahn
OUTDIR=reports/servers

log() { printf 'autobahn: %s\n' "$*"; }
die_loud() {
  {
    echo
    echo "#################################################################"
    echo "### AUTOBAHN FAILED: $*"
    echo "#################################################################"
    echo
  } >&2
  exit 2
}

mkdir -p "$LOGDIR"

# --- Python 2.7.18 (pyenv). CI may not have pyenv's shims on PATH, so look in fixed places too.
if [[ -z "${PY27:-}" ]]; then
  if command -v pyenv >/dev/null 2>&1; then
    PYENV_DIR=$(pyenv root)
  elif [[ -x "$HOME/.pyenv/bin/pyenv" ]]; then
    PYENV_DIR=$("$HOME/.pyenv/bin/pyenv" root)
  else
    PYENV_DIR=${PYENV_ROOT:-$HOME/.pyenv}
  fi
  PY27="$PYENV_DIR/versions/2.7.18/bin/python2.7"
fi
if [[ ! -x "$PY27" ]] || ! "$PY27" -c 'import sys; assert sys.version_info[:2] == (2, 7)' >/dev/null 2>&1; then
  die_loud "Python 2.7 not found at $PY27 (install it with 'pyenv install 2.7.18' or set PY27=...). Autobahn|Testsuite is Python 2 code and cannot run without it."
fi

# --- Install the suite once. The stamp names every input; a change reinstalls from scratch.
STAMP=.autobahn/.installed
WANT="autobahntestsuite==$AUTOBAHN_VERSION virtualenv==$VIRTUALENV_VERSION python=$PY27"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" || ! -x .autobahn/bin/wstest ]]; then
  log "installing autobahntestsuite $AUTOBAHN_VERSION into .autobahn (about a minute; log: $LOGDIR/install.log)"
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
  if ! {
    set -e
    if ! .tools/bin/python -c '' 2>/dev/null; then python3 -m venv --clear .tools; fi
    .tools/bin/pip install -q "virtualenv==$VIRTUALENV_VERSION"
    rm -rf .autobahn
    .tools/bin/virtualenv -q -p "$PY27" .autobahn
    .autobahn/bin/pip install -q "autobahntestsuite==$AUTOBAHN_VERSION"
  } >"$LOGDIR/install.log" 2>&1; then
    tail -n 40 "$LOGDIR/install.log" >&2
    die_loud "installing autobahntestsuite failed (see $LOGDIR/install.log)"
  fi
  printf '%s\n' "$WANT" > "$STAMP"
fi

# --- The server under test.
if [[ -z "${ECHO_BIN:-}" ]]; then
  log "building ws-echo (release)"
  swift build -c release --product ws-echo
  ECHO_BIN="$(swift build -c release --show-bin-path)/ws-echo"
fi
[[ -x "$ECHO_BIN" ]] || die_loud "echo server binary not found: $ECHO_BIN"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ECHO_PID=
stop_echo() {
  if [[ -n "$ECHO_PID" ]] && kill -0 "$ECHO_PID" 2>/dev/null; then
    kill -TERM "$ECHO_PID" 2>/dev/null || true
    # Bounded wait for a clean exit, then SIGKILL.
    for _ in $(seq 1 250); do kill -0 "$ECHO_PID" 2>/dev/null || break; sleep 0.02; done
    kill -KILL "$ECHO_PID" 2>/dev/null || true
    wait "$ECHO_PID" 2>/dev/null || true
  fi
  ECHO_PID=
}
trap stop_echo EXIT

log "starting $ECHO_BIN on 127.0.0.1:$PORT (log: $LOGDIR/echo.log)"
"$ECHO_BIN" --listen "127.0.0.1:$PORT" --max-message-bytes "$MAX_MESSAGE_BYTES" --permessage-deflate >"$LOGDIR/echo.log" 2>&1 &
ECHO_PID=$!

# Wait until the port accepts: 10 ms polls, 10 s at most; fail early if the server exits.
ready=0
for _ in $(seq 1 1000); do
  if ! kill -0 "$ECHO_PID" 2>/dev/null; then
    tail -n 40 "$LOGDIR/echo.log" >&2
    die_loud "echo server exited before listening on port $PORT"
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then ready=1; break; fi
  sleep 0.01
done
[[ $ready == 1 ]] || die_loud "echo server did not listen on port $PORT within 10 s"

# --- Config from the committed template: only the URL and outdir are filled in.
CONFIG="$LOGDIR/fuzzingclient.json"
python3 - "$TEMPLATE" "$CONFIG" "ws://127.0.0.1:$PORT" "./$OUTDIR" <<'EOF'
import json, sys
template, out, url, outdir = sys.argv[1:]
with open(template) as f:
    cfg = json.load(f)
cfg.pop("_comment", None)
cfg["outdir"] = outdir
for server in cfg["servers"]:
    server["url"] = url
with open(out, "w") as f:
    json.dump(cfg, f, indent=2)
EOF

rm -rf "$OUTDIR"
log "running wstest -m fuzzingclient (timeout ${TIMEOUT}s; log: $LOGDIR/wstest.log)"
start=$SECONDS
set +e
timeout --kill-after=10 "$TIMEOUT" .autobahn/bin/wstest -m fuzzingclient -s "$CONFIG" >"$LOGDIR/wstest.log" 2>&1
rc=$?
set -e
log "wstest finished in $((SECONDS - start)) s (exit $rc)"
stop_echo

if [[ $rc == 124 || $rc == 137 ]]; then
  tail -n 20 "$LOGDIR/wstest.log" >&2
  die_loud "wstest did not finish within ${TIMEOUT}s"
elif [[ $rc != 0 ]]; then
  tail -n 40 "$LOGDIR/wstest.log" >&2
  die_loud "wstest exited with status $rc"
fi

python3 tests/autobahn/count.py "$OUTDIR/index.json"
