"""Thousands of connections opened and closed against the built relay: its open descriptor
count (/proc/PID/fd) returns to the start value, and hostile inputs are answered while another
client keeps being served (docs/protocol.md §3.2, §4)."""

import asyncio
import os
import socket
import struct
import time

from relaylib import RawClient, fd_count, open_binary, open_phone, phone_headers, start, wait_until

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def settled_fd_count(pid):
    """The fd count once it has stopped changing (closes finish asynchronously)."""
    last = fd_count(pid)
    for _ in range(100):
        time.sleep(0.05)
        now = fd_count(pid)
        if now == last:
            return now
        last = now
    return last


def test_thousands_of_connections_leave_no_fd_behind(relay_bin, start_relay):
    # Hundreds of clients at once, all from 127.0.0.1: lift the per-IP caps (live and half-open).
    r = start(start_relay, relay_bin, "--max-connections-per-ip", "5000", "--max-half-open-per-ip", "1024")
    pid = r.proc.pid
    baseline = settled_fd_count(pid)  # after the start-up port probe's connection is gone
    for _ in range(5):
        socks = []
        for _ in range(400):
            s = socket.create_connection(("127.0.0.1", r.port))
            s.sendall(HEALTH)
            socks.append(s)
        for s in socks:
            s.settimeout(5)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ")
            s.close()
        # Half-finished requests, dropped.
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", r.port))
            s.sendall(b"GET /v1/cli")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

    async def websockets_churn():
        # 17 upgrades: within one IP's rate-limit burst of 20 (docs/protocol.md §3.3).
        b = await open_binary(r, "srv-churn")
        phones = [await open_phone(r, "srv-churn") for _ in range(16)]
        for p in phones:
            await p.close()
        await b.close()

    asyncio.run(websockets_churn())
    wait_until(lambda: fd_count(pid) == baseline, timeout=10.0, what=f"fd count back to {baseline}")


def test_hostile_inputs_get_bounded_answers_while_a_pair_keeps_relaying(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--header-timeout", "1s")

    async def scenario():
        binary = await open_binary(r, "srv-h")
        phone = await open_phone(r, "srv-h")

        async def ping_pong(i):
            await phone.send('{"i":%d}' % i)
            assert (await asyncio.wait_for(binary.recv(), 5)).endswith('"frame":{"i":%d}}' % i)

        # 1 MiB of header garbage → 431, bounded.
        def garbage():
            with socket.create_connection(("127.0.0.1", r.port), timeout=5) as s:
                try:
                    s.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * (1 << 20))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return s.recv(4096)
        assert (await asyncio.to_thread(garbage)).startswith(b"HTTP/1.1 431 ")
        await ping_pong(1)

        # A client that stops mid-header is closed at the header timeout, with no response.
        def stalled():
            with socket.create_connection(("127.0.0.1", r.port), timeout=5) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                t0 = time.monotonic()
                data = s.recv(4096)
                return data, time.monotonic() - t0
        task = asyncio.create_task(asyncio.to_thread(stalled))
        await ping_pong(2)  # served while the stalled client waits
        data, elapsed = await task
        assert data == b"" and 0.8 < elapsed < 3.0

        # A frame that claims 2^63-1 bytes is refused from its header alone.
        raw = RawClient(r.port, "/v1/client", phone_headers("srv-h"))
        raw.sock.sendall(bytes([0x81, 0xFF]) + struct.pack("!Q", (1 << 63) - 1) + os.urandom(4))
        assert await asyncio.to_thread(raw.read_close) == (1009, "")
        await ping_pong(3)

    asyncio.run(asyncio.wait_for(scenario(), 60))
