"""ACME (RFC 8555) end to end against Pebble, the ACME test server (docs/operations.md "ACME").

Everything runs on loopback. `pebble-challtestsrv` is Pebble's DNS: every name resolves to
127.0.0.1, so the test domain's challenges reach the relay under test. Pebble listens with a
certificate from a throwaway CA made here (the Debian package ships none); the relay trusts it
through SSL_CERT_FILE, as it would trust Let's Encrypt through the system store. Pebble keeps its
defaults otherwise: 5% of good nonces are rejected (badNonce must be retried), validation is real
(PEBBLE_VA_ALWAYS_VALID unset). PEBBLE_VA_NOSLEEP only removes Pebble's artificial pauses.

Pebble validates http-01 and tls-alpn-01 on fixed ports from its config (httpPort, tlsPort), so
all relays of this module listen on the same two ports, one relay at a time.
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import tempfile
import time
import urllib.request

import pytest
from websockets.asyncio.client import connect

from conftest import Relay, free_port, parse_logfmt
from relaylib import RunningRelay, binary_headers, http_get, phone_headers, recv_json, scrape
from test_tls import PKI

PEBBLE = shutil.which("pebble")
CHALLTESTSRV = shutil.which("pebble-challtestsrv")
pytestmark = pytest.mark.skipif(PEBBLE is None or CHALLTESTSRV is None,
                                reason="pebble not installed (apt-get install pebble)")

DOMAIN = "relay.acme.test"
ISSUE_TIMEOUT = 60


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


def distinct_ports(n, avoid=()):
    """n free loopback ports, all different (two free_port() calls may return the same one)."""
    ports = []
    while len(ports) < n:
        p = free_port()
        if p not in ports and p not in avoid:
            ports.append(p)
    return ports


class Pebble:
    def __init__(self, root):
        self.pki = PKI(root)
        cert, key = self.pki.leaf("pebble", 0x2001)
        self.port, self.mgmt, dns, self.http_port, self.https_port, dns_mgmt = distinct_ports(6)
        self.dns = Relay(CHALLTESTSRV, ["-dns01", f"127.0.0.1:{dns}", "-http01", "", "-https01", "",
                                        "-tlsalpn01", "", "-management", f"127.0.0.1:{dns_mgmt}",
                                        "-defaultIPv6", ""])
        self.reserved = {self.port, self.mgmt, dns, self.http_port, self.https_port, dns_mgmt}
        config = os.path.join(root, "pebble.json")
        with open(config, "w") as f:
            json.dump({"pebble": {"listenAddress": f"127.0.0.1:{self.port}",
                                  "managementListenAddress": f"127.0.0.1:{self.mgmt}",
                                  "certificate": cert, "privateKey": key,
                                  "httpPort": self.http_port, "tlsPort": self.https_port,
                                  "ocspResponderURL": "", "externalAccountBindingRequired": False}}, f)
        env = {"PEBBLE_VA_NOSLEEP": "1"}
        assert "PEBBLE_VA_ALWAYS_VALID" not in os.environ and "PEBBLE_WFE_NONCEREJECT" not in os.environ
        self.proc = Relay(PEBBLE, ["-config", config, "-dnsserver", f"127.0.0.1:{dns}"], env=env,
                          wait_port=self.mgmt)
        self.directory = f"https://127.0.0.1:{self.port}/dir"
        ctx = ssl.create_default_context(cafile=self.pki.ca)
        with urllib.request.urlopen(f"https://127.0.0.1:{self.mgmt}/roots/0", context=ctx, timeout=10) as r:
            self.root_pem = r.read().decode()
        self.root_file = os.path.join(root, "pebble-root.pem")
        with open(self.root_file, "w") as f:
            f.write(self.root_pem)

    def client_context(self):
        """Trusts only Pebble's issuing root."""
        return ssl.create_default_context(cafile=self.root_file)

    def stop(self):
        self.proc.stop()
        self.dns.stop()


@pytest.fixture(scope="module")
def pebble(tmp_path_factory):
    p = Pebble(str(tmp_path_factory.mktemp("pebble")))
    yield p
    p.stop()


class ACMERelay(RunningRelay):
    @property
    def url(self):
        return f"wss://{DOMAIN}:{self.port}"


