#!/usr/bin/env python3
"""What push wakes cost the relay (docs/protocol.md §9), against the local fake Google of
tests/interop/pushlib.py (test CA, loopback only).

1. CPU per wake with a cached access token: after one wake has fetched the token and a first
   batch has opened the kept-alive FCM connections, --wakes wakes go out in batches of 32 (32
   distinct server-ids, so no bucket refuses); the relay thread's on-CPU time
   (/proc/PID/schedstat, nanoseconds) over the batches, divided by the wakes.
2. Event-loop iteration latency p99 (`pyrycode_relay_loop_iteration_seconds` from /metrics,
   delta over the window) while one phone↔binary pair exchanges messages back to back for
   --seconds: first with no wake in flight, then with 32 wakes always in flight against an FCM
   that answers after 2 s. Also the pair's own round-trip p99.

    .venv-test/bin/python scripts/push-bench.py --relay .build/release/pyrycode-relay
    .venv-test/bin/python scripts/push-bench.py --relay .build/release/pyrycode-relay --callgrind reports/push.callgrind
       (instructions per wake instead: valgrind counts only the batches of step 1)
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))
from conftest import Relay, free_port  # noqa: E402
from pushlib import Google, key_json, make_account_key, make_pki  # noqa: E402
from relaylib import RunningRelay, open_binary, open_phone, phone_conn_id, recv_json, scrape  # noqa: E402


def on_cpu_ns(pid):
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def loop_histogram(relay):
    m = scrape(relay)
    return {dict(k[1])["le"]: v for k, v in m.items() if k[0] == "pyrycode_relay_loop_iteration_seconds_bucket"}


def p99_bound(before, after):
    """The smallest bucket bound holding 99% of the iterations between two scrapes."""
    bounds = sorted((float(le), le) for le in after)
    total = after["+Inf"] - before.get("+Inf", 0)
    for value, le in bounds:
        if after[le] - before.get(le, 0) >= 0.99 * total:
            return le, int(total)
    return "+Inf", int(total)


async def until(pred, timeout=30):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the fake FCM")
        await asyncio.sleep(0.005)


class Outcomes:
    """Wake outcomes the relay has logged so far (its stderr, read incrementally): the next batch
    goes out only when the relay itself has finished the last one, so the in-flight cap never refuses."""

    def __init__(self, proc):
        self.proc, self.seen, self.count = proc, 0, 0

    def __call__(self):
        with self.proc.cond:
            new = self.proc.lines[self.seen:]
        self.seen += len(new)
        self.count += sum(1 for line in new if "msg=push_wake_sent" in line or "msg=push_wake_send_failed" in line)
        return self.count


def source(i):
    """A loopback source address per 10 binaries: the per-IP upgrade rate limit (burst 20) is not under test."""
    return (f"127.1.{i // 10 // 250}.{i // 10 % 250 + 1}", 0)


def wake(token):
    return json.dumps({"push_wake": {"platform": "fcm", "token": token}})


async def cpu_per_wake(r, outcomes, wakes, callgrind):
    bins = [await open_binary(r, f"cpu-{i}", local_addr=source(i)) for i in range(32 * ((wakes // 32 + 5) // 5 + 1))]
    used = [0] * len(bins)
    nxt = 0

    async def batch():
        nonlocal nxt
        target = outcomes() + 32
        for _ in range(32):
            i = nxt % len(bins)
            nxt += 1
            used[i] += 1
            assert used[i] <= 5, "bucket would refuse"
            await bins[i].send(wake(f"cpu-token-{nxt:06d}-" + "x" * 140))
        await until(lambda: outcomes() >= target)

    await batch()                              # token fetch + 32 FCM connections opened
    n = wakes // 32
    pid = r.proc.pid
    if callgrind:
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
    t0, c0 = time.monotonic(), on_cpu_ns(pid)
    for _ in range(n):
        await batch()
    c1, t1 = on_cpu_ns(pid), time.monotonic()
    if callgrind:
        subprocess.run(["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True)
    for b in bins:
        await b.close()
    return n * 32, (c1 - c0) / (n * 32), t1 - t0


async def latency(r, outcomes, seconds, in_flight, run):
    b = await open_binary(r, f"lat-pair-{run}")
    p = await open_phone(r, f"lat-pair-{run}")
    wakers = [await open_binary(r, f"lat-wake-{run}-{i}", local_addr=source(1000 * (run + 1) + i))
              for i in range(32 * 6)] if in_flight else []
    cid = await phone_conn_id(b, p)
    stop = False
    rtts = []

    async def echo():
        k = 0
        while not stop:
            t = time.monotonic()
            await p.send(json.dumps({"k": k}))
            env = await recv_json(b)
            await b.send(json.dumps({"conn_id": cid, "frame": env["frame"]}))
            await p.recv()
            rtts.append(time.monotonic() - t)
            k += 1

    async def waker():
        bins = wakers
        used = 0
        while not stop:
            target = outcomes() + 32
            for _ in range(32):
                await bins[used % len(bins)].send(wake(f"lat-token-{used:06d}"))
                used += 1
            await until(lambda: outcomes() >= target or stop)

    before = loop_histogram(r)
    tasks = [asyncio.ensure_future(echo())]
    if in_flight:
        tasks.append(asyncio.ensure_future(waker()))
    await asyncio.sleep(seconds)
    after = loop_histogram(r)
    stop = True
    await asyncio.gather(*tasks)
    for x in [p, b] + wakers:
        await x.close()
    rtts.sort()
    return p99_bound(before, after), len(rtts), rtts[int(0.99 * len(rtts))] * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--relay", required=True)
    ap.add_argument("--wakes", type=int, default=960)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--callgrind", metavar="OUT",
                    help="run the relay under valgrind --tool=callgrind, counting only the CPU-per-wake batches, "
                         "into OUT (then: callgrind_annotate OUT); the latency figures are skipped")
    a = ap.parse_args()

    pki, key = make_pki(), make_account_key()
    google = Google(pki)
    port, mport = free_port(), free_port()
    prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={a.callgrind}",
              a.relay] if a.callgrind else [a.relay]
    proc = Relay(prefix[0], prefix[1:] + ["--insecure-listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{mport}",
                           "--runtime-dir", os.path.join("/tmp", f"push-bench-{port}")],
                 env={"PYRYCODE_RELAY_FCM_CREDENTIALS": key_json(key, google.oauth.url + "/token"),
                      "PYRYCODE_RELAY_FCM_BASE_URL": google.fcm.url, "SSL_CERT_FILE": pki["ca"]},
                 wait_port=port, wait_timeout=60)
    r = RunningRelay(proc, port, mport)
    outcomes = Outcomes(proc)
    try:
        n, ns, wall = asyncio.run(cpu_per_wake(r, outcomes, a.wakes, a.callgrind))
        if a.callgrind:
            proc.stop()
            total = max(int(l.split()[1]) for l in open(a.callgrind) if l.startswith(("summary:", "totals:")))
            print(f"instructions per wake (cached token, kept-alive FCM connections): {total // n} Ir over {n} wakes")
            return
        print(f"cpu per wake (cached token, kept-alive FCM connections): {ns / 1000:.1f} us over {n} wakes "
              f"({wall:.2f} s wall)")
        print(f"FCM: {len(google.fcm.requests)} requests over {google.fcm.connections} TLS connections")
        google.fcm.delay = 2.0
        for run, (label, flight) in enumerate([("no wake in flight", False),
                                               ("32 wakes in flight, FCM answers after 2 s", True)]):
            (le, iters), trips, rtt99 = asyncio.run(latency(r, outcomes, a.seconds, flight, run))
            print(f"{label}: loop iteration p99 <= {le} s over {iters} iterations; "
                  f"pair round trip p99 {rtt99:.2f} ms over {trips} round trips")
        m = scrape(r)
        print("outcomes:", {dict(k[1])["outcome"]: int(v) for k, v in m.items()
                            if k[0] == "pyrycode_relay_push_wakes_total"})
    except BaseException:
        print("\n".join(proc.stderr_text().splitlines()[-15:]), file=sys.stderr)
        raise
    finally:
        proc.stop()
        google.close()


if __name__ == "__main__":
    main()
