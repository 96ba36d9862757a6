"""Operability of the built binary (docs/operations.md; docs/protocol.md §2.6, §3.3): flags, environment,
production guards, admission limits, /healthz, /metrics, logs and shutdown.

Every test drives the real executable as a separate process over loopback. Source addresses
127.0.0.2, .3, ... stand for distinct client IPs (the whole 127.0.0.0/8 is loopback on Linux);
X-Forwarded-For values are header strings only (TEST-NET ranges, never dialled).

Decision recorded here and in README.md: a second SIGTERM/SIGINT during the drain ends the
process at once with exit code 1 (docs/operations.md: 0 is a *clean* shutdown; a forced exit drops
connections without their close handshake, so it is reported as a failure to supervisors).
"""

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.asyncio.client import connect

from conftest import REPO_ROOT, free_port, parse_logfmt
from relaylib import (RawClient, binary_headers, closed_with, fd_count, open_binary, open_phone,
                      phone_conn_id, phone_headers, recv_json, scrape, start, wait_until)

ENV_VARS = ["PYRYCODE_RELAY_PRODUCTION", "PYRYCODE_RELAY_SINGLE_INSTANCE",
            "PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE", "PYRYCODE_RELAY_FCM_CREDENTIALS", "PYRYCODE_RELAY_FCM_BASE_URL",
            "PYRYCODE_RELAY_FLY_DNS_SERVER"]

# docs/operations.md, the keys every log line may carry after ts/level/msg.
SPEC_LOG_KEYS = {"server_id", "conn_id", "binary_conn_id", "device_name", "remote", "binary_version",
                 "err", "path", "from", "to", "close_code", "token_fp", "duration", "fcm_message_id"}

def capability_names(mask):
    """The names of the capability bits in `mask` as libcap's `capsh --decode` gives them (bits it
    does not know as `cap_<n>`, as the relay writes them): an oracle independent of the relay's table."""
    out = subprocess.run(["capsh", f"--decode={mask:#x}"], capture_output=True, text=True, check=True).stdout
    names = out.strip().split("=", 1)[1]
    return {f"cap_{n}" if n.isdigit() else n for n in names.split(",") if n}


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def clean_env(**extra):
    """os.environ without the relay's own variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYRYCODE_RELAY_")}
    env.update(extra)
    return env


def run_cli(relay_bin, args, env=None, timeout=15, prefix=()):
    """Runs the relay to completion (it must exit by itself); returns (rc, stdout, stderr)."""
    p = subprocess.run([*prefix, relay_bin, *args], env=env if env is not None else clean_env(),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def runtime_dir(mode=0o700):
    d = tempfile.mkdtemp(prefix="relay-ops-")
    os.chmod(d, mode)
    return d


def port_is_bound(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def request(port, raw, source=None, timeout=5):
    """Sends raw request bytes from `source` (an IP on 127/8); returns (status, headers, body)
    read until the relay closes the connection."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(raw)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        # RST instead of FIN: thousands of rejected requests leave no TIME_WAIT behind.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    return parse_response(out)


def parse_response(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1]) if lines and lines[0].startswith(b"HTTP/1.1 ") else None
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    return status, headers, body


def upgrade_request(port, path, headers=None, key=None):
    key = key or "dGhlIHNhbXBsZSBub25jZQ=="
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def health(port):
    status, _, body = request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    return json.loads(body)


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def relay_version(relay_bin):
    rc, out, _ = run_cli(relay_bin, ["--version"])
    assert rc == 0
    return out.strip()


# ---------------------------------------------------------------------------------------------
# Flags (`pyrycode-relay --help`)
# ---------------------------------------------------------------------------------------------

DOCUMENTED_FLAGS = {
    # docs/operations.md table (Go names).
    "insecure-listen": None, "domain": None, "tls-cert": None, "tls-key": None,
    "https-listen": ":443", "http-listen": ":80", "cert-cache": None, "https-proxy-protocol": None,
    "metrics-listen": "127.0.0.1:9090", "trust-x-forwarded-for": None, "max-connections": "10000",
    "version": None,
    # Tunables beyond the Go relay's flags, each with its default (the `Limits+<Layer>.swift` files under Sources/Relay).
    "max-connections-per-ip": "256", "max-half-open": "1024", "max-half-open-per-ip": "64", "grace": "30s",
    "heartbeat-interval": "30s", "heartbeat-timeout": "30s", "probe-timeout": "10s",
    "phones-per-server": "16", "max-message-bytes": "262144", "outbox-budget": "4194304",
    "max-buffered-bytes": "536870912", "drain-deadline": "10s", "header-timeout": "5s",
    "log-buffer-bytes": "1048576",
    "permessage-deflate": None,
}


def parse_help(text):
    """`  --name [VALUE]` lines, each followed by an indented explanation → {name: explanation}."""
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^  -{1,2}([a-z0-9-]+)( \S+)?$", line)
        if m:
            current = m.group(1)
            out[current] = ""
        elif current and line.startswith("    "):
            out[current] = (out[current] + " " + line.strip()).strip()
    return out


@pytest.mark.parametrize("arg", ["--help", "-help", "-h"])
def test_help_exits_0_and_explains_every_flag(relay_bin, arg):
    rc, out, err = run_cli(relay_bin, [arg])
    assert rc == 0, err
    flags = parse_help(out)
    for name, default in DOCUMENTED_FLAGS.items():
        assert name in flags, f"--{name} missing from --help"
        assert len(flags[name]) >= 10, f"--{name} has no explanation: {flags[name]!r}"
        if default is not None:
            assert f'(default "{default}")' in flags[name], f"--{name}: {flags[name]!r}"


def test_version_exits_0_and_matches_healthz(relay_bin, start_relay):
    rc, out, err = run_cli(relay_bin, ["--version"])
    assert rc == 0 and err == ""
    version = out.strip()
    assert re.fullmatch(r"[0-9A-Za-z.+-]+", version), out
    r = start(start_relay, relay_bin)
    assert health(r.port)["version"] == version


USAGE_HINT = "run pyrycode-relay --help for usage"


def test_unknown_flag_exits_2_with_one_line_and_the_help_hint(relay_bin):
    rc, out, err = run_cli(relay_bin, ["--insecure-listen", "127.0.0.1:1", "--no-such-flag"])
    assert rc == 2 and out == ""
    # The refusal and where to look, not the whole flag list scrolling it away.
    assert err.splitlines() == ["pyrycode-relay: flag provided but not defined: -no-such-flag", USAGE_HINT], err


