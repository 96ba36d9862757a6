"""Memory held by unfinished messages (docs/operations.md, `--max-buffered-bytes`): a thousand
connections each holding a 256 KiB message open cannot take the relay past its buffer budget.
The largest holders are closed 1011 `memory budget exceeded`, smaller ones and a well-behaved
pair keep working, and the relay's RSS (/proc/PID/status VmRSS) stays near the budget."""

import asyncio
import base64
import os
import socket
import struct

from relaylib import open_binary, open_phone, phone_conn_id, recv_json, start, wait_until

FRAME = 262_144            # the default message limit: each large holder's whole message
BUDGET = 32 << 20          # --max-buffered-bytes for this test
LARGE = 1000               # connections holding all of a FRAME-byte message but its last byte
SMALL = 200                # connections holding 8 KiB of a 100 KB message
# Growth allowed over the budget: malloc's bookkeeping and pages freed but not yet trimmed.
# Without the budget the same load grows RSS by ~260 MB (about 260 KiB per large holder).
RSS_SLACK = 16 << 20


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def upgrade(port, i):
    """A raw phone on server-id srv-hold, under its own client IP (X-Forwarded-For) so that
    neither the per-IP rate limit nor the per-IP cap applies to a thousand of them."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /v1/client HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: hold/1\r\n"
               f"X-Pyrycode-Server: srv-hold\r\nX-Pyrycode-Token: t\r\n"
               f"X-Forwarded-For: 10.{i >> 8 & 255}.{i & 255}.7\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, "closed during the upgrade"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head[:80]
    assert head.endswith(b"\r\n\r\n"), "bytes behind the 101"
    return s


def text_frame_head(length):
    """A masked text frame header for `length` payload bytes, mask key 0 (payload sent as is)."""
    return struct.pack("!BBQ", 0x81, 0x80 | 127, length) + b"\0\0\0\0"


class Holder:
    """One connection holding an unfinished message; collects what the relay sends it."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.close = None   # (code, reason) once the relay's close frame is in

    def poll(self):
        if self.close is not None:
            return
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            data = b""
        self.buf += data
        while len(self.buf) >= 2:
            op, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
            if len(self.buf) < 2 + n:
                break
            payload, self.buf = self.buf[2:2 + n], self.buf[2 + n:]
            if op == 0x8:
                self.close = (struct.unpack("!H", payload[:2])[0], payload[2:].decode())
                return
            assert op == 0x9, f"unexpected frame {op:#x}"  # only a heartbeat ping may come first
        if not data:
            self.close = (None, "EOF without a close frame")


def test_unfinished_messages_stay_within_the_buffer_budget(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--max-buffered-bytes", str(BUDGET), "--trust-x-forwarded-for",
              "--phones-per-server", str(LARGE + SMALL + 10))
    pid = r.proc.pid

    async def scenario():
        good_binary = await open_binary(r, "srv-good")
        good_phone = await open_phone(r, "srv-good")
        good_id = await phone_conn_id(good_binary, good_phone)
        hold_binary = await open_binary(r, "srv-hold")

        async def pair_works(tag):
            await good_phone.send('{"tag":"%s"}' % tag)
            assert (await recv_json(good_binary))["frame"] == {"tag": tag}
            await good_binary.send('{"conn_id":"%s","frame":"%s"}' % (good_id, tag))
            assert await asyncio.wait_for(good_phone.recv(), 5) == '"%s"' % tag

        def open_and_send():
            small = [Holder(upgrade(r.port, i)) for i in range(SMALL)]
            large = [Holder(upgrade(r.port, SMALL + i)) for i in range(LARGE)]
            before = rss_bytes(pid)
            for h in small:
                h.sock.sendall(text_frame_head(100_000) + b'"' + b"s" * (8192 - 1))
            # A JSON string missing its closing quote: the last byte of the frame never comes.
            body = text_frame_head(FRAME) + b'"' + b"a" * (FRAME - 2)
            for h in large:
                try:
                    h.sock.sendall(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # closed while we were still sending: polled below
            return small, large, before

        small, large, before = await asyncio.to_thread(open_and_send)
        # At most BUDGET // FRAME large holders fit; every other one must be closed.
        must_close = LARGE - BUDGET // FRAME

        def closed_count():
            for h in large + small:
                h.poll()
            return sum(1 for h in large if h.close is not None) >= must_close

        await asyncio.to_thread(wait_until, closed_count, 60, 0.05, f"{must_close} large holders closed")
        await pair_works("during")
        codes = {h.close for h in large if h.close is not None}
        assert codes == {(1011, "memory budget exceeded")}, codes
        # The small holders are never the largest: none was closed.
        assert [h.close for h in small if h.close is not None] == []
        # Freed buffers go back to the kernel soon after the burst (not at the minute's trim).
        await asyncio.to_thread(wait_until, lambda: rss_bytes(pid) - before <= BUDGET + RSS_SLACK, 10, 0.05,
                                "RSS growth within the budget")
        growth = rss_bytes(pid) - before
        print(f"RSS growth {growth >> 10} KiB for {LARGE} large + {SMALL} small holders "
              f"({growth / LARGE / 1024:.1f} KiB per large holder), budget {BUDGET >> 10} KiB")
        await pair_works("after")
        # The relay's view: the closed phones left the registry, the others are still there.
        open_large = sum(1 for h in large if h.close is None)
        assert 0 < open_large <= BUDGET // FRAME
        for h in large + small:
            h.sock.close()
        await hold_binary.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))
