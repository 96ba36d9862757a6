"""Log volume and log back-pressure against the built relay (docs/operations.md, "Log volume").

- A binary that floods 7-byte invalid envelopes gets a bounded number of log lines per
  connection and interval, and every suppressed line is counted in a `log_suppressed` summary.
- With stderr on a pipe nobody reads, the loop keeps serving: /healthz and a well-behaved pair
  stay responsive, lines beyond the buffer are dropped and counted, and the summary line
  arrives once the reader catches up.
"""

import asyncio
import fcntl
import os
import re
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import free_port, parse_logfmt
from relaylib import (RawClient, RunningRelay, binary_headers, http_get, open_binary, open_phone, phone_headers,
                      phone_conn_id, recv_json, scrape, start, wait_until)

BURST_PER_CONNECTION = 5  # Limits.logBurstPerConnection
INTERVAL_S = 10  # Limits.logSuppressionIntervalMs
VALUE_MAX_BYTES = 128  # Limits.logValueMaxBytes
LINE_MAX_BYTES = 512  # ts, level, msg, server_id and conn_id (each clipped to 128 bytes), with quoting

INVALID = b"\x81\x81\x01\x02\x03\x04" + bytes([ord("1") ^ 0x01])  # masked text frame `1`: 7 bytes


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def flood(client, frames):
    """Sends `frames` invalid envelopes, then a ping; returns once the relay answered the pong,
    that is after it handled every frame before it."""
    batch = INVALID * 10_000
    sent = 0
    while sent < frames:
        n = min(10_000, frames - sent)
        client.sock.sendall(batch if n == 10_000 else INVALID * n)
        sent += n
    client.send_frame(0x9, b"flood-end")
    while True:
        f = client.read_frame()
        assert f is not None, "the relay closed the flooding binary"
        if f == (0xA, b"flood-end"):
            return


