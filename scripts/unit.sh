#!/usr/bin/env bash
# `make unit`: the fast edit-test loop, a few seconds once built. Every Swift test except the
# loopback integration suites, which run the relay over sockets and are the ones marked
# `@Suite(.serialized)` (a new such suite is skipped here without a list to keep); no interop,
# no fuzzing, no Autobahn. `make test` (what CI runs) runs everything.
# Extra arguments go to `swift test`, e.g. `scripts/unit.sh --filter RateLimiter`.
# Fails when no test ran: a filter that matches nothing is not a green run.
set -euo pipefail
cd "$(dirname "$0")/.."

suites=$(sed -n 's/^@Suite(\.serialized) struct \([A-Za-z0-9_]*\).*/\1/p' Tests/RelayTests/*.swift | paste -sd '|' -)
[[ -n "$suites" ]] || { echo "make unit: no @Suite(.serialized) suite found; refusing to guess what to skip" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift test --skip "\.($suites)/" "$@" 2>&1 | tee "$log"
grep -Eq 'Test run with [1-9][0-9]* tests? in' "$log" \
  || { echo "make unit: no test ran" >&2; exit 1; }
echo "make unit: skipped the loopback suites ${suites//|/, }"
