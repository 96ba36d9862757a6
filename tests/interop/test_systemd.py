"""The relay under systemd-style supervision (docs/operations.md): the sd_notify protocol, socket
activation, and the static release build that runs without a Swift toolchain.

- Notify: the test plays systemd's side of NOTIFY_SOCKET (an AF_UNIX datagram socket in a temp
  dir, or in the abstract namespace) and checks READY=1 (sent only once the port accepts),
  WATCHDOG=1 at half of WATCHDOG_USEC, STATUS= with live counts, STOPPING=1 on SIGTERM.
- Socket activation: `systemd-socket-activate` binds the port and execs the relay with
  LISTEN_FDS=1; the relay serves /healthz and a WebSocket pair on the inherited socket (binding
  the port itself would fail with EADDRINUSE and exit 1).
- Static build: `swift build -c release --static-swift-stdlib` into .build-static; the binary
  runs with the toolchain's runtime libraries hidden (a tmpfs over them in a private mount
  namespace when possible, and always an empty LD_LIBRARY_PATH and an `ldd` check).
Loopback only; every wait is bounded and event-driven.
"""
import asyncio
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import relaylib
from conftest import REPO_ROOT, Relay, free_port, parse_logfmt

WAIT = 10.0  # seconds: bound for any single expected event


class NotifyReceiver:
    """systemd's end of NOTIFY_SOCKET: collects datagrams with their arrival time.

    With `check_port`, the reader thread tries a TCP connect to 127.0.0.1:check_port the moment
    a READY=1 datagram arrives and records whether it succeeded (READY must follow listen()).
    """

    def __init__(self, address, check_port=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.check_port = check_port
        self.messages = []  # (monotonic time, text, port_accepted or None)
        self.cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            text = data.decode("utf-8", "replace")
            accepted = None
            if self.check_port is not None and "READY=1" in text.split("\n"):
                try:
                    with socket.create_connection(("127.0.0.1", self.check_port), timeout=1.0):
                        accepted = True
                except OSError:
                    accepted = False
            with self.cond:
                self.messages.append((now, text, accepted))
                self.cond.notify_all()

    def wait_for(self, pred, timeout=WAIT, start=0):
        """First message index >= start with pred(text) true; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.messages):
                    if pred(self.messages[i][1]):
                        return i
                    i += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("notify: timed out; got %r" % [m[1] for m in self.messages[-20:]])
                self.cond.wait(remaining)

    def texts(self):
        with self.cond:
            return [m[1] for m in self.messages]

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def fields(text):
    return dict(line.partition("=")[::2] for line in text.split("\n") if line)


def relay_args(port, rundir):
    return ["--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{free_port()}",
            "--runtime-dir", rundir]


async def pair_and_echo(relay, server_id):
    """Binary + phone on `relay`; one message each way; returns the open sockets."""
    binary = await relaylib.open_binary(relay, server_id)
    phone = await relaylib.open_phone(relay, server_id)
    conn_id = await relaylib.phone_conn_id(binary, phone)
    await binary.send('{"conn_id":"%s","frame":{"pong":1}}' % conn_id)
    got = await asyncio.wait_for(phone.recv(), 5)
    assert got == '{"pong":1}'
    return binary, phone


@pytest.mark.parametrize("namespace", ["path", "abstract"])
def test_notify_ready_watchdog_status_stopping(relay_bin, start_relay, tmp_path, namespace):
    port = free_port()
    if namespace == "path":
        address = env_value = str(tmp_path / "notify")
    else:
        name = "pyry-test-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
        address, env_value = "\0" + name, "@" + name
    rx = NotifyReceiver(address, check_port=port)
    try:
        # No wait_port: a connect before READY would hide a READY sent before listen().
        r = start_relay(relay_bin, relay_args(port, str(tmp_path)),
                        env={"NOTIFY_SOCKET": env_value, "WATCHDOG_USEC": "200000"})
        i_ready = rx.wait_for(lambda t: "READY=1" in t.split("\n"))
        t_ready, ready_text, accepted = rx.messages[i_ready]
        assert i_ready == 0, "READY=1 must be the first notification"
        assert accepted is True, "READY=1 arrived before the port accepted connections"
        assert fields(ready_text)["STATUS"] == "binaries=0 phones=0 connections=0"

        # WATCHDOG_USEC=200000 → a ping every 100 ms: at least 5 within a second of READY.
        i = i_ready
        for _ in range(5):
            i = rx.wait_for(lambda t: t == "WATCHDOG=1", start=i + 1, timeout=3.0)
        assert rx.messages[i][0] - t_ready < 1.0, "5 watchdog pings took %.2f s" % (rx.messages[i][0] - t_ready)

        # STATUS= follows the live counts (rate-limited to one per second).
        relay = relaylib.RunningRelay(r, port, None)

        async def scenario():
            binary, phone = await pair_and_echo(relay, "sd-status")
            rx.wait_for(lambda t: t == "STATUS=binaries=1 phones=1 connections=2", timeout=WAIT)
            await phone.close()
            await binary.close()
        asyncio.run(scenario())

        n = len(rx.messages)
        r.signal(signal.SIGTERM)
        i_stop = rx.wait_for(lambda t: "STOPPING=1" in t.split("\n"), start=n)
        assert fields(rx.messages[i_stop][1])["STATUS"].startswith("draining ")
        assert r.wait(WAIT) == 0
        assert sum(1 for t in rx.texts() if "READY=1" in t.split("\n")) == 1
    finally:
        rx.close()


def test_watchdog_for_another_pid_is_not_ours(relay_bin, start_relay, tmp_path):
    """WATCHDOG_PID names the process the watchdog is meant for (sd_watchdog_enabled(3))."""
    port = free_port()
    rx = NotifyReceiver(str(tmp_path / "notify"))
    try:
        r = start_relay(relay_bin, relay_args(port, str(tmp_path)),
                        env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000",
                             "WATCHDOG_PID": "1"})
        rx.wait_for(lambda t: "READY=1" in t.split("\n"))
        relay = relaylib.RunningRelay(r, port, None)

        async def scenario():
            binary, phone = await pair_and_echo(relay, "sd-nowatchdog")
            # A STATUS change comes ≥ 1 s after READY: 10 watchdog periods in which none may arrive.
            rx.wait_for(lambda t: t == "STATUS=binaries=1 phones=1 connections=2", timeout=WAIT)
            await phone.close()
            await binary.close()
        asyncio.run(scenario())
        assert "WATCHDOG=1" not in rx.texts()
    finally:
        rx.close()


def test_socket_activation_serves_on_the_inherited_socket(relay_bin, start_relay, tmp_path):
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate not installed")
    port = free_port()
    # The tool binds the port, waits for the first connection, then execs the relay with
    # LISTEN_FDS=1 LISTEN_PID=<same pid>. wait_port's connect is that first connection.
    r = start_relay(tool, ["-l", f"127.0.0.1:{port}", relay_bin, *relay_args(port, str(tmp_path))],
                    wait_port=port)
    r.wait_for_log(lambda l: parse_logfmt(l).get("msg") == "relay_started", timeout=WAIT)
    act = r.wait_for_log(lambda l: parse_logfmt(l).get("msg") == "socket_activation")
    assert parse_logfmt(act)["listen"] == f"127.0.0.1:{port}"
    assert not any(l.startswith("pyrycode-relay: listen") for l in r.stderr_text().splitlines())  # no bind error

    resp = relaylib.http_get(port, "/healthz")
    assert resp.startswith(b"HTTP/1.1 200 "), resp[:200]
    assert b'"status":"ok"' in resp

    relay = relaylib.RunningRelay(r, port, None)

    async def scenario():
        binary, phone = await pair_and_echo(relay, "sd-activated")
        await phone.close()
        await binary.close()
    asyncio.run(scenario())
    assert r.stop() == 0


def test_listen_fds_for_another_pid_are_ignored(relay_bin, start_relay, tmp_path):
    port = free_port()
    r = start_relay(relay_bin, relay_args(port, str(tmp_path)),
                    env={"LISTEN_PID": "1", "LISTEN_FDS": "1"}, wait_port=port)
    assert "socket_activation" not in r.stderr_text()
    assert relaylib.http_get(port, "/healthz").startswith(b"HTTP/1.1 200 ")


def test_inherited_datagram_socket_is_refused(relay_bin, tmp_path):
    """fd 3 that is not a listening stream socket → boot failure, exit 1 (docs/operations.md § Boot order, step 6)."""
    port = free_port()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    script = 'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@" 3<&%d' % udp.fileno()
    try:
        proc = subprocess.run(["bash", "-c", script, relay_bin, *relay_args(port, str(tmp_path))],
                              pass_fds=[udp.fileno()], capture_output=True, text=True, timeout=WAIT)
    finally:
        udp.close()
    assert proc.returncode == 1, proc.stderr
    assert "socket_activation_unused" in proc.stderr and "not a stream socket" in proc.stderr
    assert "none of the 1 inherited descriptors is a listening stream socket" in proc.stderr


# -- the static release build ----------------------------------------------------------------

STATIC_SCRATCH = ".build-static"


def toolchain_runtime_dir():
    """The directory holding the toolchain's libswiftCore.so (e.g. /opt/swift/usr/lib/swift)."""
    swift = shutil.which("swift")
    if swift is None:
        return None
    lib = pathlib.Path(os.path.realpath(swift)).parents[1] / "lib" / "swift"
    return lib if (lib / "linux" / "libswiftCore.so").exists() else None


@pytest.fixture(scope="module")
def static_binary():
    if shutil.which("swift") is None:
        pytest.skip("no swift toolchain to build with")
    cmd = ["swift", "build", "-c", "release", "--static-swift-stdlib", "--product", "pyrycode-relay",
           "--scratch-path", STATIC_SCRATCH]
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=REPO_ROOT, check=True, timeout=3600)
    print("static release build: %.1f s" % (time.monotonic() - t0))
    path = pathlib.Path(REPO_ROOT) / STATIC_SCRATCH / "release" / "pyrycode-relay"
    assert os.access(path, os.X_OK)
    return str(path)


