"""TLS termination in the relay (docs/operations.md) and PROXY protocol v2 on the TLS listener (docs/protocol.md §3.3),
driven by third-party clients: Python `ssl` + `websockets`, `openssl s_client`, `sslyze`.

The test CA and leaves are made by the `pki` fixture with the `openssl` CLI in a temp dir
(ECDSA P-256). The CA carries keyUsage=keyCertSign: sslyze's path validation (the `cryptography`
verifier) refuses a CA without it, which would make the Mozilla check fail for the wrong reason.
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conftest import free_port, parse_logfmt
from relaylib import RunningRelay, binary_headers, phone_headers, recv_json, scrape

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")

HEADER_TIMEOUT_S = 1.0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


# -- PKI -----------------------------------------------------------------------------------

class PKI:
    def __init__(self, root):
        self.root = root
        self.ca = os.path.join(root, "ca.crt")
        self._ca_key = os.path.join(root, "ca.key")
        self._sh(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", self._ca_key, "-out", self.ca, "-days", "2", "-subj", "/CN=pyry-test-ca",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        self._ext = os.path.join(root, "leaf.ext")
        with open(self._ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                    "keyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n")

    def _sh(self, args):
        subprocess.run([OPENSSL] + args, cwd=self.root, check=True, capture_output=True, timeout=30)

    def leaf(self, name, serial):
        """Issues <name>.crt / <name>.key (fresh P-256 key) with the given serial; returns the paths."""
        key = os.path.join(self.root, name + ".key")
        csr = os.path.join(self.root, name + ".csr")
        crt = os.path.join(self.root, name + ".crt")
        self._sh(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key])
        self._sh(["req", "-new", "-key", key, "-subj", "/CN=localhost", "-out", csr])
        self._sh(["x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self._ca_key, "-set_serial", hex(serial),
                  "-days", "2", "-extfile", self._ext, "-out", crt])
        return crt, key

    def client_context(self):
        return ssl.create_default_context(cafile=self.ca)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    p = PKI(str(tmp_path_factory.mktemp("pki")))
    p.default = p.leaf("leaf", 0x1001)
    return p


# -- relay ---------------------------------------------------------------------------------

class TLSRelay(RunningRelay):
    @property
    def url(self):
        return f"wss://127.0.0.1:{self.port}"


def start_tls(start_relay, relay_bin, cert, key, *extra):
    port, mport = free_port(), free_port()
    rundir = tempfile.mkdtemp(prefix="relay-run-")
    args = ["--tls-cert", cert, "--tls-key", key, "--https-listen", f"127.0.0.1:{port}",
            "--metrics-listen", f"127.0.0.1:{mport}", "--runtime-dir", rundir, *extra]
    proc = start_relay(relay_bin, args, wait_port=port)
    return TLSRelay(proc, port, mport)


async def wss_binary(relay, ctx, server_id, **kw):
    return await connect(relay.url + "/v1/server", additional_headers=binary_headers(server_id), ssl=ctx,
                         open_timeout=5, max_size=None, **kw)


async def wss_phone(relay, ctx, server_id, **kw):
    return await connect(relay.url + "/v1/client", additional_headers=phone_headers(server_id), ssl=ctx,
                         open_timeout=5, max_size=None, **kw)


async def exchange(binary, phone, tag):
    """phone → binary (wrapped, docs/protocol.md §7.1) and binary → phone (unwrapped, §9.2)."""
    await phone.send(json.dumps({"tag": tag}))
    env = await recv_json(binary)
    assert env["frame"] == {"tag": tag}
    await binary.send(json.dumps({"conn_id": env["conn_id"], "frame": {"echo": tag}}))
    assert json.loads(await asyncio.wait_for(phone.recv(), 5)) == {"echo": tag}


def read_until_closed(sock, timeout=5.0):
    """Reads until EOF or RST; returns (bytes received, seconds waited). Fails on timeout."""
    sock.settimeout(timeout)
    t0 = time.monotonic()
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("connection still open after %.1f s (got %r)" % (timeout, data[:64]))
    return data, time.monotonic() - t0


def peer_serial(port, ctx, sock=None):
    """Serial number (hex, as the ssl module prints it) of the certificate the relay presents."""
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=5)
    with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
        return t.getpeercert()["serialNumber"]


def s_client(port, ca, *args):
    p = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                        "-CAfile", ca, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def tls_metric(relay, result):
    return scrape(relay).get(("pyrycode_relay_tls_handshakes_total", (("result", result),)), 0)


# -- wss with the real client library ------------------------------------------------------

def test_wss_relays_binary_and_phone_with_the_test_ca(relay_bin, start_relay, pki):
    r = start_tls(start_relay, relay_bin, *pki.default)
    ctx = pki.client_context()

    async def scenario():
        binary = await wss_binary(r, ctx, "srv-tls")
        phone = await wss_phone(r, ctx, "srv-tls")
        for i in range(3):
            await exchange(binary, phone, f"m{i}")
        # A message bigger than one TLS record (16 KiB) crosses several records both ways.
        big = "x" * 100_000
        await phone.send(json.dumps({"big": big}))
        assert (await recv_json(binary))["frame"] == {"big": big}
        await phone.close()
        await binary.close()

    run(scenario())
    assert tls_metric(r, "ok") >= 2


def upgrade_request(path, headers):
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    return ("\r\n".join(lines + [f"{k}: {v}" for k, v in headers.items()]) + "\r\n\r\n").encode()


def read_head(tls_sock):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = tls_sock.recv(4096)
        assert chunk, f"closed before the response head ended: {head!r}"
        head += chunk
    return head


def test_a_full_tls13_handshake_sends_one_session_ticket_that_resumes(relay_bin, start_relay, pki):
    """RFC 8446 §4.6.1: one NewSessionTicket per full handshake (as Go's crypto/tls sends, OpenSSL's
    default is two), and a second connection resumes with it."""
    r = start_tls(start_relay, relay_bin, *pki.default)
    ctx = pki.client_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    tickets = []

    def on_message(conn, direction, version, content_type, msg_type, data):
        if direction == "read" and msg_type == ssl._TLSMessageType.NEWSESSION_TICKET:
            tickets.append(len(data))
    ctx._msg_callback = on_message  # CPython's hook over SSL_set_msg_callback

    def connect_once(server_id, session=None):
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", r.port), timeout=5),
                             server_hostname="localhost", session=session) as t:
            t.sendall(upgrade_request("/v1/server", binary_headers(server_id)))
            # The ticket precedes the 101 on the wire: reading the head has processed it.
            assert read_head(t).startswith(b"HTTP/1.1 101 ")
            return t.session, t.session_reused

    session, reused = connect_once("srv-ticket-1")
    assert not reused
    assert len(tickets) == 1
    _, reused = connect_once("srv-ticket-2", session=session)
    assert reused


def test_finished_request_and_frames_in_one_segment_are_all_relayed(relay_bin, start_relay, pki):
    """With read-ahead OpenSSL takes every record the kernel holds in one read: the phone's TLS
    Finished, its upgrade request and 20 frames, each its own TLS record, sent in one segment,
    must all be relayed although epoll reports nothing more for that socket."""
    r = start_tls(start_relay, relay_bin, *pki.default)
    ctx = pki.client_context()

    def masked_text(payload):
        mask = os.urandom(4)
        assert len(payload) < 126
        return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    async def scenario():
        binary = await wss_binary(r, ctx, "srv-readahead")
        sock = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        phone = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
        while True:
            try:
                phone.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                data = sock.recv(65536)
                assert data, "closed during the handshake"
                incoming.write(data)
        # The Finished is still in `outgoing`: the request and the frames join it.
        phone.write(upgrade_request("/v1/client", phone_headers("srv-readahead")))
        for i in range(20):
            phone.write(masked_text(json.dumps({"n": i}).encode()))
        sock.sendall(outgoing.read())
        for i in range(20):
            assert (await recv_json(binary))["frame"] == {"n": i}
        sock.close()
        await binary.close()

    run(scenario())


def handshake_over_memory_bios(port, pki):
    """A TLS client whose records we cut and send ourselves: the socket, the SSLObject and its
    two memory BIOs, after a completed handshake (the client's Finished may still wait in
    `outgoing`)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = pki.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    while True:
        try:
            client.do_handshake()
            return sock, client, incoming, outgoing
        except ssl.SSLWantReadError:
            if outgoing.pending:
                sock.sendall(outgoing.read())
            data = sock.recv(65536)
            assert data, "closed during the handshake"
            incoming.write(data)


