#!/usr/bin/env bash
# `make bench`: reproduces docs/benchmarks.md (BENCH.md Method). Builds release, starts the relay
# and the floor forwarder pinned to CPU0, runs each scenario from CPU1 against the floor and then
# the relay (same generator settings, same session), and writes
#   reports/bench/results.jsonl   one JSON line per run (relay-bench's own output)
#   reports/bench/summary.md      the table for docs/benchmarks.md (relay as % of floor)
# Client addressing: many source IPs (127.B.x.y, 16 connections each) so the relay's per-IP
# upgrade rate limit (SPEC §10: burst 20, then 1/6 s) and per-IP cap are never hit; the relay
# runs with its stock admission settings except --max-connections (S5 needs 18,200 sockets).
#
# Env: SCENARIOS (default "S1 S1b S2 S2b S3 S4 L1 S8 M1"; add S5 for the 9k-idle run),
#      DURATION (s per window, default 5), REPEATS (default 3), SCRATCH (default .build),
#      M1_PAIRS (default "1000"), RELAY_PORT/FLOOR_PORT (default 18080/18090).
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIOS=${SCENARIOS:-"S1 S1b S2 S2b S3 S4 L1 S8 M1"}
DURATION=${DURATION:-5}
REPEATS=${REPEATS:-3}
SCRATCH=${SCRATCH:-.build}
M1_PAIRS=${M1_PAIRS:-1000}
RELAY_PORT=${RELAY_PORT:-18080}
FLOOR_PORT=${FLOOR_PORT:-18090}
OUT=reports/bench
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

swift build -c release --scratch-path "$SCRATCH" 2>&1 | tail -n 1
BIN=$SCRATCH/release
RUNDIR=$(mktemp -d)
RELAY_PID= FLOOR_PID=

stop_targets() {
  [[ -n "$RELAY_PID" ]] && kill "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null || true
  [[ -n "$FLOOR_PID" ]] && kill "$FLOOR_PID" 2>/dev/null && wait "$FLOOR_PID" 2>/dev/null || true
  RELAY_PID= FLOOR_PID=
}
trap 'stop_targets; rm -rf "$RUNDIR"' EXIT

wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: port $1 did not open" >&2; return 1
}

start_targets() {
  stop_targets
  taskset -c 0 "$BIN/pyrycode-relay" --insecure-listen "127.0.0.1:$RELAY_PORT" --metrics-listen "" \
    --runtime-dir "$RUNDIR" --max-connections 19500 >"$OUT/relay.log" 2>&1 &
  RELAY_PID=$!
  taskset -c 0 "$BIN/relay-bench" floor --listen "127.0.0.1:$FLOOR_PORT" >"$OUT/floor.log" 2>&1 &
  FLOOR_PID=$!
  wait_port "$RELAY_PORT"; wait_port "$FLOOR_PORT"
}

# quiet: BENCH.md asks for /proc/stat idle ≥ 85% over 2 s before measuring.
idle=$(python3 - <<'PY'
import time
def s():
    v=[int(x) for x in open('/proc/stat').readline().split()[1:]]
    return v[3]+v[4], sum(v)
a=s(); time.sleep(2); b=s()
print(round((b[0]-a[0])/max(1,b[1]-a[1])*100))
PY
)
echo "bench: machine idle ${idle}% over 2 s (BENCH.md wants ≥ 85%)"

run() { # SCENARIO TARGETKIND [extra args]
  local s=$1 kind=$2; shift 2
  local port=$RELAY_PORT pid=$RELAY_PID
  [[ $kind == floor ]] && { port=$FLOOR_PORT; pid=$FLOOR_PID; }
  echo "bench: $s vs $kind"
  taskset -c 1 "$BIN/relay-bench" run "$s" --target "ws://127.0.0.1:$port" --relay-pid "$pid" \
    --duration "$DURATION" --repeats "$REPEATS" --json-out "$RESULTS" --label "make-bench" --quiet "$@" \
    | grep -v '^{' || echo "bench: $s vs $kind FAILED"
}

start_targets
for s in $SCENARIOS; do
  case $s in
    M1)
      for n in $M1_PAIRS; do
        start_targets; run M1 floor --pairs "$n"
        start_targets; run M1 relay --pairs "$n"
      done ;;
    S4|S8) run "$s" relay ;;             # fan-in / backpressure: no 1:1 floor equivalent
    S5) start_targets; run S5 relay ;;
    *) run "$s" floor; run "$s" relay ;;
  esac
done
stop_targets

python3 scripts/bench-summary.py "$RESULTS" | tee "$OUT/summary.md"
