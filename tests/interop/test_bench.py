"""relay-bench's command line (docs/benchmarks.md): the scenarios it lists are the ones it runs,
a bad --target names the schemes it takes, the table and the JSON result line go to different
streams, and a run beside a busy process says so. Runs are short (2 pairs, under 2 s) against a
relay on loopback."""

import json
import os
import subprocess
import sys

import pytest

from relaylib import start

EXIT_USAGE = 64  # swift-argument-parser: a ValidationError


@pytest.fixture
def bench_bin(relay_bin):
    path = os.path.join(os.path.dirname(relay_bin), "relay-bench")
    if not os.path.exists(path):
        pytest.skip(f"relay-bench not built next to {relay_bin}")
    return path


def bench(bench_bin, *args, timeout=60):
    return subprocess.run([bench_bin, *args], capture_output=True, text=True, timeout=timeout)


SHORT_RUN = ["--pairs", "2", "--warmup", "0.2", "--duration", "0.5", "--repeats", "1", "--quiet"]


def test_list_shows_only_scenarios_that_run_accepts(bench_bin):
    out = bench(bench_bin, "list")
    assert out.returncode == 0
    ids = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
    assert {"S1", "S3", "S7", "L1", "M1"} <= set(ids) and "S6" not in ids and "S6:" not in ids
    for scenario in ids:
        # An accepted scenario gets as far as the --target check.
        r = bench(bench_bin, "run", scenario, "--target", "ftp://127.0.0.1:1")
        assert r.returncode == EXIT_USAGE and "bad --target" in r.stderr, scenario


def test_a_composite_figure_says_how_to_get_it(bench_bin):
    r = bench(bench_bin, "run", "S6", "--target", "ws://127.0.0.1:1")
    assert r.returncode == EXIT_USAGE
    assert "unknown scenario S6" in r.stderr and "wss://" in r.stderr and "make bench" in r.stderr


@pytest.mark.parametrize("target", ["127.0.0.1:8080", "http://127.0.0.1:8080", "ws://", "ws://127.0.0.1",
                                    "ws://relay.example.com:443", "wss:/127.0.0.1:8443"])
def test_bad_target_names_the_schemes_it_takes(bench_bin, target):
    r = bench(bench_bin, "run", "S1", "--target", target)
    assert r.returncode == EXIT_USAGE
    assert f'bad --target "{target}"' in r.stderr and "ws://HOST:PORT or wss://HOST:PORT" in r.stderr
    assert r.stdout == ""


def test_table_on_stderr_json_line_on_stdout_or_in_the_file(relay_bin, bench_bin, start_relay, tmp_path):
    r = start(start_relay, relay_bin)
    target = ["--target", f"ws://127.0.0.1:{r.port}", "--relay-pid", str(r.proc.pid)]
    out = bench(bench_bin, "run", "S1", *target, *SHORT_RUN)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["scenario"] == "S1" and result["ok"] is True and result["target_kind"] == "relay"
    assert isinstance(result["machine_busy"], bool) and result["other_cpu_pct_of_core"] >= 0
    assert "msgs/s forwarded" in out.stderr and "\n  machine " in out.stderr
    assert not any(l.startswith("{") for l in out.stderr.splitlines())

    path = tmp_path / "results.jsonl"
    path.write_text('{"earlier": 1}\n')
    out = bench(bench_bin, "run", "S1", *target, *SHORT_RUN, "--json-out", str(path))
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    assert "msgs/s forwarded" in out.stderr
    kept, appended = path.read_text().splitlines()
    assert json.loads(kept) == {"earlier": 1} and json.loads(appended)["scenario"] == "S1"


def test_unwritable_json_out_is_refused_before_the_run(bench_bin):
    r = bench(bench_bin, "run", "S1", "--target", "ws://127.0.0.1:1", "--json-out", "/nonexistent-dir/r.jsonl")
    assert r.returncode == EXIT_USAGE and "--json-out /nonexistent-dir/r.jsonl" in r.stderr


def test_a_run_beside_a_busy_process_says_so(relay_bin, bench_bin, start_relay):
    r = start(start_relay, relay_bin)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one core's worth of other work
    try:
        out = bench(bench_bin, "run", "S1", "--target", f"ws://127.0.0.1:{r.port}", "--relay-pid", str(r.proc.pid),
                    *SHORT_RUN)
    finally:
        hog.kill()
        hog.wait()
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["machine_busy"] is True and result["other_cpu_pct_of_core"] > 10
    assert "BUSY: other processes used" in out.stderr


@pytest.mark.parametrize("args", [["S1", "--storm-get", "/healthz"], ["S7", "--storm-get", "healthz"]])
def test_storm_get_takes_a_path_and_applies_to_s7_only(bench_bin, args):
    r = bench(bench_bin, "run", *args, "--target", "ws://127.0.0.1:1")
    assert r.returncode == EXIT_USAGE and "--storm-get" in r.stderr


def test_s7_storm_get_counts_plain_get_answers(relay_bin, bench_bin, start_relay):
    """`--storm-get PATH` (the nginx yardstick of scripts/tls-handshake-bench.sh): each attempt is
    `GET PATH` answered by 200 instead of an upgrade; here the relay's own /healthz answers."""
    r = start(start_relay, relay_bin)
    out = bench(bench_bin, "run", "S7", "--target", f"ws://127.0.0.1:{r.port}", "--relay-pid", str(r.proc.pid),
                "--storm-get", "/healthz", "--pairs", "2", "--warmup", "0.2", "--duration", "0.5", "--repeats", "1", "--quiet")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["ok"] is True and result["upgrades_msgs_per_s"]["median"] > 0


SUMMARY = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "bench-summary.py")


def l1_line(kind, p50, p99, p99_9, busy=False):
    levels = [{"load_pct": pct, "p50": p50, "p99": p99, "p99_9": p99_9} for pct in (10, 50, 75)]
    return json.dumps({"tool": "relay-bench", "scenario": "L1", "target_kind": kind,
                       "target": "ws://127.0.0.1:1", "date": "2026-12-05T00:00:00Z",
                       "machine_busy": busy, "latency_us_by_load": levels})


def summarize(tmp_path, lines):
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(lines) + "\n")
    out = subprocess.run([sys.executable, SUMMARY, str(results)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [l for l in out.stdout.splitlines() if l.startswith("| L1 ")]


def test_l1_summary_takes_the_median_of_every_run_beside_the_floor(tmp_path):
    # make bench-latency alternates floor and relay runs; each level is the median over runs.
    rows = summarize(tmp_path, [l1_line("floor", 100, 200, 400), l1_line("relay", 104, 230, 500),
                                l1_line("floor", 110, 220, 420), l1_line("relay", 900, 9000, 9000),
                                l1_line("floor", 105, 210, 410), l1_line("relay", 103, 220, 480)])
    assert len(rows) == 3
    assert "L1 10% load p50 / p99 / p99.9 µs (median of 3 runs each)" in rows[0]
    assert "| 104 / 230 / 500 | floor 105 / 210 / 410 | -1 µs / 1.10× / 1.22× |" in rows[0]
    assert rows[0].endswith("| yes |")


def test_l1_summary_voids_the_verdict_of_runs_on_a_busy_machine(tmp_path):
    rows = summarize(tmp_path, [l1_line("floor", 100, 200, 400), l1_line("relay", 150, 900, 900, busy=True)])
    assert all("1 runs on a BUSY machine: not comparable" in r and r.endswith("| n/a |") for r in rows)
