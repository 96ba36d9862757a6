#!/usr/bin/env bash
# Instruction-count regression gate (docs/benchmarks.md § Regression gate): instructions per
# forwarded 64 B frame are stable from run to run, so a regression of more than 10% is a bug.
#
# Builds relay-bench in release mode, runs its deterministic `callgrind-driver` under
# `valgrind --tool=callgrind`, counting only the measured region (--toggle-collect), divides by
# the message count and compares with bench/callgrind-baseline.json:
#   service  one 64 B phone message through the relay's real path: RelayService on a Reactor,
#            loopback sockets; everything inside one loop iteration (epoll dispatch, read, parse,
#            unmask, JSON check, route, wrap, write) — user space only, syscalls excluded.
#   path     the per-message user-space work alone: WebSocketParser.next on a masked 64 B frame,
#            JSON.isValid, frame header + Envelope.wrap into an output buffer.
#   connection  one plain binary connection — upgrade, claim, three log lines, close — with the
#            relay itself under callgrind (scripts/callgrind-connections.sh, runs of 20 and 120
#            connections; stable to ±0.1% from run to run).
# Fails when any figure grew by more than 10% (CALLGRIND_TOLERANCE, percent).
#
# Usage: scripts/callgrind-check.sh            check against the baseline
#        scripts/callgrind-check.sh --update   record the current figures as the new baseline
# Env:   SCRATCH (build dir, default .build), MESSAGES (default 20000).
set -euo pipefail
cd "$(dirname "$0")/.."

SCRATCH=${SCRATCH:-.build}
MESSAGES=${MESSAGES:-20000}
TOLERANCE=${CALLGRIND_TOLERANCE:-10}
BASELINE=bench/callgrind-baseline.json
OUT=reports/callgrind
mkdir -p "$OUT"

command -v valgrind >/dev/null || { echo "callgrind-check: valgrind not installed (apt-get install valgrind)" >&2; exit 1; }

swift build -c release --scratch-path "$SCRATCH" --product relay-bench 2>&1 | tail -n 1
BIN="$SCRATCH/release/relay-bench"

# count MODE SYMBOL -> Ir per message (integer division is exact: the driver is deterministic).
count() {
  local mode=$1 symbol=$2 file="$OUT/callgrind.$1.out"
  valgrind --tool=callgrind --callgrind-out-file="$file" --toggle-collect="$symbol" \
    "$BIN" callgrind-driver --mode "$mode" --messages "$MESSAGES" >"$OUT/driver.$mode.log" 2>&1 \
    || { echo "callgrind-check: driver ($mode) failed:" >&2; cat "$OUT/driver.$mode.log" >&2; exit 1; }
  local total
  total=$(grep -E '^(summary|totals):' "$file" | head -n 1 | awk '{print $2}')
  [[ -n "$total" && "$total" -gt 0 ]] || { echo "callgrind-check: nothing collected for $mode ($symbol)" >&2; exit 1; }
  echo $(( total / MESSAGES ))
}

# The toolchain the figures are measured with, recorded beside them: a new compiler or OpenSSL
# moves instruction counts by itself, so a run on another one says so (the gate still applies).
swift_version=$(swift --version 2>&1 | head -n 1)
openssl_version=$(openssl version 2>&1 | head -n 1)  # also names the libcrypto it loaded
valgrind_version=$(valgrind --version)

service=$(count service 'relay_bench_measured_step')
path=$(count path '*relay_bench_forward_one*')
echo "callgrind-check: Ir per 64 B message: service=$service path=$path"
echo "  profiles: $OUT/callgrind.{service,path}.out (callgrind_annotate --auto=yes FILE)"
swift build -c release --scratch-path "$SCRATCH" --product pyrycode-relay 2>&1 | tail -n 1
connection=$(BIN="$SCRATCH/release/pyrycode-relay" FEW=20 MANY=120 bash scripts/callgrind-connections.sh \
  | sed -n 's/^  this build: \([0-9]*\) Ir per connection$/\1/p')
[[ -n "$connection" ]] || { echo "callgrind-check: no per-connection count (scripts/callgrind-connections.sh)" >&2; exit 1; }
echo "callgrind-check: Ir per plain connection: $connection"

if [[ "${1:-}" == "--update" ]]; then
  cat >"$BASELINE" <<JSON
{
  "comment": "Ir per forwarded 64 B message and per plain connection (scripts/callgrind-check.sh). Update with --update after an intended change, and say why in the commit.",
  "messages": $MESSAGES,
  "service_ir_per_msg": $service,
  "path_ir_per_msg": $path,
  "connection_ir": $connection,
  "swift": "${swift_version//\"/\\\"}",
  "openssl": "${openssl_version//\"/\\\"}",
  "valgrind": "${valgrind_version//\"/\\\"}"
}
JSON
  echo "callgrind-check: baseline written to $BASELINE"
  exit 0
fi

[[ -f "$BASELINE" ]] || { echo "callgrind-check: no $BASELINE (run with --update)" >&2; exit 1; }
for tool in swift openssl valgrind; do
  var=${tool}_version
  recorded=$(python3 -c "import json; print(json.load(open('$BASELINE')).get('$tool', 'not recorded'))")
  if [[ "$recorded" != "${!var}" ]]; then
    echo "callgrind-check: toolchain changed since the baseline: $tool is \"${!var}\", the baseline was measured with \"$recorded\"; the gate still applies (after checking the change, --update records this toolchain)"
  fi
done
fail=0
# figure, its baseline field, its unit
for entry in "service service_ir_per_msg msg" "path path_ir_per_msg msg" "connection connection_ir connection"; do
  read -r key field unit <<<"$entry"
  base=$(python3 -c "import json,sys; print(json.load(open('$BASELINE'))['$field'])")
  now=${!key}
  limit=$(( base + base * TOLERANCE / 100 ))
  if (( now > limit )); then
    echo "callgrind-check: FAIL $key: $now Ir/$unit > $base + ${TOLERANCE}% ($limit)"
    fail=1
  else
    echo "callgrind-check: ok   $key: $now Ir/$unit (baseline $base, limit $limit)"
  fi
done
exit $fail
