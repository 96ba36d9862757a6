#!/usr/bin/env python3
"""Log volume under an invalid-envelope flood (docs/operations.md, "Log volume").

Starts the relay with stderr on a regular file, claims one server-id of --server-id-bytes
bytes from a raw binary, sends masked text frames holding just `1` (7 bytes on the wire: an
envelope the relay cannot parse, one `binary_forwarder_unmarshal_err` event each) — --frames
of them, or for --seconds — then a ping: its pong means every frame before it was handled.
Prints the log bytes and lines the flood produced and the rate over the flood's duration.

    .venv-test/bin/python scripts/log-flood.py --relay .build/debug/pyrycode-relay --server-id-bytes 128 --seconds 25
"""

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))
from relaylib import RawClient, binary_headers  # noqa: E402
from conftest import free_port  # noqa: E402


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("relay exited with %d" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.01)
    sys.exit("relay did not listen")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--relay", required=True)
    ap.add_argument("--server-id-bytes", type=int, default=16384)
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--seconds", type=float, default=0, help="flood for this long instead of --frames")
    a = ap.parse_args()

    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="relay-flood-", suffix=".log", delete=False)
    proc = subprocess.Popen([a.relay, "--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", "",
                             "--runtime-dir", tempfile.mkdtemp(prefix="relay-run-")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_port(port, proc)
        server_id = ("s" * a.server_id_bytes)
        b = RawClient(port, "/v1/server", binary_headers(server_id))
        assert b.status == 101, b.status
        b.sock.settimeout(120)
        key = b"\x01\x02\x03\x04"
        frame = b"\x81\x81" + key + bytes([ord("1") ^ key[0]])  # 7 bytes
        assert len(frame) == 7
        time.sleep(0.2)  # let the claim line land before counting
        start_bytes = os.path.getsize(log.name)
        start_lines = sum(1 for _ in open(log.name, "rb"))
        t0 = time.monotonic()
        batch = frame * 10_000
        sent = 0
        while (time.monotonic() - t0 < a.seconds) if a.seconds else (sent < a.frames):
            n = 10_000 if a.seconds else min(10_000, a.frames - sent)
            b.sock.sendall(batch if n == 10_000 else frame * n)
            sent += n
            if a.seconds:  # the relay pings every 30 s: answer, or it closes the binary
                b.sock.setblocking(False)
                try:
                    b.buf += b.sock.recv(65536)
                except BlockingIOError:
                    pass
                b.sock.setblocking(True)
                b.sock.settimeout(120)
                while len(b.buf) >= 2 and b.buf[0] & 0x0F == 0x9 and len(b.buf) >= 2 + (b.buf[1] & 0x7F):
                    f = b.read_frame()
                    b.send_frame(0xA, f[1])
        b.send_frame(0x9, b"flood-end")
        while True:
            f = b.read_frame()
            assert f is not None, "relay closed the binary"
            if f[0] == 0xA and f[1] == b"flood-end":
                break
        elapsed = time.monotonic() - t0
        size = os.path.getsize(log.name) - start_bytes
        lines = sum(1 for _ in open(log.name, "rb")) - start_lines
        print(f"server_id_bytes={a.server_id_bytes} frames={sent} seconds={elapsed:.2f} "
              f"log_bytes={size} log_lines={lines} log_bytes_per_second={size / elapsed:.0f}")
        b.close()
    finally:
        proc.terminate()
        proc.wait(10)
        os.unlink(log.name)


if __name__ == "__main__":
    main()