def start_acme(start_relay, relay_bin, pebble, cache, *extra, directory=None, http=True, wait=True):
    mport, = distinct_ports(1, avoid=pebble.reserved)
    args = ["--domain", DOMAIN, "--acme-directory", directory or pebble.directory, "--cert-cache", cache,
            "--https-listen", f"127.0.0.1:{pebble.https_port}",
            "--http-listen", f"127.0.0.1:{pebble.http_port}" if http else "",
            "--metrics-listen", f"127.0.0.1:{mport}", "--runtime-dir", tempfile.mkdtemp(prefix="relay-run-"), *extra]
    proc = start_relay(relay_bin, args, env={"SSL_CERT_FILE": pebble.pki.ca},
                       wait_port=pebble.https_port if wait else None)
    return ACMERelay(proc, pebble.https_port, mport)


def event(r, msg, start=0, timeout=5.0, **fields):
    return parse_logfmt(r.proc.wait_for_log(
        lambda l: (e := parse_logfmt(l)).get("msg") == msg and all(e.get(k) == v for k, v in fields.items()),
        timeout=timeout, start=start))


def events(r, msg):
    return [e for e in r.log_events() if e.get("msg") == msg]


async def wss(relay, ctx, path, headers):
    # The relay checks Host against --domain (421 otherwise): connect to 127.0.0.1 with the domain
    # in the URL, SNI and Host.
    return await connect(f"{relay.url}{path}", additional_headers=headers, ssl=ctx, host="127.0.0.1",
                         port=relay.port, server_hostname=DOMAIN, open_timeout=5)


async def pair(relay, ctx, sid):
    binary = await wss(relay, ctx, "/v1/server", binary_headers(sid))
    phone = await wss(relay, ctx, "/v1/client", phone_headers(sid))
    return binary, phone


async def exchange(binary, phone, tag):
    await phone.send(json.dumps({"tag": tag}))
    env = await recv_json(binary)
    assert env["frame"] == {"tag": tag}
    await binary.send(json.dumps({"conn_id": env["conn_id"], "frame": {"echo": tag}}))
    assert json.loads(await asyncio.wait_for(phone.recv(), 5)) == {"echo": tag}


def served_serial(port, ctx):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=DOMAIN) as t:
            return t.getpeercert()["serialNumber"]


def metric(relay, name, **labels):
    return scrape(relay).get((name, tuple(sorted(labels.items()))), None)


@pytest.fixture(scope="module")
def issued_cache(pebble, relay_bin, tmp_path_factory):
    """A cache directory holding an account and a certificate from Pebble (made by a relay
    through http-01 in test_http01_issues_a_certificate_and_serves_wss)."""
    return str(tmp_path_factory.mktemp("acme-cache") / "certs")


def copy_cache(src, tmp_path):
    dst = str(tmp_path / "certs")
    shutil.copytree(src, dst)
    os.chmod(dst, 0o700)
    return dst


def test_http01_issues_a_certificate_and_serves_wss(relay_bin, start_relay, pebble, issued_cache):
    r = start_acme(start_relay, relay_bin, pebble, issued_cache)
    # Boot does not wait for the CA: before the certificate, handshakes fail with an alert and
    # /healthz on the plain listener says why.
    started = event(r, "relay_started")
    assert started["mode"] == "acme"
    installed = event(r, "acme_certificate_installed", timeout=ISSUE_TIMEOUT, reason="issued")
    assert installed["domain"] == DOMAIN
    assert any(e.get("challenge") == "http-01" for e in events(r, "acme_challenge_answered"))
    # The cache: directory 0700, files 0600.
    assert stat.S_IMODE(os.stat(issued_cache).st_mode) == 0o700
    for name in ("acme_account.key", DOMAIN + ".crt", DOMAIN + ".key"):
        assert stat.S_IMODE(os.stat(os.path.join(issued_cache, name)).st_mode) == 0o600, name

    ctx = pebble.client_context()

    async def scenario():
        binary, phone = await pair(r, ctx, "srv-acme")
        await exchange(binary, phone, "issued")
        await binary.close()
        await phone.close()
    run(scenario())

    assert served_serial(r.port, ctx).lower() == installed["serial"].lower()
    assert metric(r, "pyrycode_relay_acme_orders_total", outcome="issued") == 1
    not_after = metric(r, "pyrycode_relay_tls_cert_not_after_seconds")
    assert not_after == int(installed["not_after"]) and not_after > time.time()
    # The plain listener: health once the certificate exists, 404 for everything else.
    assert http_get(pebble.http_port, "/healthz", headers={"Host": DOMAIN}).startswith(b"HTTP/1.1 200 ")
    assert http_get(pebble.http_port, "/v1/server", headers={"Host": DOMAIN}).startswith(b"HTTP/1.1 404 ")
    assert http_get(pebble.http_port, "/.well-known/acme-challenge/unknown").startswith(b"HTTP/1.1 404 ")
    assert r.proc.stop() == 0


