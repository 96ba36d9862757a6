"""Listen addresses and IPv6 (docs/operations.md, "IPv6"): an address with an empty host (`:P`,
the `--https-listen :443` default) serves IPv4 and IPv6 on one `[::]` socket, as Go's net.Listen
does; `0.0.0.0:P` stays IPv4-only; IPv4 clients of a dual-stack socket are logged as plain IPv4."""

import asyncio
import json
import pathlib
import shutil
import socket
import tempfile

import pytest

from conftest import parse_logfmt
from relaylib import binary_headers, phone_conn_id, phone_headers, recv_json
from test_tls import PKI, pki  # noqa: F401  (pki is a fixture)
from websockets.asyncio.client import connect


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def free_dual_port():
    """A port free on IPv4 and IPv6 alike (what a dual-stack [::] bind needs)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
        return s.getsockname()[1]


def start_on(start_relay, relay_bin, listen, wait_host, *extra, flag="--insecure-listen"):
    """The relay on `listen`; waits until wait_host answers. Returns (proc, port)."""
    port = free_dual_port()
    rundir = tempfile.mkdtemp(prefix="relay-run-")
    args = [flag, listen.format(port=port), "--metrics-listen", "", "--runtime-dir", rundir, *extra]
    return start_relay(relay_bin, args, wait_port=port, wait_host=wait_host), port


def healthz(host, port, wrap=None):
    """GET /healthz over TCP to host (an IP literal of either family); the parsed JSON body."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as raw:
        raw.settimeout(5)
        raw.connect((host, port))
        s = wrap(raw) if wrap else raw
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 "), out
    return json.loads(body)


def started_listen(proc):
    line = proc.wait_for_log(lambda l: parse_logfmt(l).get("msg") == "relay_started")
    return parse_logfmt(line)["listen"]


def test_empty_host_serves_ipv4_and_ipv6_on_one_socket(relay_bin, start_relay):
    proc, port = start_on(start_relay, relay_bin, ":{port}", "::1")
    assert started_listen(proc) == f"[::]:{port}"
    assert healthz("127.0.0.1", port)["status"] == "ok"
    assert healthz("::1", port)["status"] == "ok"

    async def scenario():
        # The binary over IPv6, its phone over IPv4: one relay, one registry.
        binary = await connect(f"ws://[::1]:{port}/v1/server", additional_headers=binary_headers("dual"),
                               open_timeout=5)
        phone = await connect(f"ws://127.0.0.1:{port}/v1/client", additional_headers=phone_headers("dual"),
                              open_timeout=5)
        cid = await phone_conn_id(binary, phone)
        await binary.send(json.dumps({"conn_id": cid, "frame": {"hello": "v4"}}))
        assert await recv_json(phone) == {"hello": "v4"}
        await phone.close()
        await binary.close()

    run(scenario())
    events = [parse_logfmt(l) for l in proc.lines]
    # The IPv4 client of the [::] socket is 127.0.0.1, not ::ffff:127.0.0.1 (logs and limits).
    phone = [e for e in events if e.get("msg") == "phone_registered"]
    assert phone and phone[0].get("remote") == "127.0.0.1", phone
    assert any(e.get("remote") == "::1" for e in events if e.get("server_id") == "dual"), events
    assert not any("::ffff:" in e.get("remote", "") for e in events)


def test_tls_listener_with_empty_host_serves_both_families(relay_bin, start_relay, pki):  # noqa: F811
    cert, key = pki.default
    proc, port = start_on(start_relay, relay_bin, ":{port}", "127.0.0.1", "--tls-cert", cert, "--tls-key", key,
                          flag="--https-listen")
    assert started_listen(proc) == f"[::]:{port}"
    ctx = pki.client_context()
    # The test leaf names 127.0.0.1 and localhost, so the IPv6 connection verifies as localhost.
    assert healthz("127.0.0.1", port, lambda s: ctx.wrap_socket(s, server_hostname="127.0.0.1"))["status"] == "ok"
    assert healthz("::1", port, lambda s: ctx.wrap_socket(s, server_hostname="localhost"))["status"] == "ok"


def test_ipv4_wildcard_stays_ipv4_only(relay_bin, start_relay):
    proc, port = start_on(start_relay, relay_bin, "0.0.0.0:{port}", "127.0.0.1")
    assert started_listen(proc) == f"0.0.0.0:{port}"
    assert healthz("127.0.0.1", port)["status"] == "ok"
    with pytest.raises(ConnectionRefusedError):
        healthz("::1", port)


@pytest.mark.parametrize("listen,other", [("[::]:{port}", "127.0.0.1"), ("[::1]:{port}", None)])
def test_ipv6_literals(relay_bin, start_relay, listen, other):
    proc, port = start_on(start_relay, relay_bin, listen, "::1")
    assert started_listen(proc) == listen.format(port=port)
    assert healthz("::1", port)["status"] == "ok"
    if other:  # [::] is dual-stack too (IPV6_V6ONLY off).
        assert healthz(other, port)["status"] == "ok"
    else:
        with pytest.raises(ConnectionRefusedError):
            healthz("127.0.0.1", port)


# -- systemd ---------------------------------------------------------------------------------

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "deploy"


def unit_values(name, key):
    return [l.split("=", 1)[1].strip() for l in (DEPLOY / name).read_text().splitlines()
            if l.startswith(key + "=")]


def test_deploy_units_serve_ipv6_with_or_without_the_socket_unit():
    # Without the socket unit: an empty host (dual-stack), and AF_INET6 not filtered out.
    service = (DEPLOY / "pyrycode-relay.service").read_text()
    assert "--https-listen :443 " in service
    assert "AF_INET6" in unit_values("pyrycode-relay.service", "RestrictAddressFamilies")[0].split()
    # With it: ListenStream=443 is [::]:443; BindIPv6Only=both keeps IPv4 on it whatever
    # net.ipv6.bindv6only says.
    assert unit_values("pyrycode-relay.socket", "ListenStream") == ["443"]
    assert unit_values("pyrycode-relay.socket", "BindIPv6Only") == ["both"]


def test_socket_activated_port_only_listener_serves_both_families(relay_bin, start_relay, tmp_path):
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate not installed")
    port = free_dual_port()
    # `-l PORT` is what ListenStream=443 binds: [::]:PORT. The tool execs the relay on the first
    # connection (wait_port's).
    proc = start_relay(tool, ["-l", str(port), relay_bin, "--insecure-listen", f":{port}",
                              "--metrics-listen", "", "--runtime-dir", str(tmp_path)], wait_port=port)
    act = proc.wait_for_log(lambda l: parse_logfmt(l).get("msg") == "socket_activation")
    assert parse_logfmt(act)["listen"] == f"[::]:{port}"
    assert started_listen(proc) == f"[::]:{port}"
    assert healthz("127.0.0.1", port)["status"] == "ok"
    assert healthz("::1", port)["status"] == "ok"
