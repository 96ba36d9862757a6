"""Client plumbing for the soak: sockets bound to chosen source addresses (possibly inside the
fault namespace), `websockets` connections over them, and a raw WebSocket client for peers that
misbehave on purpose."""

import asyncio
import base64
import os
import socket
import ssl
import struct

from websockets.asyncio.client import connect

TLS_CTX = ssl.create_default_context()
TLS_CTX.check_hostname = False
TLS_CTX.verify_mode = ssl.CERT_NONE  # the soak relay's certificate is self-signed


class Target:
    """One relay listener: host, port, whether it speaks TLS."""

    def __init__(self, name, host, port, tls):
        self.name, self.host, self.port, self.tls = name, host, port, tls

    def url(self, path):
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}{path}"


class Place:
    """Where a client's socket lives: a source address, in the root or the fault namespace."""

    def __init__(self, src, faults=None):
        self.src, self.faults = src, faults

    @property
    def in_ns(self):
        return self.faults is not None


async def tcp_connect(target, place, timeout=10, linger0=False):
    if place.faults:
        s = place.faults.socket_in_ns(socket.AF_INET, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setblocking(False)
        s.bind((place.src, 0))
        if linger0:
            set_linger0(s)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(s, (target.host, target.port)), timeout)
        return s
    except BaseException:
        s.close()
        raise


def set_linger0(s):
    """close() then sends a RST instead of a FIN (SO_LINGER with a zero timeout)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def binary_headers(server_id):
    return {"X-Pyrycode-Server": server_id, "X-Pyrycode-Version": "0.9.0", "User-Agent": "pyry-soak/1"}


def phone_headers(server_id):
    return {"X-Pyrycode-Server": server_id, "X-Pyrycode-Token": "soak-token", "User-Agent": "phone-soak/1",
            "X-Pyrycode-Device-Name": "soak phone"}


async def open_ws(target, place, path, headers, timeout=10):
    sock = await tcp_connect(target, place, timeout)
    try:
        return await connect(target.url(path), sock=sock, ssl=TLS_CTX if target.tls else None,
                             additional_headers=headers, open_timeout=timeout, max_size=None,
                             ping_interval=None, close_timeout=5)
    except BaseException:
        sock.close()
        raise


def close_of(ws):
    """(code, reason) of the close frame the relay sent, or (1006, "") when none came."""
    rcvd = ws.protocol.close_rcvd
    return (rcvd.code, rcvd.reason) if rcvd else (1006, "")


class RawWS:
    """An asyncio WebSocket client that sends exactly the bytes it is told to."""

    def __init__(self, reader, writer, sock):
        self.reader, self.writer, self.sock = reader, writer, sock
        self.status = None

    @classmethod
    async def open(cls, target, place, path, headers, rcvbuf=None, timeout=10):
        sock = await tcp_connect(target, place, timeout)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                sock=sock, ssl=TLS_CTX if target.tls else None,
                server_hostname=target.host if target.tls else None), timeout)
        except BaseException:
            sock.close()
            raise
        ws = cls(reader, writer, sock)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {target.host}:{target.port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        ws.status = int(head.split(b" ")[1])
        return ws

    def send_frame(self, opcode, payload, fin=True, mask=True, rsv=0, truncate=None):
        """Writes one frame; with `truncate`, only its header and first `truncate` payload bytes."""
        b0 = (0x80 if fin else 0) | rsv | opcode
        n = len(payload)
        m = 0x80 if mask else 0
        if n < 126:
            hdr = struct.pack("!BB", b0, m | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, m | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, m | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask(payload, key)
            hdr += key
        self.writer.write(hdr + (payload if truncate is None else payload[:truncate]))

    async def read_frame(self, timeout=10):
        """(opcode, payload), or None at EOF / reset."""
        try:
            h = await asyncio.wait_for(self.reader.readexactly(2), timeout)
            n = h[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return h[0] & 0x0F, await asyncio.wait_for(self.reader.readexactly(n), timeout)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            return None

    async def read_close(self, timeout=10):
        """The relay's close (code, reason); (1006, "") when the connection ended without one."""
        while True:
            f = await self.read_frame(timeout)
            if f is None:
                return 1006, ""
            if f[0] == 8:
                if len(f[1]) >= 2:
                    return struct.unpack("!H", f[1][:2])[0], f[1][2:].decode(errors="replace")
                return 1005, ""

    def abort(self):
        """Drops the connection with a RST (the socket may already be closed by the transport)."""
        try:
            set_linger0(self.sock)
        except OSError:
            pass
        self.writer.transport.abort()


def _mask(payload, key):
    k = int.from_bytes(key * ((len(payload) + 3) // 4), "big") >> (8 * ((-len(payload)) % 4))
    return (int.from_bytes(payload, "big") ^ k).to_bytes(len(payload), "big")
