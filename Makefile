# pyrycode-relay. `make test` is what CI runs (.ci/run); scripts/test-all.sh lists its stages.
.PHONY: build run test unit fuzz autobahn bench bench-latency bench-sharded soak

build:
	swift build

# Foreground dev server on loopback: builds only the relay, says where the binary is, serves
# plain WebSocket on RUN_LISTEN and /metrics on RUN_METRICS, keeps its instance.lock in
# RUN_DIR. Ctrl-C stops it.
RUN_LISTEN ?= 127.0.0.1:8080
RUN_METRICS ?= 127.0.0.1:9090
RUN_DIR ?= $(CURDIR)/.build/run
run:
	swift build --product pyrycode-relay
	@bin="$$(swift build --show-bin-path)/pyrycode-relay"; \
	echo "make run: binary $$bin"; \
	echo "make run: ws://$(RUN_LISTEN)/v1/server and /v1/client, http://$(RUN_METRICS)/metrics; Ctrl-C stops it"; \
	exec "$$bin" --insecure-listen $(RUN_LISTEN) --metrics-listen $(RUN_METRICS) --runtime-dir "$(RUN_DIR)"

test:
	bash scripts/test-all.sh

# The edit-test loop: the Swift unit tests without the loopback suites, in seconds (scripts/unit.sh).
unit:
	bash scripts/unit.sh

# libFuzzer: each target replays its committed corpus, then fuzzes 15 s (scripts/fuzz.sh).
fuzz:
	bash scripts/fuzz.sh 15

autobahn:
	bash scripts/autobahn.sh

# docs/benchmarks.md figures: relay and floor on CPU0, generator on CPU1 (scripts/bench.sh).
bench:
	bash scripts/bench.sh

# docs/benchmarks.md L1 alone: open-loop echo latency at 10/50/75% of capacity, floor and relay
# alternating L1_RUNS times (default 5); prints p50/p99/p99.9 beside the floor with the ratios.
bench-latency:
	SCENARIOS=L1 bash scripts/bench.sh

# docs/benchmarks.md "Sharded behind HAProxy": S1 through HAProxy with 1 and 2 shards beside the
# relay reached directly (scripts/bench-sharded.py; needs haproxy, scripts/ensure-deps.sh).
bench-sharded:
	swift build -c release 2>&1 | tail -n 1
	python3 scripts/bench-sharded.py

# Soak and faults (docs/reliability.md): SOAK_S seconds of churn, misbehaving peers and network
# faults against a plain and a TLS relay; the last line is "soak: N passed, N failed".
SOAK_S ?= 60
soak:
	swift build --product pyrycode-relay
	SOAK_S=$(SOAK_S) bash scripts/soak.sh
