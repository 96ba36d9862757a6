#!/usr/bin/env bash
# What one /metrics scrape costs the relay's loop (docs/benchmarks.md, "Metrics scrape").
#
#   instructions  the relay under `valgrind --tool=callgrind`, collecting only inside
#                 Reactor.runOnce (every loop iteration, user space); SCRAPES sequential scrapes
#                 (one connection each, the costlier case: a Prometheus agent keeps its connection
#                 alive) on an idle relay; Ir per scrape = collected Ir ÷ SCRAPES. Also the render alone
#                 (Metrics.render, --toggle-collect on it).
#   iterations    the release relay pinned to CPU0 (`taskset`), a scrape every INTERVAL_MS for
#                 SCRAPES scrapes; the loop-iteration histogram (pyrycode_relay_loop_iteration_seconds)
#                 of the last scrape minus that of the first: how many iterations the scrapes
#                 took, and how long, per bucket; and the relay's CPU time (user + kernel, from
#                 /proc/<pid>/schedstat) over the same scrapes. HOLD=N first opens N idle WebSocket binaries
#                 (source addresses 127.B.x.1, 8 each: under the per-IP limits), so the process
#                 holds N more descriptors while it is scraped (all within the 30 s before the
#                 relay's first heartbeat ping to them, with the defaults).
#
# Usage: scripts/scrape-cost.sh [RELAY_BINARY]     (default .build/release/pyrycode-relay)
# Env:   SCRAPES (default 200), INTERVAL_MS (default 50), HOLD (default 0), CALLGRIND (default 1;
#        0 skips part 1), PORT/METRICS_PORT (18180/19190).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-.build/release/pyrycode-relay}
SCRAPES=${SCRAPES:-200}
INTERVAL_MS=${INTERVAL_MS:-50}
HOLD=${HOLD:-0}
CALLGRIND=${CALLGRIND:-1}
PORT=${PORT:-18180}
METRICS_PORT=${METRICS_PORT:-19190}
OUT=reports/scrape-cost
mkdir -p "$OUT"
RUNDIR=$(mktemp -d)
PID= HOLDER=
cleanup() {
  if [[ -n "$HOLDER" ]]; then kill "$HOLDER" 2>/dev/null || true; wait "$HOLDER" 2>/dev/null || true; fi
  if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$RUNDIR"
}
trap cleanup EXIT

