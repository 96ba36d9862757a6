"""Static sharding behind HAProxy (docs/architecture.md, "v2 = static shards"): the shipped
deploy/haproxy.cfg in front of three relays started with `--shard i/3`, all on loopback.

HAProxy is Debian's package (scripts/ensure-deps.sh installs it). The test takes the shipped
file from its `defaults` section on — the timeouts, the TLS frontend, the shard routing and the
health checks — and changes only addresses, ports and the certificate path; its own short
`global` section replaces the production one (no chroot, user or log socket). The test CA is
made with openssl, as tests/interop/test_tls.py does.

Clients connect from distinct loopback addresses (127.1.x.y): HAProxy passes each one on in
X-Forwarded-For, and the relays (--trust-x-forwarded-for, --max-connections-per-ip 2) admit by
it, so a relay that saw only HAProxy's address would refuse all but two connections.
"""

import asyncio
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import time
import zlib

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import Relay as Process, free_port, parse_logfmt
from relaylib import RunningRelay, binary_headers, phone_headers, scrape, wait_until
from test_tls import PKI

REPO = pathlib.Path(__file__).resolve().parents[2]
SHIPPED_CFG = REPO / "deploy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy")
SHARDS = 3
PAIRS = 300
PER_IP_CAP = 2  # a binary and its phone per client address
TIMEOUT = 60  # the whole scenario of one test, seconds
GAP_BOUND = 1.5  # seconds: the longest round trip a surviving pair may take while a shard dies
HEADLINE = (  # docs/architecture.md: the exact first line of a single-instance refusal, sharded or not
    "ERROR: multi-instance deploy detected, relay registry is in-memory and cannot share state "
    "across replicas. Set PYRYCODE_RELAY_SINGLE_INSTANCE=1 to bypass (NOT recommended for production)."
)


@pytest.fixture(scope="module")
def haproxy_bin():
    if HAPROXY is None:
        pytest.fail("haproxy not installed (scripts/ensure-deps.sh installs Debian's package)", pytrace=False)
    return HAPROXY


@pytest.fixture(scope="module")
def pem(tmp_path_factory):
    """(CA path, cert+key PEM for HAProxy's `crt`)."""
    pki = PKI(str(tmp_path_factory.mktemp("shard-pki")))
    crt, key = pki.leaf("haproxy", 0x5001)
    bundle = os.path.join(pki.root, "haproxy.pem")
    with open(bundle, "w") as out:
        out.write(open(crt).read() + open(key).read())
    return pki, bundle


def shard_of(server_id, n=SHARDS):
    """docs/architecture.md: CRC-32/IEEE (zlib, the library the relay links) mod N."""
    return zlib.crc32(server_id.encode()) % n


def client_ip(k):
    return f"127.1.{k // 200}.{k % 200 + 1}"


# -- processes -----------------------------------------------------------------------------------

class Shard(RunningRelay):
    def __init__(self, start_relay, relay_bin, index, rundir, port=None, mport=None):
        port, mport = port or free_port(), mport or free_port()
        args = ["--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{mport}",
                "--runtime-dir", rundir, "--shard", f"{index}/{SHARDS}", "--trust-x-forwarded-for",
                "--max-connections-per-ip", str(PER_IP_CAP)]
        super().__init__(start_relay(relay_bin, args, wait_port=port), port, mport)
        self.index, self.rundir, self.relay_bin, self.start_relay = index, rundir, relay_bin, start_relay

    def restarted(self):
        """A new process for the same shard on the same ports, as systemd's Restart= would do."""
        return Shard(self.start_relay, self.relay_bin, self.index, self.rundir, self.port, self.metrics_port)

    def metric(self, name, labels=()):
        return scrape(self).get((name, labels), 0)

    def claimed_ids(self):
        return {e["server_id"] for e in self.log_events() if e.get("msg") == "server_claimed"}


def start_shards(start_relay, relay_bin):
    rundir = tempfile.mkdtemp(prefix="relay-shards-")  # one runtime dir: the locks are per shard
    return [Shard(start_relay, relay_bin, i, rundir) for i in range(SHARDS)]


