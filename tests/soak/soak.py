"""Soak-and-fault harness behind `make soak` (docs/reliability.md).

Drives two built relays — one plain (`--insecure-listen`), one TLS (`--tls-cert`): the relay has
one kind of client listener per process — with a realistic mix for SOAK_S seconds, checks the
invariants while it runs and after the churn stops, and writes reports/soak/summary.json,
reports/soak/soak.svg and the relays' logs. The last line is `soak: N passed, N failed`, N
counting invariants.

    .venv-test/bin/python tests/soak/soak.py --relay-bin .build/debug/pyrycode-relay --seconds 60
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import websockets  # noqa: E402

import netfaults  # noqa: E402
import plot  # noqa: E402
from clients import (Place, RawWS, Target, binary_headers, close_of, open_ws, phone_headers,  # noqa: E402
                     set_linger0, tcp_connect)

# ---- The relay's settings for the soak (shorter than production so a 60 s run sees every timer
# fire at least once; docs/reliability.md). Heartbeat 15 s + 15 s still outlasts a partition.
RELAY_FLAGS = ["--heartbeat-interval", "15s", "--heartbeat-timeout", "15s", "--grace", "10s",
               "--probe-timeout", "5s", "--max-connections", "240", "--max-half-open-per-ip", "64"]
MAX_CONNECTIONS = 240
HALF_OPEN_PER_IP = 64
HEADER_TIMEOUT_S = 5
HEARTBEAT_S = 15

# ---- Bounds the invariants check (stated in docs/reliability.md).
LOOP_P99_BOUND_S = 0.025     # event-loop iteration p99 over the whole run, per relay
FD_SLACK = 2                 # open fds after settling ≤ start + this
RSS_SLACK_BYTES = 16 << 20   # resident set after settling ≤ start + this
SETTLE_TIMEOUT_S = 60        # churn stopped → live and half-open connections back to 0 within
DRAIN_TIMEOUT_S = 20         # steady senders stopped → every message delivered within
PARTITION_S = 6              # 100 % loss on the namespace link, then it heals

# ---- The checked population.
STEADY_GROUPS = 8            # each: one binary and two phones on its own server-id
PHONES_PER_GROUP = 2

# What the relay may answer each cause with (docs/protocol.md §4–§8, §10): (code, reason) sets;
# a reason of None accepts any reason.
ALLOWED = {
    "steady-end": {(1000, "")},
    "steady-notice": {1000},
    "steady-notice-ns": {1000, 1001, 1011},
    "churn-phone": {(1000, ""), (4404, "no server with that id"), (4404, "binary reclaimed server-id"),
                    (4429, "too many phones for server-id")},
    "churn-binary": {(1000, "")},
    "churn-binary-notice": {1000, 1001, 1011},
    "takeover-newcomer": {(4409, "server-id already claimed")},
    "unmasked": {(1002, "")}, "rsv": {(1002, "")}, "bad-opcode": {(1002, "")},
    "fragmented-ping": {(1002, "")}, "bad-utf8": {(1007, "")}, "oversize": {(1009, "")},
    "not-json": {(1000, "")},
    "target-notice": {1000, 1001, 1002, 1007, 1009, 1011},
    "stalled-notice": {1011},
    "vanish-notice": {1011},
    "ping-flood": {(1000, "")},
    "storm-binary": {(1000, "")},
}
# Admission refusals (docs/protocol.md §3): the rate (429) and the cap (503) may both answer a storm.
HTTP_ALLOWED = {"upgrade-storm": {101, 429, 503}, "cap-storm": {101, 429, 503}}


class Stats:
    def __init__(self):
        self.t0 = time.monotonic()
        self.faults = {}
        self.codes = {}
        self.violations = {}
        self.connections = 0
        self.refused = {}
        self.explained_loss = 0
        self.explained = []  # checked generations a test-made network fault ended
        self.events = []  # (t, what) for the plot

    def now(self):
        return time.monotonic() - self.t0

    def fault(self, kind, n=1):
        self.faults[kind] = self.faults.get(kind, 0) + n

    def violation(self, kind, detail):
        v = self.violations.setdefault(kind, [])
        if len(v) < 20:
            v.append(detail)
        else:
            v[-1] = f"... and more (last: {detail})"

    def code(self, cause, code, reason, in_ns=False):
        """Records a close the relay sent (or its absence, 1006) and checks it against the cause.
        A client in the fault namespace may also lose the close frame to the network (1006) or
        be dropped by the heartbeat while the link is down (1011)."""
        if in_ns and code in (1006, 1011):
            cause += " (network fault)"
            allowed = None
        else:
            allowed = ALLOWED.get(cause)
        key = f"{cause} {code} {reason}".strip()
        self.codes[key] = self.codes.get(key, 0) + 1
        if allowed is not None and (code, reason) not in allowed and code not in allowed:
            self.violation("close-codes", f"{cause}: {code} {reason!r}")

    def http(self, cause, status):
        key = f"{cause} HTTP {status}"
        self.codes[key] = self.codes.get(key, 0) + 1
        if status not in HTTP_ALLOWED[cause]:
            self.violation("close-codes", f"{cause}: HTTP {status}")


class Soak:
    def __init__(self, args):
        self.args = args
        self.stats = Stats()
        self.stop = asyncio.Event()
        self.faults = None
        self.fault_windows = []  # (start, end) of the partitions: only they may explain a broken pair
        self.relays = {}
        self.samples = []
        self.sources = []
        self.ns_sources = []
        self.rng = random.Random(args.seed)
        self.steady = []
        self.tasks = []
        self.target_seen = {}     # the target binaries: frame text → conn_id
        self.target_notices = {}  # conn_id → close notice code
        self.target_ws = []

    # ---------- places and relays

    def local(self):
        return Place(self.rng.choice(self.sources))

    def ns_place(self):
        return Place(self.rng.choice(self.ns_sources), self.faults)

    def place(self, ns_share=0.3):
        if self.faults and self.rng.random() < ns_share:
            return self.ns_place()
        return self.local()

    def start_relays(self, host, outdir):
        key, cert = os.path.join(outdir, "soak.key"), os.path.join(outdir, "soak.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=soak.invalid"],
                       check=True, capture_output=True)
        for name, tls in (("plain", False), ("tls", True)):
            port, mport = free_port(host), free_port("127.0.0.1")
            rundir = tempfile.mkdtemp(prefix=f"soak-{name}-")
            listen = (["--tls-cert", cert, "--tls-key", key, "--https-listen", f"{host}:{port}"] if tls
                      else ["--insecure-listen", f"{host}:{port}"])
            log = open(os.path.join(outdir, f"relay-{name}.log"), "wb")
            proc = subprocess.Popen([self.args.relay_bin, *listen, "--metrics-listen", f"127.0.0.1:{mport}",
                                     "--runtime-dir", rundir, *RELAY_FLAGS],
                                    stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
            self.relays[name] = {"proc": proc, "target": Target(name, host, port, tls), "mport": mport,
                                 "rundir": rundir, "log": log}
        for r in self.relays.values():
            wait_port("127.0.0.1", r["mport"], r["proc"])

    def targets(self):
        return [r["target"] for r in self.relays.values()]

    # ---------- metrics

    async def scrape(self, name):
        r = self.relays[name]
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", r["mport"]), 5)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            body = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        except (OSError, asyncio.TimeoutError):
            return None
        m = {"buckets": []}
        for line in body.decode(errors="replace").split("\r\n\r\n", 1)[-1].splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name_labels, value = line.rsplit(" ", 1)
            if name_labels.startswith("pyrycode_relay_loop_iteration_seconds_bucket"):
                le = name_labels.split('le="')[1].rstrip('"}')
                m["buckets"].append((float("inf") if le == "+Inf" else float(le), float(value)))
            elif "{" not in name_labels:
                m[name_labels] = float(value)
        return m

    async def sampler(self):
        while True:
            row = {"t": self.stats.now()}
            for name, r in self.relays.items():
                if r["proc"].poll() is not None:
                    self.stats.violation("relay-alive", f"{name} exited {r['proc'].returncode} at {row['t']:.0f}s")
                m = await self.scrape(name)
                if m:
                    row[name] = m
            self.samples.append(row)
            if self.settled:
                return
            await asyncio.sleep(1.0)

    settled = False

    # ---------- the checked population

    async def steady_group(self, g):
        target = self.targets()[g % 2]
        in_ns = self.faults is not None and g % 4 >= 2
        gen = 0
        while not self.stop.is_set():
            sid = f"soak-steady-{g}"
            place = self.ns_sources[g % len(self.ns_sources)] if in_ns else self.sources[g]
            p = Place(place, self.faults if in_ns else None)
            streams = {"sent": [0] * PHONES_PER_GROUP * 2, "recv": [0] * PHONES_PER_GROUP * 2}
            self.steady.append((g, gen, in_ns, streams))
            try:
                ended = await self.steady_generation(g, gen, target, p, sid, streams)
            except Exception as e:  # a close we did not ask for
                ended = f"{type(e).__name__}: {e}"
            if ended is None:
                return
            lost = sum(streams["sent"]) - sum(streams["recv"])
            t = self.stats.now()
            if in_ns and any(s - 5 <= t <= e + 2 * HEARTBEAT_S + 10 for s, e in self.fault_windows):
                self.stats.explained_loss += lost
                self.stats.fault("steady-broken-by-network-fault")
                if len(self.stats.explained) < 50:
                    self.stats.explained.append(f"t={t:.0f}s group {g} gen {gen}: {ended}, {lost} lost")
            else:
                self.stats.violation("exactly-once-in-order", f"group {g} gen {gen} ended: {ended}, {lost} lost")
            streams["closed"] = True
            gen += 1
            await asyncio.sleep(1)

    async def steady_generation(self, g, gen, target, place, sid, st):
        binary = await open_ws(target, place, "/v1/server", binary_headers(sid))
        phones = []
        try:
            for _ in range(PHONES_PER_GROUP):
                phones.append(await open_ws(target, place, "/v1/client", phone_headers(sid)))
            self.stats.connections += 1 + PHONES_PER_GROUP
            conn_ids = [None] * PHONES_PER_GROUP
            done = asyncio.Event()
            rng = random.Random(g * 1000 + gen)

            async def phone_reader(i, ws):
                stream = PHONES_PER_GROUP + i
                async for raw in ws:
                    f = json.loads(raw)
                    if f.get("g") != g or f.get("i") != i or f.get("n") != gen:
                        self.stats.violation("no-wrong-delivery", f"group {g} phone {i} got {raw[:80]!r}")
                        continue
                    self.check_seq(st, stream, f["s"], g)

            async def binary_reader():
                async for raw in binary:
                    env = json.loads(raw)
                    if "close_code" in env:
                        # A namespace phone may be dropped by a network fault (heartbeat: 1011).
                        self.stats.code("steady-notice-ns" if place.in_ns else "steady-notice", env["close_code"], "")
                        continue
                    f = env["frame"]
                    if f.get("g") != g or f.get("n") != gen:
                        self.stats.violation("no-wrong-delivery", f"group {g} binary got {raw[:80]!r}")
                        continue
                    i = f["i"]
                    if conn_ids[i] is None:
                        conn_ids[i] = env["conn_id"]
                    elif conn_ids[i] != env["conn_id"]:
                        self.stats.violation("no-wrong-delivery", f"group {g} phone {i} under two conn_ids")
                    if f["s"] > 0:
                        self.check_seq(st, i, f["s"], g)

            async def phone_sender(i, ws):
                await ws.send(json.dumps({"g": g, "i": i, "n": gen, "s": 0}))  # announces the conn_id
                while not done.is_set():
                    st["sent"][i] += 1
                    pad = "x" * (rng.choice((0, 0, 0, 100, 2000, 30000)))
                    await ws.send(json.dumps({"g": g, "i": i, "n": gen, "s": st["sent"][i], "pad": pad}))
                    await asyncio.sleep(rng.uniform(0.05, 0.4))

            async def binary_sender():
                while not done.is_set():
                    for i in range(PHONES_PER_GROUP):
                        if conn_ids[i] is None:
                            continue
                        stream = PHONES_PER_GROUP + i
                        st["sent"][stream] += 1
                        frame = {"g": g, "i": i, "n": gen, "s": st["sent"][stream]}
                        await binary.send(json.dumps({"conn_id": conn_ids[i], "frame": frame}))
                    await asyncio.sleep(rng.uniform(0.05, 0.4))

            readers = [asyncio.ensure_future(phone_reader(i, ws)) for i, ws in enumerate(phones)]
            readers.append(asyncio.ensure_future(binary_reader()))
            senders = [asyncio.ensure_future(phone_sender(i, ws)) for i, ws in enumerate(phones)]
            senders.append(asyncio.ensure_future(binary_sender()))
            stop_wait = asyncio.ensure_future(self.stop.wait())
            finished, _ = await asyncio.wait(readers + senders + [stop_wait], return_when=asyncio.FIRST_COMPLETED)
            done.set()
            if stop_wait not in finished:
                # A reader or sender ended first: the relay closed something we did not close.
                for t in readers + senders:
                    t.cancel()
                stop_wait.cancel()
                codes = [close_of(ws) for ws in phones + [binary]]
                return f"unexpected close {codes}"
            await asyncio.gather(*senders, return_exceptions=True)
            # Drain: every stream's receiver reaches what was sent.
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while st["recv"] != st["sent"] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if st["recv"] != st["sent"]:
                self.stats.violation("exactly-once-in-order",
                                     f"group {g}: sent {st['sent']} delivered {st['recv']} after {DRAIN_TIMEOUT_S}s")
            for ws in phones:
                await ws.close(1000)
                self.stats.code("steady-end", *close_of(ws))
            # The binary hears each phone's own close code (§8) before we close it.
            await asyncio.sleep(0.5)
            await binary.close(1000)
            self.stats.code("steady-end", *close_of(binary))
            for t in readers:
                t.cancel()
            return None
        finally:
            for ws in phones + [binary]:
                if ws.state is not websockets.State.CLOSED:
                    ws.transport.abort()

    def overlaps_partition(self, t0, t1):
        """Whether [t0, t1] overlaps a partition or the 15 s of TCP back-off after it."""
        return any(s <= t1 and t0 <= e + 15 for s, e in self.fault_windows)

    def check_seq(self, st, stream, s, g):
        last = st["recv"][stream]
        if s == last + 1:
            st["recv"][stream] = s
        elif s <= last:
            self.stats.violation("exactly-once-in-order", f"group {g} stream {stream}: duplicate {s} after {last}")
        else:
            self.stats.violation("exactly-once-in-order", f"group {g} stream {stream}: gap {last} → {s}")
            st["recv"][stream] = s

    # ---------- churn: binaries that come, go and restart; phones that come and go

    async def churn_binary(self, k):
        """One server-id's binary: stays a while, leaves (close, RST, or restart = reclaim)."""
        sid = f"soak-churn-{k}"
        while not self.stop.is_set():
            target = self.targets()[k % 2]
            place = self.place()
            try:
                ws = await open_ws(target, place, "/v1/server", binary_headers(sid))
            except (OSError, asyncio.TimeoutError, websockets.InvalidStatus, websockets.InvalidHandshake) as e:
                self.stats.refused[type(e).__name__] = self.stats.refused.get(type(e).__name__, 0) + 1
                await asyncio.sleep(1)
                continue
            self.stats.connections += 1
            echo = asyncio.ensure_future(self.echo(ws, "churn-binary-notice"))
            await self.sleep(self.rng.uniform(2, 10))
            how = self.rng.choice(["close", "rst", "restart", "restart", "takeover"])
            if how == "takeover" and not echo.done() and not place.in_ns:
                # A second binary for a live id: the incumbent answers the probe, so 4409.
                self.stats.fault("takeover-attempt")
                try:
                    ws2 = await open_ws(target, self.place(), "/v1/server", binary_headers(sid))
                    self.stats.connections += 1
                    await wait_closed(ws2, 15)
                    self.stats.code("takeover-newcomer", *close_of(ws2))
                except (OSError, asyncio.TimeoutError, websockets.InvalidStatus) as e:
                    self.stats.refused[type(e).__name__] = self.stats.refused.get(type(e).__name__, 0) + 1
                how = "close"
            if how == "close":
                self.stats.fault("binary-clean-close")
                await ws.close(1000)
                self.stats.code("churn-binary", *close_of(ws), in_ns=place.in_ns)
                await self.sleep(self.rng.uniform(0, 12))  # sometimes past the grace period
            else:
                self.stats.fault("binary-rst" if how == "rst" else "binary-restart-reclaim")
                rst(ws)
                if how == "rst":
                    await self.sleep(self.rng.uniform(0, 12))
            echo.cancel()

    async def echo(self, ws, notice_cause):
        """A binary that echoes every phone message back to its sender."""
        try:
            async for raw in ws:
                env = json.loads(raw)
                if "close_code" in env:
                    self.stats.code(notice_cause, env["close_code"], "")
                elif "frame" in env:
                    await ws.send(json.dumps({"conn_id": env["conn_id"], "frame": env["frame"]}))
        except websockets.ConnectionClosed:
            pass

    async def churn_phone(self):
        """Phones that connect to a churn id, talk a little, and leave by close, RST or not at all."""
        k = self.rng.randrange(self.args.churn_ids)
        target = self.targets()[k % 2]
        nonce = self.rng.getrandbits(48)
        place = self.place()
        try:
            ws = await open_ws(target, place, "/v1/client", phone_headers(f"soak-churn-{k}"))
        except (OSError, asyncio.TimeoutError, websockets.InvalidStatus, websockets.InvalidHandshake) as e:
            self.stats.refused[type(e).__name__] = self.stats.refused.get(type(e).__name__, 0) + 1
            return
        self.stats.connections += 1
        how = self.rng.choice(["close", "close", "rst", "quiet"])
        try:
            for n in range(self.rng.randrange(1, 6)):
                await ws.send(json.dumps({"nonce": nonce, "n": n}))
                f = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if f.get("nonce") != nonce:
                    self.stats.violation("no-wrong-delivery", f"churn phone {nonce} got {f}")
                await self.sleep(self.rng.uniform(0, 1.5))
        except websockets.ConnectionClosed:
            self.stats.code("churn-phone", *close_of(ws), in_ns=place.in_ns)
            return
        except asyncio.TimeoutError:
            pass  # the binary left meanwhile: its echo may never come
        if how == "close":
            self.stats.fault("phone-clean-close")
            await ws.close(1000)
            self.stats.code("churn-phone", *close_of(ws), in_ns=place.in_ns)
        elif how == "rst":
            self.stats.fault("phone-rst")
            rst(ws)
        else:
            # Silent until the relay closes it (grace end, reclaim) or the churn stops.
            await self.wait_closed_or_stop(ws, 30)
            if ws.protocol.close_rcvd:
                self.stats.code("churn-phone", *close_of(ws), in_ns=place.in_ns)
            else:
                rst(ws)

    # ---------- misbehaving peers, all against one always-present binary ("target")

    async def target_binary(self, target):
        sid = f"soak-target-{target.name}"
        ws = await open_ws(target, self.local(), "/v1/server", binary_headers(sid))
        self.target_ws.append(ws)
        self.stats.connections += 1
        try:
            async for raw in ws:
                env = json.loads(raw)
                if "close_code" in env:
                    self.target_notices[env["conn_id"]] = env["close_code"]
                    self.stats.code("target-notice", env["close_code"], "")
                elif "frame" in env:
                    self.target_seen[json.dumps(env["frame"])] = env["conn_id"]
        except websockets.ConnectionClosed:
            if not self.stop.is_set():
                self.stats.violation("fault-outcomes", f"target binary {sid} closed {close_of(ws)}")

    async def raw_open(self, target, place, path, headers, **kw):
        """A RawWS past its 101, or None when the relay refused it for admission (counted)."""
        try:
            c = await RawWS.open(target, place, path, headers, **kw)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            self.stats.refused[type(e).__name__] = self.stats.refused.get(type(e).__name__, 0) + 1
            return None
        if c.status != 101:
            self.stats.refused[f"HTTP {c.status}"] = self.stats.refused.get(f"HTTP {c.status}", 0) + 1
            if c.status not in (429, 503):
                self.stats.violation("fault-outcomes", f"{path}: upgrade answered {c.status}")
            c.abort()
            return None
        self.stats.connections += 1
        return c

    async def malformed(self):
        target = self.rng.choice(self.targets())
        kind = self.rng.choice(["unmasked", "rsv", "bad-opcode", "fragmented-ping", "bad-utf8", "oversize",
                                "not-json"])
        c = await self.raw_open(target, self.place(0.2), "/v1/client", phone_headers(f"soak-target-{target.name}"))
        if c is None:
            return
        self.stats.fault(f"malformed-{kind}")
        if kind == "unmasked":
            c.send_frame(1, b'{"a":1}', mask=False)
        elif kind == "rsv":
            c.send_frame(1, b'{"a":1}', rsv=0x40)
        elif kind == "bad-opcode":
            c.send_frame(3, b"{}")
        elif kind == "fragmented-ping":
            c.send_frame(9, b"p", fin=False)
        elif kind == "bad-utf8":
            c.send_frame(1, b'"\xff\xfe"')
        elif kind == "oversize":
            # A header announcing 300,000 bytes and only the first 100: refused on the header.
            c.send_frame(2, b"[" + b"1," * 150_000 + b"1]", truncate=100)
        elif kind == "not-json":
            c.send_frame(1, b"{not json")
        code, reason = await c.read_close(15)
        self.stats.code(kind, code, reason)
        c.abort()

    async def ping_flood(self):
        target = self.rng.choice(self.targets())
        c = await self.raw_open(target, self.place(0.2), "/v1/client", phone_headers(f"soak-target-{target.name}"))
        if c is None:
            return
        self.stats.fault("ping-flood")
        n = 500
        for i in range(n):
            c.send_frame(9, i.to_bytes(4, "big"))
        await c.writer.drain()
        pongs = 0
        while pongs < n:
            f = await c.read_frame(10)
            if f is None or f[0] != 10:
                break
            pongs += 1
        if pongs == 0:
            self.stats.violation("fault-outcomes", "ping flood: no pong")
        self.stats.fault("ping-flood-pongs", pongs)
        c.send_frame(8, (1000).to_bytes(2, "big"))
        code, reason = await c.read_close(10)
        self.stats.code("ping-flood", code, reason)
        c.abort()

    async def stalled_phone(self):
        """A phone that stops reading while its binary keeps sending: the relay must drop it
        (backlog budget 1011, or a reset after 10 s without progress) and tell the binary 1011."""
        target = self.rng.choice(self.targets())
        sid = f"soak-stall-{self.rng.getrandbits(32):08x}"
        self.stats.fault("stalled-phone")
        try:
            b = await open_ws(target, self.local(), "/v1/server", binary_headers(sid))
        except (OSError, asyncio.TimeoutError, websockets.InvalidStatus, websockets.InvalidHandshake) as e:
            self.stats.refused[type(e).__name__] = self.stats.refused.get(type(e).__name__, 0) + 1
            return
        self.stats.connections += 1
        c = await self.raw_open(target, self.place(0.2), "/v1/client", phone_headers(sid), rcvbuf=4096)
        if c is None:
            await b.close(1000)
            return
        c.send_frame(1, b'"hello"')
        env = json.loads(await asyncio.wait_for(b.recv(), 10))
        cid = env["conn_id"]
        blob = json.dumps({"conn_id": cid, "frame": "y" * 200_000})
        notice = None
        deadline = time.monotonic() + 40
        while notice is None and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(b.send(blob), 2)
                raw = await asyncio.wait_for(b.recv(), 0.05)
                env = json.loads(raw)
                if env.get("close_code"):
                    notice = env["close_code"]
            except asyncio.TimeoutError:
                pass
        if notice is None:
            self.stats.violation("fault-outcomes", "stalled phone: no close notice within 40 s")
        else:
            self.stats.code("stalled-notice", notice, "")
        c.abort()
        await b.close(1000)
        self.stats.code("storm-binary", *close_of(b))

    async def vanish(self):
        """A phone in the namespace whose address is blackholed: no FIN, no RST, no ACKs. The
        heartbeat must find it (≤ 2 × 15 s) and tell its binary 1011."""
        if not self.faults:
            return
        free = [h for h in netfaults.NetFaults.NS_VANISH if self.faults.addr(h) not in self.faults.blackholed]
        if not free:
            return
        host = self.rng.choice(free)
        target = self.rng.choice(self.targets())
        c = await self.raw_open(target, Place(self.faults.addr(host), self.faults), "/v1/client",
                                phone_headers(f"soak-target-{target.name}"))
        if c is None:
            return
        self.stats.fault("vanish-without-fin")
        tag = {"vanish": self.rng.getrandbits(48)}
        c.send_frame(1, json.dumps(tag).encode())
        await c.writer.drain()
        # The target binary names the phone when the tag reaches it; under the namespace's
        # network faults that can take a few TCP retransmissions.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.target_seen.get(json.dumps(tag)) is None:
            await asyncio.sleep(0.1)
        cid = self.target_seen.get(json.dumps(tag))
        self.faults.blackhole(host, True)
        deadline = time.monotonic() + 2 * HEARTBEAT_S + 15
        while time.monotonic() < deadline and self.target_notices.get(cid) is None:
            await asyncio.sleep(0.5)
        code = self.target_notices.get(cid)
        if cid is None or code is None:
            self.stats.violation("fault-outcomes", f"vanished phone: no close notice (conn_id {cid})")
        else:
            self.stats.code("vanish-notice", code, "")
        c.abort()
        self.faults.blackhole(host, False)

    async def slowloris(self):
        """A request head dribbled a byte a second: closed at the header timeout, no answer."""
        target = self.rng.choice(self.targets())
        self.stats.fault("slowloris")
        place = self.place(0.2)
        try:
            s = await tcp_connect(target, place)
        except (OSError, asyncio.TimeoutError):
            return
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        start = self.stats.now()
        head = b"GET /v1/client HTTP/1.1\r\nHost: soak\r\nX-Pyrycode-Server: soak-target\r\n" + b"X" * 400
        got = b""
        closed = False
        try:
            if target.tls:
                # The TLS variant: a ClientHello record header and a few bytes, then nothing.
                await loop.sock_sendall(s, bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]))
                self.stats.fault("tls-half-open")
            for b in head:
                if target.tls:
                    break
                await loop.sock_sendall(s, bytes([b]))
                try:
                    chunk = await asyncio.wait_for(loop.sock_recv(s, 4096), 1)
                    got += chunk
                    if not chunk:
                        closed = True
                        break
                except asyncio.TimeoutError:
                    pass
            while not closed and time.monotonic() - t0 < HEADER_TIMEOUT_S + 5:
                chunk = await asyncio.wait_for(loop.sock_recv(s, 4096), HEADER_TIMEOUT_S + 5)
                got += chunk
                closed = not chunk
        except (ConnectionError, asyncio.TimeoutError, OSError):
            closed = True
        took = time.monotonic() - t0
        # Behind a partition the relay's FIN reaches the client late (TCP back-off): the relay
        # closed in time, the client could not see it. Counted, not failed.
        late_by_partition = place.in_ns and self.overlaps_partition(start, start + took)
        if closed and not got and took > HEADER_TIMEOUT_S + 4 and late_by_partition:
            self.stats.fault("slowloris-close-delayed-by-partition")
        elif not closed or took > HEADER_TIMEOUT_S + 4 or got:
            self.stats.violation("fault-outcomes", f"slowloris ({target.name}, {'namespace' if place.in_ns else 'local'}) "
                                                   f"at t={start:.0f}s: closed={closed} after {took:.1f}s, "
                                                   f"{len(got)} bytes answered")
        s.close()

    async def upgrade_storm(self):
        """40 upgrades at once from one address: past the 20-attempt burst, 429."""
        target = self.rng.choice(self.targets())
        src = Place(self.rng.choice(self.storm_sources))
        self.stats.fault("upgrade-storm")
        tag = self.rng.getrandbits(32)
        statuses = await asyncio.gather(*[self.one_upgrade(target, src, f"soak-storm-{tag:08x}-{i}") for i in range(40)])
        for st in statuses:
            if st is not None:
                self.stats.http("upgrade-storm", st)
        if 429 not in statuses:
            self.stats.violation("fault-outcomes", f"upgrade storm from one address: no 429 in {statuses}")

    async def one_upgrade(self, target, place, sid, hold=0.5):
        try:
            c = await RawWS.open(target, place, "/v1/server", binary_headers(sid), timeout=15)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            return None
        if c.status == 101:
            self.stats.connections += 1
            await asyncio.sleep(hold)
            c.send_frame(8, (1000).to_bytes(2, "big"))
            code, reason = await c.read_close(10)
            self.stats.code("storm-binary", code, reason)
        c.abort()
        return c.status

    async def cap_storm(self):
        """Binaries from many addresses, all held at once, past the relay's connection cap: 503."""
        target = self.relays["plain"]["target"]
        self.stats.fault("connection-cap-storm")
        srcs = self.storm_sources
        tag = self.rng.getrandbits(32)
        sem = asyncio.Semaphore(40)

        async def one(i):
            async with sem:
                try:
                    return await RawWS.open(target, Place(srcs[i % len(srcs)]), "/v1/server",
                                            binary_headers(f"soak-cap-{tag:08x}-{i}"), timeout=15)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                    self.stats.refused[type(e).__name__] = self.stats.refused.get(type(e).__name__, 0) + 1
                    return None
        conns = [c for c in await asyncio.gather(*[one(i) for i in range(MAX_CONNECTIONS + 40)]) if c]
        statuses = [c.status for c in conns]
        for st in statuses:
            self.stats.http("cap-storm", st)
        if 503 not in statuses:
            self.stats.violation("fault-outcomes", f"cap storm: no 503 among {len(statuses)} answers")
        await asyncio.sleep(1)
        for c in conns:
            if c.status == 101:
                self.stats.connections += 1
                c.send_frame(8, (1000).to_bytes(2, "big"))

        async def closed(c):
            if c.status == 101:
                self.stats.code("storm-binary", *await c.read_close(10))
            c.abort()
        await asyncio.gather(*[closed(c) for c in conns])

    async def half_open_storm(self):
        """80 silent TCP connections from one address to the TLS listener: past 64 per address
        the oldest are closed; all of them by the header timeout."""
        target = self.relays["tls"]["target"]
        place = Place(self.rng.choice(self.storm_sources))
        self.stats.fault("half-open-storm")
        socks = []
        for _ in range(HALF_OPEN_PER_IP + 16):
            try:
                socks.append(await tcp_connect(target, place))
            except (OSError, asyncio.TimeoutError):
                pass
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()

        async def closed(s):
            try:
                return await asyncio.wait_for(loop.sock_recv(s, 1), HEADER_TIMEOUT_S + 5) == b""
            except (ConnectionError, OSError):
                return True
            except asyncio.TimeoutError:
                return False
        res = await asyncio.gather(*[closed(s) for s in socks])
        if not all(res) or time.monotonic() - t0 > HEADER_TIMEOUT_S + 5:
            self.stats.violation("fault-outcomes", f"half-open storm: {res.count(False)} of {len(res)} still open")
        for s in socks:
            s.close()

    # ---------- schedules

    async def wait_closed_or_stop(self, ws, timeout):
        closed = asyncio.ensure_future(wait_closed(ws, timeout))
        stop = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait([closed, stop], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        stop.cancel()

    async def sleep(self, s):
        try:
            await asyncio.wait_for(self.stop.wait(), s)
        except asyncio.TimeoutError:
            pass

    async def every(self, period, fn, jitter=0.5, first=None):
        """Runs `fn` about every `period` seconds (the first time after `first`, default random)
        until the churn stops, never two at once."""
        await self.sleep(self.rng.uniform(0, period) if first is None else first)
        while not self.stop.is_set():
            try:
                await fn()
            except Exception as e:  # a harness-side surprise is a finding too
                self.stats.violation("fault-outcomes", f"{fn.__name__}: {type(e).__name__}: {e}")
            await self.sleep(period * self.rng.uniform(1 - jitter, 1 + jitter))

    async def spawn_every(self, period, fn):
        """Starts `fn` about every `period` seconds, concurrently (connection churn)."""
        running = set()

        async def guarded():
            try:
                await fn()
            except Exception as e:
                self.stats.violation("fault-outcomes", f"{fn.__name__}: {type(e).__name__}: {e}")
        while not self.stop.is_set():
            t = asyncio.ensure_future(guarded())
            running.add(t)
            t.add_done_callback(running.discard)
            await self.sleep(self.rng.expovariate(1 / period))
        if running:
            await asyncio.wait(running, timeout=40)
        for t in running:
            t.cancel()

    async def netem_schedule(self):
        """Alternates a mild and a bad mobile network; a partition (100 % loss) now and then."""
        i = 0
        next_partition = min(self.args.seconds * 0.4, 240)
        while not self.stop.is_set():
            if self.stats.now() >= next_partition:
                self.stats.fault("partition")
                t0 = self.stats.now()
                self.faults.set_profile("partition")
                await asyncio.sleep(PARTITION_S)
                self.faults.set_profile("mild")
                self.fault_windows.append((t0, self.stats.now()))
                self.stats.events.append((t0, self.stats.now(), "partition"))
                next_partition += 600
            name = ("mild", "bad")[i % 2]
            self.faults.set_profile(name)
            self.stats.fault(f"network-{name}")
            await self.sleep(10)
            i += 1

    # ---------- the run

    async def run(self):
        a = self.args
        host = self.faults.relay_ip if self.faults else "127.0.0.1"
        if self.faults:
            self.sources = [self.faults.addr(h) for h in range(100, 200)]
            self.storm_sources = [self.faults.addr(h) for h in range(200, 250)]
            self.ns_sources = [self.faults.addr(h) for h in netfaults.NetFaults.NS_CLIENTS]
        else:
            self.sources = [f"127.0.{i // 250}.{i % 250 + 2}" for i in range(100)]
            self.storm_sources = [f"127.1.0.{i + 2}" for i in range(50)]
        self.start_relays(host, a.out)
        await asyncio.sleep(0.5)
        start = {n: await self.scrape(n) for n in self.relays}
        sampler = asyncio.ensure_future(self.sampler())
        for t in self.targets():
            self.tasks.append(asyncio.ensure_future(self.target_binary(t)))
        await asyncio.sleep(0.5)
        steady = [asyncio.ensure_future(self.steady_group(g)) for g in range(STEADY_GROUPS)]
        churn = [asyncio.ensure_future(self.churn_binary(k)) for k in range(a.churn_ids)]
        churn += [asyncio.ensure_future(x) for x in (
            self.spawn_every(0.4, self.churn_phone),
            self.every(3, self.malformed), self.every(4, self.malformed),
            self.every(10, self.ping_flood), self.every(12, self.stalled_phone),
            self.every(8, self.slowloris), self.every(9, self.slowloris),
            self.every(20, self.upgrade_storm), self.every(30, self.half_open_storm),
            self.every(max(45, a.seconds / 4), self.cap_storm, jitter=0.1, first=a.seconds * 0.3),
        )]
        if self.faults:
            churn.append(asyncio.ensure_future(self.netem_schedule()))
            churn.append(asyncio.ensure_future(self.every(20, self.vanish)))
        t_end = time.monotonic() + a.seconds
        while time.monotonic() < t_end:
            await asyncio.sleep(min(5, max(0.1, t_end - time.monotonic())))
            if a.verbose:
                print(f"soak: t={self.stats.now():.0f}s conns={self.stats.connections} "
                      f"faults={sum(self.stats.faults.values())}", flush=True)
        load_end = self.stats.now()
        self.stop.set()
        if self.faults and self.faults.profile:
            self.faults.set_profile("clean")  # heal the link so the drain is not a fault
        await asyncio.wait(steady, timeout=DRAIN_TIMEOUT_S + 30)
        await asyncio.wait(churn, timeout=60)
        for ws in self.target_ws:
            await ws.close(1000)
            self.stats.code("churn-binary", *close_of(ws))
        for t in churn + steady + self.tasks:
            t.cancel()
        # Settle: every connection closed by us or by the relay's timers.
        t0 = time.monotonic()
        while time.monotonic() - t0 < SETTLE_TIMEOUT_S:
            ends = {n: await self.scrape(n) for n in self.relays}
            if all(m and m.get("pyrycode_relay_live_connections", 1) == 0
                   and m.get("pyrycode_relay_half_open_connections", 1) == 0 for m in ends.values()):
                break
            await asyncio.sleep(1)
        settle_s = time.monotonic() - t0
        await asyncio.sleep(2)
        ends = {n: await self.scrape(n) for n in self.relays}
        self.settled = True
        await sampler
        return self.report(start, ends, load_end, settle_s)

    # ---------- verdicts

    def report(self, start, ends, load_end, settle_s):
        s = self.stats
        verdicts = {}
        for name, r in self.relays.items():
            r["proc"].send_signal(signal.SIGTERM)
            try:
                rc = r["proc"].wait(20)
            except subprocess.TimeoutExpired:
                r["proc"].kill()
                rc = "hung on SIGTERM"
            if rc != 0:
                s.violation("relay-alive", f"{name}: exit {rc} on SIGTERM")
        verdicts["relay-alive"] = "relay-alive" not in s.violations

        streams_sent = sum(sum(st["sent"]) for *_, st in self.steady)
        streams_recv = sum(sum(st["recv"]) for *_, st in self.steady)
        if streams_recv == 0:
            s.violation("exactly-once-in-order", "the checked population delivered nothing")
        verdicts["exactly-once-in-order"] = "exactly-once-in-order" not in s.violations
        verdicts["no-wrong-delivery"] = "no-wrong-delivery" not in s.violations
        verdicts["close-codes"] = "close-codes" not in s.violations

        resources = {}
        for name in self.relays:
            st, en = start.get(name) or {}, ends.get(name) or {}
            series = [row[name] for row in self.samples if name in row]
            rss = [m.get("process_resident_memory_bytes", 0) for m in series]
            fds = [m.get("process_open_fds", 0) for m in series]
            p = percentiles(st.get("buckets", []), en.get("buckets", []))
            resources[name] = {
                "rss_bytes": {"start": st.get("process_resident_memory_bytes"), "peak": max(rss, default=None),
                              "end": en.get("process_resident_memory_bytes")},
                "fds": {"start": st.get("process_open_fds"), "peak": max(fds, default=None),
                        "end": en.get("process_open_fds")},
                "live_connections_end": en.get("pyrycode_relay_live_connections"),
                "half_open_end": en.get("pyrycode_relay_half_open_connections"),
                "loop_latency_s": p,
                "peak_live_connections": max((m.get("pyrycode_relay_live_connections", 0) for m in series), default=0),
            }
            if en.get("pyrycode_relay_live_connections") != 0 or en.get("pyrycode_relay_half_open_connections") != 0:
                s.violation("connections-return", f"{name}: live {en.get('pyrycode_relay_live_connections')}, "
                                                  f"half-open {en.get('pyrycode_relay_half_open_connections')} "
                                                  f"{SETTLE_TIMEOUT_S}s after the churn stopped")
            if not st or not en or en["process_open_fds"] > st["process_open_fds"] + FD_SLACK:
                s.violation("fds-return", f"{name}: fds {st.get('process_open_fds')} → {en.get('process_open_fds')}")
            if not st or not en or en["process_resident_memory_bytes"] > st["process_resident_memory_bytes"] + RSS_SLACK_BYTES:
                s.violation("rss-return", f"{name}: RSS {st.get('process_resident_memory_bytes')} → "
                                          f"{en.get('process_resident_memory_bytes')}")
            if p["p99"] is None or p["p99"] > LOOP_P99_BOUND_S:
                s.violation("loop-latency", f"{name}: p99 {p['p99']} s > {LOOP_P99_BOUND_S} s")
        for k in ("connections-return", "fds-return", "rss-return", "loop-latency", "fault-outcomes"):
            verdicts[k] = k not in s.violations

        summary = {
            "seconds": self.args.seconds, "load_seconds": round(load_end, 1), "settle_seconds": round(settle_s, 1),
            "network_faults": f"netns, {self.faults.backend}" if self.faults else f"skipped: {self.args.netns_skip}",
            "relays": {n: {"listener": "TLS" if r["target"].tls else "plain",
                           "address": f"{r['target'].host}:{r['target'].port}"} for n, r in self.relays.items()},
            "relay_flags": RELAY_FLAGS,
            "bounds": {"loop_p99_s": LOOP_P99_BOUND_S, "fd_slack": FD_SLACK, "rss_slack_bytes": RSS_SLACK_BYTES,
                       "settle_timeout_s": SETTLE_TIMEOUT_S, "drain_timeout_s": DRAIN_TIMEOUT_S},
            "messages": {"checked_sent": streams_sent, "checked_delivered": streams_recv,
                         "lost_explained_by_test_faults": s.explained_loss,
                         "explained_by": s.explained,
                         "checked_generations": len(self.steady)},
            "connections_opened": s.connections, "refused_at_connect": s.refused,
            "faults_injected": dict(sorted(s.faults.items())),
            "codes_seen": dict(sorted(s.codes.items())),
            "resources": resources,
            "invariants": verdicts,
            "violations": s.violations,
        }
        return summary


def percentiles(b0, b1):
    """p50/p99/p999 (upper bucket bounds) of the loop-iteration histogram between two scrapes."""
    start = dict(b0)
    buckets = [(le, c - start.get(le, 0)) for le, c in b1]
    total = buckets[-1][1] if buckets else 0
    out = {"iterations": total}
    for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999)):
        out[name] = next((le for le, c in buckets if total and c >= q * total), None)
    return out