def test_pipelined_requests_in_records_of_one_segment_are_each_answered(relay_bin, start_relay, pki):
    """Two keep-alive requests, each its own TLS record, arrive in one segment: read-ahead leaves
    the second inside OpenSSL while the first is answered (one request at a time, docs/protocol.md
    §3), and it must still be answered although epoll reports nothing more."""
    r = start_tls(start_relay, relay_bin, *pki.default)
    sock, client, incoming, outgoing = handshake_over_memory_bios(r.port, pki)
    client.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    client.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    sock.sendall(outgoing.read())
    plain = b""
    deadline = time.monotonic() + 5
    while plain.count(b"HTTP/1.1 200 ") < 2 and time.monotonic() < deadline:
        try:
            plain += client.read(65536)
            continue
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            break
        data = sock.recv(65536)
        if not data:
            break
        incoming.write(data)
    sock.close()
    assert plain.count(b"HTTP/1.1 200 ") == 2, plain[:300]


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_part_of_a_record_waits_for_the_socket_without_spinning(relay_bin, start_relay, pki):
    """OpenSSL holding only part of a record reports buffered input (SSL_has_pending) although no
    read can complete it: the relay must wait for the socket, not loop on it, and answer once the
    rest arrives."""
    r = start_tls(start_relay, relay_bin, *pki.default)
    sock, client, incoming, outgoing = handshake_over_memory_bios(r.port, pki)
    finished = outgoing.read()
    client.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    record = outgoing.read()
    sock.sendall(finished + record[:20])  # the Finished and a record cut inside its body
    before = cpu_seconds(r.proc.pid)
    time.sleep(1.0)  # the window in which a spinning loop would burn (a share of) a core
    assert cpu_seconds(r.proc.pid) - before < 0.1
    sock.sendall(record[20:])
    plain = b""
    while b"\r\n\r\n" not in plain:
        try:
            plain += client.read(65536)
            continue
        except ssl.SSLWantReadError:
            pass
        data = sock.recv(65536)
        assert data, f"closed before the answer: {plain!r}"
        incoming.write(data)
    sock.close()
    assert plain.startswith(b"HTTP/1.1 200 ")