@pytest.mark.parametrize("arg", ["--help", "-h"])
def test_help_lists_environment_endpoints_and_only_supported_flags(relay_bin, arg):
    rc, out, _ = run_cli(relay_bin, [arg])
    assert rc == 0
    for var in ENV_VARS + ["RUNTIME_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS", "FLY_APP_NAME",
                           "KUBERNETES_SERVICE_HOST"]:
        assert re.search(r"^  (\S+, )*" + var + r"\b", out, re.M), f"{var} missing from --help"
    for endpoint in ["/v1/server", "/v1/client", "/healthz", "/metrics"]:
        assert re.search(r"^  " + re.escape(endpoint) + " ", out, re.M), f"{endpoint} missing from --help"
    assert "served only on --metrics-listen" in out
    flags = parse_help(out)
    for acme in ["http-listen", "cert-cache", "acme-directory", "acme-renew-before", "acme-retry-min"]:
        assert flags[acme].startswith("ACME mode: "), flags[acme]
    for internal in ["SPEC", "DESIGN.md", "BENCH.md", "§"]:
        assert internal not in out


def test_domain_with_a_non_dns_name_is_refused_in_acme_mode(relay_bin):
    rc, out, err = run_cli(relay_bin, ["--runtime-dir", runtime_dir(), "--domain", "127.0.0.1"])
    assert rc == 2 and out == ""
    assert err.splitlines() == [
        "pyrycode-relay: invalid value \"127.0.0.1\" for --domain: ACME needs a DNS name such as relay.example.com",
        USAGE_HINT], err


@pytest.mark.parametrize("flag", ["metrics-listen", "insecure-listen"])
def test_bind_failure_names_the_listener_and_address(relay_bin, flag):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = f"127.0.0.1:{holder.getsockname()[1]}"
    try:
        args = {"insecure-listen": f"127.0.0.1:{free_port()}", "metrics-listen": f"127.0.0.1:{free_port()}"}
        args[flag] = taken
        rc, out, err = run_cli(relay_bin, ["--runtime-dir", runtime_dir(),
                                           *[a for k, v in args.items() for a in (f"--{k}", v)]])
    finally:
        holder.close()
    assert rc == 1, err
    assert f"pyrycode-relay: listen --{flag} {taken}: address already in use" in err.splitlines(), err


BAD = ["--insecure-listen", "127.0.0.1:1"]


@pytest.mark.parametrize("args,flag", [
    (["--insecure-listen", "127.0.0.1:0"], "insecure-listen"),
    (["--insecure-listen", "127.0.0.1:65536"], "insecure-listen"),
    (["--insecure-listen", "garbage"], "insecure-listen"),
    (["--insecure-listen", "not-an-ip:8080"], "insecure-listen"),
    (["--insecure-listen", "::1:8080"], "insecure-listen"),          # bare IPv6 needs brackets
    (["--insecure-listen", "[::1]:0"], "insecure-listen"),
    (["--insecure-listen"], "insecure-listen"),                       # value missing
    (BAD + ["--max-connections", "0"], "max-connections"),
    (BAD + ["--max-connections", "-5"], "max-connections"),
    (BAD + ["--max-connections", "lots"], "max-connections"),
    (BAD + ["--max-connections-per-ip", "0"], "max-connections-per-ip"),
    (BAD + ["--max-half-open", "0"], "max-half-open"),
    (BAD + ["--drain-deadline", "soon"], "drain-deadline"),
    (BAD + ["--log-buffer-bytes", "0"], "log-buffer-bytes"),
    (BAD + ["--grace", "0s"], "grace"),
    (BAD + ["--metrics-listen", "0.0.0.0:9090"], "metrics-listen"),  # not loopback
    (BAD + ["--metrics-listen", ":9090"], "metrics-listen"),         # every interface
    (BAD + ["--metrics-listen", "localhost:9090"], "metrics-listen"),  # a name, not an IP literal
    (BAD + ["--metrics-listen", "127.0.0.1:0"], "metrics-listen"),
    (BAD + ["--https-listen", "127.0.0.1:8443"], "https-listen"),
    (BAD + ["--http-listen", "127.0.0.1:8080"], "http-listen"),
    (BAD + ["--https-proxy-protocol"], "https-proxy-protocol"),
    (BAD + ["--trust-x-forwarded-for=maybe"], "trust-x-forwarded-for"),
    (["--tls-cert", "/tmp/c.pem"], "tls-key"),
    (["--tls-key", "/tmp/k.pem"], "tls-cert"),
    ([], "insecure-listen"),                                          # neither insecure nor TLS
    (BAD + ["--tls-cert", "/tmp/c.pem", "--tls-key", "/tmp/k.pem"], "insecure-listen"),  # both
])
def test_bad_flag_value_exits_2_naming_the_flag(relay_bin, args, flag):
    rc, out, err = run_cli(relay_bin, ["--runtime-dir", runtime_dir()] + args)
    assert rc == 2, err
    assert out == ""
    first, *rest = err.splitlines()
    assert re.search(r"(^|[^a-z-])--?" + re.escape(flag) + r"([^a-z-]|$)", first), first
    assert rest == [USAGE_HINT], err


def test_flag_syntaxes_and_last_value_wins(relay_bin, start_relay):
    p1, p2, m = free_port(), free_port(), free_port()
    args = [f"--insecure-listen=127.0.0.1:{p1}", "--insecure-listen", f"127.0.0.1:{p2}",
            "-metrics-listen", f"127.0.0.1:{m}", "--max-connections=1", "-max-connections", "2",
            f"--runtime-dir={runtime_dir()}"]
    r = start_relay(relay_bin, args, env=clean_env(), inherit_env=False, wait_port=p2)
    started = parse_logfmt(r.wait_for_log(lambda l: "msg=relay_started" in l))
    assert f"127.0.0.1:{p2}" in started["listen"].split(",") and str(p1) not in started["listen"]
    assert started["metrics"] == f"127.0.0.1:{m}"
    assert not port_is_bound(p1)
    # --max-connections took its last value, 2: two upgrades in, the third is 503.
    socks = []
    for i in range(2):
        c = RawClient(p2, "/v1/server", binary_headers(f"last-wins-{i}"))
        assert c.status == 101
        socks.append(c)
    status, _, _ = request(p2, upgrade_request(p2, "/v1/server", binary_headers("last-wins-2")))
    assert status == 503
    for c in socks:
        c.close()


def test_empty_metrics_listen_disables_metrics(relay_bin, start_relay):
    port, m = free_port(), free_port()
    args = ["--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{m}",
            "--metrics-listen", "", "--runtime-dir", runtime_dir()]
    r = start_relay(relay_bin, args, env=clean_env(), inherit_env=False, wait_port=port)
    started = parse_logfmt(r.wait_for_log(lambda l: "msg=relay_started" in l))
    assert started["metrics"] == "off"
    assert started["listen"] == f"127.0.0.1:{port}"
    assert not port_is_bound(m)
    # The public listener never serves /metrics.
    status, _, _ = request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 404


# ---------------------------------------------------------------------------------------------
# Environment (docs/operations.md)
# ---------------------------------------------------------------------------------------------

