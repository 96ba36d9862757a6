"""End-to-end tests of the single-instance self-check (docs/architecture.md (v1 = single-instance)) against the relay binary.

Contract: RELAY_BIN (default .build/debug/pyrycode-relay) is started as
    RELAY_BIN --insecure-listen 127.0.0.1:PORT --metrics-listen "" --runtime-dir DIR
It binds PORT only after the check passed; a refusal exits 2 with the ERROR line on stderr.
Python 3.11, stdlib + pytest. Loopback only.
"""
import os
import pathlib
import shutil
import socket
import struct
import tempfile
import threading
import time

import pytest

from conftest import Relay as Process, free_port

REPO = pathlib.Path(__file__).resolve().parents[2]
RELAY_BIN = os.environ.get("RELAY_BIN", str(REPO / ".build" / "debug" / "pyrycode-relay"))

HEADLINE = (
    "ERROR: multi-instance deploy detected, relay registry is in-memory and cannot share state "
    "across replicas. Set PYRYCODE_RELAY_SINGLE_INSTANCE=1 to bypass (NOT recommended for production)."
)
POINTER = ('  see: /usr/local/share/doc/pyrycode-relay/architecture.md (docs/architecture.md in the source tree), '
           'section "v1 = single-instance"')
OUR_IP = "fdaa:0:1::1"
OTHER_IP = "fdaa:0:1::2"
START_TIMEOUT = 10.0


def connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The test runner's environment minus anything the check reads, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYRYCODE_", "FLY_", "KUBERNETES_")) and k not in ("RUNTIME_DIRECTORY", "HOSTNAME")
    }
    env.update(extra)
    return env


def relay_argv(port: int, runtime_dir) -> list[str]:
    return [RELAY_BIN, "--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", "", "--runtime-dir", str(runtime_dir)]


class Relay(Process):
    """The relay under this file's env contract: a clean environment, optionally wrapped
    (setpriv, strace); output captured by the shared harness (conftest.py)."""

    def __init__(self, port: int, runtime_dir, env: dict[str, str] | None = None, wrap: list[str] | None = None):
        argv = (wrap or []) + relay_argv(port, runtime_dir)
        super().__init__(argv[0], argv[1:], env=clean_env(env or {}), inherit_env=False)
        self.port = port

    @property
    def stderr(self) -> str:
        return self.stderr_text()

    def wait_listening(self) -> None:
        try:
            self.wait_for_port(self.port, timeout=START_TIMEOUT)
        except RuntimeError as e:
            pytest.fail(str(e))

    def expect_refusal(self) -> str:
        """Waits for exit, asserting the port is never connectable meanwhile; returns stderr."""
        deadline = time.monotonic() + START_TIMEOUT
        # Polled on purpose: the assertion is about every moment of the run, not an event.
        while self.proc.poll() is None:
            assert not connectable(self.port), "a refused relay bound its listener"
            assert time.monotonic() < deadline, "relay neither refused nor exited"
            time.sleep(0.02)
        self.wait()
        assert self.proc.returncode == 2, self.stderr
        assert not connectable(self.port)
        assert "relay_started" not in self.stderr
        return self.stderr


class FakeFlyDNS:
    """UDP resolver on 127.0.0.1 answering every AAAA query with `addresses` (None: never answers)."""

    def __init__(self, addresses: list[str] | None):
        self.addresses = addresses
        self.queries: list[bytes] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries.append(query)
            if self.addresses is None or len(query) < 12:
                continue
            qid = query[:2]
            header = qid + struct.pack(">HHHHH", 0x8180, 1, len(self.addresses), 0, 0)
            answers = b"".join(
                # owner name: compression pointer to the question at offset 12 (RFC 1035 §4.1.4)
                struct.pack(">HHHIH", 0xC00C, 28, 1, 5, 16) + socket.inet_pton(socket.AF_INET6, a)
                for a in self.addresses
            )
            self.sock.sendto(header + query[12:] + answers, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="session", autouse=True)
def relay_binary():
    if not os.access(RELAY_BIN, os.X_OK):
        pytest.fail(f"relay binary not found: {RELAY_BIN} (build it or set RELAY_BIN)", pytrace=False)


@pytest.fixture
def relays():
    started: list[Relay] = []

    def start(*args, **kwargs) -> Relay:
        r = Relay(*args, **kwargs)
        started.append(r)
        return r

    yield start
    for r in started:
        if r.proc.poll() is None:
            r.stop()