def test_restart_serves_from_the_cache_without_a_new_order(relay_bin, start_relay, pebble, issued_cache, tmp_path):
    cache = copy_cache(issued_cache, tmp_path)
    r = start_acme(start_relay, relay_bin, pebble, cache)
    installed = event(r, "acme_certificate_installed", reason="cache")
    ctx = pebble.client_context()
    assert served_serial(r.port, ctx).lower() == installed["serial"].lower()
    # The boot check runs before the loop: an order would have been logged by now.
    assert events(r, "acme_order_started") == []
    assert metric(r, "pyrycode_relay_acme_orders_total", outcome="issued") == 0
    assert metric(r, "pyrycode_relay_tls_cert_not_after_seconds") == int(installed["not_after"])


def test_forced_renewal_swaps_the_serial_and_keeps_open_connections(relay_bin, start_relay, pebble, issued_cache, tmp_path):
    cache = copy_cache(issued_cache, tmp_path)
    # Pebble is paused (SIGSTOP) so the renewal cannot finish before the connections below are
    # open on the old certificate; it resumes once they are.
    pebble.proc.signal(signal.SIGSTOP)
    try:
        # Longer than Pebble's validity: the cached certificate is due at boot.
        r = start_acme(start_relay, relay_bin, pebble, cache, "--acme-renew-before", "200000h")
        old = event(r, "acme_certificate_installed", reason="cache")
        event(r, "acme_order_started", reason="renewal due")
    except BaseException:
        pebble.proc.signal(signal.SIGCONT)
        raise
    ctx = pebble.client_context()

    async def scenario():
        try:
            binary, phone = await pair(r, ctx, "srv-renew")
        finally:
            pebble.proc.signal(signal.SIGCONT)
        old_serial = binary.transport.get_extra_info("ssl_object").getpeercert()["serialNumber"]
        assert old_serial.lower() == old["serial"].lower()
        new = await asyncio.to_thread(event, r, "acme_certificate_installed", timeout=ISSUE_TIMEOUT, reason="renewed")
        assert new["serial"].lower() != old["serial"].lower()
        # The connection made on the old pair keeps relaying; new handshakes get the new one.
        await exchange(binary, phone, "after-renewal")
        assert (await asyncio.to_thread(served_serial, r.port, ctx)).lower() == new["serial"].lower()
        await binary.close()
        await phone.close()
    run(scenario())
    assert metric(r, "pyrycode_relay_acme_orders_total", outcome="issued") == 1
    # The cache now holds the new pair (a restart would serve it).
    with open(os.path.join(cache, DOMAIN + ".crt")) as f:
        assert f.read().startswith("-----BEGIN CERTIFICATE-----")


def test_ca_unreachable_keeps_serving_the_old_certificate_and_retries(relay_bin, start_relay, pebble, issued_cache, tmp_path):
    cache = copy_cache(issued_cache, tmp_path)
    # As if Pebble were stopped: nothing listens at the directory URL.
    dead = f"https://127.0.0.1:{distinct_ports(1, avoid=pebble.reserved)[0]}/dir"
    r = start_acme(start_relay, relay_bin, pebble, cache, "--acme-renew-before", "200000h",
                   "--acme-retry-min", "200ms", directory=dead)
    old = event(r, "acme_certificate_installed", reason="cache")
    first = event(r, "acme_order_failed", timeout=15)
    assert first["problem_type"] == "transport" and first["retry_in"] == "200ms"
    second = event(r, "acme_order_failed", timeout=15, retry_in="400ms")
    assert second["domain"] == DOMAIN
    ctx = pebble.client_context()
    assert served_serial(r.port, ctx).lower() == old["serial"].lower()
    assert metric(r, "pyrycode_relay_acme_orders_total", outcome="failed") >= 2