def haproxy_config(shards, port, bundle, mutate=lambda text: text):
    """The shipped file from `defaults` on, pointed at the test's shards, port and certificate."""
    text = SHIPPED_CFG.read_text()
    body = text[text.index("\ndefaults"):]
    body = body.replace("bind 0.0.0.0:443 ", f"bind 127.0.0.1:{port} ")
    body = body.replace("bind [::]:443 ", f"bind [::1]:{port} ")
    body = body.replace("/etc/haproxy/certs/relay.pem", bundle)
    for s in shards:
        body = body.replace(f"127.0.0.1:{8100 + s.index} ", f"127.0.0.1:{s.port} ")
    assert body.count("127.0.0.1:810") == 0, "the shipped file changed shape: update this test"
    head = "global\n    maxconn 4000\n"
    return head + mutate(body)


def start_haproxy(start_relay, haproxy_bin, config_text):
    port = int(re.search(r"bind 127\.0\.0\.1:(\d+)\b", config_text).group(1))
    path = os.path.join(tempfile.mkdtemp(prefix="haproxy-"), "haproxy.cfg")
    with open(path, "w") as f:
        f.write(config_text)
    return start_relay(haproxy_bin, ["-db", "-f", path], wait_port=port)


# -- clients -------------------------------------------------------------------------------------

class Pair:
    def __init__(self, k, server_id):
        self.k, self.id = k, server_id
        self.binary = self.phone = None
        self.rounds = 0
        self.longest_round = 0.0  # seconds, since the last reset

    async def open(self, url, ctx, attempts=1):
        """Binary, then phone, from the pair's own address; a 503 is retried up to `attempts` times
        (0.2 s apart: HAProxy's health check, not an event this process can wait on)."""
        kw = dict(ssl=ctx, open_timeout=10, max_size=None, local_addr=(client_ip(self.k), 0))
        for attempt in range(attempts):
            try:
                self.binary = await connect(url + "/v1/server", additional_headers=binary_headers(self.id), **kw)
                break
            except InvalidStatus as e:
                if e.response.status_code != 503 or attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.2)
        self.phone = await connect(url + "/v1/client", additional_headers=phone_headers(self.id), **kw)

    async def round(self):
        """phone → binary (wrapped, docs/protocol.md §7.1) → phone (unwrapped, §7.2), numbered."""
        n = self.rounds
        t0 = time.monotonic()
        await self.phone.send(json.dumps({"id": self.id, "n": n}))
        env = json.loads(await asyncio.wait_for(self.binary.recv(), 10))
        assert env["frame"] == {"id": self.id, "n": n}
        await self.binary.send(json.dumps({"conn_id": env["conn_id"], "frame": {"echo": n}}))
        assert json.loads(await asyncio.wait_for(self.phone.recv(), 10)) == {"echo": n}
        self.longest_round = max(self.longest_round, time.monotonic() - t0)
        self.rounds += 1

    async def close(self):
        for ws in (self.phone, self.binary):
            if ws is not None:
                await ws.close()


async def gather_bounded(coros, limit=50):
    sem = asyncio.Semaphore(limit)

    async def one(c):
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


def make_ids(n):
    ids = [f"srv-{k:03d}-{os.urandom(4).hex()}" for k in range(n)]
    # Every shard gets ids (about a third each); re-draw in the unlikely case one gets none.
    return ids if len({shard_of(i) for i in ids}) == SHARDS else make_ids(n)


# -- tests ---------------------------------------------------------------------------------------

def test_haproxy_crc32_converter_is_zlib_crc32(start_relay, haproxy_bin):
    """The map is one function on both sides: HAProxy's `crc32` (no avalanche) over the whole
    header line (req.fhdr: commas included, where req.hdr would split) equals zlib's crc32(),
    whose C implementation the relay links; the longest id and every visible ASCII byte included
    (docs/protocol.md §2.3)."""
    port = free_port()
    config = ("global\n    maxconn 100\ndefaults\n    mode http\n    timeout connect 1s\n"
              "    timeout client 5s\n    timeout server 5s\nfrontend f\n"
              f"    bind 127.0.0.1:{port}\n"
              '    http-request return status 200 content-type text/plain lf-string '
              '"%[req.fhdr(x-pyrycode-server),crc32] %[req.fhdr(x-pyrycode-server),crc32,mod(3)]"\n')
    start_haproxy(start_relay, haproxy_bin, config)
    ids = ["123456789", "a,b c", "x" * 128, "".join(chr(c) for c in range(0x21, 0x7F))]
    ids += [os.urandom(8).hex() for _ in range(200)]

    async def ask(server_id):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pyrycode-Server: {server_id}\r\n\r\n"
                     .encode())
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return data.split(b"\r\n\r\n", 1)[1].decode()

    answers = asyncio.run(asyncio.wait_for(gather_bounded([ask(i) for i in ids]), TIMEOUT))
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the CRC-32/IEEE check value
    for server_id, answer in zip(ids, answers):
        assert answer == f"{zlib.crc32(server_id.encode())} {shard_of(server_id)}", server_id


