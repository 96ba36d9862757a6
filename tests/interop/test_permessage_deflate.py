"""permessage-deflate (RFC 7692) on the relay, behind --permessage-deflate: negotiation per leg,
byte-exact forwarding between a compressing and a plain leg, decompression bombs (closed 1009
with bounded memory), and the frame rules RSV1 adds or keeps (docs/protocol.md)."""

import asyncio
import base64
import json
import os
import zlib

import pytest

from relaylib import (RawClient, binary_headers, closed_with, open_binary, open_phone,
                      phone_conn_id, phone_headers, recv_json, start)

DEFLATE = ["--permessage-deflate"]
OFFER = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}


def deflate(data, wbits=15):
    """RFC 7692 §7.2.1: raw deflate, sync flush, the 00 00 FF FF tail removed."""
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(data):
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")


def bomb(megabytes=100):
    """About 100 KB of deflate that inflates to `megabytes` MiB of zeros."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    out = b"".join(c.compress(chunk) for _ in range(megabytes)) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def pyry_frame(cipher_bytes):
    """A realistic pyrycode message: JSON around a base64 ciphertext field."""
    ct = base64.b64encode(os.urandom(cipher_bytes)).decode()
    return json.dumps({"type": "output", "session": "s-1", "seq": 7, "ciphertext": ct,
                       "meta": {"lines": ["ok"] * 40}}, separators=(",", ":"))


def vm_hwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def raw_binary(relay, sid, offer=True):
    c = RawClient(relay.port, "/v1/server", {**binary_headers(sid), **(OFFER if offer else {})})
    assert c.status == 101
    return c


def test_flag_off_declines_offers_and_relays(relay_bin, start_relay):
    relay = start(start_relay, relay_bin)

    async def go():
        b = await open_binary(relay, "srv-off")  # websockets offers permessage-deflate by default
        p = await open_phone(relay, "srv-off")
        assert b.response.headers.get("Sec-WebSocket-Extensions") is None
        assert p.response.headers.get("Sec-WebSocket-Extensions") is None
        msg = pyry_frame(2048)
        await p.send(msg)
        env = await recv_json(b)
        assert json.dumps(env["frame"], separators=(",", ":")) == msg
        await b.close(); await p.close()
    asyncio.run(go())


def test_rsv1_without_the_extension_is_1002(relay_bin, start_relay):
    relay = start(start_relay, relay_bin)  # flag off: the offer is declined
    c = raw_binary(relay, "srv-rsv1")
    c.send_frame(0x40 | 1, deflate(b'{"a":1}'))
    assert c.read_close()[0] == 1002
    c.close()


@pytest.mark.parametrize("phone_compresses", [True, False], ids=["deflate-phone", "deflate-binary"])
def test_mixed_legs_forward_byte_exact(relay_bin, start_relay, phone_compresses):
    relay = start(start_relay, relay_bin, *DEFLATE)

    async def go():
        b = await open_binary(relay, "srv-mix", compression=None if phone_compresses else "deflate")
        p = await open_phone(relay, "srv-mix", compression="deflate" if phone_compresses else None)
        compressing, plain = (p, b) if phone_compresses else (b, p)
        ext = compressing.response.headers.get("Sec-WebSocket-Extensions")
        assert ext.startswith("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        assert plain.response.headers.get("Sec-WebSocket-Extensions") is None
        cid = await phone_conn_id(b, p)
        for size in (200, 2048, 16384):
            up = pyry_frame(size)
            await p.send(up)
            raw = await asyncio.wait_for(b.recv(), 5)
            # The phone's bytes appear verbatim inside the envelope (docs/protocol.md §7.1).
            assert raw == '{"conn_id":"%s","frame":%s}' % (cid, up)
            down = pyry_frame(size)
            await b.send(json.dumps({"conn_id": cid, "frame": json.loads(down)}, separators=(",", ":")))
            assert await asyncio.wait_for(p.recv(), 5) == down
        await b.close(); await p.close()
    asyncio.run(go())


def test_compresses_only_what_shrinks(relay_bin, start_relay):
    relay = start(start_relay, relay_bin, *DEFLATE)

    async def go():
        b = await open_binary(relay, "srv-shrink", compression=None)
        loop = asyncio.get_running_loop()
        phone = await loop.run_in_executor(None, lambda: RawClient(relay.port, "/v1/client", {**phone_headers("srv-shrink"), **OFFER}))
        assert phone.status == 101
        phone.send_frame(0x40 | 1, deflate(b'{"hello":"' + b"x" * 400 + b'"}'))
        phone.send_frame(1, b'{"probe":true}')  # uncompressed messages stay allowed (RFC 7692 §6)
        first = await recv_json(b)
        assert first["frame"] == {"hello": "x" * 400}
        assert (await recv_json(b))["frame"] == {"probe": True}
        cid = first["conn_id"]
        big = json.dumps({"text": "abc " * 1000})
        await b.send(json.dumps({"conn_id": cid, "frame": json.loads(big)}))
        await b.send(json.dumps({"conn_id": cid, "frame": {}}))
        op, payload = await loop.run_in_executor(None, phone.read_frame)
        assert op == 1 and phone.last_rsv1 and len(payload) < len(big) // 10
        assert inflate(payload).decode() == big  # byte-exact, as the binary wrote it
        op, payload = await loop.run_in_executor(None, phone.read_frame)
        assert (op, phone.last_rsv1, payload) == (1, False, b"{}")  # would not shrink: sent as is
        phone.close()
        await b.close()
    asyncio.run(go())


@pytest.mark.parametrize("fragmented", [False, True], ids=["single-frame", "fragmented"])
def test_decompression_bomb_is_closed_1009_within_the_limit(relay_bin, start_relay, fragmented):
    relay = start(start_relay, relay_bin, *DEFLATE)
    payload = bomb(100)  # ~100 KB on the wire, 100 MiB inflated
    assert len(payload) < 256 * 1024
    before = vm_hwm(relay.proc.proc.pid)
    c = raw_binary(relay, "srv-bomb")
    if fragmented:
        half = len(payload) // 2
        c.send_frame(0x40 | 2, payload[:half], fin=False)  # RSV1 on the first frame only (§6.1)
        c.send_frame(0, payload[half:])
    else:
        c.send_frame(0x40 | 2, payload)
    assert c.read_close()[0] == 1009
    c.close()
    # The relay produced at most the 256 KiB message limit: its peak RSS grew by far less than the bomb.
    assert vm_hwm(relay.proc.proc.pid) - before < 16 << 20
    # And it still serves.
    c2 = raw_binary(relay, "srv-bomb-2")
    c2.send_frame(0x40 | 1, deflate(b'{"a":1}'))
    c2.send_frame(9, b"ping")
    assert c2.read_frame() == (10, b"ping")
    c2.close()


def test_compressed_control_frame_is_1002(relay_bin, start_relay):
    relay = start(start_relay, relay_bin, *DEFLATE)
    c = raw_binary(relay, "srv-ctl")
    c.send_frame(0x40 | 9, b"")
    assert c.read_close()[0] == 1002
    c.close()


def test_compressed_invalid_utf8_is_1007(relay_bin, start_relay):
    relay = start(start_relay, relay_bin, *DEFLATE)
    c = raw_binary(relay, "srv-utf8")
    c.send_frame(0x40 | 1, deflate(b'{"a":"\xff"}'))
    assert c.read_close()[0] == 1007
    c.close()
