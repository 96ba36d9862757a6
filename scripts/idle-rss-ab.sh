#!/usr/bin/env bash
# RSS per idle plain connection (relay-bench M1) for two relay binaries, run alternately in one
# session so they see the same machine: A (e.g. the parent commit's build) then B, for each pair
# count, ROUNDS times. RSS is load-independent, so this is the M1 row of `make bench` without
# the quiet-machine wait. Prints one line per run and the JSON lines to $OUT/m1-ab.jsonl.
#
#   scripts/idle-rss-ab.sh A/pyrycode-relay B/pyrycode-relay [relay-bench]
#   PAIRS="1000 9000" ROUNDS=2 scripts/idle-rss-ab.sh …
set -euo pipefail
A=$1 B=$2 BENCH=${3:-.build/release/relay-bench}
PAIRS=${PAIRS:-"1000 9000"} ROUNDS=${ROUNDS:-2} OUT=${OUT:-reports/bench}
PORT=${PORT:-18180}
mkdir -p "$OUT"
RESULTS=$OUT/m1-ab.jsonl
RUNDIR=$(mktemp -d)
trap 'kill $RELAY_PID 2>/dev/null || true; rm -rf "$RUNDIR"' EXIT
RELAY_PID=

run_one() { # LABEL BINARY PAIRS
  local label=$1 bin=$2 n=$3 w=1
  [[ $n -gt 8000 ]] && w=2   # 2 sockets per pair: 9k pairs need two generator processes
  mkdir -p "$RUNDIR/$label"
  taskset -c 0 "$bin" --insecure-listen "127.0.0.1:$PORT" --metrics-listen "" \
    --runtime-dir "$RUNDIR/$label" --max-connections 19500 2>/dev/null &
  RELAY_PID=$!
  for _ in $(seq 200); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
  taskset -c 1 "$BENCH" run M1 --target "ws://127.0.0.1:$PORT" --relay-pid "$RELAY_PID" --pairs "$n" \
    --workers "$w" --json-out "$RESULTS" --label "$label" --quiet 2>/dev/null || echo "M1 $label $n FAILED"
  kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
  python3 - "$RESULTS" "$label" "$n" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
print(f"{sys.argv[2]:>2} {sys.argv[3]:>5} pairs: {r.get('rss_bytes_per_connection', float('nan')):7.0f} B per idle connection")
PY
}

for n in $PAIRS; do
  for _ in $(seq "$ROUNDS"); do
    run_one A "$A" "$n"
    run_one B "$B" "$n"
  done
done