def rst(ws):
    """Drops a websockets connection with a TCP RST (SO_LINGER 0), no close frame."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        try:
            set_linger0(sock)
        except OSError:
            pass
    ws.transport.abort()


async def wait_closed(ws, timeout):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except (websockets.ConnectionClosed, asyncio.TimeoutError):
        pass


def die_with_parent():
    """In the relay's child process: SIGKILL when the harness dies, however it dies (prctl(2))."""
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host, port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"relay exited {proc.returncode} at start")
        try:
            socket.create_connection((host, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"relay metrics port {port} did not open")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--relay-bin", required=True)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--out", default="reports/soak")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--churn-ids", type=int, default=6)
    ap.add_argument("--no-netns", action="store_true", help="skip the network-namespace faults")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")

    soak = Soak(args)
    backend, args.netns_skip = (None, "--no-netns") if args.no_netns else netfaults.probe()
    if args.netns_skip:
        print(f"soak: network faults SKIPPED: {args.netns_skip}", flush=True)
    else:
        soak.faults = netfaults.NetFaults()
        print(f"soak: network faults on, backend {backend}"
              + ("" if backend == "netem" else " (this kernel has no netem: loss and rate limit, "
                 "no fixed delay, duplication or reordering)"), flush=True)

    def on_signal(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    summary = None
    try:
        if soak.faults:
            soak.faults.setup(backend)
        summary = asyncio.run(soak.run())
    except KeyboardInterrupt:
        pass
    finally:
        for r in soak.relays.values():
            if r["proc"].poll() is None:
                r["proc"].kill()
                r["proc"].wait()
            r["log"].close()
            shutil.rmtree(r["rundir"], ignore_errors=True)
        if soak.faults:
            soak.faults.teardown()
    if summary is None:
        print("soak: interrupted: no verdict")
        sys.exit(130)
    summary["seed"] = args.seed
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    plot.write_svg(os.path.join(args.out, "soak.svg"), soak.samples, soak.stats.events, summary)
    print(json.dumps(summary, indent=2))
    for k, v in summary["violations"].items():
        for d in v:
            print(f"soak: FAILED {k}: {d}")
    passed = sum(summary["invariants"].values())
    failed = len(summary["invariants"]) - passed
    print(f"soak: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
