#!/usr/bin/env bash
# Build each libFuzzer target, replay its committed corpus, then fuzz it for a while.
#
#   scripts/fuzz.sh [seconds-per-target]          (default 20)
#   FUZZ_TARGETS="fuzz-http" scripts/fuzz.sh 60   (choose targets; default: all five targets)
#
# A target is an executable product whose sources define LLVMFuzzerTestOneInput under
# `#if FUZZING`. The committed corpus fuzz/corpus/<target> is only
# read: new inputs go to a temporary copy. Crashes, timeouts and leaks land in
# fuzz-artifacts/<target>/. Exit status: 0 = no finding, 1 = a finding, 2 = usage/build error.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]] || [[ $# -gt 1 ]]; then
    echo "usage: scripts/fuzz.sh [seconds-per-target]   (FUZZ_TARGETS='fuzz-http fuzz-frame fuzz-envelope fuzz-proxy fuzz-dns')" >&2
    exit 2
fi
read -r -a targets <<<"${FUZZ_TARGETS:-fuzz-http fuzz-frame fuzz-envelope fuzz-proxy fuzz-dns}"

scratch=.build-fuzz
build_flags=(-c release --scratch-path "$scratch"
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING)
# A slow input (>10 s) counts as a hang. LeakSanitizer stays on (libFuzzer default).
fuzzer_flags=(-timeout=10 -print_final_stats=1)
# Swift's own crash backtracer reads the crashed stack from a helper thread, which ASan reports as
# a stack-buffer-underflow that hides the real trap; libFuzzer's handler prints the stack instead.
export SWIFT_BACKTRACE=enable=no

work="$(mktemp -d "${TMPDIR:-/tmp}/pyry-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Prints the finding's input path and the report (symbols demangled), then exits 1.
# The demangled report is also kept as fuzz-artifacts/<target>/<phase>.log.
report_finding() {
    local target="$1" phase="$2" log="$3"
    local input kept="fuzz-artifacts/$target/${2// /-}.log"
    input="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
    swift demangle <"$log" >"$kept" 2>/dev/null || cp "$log" "$kept"
    echo "$target: FINDING during $phase; input: ${input:-<none written>}; report: $kept" >&2
    echo "---- report (from the first error line; full log in $kept) ----" >&2
    awk 'found || /Fatal error|^==[0-9]+==|ERROR: libFuzzer|deadly signal|SUMMARY:/ { found = 1; print }' \
        "$kept" >&2
    exit 1
}

for target in "${targets[@]}"; do
    if ! grep -qs "LLVMFuzzerTestOneInput" "Sources/$target"/*.swift; then
        echo "$target: Sources/$target defines no LLVMFuzzerTestOneInput: not a libFuzzer target" >&2
        exit 2
    fi
    corpus="fuzz/corpus/$target"
    if [[ ! -d "$corpus" ]]; then
        echo "$target: no committed corpus at $corpus" >&2
        exit 2
    fi
    artifacts="fuzz-artifacts/$target"
    mkdir -p "$artifacts"

    if ! swift build "${build_flags[@]}" --product "$target" >"$work/$target.build.log" 2>&1; then
        echo "$target: build failed" >&2
        cat "$work/$target.build.log" >&2
        exit 2
    fi
    bin="$(swift build "${build_flags[@]}" --show-bin-path)/$target"

    # 1. Replay: every committed input runs once (-runs=0 skips the mutation loop).
    inputs="$(find "$corpus" -type f | wc -l)"
    replay_log="$work/$target.replay.log"
    rc=0
    "$bin" "${fuzzer_flags[@]}" -runs=0 -artifact_prefix="$artifacts/" "$corpus" >"$replay_log" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then report_finding "$target" "corpus replay" "$replay_log"; fi

    # 2. Fuzz into a scratch copy of the corpus (the committed one is never written).
    scratch_corpus="$work/$target.corpus"
    mkdir -p "$scratch_corpus"
    cp -R "$corpus/." "$scratch_corpus/"
    fuzz_log="$work/$target.fuzz.log"
    rc=0
    "$bin" "${fuzzer_flags[@]}" -max_total_time="$seconds" -artifact_prefix="$artifacts/" \
        "$scratch_corpus" >"$fuzz_log" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then report_finding "$target" "fuzzing" "$fuzz_log"; fi

    execs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$fuzz_log" | tail -n 1)"
    echo "$target: corpus replay ok ($inputs inputs), $seconds s, ${execs:-?} execs, no finding"
done