@pytest.fixture
def fly_dns():
    servers: list[FakeFlyDNS] = []

    def make(addresses):
        s = FakeFlyDNS(addresses)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def fly_env(dns: FakeFlyDNS, **extra) -> dict[str, str]:
    return {"FLY_APP_NAME": "myapp", "FLY_PRIVATE_IP": OUR_IP, "PYRYCODE_RELAY_FLY_DNS_SERVER": dns.address, **extra}


def test_second_relay_on_same_runtime_dir_refuses_then_starts_after_first_exits(relays, tmp_path):
    first = relays(free_port(), tmp_path)
    first.wait_listening()
    assert (tmp_path / "instance.lock").read_text() == f"{first.proc.pid}\n"

    second_port = free_port()
    err = relays(second_port, tmp_path).expect_refusal()
    lines = err.splitlines()
    assert lines[0] == HEADLINE
    assert f"held by another relay, pid {first.proc.pid}" in err
    # After the evidence: what to do, then where the reasoning is (deploy/install.sh installs it there).
    assert lines[-2:] == [
        f"  fix: stop the relay with pid {first.proc.pid} (ps -p {first.proc.pid} -o pid,args), "
        "or give this relay another --runtime-dir if it serves a different deployment",
        POINTER], err

    assert first.stop() == 0
    again = relays(second_port, tmp_path)
    again.wait_listening()
    assert (tmp_path / "instance.lock").read_text() == f"{again.proc.pid}\n"
    assert again.stop() == 0
    assert "msg=single_instance_check same_host=single fly=absent kubernetes=absent" in again.stderr


def test_different_runtime_dirs_run_side_by_side(relays, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = relays(free_port(), tmp_path / "a")
    b = relays(free_port(), tmp_path / "b")
    a.wait_listening()
    b.wait_listening()
    assert a.stop() == 0 and b.stop() == 0
    for r in (a, b):
        assert "same_host=single" in r.stderr


def test_missing_runtime_dir_is_created_0700_and_checked(relays, tmp_path):
    r = relays(free_port(), tmp_path / "absent")
    r.wait_listening()
    assert (tmp_path / "absent").stat().st_mode & 0o7777 == 0o700
    assert (tmp_path / "absent" / "instance.lock").read_text() == f"{r.proc.pid}\n"
    assert r.stop() == 0
    assert f"level=info msg=runtime_dir_created path={tmp_path / 'absent'}" in r.stderr
    assert "msg=single_instance_check same_host=single" in r.stderr


def test_uncreatable_runtime_dir_refuses_before_binding(relays, tmp_path):
    (tmp_path / "file").write_text("")
    for bad, why in [(tmp_path / "no" / "such", "cannot create it: No such file or directory"),
                     (tmp_path / "file", "exists and is not a directory")]:
        err = relays(free_port(), bad).expect_refusal()
        assert err.splitlines() == [f"pyrycode-relay: --runtime-dir {bad}: {why}"]


def test_fly_two_addresses_refuses_even_with_assertion(relays, fly_dns, tmp_path):
    dns = fly_dns([OUR_IP, OTHER_IP])
    env = fly_env(dns, PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE="true")
    err = relays(free_port(), tmp_path, env).expect_refusal()
    assert err.splitlines()[0] == HEADLINE
    assert "evidence: fly=multiple:" in err
    assert len(dns.queries) == 1
    assert b"\x05myapp\x08internal\x00\x00\x1c\x00\x01" in dns.queries[0]


def test_fly_only_our_address_starts(relays, fly_dns, tmp_path):
    dns = fly_dns([OUR_IP])
    r = relays(free_port(), tmp_path, fly_env(dns))
    r.wait_listening()
    assert r.stop() == 0
    assert "level=info msg=single_instance_check same_host=single fly=single kubernetes=absent" in r.stderr
    assert OUR_IP not in r.stderr  # env values are never logged


def test_fly_no_answer_without_assertion_refuses(relays, fly_dns, tmp_path):
    dns = fly_dns(None)
    t0 = time.monotonic()
    err = relays(free_port(), tmp_path, fly_env(dns)).expect_refusal()
    elapsed = time.monotonic() - t0
    assert err.splitlines()[0] == HEADLINE
    assert "evidence: fly=unknown:" in err and "timeout after 2000 ms" in err
    assert "PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE=true is not set" in err
    assert 1.9 <= elapsed < 6.0


def test_fly_no_answer_with_assertion_starts_with_warn(relays, fly_dns, tmp_path):
    dns = fly_dns(None)
    r = relays(free_port(), tmp_path, fly_env(dns, PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE="true"))
    r.wait_listening()
    assert r.stop() == 0
    assert "level=warn msg=single_instance_check same_host=single fly=unknown kubernetes=absent" in r.stderr


def test_bypass_starts_with_warn_and_probes_nothing(relays, fly_dns, tmp_path):
    holder = relays(free_port(), tmp_path)
    holder.wait_listening()
    dns = fly_dns([OUR_IP, OTHER_IP])
    r = relays(free_port(), tmp_path, fly_env(dns, PYRYCODE_RELAY_SINGLE_INSTANCE="1"))
    r.wait_listening()  # despite the held lock and a multi-address Fly answer
    assert r.stop() == 0
    assert "level=warn msg=single_instance_bypass" in r.stderr
    assert "NOT recommended for production" in r.stderr
    assert dns.queries == []  # the probes did not run
    assert (tmp_path / "instance.lock").read_text() == f"{holder.proc.pid}\n"


def test_production_without_assertion_refuses(relays, tmp_path):
    err = relays(free_port(), tmp_path, {"PYRYCODE_RELAY_PRODUCTION": "1"}).expect_refusal()
    assert err.splitlines()[0] == HEADLINE
    assert "PYRYCODE_RELAY_PRODUCTION=1 requires PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE=true" in err


def test_kubernetes_without_assertion_refuses(relays, tmp_path):
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "HOSTNAME": "relay-7d9f8c6b5-x7k2p"}
    err = relays(free_port(), tmp_path, env).expect_refusal()
    assert "evidence: kubernetes=unknown:" in err