FCM_SECRET = "fcm-secret-" + secrets.token_hex(8)

ENV_CASES = [
    ("PYRYCODE_RELAY_PRODUCTION", ""), ("PYRYCODE_RELAY_PRODUCTION", "true"),
    ("PYRYCODE_RELAY_PRODUCTION", "0"), ("PYRYCODE_RELAY_PRODUCTION", " 1"),
    ("PYRYCODE_RELAY_SINGLE_INSTANCE", ""), ("PYRYCODE_RELAY_SINGLE_INSTANCE", "yes"),
    ("PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE", ""), ("PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE", "1"),
    ("PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE", "TRUE"),
    ("PYRYCODE_RELAY_FCM_CREDENTIALS", ""),
    ("PYRYCODE_RELAY_FCM_CREDENTIALS", FCM_SECRET),
    ("PYRYCODE_RELAY_FCM_CREDENTIALS", '{"type":"service_account","private_key":"' + FCM_SECRET),
    ("PYRYCODE_RELAY_FCM_CREDENTIALS", '["' + FCM_SECRET + '"]'),
    # Well-formed JSON, but no key that can sign: refused at boot, still without echo.
    ("PYRYCODE_RELAY_FCM_CREDENTIALS", json.dumps({
        "type": "service_account", "client_email": "relay@example.invalid", "token_uri": "https://oauth2.example.invalid/token",
        "private_key": "-----BEGIN PRIVATE KEY-----\n" + FCM_SECRET + "\n-----END PRIVATE KEY-----\n"})),
    ("PYRYCODE_RELAY_FCM_BASE_URL", ""), ("PYRYCODE_RELAY_FCM_BASE_URL", "http://127.0.0.1:8443"),
    ("PYRYCODE_RELAY_FCM_BASE_URL", "fcm.googleapis.com"), ("PYRYCODE_RELAY_FCM_BASE_URL", "https://host:99999"),
    ("PYRYCODE_RELAY_FLY_DNS_SERVER", ""), ("PYRYCODE_RELAY_FLY_DNS_SERVER", "resolver"),
    ("PYRYCODE_RELAY_FLY_DNS_SERVER", "127.0.0.1"), ("PYRYCODE_RELAY_FLY_DNS_SERVER", ":53"),
]


@pytest.mark.parametrize("var,value", ENV_CASES)
def test_invalid_env_var_exits_2_naming_it(relay_bin, var, value):
    args = ["--insecure-listen", f"127.0.0.1:{free_port()}", "--runtime-dir", runtime_dir()]
    rc, out, err = run_cli(relay_bin, args, env=clean_env(**{var: value}))
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"relay: invalid env-var config: {var}: "), lines[0]
    assert len(lines[0]) > len(f"relay: invalid env-var config: {var}: ")
    assert FCM_SECRET not in err + out
    if len(value.strip()) > 1:
        # No env value is ever echoed (docs/operations.md), not only the FCM key.
        assert value.strip() not in lines[0].split(f"{var}: ", 1)[1]


def test_valid_fcm_key_is_never_logged(relay_bin, start_relay):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    key = json.dumps({"type": "service_account", "client_email": FCM_SECRET + "@example.invalid",
                      "token_uri": "https://oauth2.example.invalid/token", "private_key": pem})
    r = start(start_relay, relay_bin, env={"PYRYCODE_RELAY_FCM_CREDENTIALS": key})
    r.proc.wait_for_log(lambda l: "msg=relay_started" in l and "push=fcm" in l)
    assert r.proc.stop() == 0
    log = r.proc.stderr_text()
    assert FCM_SECRET not in log and pem.splitlines()[1] not in log


# ---------------------------------------------------------------------------------------------
# Production guards and the capability allowlist (docs/operations.md)
# ---------------------------------------------------------------------------------------------

PRODUCTION = {"PYRYCODE_RELAY_PRODUCTION": "1", "PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE": "true"}

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the CI runs as root)")
needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")


