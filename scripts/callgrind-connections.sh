#!/usr/bin/env bash
# Instructions per connection (docs/benchmarks.md "What a connection costs"): the relay's
# user-space work for one binary that connects in plain HTTP, upgrades, claims its server-id and
# leaves — accept, the HTTP head, the handshake checks and accept key, admission, the registry,
# three log lines (`server_claimed`, `binary_disconnected`, `server_released`), the close.
# The relay runs under callgrind while a Python `websockets` client makes the connections one
# after another, each from its own 127.0.x.y address (the per-IP upgrade rate limit); the figure
# is the difference between a run of FEW and a run of MANY connections, divided by MANY − FEW,
# so the boot, the first OpenSSL use and the shutdown drop out. System calls are not counted.
#
#   bash scripts/callgrind-connections.sh                 # this build
#   BEFORE=/path/to/old/pyrycode-relay bash scripts/callgrind-connections.sh   # both, side by side
#
# Env: FEW (50), MANY (350), PORT (18760), BEFORE (a second relay binary), SCRATCH (.build),
#      BIN (the relay binary to measure; default: a release build, made first).
set -euo pipefail
cd "$(dirname "$0")/.."

FEW=${FEW:-50}
MANY=${MANY:-350}
PORT=${PORT:-18760}
SCRATCH=${SCRATCH:-.build}
OUT=reports/callgrind
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "callgrind-connections: valgrind not installed (apt-get install valgrind)" >&2; exit 1; }
[[ -x .venv-test/bin/python ]] || bash scripts/python-venv.sh
(( MANY > FEW && MANY <= 60000 )) || { echo "callgrind-connections: want FEW < MANY <= 60000" >&2; exit 2; }

if [[ -z "${BIN:-}" ]]; then
  swift build -c release --scratch-path "$SCRATCH" --product pyrycode-relay 2>&1 | tail -n 1
  BIN="$SCRATCH/release/pyrycode-relay"
fi
bins=("$BIN")
labels=("this build")
if [[ -n "${BEFORE:-}" ]]; then
  [[ -x "$BEFORE" ]] || { echo "callgrind-connections: BEFORE=$BEFORE is not an executable" >&2; exit 1; }
  bins=("$BEFORE" "${bins[0]}")
  labels=("before ($BEFORE)" "after (this build)")
fi

CLIENT='
import asyncio, sys, websockets
port, count = int(sys.argv[1]), int(sys.argv[2])
async def main():
    for i in range(count):
        source = f"127.0.{1 + i // 250}.{1 + i % 250}"
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/server", local_addr=(source, 0),
                                      additional_headers={"X-Pyrycode-Server": f"bench-{i:06d}",
                                                          "X-Pyrycode-Version": "1.0.0"}):
            pass
asyncio.run(main())
'

# measure BIN COUNT TAG -> total Ir of the relay's whole run
measure() {
  local bin=$1 count=$2 tag=$3 file="$OUT/callgrind.connections.$3.$2.out" log="$OUT/relay.connections.$3.$2.log"
  local rundir pid total
  rundir=$(mktemp -d)
  : >"$log"  # emptied here, not by the child's redirection: the wait below must not read an older run
  valgrind --tool=callgrind --callgrind-out-file="$file" "$bin" --insecure-listen "127.0.0.1:$PORT" \
    --metrics-listen "" --runtime-dir "$rundir" 2>"$log" &
  pid=$!
  for _ in $(seq 150); do
    grep -q 'msg=relay_started' "$log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "callgrind-connections: relay exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.2
  done
  .venv-test/bin/python -c "$CLIENT" "$PORT" "$count"
  kill -TERM "$pid"
  wait "$pid" || true
  rm -rf "$rundir"
  [[ $(grep -c 'msg=server_released' "$log") -eq $count ]] \
    || { echo "callgrind-connections: $bin released $(grep -c 'msg=server_released' "$log") of $count server-ids" >&2; exit 1; }
  total=$(grep -E '^(summary|totals):' "$file" | head -n 1 | awk '{print $2}')
  [[ -n "$total" ]] || { echo "callgrind-connections: no count in $file" >&2; exit 1; }
  echo "$total"
}

declare -A ir
for k in "${!bins[@]}"; do
  for count in "$FEW" "$MANY"; do ir["$k.$count"]=$(measure "${bins[$k]}" "$count" "$k"); done
done
echo "callgrind-connections: Ir per plain binary connection (claim, close), runs of $FEW and $MANY"
for k in "${!bins[@]}"; do
  echo "  ${labels[$k]}: $(( (ir["$k.$MANY"] - ir["$k.$FEW"]) / (MANY - FEW) )) Ir per connection"
done
echo "  profiles: $OUT/callgrind.connections.*.out (callgrind_annotate --inclusive=yes FILE)"
