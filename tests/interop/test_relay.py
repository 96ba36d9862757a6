"""The relay end to end (docs/protocol.md §2, §2–§3, §8, §9): the built binary as a separate process,
driven by the third-party `websockets` client and a raw-socket client."""

import asyncio
import json
import socket
import struct
from datetime import datetime

import pytest
import websockets

from conftest import parse_logfmt

from relaylib import (RawClient, binary_headers, closed_with, http_get, open_binary, open_phone,
                      phone_conn_id, phone_headers, recv_json, scrape, start, wait_until)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_healthz_exact_body_and_headers(relay_bin, start_relay):
    r = start(start_relay, relay_bin)
    resp = http_get(r.port, "/healthz?x=1")
    head, body = resp.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    lower = head.lower()
    assert b"content-type: application/json; charset=utf-8" in lower
    assert b"cache-control: no-store" in lower
    doc = json.loads(body)
    assert list(doc) == ["status", "version", "connected_binaries", "connected_phones", "uptime_seconds"]
    assert doc["status"] == "ok" and doc["connected_binaries"] == 0 and doc["connected_phones"] == 0
    assert not body.endswith(b"\n")


def test_unknown_path_is_404_with_empty_body(relay_bin, start_relay):
    r = start(start_relay, relay_bin)
    resp = http_get(r.port, "/nope")
    assert resp.startswith(b"HTTP/1.1 404 ")
    assert resp.split(b"\r\n\r\n", 1)[1] in (b"", b"\n")


def test_binary_and_phones_exchange_both_ways(relay_bin, start_relay):
    r = start(start_relay, relay_bin)

    async def scenario():
        binary = await open_binary(r, "srv-a")
        phones = [await open_phone(r, "srv-a") for _ in range(3)]
        ids = []
        for i, p in enumerate(phones):
            await p.send(json.dumps({"n": i, "text": "hello"}, separators=(",", ":")))
            raw = await asyncio.wait_for(binary.recv(), 5)
            # Exactly two keys in this order, the frame verbatim (docs/protocol.md §7.1).
            assert raw.startswith('{"conn_id":"client-srv-a-')
            assert raw.endswith(',"frame":{"n":%d,"text":"hello"}}' % i)
            env = json.loads(raw)
            assert list(env) == ["conn_id", "frame"]
            assert len(env["conn_id"]) == len("client-srv-a-") + 8
            ids.append(env["conn_id"])
        assert len(set(ids)) == 3
        # Binary → each phone, byte for byte (whitespace kept).
        for i, cid in enumerate(ids):
            await binary.send('{"conn_id":"%s","frame": {"reply" : %d} }' % (cid, i))
        for i, p in enumerate(phones):
            assert await asyncio.wait_for(p.recv(), 5) == '{"reply" : %d}' % i
        health = json.loads(http_get(r.port, "/healthz").split(b"\r\n\r\n", 1)[1])
        assert health["connected_binaries"] == 1 and health["connected_phones"] == 3
        for p in phones:
            await p.close()
        await binary.close()

    run(scenario())


def test_phone_without_server_gets_4404(relay_bin, start_relay):
    r = start(start_relay, relay_bin)

    async def scenario():
        phone = await open_phone(r, "nobody-here")
        assert await closed_with(phone) == (4404, "no server with that id")

    run(scenario())


def test_phone_cap_4429_at_the_default_16(relay_bin, start_relay):
    r = start(start_relay, relay_bin)  # real defaults: 16 phones per server-id

    async def scenario():
        binary = await open_binary(r, "srv-cap")
        phones = [await open_phone(r, "srv-cap") for _ in range(16)]
        for p in phones:
            await phone_conn_id(binary, p)
        extra = await open_phone(r, "srv-cap")
        assert await closed_with(extra) == (4429, "too many phones for server-id")
        await phones[0].send('{"still":"ok"}')
        assert (await recv_json(binary))["frame"] == {"still": "ok"}

    run(scenario())