def test_static_binary_needs_no_swift_runtime(static_binary):
    ldd = subprocess.run(["ldd", static_binary], env={"LD_LIBRARY_PATH": "", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout
    for lib in ("libswift", "libFoundation", "libdispatch", "libBlocksRuntime", "not found"):
        assert lib not in ldd, ldd
    runtime = toolchain_runtime_dir()
    if runtime is not None:
        assert str(runtime.parents[2]) not in ldd, ldd  # nothing loaded from the toolchain tree
    dynamic = subprocess.run(["readelf", "-d", static_binary], capture_output=True, text=True).stdout
    assert "swift" not in "\n".join(l for l in dynamic.splitlines() if "RUNPATH" in l or "RPATH" in l)


def test_static_binary_serves_with_the_toolchain_hidden(static_binary, relay_bin, tmp_path):
    port = free_port()
    args = relay_args(port, str(tmp_path))
    env = {"LD_LIBRARY_PATH": "", "PATH": "/usr/bin:/bin"}
    runtime = toolchain_runtime_dir()
    argv0, argv = static_binary, args
    hidden = False
    if runtime is not None and shutil.which("unshare") and os.geteuid() == 0:
        # A private mount namespace with an empty tmpfs over the runtime directory: the loader
        # cannot find libswiftCore.so even if something pointed at it.
        probe = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs none "$0" && ls -A "$0"', str(runtime)],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout == "":
            hidden = True
            # Control: the ordinary (dynamically linked) build cannot even start that way.
            control = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs none "$0" && exec "$1" --version',
                                      str(runtime), relay_bin], env=env, capture_output=True, text=True)
            assert control.returncode != 0 and "libswift" in control.stderr, (control.returncode, control.stderr)
            argv0 = "unshare"
            argv = ["-m", "sh", "-c", 'mount -t tmpfs none "$0" && shift && exec "$@"', str(runtime),
                    "ignored", static_binary, *args]
    with Relay(argv0, argv, env=env, inherit_env=False, wait_port=port) as r:
        resp = relaylib.http_get(port, "/healthz")
        assert resp.startswith(b"HTTP/1.1 200 "), resp[:200]
        assert r.stop() == 0
    if not hidden:
        pytest.skip("served with LD_LIBRARY_PATH empty, but could not hide the toolchain (need root + unshare)")
