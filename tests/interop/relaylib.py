"""Helpers for driving the built relay with third-party clients (Python `websockets`) and a
minimal raw-socket WebSocket client (for peers that misbehave on purpose: never read, never
answer pings, send bytes no library would)."""

import asyncio
import base64
import json
import os
import socket
import struct
import time
import tempfile

import websockets
from websockets.asyncio.client import connect

from conftest import free_port, parse_logfmt


class RunningRelay:
    def __init__(self, proc, port, metrics_port):
        self.proc = proc
        self.port = port
        self.metrics_port = metrics_port

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}"

    def log_events(self):
        return [parse_logfmt(l) for l in self.proc.stderr_text().splitlines() if l]


def start(start_relay, relay_bin, *extra, env=None):
    port, mport = free_port(), free_port()
    rundir = tempfile.mkdtemp(prefix="relay-run-")
    args = ["--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{mport}",
            "--runtime-dir", rundir, *extra]
    proc = start_relay(relay_bin, args, env=env, wait_port=port)
    return RunningRelay(proc, port, mport)


def binary_headers(server_id, version="0.9.0"):
    return {"X-Pyrycode-Server": server_id, "X-Pyrycode-Version": version, "User-Agent": "pyry-test/1"}


def phone_headers(server_id, token="secret-token", device="Pixel test"):
    return {"X-Pyrycode-Server": server_id, "X-Pyrycode-Token": token, "User-Agent": "phone-test/1",
            "X-Pyrycode-Device-Name": device}


async def open_binary(relay, server_id, **kw):
    return await connect(relay.url + "/v1/server", additional_headers=binary_headers(server_id),
                         open_timeout=5, max_size=None, **kw)


async def open_phone(relay, server_id, **kw):
    return await connect(relay.url + "/v1/client", additional_headers=phone_headers(server_id),
                         open_timeout=5, max_size=None, **kw)


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def closed_with(ws, timeout=5):
    """Waits for the relay to close `ws`; returns (code, reason) of the relay's close frame."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed:
        pass
    rcvd = ws.protocol.close_rcvd
    return (rcvd.code, rcvd.reason) if rcvd else (None, None)


async def phone_conn_id(binary, phone):
    """Sends a probe message from `phone`; returns the conn_id the binary sees it under."""
    await phone.send('{"probe":true}')
    env = await recv_json(binary)
    assert env["frame"] == {"probe": True}
    return env["conn_id"]


class RawClient:
    """A blocking-socket WebSocket client that does exactly what it is told."""

    def __init__(self, port, path, headers, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during handshake"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ")[1])

    def send_frame(self, opcode, payload, fin=True, mask=True):
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            hdr += key
        self.sock.sendall(hdr + payload)

    def send_text(self, text):
        self.send_frame(1, text.encode() if isinstance(text, str) else text)

    def read_frame(self):
        """Returns (opcode, payload) of the next server frame, or None at EOF."""
        def need(k):
            while len(self.buf) < k:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return False
                self.buf += chunk
            return True
        if not need(2):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            if not need(4):
                return None
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            if not need(10):
                return None
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        if not need(off + n):
            return None
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        self.last_rsv1 = bool(b0 & 0x40)  # RFC 7692: a compressed message
        return b0 & 0x0F, payload

    def read_close(self):
        """Reads frames until a close frame; returns (code, reason) or None at EOF first."""
        while True:
            f = self.read_frame()
            if f is None:
                return None
            op, payload = f
            if op == 8:
                if len(payload) >= 2:
                    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()
                return (None, "")

    def close(self):
        self.sock.close()


def http_get(port, path, headers=None, raw=None, timeout=5):
    """Sends one request (or `raw` bytes) and returns the whole response bytes until EOF or timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if raw is None:
            hdrs = {"Host": "127.0.0.1", "Connection": "close", **(headers or {})}
            raw = (f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n").encode()
        s.sendall(raw)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
        return out


def scrape(relay):
    """GET /metrics parsed by prometheus_client's own text parser: {(name, labels-tuple): value}."""
    from prometheus_client.parser import text_string_to_metric_families
    resp = http_get(relay.metrics_port, "/metrics")
    head, body = resp.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def wait_until(pred, timeout=5.0, interval=0.01, what="condition"):
    """Polls `pred` (state outside this process: fds, counters) until it is truthy; returns its
    value, or fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))