def test_three_shards_route_by_crc32_and_a_killed_shard_fails_only_its_ids(
        relay_bin, start_relay, haproxy_bin, pem):
    pki, bundle = pem
    ctx = pki.client_context()
    shards = start_shards(start_relay, relay_bin)
    port = free_port()
    start_haproxy(start_relay, haproxy_bin, haproxy_config(shards, port, bundle))
    url = f"wss://127.0.0.1:{port}"
    ids = make_ids(PAIRS)
    pairs = [Pair(k, i) for k, i in enumerate(ids)]
    victim = shards[1]
    doomed = [p for p in pairs if shard_of(p.id) == victim.index]
    survivors = [p for p in pairs if shard_of(p.id) != victim.index]

    async def scenario():
        # 1. Every pair connects through HAProxy over TLS and exchanges a message.
        await gather_bounded([p.open(url, ctx) for p in pairs])
        await gather_bounded([p.round() for p in pairs])

        # 2. Each server-id was claimed on shard crc32(id) mod 3 and nowhere else.
        for s in shards:
            expected = {i for i in ids if shard_of(i) == s.index}
            wait_until(lambda: s.claimed_ids() == expected, what=f"shard {s.index}'s claims")
            assert s.metric("pyrycode_relay_connected_binaries") == len(expected)
            assert s.metric("pyrycode_relay_connected_phones") == len(expected)
            assert s.metric("pyrycode_relay_misrouted_upgrades_total") == 0

        # 3. Admission saw the client, not HAProxy: a third connection from a pair's address is
        # over --max-connections-per-ip 2, while HAProxy's own address carries ~200 per shard.
        with pytest.raises(InvalidStatus) as refused:
            await connect(url + "/v1/client", additional_headers=phone_headers(survivors[0].id), ssl=ctx,
                          open_timeout=5, local_addr=(client_ip(survivors[0].k), 0))
        assert refused.value.response.status_code == 429
        # ... and a client cannot name another address: HAProxy drops its X-Forwarded-For.
        with pytest.raises(InvalidStatus) as spoofed:
            await connect(url + "/v1/client", ssl=ctx, open_timeout=5, local_addr=(client_ip(survivors[0].k), 0),
                          additional_headers={**phone_headers(survivors[0].id), "X-Forwarded-For": "10.9.9.9"})
        assert spoofed.value.response.status_code == 429

        # 3b. HAProxy listens on IPv6 too (the shipped `bind [::]:443 v6only`, here [::1]): a
        # binary over IPv6 and its phone over IPv4 meet on their shard.
        v6_id = f"srv-v6-{os.urandom(4).hex()}"
        v6_binary = await connect(f"wss://[::1]:{port}/v1/server", additional_headers=binary_headers(v6_id),
                                  ssl=ctx, server_hostname="localhost", open_timeout=10)
        v6_pair = Pair(PAIRS + 2, v6_id)
        v6_pair.binary = v6_binary
        v6_pair.phone = await connect(url + "/v1/client", additional_headers=phone_headers(v6_id), ssl=ctx,
                                      open_timeout=10, local_addr=(client_ip(v6_pair.k), 0))
        await v6_pair.round()
        wait_until(lambda: v6_id in shards[shard_of(v6_id)].claimed_ids(), what="the IPv6 binary's claim")
        await v6_pair.close()

        # 4. The victim shard dies (SIGKILL: no drain) while every pair keeps exchanging; once
        # every doomed pair has seen its connections go, each survivor completes 5 more rounds.
        for p in pairs:
            p.longest_round = 0.0
        targets = {}  # survivor id -> rounds to reach; set after the last doomed pair failed
        failures = {}

        async def keep_exchanging(p):
            try:
                while p.rounds < targets.get(p.id, float("inf")):
                    await p.round()
            except (ConnectionClosed, OSError, asyncio.TimeoutError) as e:
                failures[p.id] = e

        doomed_loops = [asyncio.create_task(keep_exchanging(p)) for p in doomed]
        survivor_loops = [asyncio.create_task(keep_exchanging(p)) for p in survivors]
        marks = {p.id: p.rounds for p in survivors}
        await asyncio.sleep(0)  # let every loop send its first message before the kill
        victim.proc.signal(signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*doomed_loops), 15)
        targets.update({p.id: p.rounds + 5 for p in survivors})
        await asyncio.wait_for(asyncio.gather(*survivor_loops), 20)
        assert set(failures) == {p.id for p in doomed}, "exactly the victim shard's ids fail"
        assert all(p.rounds >= marks[p.id] + 5 for p in survivors)
        # Without a gap: no survivor round waited anywhere near the 2 s HAProxy takes to mark
        # the dead shard down (its rounds take ~0.15 s on a loaded 2-core machine).
        longest = max(p.longest_round for p in survivors)
        assert longest < GAP_BOUND, f"a surviving pair stalled {longest:.2f} s"

        # 5. While the shard is down its ids get 503 from HAProxy; other ids still pair.
        victim.proc.wait()
        probe = Pair(PAIRS, doomed[0].id)
        with pytest.raises(InvalidStatus) as down:
            await probe.open(url, ctx)
        assert down.value.response.status_code == 503
        fresh_id = next(i for i in (f"srv-new-{n}" for n in range(100)) if shard_of(i) != victim.index)
        fresh = Pair(PAIRS + 1, fresh_id)
        await fresh.open(url, ctx)
        await fresh.round()
        await fresh.close()

        # 6. The shard restarts on the same address; its ids pair again on it, and only there.
        back = victim.restarted()
        await doomed[0].open(url, ctx, attempts=50)
        await gather_bounded([p.open(url, ctx) for p in doomed[1:]])
        await gather_bounded([p.round() for p in doomed])
        wait_until(lambda: back.claimed_ids() == {p.id for p in doomed}, what="the restarted shard's claims")
        assert back.metric("pyrycode_relay_misrouted_upgrades_total") == 0
        await gather_bounded([p.close() for p in pairs])

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))