def test_wss_without_the_ca_fails_verification(relay_bin, start_relay, pki):
    r = start_tls(start_relay, relay_bin, *pki.default)

    async def scenario():
        with pytest.raises(ssl.SSLCertVerificationError):
            await wss_binary(r, ssl.create_default_context(), "srv-untrusted")

    run(scenario())


# -- protocol versions, ALPN, non-TLS bytes ------------------------------------------------

def test_tls13_and_tls12_connect_with_alpn_http11(relay_bin, start_relay, pki):
    r = start_tls(start_relay, relay_bin, *pki.default)
    for flag, name in (("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")):
        rc, out = s_client(r.port, pki.ca, flag, "-alpn", "http/1.1")
        assert rc == 0, out
        assert f"New, {name}, Cipher is " in out, out
        assert "Verify return code: 0 (ok)" in out, out
        assert "ALPN protocol: http/1.1" in out, out
    # A client offering only another protocol gets no ALPN answer (and still a session).
    rc, out = s_client(r.port, pki.ca, "-alpn", "h2")
    assert rc == 0 and "No ALPN negotiated" in out, out


def test_tls12_offers_only_ecdhe_aead(relay_bin, start_relay, pki):
    r = start_tls(start_relay, relay_bin, *pki.default)
    rc, out = s_client(r.port, pki.ca, "-tls1_2", "-cipher", "AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA")
    assert rc != 0, out  # RSA key exchange and CBC suites are not served
    rc, out = s_client(r.port, pki.ca, "-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305")
    assert rc == 0 and "Cipher is ECDHE-ECDSA-CHACHA20-POLY1305" in out, out