def test_no_certificate_yet_fails_handshakes_and_healthz_says_why(relay_bin, start_relay, pebble, tmp_path):
    dead = f"https://127.0.0.1:{distinct_ports(1, avoid=pebble.reserved)[0]}/dir"
    r = start_acme(start_relay, relay_bin, pebble, str(tmp_path / "certs"), "--acme-retry-min", "10s", directory=dead)
    event(r, "acme_order_failed", timeout=15)
    with pytest.raises(ssl.SSLError):
        served_serial(r.port, pebble.client_context())
    resp = http_get(pebble.http_port, "/healthz", headers={"Host": DOMAIN})
    assert resp.startswith(b"HTTP/1.1 503 ")
    assert json.loads(resp.split(b"\r\n\r\n", 1)[1]) == {"status": "no_certificate", "reason": "transport"}
    assert metric(r, "pyrycode_relay_tls_cert_not_after_seconds") == 0


def test_cache_dir_with_group_bits_is_tightened(relay_bin, start_relay, pebble, tmp_path):
    cache = str(tmp_path / "certs")
    os.mkdir(cache)
    os.chmod(cache, 0o755)
    r = start_acme(start_relay, relay_bin, pebble, cache, directory=f"https://127.0.0.1:{distinct_ports(1, avoid=pebble.reserved)[0]}/dir")
    e = event(r, "cert_cache_permissions_tightened")
    assert e["from"] == "755" and e["to"] == "700"
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700


def test_cache_dir_owned_by_someone_else_refuses_the_start(relay_bin, start_relay, pebble, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    cache = str(tmp_path / "certs")
    os.mkdir(cache, 0o700)
    os.chown(cache, 65534, 65534)
    r = start_acme(start_relay, relay_bin, pebble, cache, wait=False)
    assert r.proc.wait(10) == 1
    assert "cert cache dir has insecure permissions" in r.proc.stderr_text()


def test_corrupt_cache_entry_is_logged_and_reordered(relay_bin, start_relay, pebble, issued_cache, tmp_path):
    cache = copy_cache(issued_cache, tmp_path)
    with open(os.path.join(cache, DOMAIN + ".crt"), "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    r = start_acme(start_relay, relay_bin, pebble, cache)
    event(r, "acme_cache_invalid")
    event(r, "acme_certificate_installed", timeout=ISSUE_TIMEOUT, reason="issued")


def test_tls_alpn01_issues_when_the_http_port_is_unavailable(relay_bin, start_relay, pebble, tmp_path):
    cache = str(tmp_path / "certs")
    # Port "80" is taken by someone else: the relay logs it and answers on the TLS port instead.
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", pebble.http_port))
    squatter.listen(1)
    try:
        r = start_acme(start_relay, relay_bin, pebble, cache)
        failed = event(r, "http_listen_failed")
        assert failed["listen"] == f"127.0.0.1:{pebble.http_port}"
        event(r, "acme_challenge_published", timeout=ISSUE_TIMEOUT, challenge="tls-alpn-01")
        installed = event(r, "acme_certificate_installed", timeout=ISSUE_TIMEOUT, reason="issued")
    finally:
        squatter.close()
    assert events(r, "acme_challenge_answered") == []
    ctx = pebble.client_context()
    assert served_serial(r.port, ctx).lower() == installed["serial"].lower()

    async def scenario():
        binary, phone = await pair(r, ctx, "srv-alpn")
        await exchange(binary, phone, "alpn")
        await binary.close()
        await phone.close()
    run(scenario())


def test_acme_tls_1_without_a_pending_challenge_gets_no_challenge_certificate(relay_bin, start_relay, pebble, issued_cache, tmp_path):
    cache = copy_cache(issued_cache, tmp_path)
    r = start_acme(start_relay, relay_bin, pebble, cache)
    event(r, "acme_certificate_installed", reason="cache")
    for offer, chosen in [(["acme-tls/1"], None), (["acme-tls/1", "http/1.1"], "http/1.1")]:
        ctx = pebble.client_context()
        ctx.set_alpn_protocols(offer)
        with socket.create_connection(("127.0.0.1", r.port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname=DOMAIN) as t:
                # The normal, CA-signed certificate (verification passed) and no acme-tls/1.
                assert t.selected_alpn_protocol() == chosen