def test_a_wrong_proxy_map_is_refused_with_421_and_counted(relay_bin, start_relay, haproxy_bin, pem):
    """A second HAProxy whose map says mod(2) (N changed in one place only): ids it sends to
    another shard than crc32 mod 3 are refused with 421 and counted where they landed; ids
    both maps agree on still pair."""
    pki, bundle = pem
    ctx = pki.client_context()
    shards = start_shards(start_relay, relay_bin)
    port = free_port()

    def wrong(text):
        assert "crc32,mod(3)" in text
        return text.replace("crc32,mod(3)", "crc32,mod(2)")

    start_haproxy(start_relay, haproxy_bin, haproxy_config(shards, port, bundle, wrong))
    url = f"wss://127.0.0.1:{port}"
    ids = make_ids(60)
    misrouted = [i for i in ids if shard_of(i, 2) != shard_of(i)]
    agreed = [i for i in ids if shard_of(i, 2) == shard_of(i)]
    assert misrouted and agreed

    async def scenario():
        async def attempt(k, server_id):
            try:
                ws = await connect(url + "/v1/server", additional_headers=binary_headers(server_id), ssl=ctx,
                                   open_timeout=5, local_addr=(client_ip(k), 0))
            except InvalidStatus as e:
                return e.response.status_code
            await ws.close()
            return 101

        return await gather_bounded([attempt(k, i) for k, i in enumerate(ids)])

    statuses = dict(zip(ids, asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))))
    assert {statuses[i] for i in misrouted} == {421}
    assert {statuses[i] for i in agreed} == {101}
    for s in shards:
        landed = [i for i in misrouted if shard_of(i, 2) == s.index]
        assert s.metric("pyrycode_relay_misrouted_upgrades_total") == len(landed)
        assert s.metric("pyrycode_relay_http_rejects_total", (("status", "421"),)) == len(landed)
        if landed:
            line = parse_logfmt(s.proc.wait_for_log(lambda l: "msg=upgrade_misrouted" in l))
            assert line["shard"] == f"{s.index}/{SHARDS}" and line["path"] == "/v1/server"


