#!/usr/bin/env bash
# Create or update .venv-test with the pinned test dependencies in tests/requirements.txt.
#
# Idempotent and quiet: a stamp file inside the venv holds a hash of the requirements list and of
# the interpreter version; when both still match, this exits at once without touching pip.
#
# Interpreter: $PYTHON if set, else python3.11 from PATH, else python3 when it is 3.11.
# Output: nothing when already up to date; otherwise two short status lines on stderr.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=.venv-test
REQ=tests/requirements.txt
STAMP="$VENV/.requirements.sha256"

log() { printf 'python-venv: %s\n' "$*" >&2; }

pick_python() {
  if [[ -n "${PYTHON:-}" ]]; then printf '%s\n' "$PYTHON"; return; fi
  if command -v python3.11 >/dev/null 2>&1; then command -v python3.11; return; fi
  if command -v python3 >/dev/null 2>&1 &&
     python3 -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
    command -v python3; return
  fi
  log "ERROR: Python 3.11 not found on PATH (set PYTHON=/path/to/python3.11)"
  exit 1
}

PY=$(pick_python)
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# The hash covers the pins and the interpreter's minor version: changing either rebuilds.
WANT=$( { cat "$REQ"; printf 'python=%s\n' "$PYVER"; } | sha256sum | cut -d' ' -f1)

# Fast path: stamp matches and the venv's interpreter still runs (pyenv versions can vanish).
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && "$VENV/bin/python" -c '' >/dev/null 2>&1; then
  exit 0
fi

log "installing pinned test deps into $VENV (python $PYVER: $PY)"
if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
  # Missing or broken venv: start clean.
  "$PY" -m venv --clear "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$VENV/bin/python" -m pip install -q -r "$REQ"
printf '%s\n' "$WANT" > "$STAMP"
log "ok"
