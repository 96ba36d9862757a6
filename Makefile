# pyrycode-relay. `make test` is what CI runs (.ci/run); scripts/test-all.sh lists its stages.
.PHONY: build run test fuzz autobahn bench

build:
	swift build

# Foreground dev server on loopback (plain WS; SPEC §3 --insecure-listen). Ctrl-C stops it.
run: build
	exec "$$(swift build --show-bin-path)/pyrycode-relay" --insecure-listen 127.0.0.1:8080

test:
	bash scripts/test-all.sh

fuzz:
	@if [ -f scripts/fuzz.sh ]; then bash scripts/fuzz.sh 15; \
	else echo "fuzz: scripts/fuzz.sh not present yet" >&2; exit 1; fi

autobahn:
	bash scripts/autobahn.sh

# docs/benchmarks.md figures: relay and floor on CPU0, generator on CPU1 (scripts/bench.sh).
bench:
	bash scripts/bench.sh
