"""Shared fixtures for the Python interop tests (run by `make test` via scripts/test-all.sh).

Run by hand:  scripts/python-venv.sh && RELAY_BIN=.build/debug/pyrycode-relay .venv-test/bin/pytest tests/interop

Provided:
  relay_bin        fixture: path of the relay binary ($RELAY_BIN, default .build/debug/pyrycode-relay,
                   relative to the repo root); the test fails when it does not exist.
  free_port()      a TCP port on 127.0.0.1 that was free a moment ago.
  Relay            a started process whose stdout/stderr lines are captured by reader threads;
                   can wait for a TCP port and for log lines; stops with SIGTERM, then SIGKILL.
  start_relay      fixture: factory that starts Relay processes and stops them at teardown.
  parse_logfmt()   the relay's logfmt stderr line (docs/operations.md) -> dict, for wait_for_log predicates.

Example:
    def test_boot(relay_bin, start_relay):
        port = free_port()
        r = start_relay(relay_bin, ["--insecure-listen", f"127.0.0.1:{port}",
                                    "--metrics-listen", f"127.0.0.1:{free_port()}"],
                        wait_port=port)
        r.wait_for_log(lambda line: parse_logfmt(line).get("msg") == "relay_started")
        assert r.stop() == 0

No fixed sleeps: port readiness is polled every 10 ms up to a bound, and log waits block on a
condition variable that the reader threads signal on every new line and at end of output.
"""

import os
import random
import shlex
import signal
import socket
import subprocess
import threading
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_RELAY_BIN = ".build/debug/pyrycode-relay"

PORT_POLL_INTERVAL = 0.01  # seconds between connect attempts while waiting for a port
STOP_GRACE = 5.0           # seconds between SIGTERM and SIGKILL at teardown


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host="127.0.0.1"):
    """Return a TCP port on `host` that is free now, below the kernel's ephemeral range.

    A port the kernel hands out for port 0 is also one it hands out as the local port of an
    outgoing connection, and this suite opens thousands of those: one could take the port
    before the relay binds it (`address already in use`). Below the range only another
    listener can, and a random pick makes that unlikely. (Binding port 0 in the relay itself
    would close the race, but the relay's flags take a real port.)
    """
    low = _ephemeral_low()
    if low > 12000:
        for _ in range(100):
            port = random.randint(10000, low - 1)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def parse_logfmt(line):
    """Parse one logfmt line (`key=value key="quoted value"`) into a dict of strings.

    Tokens without '=' map to "". Good enough for predicates; not a validator.
    """
    out = {}
    try:
        tokens = shlex.split(line, posix=True)
    except ValueError:  # unbalanced quote: fall back to whitespace split
        tokens = line.split()
    for tok in tokens:
        key, sep, value = tok.partition("=")
        out[key] = value if sep else ""
    return out


class Relay:
    """A child process with captured output.

    `lines` holds stderr lines (without the trailing newline) in arrival order; `stdout_lines`
    holds stdout lines. Both lists only grow; read them under `cond` or after `stop()`.
    """

    def __init__(self, binary, args=(), env=None, wait_port=None, wait_host="127.0.0.1",
                 wait_timeout=10.0, inherit_env=True):
        """Start `binary args...`.

        env: extra variables, merged over os.environ (or used alone when inherit_env=False).
        wait_port: when given, block until wait_host:wait_port accepts a TCP connection, raising
        RuntimeError (with the captured stderr) if the process exits first or the bound passes.
        """
        self.argv = [str(binary)] + [str(a) for a in args]
        full_env = dict(os.environ) if inherit_env else {}
        if env:
            full_env.update({k: str(v) for k, v in env.items()})
        self.lines = []
        self.stdout_lines = []
        self.cond = threading.Condition()
        self._eof = 0  # number of output streams that reached end of file
        self.proc = subprocess.Popen(
            self.argv, env=full_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout_lines), daemon=True),
        ]
        for t in self._readers:
            t.start()
        if wait_port is not None:
            try:
                self.wait_for_port(wait_port, host=wait_host, timeout=wait_timeout)
            except BaseException:
                self.stop()
                raise

    # -- output capture -------------------------------------------------------------------

    def _read(self, stream, sink):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self.cond:
                sink.append(line)
                self.cond.notify_all()
        with self.cond:
            self._eof += 1
            self.cond.notify_all()

    def _output_closed(self):
        return self._eof >= len(self._readers)

    def wait_for_log(self, pred, timeout=5.0, start=0, stream="stderr"):
        """Return the first captured line at index >= `start` for which pred(line) is true.

        Blocks on the condition variable until such a line arrives. Raises AssertionError when
        `timeout` seconds pass or the process closed its output without a match (the message
        carries the last captured lines). stream: "stderr" or "stdout".
        """
        sink = self.lines if stream == "stderr" else self.stdout_lines
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(sink):
                    if pred(sink[i]):
                        return sink[i]
                    i += 1
                if self._output_closed():
                    reason = "process closed its output (exit %r)" % self.proc.poll()
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    reason = "timed out after %.1f s" % timeout
                    break
                self.cond.wait(remaining)
            tail = "\n".join(sink[-20:])
        raise AssertionError("wait_for_log: %s; last %s lines:\n%s" % (reason, stream, tail))

    def stderr_text(self):
        with self.cond:
            return "\n".join(self.lines)

    # -- readiness ------------------------------------------------------------------------

    def wait_for_port(self, port, host="127.0.0.1", timeout=10.0):
        """Poll every 10 ms until host:port accepts a TCP connection (bounded by `timeout`).

        Raises RuntimeError at once if the process exits first, with its stderr.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._join_readers(1.0)
                raise RuntimeError("%s exited with %d before listening on %s:%d; stderr:\n%s" % (
                    self.argv[0], self.proc.returncode, host, port, self.stderr_text()))
            try:
                with socket.create_connection((host, port), timeout=PORT_POLL_INTERVAL * 10):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError("%s did not listen on %s:%d within %.1f s; stderr:\n%s" % (
                    self.argv[0], host, port, timeout, self.stderr_text()))
            time.sleep(PORT_POLL_INTERVAL)

    # -- lifetime -------------------------------------------------------------------------

    def _join_readers(self, timeout):
        for t in self._readers:
            t.join(timeout)

    def wait(self, timeout=None):
        """Wait for the process to exit on its own; return its exit code."""
        code = self.proc.wait(timeout)
        self._join_readers(1.0)
        return code

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, grace=STOP_GRACE):
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Return the exit code
        (negative signal number when killed by a signal, as subprocess reports it)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._join_readers(1.0)
        return self.proc.returncode

    @property
    def pid(self):
        return self.proc.pid

    @property
    def returncode(self):
        return self.proc.poll()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


# -- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def relay_bin():
    """Absolute path of the relay binary under test. A missing binary fails the test: a suite
    that skipped everything would otherwise report green without having run the relay."""
    path = os.environ.get("RELAY_BIN", DEFAULT_RELAY_BIN)
    if not os.path.isabs(path):
        path = os.path.join(REPO_ROOT, path)
    if not os.access(path, os.X_OK):
        pytest.fail("relay binary not found: %s (build it, or set RELAY_BIN)" % path, pytrace=False)
    return path


@pytest.fixture
def start_relay():
    """Factory: start_relay(binary, args, env=None, wait_port=None, ...) -> Relay.

    Every process started through it is stopped (SIGTERM, then SIGKILL after 5 s) at teardown.
    """
    started = []

    def start(binary, args=(), **kwargs):
        r = Relay(binary, args, **kwargs)
        started.append(r)
        return r

    yield start
    for r in reversed(started):
        r.stop()
