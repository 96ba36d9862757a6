#!/usr/bin/env bash
# Per-byte cost of forwarding (docs/benchmarks.md § Per-byte cost): the relay's user-space
# instructions for one phone text message forwarded to its binary — the whole loop iteration, as
# the regression gate's `service` driver counts it (read, parse, unmask, UTF-8, JSON, wrap and
# copy, write; syscalls excluded) — at several message sizes.
#
# Prints per size: Ir per message, Ir per payload byte (Ir ÷ message bytes) and the marginal
# cost per byte over the smallest size ((Ir(size) − Ir(first)) ÷ (size − first)): what each byte
# beyond a small message costs, the fixed per-message work taken out.
# BEFORE=path/to/relay-bench also runs another build (e.g. the parent commit, built with its own
# --scratch-path) on the same sizes, interleaved, and prints both side by side.
#
# Usage: scripts/callgrind-bytes.sh
# Env:   SCRATCH (build dir, default .build), BEFORE (a second relay-bench binary),
#        PAYLOAD (x | pyry | text, default x: the gate's JSON filler), SIZES (default "64 1024 65536"),
#        SIMD (scalar | sse2 | avx2: the kernel level, of both builds with BEFORE; default the best
#        the CPU has).
set -euo pipefail
cd "$(dirname "$0")/.."

SCRATCH=${SCRATCH:-.build}
PAYLOAD=${PAYLOAD:-x}
read -r -a sizes <<<"${SIZES:-64 1024 65536}"
OUT=reports/callgrind
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "callgrind-bytes: valgrind not installed (apt-get install valgrind)" >&2; exit 1; }

swift build -c release --scratch-path "$SCRATCH" --product relay-bench 2>&1 | tail -n 1
AFTER="$SCRATCH/release/relay-bench"
bins=("$AFTER")
labels=("this build")
if [[ -n "${BEFORE:-}" ]]; then
  [[ -x "$BEFORE" ]] || { echo "callgrind-bytes: BEFORE=$BEFORE is not an executable" >&2; exit 1; }
  bins=("$BEFORE" "$AFTER")
  labels=("before ($BEFORE)" "after (this build)")
fi

# measure BIN SIZE TAG -> "Ir_per_message message_bytes"
measure() {
  local bin=$1 size=$2 tag=$3 messages file log total bytes level=()
  [[ -z "${SIMD:-}" ]] || level=(--simd "$SIMD")
  messages=$(( size >= 16384 ? 200 : 2000 ))
  tag="$tag${SIMD:+.$SIMD}"
  file="$OUT/callgrind.bytes.$tag.$PAYLOAD.$size.out"
  log="$OUT/driver.bytes.$tag.$PAYLOAD.$size.log"
  valgrind --tool=callgrind --callgrind-out-file="$file" --toggle-collect=relay_bench_measured_step \
    "$bin" callgrind-driver --mode service --payload "$PAYLOAD" --size "$size" --messages "$messages" "${level[@]}" >"$log" 2>&1 \
    || { echo "callgrind-bytes: driver failed ($bin, $size B):" >&2; cat "$log" >&2; exit 1; }
  total=$(grep -E '^(summary|totals):' "$file" | head -n 1 | awk '{print $2}')
  # The driver names the message length ("N messages of M B"), which for pyry/text differs from --size.
  bytes=$(sed -n 's/.* messages of \([0-9]*\) B.*/\1/p' "$log" | head -n 1)
  [[ -n "$total" && -n "$bytes" ]] || { echo "callgrind-bytes: no count for $bin at $size B" >&2; exit 1; }
  echo "$(( total / messages )) $bytes"
}

declare -A ir bytes
for size in "${sizes[@]}"; do
  for k in "${!bins[@]}"; do
    read -r ir["$k.$size"] bytes["$k.$size"] < <(measure "${bins[$k]}" "$size" "$k")
  done
done

echo "callgrind-bytes: payload=$PAYLOAD${SIMD:+, simd=$SIMD}, Ir per message / per payload byte / marginal per byte over ${sizes[0]} B"
for k in "${!bins[@]}"; do
  echo "  ${labels[$k]}:"
  first=${sizes[0]}
  for size in "${sizes[@]}"; do
    i=${ir["$k.$size"]} b=${bytes["$k.$size"]} i0=${ir["$k.$first"]} b0=${bytes["$k.$first"]}
    awk -v s="$size" -v i="$i" -v b="$b" -v i0="$i0" -v b0="$b0" 'BEGIN {
      marginal = (b > b0) ? sprintf("%.3f", (i - i0) / (b - b0)) : "-"
      printf "    %7d B message: %9d Ir/msg  %7.3f Ir/B  marginal %s Ir/B\n", b, i, i / b, marginal }'
  done
done
