#!/usr/bin/env bash
# Per-byte cost of forwarding (docs/benchmarks.md § Per-byte cost): the relay's user-space
# instructions for one phone text message forwarded to its binary — the whole loop iteration, as
# the regression gate's `service` driver counts it (read, parse, unmask, UTF-8, JSON, wrap and
# copy, write; syscalls excluded) — at several message sizes.
#
# Prints per size: Ir per message, Ir per payload byte (Ir ÷ message bytes) and the marginal
# cost per byte over the smallest size ((Ir(size) − Ir(first)) ÷ (size − first)): what each byte
# beyond a small message costs, the fixed per-message work taken out. Beside it, the forward
# alone (the gate's `path` driver: parse + unmask, JSON check, envelope wrap and copy, no
# reactor, no syscalls): the reading of "Ir per payload byte, whole forward".
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

# measure BIN SIZE TAG MODE -> "Ir_per_message message_bytes" (MODE: service | path)
measure() {
  local bin=$1 size=$2 tag=$3 mode=$4 messages file log total bytes level=() symbol=relay_bench_measured_step
  [[ -z "${SIMD:-}" ]] || level=(--simd "$SIMD")
  [[ "$mode" == service ]] || symbol='*relay_bench_forward_one*'
  messages=$(( size >= 16384 ? 200 : 2000 ))
  tag="$tag${SIMD:+.$SIMD}"
  file="$OUT/callgrind.bytes.$tag.$PAYLOAD.$size.out"
  [[ "$mode" == service ]] || file="$OUT/callgrind.bytes.$mode.$tag.$PAYLOAD.$size.out"
  log="${file%.out}.log"
  if ! valgrind --tool=callgrind --callgrind-out-file="$file" --toggle-collect="$symbol" \
    "$bin" callgrind-driver --mode "$mode" --payload "$PAYLOAD" --size "$size" --messages "$messages" "${level[@]}" >"$log" 2>&1; then
    # An older relay-bench's path driver checked its output as if every frame header were
    # 2 bytes (a message under 126 B) and failed after counting: its count stands, for its
    # only message, the gate's filler of `size` bytes.
    grep -q "callgrind-driver: path produced" "$log" || { echo "callgrind-bytes: driver failed ($bin, $mode, $size B):" >&2; cat "$log" >&2; exit 1; }
    echo "callgrind-driver path: $messages messages of $size B" >>"$log"
  fi
  total=$(grep -E '^(summary|totals):' "$file" | head -n 1 | awk '{print $2}')
  # The driver names the message length ("N messages of M B"), which for pyry/text differs from --size.
  bytes=$(sed -n 's/.* messages of \([0-9]*\) B.*/\1/p' "$log" | head -n 1)
  [[ -n "$total" && -n "$bytes" ]] || { echo "callgrind-bytes: no count for $bin at $size B" >&2; exit 1; }
  echo "$(( total / messages )) $bytes"
}

declare -A ir bytes
for size in "${sizes[@]}"; do
  for k in "${!bins[@]}"; do
    for mode in service path; do
      read -r ir["$mode.$k.$size"] bytes["$mode.$k.$size"] < <(measure "${bins[$k]}" "$size" "$k" "$mode")
    done
  done
done

echo "callgrind-bytes: payload=$PAYLOAD${SIMD:+, simd=$SIMD}, Ir per message / per payload byte / marginal per byte over ${sizes[0]} B"
echo "  (loop: the whole loop iteration, service driver; forward: parse, unmask, JSON, wrap and copy alone, path driver)"
for k in "${!bins[@]}"; do
  echo "  ${labels[$k]}:"
  first=${sizes[0]}
  for size in "${sizes[@]}"; do
    line=""
    for mode in service path; do
      i=${ir["$mode.$k.$size"]} b=${bytes["$mode.$k.$size"]} i0=${ir["$mode.$k.$first"]} b0=${bytes["$mode.$k.$first"]}
      line+=$(awk -v m="$mode" -v i="$i" -v b="$b" -v i0="$i0" -v b0="$b0" 'BEGIN {
        marginal = (b > b0) ? sprintf("%.3f", (i - i0) / (b - b0)) : "-"
        printf "%s %9d Ir/msg %7.3f Ir/B marginal %-5s   ", (m == "service" ? "loop" : "forward"), i, i / b, marginal }')
    done
    # An older relay-bench's path driver knows only the gate's filler: say when it measured another message.
    note=""
    [[ "${bytes["path.$k.$size"]}" == "${bytes["service.$k.$size"]}" ]] || note="(forward: a ${bytes["path.$k.$size"]} B message)"
    printf "    %7d B message: %s%s\n" "${bytes["service.$k.$size"]}" "$line" "$note"
  done
done