@pytest.mark.parametrize(
    "name,value,reason",
    [
        ("PYRYCODE_RELAY_SINGLE_INSTANCE", "", 'empty value; expected "1" or unset'),
        ("PYRYCODE_RELAY_SINGLE_INSTANCE", "true", 'malformed value; expected "1" or unset'),
        ("PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE", "1", 'malformed value; expected "true" or unset'),
        ("PYRYCODE_RELAY_PRODUCTION", " 1", 'malformed value (surrounding whitespace); expected "1" or unset'),
        ("PYRYCODE_RELAY_FCM_CREDENTIALS", "", "empty value; expected a service-account JSON key or unset"),
    ],
)
def test_invalid_env_exits_2_before_binding(relays, tmp_path, name, value, reason):
    err = relays(free_port(), tmp_path, {name: value}).expect_refusal()
    assert err.strip() == f"relay: invalid env-var config: {name}: {reason}"
    assert not (tmp_path / "instance.lock").exists()  # env validation precedes the check


def test_refused_run_makes_no_bind_or_listen_syscall(relays, fly_dns, tmp_path):
    """Stronger than the connect probe: trace the refused process's socket syscalls."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace not installed")
    trace = tmp_path / "trace.txt"
    dns = fly_dns([OUR_IP, OTHER_IP])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    r = relays(free_port(), run_dir, fly_env(dns), wrap=[strace, "-f", "-qq", "-e", "trace=socket,bind,listen", "-o", str(trace)])
    r.wait(timeout=START_TIMEOUT)
    text = trace.read_text() if trace.exists() else ""
    if r.proc.returncode != 2 and ("PTRACE" in r.stderr or not text):
        pytest.skip("ptrace not permitted here")
    assert r.proc.returncode == 2
    assert "socket(AF_INET, SOCK_DGRAM" in text  # the Fly probe ran: the trace is real
    assert "bind(" not in text and "listen(" not in text


def test_lock_owned_by_another_user_still_conflicts(relays, request):
    """A relay run as another user opens the lock read-only; flock still sees the holder."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run a relay as another user")
    # pytest's tmp_path sits under a 0700 directory another user cannot traverse.
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="relay-si-"))
    run_dir.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(run_dir, ignore_errors=True))
    holder = relays(free_port(), run_dir)
    holder.wait_listening()
    as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    err = relays(free_port(), run_dir, wrap=as_nobody).expect_refusal()
    assert f"held by another relay, pid {holder.proc.pid}" in err
    assert holder.stop() == 0
    r = relays(free_port(), run_dir, wrap=as_nobody)
    r.wait_listening()
    assert r.stop() == 0
    assert "same_host=single" in r.stderr