@pytest.fixture
def world_binary(relay_bin):
    """The relay binary copied where uid 65534 can execute it (the build tree may be private)."""
    d = tempfile.mkdtemp(prefix="relay-bin-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "pyrycode-relay")
    shutil.copy2(relay_bin, path)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(d, ignore_errors=True)


def tls_args():
    # Production needs a TLS listener; the files do not exist, so a run that passes the guards
    # stops at step 5 (TLS load) with exit 1 — distinguishable from a guard refusal (exit 2).
    return ["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem",
            "--https-listen", f"127.0.0.1:{free_port()}", "--metrics-listen", ""]


def setpriv(*caps):
    p = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if caps:
        c = ",".join("+" + x for x in caps)
        p += [f"--inh-caps={c}", f"--ambient-caps={c}"]
    return p


def test_production_refuses_insecure_listen(relay_bin):
    rc, _, err = run_cli(relay_bin, ["--insecure-listen", f"127.0.0.1:{free_port()}", "--runtime-dir", runtime_dir()],
                         env=clean_env(**PRODUCTION))
    assert rc == 2, err
    assert "PYRYCODE_RELAY_PRODUCTION" in err and "--insecure-listen" in err


@needs_root
def test_production_refuses_root(relay_bin):
    rc, _, err = run_cli(relay_bin, tls_args() + ["--runtime-dir", runtime_dir()], env=clean_env(**PRODUCTION))
    assert rc == 2, err
    assert "root" in err and "PYRYCODE_RELAY_PRODUCTION" in err


@needs_root
@needs_setpriv
def test_production_unprivileged_passes_the_guards(world_binary):
    rc, _, err = run_cli(world_binary, tls_args() + ["--runtime-dir", runtime_dir(0o777)],
                         env=clean_env(**PRODUCTION), prefix=setpriv())
    assert rc == 1, err  # past step 4: the TLS files are what fails
    assert "refuses" not in err and "capabilit" not in err


@needs_root
@needs_setpriv
def test_production_allows_only_cap_net_bind_service(world_binary):
    rc, _, err = run_cli(world_binary, tls_args() + ["--runtime-dir", runtime_dir(0o777)],
                         env=clean_env(**PRODUCTION), prefix=setpriv("net_bind_service"))
    assert rc == 1, err
    assert "capabilit" not in err
    rc, _, err = run_cli(world_binary, tls_args() + ["--runtime-dir", runtime_dir(0o777)],
                         env=clean_env(**PRODUCTION), prefix=setpriv("net_bind_service", "net_raw"))
    assert rc == 2, err
    assert "cap_net_raw" in err and "cap_net_bind_service" not in err


@needs_root
@needs_setpriv
def test_unprivileged_run_has_no_capability_warning(world_binary, start_relay):
    port = free_port()
    args = ["--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", "", "--runtime-dir", runtime_dir(0o777)]
    r = start_relay("setpriv", [a for a in setpriv()[1:]] + [world_binary] + args,
                    env=clean_env(), inherit_env=False, wait_port=port)
    r.wait_for_log(lambda l: "msg=relay_started" in l)
    st = proc_status(r.proc.pid)
    assert int(st["Uid"].split()[1]) == 65534 and int(st["CapEff"], 16) == 0
    assert health(port)["status"] == "ok"
    assert r.stop() == 0
    assert "extra_capabilities" not in r.stderr_text()


@needs_root
def test_root_with_capabilities_warns_once_and_starts(relay_bin, start_relay):
    with open("/proc/self/status") as f:
        cap_eff = int(next(l for l in f if l.startswith("CapEff:")).split()[1], 16)
    extra = capability_names(cap_eff & ~(1 << 10))  # all but CAP_NET_BIND_SERVICE
    if not extra:
        pytest.skip("this process holds no capability beyond CAP_NET_BIND_SERVICE")
    r = start(start_relay, relay_bin)
    r.proc.wait_for_log(lambda l: "msg=relay_started" in l)
    assert health(r.port)["status"] == "ok"
    assert r.proc.stop() == 0
    warns = [parse_logfmt(l) for l in r.proc.lines if "msg=extra_capabilities" in l]
    assert len(warns) == 1
    assert warns[0]["level"] == "warn"
    assert set(warns[0]["capabilities"].split(",")) == extra


# ---------------------------------------------------------------------------------------------
# Admission (docs/protocol.md §2–§3 order, §10)
# ---------------------------------------------------------------------------------------------

NO_HEADERS = {"User-Agent": "admission-test"}  # fails the header gate (400) after the rate limit


def test_rate_limit_burst_of_20_then_429(relay_bin, start_relay):
    r = start(start_relay, relay_bin)
    t0 = time.monotonic()
    # Both WebSocket routes share one bucket per IP; each attempt takes a token before the
    # header gate, so header-less upgrades (400) spend the burst without creating state.
    for i in range(20):
        path = "/v1/server" if i % 2 else "/v1/client"
        status, _, _ = request(r.port, upgrade_request(r.port, path, NO_HEADERS))
        assert status == 400, i
    rejected = 0
    for path in ["/v1/server", "/v1/client", "/v1/server", "/v1/client"]:
        status, headers, body = request(r.port, upgrade_request(r.port, path, binary_headers("rl")))
        assert status == 429
        assert body == b"" and headers["content-length"] == "0"
        assert headers["connection"] == "close"
        rejected += 1
    assert time.monotonic() - t0 < 6.0, "the bucket refills one token per 6 s: the run was too slow to tell"
    m = scrape(r)
    up = "pyrycode_relay_ws_upgrade_attempts_total"
    assert m[(up, (("endpoint", "server"), ("outcome", "reject_rate_limit")))] == 2
    assert m[(up, (("endpoint", "client"), ("outcome", "reject_rate_limit")))] == 2
    assert m[("pyrycode_relay_register_failures_total", (("kind", "ratelimit"),))] == 4
    # Other IPs have their own buckets.
    status, _, _ = request(r.port, upgrade_request(r.port, "/v1/server", NO_HEADERS), source="127.0.0.2")
    assert status == 400
    assert r.proc.stop() == 0
    warns = [parse_logfmt(l) for l in r.proc.lines if "msg=ratelimit_rejected" in l]
    assert len(warns) == rejected  # exactly one warn line per rejection
    assert all(w["level"] == "warn" and w["remote"] == "127.0.0.1" for w in warns)


def test_global_cap_answers_503(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--max-connections", "3")
    held = [RawClient(r.port, "/v1/server", binary_headers(f"cap-{i}")) for i in range(3)]
    assert [c.status for c in held] == [101, 101, 101]
    for path, hdrs in [("/v1/server", binary_headers("cap-3")), ("/v1/client", phone_headers("cap-0"))]:
        status, headers, body = request(r.port, upgrade_request(r.port, path, hdrs))
        assert status == 503 and body == b""
    # /healthz is not capped.
    assert health(r.port)["connected_binaries"] == 3
    # A slot frees up when a connection leaves.
    held.pop().close()
    wait_until(lambda: scrape(r)[("pyrycode_relay_live_connections", ())] == 2, what="live connections to drop")
    c = RawClient(r.port, "/v1/server", binary_headers("cap-again"))
    assert c.status == 101
    for h in held + [c]:
        h.close()
    assert r.proc.stop() == 0
    # One warn line per 503, as the Go relay logs it.
    warns = [parse_logfmt(l) for l in r.proc.lines if "msg=conn_cap_reached" in l]
    assert [(w["level"], w["path"]) for w in warns] == [("warn", "/v1/server"), ("warn", "/v1/client")]


def test_per_ip_live_cap_answers_429(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--max-connections-per-ip", "2")
    held = [RawClient(r.port, "/v1/server", binary_headers(f"ipcap-{i}")) for i in range(2)]
    assert [c.status for c in held] == [101, 101]
    status, _, body = request(r.port, upgrade_request(r.port, "/v1/server", binary_headers("ipcap-2")))
    assert status == 429 and body == b""
    m = scrape(r)
    assert m[(UP, (("endpoint", "server"), ("outcome", "reject_rate_limit")))] == 1
    assert m[(RF, (("kind", "ratelimit"),))] == 1
    # Another client IP is not affected.
    status, _, _ = request(r.port, upgrade_request(r.port, "/v1/server", NO_HEADERS), source="127.0.0.2")
    assert status == 400
    # Leaving frees the slot for the same IP.
    held.pop().close()
    wait_until(lambda: scrape(r)[("pyrycode_relay_live_connections", ())] == 1, what="live connections to drop")
    c = RawClient(r.port, "/v1/server", binary_headers("ipcap-3"))
    assert c.status == 101
    for h in held + [c]:
        h.close()


def test_trusted_x_forwarded_for_keys_the_bucket(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--trust-x-forwarded-for")

    def attempt(xff=None):
        hdrs = dict(NO_HEADERS)
        if xff is not None:
            hdrs["X-Forwarded-For"] = xff
        return request(r.port, upgrade_request(r.port, "/v1/server", hdrs))[0]

    for client in ["203.0.113.7", "198.51.100.9", "2001:db8::1"]:
        assert [attempt(f"{client}, 192.0.2.1") for _ in range(20)] == [400] * 20, client
        assert attempt(f"{client}, 192.0.2.99") == 429, client  # only the first entry counts
        assert attempt(client) == 429, client
    # The peer address is not the key while the header is present...
    assert attempt("192.0.2.50") == 400
    # ...and is the key when it is absent.
    assert attempt() == 400
    # An entry that is not an IP is an unknown client: 429 (docs/protocol.md §3.3).
    assert attempt("not-an-ip") == 429
    assert attempt("") == 429


def test_x_forwarded_for_is_ignored_unless_trusted(relay_bin, start_relay):
    r = start(start_relay, relay_bin)
    statuses = [request(r.port, upgrade_request(r.port, "/v1/server", {**NO_HEADERS, "X-Forwarded-For": f"203.0.113.{i}"}))[0]
                for i in range(21)]
    assert statuses == [400] * 20 + [429]


def test_half_open_cap_closes_the_oldest_first(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--max-half-open", "5", "--header-timeout", "60s")
    gauge = ("pyrycode_relay_half_open_connections", ())
    socks = []
    for i in range(5):
        s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        socks.append(s)
        wait_until(lambda: scrape(r)[gauge] == i + 1, what=f"{i + 1} half-open connections")

    def is_closed(s, timeout):
        s.settimeout(timeout)
        try:
            return s.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    for k in range(2):  # the 6th closes #0, the 7th closes #1
        s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        socks.append(s)
        assert is_closed(socks[k], 5), f"connection {k} (the oldest) was not closed"
        for j in range(k + 1, len(socks)):
            assert not is_closed(socks[j], 0.05), f"connection {j} was closed instead of the oldest"
        wait_until(lambda: scrape(r)[gauge] == 5, what="the gauge to settle at the cap")
    # The survivors are still served.
    socks[-1].settimeout(5)
    socks[-1].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert socks[-1].recv(12) == b"HTTP/1.1 200"
    for s in socks:
        s.close()


def test_rejected_upgrades_cost_no_state(relay_bin, start_relay):
    """Thousands of 503/429 answers leave nothing behind: no registry entry, no gauge, no fd,
    and bounded memory (docs/protocol.md §3.3)."""
    r = start(start_relay, relay_bin, "--max-connections", "2")
    binaries = [RawClient(r.port, "/v1/server", binary_headers(f"nostate-{i}")) for i in range(2)]
    assert [b.status for b in binaries] == [101, 101]
    sources = [f"127.0.0.{i}" for i in range(2, 202)]
    hdrs = binary_headers("nostate-x")

    # Spend the rest of 127.0.0.1's burst: from here on it is answered 429 by the rate limit.
    for _ in range(18):
        assert request(r.port, upgrade_request(r.port, "/v1/server", hdrs))[0] == 503
    assert request(r.port, upgrade_request(r.port, "/v1/server", hdrs))[0] == 429

    def one(job):
        source, path = job
        status, headers, body = request(r.port, upgrade_request(r.port, path, hdrs if path == "/v1/server"
                                                                  else phone_headers("nostate-0")), source=source)
        return status, body

    def round_of_rejections():
        # 1,000 × 503 (other IPs, over the global cap) + 1,000 × 429 (127.0.0.1, over its rate).
        jobs = [(src, "/v1/server" if k % 2 else "/v1/client") for k in range(5) for src in sources]
        jobs += [(None, "/v1/client" if k % 2 else "/v1/server") for k in range(1000)]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, jobs))
        # (127.0.0.1 earns a token every 6 s, so a slow run turns a few 429s into 503s.)
        assert sum(1 for s, _ in results if s == 503) >= 1000
        assert sum(1 for s, _ in results if s == 429) >= 980
        assert sum(1 for s, _ in results if s in (429, 503)) == 2000
        assert all(b == b"" for _, b in results)


    def rss():
        return int(proc_status(r.proc.pid)["VmRSS"].split()[0]) * 1024

    def settled():
        wait_until(lambda: scrape(r)[("pyrycode_relay_half_open_connections", ())] == 0,
                   what="half-open connections to drain")

    round_of_rejections()          # warm-up: allocator arenas, dictionary capacities
    settled()
    fds_before, rss_before = fd_count(r.proc.pid), rss()
    round_of_rejections()
    settled()
    # The last scrape's own socket may still be closing: wait for the count, bounded.
    wait_until(lambda: fd_count(r.proc.pid) <= fds_before, timeout=3, what=f"fd count back to {fds_before}")
    rss_after = rss()
    assert rss_after - rss_before < 1024 * 1024, f"RSS grew by {rss_after - rss_before} bytes over 2,000 rejections"
    print(f"fds {fds_before}, RSS {rss_before} -> {rss_after} bytes")

    doc = health(r.port)
    assert doc["connected_binaries"] == 2 and doc["connected_phones"] == 0
    for b in binaries:
        b.close()
    wait_until(lambda: scrape(r)[("pyrycode_relay_live_connections", ())] == 0, what="binaries to leave")
    m = scrape(r)
    for name in ["pyrycode_relay_connected_binaries", "pyrycode_relay_connected_phones",
                 "pyrycode_relay_live_connections", "pyrycode_relay_half_open_connections",
                 "pyrycode_relay_queued_bytes"]:
        assert m[(name, ())] == 0, name
    doc = health(r.port)
    assert doc["connected_binaries"] == 0 and doc["connected_phones"] == 0


# ---------------------------------------------------------------------------------------------
# /healthz (docs/protocol.md §2)
# ---------------------------------------------------------------------------------------------

def test_healthz_exact_body_headers_any_method(relay_bin, start_relay):
    version = relay_version(relay_bin)
    r = start(start_relay, relay_bin)
    body_re = re.compile(rb'\{"status":"ok","version":"' + re.escape(version.encode()) +
                         rb'","connected_binaries":0,"connected_phones":0,"uptime_seconds":\d+\}')
    for method in ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"]:
        status, headers, body = request(r.port, f"{method} /healthz?probe=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert status == 200, method
        assert body_re.fullmatch(body), body
        assert headers["content-type"] == "application/json; charset=utf-8"
        assert headers["cache-control"] == "no-store"
        assert headers["content-length"] == str(len(body))
    # HEAD: the same headers, no content (RFC 9110 §9.3.2), and the connection stays usable.
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ") and b"Content-Length: " in first
    assert rest.startswith(b"HTTP/1.1 200 "), "HEAD response carried a body"
    status, _, body = parse_response(rest)
    assert status == 200 and body_re.fullmatch(body)
    # A request with a body is answered and the connection closed (bodies are never read).
    status, headers, body = request(r.port, b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
    assert status == 200 and headers.get("connection") == "close" and body_re.fullmatch(body)


def test_healthz_is_not_rate_limited(relay_bin, start_relay):
    r = start(start_relay, relay_bin)
    for _ in range(20):
        request(r.port, upgrade_request(r.port, "/v1/server", NO_HEADERS))
    assert request(r.port, upgrade_request(r.port, "/v1/server", NO_HEADERS))[0] == 429
    statuses = [request(r.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] for _ in range(30)]
    assert statuses == [200] * 30


def test_healthz_is_not_capped(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--max-connections", "1")
    b = RawClient(r.port, "/v1/server", binary_headers("hz-cap"))
    assert b.status == 101
    assert request(r.port, upgrade_request(r.port, "/v1/server", binary_headers("hz-cap-2")))[0] == 503
    doc = health(r.port)
    assert doc["connected_binaries"] == 1
    b.close()


# ---------------------------------------------------------------------------------------------
# /metrics (docs/operations.md)
# ---------------------------------------------------------------------------------------------

UP = "pyrycode_relay_ws_upgrade_attempts_total"
RF = "pyrycode_relay_register_failures_total"
FF = "pyrycode_relay_frames_forwarded_total"
OUTCOMES = ["accept", "reject_headers", "reject_409", "reject_404", "reject_429", "reject_rate_limit"]
KINDS = ["no_server", "server_in_use", "phones_at_cap", "ratelimit"]


def go_series():
    keys = [("pyrycode_relay_connected_binaries", ()), ("pyrycode_relay_connected_phones", ()),
            (FF, (("direction", "phone_to_binary"),)), (FF, (("direction", "binary_to_phone"),)),
            ("pyrycode_relay_grace_expiries_total", ())]
    keys += [(UP, (("endpoint", e), ("outcome", o))) for e in ["server", "client"] for o in OUTCOMES]
    keys += [(RF, (("kind", k),)) for k in KINDS]
    return keys


def test_metrics_series_present_from_boot(relay_bin, start_relay):
    r = start(start_relay, relay_bin)
    m = scrape(r)  # prometheus_client's parser: malformed exposition text raises
    series = go_series()
    assert len(series) == 5 + 12 + 4
    for key in series:
        assert m.get(key) == 0, key
    assert not any(name.startswith("pyrycode_relay_push_wakes") for name, _ in m), "push is off"
    for name in ["pyrycode_relay_live_connections", "pyrycode_relay_half_open_connections",
                 "pyrycode_relay_queued_bytes"]:
        assert m[(name, ())] == 0
    assert m[("process_open_fds", ())] > 0 and m[("process_resident_memory_bytes", ())] > 0
    # Loop-iteration latency histogram: cumulative buckets ending in +Inf == _count.
    h = "pyrycode_relay_loop_iteration_seconds"
    m = scrape(r)  # the first scrape itself took loop iterations
    buckets = sorted(((float(dict(labels)["le"]), v) for (name, labels), v in m.items() if name == h + "_bucket"))
    assert len(buckets) >= 10 and buckets[-1][0] == float("inf")
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    assert buckets[-1][1] == m[(h + "_count", ())] > 0
    assert 0 < m[(h + "_sum", ())] < 60
    status, headers, _ = request(r.metrics_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert request(r.metrics_port, b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 404


def test_metrics_move_with_an_exchange(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--phones-per-server", "1")

    async def scenario():
        binary = await open_binary(r, "met-a")
        phone = await open_phone(r, "met-a")
        cid = await phone_conn_id(binary, phone)               # phone → binary: 1 frame
        await binary.send(json.dumps({"conn_id": cid, "frame": {"pong": 1}}))
        assert json.loads(await asyncio.wait_for(phone.recv(), 5)) == {"pong": 1}
        m = scrape(r)
        assert m[("pyrycode_relay_connected_binaries", ())] == 1
        assert m[("pyrycode_relay_connected_phones", ())] == 1
        assert m[("pyrycode_relay_live_connections", ())] == 2
        assert m[(FF, (("direction", "phone_to_binary"),))] == 1
        assert m[(FF, (("direction", "binary_to_phone"),))] == 1
        assert m[(UP, (("endpoint", "server"), ("outcome", "accept")))] == 1
        assert m[(UP, (("endpoint", "client"), ("outcome", "accept")))] == 1
        # 4429, 4404, 4409 and a header rejection each land in their own series.
        extra = await open_phone(r, "met-a")
        assert (await closed_with(extra))[0] == 4429
        lost = await open_phone(r, "met-none")
        assert (await closed_with(lost))[0] == 4404
        dup = await open_binary(r, "met-a")
        assert (await closed_with(dup, timeout=15))[0] == 4409
        assert request(r.port, upgrade_request(r.port, "/v1/client", {"User-Agent": "x"}))[0] == 400
        m = scrape(r)
        assert m[(UP, (("endpoint", "client"), ("outcome", "reject_429")))] == 1
        assert m[(UP, (("endpoint", "client"), ("outcome", "reject_404")))] == 1
        assert m[(UP, (("endpoint", "server"), ("outcome", "reject_409")))] == 1
        assert m[(UP, (("endpoint", "client"), ("outcome", "reject_headers")))] == 1
        assert m[(RF, (("kind", "phones_at_cap"),))] == 1
        assert m[(RF, (("kind", "no_server"),))] == 1
        assert m[(RF, (("kind", "server_in_use"),))] == 1
        await phone.close()
        await binary.close()

    run(scenario())
    wait_until(lambda: scrape(r)[("pyrycode_relay_live_connections", ())] == 0, what="connections to close")
    m = scrape(r)
    assert m[("pyrycode_relay_connected_phones", ())] == 0
    assert m[("pyrycode_relay_connected_binaries", ())] == 0  # in grace: not counted (docs/protocol.md §5)


class MetricsSession:
    """One keep-alive connection to /metrics, so scraping adds no descriptor of its own."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def _fill(self, pred):
        while not pred():
            chunk = self.sock.recv(65536)
            assert chunk, "metrics connection closed"
            self.buf += chunk

    def scrape(self):
        """{series: value} for the series without labels."""
        self.sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        self._fill(lambda: b"\r\n\r\n" in self.buf)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
        self._fill(lambda: len(self.buf) >= length)
        body, self.buf = self.buf[:length], self.buf[length:]
        lines = [l.rsplit(" ", 1) for l in body.decode().splitlines() if l and not l.startswith("#")]
        return {k: float(v) for k, v in lines if "{" not in k}

    def wait_for_eof(self):
        while self.sock.recv(65536):
            pass


def test_open_fds_gauge_equals_proc_fd_entries_as_connections_come_and_go(relay_bin, start_relay):
    """process_open_fds comes from the relay's own count (no /proc/self/fd walk per scrape): it
    must equal the entries of /proc/<pid>/fd whenever the relay is idle, as WebSocket and
    not-yet-upgraded connections open and close, and after shutdown closes the listeners."""
    r = start(start_relay, relay_bin, "--drain-deadline", "5s")
    ms = MetricsSession(r.metrics_port)

    def settled(live, half_open):
        """The gauge once the relay shows `live` WebSockets and `half_open` raw connections."""
        m = ms.scrape()
        if (m["pyrycode_relay_live_connections"], m["pyrycode_relay_half_open_connections"]) != (live, half_open):
            return None
        return int(m["process_open_fds"])

    def expect(live, half_open):
        fds = wait_until(lambda: settled(live, half_open), what=f"{live} live, {half_open} half-open")
        assert fds == fd_count(r.proc.pid), (live, half_open)
        return fds

    base = expect(0, 0)

    async def scenario():
        binaries = [await open_binary(r, f"fd-{i}") for i in range(3)]
        phones = [await open_phone(r, f"fd-{i}") for i in range(3)]
        raw = [socket.create_connection(("127.0.0.1", r.port)) for _ in range(4)]  # never send a request
        assert expect(6, 4) == base + 10
        for c in phones[:2]:
            await c.close()
        for s in raw[:2]:
            s.close()
        assert expect(4, 2) == base + 6
        for c in phones[2:] + binaries:
            await c.close()
        for s in raw[2:]:
            s.close()
        assert expect(0, 0) == base

    run(scenario())
    # Shutdown closes the listeners while a WebSocket that ignores the 1001 keeps the drain going.
    held = RawClient(r.port, "/v1/server", binary_headers("fd-held"))
    assert held.status == 101
    wait_until(lambda: settled(1, 0), what="held binary upgraded")
    r.proc.signal(signal.SIGTERM)
    r.proc.wait_for_log(lambda l: "shutdown_started" in l)
    fds = int(ms.scrape()["process_open_fds"])  # draining: answered with Connection: close
    ms.wait_for_eof()  # the relay sent FIN and lingers until ours: its socket is still open
    assert fds == fd_count(r.proc.pid)
    assert fds == base + 1 - 2  # the held WebSocket in, both listeners out (their spares stay)


# ---------------------------------------------------------------------------------------------
# Logs (docs/operations.md)
# ---------------------------------------------------------------------------------------------

def allowed_log_keys():
    """docs/operations.md's keys plus the additions documented in Log.swift (read from the source)."""
    path = os.path.join(REPO_ROOT, "Sources", "Relay", "Log", "Log.swift")
    with open(path) as f:
        src = f.read()
    block = re.search(r"allowedKeys: Set<String> = \[(.*?)\]", src, re.S).group(1)
    keys = set(re.findall(r'"([a-z_]+)"', block))
    assert SPEC_LOG_KEYS <= keys, "Log.swift must allow every docs/operations.md key"
    return keys


LOGFMT_PAIR = re.compile(r'([a-z_][a-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"=\\]+)(?: |$)')
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def strict_logfmt(line):
    """Parses one line as logfmt, strictly: [(key, raw value)], or raises AssertionError."""
    pairs, pos = [], 0
    while pos < len(line):
        m = LOGFMT_PAIR.match(line, pos)
        assert m, f"not logfmt at column {pos}: {line!r}"
        pairs.append((m.group(1), m.group(2)))
        pos = m.end()
    return pairs


def test_logs_are_logfmt_and_never_carry_secrets(relay_bin, start_relay):
    mark = {name: f"{name}-{secrets.token_hex(6)}" for name in [
        "token", "ua", "custom", "auth", "cookie", "xff", "p2b", "b2p", "garbage", "unknown", "push",
        "nonjson", "key", "path", "query", "raw", "close", "lostua", "ratelimit"]}
    r = start(start_relay, relay_bin, "--phones-per-server", "1")

    def secret_headers(base):
        return {**base, "User-Agent": "ua " + mark["ua"], "X-Custom": mark["custom"],
                "Authorization": "Bearer " + mark["auth"], "Cookie": "c=" + mark["cookie"],
                "X-Forwarded-For": mark["xff"]}

    async def scenario():
        binary = await connect(r.url + "/v1/server", additional_headers=secret_headers(binary_headers("log-srv")),
                               open_timeout=5)
        phone = await connect(r.url + "/v1/client", additional_headers=secret_headers(
            phone_headers("log-srv", token=mark["token"], device="Pixel log")), open_timeout=5)
        await phone.send(json.dumps({"secret": mark["p2b"]}))
        env = await recv_json(binary)
        cid = env["conn_id"]
        await binary.send(json.dumps({"conn_id": cid, "frame": {"secret": mark["b2p"]}}))
        assert mark["b2p"] in await asyncio.wait_for(phone.recv(), 5)
        await binary.send("not json " + mark["garbage"])                                  # unmarshal_err
        await binary.send(json.dumps({"conn_id": "client-log-srv-" + mark["unknown"], "frame": 1}))
        await binary.send(json.dumps({"push_wake": {"token": mark["push"]}}))             # push off
        # 4429: one phone per id here.
        second = await connect(r.url + "/v1/client", additional_headers=phone_headers("log-srv", token=mark["token"]),
                               open_timeout=5)
        assert (await closed_with(second))[0] == 4429
        # 4404.
        lost = await connect(r.url + "/v1/client", additional_headers={
            **phone_headers("log-none", token=mark["token"]), "User-Agent": mark["lostua"]}, open_timeout=5)
        assert (await closed_with(lost))[0] == 4404
        # A non-JSON phone message ends that phone (1000) and the binary gets the notice.
        await phone.send("{" + mark["nonjson"])
        assert (await closed_with(phone))[0] == 1000
        notice = await recv_json(binary)
        assert notice == {"conn_id": cid, "close_code": 1001}
        # A close directive for a second phone.
        phone2 = await connect(r.url + "/v1/client", additional_headers=phone_headers("log-srv", token=mark["token"]),
                               open_timeout=5)
        await phone2.send('{"hello":"' + mark["close"] + '"}')
        cid2 = (await recv_json(binary))["conn_id"]
        await binary.send(json.dumps({"conn_id": cid2, "close_code": 4000}))
        assert (await closed_with(phone2))[0] == 4000
        await binary.close()

    run(scenario())
    # A handshake refused for its Sec-WebSocket-Key, a 404 path, a query, bytes that are not HTTP.
    assert request(r.port, upgrade_request(r.port, "/v1/client", phone_headers("log-srv", token=mark["token"]),
                                           key=mark["key"]))[0] == 400
    assert request(r.port, f"GET /{mark['path']}?{mark['query']} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())[0] == 404
    assert request(r.port, f"GET /healthz?{mark['query']} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())[0] == 200
    assert request(r.port, (mark["raw"] + "\x00\x01 nonsense\r\n\r\n").encode())[0] == 400
    # Spend the rest of the burst, then a rate-limited attempt (logged) that carries markers.
    for _ in range(25):
        if request(r.port, upgrade_request(r.port, "/v1/server", {"User-Agent": mark["ratelimit"],
                                                                  "X-Pyrycode-Token": mark["token"]}))[0] == 429:
            break
    else:
        raise AssertionError("the rate limit never answered 429")
    assert r.proc.stop() == 0

    text = r.proc.stderr_text()
    for name, value in mark.items():
        assert value not in text, f"the {name} marker reached the log"
    events = [parse_logfmt(l)["msg"] for l in r.proc.lines]
    for expected in ["relay_started", "server_claimed", "phone_registered", "binary_forwarder_unmarshal_err",
                     "binary_forwarder_unknown_conn_id", "binary_forwarder_push_wake_dropped",
                     "ratelimit_rejected", "shutdown_started", "relay_stopped"]:
        assert expected in events, expected

    allowed = allowed_log_keys()
    assert r.proc.lines
    for line in r.proc.lines:
        pairs = strict_logfmt(line)
        keys = [k for k, _ in pairs]
        assert keys[:3] == ["ts", "level", "msg"], line
        assert TS.fullmatch(pairs[0][1]), line
        assert pairs[1][1] in ("debug", "info", "warn", "error"), line
        assert len(set(keys)) == len(keys), f"duplicate key: {line}"
        assert set(keys[3:]) <= allowed, f"keys outside the allow-list: {set(keys[3:]) - allowed}: {line}"


# ---------------------------------------------------------------------------------------------
# Shutdown (docs/operations.md)
# ---------------------------------------------------------------------------------------------

def test_sigterm_closes_500_connections_1001_and_exits_0(relay_bin, start_relay):
    r = start(start_relay, relay_bin, "--trust-x-forwarded-for", "--max-connections-per-ip", "1000",
              "--drain-deadline", "5s")
    pairs = 250

    async def scenario():
        sem = asyncio.Semaphore(50)

        async def dial(path, headers, n):
            async with sem:
                # Distinct X-Forwarded-For values: one rate-limit bucket per connection.
                h = {**headers, "X-Forwarded-For": f"198.51.100.{n}" if n < 250 else f"203.0.113.{n - 250}"}
                return await connect(r.url + path, additional_headers=h, open_timeout=10, max_size=None)

        binaries = await asyncio.gather(*[dial("/v1/server", binary_headers(f"drain-{i}"), i) for i in range(pairs)])
        phones = await asyncio.gather(*[dial("/v1/client", phone_headers(f"drain-{i}"), pairs + i) for i in range(pairs)])
        doc = health(r.port)
        assert doc["connected_binaries"] == pairs and doc["connected_phones"] == pairs
        t0 = time.monotonic()
        r.proc.signal(signal.SIGTERM)
        closes = await asyncio.gather(*[closed_with(ws, timeout=10) for ws in binaries + phones])
        assert closes == [(1001, "shutting down")] * (2 * pairs)
        return t0

    t0 = run(scenario())
    rc = r.proc.wait(timeout=10)
    elapsed = time.monotonic() - t0
    assert rc == 0
    assert elapsed < 5.0, f"drain took {elapsed:.1f} s, past the 5 s deadline"
    stopped = parse_logfmt(r.proc.wait_for_log(lambda l: "msg=relay_stopped" in l))
    assert stopped["count"] == "0"
    assert not any("drain_deadline_passed" in l for l in r.proc.lines)


def silent_binary(r, server_id):
    """A binary that completes the handshake and then never reads nor answers the close."""
    c = RawClient(r.port, "/v1/server", binary_headers(server_id))
    assert c.status == 101
    return c


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_drain_deadline_bounds_shutdown(relay_bin, start_relay, sig):
    r = start(start_relay, relay_bin, "--drain-deadline", "1s")
    c = silent_binary(r, "deadline")
    t0 = time.monotonic()
    r.proc.signal(sig)
    rc = r.proc.wait(timeout=5)
    elapsed = time.monotonic() - t0
    assert rc == 0
    assert 0.9 <= elapsed < 3.0, elapsed
    r.proc.wait_for_log(lambda l: "msg=drain_deadline_passed" in l)
    c.close()


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_during_drain_exits_at_once(relay_bin, start_relay, second):
    r = start(start_relay, relay_bin, "--drain-deadline", "30s")
    c = silent_binary(r, "forced")
    r.proc.signal(signal.SIGTERM)
    r.proc.wait_for_log(lambda l: "msg=shutdown_started" in l)
    # Draining: the listeners are closed, so nothing new gets in.
    wait_until(lambda: not port_is_bound(r.port), what="the listener to close")
    assert r.proc.returncode is None, "the drain should still be waiting for the silent peer"
    t0 = time.monotonic()
    r.proc.signal(second)
    rc = r.proc.wait(timeout=1.0)
    assert time.monotonic() - t0 < 1.0
    assert rc == 1  # forced exit: documented in the module docstring and README.md
    r.proc.wait_for_log(lambda l: "msg=shutdown_forced" in l)
    c.close()


# ---------------------------------------------------------------------------------------------
# make run (README: the first command a newcomer types)
# ---------------------------------------------------------------------------------------------

def test_make_run_builds_only_the_relay_and_says_where_the_binary_is(relay_bin, start_relay, tmp_path):
    if shutil.which("make") is None or shutil.which("swift") is None:
        pytest.skip("make or swift not installed")
    plan = subprocess.run(["make", "-n", "run"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    builds = [l for l in plan.splitlines() if l.startswith("swift build") and "--show-bin-path" not in l]
    assert builds == ["swift build --product pyrycode-relay"], plan  # not every product (benchmarks, fuzzers)

    port, mport, rundir = free_port(), free_port(), tmp_path / "run"
    r = start_relay("make", ["-s", "run", f"RUN_LISTEN=127.0.0.1:{port}", f"RUN_METRICS=127.0.0.1:{mport}",
                             f"RUN_DIR={rundir}"], env={"MAKEFLAGS": ""})
    # A no-op build when the debug binary is current; bounded for a rebuild on a slow machine.
    r.wait_for_log(lambda l: "msg=relay_started" in l, timeout=900)
    bin_path = subprocess.run(["swift", "build", "--show-bin-path"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip() + "/pyrycode-relay"
    r.wait_for_log(lambda l: l == f"make run: binary {bin_path}", stream="stdout")
    assert os.access(bin_path, os.X_OK)
    # make execs the relay in its recipe shell: the lock names it, and it is that binary.
    pid = int((rundir / "instance.lock").read_text())
    assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(bin_path)
    assert health(port)["status"] == "ok"
    os.kill(pid, signal.SIGTERM)
    assert r.wait(30) == 0


def test_readme_names_what_a_fresh_machine_needs():
    readme = open(os.path.join(REPO_ROOT, "README.md")).read()
    prereq = readme.split("## Prerequisites", 1)[1].split("\n## ", 1)[0]
    tools = open(os.path.join(REPO_ROOT, "Package.swift")).readline()
    major = int(re.search(r"swift-tools-version:\s*(\d+)", tools).group(1))
    assert f"version {major}.0 or newer" in prereq  # the toolchain Package.swift asks for
    deps = open(os.path.join(REPO_ROOT, "scripts", "ensure-deps.sh")).read()
    for pkg in ("libssl-dev", "zlib1g-dev", "pkg-config"):  # what the CTLS target builds against
        assert pkg in prereq and pkg in deps, pkg
    assert "`make test` installs everything else" in prereq