wait_port() {  # PORT: until it accepts, failing if our relay ($PID) exited (port taken by another process?)
  for _ in $(seq 600); do
    kill -0 "$PID" 2>/dev/null || { echo "scrape-cost: the relay exited (see $OUT/relay.*.log)" >&2; return 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "scrape-cost: port $1 did not open" >&2; return 1
}

scrape() { curl -sf "http://127.0.0.1:$METRICS_PORT/metrics"; }

relay_args=(--insecure-listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" --runtime-dir "$RUNDIR")

# 1. Instructions per scrape (and per render) under callgrind.
callgrind() { # TOGGLE NAME
  local file="$OUT/callgrind.$2.out"
  valgrind --tool=callgrind --callgrind-out-file="$file" --toggle-collect="$1" \
    "$BIN" "${relay_args[@]}" >"$OUT/relay.$2.log" 2>&1 &
  PID=$!
  wait_port "$METRICS_PORT"
  scrape >/dev/null  # first scrape: lazy initialisation, not counted below
  for _ in $(seq "$SCRAPES"); do scrape >/dev/null; done
  kill -TERM "$PID"; wait "$PID" || true; PID=
  local total
  total=$(grep -E '^(summary|totals):' "$file" | head -n 1 | awk '{print $2}')
  echo "$total"
}
# The first scrape is included in the totals: run once with 0 extra scrapes to subtract it.
if [[ $CALLGRIND == 1 ]]; then
SCRAPES_SAVED=$SCRAPES
ir_loop_all=$(callgrind '*Reactor*runOnce*' loop)
ir_render_all=$(callgrind '*7Metrics*6render*' render)
SCRAPES=0
ir_loop_one=$(callgrind '*Reactor*runOnce*' loop0)
ir_render_one=$(callgrind '*7Metrics*6render*' render0)
SCRAPES=$SCRAPES_SAVED
echo "scrape-cost: $SCRAPES scrapes, idle relay, callgrind (user space):"
echo "  Ir per scrape, whole loop iterations: $(( (ir_loop_all - ir_loop_one) / SCRAPES ))"
echo "  Ir per render (Metrics.render):       $(( (ir_render_all - ir_render_one) / SCRAPES ))"
fi

# 2. Loop iterations per scrape, their durations (wall clock) and the relay's CPU time, on CPU0.
taskset -c 0 "$BIN" "${relay_args[@]}" >"$OUT/relay.hist.log" 2>&1 &
PID=$!
wait_port "$METRICS_PORT"
if [[ $HOLD -gt 0 ]]; then
  python3 - "$HOLD" "$PORT" "$RUNDIR/held" <<'PY' &
import random, socket, sys, time
n, port, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks, base = [], random.randrange(3, 200)  # fresh addresses: no TIME_WAIT left by a previous run
for i in range(n):
    s = socket.socket()
    s.bind((f"127.{base + i // 8 // 250}.{i // 8 % 250 + 1}.1", 0))
    s.connect(("127.0.0.1", port))
    s.sendall(("GET /v1/server HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               "User-Agent: scrape-cost/1\r\nX-Pyrycode-Version: 1.0.0\r\n"
               f"X-Pyrycode-Server: hold-{i}\r\n\r\n").encode())
    socks.append(s)
for s in socks:
    head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101 "), head
open(flag, "w").close()
time.sleep(600)
PY
  HOLDER=$!
  for _ in $(seq 1200); do [[ -e "$RUNDIR/held" ]] && break; sleep 0.05; done
  [[ -e "$RUNDIR/held" ]] || { echo "scrape-cost: could not hold $HOLD connections" >&2; exit 1; }
fi
scrape >"$OUT/first.txt"
read -r cpu0 _ <"/proc/$PID/schedstat"   # first field: ns spent on a CPU, user + kernel
for _ in $(seq "$((SCRAPES - 1))"); do scrape >/dev/null; sleep "$(awk "BEGIN{print $INTERVAL_MS/1000}")"; done
scrape >"$OUT/last.txt"
read -r cpu1 _ <"/proc/$PID/schedstat"
python3 - "$OUT/first.txt" "$OUT/last.txt" "$SCRAPES" "$((cpu1 - cpu0))" <<'PY'
import sys
def hist(path):
    h = {}
    for line in open(path):
        if line.startswith("pyrycode_relay_loop_iteration_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            h[le] = int(line.split()[-1])
        elif line.startswith("pyrycode_relay_loop_iteration_seconds_sum"):
            h["sum"] = float(line.split()[-1])
        elif line.startswith("process_open_fds"):
            h["fds"] = int(line.split()[-1])
    return h
a, b, n, cpu_ns = hist(sys.argv[1]), hist(sys.argv[2]), int(sys.argv[3]) - 1, int(sys.argv[4])
prev_a = prev_b = 0
rows = []
for le in [k for k in a if k not in ("sum", "fds")]:
    d = (b[le] - prev_b) - (a[le] - prev_a)
    prev_a, prev_b = a[le], b[le]
    if d: rows.append(f"le {le}: {d}")
iters = b["+Inf"] - a["+Inf"]
print(f"scrape-cost: {n} scrapes, process_open_fds {b['fds']}, relay CPU {cpu_ns / n / 1000:.1f} µs per scrape "
      f"(user + kernel, /proc/<pid>/schedstat), loop iterations {iters} ({iters / n:.2f} per scrape), "
      f"loop time {(b['sum'] - a['sum']) / n * 1e6:.1f} µs per scrape; by bucket (s): " + ", ".join(rows))
PY