def test_one_process_per_shard_on_a_host(relay_bin, start_relay):
    """The same-host lock is per shard: a second relay for shard 1/3 in the same runtime
    directory exits 2 with the single-instance refusal naming the shard; shard 2/3 beside them
    starts."""
    shards = start_shards(start_relay, relay_bin)
    port = free_port()
    second = start_relay(relay_bin, ["--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", "",
                                     "--runtime-dir", shards[1].rundir, "--shard", "1/3"])
    assert second.wait(10) == 2
    err = second.stderr_text().splitlines()
    assert err[0] == HEADLINE
    text = "\n".join(err)
    assert f"instance-1-of-3.lock is held by another relay for shard 1/3, pid {shards[1].proc.pid}" in text
    assert "this relay claims shard 1/3" in text
    assert err[-1].endswith('section "v2 = static shards"')
    assert "relay_started" not in text
    # The environment variable declares the same thing as the flag.
    again = start_relay(relay_bin, ["--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", "",
                                    "--runtime-dir", shards[1].rundir], env={"PYRYCODE_RELAY_SHARD": "1/3"})
    assert again.wait(10) == 2
    assert "instance-1-of-3.lock" in again.stderr_text()
    for s in shards:
        started = parse_logfmt(s.proc.wait_for_log(lambda l: "msg=relay_started" in l))
        assert started["shard"] == f"{s.index}/{SHARDS}"
        assert s.proc.returncode is None
        assert "shard_without_client_address" not in s.proc.stderr_text()  # they trust X-Forwarded-For
    # A shard that would see only the proxy's address says so at boot.
    port = free_port()
    blind = start_relay(relay_bin, ["--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", "",
                                    "--runtime-dir", shards[1].rundir, "--shard", "2/4"], wait_port=port)
    warn = parse_logfmt(blind.wait_for_log(lambda l: "msg=shard_without_client_address" in l))
    assert warn["level"] == "warn" and warn["shard"] == "2/4"


def test_a_shard_refuses_acme(relay_bin, start_relay, tmp_path):
    """A shard in ACME mode exits 2 before any socket, by flag or by PYRYCODE_RELAY_SHARD: every
    shard would order the certificate and the CA's challenge would reach a random shard."""
    args = ["--domain", "relay.example.com", "--cert-cache", str(tmp_path / "certs"),
            "--https-listen", f"127.0.0.1:{free_port()}", "--http-listen", f"127.0.0.1:{free_port()}",
            "--metrics-listen", "", "--runtime-dir", str(tmp_path / "run")]
    for extra, env in [(["--shard", "0/2"], None), ([], {"PYRYCODE_RELAY_SHARD": "1/2"})]:
        r = start_relay(relay_bin, args + extra, env=env)
        assert r.wait(10) == 2
        err = r.stderr_text()
        shard = "0/2" if extra else "1/2"
        assert f"pyrycode-relay: shard {shard} cannot run ACME (--domain without --tls-cert)" in err, err
        assert "relay_started" not in err and "single_instance_check" not in err
    assert not (tmp_path / "certs").exists()


# -- deploy files --------------------------------------------------------------------------------

TEMPLATE_UNIT = REPO / "deploy" / "pyrycode-relay@.service"


