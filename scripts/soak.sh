#!/usr/bin/env bash
# `make soak`: the soak-and-fault harness (tests/soak/soak.py, docs/reliability.md) against the
# built relay, for SOAK_S seconds of load (default 60), then the drain and settle checks.
#   SOAK_S=3600 bash scripts/soak.sh            an hour
#   RELAY_BIN=...  SOAK_OUT=reports/soak         which relay binary; where the report goes
# Writes $SOAK_OUT/summary.json, soak.svg and the relays' logs; the last line of its output is
# "soak: N passed, N failed" (N counting invariants). Exit 0 only when every invariant held.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_S=${SOAK_S:-60}
RELAY_BIN=${RELAY_BIN:-.build/debug/pyrycode-relay}
SOAK_OUT=${SOAK_OUT:-reports/soak}
if ! [[ "$SOAK_S" =~ ^[1-9][0-9]*$ ]]; then
  echo "soak: SOAK_S must be a whole number of seconds, got '$SOAK_S'" >&2
  exit 2
fi
[[ -x "$RELAY_BIN" ]] || swift build --product pyrycode-relay
[[ -x .venv-test/bin/python ]] || bash scripts/python-venv.sh
exec .venv-test/bin/python tests/soak/soak.py --relay-bin "$RELAY_BIN" --seconds "$SOAK_S" --out "$SOAK_OUT"