@pytest.mark.parametrize("flag", ["-tls1_1", "-tls1"])
def test_tls11_and_tls10_are_refused(relay_bin, start_relay, pki, flag):
    r = start_tls(start_relay, relay_bin, *pki.default)
    # Even offering them needs SECLEVEL=0 on OpenSSL 3.
    rc, out = s_client(r.port, pki.ca, flag, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert rc != 0, out
    assert "Cipher is (NONE)" in out, out
    assert "alert protocol version" in out, out  # RFC 8446 §6.2 protocol_version (70)


def test_plain_http_to_the_tls_port_is_closed_without_a_response(relay_bin, start_relay, pki):
    r = start_tls(start_relay, relay_bin, *pki.default)
    with socket.create_connection(("127.0.0.1", r.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data, _ = read_until_closed(s)
    assert b"HTTP/" not in data
    assert r.proc.returncode is None
    # Still serving TLS afterwards.
    assert peer_serial(r.port, pki.client_context()) == "1001"
    assert tls_metric(r, "failed") >= 1


# -- certificate files ---------------------------------------------------------------------

def test_bad_files_at_boot_exit_1_naming_the_file(relay_bin, start_relay, pki, tmp_path):
    crt, key = pki.default
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not pem\n")
    other_crt, other_key = pki.leaf("other", 0x0BAD)
    # (cert, key, the file named, what is wrong in words, OpenSSL's reason after them)
    cases = [
        (str(tmp_path / "missing.crt"), key, str(tmp_path / "missing.crt"),
         "cannot read the certificate file: No such file or directory", "No such file or directory"),
        (str(garbage), key, str(garbage), "not a PEM file (no -----BEGIN line)", "no start line"),
        (crt, str(tmp_path / "missing.key"), str(tmp_path / "missing.key"),
         "cannot read the key file: No such file or directory", "No such file or directory"),
        (crt, other_key, other_key, f"the private key does not match the certificate in {crt}", "key values mismatch"),
        (key, crt, key, f"--tls-cert and --tls-key look swapped: this file holds a private key and {crt} a certificate",
         "no start line"),
    ]
    for cert_path, key_path, named, words, reason in cases:
        p = start_relay(relay_bin, ["--tls-cert", cert_path, "--tls-key", key_path,
                                    "--https-listen", f"127.0.0.1:{free_port()}", "--metrics-listen", "",
                                    "--runtime-dir", tempfile.mkdtemp(prefix="relay-run-")])
        assert p.wait(10) == 1
        line = p.wait_for_log(lambda l: l.startswith("pyrycode-relay: tls: "))
        assert line.startswith(f"pyrycode-relay: tls: {named}: {words} (OpenSSL: "), line
        assert reason in line.split("(OpenSSL: ", 1)[1], line


def test_sighup_reload_serves_the_new_pair_and_keeps_old_connections(relay_bin, start_relay, pki, tmp_path):
    crt, key = str(tmp_path / "live.crt"), str(tmp_path / "live.key")
    shutil.copy(pki.default[0], crt)
    shutil.copy(pki.default[1], key)
    r = start_tls(start_relay, relay_bin, crt, key)
    ctx = pki.client_context()
    new_crt, new_key = pki.leaf("reloaded", 0x2002)

    async def scenario():
        binary = await wss_binary(r, ctx, "srv-reload")
        phone = await wss_phone(r, ctx, "srv-reload")
        await exchange(binary, phone, "before")
        assert await asyncio.to_thread(peer_serial, r.port, ctx) == "1001"

        shutil.copy(new_crt, crt)
        shutil.copy(new_key, key)
        mark = len(r.proc.lines)
        r.proc.signal(signal.SIGHUP)
        await asyncio.to_thread(r.proc.wait_for_log, lambda l: parse_logfmt(l).get("msg") == "tls_reloaded",
                                5.0, mark)
        assert await asyncio.to_thread(peer_serial, r.port, ctx) == "2002"
        # The pair opened under the old certificate keeps relaying.
        await exchange(binary, phone, "after-reload")

        # A bad reload keeps the current pair and says so.
        with open(crt, "w") as f:
            f.write("truncated\n")
        mark = len(r.proc.lines)
        r.proc.signal(signal.SIGHUP)
        line = await asyncio.to_thread(
            r.proc.wait_for_log, lambda l: parse_logfmt(l).get("msg") == "tls_reload_failed", 5.0, mark)
        assert parse_logfmt(line)["err"].startswith(crt + ": "), line
        assert await asyncio.to_thread(peer_serial, r.port, ctx) == "2002"
        await exchange(binary, phone, "after-failed-reload")
        await phone.close()
        await binary.close()

    run(scenario())


# -- third-party audit ---------------------------------------------------------------------

def test_sslyze_reports_mozilla_intermediate_compliance(relay_bin, start_relay, pki):
    pytest.importorskip("sslyze")
    r = start_tls(start_relay, relay_bin, *pki.default)
    p = subprocess.run([sys.executable, "-m", "sslyze", f"--certinfo_ca_file={pki.ca}",
                        "--mozilla_config=intermediate", f"localhost:{r.port}{{127.0.0.1}}"],
                       capture_output=True, timeout=120)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, out[-3000:] + p.stderr.decode(errors="replace")[-2000:]
    assert "Supported curves:                  X25519, secp256r1" in out
    assert "OK - Compression disabled" in out


# -- handshake deadline --------------------------------------------------------------------

def stalled_mid_handshake(port, ctx):
    """Sends a real ClientHello, reads the server's flight, then never sends its Finished."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    s.sendall(out.read())
    first = s.recv(65536)
    assert first[:1] == b"\x16"  # the server's handshake records
    return s


def test_silent_and_stalled_handshakes_close_at_the_header_timeout(relay_bin, start_relay, pki):
    r = start_tls(start_relay, relay_bin, *pki.default, "--header-timeout", "1s")
    ctx = pki.client_context()

    async def scenario():
        binary = await wss_binary(r, ctx, "srv-live")
        phone = await wss_phone(r, ctx, "srv-live")
        t0 = time.monotonic()
        silent = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        stalled = await asyncio.to_thread(stalled_mid_handshake, r.port, ctx)
        waits = [asyncio.to_thread(read_until_closed, silent), asyncio.to_thread(read_until_closed, stalled)]
        results = asyncio.gather(*waits)
        # The live pair keeps relaying while the two half-open sockets wait for their deadline.
        n = 0
        while not results.done():
            await exchange(binary, phone, f"live{n}")
            n += 1
            await asyncio.wait({results}, timeout=0.05)  # pace the exchanges; wake at the close
        (silent_data, _), (stalled_data, _) = await results
        elapsed = time.monotonic() - t0
        assert silent_data == b""
        assert HEADER_TIMEOUT_S * 0.8 <= elapsed < HEADER_TIMEOUT_S + 2.0, elapsed
        assert n >= 3
        await exchange(binary, phone, "after")
        silent.close()
        stalled.close()

    run(scenario())
    assert tls_metric(r, "failed") >= 2


# -- PROXY protocol v2 (docs/protocol.md §3.3) ----------------------------------------------------------

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2_tcp4(src, sport, dst="127.0.0.1", dport=443):
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs


def proxy_v2_tcp6(src, sport, dst="::1", dport=443):
    addrs = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
             + struct.pack("!HH", sport, dport))
    return SIG + bytes([0x21, 0x21]) + struct.pack("!H", len(addrs)) + addrs


def test_proxy_v2_header_then_tls_uses_the_proxy_source(relay_bin, start_relay, pki):
    r = start_tls(start_relay, relay_bin, *pki.default, "--https-proxy-protocol", "--header-timeout", "1s")
    ctx = pki.client_context()

    # Plain request over TLS behind a TCP4 header.
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    s.sendall(proxy_v2_tcp4("203.0.113.7", 40000))
    with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
        t.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _ = read_until_closed(t)
    assert data.startswith(b"HTTP/1.1 200 "), data

    async def scenario():
        # The header and the ClientHello in one segment, then a phone upgrade over TCP6.
        sock = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        sock.sendall(proxy_v2_tcp6("2001:db8::42", 5555))
        sock.setblocking(False)
        binary = await wss_binary(r, ctx, "srv-proxied", sock=sock, server_hostname="127.0.0.1")
        sock2 = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        sock2.sendall(proxy_v2_tcp4("198.51.100.9", 6000))
        sock2.setblocking(False)
        phone = await wss_phone(r, ctx, "srv-proxied", sock=sock2, server_hostname="127.0.0.1")
        await exchange(binary, phone, "proxied")
        await phone.close()
        await binary.close()

    run(scenario())
    events = [parse_logfmt(l) for l in r.proc.lines]
    # The PROXY source is the client IP the relay records (and rate-limits by).
    assert any(e.get("msg") == "phone_registered" and e.get("remote") == "198.51.100.9" for e in events)
    assert any(e.get("remote") == "2001:db8::42" for e in events), r.proc.stderr_text()[-2000:]


@pytest.mark.parametrize("name,payload", [
    ("v1", b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n"),
    ("local", SIG + bytes([0x20, 0x00, 0x00, 0x00])),
    ("unspec", SIG + bytes([0x21, 0x00, 0x00, 0x00])),
    ("udp4", SIG + bytes([0x21, 0x12, 0x00, 0x0C]) + bytes(12)),
    ("short", SIG + bytes([0x21, 0x11, 0x00, 0x04]) + bytes(4)),
    ("garbage", b"\x00\x01garbage that is no header at all"),
    ("clienthello-first", b"\x16\x03\x01\x00\xc4\x01\x00\x00\xc0\x03\x03"),
])
def test_anything_but_a_v2_proxy_header_is_closed_with_zero_bytes(relay_bin, start_relay, pki, name, payload):
    r = start_tls(start_relay, relay_bin, *pki.default, "--https-proxy-protocol", "--header-timeout", "1s")
    with socket.create_connection(("127.0.0.1", r.port), timeout=5) as s:
        s.sendall(payload)
        data, waited = read_until_closed(s)
    assert data == b""
    assert waited < HEADER_TIMEOUT_S * 0.8, "refused at once, not at the deadline (%.2f s)" % waited
    # The listener keeps working for well-formed clients.
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    s.sendall(proxy_v2_tcp4("192.0.2.10", 1234))
    assert peer_serial(r.port, pki.client_context(), sock=s) == "1001"


def test_missing_or_late_proxy_header_is_closed_with_zero_bytes(relay_bin, start_relay, pki):
    r = start_tls(start_relay, relay_bin, *pki.default, "--https-proxy-protocol", "--header-timeout", "1s")
    with socket.create_connection(("127.0.0.1", r.port), timeout=5) as silent, \
            socket.create_connection(("127.0.0.1", r.port), timeout=5) as partial:
        partial.sendall(proxy_v2_tcp4("203.0.113.7", 40000)[:20])  # header cut short, rest never comes
        t0 = time.monotonic()
        data1, _ = read_until_closed(silent)
        data2, _ = read_until_closed(partial)
        elapsed = time.monotonic() - t0
    assert data1 == b"" and data2 == b""
    assert HEADER_TIMEOUT_S * 0.8 <= elapsed < HEADER_TIMEOUT_S + 2.0, elapsed


PROXY_HEADER_MAX = 4096  # the relay's bound on a whole PROXY v2 header (docs/protocol.md)


def proxy_v2_tcp4_with_tlvs(src, sport, total):
    """A TCP4 header of exactly `total` bytes whose TLVs are what a load balancer adds —
    PP2_TYPE_AUTHORITY, an AWS VPC endpoint id (type 0xEA, subtype 0x01) — plus a PP2_TYPE_NOOP
    filling the rest."""
    addrs = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", sport, 443)

    def tlv(kind, value):
        return bytes([kind]) + struct.pack("!H", len(value)) + value

    tlvs = tlv(0x02, b"localhost") + tlv(0xEA, b"\x01vpce-0123456789abcdef0")
    tlvs += tlv(0x04, bytes(total - 16 - len(addrs) - len(tlvs) - 3))
    return SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs) + len(tlvs)) + addrs + tlvs


def test_proxy_v2_header_with_tlvs_is_accepted_up_to_the_bound_and_refused_past_it(relay_bin, start_relay, pki):
    r = start_tls(start_relay, relay_bin, *pki.default, "--https-proxy-protocol", "--header-timeout", "1s")
    ctx = pki.client_context()
    at_bound = proxy_v2_tcp4_with_tlvs("203.0.113.77", 40001, PROXY_HEADER_MAX)
    assert len(at_bound) == PROXY_HEADER_MAX

    async def scenario():
        sock = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        sock.sendall(at_bound)
        sock.setblocking(False)
        binary = await wss_binary(r, ctx, "srv-tlv", sock=sock, server_hostname="127.0.0.1")
        await binary.close()

    run(scenario())
    events = [parse_logfmt(l) for l in r.proc.lines]
    assert any(e.get("msg") == "server_claimed" and e.get("remote") == "203.0.113.77" for e in events)

    over = proxy_v2_tcp4_with_tlvs("203.0.113.78", 40002, PROXY_HEADER_MAX + 1)
    assert len(over) == PROXY_HEADER_MAX + 1
    with socket.create_connection(("127.0.0.1", r.port), timeout=5) as s:
        s.sendall(over)
        data, waited = read_until_closed(s)
    assert data == b""
    assert waited < HEADER_TIMEOUT_S * 0.8, "refused at once, not at the deadline (%.2f s)" % waited


def test_https_listen_bind_failure_names_the_listener(relay_bin, start_relay, pki):
    crt, key = pki.default
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = f"127.0.0.1:{holder.getsockname()[1]}"
    try:
        p = start_relay(relay_bin, ["--tls-cert", crt, "--tls-key", key, "--https-listen", taken,
                                    "--metrics-listen", "", "--runtime-dir", tempfile.mkdtemp(prefix="relay-run-")])
        assert p.wait(10) == 1
        p.wait_for_log(lambda l: l == f"pyrycode-relay: listen --https-listen {taken}: address already in use")
    finally:
        holder.close()


def test_encrypted_key_fails_at_once_instead_of_prompting_on_the_terminal(relay_bin, pki, tmp_path):
    """OpenSSL's default passphrase callback reads the controlling terminal: a relay started by
    hand would hang at boot (and its whole loop on a SIGHUP reload). It must fail, exit 1, in words."""
    import pty
    import select
    crt, key = pki.default
    enc = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", key, "-aes128", "-passout", "pass:secret", "-out", str(enc)],
                   check=True, capture_output=True)
    argv = [relay_bin, "--tls-cert", crt, "--tls-key", str(enc), "--https-listen", f"127.0.0.1:{free_port()}",
            "--metrics-listen", "", "--runtime-dir", tempfile.mkdtemp(prefix="relay-run-")]
    pid, fd = pty.fork()
    if pid == 0:  # the child: the relay with the pty as its controlling terminal
        os.execv(relay_bin, argv)
    out, deadline, closed = b"", time.monotonic() + 10, False
    try:
        while not closed and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break  # silent until the deadline: waiting for a passphrase
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: every holder of the pty closed it, i.e. the relay exited
                chunk = b""
            closed = not chunk
            out += chunk
        text = out.decode("utf-8", "replace")
        if not closed:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert closed, "the relay still held the terminal after 10 s: " + text
        assert os.waitstatus_to_exitcode(status) == 1, text
    finally:
        os.close(fd)
    assert "pass phrase" not in text, text
    assert (f"pyrycode-relay: tls: {enc}: the private key is encrypted; give an unencrypted key "
            "(openssl pkey -in FILE -out NEWFILE) (OpenSSL: ") in text, text


@pytest.mark.parametrize("size", [65000, 2000])
def test_wss_phone_backlog_full_gets_a_close_frame_behind_whole_frames(relay_bin, start_relay, pki, size):
    """The phone backlog close over TLS: when the outbox overflows, the bytes OpenSSL may hold for a blocked
    SSL_write (a TLS record, which spans several small frames) are kept with the frame being
    written, so the phone (`websockets`, which checks every frame) reads whole messages in
    order, then 1011 `phone backlog full`."""
    r = start_tls(start_relay, relay_bin, *pki.default, "--outbox-budget", "262144")
    ctx = pki.client_context()
    payload = "w" * size

    async def scenario():
        binary = await wss_binary(r, ctx, "srv-wss-backlog")
        # max_queue=1: once one message waits unread, the client stops reading its socket.
        phone = await wss_phone(r, ctx, "srv-wss-backlog", max_queue=1)
        await phone.send('{"hi":1}')
        phone_id = (await recv_json(binary))["conn_id"]
        sent = 0
        while True:  # until the binary hears the phone's close notice (the overflow)
            assert sent < 20000, "the outbox never overflowed"
            await binary.send('{"conn_id":"%s","frame":"%d:%s"}' % (phone_id, sent, payload))
            sent += 1
            try:
                notice = await asyncio.wait_for(binary.recv(), 0.001)
            except asyncio.TimeoutError:
                continue
            assert json.loads(notice) == {"conn_id": phone_id, "close_code": 1011}
            break
        got = 0
        try:
            while True:
                msg = await asyncio.wait_for(phone.recv(), 10)
                assert msg == '"%d:%s"' % (got, payload)
                got += 1
        except ConnectionClosed:
            pass
        assert 0 < got < sent
        assert (phone.protocol.close_rcvd.code, phone.protocol.close_rcvd.reason) == (1011, "phone backlog full")

    run(scenario())