def test_invalid_envelope_flood_logs_a_bounded_number_of_lines_per_connection(relay_bin, start_relay):
    r = start(start_relay, relay_bin)
    server_id = "flood-" + "a" * (VALUE_MAX_BYTES - 6)  # the longest server-id the upgrade accepts
    b = RawClient(r.port, "/v1/server", binary_headers(server_id))
    assert b.status == 101
    claimed = parse_logfmt(r.proc.wait_for_log(lambda l: "msg=server_claimed" in l))
    conn_id = claimed["conn_id"]
    # Clipped to the cap, keeping the random suffix that tells connections apart.
    assert len(conn_id.encode()) <= VALUE_MAX_BYTES and re.fullmatch(r"server-flood-a+…a*-[0-9a-f]{8}", conn_id)
    mark = len(r.proc.lines)

    frames = 100_000
    t0 = time.monotonic()
    flood(b, frames)
    elapsed = time.monotonic() - t0
    during = r.proc.lines[mark:]
    log_bytes = sum(len(l.encode()) + 1 for l in during)
    # Stated bound: per connection and event, BURST + 1 lines per interval, each under
    # LINE_MAX_BYTES; the flood may straddle one interval boundary more than its length says.
    intervals = int(elapsed // INTERVAL_S) + 2
    assert log_bytes <= intervals * (BURST_PER_CONNECTION + 1) * LINE_MAX_BYTES, (log_bytes, elapsed)
    assert all(len(l.encode()) <= LINE_MAX_BYTES for l in during)
    print(f"{frames} invalid envelopes in {elapsed:.2f} s: {len(during)} log lines, {log_bytes} bytes")

    # When the connection ends, every frame is accounted for: written, or counted in a summary.
    b.close()
    r.proc.wait_for_log(lambda l: "msg=binary_disconnected" in l, start=mark)
    events = [parse_logfmt(l) for l in r.proc.lines[mark:]]
    written = [e for e in events if e["msg"] == "binary_forwarder_unmarshal_err"]
    summaries = [e for e in events if e["msg"] == "log_suppressed" and e["event"] == "binary_forwarder_unmarshal_err"]
    assert 1 <= len(written) and all(e["conn_id"] == conn_id for e in written)
    assert summaries and all(e["conn_id"] == conn_id and e["duration"] == f"{INTERVAL_S}s" for e in summaries)
    assert len(written) + sum(int(e["count"]) for e in summaries) == frames


class SlowReaderRelay:
    """The relay with stderr on a small pipe, or on a stream socket as under systemd (journald),
    that the test reads only when told to."""

    def __init__(self, relay_bin, stderr_kind, *extra):
        self.port, self.metrics_port = free_port(), free_port()
        if stderr_kind == "pipe":
            self.read_fd, write_fd = os.pipe()
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 4096)  # the smallest pipe: one page
        else:
            reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)  # the kernel's minimum
            self.read_fd, write_fd = reader.detach(), writer.detach()
        self.proc = subprocess.Popen(
            [relay_bin, "--insecure-listen", f"127.0.0.1:{self.port}", "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
             "--runtime-dir", tempfile.mkdtemp(prefix="relay-run-"), *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=write_fd)
        os.close(write_fd)
        self.lines = []
        self.reading = False
        self.cond = threading.Condition()
        self.relay = RunningRelay(self.proc, self.port, self.metrics_port)

    def wait_listening(self):
        def up():
            assert self.proc.poll() is None, "the relay exited"
            try:
                http_get(self.port, "/healthz", timeout=0.2)
                return True
            except OSError:
                return False
        wait_until(up, timeout=10, what="the relay's port")

    def start_reading(self):
        self.reading = True

        def read():
            with os.fdopen(self.read_fd, "rb") as f:
                for raw in f:
                    with self.cond:
                        self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                        self.cond.notify_all()
        threading.Thread(target=read, daemon=True).start()

    def wait_for_line(self, pred, timeout=10):
        with self.cond:
            assert self.cond.wait_for(lambda: any(pred(l) for l in self.lines), timeout), self.lines[-10:]
            return next(l for l in self.lines if pred(l))

    def stop(self):
        if not self.reading:
            os.close(self.read_fd)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize("stderr_kind", ["pipe", "socket"])
def test_a_stalled_stderr_reader_never_stalls_the_loop(relay_bin, stderr_kind):
    r = SlowReaderRelay(relay_bin, stderr_kind, "--log-buffer-bytes", "16384")
    try:
        r.wait_listening()
        # Non-blocking writes without O_NONBLOCK on fd 2 itself: the description stderr shares
        # with the parent (a shell's terminal) is left as it was.
        with open(f"/proc/{r.proc.pid}/fdinfo/2") as f:
            flags = int(next(l for l in f if l.startswith("flags:")).split()[1], 8)
        assert not flags & os.O_NONBLOCK
        latencies = {"healthz": [], "round_trip": []}

        def flood_from_binaries():
            # Each flooder gets 5 lines per event before its budget stops it: ~16 lines of ~350
            # bytes each, 10 flooders ~55 KB — far more than the 4 KiB pipe and 16 KiB buffer.
            for i in range(10):
                b = RawClient(r.port, "/v1/server", binary_headers(f"flooder-{i}-" + "x" * 100))
                assert b.status == 101
                for payload in [b"1", b'{"conn_id":"client-nobody-00000000","frame":1}',
                                b'{"push_wake":{"token":"t"}}']:
                    for _ in range(2_000):
                        b.send_text(payload)
                flood(b, 20_000)
                b.close()

        async def scenario():
            binary = await open_binary(r.relay, "well-behaved")
            phone = await open_phone(r.relay, "well-behaved")
            cid = await phone_conn_id(binary, phone)
            flooding = asyncio.ensure_future(asyncio.to_thread(flood_from_binaries))
            rounds = 0
            while not flooding.done() or rounds < 20:
                t = time.monotonic()
                resp = await asyncio.to_thread(http_get, r.port, "/healthz", None, None, 5)
                assert resp.startswith(b"HTTP/1.1 200 "), resp[:40]
                latencies["healthz"].append(time.monotonic() - t)
                t = time.monotonic()
                await phone.send('{"n":%d}' % rounds)
                assert (await recv_json(binary, timeout=5))["frame"] == {"n": rounds}
                await binary.send('{"conn_id":"%s","frame":{"n":%d}}' % (cid, rounds))
                assert await asyncio.wait_for(phone.recv(), 5) == '{"n":%d}' % rounds
                latencies["round_trip"].append(time.monotonic() - t)
                rounds += 1
            await flooding  # re-raises a flooder's failure
            await phone.close()
            await binary.close()

        run(scenario())
        worst = {k: max(v) for k, v in latencies.items()}
        print("worst latency with stderr unread:", {k: f"{v * 1000:.1f} ms" for k, v in worst.items()})
        assert worst["healthz"] < 1.0 and worst["round_trip"] < 1.0, worst

        dropped = scrape(r.relay)[("pyrycode_relay_log_lines_dropped_total", ())]
        assert dropped > 0

        r.start_reading()
        summary = parse_logfmt(r.wait_for_line(lambda l: "msg=log_lines_dropped" in l))
        assert int(summary["count"]) > 0
        # Every dropped line is reported (the flood is over: nothing is dropped from now on).
        with r.cond:
            reported = sum(int(parse_logfmt(l)["count"]) for l in r.lines if "msg=log_lines_dropped" in l)
            assert all(l.startswith("ts=") for l in r.lines), "only whole lines reach the reader"
        assert reported == scrape(r.relay)[("pyrycode_relay_log_lines_dropped_total", ())] >= dropped
    finally:
        r.stop()
    assert r.proc.returncode == 0
    r.wait_for_line(lambda l: "msg=relay_stopped" in l)


def test_closed_stderr_is_reopened_on_dev_null_so_logs_never_reach_a_client(relay_bin, tmp_path):
    """Started with fd 2 closed, the relay must not let an accepted socket take fd 2: every log
    line would then be written to that client."""
    port = free_port()
    argv = [relay_bin, "--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", "",
            "--runtime-dir", str(tmp_path)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            preexec_fn=lambda: os.close(2))
    try:
        deadline = time.monotonic() + 10
        while True:  # the listener is up once a connect succeeds
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "relay did not start"
                time.sleep(0.01)
        assert os.readlink(f"/proc/{proc.pid}/fd/2") == "/dev/null"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 404")
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_registration_and_claim_lines_name_the_client(relay_bin, start_relay):
    """`remote` on the line that admits a connection: the peer, or the trusted X-Forwarded-For
    entry; a claim decided by a probe names the newcomer when the takeover is logged, after the
    probe (the relay keeps the address until that line, not in the idle record)."""
    r = start(start_relay, relay_bin, "--trust-x-forwarded-for", "--probe-timeout", "300ms")
    incumbent = RawClient(r.port, "/v1/server", {**binary_headers("srv-remote"), "X-Forwarded-For": "203.0.113.7"})
    assert incumbent.status == 101
    claimed = parse_logfmt(r.proc.wait_for_log(lambda l: "msg=server_claimed" in l))
    assert (claimed["remote"], claimed["binary_version"]) == ("203.0.113.7", "0.9.0")
    phone = RawClient(r.port, "/v1/client", {**phone_headers("srv-remote"), "X-Forwarded-For": "2001:db8::5, 192.0.2.1"})
    assert phone.status == 101
    registered = parse_logfmt(r.proc.wait_for_log(lambda l: "msg=phone_registered" in l))
    assert (registered["remote"], registered["device_name"]) == ("2001:db8::5", "Pixel test")
    # The raw incumbent never answers the probe's ping: the newcomer takes over after 300 ms.
    newcomer = RawClient(r.port, "/v1/server", {**binary_headers("srv-remote", version="1.2.3"),
                                                "X-Forwarded-For": "::ffff:198.51.100.9"})
    assert newcomer.status == 101
    takeover = parse_logfmt(r.proc.wait_for_log(lambda l: "msg=server_id_takeover" in l))
    assert (takeover["remote"], takeover["binary_version"]) == ("198.51.100.9", "1.2.3")
    for c in (incumbent, phone, newcomer):
        c.close()
    # Without the header, the peer itself.
    plain = RawClient(r.port, "/v1/server", binary_headers("srv-direct"))
    assert plain.status == 101
    line = parse_logfmt(r.proc.wait_for_log(lambda l: "msg=server_claimed" in l and "srv-direct" in l))
    assert line["remote"] == "127.0.0.1"
    plain.close()


def test_half_open_evictions_are_logged_with_the_cap_and_the_client(relay_bin, start_relay):
    """An eviction names the cap that was full: the client's own (`per-client cap`, the flooding
    address named) or the relay's (`global cap`, no address: the newcomer is not the offender);
    the metric counts every closed connection. Budgeted like the other repeated lines."""
    r = start(start_relay, relay_bin, "--max-half-open", "6", "--max-half-open-per-ip", "2")
    idle = []

    def open_from(source):
        s = socket.socket()
        s.bind((source, 0))
        s.connect(("127.0.0.1", r.port))
        idle.append(s)

    try:
        for _ in range(3):  # the third from 127.0.0.2 evicts its first
            open_from("127.0.0.2")
        line = parse_logfmt(r.proc.wait_for_log(lambda l: "msg=half_open_evicted" in l))
        assert (line["level"], line["remote"], line["reason"], line["count"]) == ("warn", "127.0.0.2", "per-client cap", "1")
        half_open = ("pyrycode_relay_half_open_connections", ())
        wait_until(lambda: scrape(r)[half_open] == 2)  # the start's port probe has gone too
        for i in range(3, 8):  # 2 + 5 from other addresses: the seventh needs room in all
            open_from(f"127.0.0.{i}")
        line = parse_logfmt(r.proc.wait_for_log(lambda l: "msg=half_open_evicted" in l and "global cap" in l))
        assert line["count"] == "1" and "remote" not in line  # the newcomer is not the offender
        metrics = scrape(r)
        assert metrics[("pyrycode_relay_half_open_evictions_total", ())] == 2 and metrics[half_open] == 6
    finally:
        for s in idle:
            s.close()