def test_shipped_haproxy_cfg_is_valid_and_matches_the_shard_units(haproxy_bin, pem, tmp_path):
    """`haproxy -c` accepts the shipped file as it is (certificate path aside); its map is
    mod(3) over three backends, at the addresses the shard env example's pattern gives."""
    _, bundle = pem
    cfg = tmp_path / "haproxy.cfg"
    text = SHIPPED_CFG.read_text()
    cfg.write_text(text.replace("/etc/haproxy/certs/relay.pem", bundle))
    check = subprocess.run([haproxy_bin, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "req.fhdr(x-pyrycode-server),crc32,mod(3)" in text
    assert "option redispatch" not in text.replace("no `option redispatch`", "")
    for i in range(SHARDS):
        assert re.search(rf"^backend shard{i}\n(?:    .*\n)*?    server shard{i} 127\.0\.0\.1:{8100 + i} check", text, re.M)
    example = (REPO / "deploy" / "pyrycode-relay-shard.env.example").read_text()
    assert "SHARD_LISTEN=127.0.0.1:8100" in example


def test_template_unit_verifies_and_runs_one_shard_per_instance(tmp_path, relay_bin):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    text = TEMPLATE_UNIT.read_text().replace("/usr/local/bin/pyrycode-relay", relay_bin)
    (tmp_path / "pyrycode-relay@1.service").write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "./pyrycode-relay@1.service"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""})
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr
    settings = TEMPLATE_UNIT.read_text().replace("\\\n", " ")
    exec_start = re.search(r"^ExecStart=(.*)$", settings, re.M).group(1)
    assert "--shard %i/${RELAY_SHARDS}" in exec_start
    assert "--insecure-listen ${SHARD_LISTEN}" in exec_start and "--trust-x-forwarded-for" in exec_start
    assert re.findall(r"^EnvironmentFile=(.*)$", settings, re.M) == [
        "/etc/pyrycode-relay/shards.env", "/etc/pyrycode-relay/shard-%i.env"]
    assert re.search(r"^RuntimeDirectoryPreserve=yes$", settings, re.M)  # shared by the instances
    assert re.search(r"^CapabilityBoundingSet=$", settings, re.M)
    assert "AmbientCapabilities" not in settings
    assert re.search(r"^RestartPreventExitStatus=2$", settings, re.M)


def test_install_shards_mode_writes_the_units_env_files_and_haproxy_cfg(tmp_path, relay_bin, haproxy_bin, pem):
    """deploy/install.sh --shards N: the template unit, shards.env with RELAY_SHARDS=N, one
    shard-<i>.env per shard at the addresses haproxy.cfg names, and haproxy.cfg for N — for N = 3
    byte for byte the shipped file, for N = 5 one that `haproxy -c` accepts; no unsharded unit."""
    def install(root, *args):
        return subprocess.run(["bash", str(REPO / "deploy" / "install.sh"), "--root", str(root), *args],
                              capture_output=True, text=True, timeout=60)

    three = tmp_path / "three"
    three.mkdir()
    r = install(three, "--binary", relay_bin, "--shards", "3")
    assert r.returncode == 0, r.stderr
    conf = three / "etc" / "pyrycode-relay"
    assert (conf / "haproxy.cfg").read_text() == SHIPPED_CFG.read_text()
    assert (three / "etc/systemd/system/pyrycode-relay@.service").read_bytes() == TEMPLATE_UNIT.read_bytes()
    assert not (three / "etc/systemd/system/pyrycode-relay.service").exists()
    assert "RELAY_SHARDS=3" in (conf / "shards.env").read_text().splitlines()
    for i in range(3):
        lines = (conf / f"shard-{i}.env").read_text().splitlines()
        assert f"SHARD_LISTEN=127.0.0.1:{8100 + i}" in lines and f"SHARD_METRICS=127.0.0.1:{9100 + i}" in lines
    again = install(three, "--shards", "3")
    assert again.returncode == 0 and "kept       /etc/pyrycode-relay/shard-0.env" in again.stdout

    five = tmp_path / "five"
    five.mkdir()
    assert install(five, "--shards", "5").returncode == 0
    cfg = (five / "etc/pyrycode-relay/haproxy.cfg").read_text()
    assert "crc32,mod(5)" in cfg and "backend shard4\n" in cfg and "backend shard5" not in cfg
    (five / "h.cfg").write_text(cfg.replace("/etc/haproxy/certs/relay.pem", pem[1]))
    check = subprocess.run([haproxy_bin, "-c", "-f", str(five / "h.cfg")], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    for bad in (["--shards", "0"], ["--shards", "1025"], ["--shards", "03"], ["--shards", "2", "--domain", "x.example"]):
        assert install(tmp_path, *bad).returncode == 2, bad
