#!/usr/bin/env python3
"""S1 (100 pairs, 64 B, window 1) through HAProxy in front of 1 and 2 shards (TLS in HAProxy;
and once without TLS, the hop alone), beside the relay reached directly (plain and TLS): what
the proxy hop costs (docs/benchmarks.md, "Sharded behind HAProxy").

Every server-side process (relays, HAProxy with `nbthread 1`) runs on CPU0, relay-bench on
CPU1, as scripts/bench.sh does. HAProxy's configuration is the shipped deploy/haproxy.cfg from
`defaults` on, cut to N shards (mod(N), backends shard0..N-1) and pointed at loopback ports.
Messages/s: relay-bench's median window. CPU per message: for each server-side process, the
CPU seconds (/proc/PID/stat utime+stime) over the whole relay-bench run divided by the frames
the relays forwarded over the same run (pyrycode_relay_frames_forwarded_total, both directions,
summed over shards); connection set-up (200 connections) is included and negligible.

Usage: scripts/bench-sharded.py [--duration 5] [--repeats 3] [--out reports/bench/sharded.jsonl]
Needs a release build (swift build -c release) and haproxy (scripts/ensure-deps.sh).
"""

import argparse
import atexit
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = REPO / ".build" / "release"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench-sharded: {proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench-sharded: port {port} did not open")


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def forwarded(metrics_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(v) for v in re.findall(r"^pyrycode_relay_frames_forwarded_total\{[^}]*\} (\S+)$", text, re.M))


def make_pki(d):
    def ossl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
         "-out", "ca.crt", "-days", "2", "-subj", "/CN=bench-ca", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "leaf.key",
         "-subj", "/CN=localhost", "-out", "leaf.csr")
    pathlib.Path(d, "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                                          "keyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n")
    ossl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
         "-extfile", "ext.cnf", "-out", "leaf.crt")
    bundle = pathlib.Path(d, "haproxy.pem")
    bundle.write_text(pathlib.Path(d, "leaf.crt").read_text() + pathlib.Path(d, "leaf.key").read_text())
    return pathlib.Path(d, "ca.crt"), pathlib.Path(d, "leaf.crt"), pathlib.Path(d, "leaf.key"), bundle


def haproxy_config(n, port, bundle, shard_ports, tls=True):
    text = (REPO / "deploy" / "haproxy.cfg").read_text()
    body = text[text.index("\ndefaults"):]
    body = body.replace("crc32,mod(3)", f"crc32,mod({n})")
    body = body.replace("bind 0.0.0.0:443 ", f"bind 127.0.0.1:{port} ")
    body = re.sub(r"\n    bind \[::\]:443 [^\n]*", "", body)
    if not tls:  # the hop alone, without TLS termination
        body = body.replace(" ssl crt /etc/haproxy/certs/relay.pem alpn http/1.1", "")
    body = body.replace("/etc/haproxy/certs/relay.pem", str(bundle))
    assert ":443" not in body and f"bind 127.0.0.1:{port}" in body
    for k in range(3):
        if k < n:
            body = body.replace(f"127.0.0.1:{8100 + k} ", f"127.0.0.1:{shard_ports[k]} ")
        else:
            body = re.sub(rf"\nbackend shard{k}\n(    [^\n]*\n)*", "\n", body)
            body = re.sub(rf"\n    server shard{k} [^\n]*", "", body)
    return "global\n    nbthread 1\n    maxconn 4000\n" + body


class Target:
    """The server-side processes of one configuration."""

    def __init__(self):
        self.procs = []  # (name, Popen)
        self.metrics = []
        self.rundir = tempfile.mkdtemp(prefix="bench-sharded-")
        atexit.register(self.stop)  # also when a step fails and the script exits early

    def start(self, name, argv, port):
        p = subprocess.Popen(["taskset", "-c", "0", *map(str, argv)], stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(self.rundir, name + ".log"), "w"))
        self.procs.append((name, p))
        wait_port(port, p)
        return p

    def relay(self, name, port, *args):
        """A release relay listening on `port` (the listener flags are in `args`)."""
        mport = free_port()
        self.metrics.append(mport)
        self.start(name, [BIN / "pyrycode-relay", *args, "--metrics-listen", f"127.0.0.1:{mport}",
                          "--runtime-dir", self.rundir], port)

    def stop(self):
        for _, p in self.procs:
            if p.poll() is None:
                p.terminate()
        for _, p in self.procs:
            p.wait(10)
        self.procs = []
        shutil.rmtree(self.rundir, ignore_errors=True)


def bench(label, target, url, ca, args):
    cpu0 = {name: cpu_seconds(p.pid) for name, p in target.procs}
    fwd0 = sum(forwarded(m) for m in target.metrics)
    cmd = ["taskset", "-c", "1", BIN / "relay-bench", "run", "S1", "--target", url, "--duration", str(args.duration),
           "--repeats", str(args.repeats), "--quiet", "--label", label, "--addressing", "many-ips"]
    if ca:
        cmd += ["--ca", ca]
    out = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"bench-sharded: relay-bench failed for {label}:\n{out.stdout}\n{out.stderr}")
    line = json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])
    frames = sum(forwarded(m) for m in target.metrics) - fwd0
    cpu = {name: cpu_seconds(p.pid) - cpu0[name] for name, p in target.procs}
    row = {"label": label, "msgs_per_s": line["msgs_per_s"], "frames": frames,
           "machine_idle_before": line.get("machine_idle_before"),
           "cpu_us_per_msg": {k: 1e6 * v / frames for k, v in cpu.items()},
           "cpu_us_per_msg_total": 1e6 * sum(cpu.values()) / frames}
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "reports" / "bench" / "sharded.jsonl"))
    args = ap.parse_args()
    haproxy = shutil.which("haproxy") or sys.exit("bench-sharded: haproxy not installed (scripts/ensure-deps.sh)")
    pki = tempfile.mkdtemp(prefix="bench-pki-")
    ca, crt, key, bundle = make_pki(pki)
    rows = []

    t = Target()
    port = free_port()
    t.relay("relay", port, "--insecure-listen", f"127.0.0.1:{port}")
    rows.append(bench("direct plain", t, f"ws://127.0.0.1:{port}", None, args))
    t.stop()

    t = Target()
    port = free_port()
    t.relay("relay", port, "--tls-cert", crt, "--tls-key", key, "--https-listen", f"127.0.0.1:{port}")
    rows.append(bench("direct TLS", t, f"wss://127.0.0.1:{port}", ca, args))
    t.stop()

    for n, tls in ((1, False), (1, True), (2, True)):
        t = Target()
        shard_ports = []
        for i in range(n):
            p = free_port()
            t.relay(f"shard{i}", p, "--insecure-listen", f"127.0.0.1:{p}", "--shard", f"{i}/{n}",
                    "--trust-x-forwarded-for")
            shard_ports.append(p)
        hport = free_port()
        cfg = pathlib.Path(t.rundir, "haproxy.cfg")
        cfg.write_text(haproxy_config(n, hport, bundle, shard_ports, tls))
        t.start("haproxy", [haproxy, "-db", "-f", cfg], hport)
        label = f"HAProxy {'TLS' if tls else 'plain'}, {n} shard{'s' if n > 1 else ''}"
        url = f"{'wss' if tls else 'ws'}://127.0.0.1:{hport}"
        rows.append(bench(label, t, url, ca if tls else None, args))
        t.stop()

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    shutil.rmtree(pki, ignore_errors=True)


if __name__ == "__main__":
    main()