def test_second_binary_gets_4409_while_incumbent_answers(relay_bin, start_relay):
    r = start(start_relay, relay_bin)

    async def scenario():
        first = await open_binary(r, "srv-dup")
        phone = await open_phone(r, "srv-dup")
        await phone_conn_id(first, phone)
        second = await open_binary(r, "srv-dup")
        assert await closed_with(second) == (4409, "server-id already claimed")
        # Incumbent and its phones untouched.
        await phone.send('{"after":1}')
        assert (await recv_json(first))["frame"] == {"after": 1}

    run(scenario())


def test_takeover_when_incumbent_does_not_answer_the_probe(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--probe-timeout", "300ms")

    async def scenario():
        # The raw incumbent never reads, so it never answers the probe's ping.
        incumbent = RawClient(r.port, "/v1/server", binary_headers("srv-take"))
        assert incumbent.status == 101
        phone = await open_phone(r, "srv-take")
        newcomer = await open_binary(r, "srv-take")
        # Takeover has reclaim semantics: the incumbent's phones are evicted.
        assert await closed_with(phone) == (4404, "binary reclaimed server-id")
        assert await asyncio.to_thread(incumbent.read_close) == (1011, "heartbeat timeout")
        phone2 = await open_phone(r, "srv-take")
        await phone_conn_id(newcomer, phone2)

    run(scenario())


def test_grace_keeps_phones_then_reclaim_evicts_them(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--grace", "5s")

    async def scenario():
        binary = await open_binary(r, "srv-g")
        phone = await open_phone(r, "srv-g")
        await phone_conn_id(binary, phone)
        await binary.close()
        # During grace a new phone may still register.
        late = await open_phone(r, "srv-g")
        health = json.loads(http_get(r.port, "/healthz").split(b"\r\n\r\n", 1)[1])
        assert health["connected_binaries"] == 0 and health["connected_phones"] == 2
        reclaimer = await open_binary(r, "srv-g")
        assert await closed_with(phone) == (4404, "binary reclaimed server-id")
        assert await closed_with(late) == (4404, "binary reclaimed server-id")
        # No close notice for evicted phones reaches the new binary.
        fresh = await open_phone(r, "srv-g")
        await fresh.send('{"first":true}')
        assert (await recv_json(reclaimer))["frame"] == {"first": True}

    run(scenario())


def test_grace_start_is_logged_server_released(relay_bin, start_relay):
    """`server_released` {server_id} when a binary's grace timer is armed (the Go
    relay's event name, which operators' alerts use); a binary refused 4409 never held the slot
    and releases nothing."""
    r = start(start_relay, relay_bin)

    def log(msg, **fields):
        def pred(line):
            f = parse_logfmt(line)
            return f.get("msg") == msg and all(f.get(k) == v for k, v in fields.items())
        return pred

    async def scenario():
        first = await open_binary(r, "srv-rel")
        second = await open_binary(r, "srv-rel")
        assert await closed_with(second) == (4409, "server-id already claimed")
        await asyncio.to_thread(r.proc.wait_for_log, log("binary_disconnected", server_id="srv-rel"), 5)
        await first.close()
        line = await asyncio.to_thread(r.proc.wait_for_log, log("server_released", server_id="srv-rel"), 5)
        f = parse_logfmt(line)
        assert f["level"] == "info" and set(f) == {"ts", "level", "msg", "server_id"}
        assert sum(1 for l in r.proc.lines if log("server_released")(l)) == 1

    run(scenario())


def test_grace_expiry_closes_phones_1000(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--grace", "300ms")

    async def scenario():
        binary = await open_binary(r, "srv-exp")
        phone = await open_phone(r, "srv-exp")
        await phone_conn_id(binary, phone)
        await binary.close()
        code, reason = await closed_with(phone)
        assert (code, reason) == (1000, "")

    run(scenario())
    assert scrape(r)[("pyrycode_relay_grace_expiries_total", ())] == 1


def test_phone_message_during_grace_closes_it_1000(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--grace", "10s")

    async def scenario():
        binary = await open_binary(r, "srv-pg")
        phone = await open_phone(r, "srv-pg")
        await phone_conn_id(binary, phone)
        await binary.close()
        await phone.send('{"to":"nobody"}')
        assert await closed_with(phone) == (1000, "")

    run(scenario())


def test_close_notice_carries_the_phones_code_or_1001(relay_bin, start_relay):
    r = start(start_relay, relay_bin)

    async def scenario():
        binary = await open_binary(r, "srv-n")
        p1 = await open_phone(r, "srv-n")
        id1 = await phone_conn_id(binary, p1)
        await p1.close(code=4000, reason="bye")
        notice = await asyncio.wait_for(binary.recv(), 5)
        assert notice == '{"conn_id":"%s","close_code":4000}' % id1
        # A phone that drops without a close frame → 1001.
        p2 = RawClient(r.port, "/v1/client", phone_headers("srv-n"))
        p2.send_text('{"raw":1}')
        id2 = (await recv_json(binary))["conn_id"]
        p2.sock.shutdown(socket.SHUT_RDWR)
        p2.close()
        assert await asyncio.wait_for(binary.recv(), 5) == '{"conn_id":"%s","close_code":1001}' % id2

    run(scenario())


def test_non_json_phone_message_ends_that_phone(relay_bin, start_relay):
    r = start(start_relay, relay_bin)

    async def scenario():
        binary = await open_binary(r, "srv-j")
        phone = await open_phone(r, "srv-j")
        sibling = await open_phone(r, "srv-j")
        cid = await phone_conn_id(binary, phone)
        await phone.send("this is not json")
        assert await closed_with(phone) == (1000, "")
        assert await asyncio.wait_for(binary.recv(), 5) == '{"conn_id":"%s","close_code":1001}' % cid
        await sibling.send('[1,2,3]')
        assert (await recv_json(binary))["frame"] == [1, 2, 3]

    run(scenario())


def test_binary_close_directive_closes_phone_without_notice(relay_bin, start_relay):
    r = start(start_relay, relay_bin)

    async def scenario():
        binary = await open_binary(r, "srv-d")
        phone = await open_phone(r, "srv-d")
        other = await open_phone(r, "srv-d")
        cid = await phone_conn_id(binary, phone)
        await binary.send('{"conn_id":"%s","frame":{"last":1},"close_code":4001}' % cid)
        assert await asyncio.wait_for(phone.recv(), 5) == '{"last":1}'
        assert await closed_with(phone) == (4001, "")
        # The next thing the binary hears is the sibling, not a notice for the closed phone.
        await other.send('{"next":1}')
        assert (await recv_json(binary))["frame"] == {"next": 1}

    run(scenario())


def test_binary_garbage_and_unknown_conn_ids_are_dropped(relay_bin, start_relay):
    r = start(start_relay, relay_bin)

    async def scenario():
        binary = await open_binary(r, "srv-bad")
        phone = await open_phone(r, "srv-bad")
        cid = await phone_conn_id(binary, phone)
        for bad in ["garbage", "[1,2]", '{"frame":1}', '{"conn_id":"","frame":1}', '{"conn_id":5,"frame":1}',
                    '{"conn_id":"%s"}' % cid, '{"conn_id":"%s","frame":null}' % cid,
                    '{"conn_id":"client-srv-bad-00000000","frame":1}', '{"conn_id":"client-other-12345678","frame":1}']:
            await binary.send(bad)
        await binary.send('{"conn_id":"%s","frame":"ok"}' % cid)
        assert await asyncio.wait_for(phone.recv(), 5) == '"ok"'

    run(scenario())
    # The relay writes an iteration's log lines at its end, after the "ok" left: wait for them.
    wanted = {"binary_forwarder_unmarshal_err", "binary_forwarder_unknown_conn_id"}
    wait_until(lambda: wanted <= {e.get("msg") for e in r.log_events()}, what="the dropped-envelope log lines")


def test_oversize_message_closes_1009(relay_bin, start_relay):
    r = start(start_relay, relay_bin)

    async def scenario():
        _binary = await open_binary(r, "srv-big")  # held open: the phone needs it to register
        phone = await open_phone(r, "srv-big")
        await phone.send('"' + "x" * 262_200 + '"')
        code, _ = await closed_with(phone)
        assert code == 1009

    run(scenario())


def test_phone_that_never_reads_is_closed_1011_siblings_unaffected(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--outbox-budget", "262144")

    async def scenario():
        binary = await open_binary(r, "srv-slow")
        slow = RawClient(r.port, "/v1/client", phone_headers("srv-slow"), rcvbuf=4096)
        slow.send_text('{"hi":1}')
        slow_id = (await recv_json(binary))["conn_id"]
        good = await open_phone(r, "srv-slow")
        good_id = await phone_conn_id(binary, good)
        chunk = '"' + "y" * 16000 + '"'
        notice = None
        for i in range(400):
            await binary.send('{"conn_id":"%s","frame":%s}' % (slow_id, chunk))
            if i % 10 == 0:
                await binary.send('{"conn_id":"%s","frame":%d}' % (good_id, i))
                assert await asyncio.wait_for(good.recv(), 5) == str(i)
            try:
                notice = await asyncio.wait_for(binary.recv(), 0.001)
                break
            except asyncio.TimeoutError:
                pass
        if notice is None:
            notice = await asyncio.wait_for(binary.recv(), 12)
        assert json.loads(notice) == {"conn_id": slow_id, "close_code": 1011}
        await binary.send('{"conn_id":"%s","frame":"still here"}' % good_id)
        assert await asyncio.wait_for(good.recv(), 5) == '"still here"'

    run(scenario())


async def flood_until_backlog_full(binary, phone_id, payload):
    """Sends `"<i>:<payload>"` frames to a phone that is not reading until the binary hears the
    phone's close notice 1011 (sent the moment the outbox overflows); returns how many were sent."""
    for sent in range(1, 2001):  # ≤ 128 MB
        await binary.send('{"conn_id":"%s","frame":"%d:%s"}' % (phone_id, sent - 1, payload))
        try:
            notice = await asyncio.wait_for(binary.recv(), 0.001)
        except asyncio.TimeoutError:
            continue
        assert json.loads(notice) == {"conn_id": phone_id, "close_code": 1011}
        return sent
    raise AssertionError("the outbox never overflowed")


def test_phone_backlog_full_ends_with_a_close_frame_behind_whole_frames(relay_bin, start_relay):
    """Issue #11: a phone whose outbox overflows gets, once it reads again, what the
    kernel already held, the rest of the frame being written, then a close frame 1011
    `phone backlog full` and EOF — every byte parses as whole frames. The binary hears 1011 at
    once (the flood stops on that notice)."""
    r = start(start_relay, relay_bin, "--outbox-budget", "262144")
    payload = "p" * 65000

    async def scenario():
        binary = await open_binary(r, "srv-backlog")
        phone = RawClient(r.port, "/v1/client", phone_headers("srv-backlog"), rcvbuf=4096)
        phone.send_text('{"hi":1}')
        phone_id = (await recv_json(binary))["conn_id"]
        sent = await flood_until_backlog_full(binary, phone_id, payload)

        def read_until_close():
            frames = []
            while True:
                f = phone.read_frame()
                if f is None or f[0] == 8:
                    return frames, f
                frames.append(f)

        frames, close = await asyncio.to_thread(read_until_close)
        assert close == (8, struct.pack("!H", 1011) + b"phone backlog full")
        # The messages the relay did not drop, in order, each whole.
        assert 0 < len(frames) < sent
        for i, (op, data) in enumerate(frames):
            assert op == 1 and data == ('"%d:%s"' % (i, payload)).encode(), f"frame {i} is not message {i}"
        assert await asyncio.to_thread(phone.read_frame) is None  # then the relay's FIN
        phone.close()

    run(scenario())
    closed_1011 = ("pyrycode_relay_connections_closed_total", (("code", "1011"),))
    wait_until(lambda: scrape(r)[closed_1011] == 1, what="the phone counted as closed 1011")


def test_phone_backlog_full_that_never_reads_is_dropped_at_the_write_stall(relay_bin, start_relay):
    """With the real 10 s write stall: after the overflow the close frame waits behind the frame
    being written; a phone that never reads again gets neither and is dropped when the write has
    made no progress for 10 s."""
    r = start(start_relay, relay_bin, "--outbox-budget", "262144")

    async def scenario():
        binary = await open_binary(r, "srv-deaf")
        phone = RawClient(r.port, "/v1/client", phone_headers("srv-deaf"), rcvbuf=4096)
        phone.send_text('{"hi":1}')
        phone_id = (await recv_json(binary))["conn_id"]
        await flood_until_backlog_full(binary, phone_id, "d" * 65000)
        line = await asyncio.to_thread(
            r.proc.wait_for_log, lambda l: parse_logfmt(l).get("msg") == "phone_unregistered"
            and parse_logfmt(l).get("conn_id") == phone_id, 15)
        dropped = parse_logfmt(line)
        assert dropped["close_code"] == "1011"
        full = parse_logfmt(r.proc.wait_for_log(lambda l: parse_logfmt(l).get("msg") == "phone_backlog_full"))
        ts = lambda f: datetime.strptime(f["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
        # The stall clock runs from the last write progress, moments before the overflow.
        assert 8.0 <= ts(dropped) - ts(full) <= 10.5

        def close_frame_seen():
            try:
                return phone.read_close()
            except ConnectionResetError:
                return None
        assert await asyncio.to_thread(close_frame_seen) is None

    run(scenario())


def test_binary_that_stops_reading_pauses_phones_and_loses_nothing(relay_bin, start_relay):
    r = start(start_relay, relay_bin)

    async def scenario():
        binary = RawClient(r.port, "/v1/server", binary_headers("srv-stall"), rcvbuf=4096)
        assert binary.status == 101
        phone = await open_phone(r, "srv-stall", write_limit=65536)
        payload = "z" * 4000
        total = 8000  # ~32 MB: well past the 1 MiB high-water mark and every kernel buffer on the path

        async def produce():
            for i in range(total):
                await phone.send('{"i":%d,"p":"%s"}' % (i, payload))

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0)
        # Back-pressure: the producer cannot finish while the binary reads nothing.
        done, _ = await asyncio.wait({producer}, timeout=3)
        assert not done, "phone was not paused"
        rss_paused = scrape(r)[("process_resident_memory_bytes", ())]

        def consume():
            seen = 0
            while seen < total:
                op, data = binary.read_frame()
                if op != 1:
                    continue
                env = json.loads(data)
                assert env["frame"]["i"] == seen
                seen += 1
            return seen

        assert await asyncio.to_thread(consume) == total
        await producer
        assert rss_paused < 64 * 1024 * 1024

    run(scenario())


def test_header_gate_400_and_upgrade_metrics(relay_bin, start_relay):
    r = start(start_relay, relay_bin)
    resp = http_get(r.port, "/v1/client", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                    "Sec-WebSocket-Version": "13", "User-Agent": "x",
                                                    "X-Pyrycode-Server": "s"})
    assert resp.startswith(b"HTTP/1.1 400 ")
    m = scrape(r)
    assert m[("pyrycode_relay_ws_upgrade_attempts_total", (("endpoint", "client"), ("outcome", "reject_headers")))] == 1
    # All 12 upgrade series exist from boot (docs/operations.md).
    assert sum(1 for (name, _) in m if name == "pyrycode_relay_ws_upgrade_attempts_total") == 12


def test_phone_that_stops_reading_is_closed_after_the_10s_write_stall(relay_bin, start_relay):
    """docs/protocol.md §4/§9.3 with the real 10 s default: a phone whose socket accepts nothing for 10 s is
    dropped as 1011 (`phone write failed`); the binary hears it in the close notice."""
    # The budget is raised so the stall, not the budget, ends the phone: the kernel's own socket
    # buffers (tcp_wmem up to 4 MB) absorb a few MB before anything queues in the relay.
    r = start(start_relay, relay_bin, "--outbox-budget", str(64 << 20))

    async def scenario():
        binary = await open_binary(r, "srv-stall-phone")
        stuck = RawClient(r.port, "/v1/client", phone_headers("srv-stall-phone"), rcvbuf=4096)
        stuck.send_text('{"hi":1}')
        stuck_id = (await recv_json(binary))["conn_id"]
        # ~12 MB: far over what the stuck socket and the kernel buffers take.
        chunk = '"' + "s" * 16000 + '"'
        for _ in range(750):
            await binary.send('{"conn_id":"%s","frame":%s}' % (stuck_id, chunk))
        t0 = asyncio.get_running_loop().time()
        notice = json.loads(await asyncio.wait_for(binary.recv(), 20))
        elapsed = asyncio.get_running_loop().time() - t0
        assert notice == {"conn_id": stuck_id, "close_code": 1011}
        assert 9.0 <= elapsed <= 16.0

    run(scenario())
    assert scrape(r)[("pyrycode_relay_connections_closed_total", (("code", "1011"),))] >= 1


def test_binary_that_accepts_nothing_for_10s_is_dead_and_grace_starts(relay_bin, start_relay):
    """docs/protocol.md §7.5 with the real defaults: the stuck binary is closed 1011 after 10 s without
    progress; its server-id goes into grace (phones stay, a phone message is answered 1000)."""
    r = start(start_relay, relay_bin)

    async def scenario():
        binary = RawClient(r.port, "/v1/server", binary_headers("srv-dead"), rcvbuf=4096)
        assert binary.status == 101
        phone = await open_phone(r, "srv-dead", write_limit=65536)
        chunk = '{"p":"%s"}' % ("d" * 16000)

        async def produce():
            try:
                while True:
                    await phone.send(chunk)
            except websockets.ConnectionClosed:
                pass

        producer = asyncio.create_task(produce())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        # The relay logs the moment it drops the binary: await that event.
        await asyncio.to_thread(r.proc.wait_for_log, lambda line: parse_logfmt(line).get("msg") == "binary_disconnected"
                                and parse_logfmt(line).get("server_id") == "srv-dead", 20)
        elapsed = loop.time() - t0
        health = json.loads(http_get(r.port, "/healthz").split(b"\r\n\r\n", 1)[1])
        assert health["connected_binaries"] == 0, "binary never declared dead"
        assert 9.0 <= elapsed <= 16.0
        # Its phone is read again; its next message meets the grace rule (docs/protocol.md §5: 1000).
        code, _ = await closed_with(phone, timeout=10)
        producer.cancel()
        assert code == 1000
        # The slot is in grace, not free: a new phone still registers.
        late = await open_phone(r, "srv-dead")
        await late.send('{"x":1}')
        assert await closed_with(late) == (1000, "")

    run(scenario())


def test_global_buffer_budget_sheds_the_largest_phone_queue_first(relay_bin, start_relay):
    """docs/protocol.md §7.5: over --max-buffered-bytes the phone with the largest queue is closed
    1011; a phone with a small queue and the binary are untouched."""
    r = start(start_relay, relay_bin, "--max-buffered-bytes", str(2 << 20), "--outbox-budget", str(64 << 20))

    async def scenario():
        binary = await open_binary(r, "srv-global")
        big = RawClient(r.port, "/v1/client", phone_headers("srv-global"), rcvbuf=4096)
        big.send_text('{"big":1}')
        big_id = (await recv_json(binary))["conn_id"]
        small = RawClient(r.port, "/v1/client", phone_headers("srv-global"), rcvbuf=4096)
        small.send_text('{"small":1}')
        small_id = (await recv_json(binary))["conn_id"]
        await binary.send('{"conn_id":"%s","frame":"%s"}' % (small_id, "m" * 1000))
        chunk = '"' + "b" * 16000 + '"'
        notice = None
        for _ in range(800):  # up to ~12.8 MB toward the stuck phone
            await binary.send('{"conn_id":"%s","frame":%s}' % (big_id, chunk))
            try:
                notice = json.loads(await asyncio.wait_for(binary.recv(), 0.001))
                break
            except asyncio.TimeoutError:
                pass
        if notice is None:
            notice = json.loads(await asyncio.wait_for(binary.recv(), 5))
        assert notice == {"conn_id": big_id, "close_code": 1011}
        # The small phone is still registered: the binary can still reach it, no notice for it.
        await binary.send('{"conn_id":"%s","frame":"after"}' % small_id)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(binary.recv(), 0.5)
        assert json.loads(http_get(r.port, "/healthz").split(b"\r\n\r\n", 1)[1])["connected_phones"] == 1

    run(scenario())
