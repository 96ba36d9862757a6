"""The upgrade routes' HTTP answers, byte for byte, from the built binary (docs/protocol.md):
the header gate (server-id bytes, no body) and the RFC 6455 §4.2.1 statuses, over raw sockets
and through the third-party `websockets` client."""

import asyncio
import struct

import pytest
import websockets

from relaylib import binary_headers, http_get, open_binary, open_phone, recv_json, scrape, start


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


PLAIN_400 = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Content-Length: 0\r\nConnection: close\r\n\r\n")
VERSION_400 = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Content-Length: 0\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n")
UPGRADE_426 = (b"HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Content-Length: 0\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
               b"Connection: Upgrade, close\r\n\r\n")
METHOD_405 = (b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n"
              b"Content-Length: 0\r\nAllow: GET\r\nConnection: close\r\n\r\n")

DEFAULT_LINES = {
    b"Host": b"127.0.0.1", b"Upgrade": b"websocket", b"Connection": b"Upgrade",
    b"Sec-WebSocket-Key": b"dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version": b"13",
    b"User-Agent": b"raw-test/1", b"X-Pyrycode-Version": b"0.9.0", b"X-Pyrycode-Token": b"t",
}


def upgrade_request(path, server_id, request_line=None, drop=(), lines=None, body=b""):
    """Raw request bytes; `server_id` is sent as given (bytes), `lines` replace or add lines."""
    lines = {**DEFAULT_LINES, b"X-Pyrycode-Server": server_id, **(lines or {})}
    out = request_line or b"GET " + path.encode() + b" HTTP/1.1"
    out += b"\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in lines.items() if k not in drop)
    return out + b"\r\n" + body


def answer(r, raw):
    return http_get(r.port, None, raw=raw)


def reject_headers(m, endpoint):
    return m[("pyrycode_relay_ws_upgrade_attempts_total", (("endpoint", endpoint), ("outcome", "reject_headers")))]


def masked_frame(opcode, payload, key=b"\x01\x02\x03\x04"):
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + key + masked


@pytest.mark.parametrize("path", ["/v1/server", "/v1/client"])
def test_rfc6455_statuses_exact_bytes(relay_bin, start_relay, path):
    r = start(start_relay, relay_bin)
    sid = b"srv-status"
    cases = [
        (upgrade_request(path, sid, lines={b"Sec-WebSocket-Version": b"8"}), VERSION_400),
        (upgrade_request(path, sid, drop={b"Sec-WebSocket-Version"}), VERSION_400),
        (upgrade_request(path, sid, request_line=b"GET " + path.encode() + b" HTTP/1.0"), UPGRADE_426),
        (upgrade_request(path, sid, drop={b"Upgrade"}), UPGRADE_426),
        (upgrade_request(path, sid, lines={b"Connection": b"keep-alive"}), UPGRADE_426),
        (upgrade_request(path, sid, request_line=b"POST " + path.encode() + b" HTTP/1.1"), METHOD_405),
        (upgrade_request(path, sid, drop={b"Sec-WebSocket-Key"}), PLAIN_400),
    ]
    for raw, expected in cases:
        assert answer(r, raw) == expected, raw
    endpoint = "server" if path == "/v1/server" else "client"
    assert reject_headers(scrape(r), endpoint) == len(cases)


def test_distinct_raw_server_ids_never_meet(relay_bin, start_relay):
    """`coll\\xff`, `coll\\xfe` and `coll\\xc3` would all decode to "coll\\ufffd": each is refused."""
    r = start(start_relay, relay_bin)
    assert answer(r, upgrade_request("/v1/server", b"coll\xff")) == PLAIN_400
    for sid in (b"coll\xfe", b"coll\xc3", b"coll\xff", b"coll\xef\xbf\xbd"):
        assert answer(r, upgrade_request("/v1/client", sid)) == PLAIN_400, sid
    m = scrape(r)
    assert reject_headers(m, "server") == 1 and reject_headers(m, "client") == 4
    assert m[("pyrycode_relay_connected_binaries", ())] == 0


@pytest.mark.parametrize("name,server_id", [
    ("space", b"a b"), ("tab", b"a\tb"), ("control", b"a\x01b"), ("del", b"a\x7fb"),
    ("129-bytes", b"a" * 129), ("utf8", "caf\u00e9".encode()), ("two-lines", None),
])
def test_server_ids_outside_1_to_128_visible_ascii_bytes_get_400(relay_bin, start_relay, name, server_id):
    r = start(start_relay, relay_bin)
    if server_id is None:
        raw = upgrade_request("/v1/server", b"a").replace(b"\r\n\r\n", b"\r\nX-Pyrycode-Server: b\r\n\r\n")
    else:
        raw = upgrade_request("/v1/server", server_id)
    assert answer(r, raw) == PLAIN_400


def test_128_visible_bytes_pair_through_the_websockets_client(relay_bin, start_relay):
    r = start(start_relay, relay_bin)
    longest = "".join(chr(0x21 + i % 94) for i in range(128))

    async def scenario():
        binary = await open_binary(r, longest)
        phone = await open_phone(r, longest)
        await phone.send('{"hi":1}')
        env = await recv_json(binary)
        assert env["frame"] == {"hi": 1}
        assert env["conn_id"].startswith("client-" + longest + "-")
        with pytest.raises(websockets.InvalidStatus) as refused:
            await open_phone(r, longest + "x")
        assert refused.value.response.status_code == 400
        await phone.close()
        await binary.close()

    run(scenario())


def test_upgrade_with_a_body_gets_400_and_nothing_after_it(relay_bin, start_relay):
    r = start(start_relay, relay_bin)
    ping = masked_frame(0x9, b"bodyping")
    assert len(ping) == 14
    # Parsed as frames after a 101, this body would be answered with a pong.
    with_length = upgrade_request("/v1/server", b"srv-body", lines={b"Content-Length": b"14"}, body=ping)
    assert answer(r, with_length) == PLAIN_400
    chunked = upgrade_request("/v1/server", b"srv-body", lines={b"Transfer-Encoding": b"chunked"},
                              body=b"e\r\n" + ping + b"\r\n0\r\n\r\n")
    assert answer(r, chunked) == PLAIN_400
    phone = upgrade_request("/v1/client", b"srv-body", lines={b"Content-Length": b"1"}, body=b"x")
    assert answer(r, phone) == PLAIN_400
    m = scrape(r)
    assert reject_headers(m, "server") == 2 and reject_headers(m, "client") == 1
    assert m[("pyrycode_relay_connected_binaries", ())] == 0

    async def empty_body_is_no_body():
        async with websockets.connect(r.url + "/v1/server",
                                      additional_headers={**binary_headers("srv-body"), "Content-Length": "0"},
                                      open_timeout=5):
            pass

    run(empty_body_is_no_body())


def test_header_gate_answers_before_the_rfc6455_checks(relay_bin, start_relay):
    r = start(start_relay, relay_bin)
    bad = b"a b"
    assert answer(r, upgrade_request("/v1/server", bad, lines={b"Sec-WebSocket-Version": b"8"})) == PLAIN_400
    assert answer(r, upgrade_request("/v1/server", bad, request_line=b"GET /v1/server HTTP/1.0")) == PLAIN_400
    assert answer(r, upgrade_request("/v1/client", bad, request_line=b"POST /v1/client HTTP/1.1")) == PLAIN_400
