"""Self-tests of the conftest.py helpers, using a tiny Python child instead of the relay so they
run before the relay exists. They exercise the same paths the relay tests rely on."""

import signal
import sys
import time

import pytest

from conftest import Relay, free_port, parse_logfmt

# A stand-in child: logs logfmt to stderr, listens on argv[1], exits 0 on SIGTERM.
CHILD = r"""
import signal, socket, sys
port = int(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *a: (print("level=info msg=stopping", file=sys.stderr, flush=True), sys.exit(0)))
print("level=info msg=booting", file=sys.stderr, flush=True)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen()
print('level=info msg=relay_started listen="127.0.0.1:%d"' % port, file=sys.stderr, flush=True)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""


def test_waits_for_port_and_log_then_stops_cleanly(start_relay):
    port = free_port()
    r = start_relay(sys.executable, ["-c", CHILD, port], wait_port=port)
    line = r.wait_for_log(lambda l: parse_logfmt(l).get("msg") == "relay_started")
    assert parse_logfmt(line)["listen"] == "127.0.0.1:%d" % port
    assert r.wait_for_log(lambda l: l == "ready", stream="stdout") == "ready"
    assert r.stop() == 0
    assert r.lines[-1] == "level=info msg=stopping"


def test_exit_before_listening_raises_with_stderr():
    port = free_port()
    code = "import sys; print('relay: invalid env-var config: X', file=sys.stderr); sys.exit(2)"
    with pytest.raises(RuntimeError, match="(?s)exited with 2.*invalid env-var config"):
        Relay(sys.executable, ["-c", code], wait_port=port)


def test_wait_for_log_fails_fast_when_output_closes():
    r = Relay(sys.executable, ["-c", "import sys; print('only line', file=sys.stderr)"])
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match="(?s)closed its output.*only line"):
        r.wait_for_log(lambda l: "never" in l, timeout=30)
    assert time.monotonic() - t0 < 10
    assert r.wait() == 0


def test_wait_for_log_times_out():
    with Relay(sys.executable, ["-c", "import time; time.sleep(60)"]) as r:
        with pytest.raises(AssertionError, match="timed out"):
            r.wait_for_log(lambda l: True, timeout=0.2)


def test_stop_kills_a_process_that_ignores_sigterm():
    code = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            "print('armed', file=sys.stderr, flush=True); time.sleep(60)")
    r = Relay(sys.executable, ["-c", code])
    r.wait_for_log(lambda l: l == "armed")
    assert r.stop(grace=0.2) == -signal.SIGKILL


def test_parse_logfmt_quotes_and_bare_keys():
    assert parse_logfmt('ts=1 level=warn msg="a b" flag') == {
        "ts": "1", "level": "warn", "msg": "a b", "flag": ""}
